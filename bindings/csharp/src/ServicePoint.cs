// C# binding of libservicepoint (see include/servicepoint.h and ../README.md).

using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Threading;

namespace Servicepoint
{
    /// <summary>
    /// One origin's (scheme, host, port) connections and settings, as .NET's System.Net.ServicePoint.
    /// Obtained from HttpServicePointManager.FindServicePoint; the same origin always gives the same
    /// service point (each call returns a new object for it, so settings made through one are
    /// seen through the others). The object keeps the service point alive (it cannot be evicted
    /// while open); Dispose frees the object only, the service point stays in its manager. After
    /// the manager is disposed every member throws ManagerClosedException. Millisecond settings
    /// use -1 (Timeout.Infinite) for infinite. All members may be called from any thread.
    /// </summary>
    public sealed class HttpServicePoint : IDisposable
    {
        const string Name = "HttpServicePoint";
        static readonly DateTime Epoch = new DateTime(1970, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        readonly PointHandle _h;
        // Keeps the manager object (and so the native manager) alive while this object is.
        readonly HttpServicePointManager _manager;
        Uri _address;

        internal HttpServicePoint(IntPtr handle, HttpServicePointManager manager)
        {
            _h = new PointHandle(handle);
            _manager = manager;
        }

        int Get(SpSafeHandle.GetI32 fn, string function) { return _h.Get(fn, Name, function); }

        void Set(SpSafeHandle.SetI32 fn, int value, string function) { _h.Set(fn, value, Name, function); }

        /// <summary>The manager this service point belongs to.</summary>
        public HttpServicePointManager Manager
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
        /// <summary>ReceiveBufferSize: SO_RCVBUF of new connections in bytes, -1 for the system's
        /// default (the default).</summary>
        public int ReceiveBufferSize
        {
            get { return Get(Native.sp_get_receive_buffer_size, "sp_get_receive_buffer_size"); }
            set { Set(Native.sp_set_receive_buffer_size, value, "sp_set_receive_buffer_size"); }
        }

        /// <summary>SO_SNDBUF of new connections in bytes, -1 for the system's default.</summary>
        public int SendBufferSize
        {
            get { return Get(Native.sp_get_send_buffer_size, "sp_get_send_buffer_size"); }
            set { Set(Native.sp_set_send_buffer_size, value, "sp_set_send_buffer_size"); }
        }

        /// <summary>UseNagleAlgorithm for new connections (false by default: TCP_NODELAY, as
        /// modern .NET).</summary>
        public bool UseNagleAlgorithm
        {
            get { return Get(Native.sp_get_use_nagle_algorithm, "sp_get_use_nagle_algorithm") != 0; }
            set { Set(Native.sp_set_use_nagle_algorithm, value ? 1 : 0, "sp_set_use_nagle_algorithm"); }
        }

        /// <summary>Expect100Continue: a request with a body sends "Expect: 100-continue" and
        /// waits for the server's 100 before the body (false by default here, unlike .NET
        /// Framework; taken from the manager at creation). A server that never answers 100 is
        /// not asked again.</summary>
        public bool Expect100Continue
        {
            get { return Get(Native.sp_get_expect_100_continue, "sp_get_expect_100_continue") != 0; }
            set { Set(Native.sp_set_expect_100_continue, value ? 1 : 0, "sp_set_expect_100_continue"); }
        }

        /// <summary>How long a request waits for "100 Continue" before sending its body anyway,
        /// in ms (350 by default, as HttpWebRequest.ContinueTimeout; Timeout.Infinite: up to
        /// the request timeout).</summary>
        public int ContinueTimeout
        {
            get { return Get(Native.sp_get_expect_100_continue_timeout, "sp_get_expect_100_continue_timeout"); }
            set { Set(Native.sp_set_expect_100_continue_timeout, value, "sp_set_expect_100_continue_timeout"); }
        }

        /// <summary>Pipelining (false by default): with it on, a request that finds the
        /// connection limit reached and may be pipelined (an idempotent method such as GET or
        /// HEAD, no body or a Body array, no Expect: 100-continue, keep-alive on) is written on
        /// a busy connection behind the request being answered, up to PipelineDepth, instead of
        /// waiting for the connection to be free; responses come in order. Only to a server
        /// that answered HTTP/1.1 and has not shown it does not pipeline (SupportsPipelining).
        /// The next response on a connection is read only once the previous one's body was read
        /// to the end or its response disposed: holding a response delays those behind it. When
        /// a connection ends early, the requests behind the last answered one are sent again,
        /// once, on another connection. Applies to requests queued from now on;
        /// HttpRequest.Pipelined overrides it per request.</summary>
        public bool Pipelining
        {
            get { return Get(Native.sp_get_pipelining, "sp_get_pipelining") != 0; }
            set { Set(Native.sp_set_pipelining, value ? 1 : 0, "sp_set_pipelining"); }
        }

        /// <summary>The most requests in flight on one connection when Pipelining is on, the
        /// one being answered included: 1..64 (default 8; 1 pipelines nothing). Out of range
        /// throws OutOfRangeException, nothing changed.</summary>
        public int PipelineDepth
        {
            get { return Get(Native.sp_get_pipeline_depth, "sp_get_pipeline_depth"); }
            set { Set(Native.sp_set_pipeline_depth, value, "sp_set_pipeline_depth"); }
        }

        /// <summary>How long connecting (and the TLS handshake) may take, in ms;
        /// Timeout.Infinite (-1, the default) leaves it to the request timeout.</summary>
        public int ConnectTimeout
        {
            get { return Get(Native.sp_get_connect_timeout, "sp_get_connect_timeout"); }
            set { Set(Native.sp_set_connect_timeout, value, "sp_set_connect_timeout"); }
        }

        /// <summary>SetTcpKeepAlive: keep-alive probes on new connections (times in ms, &gt; 0
        /// when enabled).</summary>
        public void SetTcpKeepAlive(bool enabled, int keepAliveTime, int keepAliveInterval)
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.Check(Native.sp_set_tcp_keep_alive(h, enabled ? 1 : 0, keepAliveTime, keepAliveInterval),
                    "sp_set_tcp_keep_alive");
            }
            finally { _h.Exit(); }
        }

