// C# binding (P/Invoke) of libservicepoint, an HTTP/1.1 connection manager in the model of
// .NET's ServicePoint / ServicePointManager. See include/servicepoint.h for the C API.
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
//     using (var manager = new ServicePointManager())
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
// Lifetime: ServicePointManager, ServicePoint and Response own one native handle each. Dispose
// frees it; a finalizer frees it if Dispose was not called. Dispose is idempotent and can never
// free a handle twice (the handle field is swapped out with Interlocked.Exchange). A call in
// progress on another thread keeps a ServicePoint's or Response's handle alive until it has
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
    /// <summary>The sp_result codes of include/servicepoint.h (ABI 1). Codes are only ever
    /// appended; an unknown code from a newer library is still a valid value of this enum.</summary>
    public enum ErrorCode
    {
        /// <summary>SP_OK: success.</summary>
        Ok = 0,
        /// <summary>SP_E_INVALID_ARGUMENT: an argument is not acceptable.</summary>
        InvalidArgument = 1,
        /// <summary>SP_E_NULL_POINTER: a required pointer argument is NULL.</summary>
        NullPointer = 2,
        /// <summary>SP_E_INVALID_UTF8: a string argument is not valid UTF-8.</summary>
        InvalidUtf8 = 3,
        /// <summary>SP_E_OUT_OF_RANGE: a numeric setting is out of range; nothing was changed.</summary>
        OutOfRange = 4,
        /// <summary>SP_E_INVALID_HANDLE: the handle is NULL, freed, of another kind, or never issued.</summary>
        InvalidHandle = 5,
        /// <summary>SP_E_INVALID_URL: the URL cannot be parsed or has no host.</summary>
        InvalidUrl = 6,
        /// <summary>SP_E_UNSUPPORTED_SCHEME: the scheme is neither http nor https.</summary>
        UnsupportedScheme = 7,
        /// <summary>SP_E_DNS: the host name could not be resolved.</summary>
        Dns = 8,
        /// <summary>SP_E_CONNECT: the TCP connection could not be established.</summary>
        Connect = 9,
        /// <summary>SP_E_CONNECT_TIMEOUT: connecting took longer than the request's timeout.</summary>
        ConnectTimeout = 10,
        /// <summary>SP_E_QUEUE_TIMEOUT: the request waited for a connection longer than its timeout.</summary>
        QueueTimeout = 11,
        /// <summary>SP_E_RESPONSE_TIMEOUT: the response head did not arrive within the timeout.</summary>
        ResponseTimeout = 12,
        /// <summary>SP_E_READ_TIMEOUT: a body read did not complete within the read timeout.</summary>
        ReadTimeout = 13,
        /// <summary>SP_E_TLS_CERTIFICATE: the server's TLS certificate was rejected.</summary>
        TlsCertificate = 14,
        /// <summary>SP_E_TLS_HANDSHAKE: the TLS handshake failed.</summary>
        TlsHandshake = 15,
        /// <summary>SP_E_PROTOCOL: the server sent invalid HTTP/1.x or exceeded the limits.</summary>
        Protocol = 16,
        /// <summary>SP_E_CONNECTION_CLOSED: the connection closed before the response was complete.</summary>
        ConnectionClosed = 17,
        /// <summary>SP_E_IO: another socket error.</summary>
        Io = 18,
        /// <summary>SP_E_TOO_MANY_SERVICE_POINTS: max service points reached, none evictable.</summary>
        TooManyServicePoints = 19,
        /// <summary>SP_E_CANCELED: the operation was canceled.</summary>
        Canceled = 20,
        /// <summary>SP_E_WRONG_THREAD: a blocking call was made from a library thread.</summary>
        WrongThread = 21,
        /// <summary>SP_E_PANIC: an internal error (a Rust panic) was caught.</summary>
        Panic = 22,
        /// <summary>SP_E_NOT_FOUND: the looked-up item does not exist.</summary>
        NotFound = 23,
        /// <summary>SP_E_MANAGER_CLOSED: the service point's manager was freed.</summary>
        ManagerClosed = 24,
        /// <summary>SP_E_BODY_SOURCE: the request body source reported an error.</summary>
        BodySource = 25,
        /// <summary>SP_E_TLS_UNKNOWN_ISSUER: the certificate's issuer is not trusted.</summary>
        TlsUnknownIssuer = 26,
        /// <summary>SP_E_TLS_CERT_EXPIRED: the certificate has expired or is not valid yet.</summary>
        TlsCertificateExpired = 27,
        /// <summary>SP_E_TLS_HOSTNAME_MISMATCH: the certificate is not valid for the host name.</summary>
        TlsHostnameMismatch = 28,
        /// <summary>SP_E_TLS_NOT_TLS: the server answered in plain HTTP (an http port used with https://).</summary>
        TlsNotTls = 29,
        /// <summary>SP_E_CONNECTION_RESET: the server reset the connection (RST) before the
        /// response was complete (ABI 2; SP_E_CONNECTION_CLOSED before).</summary>
        ConnectionReset = 30,
    }

    /// <summary>The lowest TLS version a manager offers (SP_TLS_1_2, SP_TLS_1_3).</summary>
    public enum TlsVersion
    {
        /// <summary>TLS 1.2 (the default).</summary>
        Tls12 = 12,
        /// <summary>TLS 1.3.</summary>
        Tls13 = 13,
    }

    /// <summary>
    /// Decides whether to accept a server certificate (the idea of .NET's
    /// ServerCertificateValidationCallback). <paramref name="host"/> is the name connected to,
    /// <paramref name="chain"/> the DER certificates the server sent, end entity first (e.g. for
    /// new X509Certificate2(chain[0])), <paramref name="builtinResult"/> ErrorCode.Ok if the
    /// built-in verification accepted the chain, else its error (e.g. TlsUnknownIssuer for a
    /// self-signed certificate). Return true to accept. Runs on the thread inside
    /// GetResponse, possibly on several threads at once; an exception counts as a rejection
    /// and becomes the InnerException of the TlsCertificateException.
    /// </summary>
    public delegate bool CertificateValidationCallback(string host, IList<byte[]> chain, ErrorCode builtinResult);

    // --- native declarations ------------------------------------------------------------------

    /// <summary>
    /// P/Invoke declarations of every function of include/servicepoint.h. Handles are IntPtr;
    /// fallible functions return the int32 sp_result; strings go in as NUL-terminated UTF-8
    /// byte[] (see <see cref="Utf8Z"/>) and come out as borrowed pointers copied with
    /// <see cref="PtrToString"/>. The static constructor checks the library's ABI version.
    /// </summary>
    internal static class Native
    {
        internal const string Lib = "servicepoint";

        /// <summary>SP_ABI_VERSION of the header this binding was written for.</summary>
        internal const uint AbiVersion = 2;

        /// <summary>SP_INFINITE.</summary>
        internal const int Infinite = -1;

        static Native()
        {
            uint abi;
            try
            {
                abi = sp_abi_version();
            }
            catch (DllNotFoundException e)
            {
                throw new DllNotFoundException(
                    "servicepoint: cannot load the native library 'servicepoint' " +
                    "(libservicepoint.so, servicepoint.dll or libservicepoint.dylib). Build it with " +
                    "`cargo build` and put its directory on LD_LIBRARY_PATH (PATH on Windows, " +
                    "DYLD_LIBRARY_PATH on macOS). " + e.Message, e);
            }
            catch (EntryPointNotFoundException e)
            {
                throw new TypeLoadException(
                    "servicepoint: the loaded 'servicepoint' library has no sp_abi_version(); it is " +
                    "not libservicepoint or is too old for this binding", e);
            }
            if (abi != AbiVersion)
            {
                throw new TypeLoadException(string.Format(
                    "servicepoint: the loaded library has ABI version {0}, but this binding was " +
                    "written for ABI version {1}; update either the binding or the library",
                    abi, AbiVersion));
            }
        }

        /// <summary>typedef int32_t (*sp_body_read_cb)(void *userdata, uint8_t *buf, size_t cap, size_t *out_n);
        /// outN is a size_t* (write it with Marshal.WriteIntPtr).</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int BodyReadCallback(IntPtr userdata, IntPtr buf, UIntPtr cap, IntPtr outN);

        /// <summary>typedef int32_t (*sp_cert_validator_cb)(void *userdata, const char *host,
        /// const uint8_t *const *certs, const size_t *cert_lens, size_t count, int32_t builtin_result);
        /// certs and certLens are arrays of count pointers / size_t.</summary>
        [UnmanagedFunctionPointer(CallingConvention.Cdecl)]
        internal delegate int CertValidatorCallback(IntPtr userdata, IntPtr host, IntPtr certs, IntPtr certLens, UIntPtr count, int builtinResult);

        /// <summary>SP_TLS_1_2.</summary>
        internal const int SP_TLS_1_2 = 12;

        /// <summary>SP_TLS_1_3.</summary>
        internal const int SP_TLS_1_3 = 13;

        /// <summary>struct sp_statistics: uint32 struct_size, uint32 reserved (0), then 20
        /// uint64; 168 bytes, no padding.</summary>
        [StructLayout(LayoutKind.Sequential)]
        internal struct sp_statistics
        {
            public uint struct_size;
            public uint reserved;
            public ulong open;
            public ulong idle;
            public ulong busy;
            public ulong waiting;
            public ulong connections_opened;
            public ulong requests;
            public ulong reuses;
            public ulong retries;
            public ulong closed_lease;
            public ulong closed_idle;
            public ulong closed_keep_alive_off;
            public ulong closed_server;
            public ulong closed_stale;
            public ulong closed_error;
            public ulong closed_max_requests;
            public ulong closed_group;
            public ulong closed_abandoned;
            public ulong tls_full_handshakes;
            public ulong tls_resumed_handshakes;
            public ulong closed_in_flight;
        }

        // Manager.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_new(out IntPtr outManager);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_manager_free(IntPtr manager);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_find(IntPtr manager, byte[] uri, out IntPtr outPoint);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_default_connection_limit(IntPtr manager, int limit);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_default_connection_limit(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_max_service_points(IntPtr manager, int max);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_max_service_points(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_max_service_point_idle_time(IntPtr manager, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_max_service_point_idle_time(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_keep_alive_default(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_keep_alive_default(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_service_point_count(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_dns_refresh_timeout(IntPtr manager, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_dns_refresh_timeout(IntPtr manager, out int outValue);

        // Service point.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_point_free(IntPtr point);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_address(IntPtr point, out IntPtr outAddress);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_lease_timeout(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_lease_timeout(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_connection_limit(IntPtr point, int limit);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_connection_limit(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_max_idle_time(IntPtr point, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_max_idle_time(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_set_max_requests_per_connection(IntPtr point, int max);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_max_requests_per_connection(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_current_connections(IntPtr point, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_idle_since(IntPtr point, out long outUnixMs);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_get_statistics(IntPtr point, ref sp_statistics outStats);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_close_connection_group(IntPtr point, byte[] name, out int outExisted);

        // Request description.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_new(byte[] method, byte[] url, out IntPtr outRequest);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_http_request_free(IntPtr request);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_add_header(IntPtr request, byte[] name, byte[] value);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_body(IntPtr request, byte[] data, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_body_reader(IntPtr request, BodyReadCallback read, IntPtr userdata);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_keep_alive(IntPtr request, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_timeout(IntPtr request, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_read_timeout(IntPtr request, int ms);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_connection_group(IntPtr request, byte[] name);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_set_retryable(IntPtr request, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_keep_alive(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_timeout(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_read_timeout(IntPtr request, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_retryable(IntPtr request, out int outValue);
        // The copy-out text getters, snprintf-style: (request, char *buf, size_t cap, size_t *out_len).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_connection_group(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_method(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_http_request_get_url(IntPtr request, byte[] buf, UIntPtr cap, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_request(IntPtr manager, IntPtr request, out IntPtr outResponse);

        // Response.
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern void sp_response_free(IntPtr response);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_status(IntPtr response, out int outStatus);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_http_version(IntPtr response, out int outVersion);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_reason(IntPtr response, out IntPtr outReason);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header(IntPtr response, byte[] name, out IntPtr outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_head(IntPtr response, out IntPtr outText, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header_count(IntPtr response, out UIntPtr outCount);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_header_at(IntPtr response, UIntPtr index, out IntPtr outName, out IntPtr outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_trailer(IntPtr response, byte[] name, out IntPtr outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_read(IntPtr response, IntPtr buf, UIntPtr cap, out UIntPtr outN);
        /// <summary>sp_response_read into the start of a managed array (pinned for the call).</summary>
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true, EntryPoint = "sp_response_read")]
        internal static extern int sp_response_read_array(IntPtr response, [Out] byte[] buf, UIntPtr cap, out UIntPtr outN);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_read_all(IntPtr response, out IntPtr outData, out UIntPtr outLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_connection_id(IntPtr response, out ulong outId);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_local_port(IntPtr response, out int outPort);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_response_connection_reused(IntPtr response, out int outReused);

        // TLS (manager).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_add_ca_pem(IntPtr manager, byte[] pem, UIntPtr len);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_add_ca_file(IntPtr manager, byte[] path);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_system_roots(IntPtr manager, int on);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_system_roots(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_ca_count(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_has_client_certificate(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_get_min_tls_version(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_has_certificate_validator(IntPtr manager, out int outValue);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_client_certificate(IntPtr manager, byte[] certPem, UIntPtr certLen, byte[] keyPem, UIntPtr keyLen);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_min_tls_version(IntPtr manager, int version);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_manager_set_certificate_validator(IntPtr manager, CertValidatorCallback validator, IntPtr userdata);

        // Version and errors (infallible).
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern uint sp_abi_version();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_strerror(int code);
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern IntPtr sp_last_error();
        [DllImport(Lib, CallingConvention = CallingConvention.Cdecl, ExactSpelling = true)]
        internal static extern int sp_last_error_request_sent();

        // --- helpers ------------------------------------------------------------------------

        static readonly UTF8Encoding StrictUtf8 = new UTF8Encoding(false, true);

        /// <summary>string -> NUL-terminated UTF-8 for a const char * argument.</summary>
        internal static byte[] Utf8Z(string s, string what)
        {
            if (s == null) throw new ArgumentNullException(what);
            if (s.IndexOf('\0') >= 0)
            {
                throw new InvalidArgumentException(ErrorCode.InvalidArgument,
                    what + " contains a NUL character", false, null, null);
            }
            int n = Encoding.UTF8.GetByteCount(s);
            var bytes = new byte[n + 1];
            Encoding.UTF8.GetBytes(s, 0, s.Length, bytes, 0);
            return bytes;
        }

        static int StrLen(IntPtr p)
        {
            int n = 0;
            while (Marshal.ReadByte(p, n) != 0) n++;
            return n;
        }

        static byte[] CopyZ(IntPtr p)
        {
            if (p == IntPtr.Zero) return null;
            var bytes = new byte[StrLen(p)];
            if (bytes.Length > 0) Marshal.Copy(p, bytes, 0, bytes.Length);
            return bytes;
        }

        /// <summary>Copies a borrowed NUL-terminated UTF-8 string (null for NULL).</summary>
        internal static string PtrToString(IntPtr p)
        {
            byte[] bytes = CopyZ(p);
            return bytes == null ? null : Encoding.UTF8.GetString(bytes);
        }

        /// <summary>Copies a header or trailer field from the wire: UTF-8 if valid, else
        /// ISO-8859-1, so no byte is lost (as the Python binding does).</summary>
        internal static string PtrToField(IntPtr p)
        {
            byte[] bytes = CopyZ(p);
            return bytes == null ? "" : DecodeField(bytes, 0, bytes.Length);
        }

        /// <summary>Decodes a field: UTF-8 if valid, else ISO-8859-1.</summary>
        internal static string DecodeField(byte[] bytes, int offset, int count)
        {
            if (count <= 0) return "";
            bool ascii = true;
            for (int i = offset; i < offset + count; i++)
            {
                if (bytes[i] >= 0x80)
                {
                    ascii = false;
                    break;
                }
            }
            if (ascii) return Encoding.ASCII.GetString(bytes, offset, count);
            try
            {
                return StrictUtf8.GetString(bytes, offset, count);
            }
            catch (DecoderFallbackException)
            {
                var chars = new char[count];
                for (int i = 0; i < count; i++) chars[i] = (char)bytes[offset + i];
                return new string(chars);
            }
        }

        /// <summary>Builds the exception for a failed call. Must run right after the failing
        /// call, on the same thread, before any other call into the library: it reads the
        /// thread-local sp_last_error() and sp_last_error_request_sent().</summary>
        internal static ServicePointException Error(int code, string function, Exception inner)
        {
            string message = PtrToString(sp_last_error());
            bool sent = sp_last_error_request_sent() != 0;
            if (string.IsNullOrEmpty(message)) message = PtrToString(sp_strerror(code));
            if (string.IsNullOrEmpty(message)) message = "error " + code;
            return ServicePointException.Create((ErrorCode)code, message, sent, function, inner);
        }

        /// <summary>Throws the matching ServicePointException if rc is not SP_OK.</summary>
        internal static void Check(int rc, string function)
        {
            if (rc != 0) throw Error(rc, function, null);
        }

        /// <summary>Checks a non-negative int that goes to a size_t parameter.</summary>
        internal static UIntPtr Size(int n)
        {
            return new UIntPtr((uint)n);
        }
    }

    // --- handles ------------------------------------------------------------------------------

    internal enum HandleKind
    {
        Manager,
        Point,
        Response,
    }

    /// <summary>
    /// Owns one native handle. Close() (Dispose) and the finalizer both swap the handle out
    /// with Interlocked.Exchange, so it is freed exactly once. Enter()/Exit() bracket every
    /// use: a handle in use when Close() runs is freed by the last Exit() instead (for kinds
    /// whose calls hand out borrowed memory), so a concurrent Dispose never frees memory a
    /// call is still copying. The finalizer lives here, not in the public classes, so an
    /// object cannot be finalized while one of its calls is between Enter and Exit.
    /// </summary>
    internal sealed class NativeHandle
    {
        IntPtr _handle;
        IntPtr _pending;
        int _users;
        readonly HandleKind _kind;
        readonly bool _deferWhileInUse;

        /// <summary>For a manager: the key of its certificate validator in
        /// CertificateValidation (0 = none), dropped when the manager is freed.</summary>
        internal long ValidatorKey;

        internal NativeHandle(IntPtr handle, HandleKind kind)
        {
            _handle = handle;
            _kind = kind;
            // The manager hands out no borrowed memory, and freeing it must not wait for
            // requests blocked on other threads (the library lets them finish or fail cleanly).
            _deferWhileInUse = kind != HandleKind.Manager;
        }

        ~NativeHandle()
        {
            try
            {
                Close();
            }
            catch
            {
                // Never let an exception escape a finalizer (e.g. at process shutdown).
            }
        }

        internal bool IsClosed
        {
            get { return Volatile.Read(ref _handle) == IntPtr.Zero; }
        }

        /// <summary>The live handle, marked in use until Exit(); ObjectDisposedException if closed.</summary>
        internal IntPtr Enter(string objectName)
        {
            Interlocked.Increment(ref _users);
            IntPtr h = Volatile.Read(ref _handle);
            if (h == IntPtr.Zero)
            {
                Exit();
                throw new ObjectDisposedException(objectName);
            }
            return h;
        }

        internal delegate int GetI32(IntPtr h, out int value);
        internal delegate int SetI32(IntPtr h, int value);

        /// <summary>Calls an int32 getter of the C ABI on this handle (held for the call).</summary>
        internal int Get(GetI32 fn, string objectName, string function)
        {
            IntPtr h = Enter(objectName);
            try
            {
                int value;
                Native.Check(fn(h, out value), function);
                return value;
            }
            finally
            {
                Exit();
            }
        }

        /// <summary>Calls an int32 setter of the C ABI on this handle (held for the call).</summary>
        internal void Set(SetI32 fn, int value, string objectName, string function)
        {
            IntPtr h = Enter(objectName);
            try
            {
                Native.Check(fn(h, value), function);
            }
            finally
            {
                Exit();
            }
        }

        internal void Exit()
        {
            if (Interlocked.Decrement(ref _users) == 0) FreePending();
        }

        /// <summary>Frees the handle (now, or at the last Exit()). False if already closed.</summary>
        internal bool Close()
        {
            IntPtr h = Interlocked.Exchange(ref _handle, IntPtr.Zero);
            if (h == IntPtr.Zero) return false;
            GC.SuppressFinalize(this);
            if (!_deferWhileInUse)
            {
                Free(h);
                return true;
            }
            // Interlocked.Exchange is a full fence: either this thread sees _users > 0 and the
            // last Exit() (which decrements, then takes _pending) frees it, or it sees 0.
            Interlocked.Exchange(ref _pending, h);
            if (Volatile.Read(ref _users) == 0) FreePending();
            return true;
        }

        void FreePending()
        {
            IntPtr p = Interlocked.Exchange(ref _pending, IntPtr.Zero);
            if (p != IntPtr.Zero) Free(p);
        }

        void Free(IntPtr h)
        {
            switch (_kind)
            {
                case HandleKind.Manager:
                    Native.sp_manager_free(h);
                    CertificateValidation.Unregister(Interlocked.Exchange(ref ValidatorKey, 0));
                    break;
                case HandleKind.Point:
                    Native.sp_point_free(h);
                    break;
                case HandleKind.Response:
                    Native.sp_response_free(h);
                    break;
            }
        }
    }

    // --- exceptions ---------------------------------------------------------------------------

    /// <summary>
    /// Base class of every error the library reports: <see cref="Code"/> is the sp_result
    /// code, Message the detailed message of sp_last_error() (or the code's fixed text), and
    /// <see cref="RequestSent"/> whether the failed request may have reached the server (use
    /// it to decide whether a non-idempotent request may be resent).
    /// </summary>
    public class ServicePointException : Exception
    {
        public ServicePointException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(message, inner)
        {
            Code = code;
            RequestSent = requestSent;
            Function = function;
        }

        /// <summary>The sp_result code, e.g. ErrorCode.Connect (9).</summary>
        public ErrorCode Code { get; private set; }

        /// <summary>True if the failed request may have reached the server.</summary>
        public bool RequestSent { get; private set; }

        /// <summary>Name of the C function that failed, when known.</summary>
        public string Function { get; private set; }

        /// <summary>The fixed English text of a code (sp_strerror).</summary>
        public static string StrError(ErrorCode code)
        {
            return Native.PtrToString(Native.sp_strerror((int)code));
        }

        /// <summary>The exception of the class matching <paramref name="code"/> (the base class for
        /// codes this binding does not know).</summary>
        public static ServicePointException Create(ErrorCode code, string message, bool requestSent, string function, Exception inner)
        {
            switch (code)
            {
                case ErrorCode.InvalidArgument: return new InvalidArgumentException(code, message, requestSent, function, inner);
                case ErrorCode.NullPointer: return new NullPointerException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidUtf8: return new InvalidUtf8Exception(code, message, requestSent, function, inner);
                case ErrorCode.OutOfRange: return new OutOfRangeException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidHandle: return new InvalidHandleException(code, message, requestSent, function, inner);
                case ErrorCode.InvalidUrl: return new InvalidUrlException(code, message, requestSent, function, inner);
                case ErrorCode.UnsupportedScheme: return new UnsupportedSchemeException(code, message, requestSent, function, inner);
                case ErrorCode.Dns: return new DnsException(code, message, requestSent, function, inner);
                case ErrorCode.Connect: return new ConnectException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectTimeout: return new ConnectTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.QueueTimeout: return new QueueTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.ResponseTimeout: return new ResponseTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.ReadTimeout: return new ReadTimeoutException(code, message, requestSent, function, inner);
                case ErrorCode.TlsCertificate: return new TlsCertificateException(code, message, requestSent, function, inner);
                case ErrorCode.TlsHandshake: return new TlsHandshakeException(code, message, requestSent, function, inner);
                case ErrorCode.Protocol: return new ProtocolException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectionClosed: return new ConnectionClosedException(code, message, requestSent, function, inner);
                case ErrorCode.Io: return new NetworkIOException(code, message, requestSent, function, inner);
                case ErrorCode.TooManyServicePoints: return new TooManyServicePointsException(code, message, requestSent, function, inner);
                case ErrorCode.Canceled: return new CanceledException(code, message, requestSent, function, inner);
                case ErrorCode.WrongThread: return new WrongThreadException(code, message, requestSent, function, inner);
                case ErrorCode.Panic: return new PanicException(code, message, requestSent, function, inner);
                case ErrorCode.NotFound: return new NotFoundException(code, message, requestSent, function, inner);
                case ErrorCode.ManagerClosed: return new ManagerClosedException(code, message, requestSent, function, inner);
                case ErrorCode.BodySource: return new BodySourceException(code, message, requestSent, function, inner);
                case ErrorCode.TlsUnknownIssuer: return new TlsUnknownIssuerException(code, message, requestSent, function, inner);
                case ErrorCode.TlsCertificateExpired: return new TlsCertificateExpiredException(code, message, requestSent, function, inner);
                case ErrorCode.TlsHostnameMismatch: return new TlsHostnameMismatchException(code, message, requestSent, function, inner);
                case ErrorCode.TlsNotTls: return new TlsNotTlsException(code, message, requestSent, function, inner);
                case ErrorCode.ConnectionReset: return new ConnectionResetException(code, message, requestSent, function, inner);
                default: return new ServicePointException(code, message, requestSent, function, inner);
            }
        }
    }

    /// <summary>SP_E_INVALID_ARGUMENT: an argument is not acceptable (e.g. a bad header name).</summary>
    public class InvalidArgumentException : ServicePointException
    {
        public InvalidArgumentException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_NULL_POINTER: a required pointer argument was NULL (a binding bug if seen).</summary>
    public class NullPointerException : ServicePointException
    {
        public NullPointerException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_UTF8: a string argument is not valid UTF-8.</summary>
    public class InvalidUtf8Exception : ServicePointException
    {
        public InvalidUtf8Exception(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_OUT_OF_RANGE: a numeric setting is outside its valid range; nothing was changed.</summary>
    public class OutOfRangeException : ServicePointException
    {
        public OutOfRangeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_HANDLE: the handle is NULL, freed, of another kind, or never issued.</summary>
    public class InvalidHandleException : ServicePointException
    {
        public InvalidHandleException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_INVALID_URL: the URL cannot be parsed or has no host.</summary>
    public class InvalidUrlException : ServicePointException
    {
        public InvalidUrlException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_UNSUPPORTED_SCHEME: the URL's scheme is neither http nor https (or https
    /// without TLS support).</summary>
    public class UnsupportedSchemeException : ServicePointException
    {
        public UnsupportedSchemeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_DNS: the host name could not be resolved.</summary>
    public class DnsException : ServicePointException
    {
        public DnsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECT: the TCP connection could not be established (refused, unreachable).</summary>
    public class ConnectException : ServicePointException
    {
        public ConnectException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>Base of the four timeout errors.</summary>
    public class ServicePointTimeoutException : ServicePointException
    {
        public ServicePointTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECT_TIMEOUT: establishing the connection took longer than the timeout.</summary>
    public class ConnectTimeoutException : ServicePointTimeoutException
    {
        public ConnectTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_QUEUE_TIMEOUT: the request waited for a free connection (connection limit
    /// reached) longer than its timeout. The request was not sent.</summary>
    public class QueueTimeoutException : ServicePointTimeoutException
    {
        public QueueTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_RESPONSE_TIMEOUT: the response head did not arrive within the timeout.</summary>
    public class ResponseTimeoutException : ServicePointTimeoutException
    {
        public ResponseTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_READ_TIMEOUT: a body read did not complete within the read timeout.</summary>
    public class ReadTimeoutException : ServicePointTimeoutException
    {
        public ReadTimeoutException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>Base of the TLS errors.</summary>
    public class TlsException : ServicePointException
    {
        public TlsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_CERTIFICATE: the server's TLS certificate was rejected.</summary>
    public class TlsCertificateException : TlsException
    {
        public TlsCertificateException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_HANDSHAKE: the TLS handshake failed.</summary>
    public class TlsHandshakeException : TlsException
    {
        public TlsHandshakeException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_UNKNOWN_ISSUER: the certificate was issued by an authority that is not trusted.</summary>
    public class TlsUnknownIssuerException : TlsCertificateException
    {
        public TlsUnknownIssuerException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_CERT_EXPIRED: the certificate has expired or is not valid yet.</summary>
    public class TlsCertificateExpiredException : TlsCertificateException
    {
        public TlsCertificateExpiredException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_HOSTNAME_MISMATCH: the certificate is not valid for the host name.</summary>
    public class TlsHostnameMismatchException : TlsCertificateException
    {
        public TlsHostnameMismatchException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TLS_NOT_TLS: the server answered in plain HTTP (an http port used with https://).</summary>
    public class TlsNotTlsException : TlsHandshakeException
    {
        public TlsNotTlsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PROTOCOL: the server sent something that is not valid HTTP/1.x or exceeds the limits.</summary>
    public class ProtocolException : ServicePointException
    {
        public ProtocolException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECTION_CLOSED: the connection closed before the response was complete.</summary>
    public class ConnectionClosedException : ServicePointException
    {
        public ConnectionClosedException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CONNECTION_RESET: the server reset the connection (RST) before the response
    /// was complete. A ConnectionClosedException too (its code before ABI 2).</summary>
    public class ConnectionResetException : ConnectionClosedException
    {
        public ConnectionResetException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_IO: another socket error. (Not named IoException, to keep it apart from
    /// System.IO.IOException.)</summary>
    public class NetworkIOException : ServicePointException
    {
        public NetworkIOException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_TOO_MANY_SERVICE_POINTS: the manager is at its max service points and none
    /// can be evicted.</summary>
    public class TooManyServicePointsException : ServicePointException
    {
        public TooManyServicePointsException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_CANCELED: the operation was canceled.</summary>
    public class CanceledException : ServicePointException
    {
        public CanceledException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_WRONG_THREAD: a blocking call was made from a library thread (a callback).</summary>
    public class WrongThreadException : ServicePointException
    {
        public WrongThreadException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_PANIC: an internal error (a Rust panic) was caught; the message has details.</summary>
    public class PanicException : ServicePointException
    {
        public PanicException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_NOT_FOUND: the looked-up item does not exist. The binding turns it into
    /// null for header and trailer lookups.</summary>
    public class NotFoundException : ServicePointException
    {
        public NotFoundException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_MANAGER_CLOSED: the service point's manager was disposed.</summary>
    public class ManagerClosedException : ServicePointException
    {
        public ManagerClosedException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

    /// <summary>SP_E_BODY_SOURCE: producing the streamed request body failed. When the body came
    /// from a Stream that threw, that exception is the InnerException.</summary>
    public class BodySourceException : ServicePointException
    {
        public BodySourceException(ErrorCode code, string message, bool requestSent, string function, Exception inner)
            : base(code, message, requestSent, function, inner) { }
    }

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

    // --- manager ------------------------------------------------------------------------------

    /// <summary>
    /// A connection manager, like .NET's System.Net.ServicePointManager but an instance: it owns
    /// one service point per origin (scheme, host, port) and the defaults new service points
    /// take (.NET's: connection limit 2, max service point idle time 100000 ms, max service
    /// points 0 = no limit, keep-alive on). Dispose closes idle connections now and busy ones
    /// when their responses are released; open ServicePoint objects then throw
    /// ManagerClosedException. Every member may be called from any thread, concurrently.
    /// </summary>
    public sealed class ServicePointManager : IDisposable
    {
        const string Name = "ServicePointManager";
        readonly NativeHandle _h;

        public ServicePointManager()
        {
            IntPtr h;
            Native.Check(Native.sp_manager_new(out h), "sp_manager_new");
            _h = new NativeHandle(h, HandleKind.Manager);
        }

        int Get(NativeHandle.GetI32 fn, string function) { return _h.Get(fn, Name, function); }

        void Set(NativeHandle.SetI32 fn, int value, string function) { _h.Set(fn, value, Name, function); }

        /// <summary>DefaultConnectionLimit: the connection limit service points created from now on
        /// take (existing ones keep theirs). Must be &gt; 0 (else OutOfRangeException, nothing changed).</summary>
        public int DefaultConnectionLimit
        {
            get { return Get(Native.sp_manager_get_default_connection_limit, "sp_manager_get_default_connection_limit"); }
            set { Set(Native.sp_manager_set_default_connection_limit, value, "sp_manager_set_default_connection_limit"); }
        }

        /// <summary>MaxServicePoints (0 = no limit). When full, a new origin evicts an unused service
        /// point (no busy connection, no open ServicePoint object), else TooManyServicePointsException.</summary>
        public int MaxServicePoints
        {
            get { return Get(Native.sp_manager_get_max_service_points, "sp_manager_get_max_service_points"); }
            set { Set(Native.sp_manager_set_max_service_points, value, "sp_manager_set_max_service_points"); }
        }

        /// <summary>MaxServicePointIdleTime in ms (-1 infinite): the max idle time new service points
        /// take, and how long an unused service point stays in the table.</summary>
        public int MaxServicePointIdleTime
        {
            get { return Get(Native.sp_manager_get_max_service_point_idle_time, "sp_manager_get_max_service_point_idle_time"); }
            set { Set(Native.sp_manager_set_max_service_point_idle_time, value, "sp_manager_set_max_service_point_idle_time"); }
        }

        /// <summary>Keep-alive for requests that do not set their own (default true).</summary>
        public bool KeepAliveDefault
        {
            get { return Get(Native.sp_manager_get_keep_alive_default, "sp_manager_get_keep_alive_default") != 0; }
            set { Set(Native.sp_manager_set_keep_alive_default, value ? 1 : 0, "sp_manager_set_keep_alive_default"); }
        }

        /// <summary>DnsRefreshTimeout in ms (default 120000, -1 no expiry, 0 resolve for every new
        /// connection): how long resolved addresses are reused for new connections.</summary>
        public int DnsRefreshTimeout
        {
            get { return Get(Native.sp_manager_get_dns_refresh_timeout, "sp_manager_get_dns_refresh_timeout"); }
            set { Set(Native.sp_manager_set_dns_refresh_timeout, value, "sp_manager_set_dns_refresh_timeout"); }
        }

        /// <summary>The number of service points the manager holds.</summary>
        public int ServicePointCount
        {
            get { return Get(Native.sp_manager_get_service_point_count, "sp_manager_get_service_point_count"); }
        }

        /// <summary>True once Dispose has been called.</summary>
        public bool IsDisposed
        {
            get { return _h.IsClosed; }
        }

        // --- TLS ------------------------------------------------------------------------------

        // The delegate itself (the library only knows whether one is installed).
        CertificateValidationCallback _validator;
        readonly object _validatorLock = new object();

        /// <summary>Trusts the CA certificates in a PEM buffer (one or more "BEGIN CERTIFICATE"
        /// blocks) for https, besides the system's trust store; applies to connections opened
        /// from now on. InvalidArgumentException if it holds no certificate or bad PEM.</summary>
        public void AddCaPem(byte[] pem)
        {
            if (pem == null) throw new ArgumentNullException("pem");
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.Check(Native.sp_manager_add_ca_pem(h, pem, Native.Size(pem.Length)), "sp_manager_add_ca_pem");
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>AddCaPem for PEM text.</summary>
        public void AddCaPem(string pem)
        {
            if (pem == null) throw new ArgumentNullException("pem");
            AddCaPem(Encoding.UTF8.GetBytes(pem));
        }

        /// <summary>Trusts the CA certificates in a PEM file, as AddCaPem. InvalidArgumentException
        /// if the file cannot be read or holds no certificate.</summary>
        public void AddCaFile(string path)
        {
            byte[] p = Native.Utf8Z(path, "path");
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.Check(Native.sp_manager_add_ca_file(h, p), "sp_manager_add_ca_file");
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>Whether the system's trust store is used (true, the default) or only the CAs
        /// added with AddCaPem/AddCaFile (false).</summary>
        public bool UseSystemRoots
        {
            get { return Get(Native.sp_manager_get_system_roots, "sp_manager_get_system_roots") != 0; }
            set { Set(Native.sp_manager_set_system_roots, value ? 1 : 0, "sp_manager_set_system_roots"); }
        }

        /// <summary>How many CA certificates were added with AddCaPem/AddCaFile (the system's
        /// trust store not counted).</summary>
        public int CaCount
        {
            get { return Get(Native.sp_manager_get_ca_count, "sp_manager_get_ca_count"); }
        }

        /// <summary>Whether a client certificate was set with SetClientCertificate.</summary>
        public bool HasClientCertificate
        {
            get { return Get(Native.sp_manager_has_client_certificate, "sp_manager_has_client_certificate") != 0; }
        }

        /// <summary>The lowest TLS version offered: Tls12 (default) or Tls13; another value gives
        /// OutOfRangeException.</summary>
        public TlsVersion MinTlsVersion
        {
            get { return (TlsVersion)Get(Native.sp_manager_get_min_tls_version, "sp_manager_get_min_tls_version"); }
            set { Set(Native.sp_manager_set_min_tls_version, (int)value, "sp_manager_set_min_tls_version"); }
        }

        /// <summary>Sets the client certificate chain and private key (both PEM) presented to
        /// servers that ask for one (mutual TLS). InvalidArgumentException for bad PEM or an
        /// unusable key.</summary>
        public void SetClientCertificate(byte[] certificatePem, byte[] privateKeyPem)
        {
            if (certificatePem == null) throw new ArgumentNullException("certificatePem");
            if (privateKeyPem == null) throw new ArgumentNullException("privateKeyPem");
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.Check(Native.sp_manager_set_client_certificate(h, certificatePem, Native.Size(certificatePem.Length),
                    privateKeyPem, Native.Size(privateKeyPem.Length)), "sp_manager_set_client_certificate");
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>SetClientCertificate for PEM text.</summary>
        public void SetClientCertificate(string certificatePem, string privateKeyPem)
        {
            if (certificatePem == null) throw new ArgumentNullException("certificatePem");
            if (privateKeyPem == null) throw new ArgumentNullException("privateKeyPem");
            SetClientCertificate(Encoding.UTF8.GetBytes(certificatePem), Encoding.UTF8.GetBytes(privateKeyPem));
        }

        /// <summary>A certificate validation callback (null: only the built-in verification
        /// decides, the default). Meant for tests and private networks, e.g. to pin a
        /// self-signed certificate; there is deliberately no switch that turns verification
        /// off. See CertificateValidationCallback.</summary>
        public CertificateValidationCallback ServerCertificateValidationCallback
        {
            get { return _validator; }
            set
            {
                lock (_validatorLock)
                {
                    IntPtr h = _h.Enter(Name);
                    try
                    {
                        long key = value != null ? CertificateValidation.Register(value) : 0;
                        int rc = Native.sp_manager_set_certificate_validator(h,
                            value != null ? CertificateValidation.Callback : null, new IntPtr(key));
                        if (rc != 0)
                        {
                            ServicePointException error = Native.Error(rc, "sp_manager_set_certificate_validator", null);
                            CertificateValidation.Unregister(key);
                            throw error;
                        }
                        // The old registration goes only now: a callback running on another
                        // thread that misses it just rejects.
                        CertificateValidation.Unregister(Interlocked.Exchange(ref _h.ValidatorKey, key));
                        _validator = value;
                    }
                    finally
                    {
                        _h.Exit();
                    }
                }
            }
        }

        /// <summary>FindServicePoint: the service point of the URI's origin, created if needed.
        /// Scheme and host compare case-insensitively, default ports are filled in; path, query
        /// and user info are ignored. Each call returns a new object (dispose it) for the same
        /// service point. Throws InvalidUrlException, UnsupportedSchemeException,
        /// TooManyServicePointsException.</summary>
        public ServicePoint FindServicePoint(string uri)
        {
            byte[] u = Native.Utf8Z(uri, "uri");
            IntPtr h = _h.Enter(Name);
            try
            {
                IntPtr point;
                Native.Check(Native.sp_find(h, u, out point), "sp_find");
                return new ServicePoint(point, this);
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>FindServicePoint for an absolute Uri.</summary>
        public ServicePoint FindServicePoint(Uri address)
        {
            if (address == null) throw new ArgumentNullException("address");
            if (!address.IsAbsoluteUri) throw new ArgumentException("the URI must be absolute", "address");
            return FindServicePoint(address.AbsoluteUri);
        }

        /// <summary>Sends a request on a pooled connection of its URL's service point and waits for
        /// the response head; read the body from the returned Response and dispose it to release
        /// the connection. Throws a ServicePointException subclass on failure (RequestSent tells
        /// whether the server may have seen the request).</summary>
        public Response GetResponse(HttpRequest request)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (request.Url == null) throw new ArgumentNullException("request.Url");
            byte[] method = request.EncodedMethod();
            byte[] url = request.EncodedUrl();
            IntPtr m = _h.Enter(Name);
            IntPtr req = IntPtr.Zero;
            BodyPump pump = null;
            GCHandle pumpHandle = default(GCHandle);
            try
            {
                Native.Check(Native.sp_http_request_new(method, url, out req), "sp_http_request_new");
                foreach (KeyValuePair<string, string> header in request.Headers)
                {
                    byte[] name = Native.Utf8Z(header.Key, "header name");
                    byte[] value = Native.Utf8Z(header.Value ?? "", "header value");
                    Native.Check(Native.sp_http_request_add_header(req, name, value), "sp_http_request_add_header");
                }
                if (request.Body != null)
                {
                    Native.Check(Native.sp_http_request_set_body(req, request.Body, Native.Size(request.Body.Length)),
                        "sp_http_request_set_body");
                }
                else if (request.BodyStream != null)
                {
                    pump = new BodyPump(request.BodyStream);
                    pumpHandle = GCHandle.Alloc(pump);
                    Native.Check(Native.sp_http_request_set_body_reader(req, BodyPump.Callback, GCHandle.ToIntPtr(pumpHandle)),
                        "sp_http_request_set_body_reader");
                }
                // The defaults are the library's own (see sp_http_request_new): no call needed.
                if (request.Timeout != HttpRequest.DefaultTimeout)
                {
                    Native.Check(Native.sp_http_request_set_timeout(req, request.Timeout), "sp_http_request_set_timeout");
                }
                if (request.ReadWriteTimeout != HttpRequest.DefaultReadWriteTimeout)
                {
                    Native.Check(Native.sp_http_request_set_read_timeout(req, request.ReadWriteTimeout), "sp_http_request_set_read_timeout");
                }
                if (request.KeepAlive.HasValue)
                {
                    Native.Check(Native.sp_http_request_set_keep_alive(req, request.KeepAlive.Value ? 1 : 0), "sp_http_request_set_keep_alive");
                }
                if (!string.IsNullOrEmpty(request.ConnectionGroupName))
                {
                    Native.Check(Native.sp_http_request_set_connection_group(req, Native.Utf8Z(request.ConnectionGroupName, "connection group name")),
                        "sp_http_request_set_connection_group");
                }
                if (request.Retryable)
                {
                    Native.Check(Native.sp_http_request_set_retryable(req, 1), "sp_http_request_set_retryable");
                }
                IntPtr resp;
                CertificateValidation.LastError = null;
                int rc = Native.sp_request(m, req, out resp);
                if (rc != 0)
                {
                    Exception inner = pump != null ? pump.Error : null;
                    if (inner == null) inner = CertificateValidation.LastError;
                    CertificateValidation.LastError = null;
                    throw Native.Error(rc, "sp_request", inner);
                }
                return new Response(resp, this);
            }
            finally
            {
                if (req != IntPtr.Zero) Native.sp_http_request_free(req);
                // The pump may go only after sp_request has returned.
                if (pumpHandle.IsAllocated) pumpHandle.Free();
                _h.Exit();
            }
        }

        /// <summary>Shorthand: GetResponse(new HttpRequest(method, url) { Body = body }).</summary>
        public Response Request(string method, string url, byte[] body = null)
        {
            var request = new HttpRequest(method, url);
            request.Body = body;
            return GetResponse(request);
        }

        /// <summary>Shorthand: a GET of url.</summary>
        public Response Get(string url)
        {
            return GetResponse(new HttpRequest("GET", url));
        }

        /// <summary>Frees the manager. Safe to call more than once.</summary>
        public void Dispose()
        {
            _h.Close();
        }

        public override string ToString()
        {
            return IsDisposed ? "ServicePointManager (disposed)" : "ServicePointManager";
        }
    }

    /// <summary>Adapts a Stream to sp_body_read_cb. The callback runs on the thread that called
    /// sp_request; an exception is stored and reported to the library as a non-zero return, which
    /// aborts the request with SP_E_BODY_SOURCE (BodySourceException with it as InnerException).</summary>
    internal sealed class BodyPump
    {
        // Kept in a static field: a collected delegate would crash on the next callback.
        internal static readonly Native.BodyReadCallback Callback = Read;

        readonly Stream _source;
        byte[] _buffer;
        internal Exception Error;

        internal BodyPump(Stream source)
        {
            _source = source;
        }

        static int Read(IntPtr userdata, IntPtr buf, UIntPtr cap, IntPtr outN)
        {
            BodyPump pump = null;
            try
            {
                pump = (BodyPump)GCHandle.FromIntPtr(userdata).Target;
                ulong capacity = cap.ToUInt64();
                int want = (int)Math.Min(capacity, 256UL * 1024);
                int got = 0;
                if (want > 0)
                {
                    if (buf == IntPtr.Zero) throw new InvalidOperationException("the library passed a NULL body buffer");
                    if (pump._buffer == null || pump._buffer.Length < want) pump._buffer = new byte[want];
                    got = pump._source.Read(pump._buffer, 0, want);
                    if (got < 0 || got > want) throw new InvalidOperationException("Stream.Read returned " + got);
                    if (got > 0) Marshal.Copy(pump._buffer, 0, buf, got);
                }
                Marshal.WriteIntPtr(outN, new IntPtr(got));
                return 0;
            }
            catch (Exception e)
            {
                // Must never unwind into the library.
                if (pump != null) pump.Error = e;
                return 1;
            }
        }
    }

    /// <summary>Routes sp_cert_validator_cb to the managed callbacks. The userdata is a key into
    /// a table, not a GCHandle, so a callback racing a replacement or a manager's Dispose finds
    /// no entry and rejects instead of touching a freed handle.</summary>
    internal static class CertificateValidation
    {
        // Kept in a static field: a collected delegate would crash on the next callback.
        internal static readonly Native.CertValidatorCallback Callback = Validate;

        static readonly Dictionary<long, CertificateValidationCallback> Table = new Dictionary<long, CertificateValidationCallback>();
        static long _next;

        /// <summary>The exception of the last validator that threw on this thread (the callback runs
        /// on the thread that called sp_request).</summary>
        [ThreadStatic]
        internal static Exception LastError;

        internal static long Register(CertificateValidationCallback callback)
        {
            long key = Interlocked.Increment(ref _next);
            lock (Table) Table[key] = callback;
            return key;
        }

        internal static void Unregister(long key)
        {
            if (key == 0) return;
            lock (Table) Table.Remove(key);
        }

        static int Validate(IntPtr userdata, IntPtr host, IntPtr certs, IntPtr certLens, UIntPtr count, int builtinResult)
        {
            try
            {
                CertificateValidationCallback callback;
                lock (Table)
                {
                    if (!Table.TryGetValue(userdata.ToInt64(), out callback)) return 0;
                }
                ulong n = count.ToUInt64();
                if (n > 64) throw new InvalidOperationException("a certificate chain of " + n + " certificates");
                var chain = new List<byte[]>((int)n);
                for (int i = 0; i < (int)n; i++)
                {
                    IntPtr cert = Marshal.ReadIntPtr(certs, i * IntPtr.Size);
                    long len = Marshal.ReadIntPtr(certLens, i * IntPtr.Size).ToInt64();
                    if (cert == IntPtr.Zero || len < 0 || len > 1 << 24) throw new InvalidOperationException("a bad certificate in the chain");
                    var der = new byte[len];
                    if (len > 0) Marshal.Copy(cert, der, 0, (int)len);
                    chain.Add(der);
                }
                return callback(Native.PtrToString(host) ?? "", chain.AsReadOnly(), (ErrorCode)builtinResult) ? 1 : 0;
            }
            catch (Exception e)
            {
                // Must never unwind into the library: an exception is a rejection.
                LastError = e;
                return 0;
            }
        }
    }

    // --- request description ------------------------------------------------------------------

    /// <summary>Request header fields in order (repeats allowed). Collection initializers work:
    /// <c>new HttpRequest(url) { Headers = { { "Accept", "text/plain" } } }</c>.</summary>
    public sealed class HeaderList : List<KeyValuePair<string, string>>
    {
        public void Add(string name, string value)
        {
            if (name == null) throw new ArgumentNullException("name");
            Add(new KeyValuePair<string, string>(name, value ?? ""));
        }

        /// <summary>The first value of field <paramref name="name"/> (case-insensitive), or null.</summary>
        public string Get(string name)
        {
            foreach (KeyValuePair<string, string> h in this)
            {
                if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) return h.Value;
            }
            return null;
        }
    }

    /// <summary>
    /// A request description, in the spirit of HttpWebRequest: method, URL, headers, body and
    /// per-request policy. Reusable: ServicePointManager.GetResponse does not change it (a
    /// BodyStream is read by that call, though).
    /// </summary>
    public sealed class HttpRequest
    {
        /// <summary>The library's default Timeout (ms), as HttpWebRequest.Timeout.</summary>
        public const int DefaultTimeout = 100000;

        /// <summary>The library's default ReadWriteTimeout (ms), as HttpWebRequest.ReadWriteTimeout.</summary>
        public const int DefaultReadWriteTimeout = 300000;

        public HttpRequest()
        {
            Method = "GET";
            Headers = new HeaderList();
            Timeout = DefaultTimeout;
            ReadWriteTimeout = DefaultReadWriteTimeout;
        }

        public HttpRequest(string url) : this()
        {
            Url = url;
        }

        public HttpRequest(string method, string url) : this()
        {
            Method = method;
            Url = url;
        }

        public HttpRequest(Uri url) : this()
        {
            if (url == null) throw new ArgumentNullException("url");
            Url = url.AbsoluteUri;
        }

        /// <summary>The method, e.g. "GET" (the default) or "POST".</summary>
        public string Method { get; set; }

        /// <summary>An absolute http(s) URL.</summary>
        public string Url { get; set; }

        // The UTF-8 forms of Method and Url, kept while the strings stay the same (a request sent
        // many times, from several threads, is encoded once).
        sealed class Encoded
        {
            internal readonly string Text;
            internal readonly byte[] Bytes;

            internal Encoded(string text, string what)
            {
                Text = text;
                Bytes = Native.Utf8Z(text, what);
            }
        }

        Encoded _method, _url;

        internal byte[] EncodedMethod()
        {
            string m = Method ?? "GET";
            Encoded e = _method;
            if (e == null || !ReferenceEquals(e.Text, m)) _method = e = new Encoded(m, "method");
            return e.Bytes;
        }

        internal byte[] EncodedUrl()
        {
            string u = Url;
            if (u == null) throw new ArgumentNullException("Url");
            Encoded e = _url;
            if (e == null || !ReferenceEquals(e.Text, u)) _url = e = new Encoded(u, "url");
            return e.Bytes;
        }

        /// <summary>Header fields, sent in order. Host and User-Agent replace the library's;
        /// Content-Length and Transfer-Encoding are refused (the body sets them);
        /// "Connection: close" turns keep-alive off.</summary>
        public HeaderList Headers { get; private set; }

        /// <summary>The body, sent with Content-Length (null: no body).</summary>
        public byte[] Body { get; set; }

        /// <summary>A streamed body, read to its end and sent with chunked transfer coding (used
        /// when Body is null; never retried automatically).</summary>
        public Stream BodyStream { get; set; }

        /// <summary>Keep-alive for this request; false sends "Connection: close" and does not reuse
        /// the connection; null (the default) takes the manager's KeepAliveDefault.</summary>
        public bool? KeepAlive { get; set; }

        /// <summary>Milliseconds (-1 infinite) for getting the response head, including the wait
        /// for a connection, connecting and sending. Default 100000.</summary>
        public int Timeout { get; set; }

        /// <summary>Milliseconds (-1 infinite) each body read may wait. Default 300000.</summary>
        public int ReadWriteTimeout { get; set; }

        /// <summary>The connection group (its own pool); null or "" is the default group.</summary>
        public string ConnectionGroupName { get; set; }

        /// <summary>Marks a non-idempotent request (POST, PATCH) safe to resend once on a new
        /// connection when a reused connection fails before any response byte. Idempotent
        /// methods with a replayable body are always retried so.</summary>
        public bool Retryable { get; set; }
    }

    // --- service point ------------------------------------------------------------------------

    /// <summary>A snapshot of a service point's statistics (struct sp_statistics).</summary>
    public sealed class ServicePointStatistics
    {
        internal ServicePointStatistics(Native.sp_statistics s)
        {
            Open = s.open;
            Idle = s.idle;
            Busy = s.busy;
            Waiting = s.waiting;
            ConnectionsOpened = s.connections_opened;
            Requests = s.requests;
            Reuses = s.reuses;
            Retries = s.retries;
            ClosedLease = s.closed_lease;
            ClosedIdle = s.closed_idle;
            ClosedKeepAliveOff = s.closed_keep_alive_off;
            ClosedServer = s.closed_server;
            ClosedStale = s.closed_stale;
            ClosedError = s.closed_error;
            ClosedMaxRequests = s.closed_max_requests;
            ClosedGroup = s.closed_group;
            ClosedAbandoned = s.closed_abandoned;
            TlsFullHandshakes = s.tls_full_handshakes;
            TlsResumedHandshakes = s.tls_resumed_handshakes;
            ClosedInFlight = s.closed_in_flight;
        }

        /// <summary>Open connections (idle + busy).</summary>
        public ulong Open { get; private set; }
        /// <summary>Idle connections in the pool.</summary>
        public ulong Idle { get; private set; }
        /// <summary>Connections serving a request whose response has not been released.</summary>
        public ulong Busy { get; private set; }
        /// <summary>Requests waiting for a connection.</summary>
        public ulong Waiting { get; private set; }
        /// <summary>Connections opened since the service point was created.</summary>
        public ulong ConnectionsOpened { get; private set; }
        /// <summary>Requests that received a response head.</summary>
        public ulong Requests { get; private set; }
        /// <summary>Requests sent on a reused connection.</summary>
        public ulong Reuses { get; private set; }
        /// <summary>Requests retried on a new connection after a stale reused one failed.</summary>
        public ulong Retries { get; private set; }
        /// <summary>Connections closed because their lease timeout expired.</summary>
        public ulong ClosedLease { get; private set; }
        /// <summary>Connections closed because they were idle longer than the max idle time.</summary>
        public ulong ClosedIdle { get; private set; }
        /// <summary>Connections closed because a request had keep-alive off.</summary>
        public ulong ClosedKeepAliveOff { get; private set; }
        /// <summary>Connections closed because the server said so (Connection: close, HTTP/1.0, EOF).</summary>
        public ulong ClosedServer { get; private set; }
        /// <summary>Idle connections found dead (EOF, reset, stray bytes) before reuse.</summary>
        public ulong ClosedStale { get; private set; }
        /// <summary>Connections closed after an error.</summary>
        public ulong ClosedError { get; private set; }
        /// <summary>Connections closed after their max requests (the server's or the service point's).</summary>
        public ulong ClosedMaxRequests { get; private set; }
        /// <summary>Connections closed by CloseConnectionGroup or disposing the manager.</summary>
        public ulong ClosedGroup { get; private set; }
        /// <summary>Connections closed because a response was disposed with much of its body unread.</summary>
        public ulong ClosedAbandoned { get; private set; }
        /// <summary>TLS connections opened with a full handshake.</summary>
        public ulong TlsFullHandshakes { get; private set; }
        /// <summary>TLS connections opened by resuming an earlier session (abbreviated handshake).</summary>
        public ulong TlsResumedHandshakes { get; private set; }
        /// <summary>Reused connections that failed under a request before any response byte (the
        /// server closed or reset them as the request arrived); the request was retried if
        /// allowed. Unlike ClosedStale (found dead before reuse), a request paid for it.</summary>
        public ulong ClosedInFlight { get; private set; }

        public override string ToString()
        {
            return string.Format(
                "open={0} idle={1} busy={2} waiting={3} opened={4} requests={5} reuses={6} retries={7} " +
                "closed: lease={8} idle={9} keep_alive_off={10} server={11} stale={12} error={13} " +
                "max_requests={14} group={15} abandoned={16} in_flight={19} tls: full={17} resumed={18}",
                Open, Idle, Busy, Waiting, ConnectionsOpened, Requests, Reuses, Retries, ClosedLease,
                ClosedIdle, ClosedKeepAliveOff, ClosedServer, ClosedStale, ClosedError,
                ClosedMaxRequests, ClosedGroup, ClosedAbandoned, TlsFullHandshakes, TlsResumedHandshakes,
                ClosedInFlight);
        }
    }

    /// <summary>
    /// One origin's (scheme, host, port) connections and settings, as .NET's ServicePoint.
    /// Obtained from ServicePointManager.FindServicePoint; the same origin always gives the same
    /// service point (each call returns a new object for it, so settings made through one are
    /// seen through the others). The object keeps the service point alive (it cannot be evicted
    /// while open); Dispose frees the object only, the service point stays in its manager. After
    /// the manager is disposed every member throws ManagerClosedException. Millisecond settings
    /// use -1 (Timeout.Infinite) for infinite. All members may be called from any thread.
    /// </summary>
    public sealed class ServicePoint : IDisposable
    {
        const string Name = "ServicePoint";
        static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        readonly NativeHandle _h;
        // Keeps the manager object (and so the native manager) alive while this object is.
        readonly ServicePointManager _manager;
        Uri _address;

        internal ServicePoint(IntPtr handle, ServicePointManager manager)
        {
            _h = new NativeHandle(handle, HandleKind.Point);
            _manager = manager;
        }

        int Get(NativeHandle.GetI32 fn, string function) { return _h.Get(fn, Name, function); }

        void Set(NativeHandle.SetI32 fn, int value, string function) { _h.Set(fn, value, Name, function); }

        /// <summary>The manager this service point belongs to.</summary>
        public ServicePointManager Manager
        {
            get { return _manager; }
        }

        /// <summary>The service point's address, scheme://host[:port] (default port omitted).</summary>
        public Uri Address
        {
            get
            {
                if (_address != null) return _address;
                IntPtr h = _h.Enter(Name);
                try
                {
                    IntPtr text;
                    Native.Check(Native.sp_get_address(h, out text), "sp_get_address");
                    _address = new Uri(Native.PtrToString(text));
                    return _address;
                }
                finally
                {
                    _h.Exit();
                }
            }
        }

        /// <summary>ConnectionLeaseTimeout in ms: -1 connections live forever (default); 0 every
        /// request carries "Connection: close" and gets a new connection; N a connection older
        /// than N ms is closed after its next request. Below -1: OutOfRangeException, nothing
        /// changed. Applies to existing connections too.</summary>
        public int ConnectionLeaseTimeout
        {
            get { return Get(Native.sp_get_lease_timeout, "sp_get_lease_timeout"); }
            set { Set(Native.sp_set_lease_timeout, value, "sp_set_lease_timeout"); }
        }

        /// <summary>ConnectionLimit: the most connections each connection group opens; further
        /// requests wait in FIFO order. Must be &gt; 0.</summary>
        public int ConnectionLimit
        {
            get { return Get(Native.sp_get_connection_limit, "sp_get_connection_limit"); }
            set { Set(Native.sp_set_connection_limit, value, "sp_set_connection_limit"); }
        }

        /// <summary>MaxIdleTime in ms (-1 infinite): idle connections older than this are closed
        /// by a background reaper.</summary>
        public int MaxIdleTime
        {
            get { return Get(Native.sp_get_max_idle_time, "sp_get_max_idle_time"); }
            set { Set(Native.sp_set_max_idle_time, value, "sp_set_max_idle_time"); }
        }

        /// <summary>Cap on the requests one connection serves (0 = no cap, the default); the last
        /// allowed request carries "Connection: close".</summary>
        public int MaxRequestsPerConnection
        {
            get { return Get(Native.sp_get_max_requests_per_connection, "sp_get_max_requests_per_connection"); }
            set { Set(Native.sp_set_max_requests_per_connection, value, "sp_set_max_requests_per_connection"); }
        }

        /// <summary>CurrentConnections: open connections, all groups.</summary>
        public int CurrentConnections
        {
            get { return Get(Native.sp_get_current_connections, "sp_get_current_connections"); }
        }

        /// <summary>IdleSince: when the service point was created or last finished a request (UTC).</summary>
        public DateTime IdleSince
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    long ms;
                    Native.Check(Native.sp_get_idle_since(h, out ms), "sp_get_idle_since");
                    return Epoch.AddMilliseconds(ms);
                }
                finally
                {
                    _h.Exit();
                }
            }
        }

        /// <summary>A snapshot of the service point's statistics.</summary>
        public ServicePointStatistics Statistics
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    var s = new Native.sp_statistics();
                    s.struct_size = (uint)Marshal.SizeOf(typeof(Native.sp_statistics));
                    Native.Check(Native.sp_get_statistics(h, ref s), "sp_get_statistics");
                    return new ServicePointStatistics(s);
                }
                finally
                {
                    _h.Exit();
                }
            }
        }

        /// <summary>CloseConnectionGroup: closes the named group's idle connections now and its busy
        /// ones when their responses are released; null or "" is the default group. True if the
        /// group existed.</summary>
        public bool CloseConnectionGroup(string connectionGroupName)
        {
            byte[] name = Native.Utf8Z(connectionGroupName ?? "", "connection group name");
            IntPtr h = _h.Enter(Name);
            try
            {
                int existed;
                Native.Check(Native.sp_close_connection_group(h, name, out existed), "sp_close_connection_group");
                return existed != 0;
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>True once Dispose has been called.</summary>
        public bool IsDisposed
        {
            get { return _h.IsClosed; }
        }

        /// <summary>Frees this object's handle (the service point stays in its manager). Safe to
        /// call more than once.</summary>
        public void Dispose()
        {
            _h.Close();
        }

        public override string ToString()
        {
            string address = _address != null ? _address.ToString() : "?";
            return "ServicePoint " + address + (IsDisposed ? " (disposed)" : "");
        }
    }

    // --- response -----------------------------------------------------------------------------

    /// <summary>
    /// A response: status, headers (wire order, repeats kept) and a body read as a stream, as
    /// HttpWebResponse. The connection stays taken (it counts against the connection limit)
    /// until the body has been read to the end or the response is disposed, so dispose
    /// responses promptly (a short unread remainder is then drained so the connection can be
    /// reused, a long one closes it). The head (status, headers, connection info) stays readable
    /// after Dispose; the body and trailers throw ObjectDisposedException. A response may move
    /// between threads, but should not be read from two threads at once.
    /// </summary>
    public sealed class Response : IDisposable
    {
        const string Name = "Response";

        readonly NativeHandle _h;
        // Keeps the manager object alive while the response is (its finalizer would free it).
        readonly ServicePointManager _owner;
        /// <summary>Set once sp_response_head is found missing (a library older than the binding,
        /// same ABI); then the head is read field by field. Internal for the tests.</summary>
        internal static volatile bool _noHeadFunction;
        static readonly Version Http10 = new Version(1, 0), Http11 = new Version(1, 1);
        HttpStatusCode _status;
        Version _version;
        string _reason;
        // The head as sp_response_head gave it; the header fields are parsed from it on first use.
        byte[] _head;
        int _headerStart;
        ReadOnlyCollection<KeyValuePair<string, string>> _headers;
        readonly ulong _connectionId;
        readonly bool _reused;
        readonly int _localPort;
        bool _eof;
        ResponseStream _stream;

        internal Response(IntPtr handle, ServicePointManager owner)
        {
            _h = new NativeHandle(handle, HandleKind.Response);
            _owner = owner;
            try
            {
                if (!_noHeadFunction)
                {
                    try
                    {
                        LoadHead(handle);
                    }
                    catch (EntryPointNotFoundException)
                    {
                        _noHeadFunction = true; // a library from before sp_response_head
                    }
                }
                if (_head == null) LoadHeadByFields(handle);
                int reused, port;
                Native.Check(Native.sp_response_connection_id(handle, out _connectionId), "sp_response_connection_id");
                Native.Check(Native.sp_response_connection_reused(handle, out reused), "sp_response_connection_reused");
                Native.Check(Native.sp_response_local_port(handle, out port), "sp_response_local_port");
                _reused = reused != 0;
                _localPort = port;
            }
            catch
            {
                _h.Close();
                throw;
            }
        }

        /// <summary>Copies the whole head with one call (sp_response_head) and parses the status
        /// line; the header fields are parsed from the copy on first use.</summary>
        void LoadHead(IntPtr handle)
        {
            IntPtr text;
            UIntPtr len;
            Native.Check(Native.sp_response_head(handle, out text, out len), "sp_response_head");
            ulong n = len.ToUInt64();
            if (n > int.MaxValue) throw new InvalidOperationException("response head too large");
            var head = new byte[n];
            if (n > 0) Marshal.Copy(text, head, 0, (int)n);
            // "HTTP/1.x SSS reason\r\n"
            int eol = IndexOfCrLf(head, 0);
            if (eol < 12 || head[8] != (byte)' ') throw new InvalidOperationException("unexpected response head from sp_response_head");
            int status = (head[9] - '0') * 100 + (head[10] - '0') * 10 + (head[11] - '0');
            _status = (HttpStatusCode)status;
            _version = head[7] == (byte)'1' ? Http11 : head[7] == (byte)'0' ? Http10 : new Version(head[5] - '0', head[7] - '0');
            _reason = eol > 13 ? Native.DecodeField(head, 13, eol - 13) : "";
            _headerStart = eol + 2;
            _head = head;
        }

        /// <summary>The head with one call per field (libraries without sp_response_head).</summary>
        void LoadHeadByFields(IntPtr handle)
        {
            int status, version;
            IntPtr reason;
            UIntPtr count;
            Native.Check(Native.sp_response_status(handle, out status), "sp_response_status");
            Native.Check(Native.sp_response_http_version(handle, out version), "sp_response_http_version");
            Native.Check(Native.sp_response_reason(handle, out reason), "sp_response_reason");
            Native.Check(Native.sp_response_header_count(handle, out count), "sp_response_header_count");
            ulong n = count.ToUInt64();
            var headers = new List<KeyValuePair<string, string>>((int)Math.Min(n, 1024UL));
            for (ulong i = 0; i < n; i++)
            {
                IntPtr name, value;
                Native.Check(Native.sp_response_header_at(handle, new UIntPtr(i), out name, out value), "sp_response_header_at");
                headers.Add(new KeyValuePair<string, string>(Native.PtrToField(name), Native.PtrToField(value)));
            }
            _status = (HttpStatusCode)status;
            _version = version == 11 ? Http11 : version == 10 ? Http10 : new Version(version / 10, version % 10);
            _reason = Native.PtrToField(reason);
            _headers = headers.AsReadOnly();
        }

        static int IndexOfCrLf(byte[] b, int from)
        {
            for (int i = from; i + 1 < b.Length; i++)
            {
                if (b[i] == (byte)'\r' && b[i + 1] == (byte)'\n') return i;
            }
            return -1;
        }

        ReadOnlyCollection<KeyValuePair<string, string>> ParsedHeaders()
        {
            ReadOnlyCollection<KeyValuePair<string, string>> headers = _headers;
            if (headers != null) return headers;
            byte[] head = _head;
            var list = new List<KeyValuePair<string, string>>();
            int pos = _headerStart;
            for (int guard = 0; guard < 100000; guard++)
            {
                int eol = IndexOfCrLf(head, pos);
                if (eol <= pos) break; // the empty line (or the end)
                int colon = Array.IndexOf(head, (byte)':', pos, eol - pos);
                if (colon < 0) colon = eol;
                int valueStart = Math.Min(colon + 1, eol);
                if (valueStart < eol && head[valueStart] == (byte)' ') valueStart++;
                list.Add(new KeyValuePair<string, string>(
                    Native.DecodeField(head, pos, colon - pos),
                    Native.DecodeField(head, valueStart, eol - valueStart)));
                pos = eol + 2;
            }
            headers = list.AsReadOnly();
            Interlocked.CompareExchange(ref _headers, headers, null);
            return _headers;
        }

        /// <summary>The manager that sent the request (kept alive while this response is).</summary>
        public ServicePointManager Manager
        {
            get { return _owner; }
        }

        /// <summary>The status code (cast to int for the number, e.g. 200).</summary>
        public HttpStatusCode StatusCode
        {
            get { return _status; }
        }

        /// <summary>The reason phrase, e.g. "OK" (may be empty).</summary>
        public string StatusDescription
        {
            get { return _reason; }
        }

        /// <summary>The response's HTTP version: 1.0 or 1.1.</summary>
        public Version ProtocolVersion
        {
            get { return _version; }
        }

        /// <summary>The header fields in wire order, names as received, repeats kept.</summary>
        public IList<KeyValuePair<string, string>> Headers
        {
            get { return ParsedHeaders(); }
        }

        /// <summary>The first value of header field <paramref name="name"/> (case-insensitive), or null.</summary>
        public string GetHeader(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            foreach (KeyValuePair<string, string> h in ParsedHeaders())
            {
                if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) return h.Value;
            }
            return null;
        }

        /// <summary>Every value of header field <paramref name="name"/> (case-insensitive), in wire order.</summary>
        public IList<string> GetHeaderValues(string name)
        {
            if (name == null) throw new ArgumentNullException("name");
            var values = new List<string>();
            foreach (KeyValuePair<string, string> h in ParsedHeaders())
            {
                if (string.Equals(h.Key, name, StringComparison.OrdinalIgnoreCase)) values.Add(h.Value);
            }
            return values;
        }

        /// <summary>The Content-Length header as a number, or -1 if absent or invalid (as
        /// HttpWebResponse.ContentLength).</summary>
        public long ContentLength
        {
            get
            {
                long n;
                string v = GetHeader("Content-Length");
                return v != null && long.TryParse(v.Trim(), out n) && n >= 0 ? n : -1;
            }
        }

        /// <summary>Id of the connection that served the response (unique in the process; equal
        /// ids mean a reused connection).</summary>
        public ulong ConnectionId
        {
            get { return _connectionId; }
        }

        /// <summary>True if the response came on a reused (kept-alive) connection.</summary>
        public bool ConnectionReused
        {
            get { return _reused; }
        }

        /// <summary>The client-side port of the connection (the peer port the server saw).</summary>
        public int LocalPort
        {
            get { return _localPort; }
        }

        /// <summary>True once Dispose has been called.</summary>
        public bool IsDisposed
        {
            get { return _h.IsClosed; }
        }

        /// <summary>The body as a read-only Stream (the same object on every call). Each Read waits
        /// at most the request's ReadWriteTimeout (ReadTimeoutException). Disposing the stream
        /// disposes the response, as with HttpWebResponse.</summary>
        public Stream GetResponseStream()
        {
            if (_h.IsClosed) throw new ObjectDisposedException(Name);
            ResponseStream s = _stream;
            if (s == null)
            {
                s = new ResponseStream(this);
                ResponseStream prior = Interlocked.CompareExchange(ref _stream, s, null);
                if (prior != null) s = prior;
            }
            return s;
        }

        /// <summary>Reads up to count body bytes (at least one, unless at the end) into buffer;
        /// 0 means the end of the body.</summary>
        public int Read(byte[] buffer, int offset, int count)
        {
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (offset < 0 || count < 0 || offset > buffer.Length - count)
                throw new ArgumentOutOfRangeException("offset", "offset and count do not describe a range of the buffer");
            IntPtr h = _h.Enter(Name);
            try
            {
                if (_eof || count == 0) return 0;
                UIntPtr got;
                int rc;
                if (offset == 0)
                {
                    rc = Native.sp_response_read_array(h, buffer, Native.Size(count), out got);
                }
                else
                {
                    GCHandle pin = GCHandle.Alloc(buffer, GCHandleType.Pinned);
                    try
                    {
                        rc = Native.sp_response_read(h, Marshal.UnsafeAddrOfPinnedArrayElement(buffer, offset),
                            Native.Size(count), out got);
                    }
                    finally
                    {
                        pin.Free();
                    }
                }
                Native.Check(rc, "sp_response_read");
                int n = (int)got.ToUInt64();
                if (n == 0) _eof = true;
                return n;
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>Reads the rest of the body (everything not yet read) and returns it; an empty
        /// array once the end has been reached.</summary>
        public byte[] ReadAll()
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                if (_eof) return new byte[0];
                IntPtr data;
                UIntPtr len;
                Native.Check(Native.sp_response_read_all(h, out data, out len), "sp_response_read_all");
                _eof = true;
                ulong n = len.ToUInt64();
                if (n > int.MaxValue) throw new InsufficientMemoryException("the body is larger than 2 GiB");
                var bytes = new byte[n];
                if (n > 0) Marshal.Copy(data, bytes, 0, (int)n);
                return bytes;
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>The first value of trailer field <paramref name="name"/> of a chunked body
        /// (case-insensitive), or null. Trailers are known once the body has been read to the end.</summary>
        public string GetTrailer(string name)
        {
            byte[] n = Native.Utf8Z(name, "name");
            IntPtr h = _h.Enter(Name);
            try
            {
                IntPtr value;
                int rc = Native.sp_response_trailer(h, n, out value);
                if (rc == (int)ErrorCode.NotFound) return null;
                Native.Check(rc, "sp_response_trailer");
                return Native.PtrToField(value);
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>Frees the native response, releasing its connection. Safe to call more than once.</summary>
        public void Dispose()
        {
            _h.Close();
        }

        /// <summary>Same as Dispose (HttpWebResponse's name).</summary>
        public void Close()
        {
            Dispose();
        }

        public override string ToString()
        {
            return string.Format("Response {0} {1} connection={2}{3}{4}", (int)_status, _reason, _connectionId,
                _reused ? " reused" : "", IsDisposed ? " (disposed)" : "");
        }
    }

    /// <summary>The read-only, forward-only body stream of a Response.</summary>
    internal sealed class ResponseStream : Stream
    {
        readonly Response _response;

        internal ResponseStream(Response response)
        {
            _response = response;
        }

        public override bool CanRead
        {
            get { return !_response.IsDisposed; }
        }

        public override bool CanSeek
        {
            get { return false; }
        }

        public override bool CanWrite
        {
            get { return false; }
        }

        public override long Length
        {
            get { throw new NotSupportedException("the response stream has no length; see Response.ContentLength"); }
        }

        public override long Position
        {
            get { throw new NotSupportedException(); }
            set { throw new NotSupportedException(); }
        }

        public override int Read(byte[] buffer, int offset, int count)
        {
            return _response.Read(buffer, offset, count);
        }

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin)
        {
            throw new NotSupportedException();
        }

        public override void SetLength(long value)
        {
            throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count)
        {
            throw new NotSupportedException();
        }

        protected override void Dispose(bool disposing)
        {
            if (disposing) _response.Dispose();
            base.Dispose(disposing);
        }
    }
}
