// C# binding (P/Invoke) of libservicepoint, an HTTP/1.1 connection manager in the model of
// .NET's ServicePoint / ServicePointManager (here HttpServicePoint / HttpServicePointManager, so
// that using System.Net and using Servicepoint never clash). See include/servicepoint.h.
//
// Language level: C# 7.2, so that Mono's mcs (`mcs -langversion:7.2`) and the .NET SDK both
// compile it: classic [DllImport], no LibraryImport, no function pointers, no nint/nuint
// (IntPtr/UIntPtr stand for pointers and size_t).
//
// The native library is found by its bare name "servicepoint": libservicepoint.so through
// LD_LIBRARY_PATH on Linux (Mono and .NET alike), servicepoint.dll on Windows,
// libservicepoint.dylib on macOS. No <dllmap> is needed.
//
// Usage:
//
//     using (var manager = new HttpServicePointManager())
//     using (var point = manager.FindServicePoint("http://example.com/"))
//     {
//         point.ConnectionLeaseTimeout = 60000;            // ms; -1 infinite, 0 no reuse
//         using (var response = manager.GetResponse(new HttpRequest("http://example.com/")))
//         {
//             Console.WriteLine((int)response.StatusCode + " " + response.GetHeader("Content-Type"));
//             byte[] body = response.ReadAll();
//         }
//     }
//
// Lifetime: HttpServicePointManager, HttpServicePoint and Response own one native handle each. Dispose
// frees it; a finalizer frees it if Dispose was not called. Dispose is idempotent and can never
// free a handle twice (the handle field is swapped out with Interlocked.Exchange). A call in
// progress on another thread keeps a HttpServicePoint's or Response's handle alive until it has
// copied what it borrowed from the library, so a concurrent Dispose cannot make it read freed
// memory. Using an object after Dispose throws ObjectDisposedException; the library itself
// answers a stale handle with SP_E_INVALID_HANDLE (InvalidHandleException), never a crash.
//
// Errors: every failing call throws a subclass of ServicePointException chosen by the
// sp_result code, carrying the detailed message of sp_last_error() and
// sp_last_error_request_sent(), both read on the calling thread right after the failing call.

using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;

namespace Servicepoint
{
    // --- library information ------------------------------------------------------------------

    /// <summary>Information about the loaded native library.</summary>
    public static class ServicePointLibrary
    {
        /// <summary>SP_INFINITE: the infinite duration of every millisecond setting (-1, the
        /// same as System.Threading.Timeout.Infinite).</summary>
        public const int Infinite = Native.Infinite;

        /// <summary>The ABI version this binding was written for.</summary>
        public const uint BindingAbiVersion = Native.AbiVersion;

        /// <summary>The library's version string, e.g. "servicepoint/0.1.0".</summary>
        public static string Version
        {
            get { return Native.PtrToString(Native.sp_version()); }
        }

        /// <summary>The loaded library's ABI version (equal to BindingAbiVersion, or the
        /// binding would not have loaded).</summary>
        public static uint AbiVersion
        {
            get { return Native.sp_abi_version(); }
        }
    }
}