        /// <summary>The local address new connections bind before connecting ("IP" or
        /// "IP:port"); null lets the system choose (BindIPEndPointDelegate with a fixed
        /// answer).</summary>
        public string LocalAddress
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    var buf = new byte[64];
                    UIntPtr len;
                    Native.Check(Native.sp_get_local_address(h, buf, (UIntPtr)buf.Length, out len),
                        "sp_get_local_address");
                    int n = (int)len;
                    return n == 0 ? null : System.Text.Encoding.UTF8.GetString(buf, 0, Math.Min(n, buf.Length - 1));
                }
                finally { _h.Exit(); }
            }
            set
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    byte[] text = value == null ? null : Native.Utf8Z(value, "LocalAddress");
                    Native.Check(Native.sp_set_local_address(h, text), "sp_set_local_address");
                }
                finally { _h.Exit(); }
            }
        }

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

        /// <summary>ProtocolVersion: the HTTP version the server answers with, 1.1 until a
        /// response arrives (as .NET), then the last response's (1.0 or 1.1).</summary>
        public Version ProtocolVersion
        {
            get
            {
                int v = Get(Native.sp_get_protocol_version, "sp_get_protocol_version");
                return new Version(v / 10, v % 10);
            }
        }

        /// <summary>ConnectionName: the scheme, "http" or "https".</summary>
        public string ConnectionName
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    IntPtr text;
                    Native.Check(Native.sp_get_connection_name(h, out text), "sp_get_connection_name");
                    return Native.PtrToString(text);
                }
                finally { _h.Exit(); }
            }
        }

        /// <summary>SupportsPipelining: true until the server shows it does not pipeline (a
        /// response says HTTP/1.0, a connection ends unannounced after the first pipelined batch,
        /// or a pipelined request gets an answer out of protocol), then false for good (as .NET
        /// Framework). Requests are pipelined (Pipelining) only while it is true and after a
        /// response said HTTP/1.1.</summary>
        public bool SupportsPipelining
        {
            get { return Get(Native.sp_get_supports_pipelining, "sp_get_supports_pipelining") != 0; }
        }

        /// <summary>Certificate: the server's end-entity certificate on the service point's last
        /// new TLS connection (a new X509Certificate per call, from the DER bytes); null before
        /// the first one and for http, as .NET.</summary>
        public X509Certificate Certificate
        {
            get
            {
                byte[] der = CertificateData;
                return der == null ? null : new X509Certificate(der);
            }
        }

        /// <summary>The DER bytes of <see cref="Certificate"/> (a copy), or null.</summary>
        public byte[] CertificateData
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                try
                {
                    UIntPtr len;
                    int rc = Native.sp_get_certificate(h, null, UIntPtr.Zero, out len);
                    // Another thread's new connection may bring another certificate between calls.
                    for (int attempt = 0; attempt < 8; attempt++)
                    {
                        if (rc == (int)ErrorCode.NotFound) return null;
                        Native.Check(rc, "sp_get_certificate");
                        ulong n = len.ToUInt64();
                        if (n > int.MaxValue) throw new InvalidOperationException("certificate too large");
                        var der = new byte[n];
                        rc = Native.sp_get_certificate(h, der, new UIntPtr(n), out len);
                        if (rc == 0 && len.ToUInt64() <= n)
                        {
                            if (len.ToUInt64() == n) return der;
                            Array.Resize(ref der, (int)len.ToUInt64());
                            return der;
                        }
                    }
                    throw new InvalidOperationException("the certificate kept changing while it was read");
                }
                finally { _h.Exit(); }
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

        /// <summary>A histogram of this service point.</summary>
        public DurationHistogram GetHistogram(HistogramKind kind)
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.sp_histogram hist = DurationHistogram.Empty();
                Native.Check(Native.sp_get_histogram(h, (int)kind, ref hist), "sp_get_histogram");
                return new DurationHistogram(kind, ref hist);
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>How long each request waited for a connection (0 included).</summary>
        public DurationHistogram QueueWaitHistogram
        {
            get { return GetHistogram(HistogramKind.QueueWait); }
        }

        /// <summary>How long connections lived, connect to close, per closed connection.</summary>
        public DurationHistogram ConnectionLifetimeHistogram
        {
            get { return GetHistogram(HistogramKind.ConnectionLifetime); }
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
            _h.Dispose();
        }

        public override string ToString()
        {
            string address = _address != null ? _address.ToString() : "?";
            return "HttpServicePoint " + address + (IsDisposed ? " (disposed)" : "");
        }
    }

    // --- response -----------------------------------------------------------------------------

}
