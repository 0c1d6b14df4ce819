// C# binding of libservicepoint (see include/servicepoint.h and ../README.md).

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
}
