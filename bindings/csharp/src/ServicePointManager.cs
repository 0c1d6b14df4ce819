// C# binding of libservicepoint (see include/servicepoint.h and ../README.md).

using System;
using System.Collections.Generic;
using System.Collections.ObjectModel;
using System.IO;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using System.Threading;
using System.Threading.Tasks;

namespace Servicepoint
{
    // --- manager ------------------------------------------------------------------------------

    /// <summary>
    /// A connection manager, like .NET's System.Net.ServicePointManager but an instance: it owns
    /// one service point per origin (scheme, host, port) and the defaults new service points
    /// take (.NET's: connection limit 2, max service point idle time 100000 ms, max service
    /// points 0 = no limit, keep-alive on). Dispose closes idle connections now and busy ones
    /// when their responses are released; open HttpServicePoint objects then throw
    /// ManagerClosedException. Every member may be called from any thread, concurrently.
    /// </summary>
    public sealed class HttpServicePointManager : IDisposable
    {
        const string Name = "HttpServicePointManager";
        readonly ManagerHandle _h;

        public HttpServicePointManager()
        {
            IntPtr h;
            Native.Check(Native.sp_manager_new(out h), "sp_manager_new");
            _h = new ManagerHandle(h);
            Id = Interlocked.Increment(ref _lastId);
            UpdateTraceLevel();
        }

        static int _lastId;
        // The log callback while installed: the library holds it, so the manager keeps it
        // reachable (ServicepointTrace.Callback is static as well).
        Native.LogCallback _logCallback;
        readonly object _logLock = new object();

        /// <summary>A number identifying this manager in the process (the event id of its
        /// ServicepointTrace messages).</summary>
        public int Id { get; private set; }

        /// <summary>Applies ServicepointTrace.Source's switch level to this manager: installs
        /// the native log callback at the matching level, or removes it when the switch is off
        /// (then logging costs nothing). Called by the constructor; call it again after
        /// changing the switch.</summary>
        public void UpdateTraceLevel()
        {
            lock (_logLock)
            {
                int level = ServicepointTrace.NativeLevel();
                IntPtr h = _h.Enter(Name);
                if (level == Native.SP_LOG_OFF)
                {
                    if (_logCallback == null) return;
                    Native.Check(Native.sp_manager_set_log_callback(h, Native.SP_LOG_OFF, null, IntPtr.Zero), "sp_manager_set_log_callback");
                    _logCallback = null;
                    return;
                }
                Native.LogCallback cb = ServicepointTrace.Callback;
                _logCallback = cb;
                // Messages logged on library threads (the idle reaper, asynchronous requests) go
                // through the completion pump's managed thread: Mono must never be entered from
                // a library thread (it then hangs at exit).
                Native.Check(Native.sp_manager_set_log_queue(h, CompletionPump.Queue), "sp_manager_set_log_queue");
                Native.Check(Native.sp_manager_set_log_callback(h, level, cb, new IntPtr(Id)), "sp_manager_set_log_callback");
            }
        }

        /// <summary>The level the native logging is set at, as the SourceLevels that give it
        /// (SourceLevels.Off when off).</summary>
        public System.Diagnostics.SourceLevels TraceLevel
        {
            get
            {
                switch (Get(Native.sp_manager_get_log_level, "sp_manager_get_log_level"))
                {
                    case Native.SP_LOG_ERROR: return System.Diagnostics.SourceLevels.Error;
                    case Native.SP_LOG_WARN: return System.Diagnostics.SourceLevels.Warning;
                    case Native.SP_LOG_INFO: return System.Diagnostics.SourceLevels.Information;
                    case Native.SP_LOG_DEBUG: return System.Diagnostics.SourceLevels.Verbose;
                    default: return System.Diagnostics.SourceLevels.Off;
                }
            }
        }

        /// <summary>Statistics summed over the manager's service points: open connections by
        /// state (Idle, Busy), requests, reuses, closes by reason...</summary>
        public ServicePointStatistics Statistics
        {
            get
            {
                IntPtr h = _h.Enter(Name);
                var s = new Native.sp_statistics();
                s.struct_size = (uint)Marshal.SizeOf(typeof(Native.sp_statistics));
                Native.Check(Native.sp_manager_get_statistics(h, ref s), "sp_manager_get_statistics");
                return new ServicePointStatistics(s);
            }
        }

        /// <summary>A histogram summed over the manager's service points.</summary>
        public DurationHistogram GetHistogram(HistogramKind kind)
        {
            IntPtr h = _h.Enter(Name);
            Native.sp_histogram hist = DurationHistogram.Empty();
            Native.Check(Native.sp_manager_get_histogram(h, (int)kind, ref hist), "sp_manager_get_histogram");
            return new DurationHistogram(kind, ref hist);
        }

        /// <summary>How long requests waited for a connection, over every service point.</summary>
        public DurationHistogram QueueWaitHistogram
        {
            get { return GetHistogram(HistogramKind.QueueWait); }
        }

        /// <summary>How long connections lived (connect to close), over every service point.</summary>
        public DurationHistogram ConnectionLifetimeHistogram
        {
            get { return GetHistogram(HistogramKind.ConnectionLifetime); }
        }

        int Get(SpSafeHandle.GetI32 fn, string function) { return _h.Get(fn, Name, function); }

        void Set(SpSafeHandle.SetI32 fn, int value, string function) { _h.Set(fn, value, Name, function); }

        /// <summary>DefaultConnectionLimit: the connection limit service points created from now on
        /// take (existing ones keep theirs). Must be &gt; 0 (else OutOfRangeException, nothing changed).</summary>
        public int DefaultConnectionLimit
        {
            get { return Get(Native.sp_manager_get_default_connection_limit, "sp_manager_get_default_connection_limit"); }
            set { Set(Native.sp_manager_set_default_connection_limit, value, "sp_manager_set_default_connection_limit"); }
        }

        /// <summary>MaxServicePoints (0 = no limit). When full, a new origin evicts an unused service
        /// point (no busy connection, no open HttpServicePoint object), else TooManyServicePointsException.</summary>
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

        /// <summary>The manager-wide proxy as a URL, "http://[user[:password]@]host[:port]"
        /// (normalised; user and password percent-encoded, sent as Basic credentials), or null
        /// for direct connections (the default). Plain http goes to the proxy in absolute form,
        /// pooled on the proxy's service point for every origin behind it; https goes through a
        /// CONNECT tunnel, one service point per (proxy, origin), with TLS to the origin.
        /// Origins on <see cref="ProxyBypass"/> go direct. Throws InvalidUrlException,
        /// UnsupportedSchemeException (not an http:// proxy).</summary>
        public string ProxyUrl
        {
            get
            {
                string text = GetText(Native.sp_manager_get_proxy, "sp_manager_get_proxy");
                return text.Length == 0 ? null : text;
            }
            set { SetText(Native.sp_manager_set_proxy, value, "sp_manager_set_proxy"); }
        }

        /// <summary>The proxy as a System.Net.WebProxy (as WebRequest.DefaultWebProxy): its
        /// Address and Credentials (a NetworkCredential, sent as Basic) become
        /// <see cref="ProxyUrl"/>; its BypassList (entries in this library's syntax: hosts,
        /// ".domain" suffixes, IP addresses or CIDR blocks, "*"; not regular expressions) and
        /// BypassProxyOnLocal (names without a dot and loopback) become
        /// <see cref="ProxyBypass"/>. null, or a WebProxy without an Address: no proxy. The
        /// getter builds a new WebProxy from the manager's settings.</summary>
        public WebProxy Proxy
        {
            get
            {
                string url = ProxyUrl;
                var proxy = new WebProxy();
                if (url != null)
                {
                    var uri = new Uri(url);
                    proxy.Address = new Uri(uri.Scheme + "://" + uri.Authority);
                    if (uri.UserInfo.Length > 0)
                    {
                        string[] parts = uri.UserInfo.Split(new[] { ':' }, 2);
                        proxy.Credentials = new NetworkCredential(Uri.UnescapeDataString(parts[0]),
                            parts.Length > 1 ? Uri.UnescapeDataString(parts[1]) : "");
                    }
                }
                var entries = new List<string>();
                foreach (string e in ProxyBypass.Split(new[] { ',', ' ' }, StringSplitOptions.RemoveEmptyEntries))
                {
                    if (e == "<local>") proxy.BypassProxyOnLocal = true;
                    else entries.Add(e);
                }
                proxy.BypassList = entries.ToArray();
                return proxy;
            }
            set
            {
                if (value == null || value.Address == null)
                {
                    ProxyUrl = null;
                    return;
                }
                var bypass = new List<string>(value.BypassList ?? new string[0]);
                if (value.BypassProxyOnLocal) bypass.AddRange(new[] { "<local>", "localhost", "127.0.0.0/8", "::1" });
                ProxyBypass = string.Join(", ", bypass.ToArray());
                ProxyUrl = HttpRequest.ProxyText(new WebProxy(value.Address) { Credentials = value.Credentials }, new Uri("http://servicepoint.invalid/"));
            }
        }

        /// <summary>The bypass list: origins that go direct (default "localhost, 127.0.0.0/8,
        /// ::1", loopback). Entries separated by commas, semicolons or spaces: "*", a host and
        /// its subdomains ("example.com", ".example.com"), an IP address or CIDR block, each with
        /// an optional ":port", and "&lt;local&gt;" (names without a dot). "" sends loopback through
        /// the proxy too. Throws InvalidArgumentException for a bad entry.</summary>
        public string ProxyBypass
        {
            get { return GetText(Native.sp_manager_get_proxy_bypass, "sp_manager_get_proxy_bypass"); }
            set
            {
                if (value == null) throw new ArgumentNullException("value");
                SetText(Native.sp_manager_set_proxy_bypass, value, "sp_manager_set_proxy_bypass");
            }
        }

        /// <summary>Opt-in (default false) to http_proxy, https_proxy, all_proxy and no_proxy
        /// (lower case first, then upper case), read when set to true; a proxy set on the
        /// manager takes precedence.</summary>
        public bool UseEnvironmentProxy
        {
            get { return Get(Native.sp_manager_get_use_environment_proxy, "sp_manager_get_use_environment_proxy") != 0; }
            set { Set(Native.sp_manager_set_use_environment_proxy, value ? 1 : 0, "sp_manager_set_use_environment_proxy"); }
        }

        delegate int TextGetter(IntPtr h, byte[] buf, UIntPtr cap, out UIntPtr len);

        string GetText(TextGetter getter, string function)
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                var buf = new byte[256];
                UIntPtr len;
                Native.Check(getter(h, buf, (UIntPtr)buf.Length, out len), function);
                if ((ulong)len >= (ulong)buf.Length)
                {
                    buf = new byte[(int)len + 1];
                    Native.Check(getter(h, buf, (UIntPtr)buf.Length, out len), function);
                }
                return Encoding.UTF8.GetString(buf, 0, (int)len);
            }
            finally { _h.Exit(); }
        }

        void SetText(Func<IntPtr, byte[], int> setter, string value, string function)
        {
            byte[] text = value == null ? null : Native.Utf8Z(value, function);
            IntPtr h = _h.Enter(Name);
            try { Native.Check(setter(h, text), function); }
            finally { _h.Exit(); }
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

        /// <summary>UseNagleAlgorithm: what service points created from now on take (false by
        /// default: TCP_NODELAY, as modern .NET).</summary>
        public bool UseNagleAlgorithm
        {
            get { return Get(Native.sp_manager_get_use_nagle_algorithm, "sp_manager_get_use_nagle_algorithm") != 0; }
            set { Set(Native.sp_manager_set_use_nagle_algorithm, value ? 1 : 0, "sp_manager_set_use_nagle_algorithm"); }
        }

        /// <summary>EnableDnsRoundRobin: each new connection starts at the next of its host's
        /// addresses (false by default: the order resolved). Applies to every service point.</summary>
        public bool EnableDnsRoundRobin
        {
            get { return Get(Native.sp_manager_get_enable_dns_round_robin, "sp_manager_get_enable_dns_round_robin") != 0; }
            set { Set(Native.sp_manager_set_enable_dns_round_robin, value ? 1 : 0, "sp_manager_set_enable_dns_round_robin"); }
        }

        /// <summary>Pins host:port to IP addresses (tried in that order) for every new
        /// connection, without a lookup (curl's CURLOPT_RESOLVE); null removes the pin.</summary>
        public void SetResolve(string host, int port, params string[] addresses)
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                byte[] list = addresses == null ? null : Native.Utf8Z(string.Join(",", addresses), "addresses");
                Native.Check(Native.sp_manager_set_resolve(h, Native.Utf8Z(host, "host"), port, list), "sp_manager_set_resolve");
            }
            finally { _h.Exit(); }
        }

        /// <summary>Expect100Continue: what service points created from now on take (false by
        /// default here, unlike .NET Framework's true).</summary>
        public bool Expect100Continue
        {
            get { return Get(Native.sp_manager_get_expect_100_continue, "sp_manager_get_expect_100_continue") != 0; }
            set { Set(Native.sp_manager_set_expect_100_continue, value ? 1 : 0, "sp_manager_set_expect_100_continue"); }
        }

        /// <summary>SetTcpKeepAlive: the keep-alive probes service points created from now on
        /// take (times in ms, &gt; 0 when enabled).</summary>
        public void SetTcpKeepAlive(bool enabled, int keepAliveTime, int keepAliveInterval)
        {
            IntPtr h = _h.Enter(Name);
            try
            {
                Native.Check(Native.sp_manager_set_tcp_keep_alive(h, enabled ? 1 : 0, keepAliveTime, keepAliveInterval),
                    "sp_manager_set_tcp_keep_alive");
            }
            finally { _h.Exit(); }
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
        public HttpServicePoint FindServicePoint(string uri)
        {
            byte[] u = Native.Utf8Z(uri, "uri");
            IntPtr h = _h.Enter(Name);
            try
            {
                IntPtr point;
                Native.Check(Native.sp_find(h, u, out point), "sp_find");
                return new HttpServicePoint(point, this);
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>FindServicePoint(Uri, IWebProxy): the service point a request for
        /// <paramref name="address"/> uses through <paramref name="proxy"/> (null: direct, as in
        /// .NET; see HttpRequest.Proxy for how an IWebProxy is read). For plain http through a
        /// proxy it is the proxy's service point (its Address is the proxy's, shared by every
        /// origin behind it); for https, the tunnel's (one per proxy and origin). The manager's
        /// bypass list applies.</summary>
        public HttpServicePoint FindServicePoint(Uri address, IWebProxy proxy)
        {
            if (address == null) throw new ArgumentNullException("address");
            byte[] u = Native.Utf8Z(address.AbsoluteUri, "uri");
            byte[] p = Native.Utf8Z(proxy == null ? "" : HttpRequest.ProxyText(proxy, address), "proxy");
            IntPtr h = _h.Enter(Name);
            try
            {
                IntPtr point;
                Native.Check(Native.sp_find_with_proxy(h, u, p, out point), "sp_find_with_proxy");
                return new HttpServicePoint(point, this);
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>FindServicePoint(string, IWebProxy): as the Uri overload.</summary>
        public HttpServicePoint FindServicePoint(string uriString, IWebProxy proxy)
        {
            if (uriString == null) throw new ArgumentNullException("uriString");
            return FindServicePoint(new Uri(uriString), proxy);
        }

        /// <summary>FindServicePoint for an absolute Uri.</summary>
        public HttpServicePoint FindServicePoint(Uri address)
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
            return GetResponse(request, CancellationToken.None);
        }

        /// <summary>GetResponse that <paramref name="cancellationToken"/> cancels from any thread
        /// (HttpWebRequest.Abort): the blocked call then throws OperationCanceledException at
        /// once (a queued request leaves the queue unsent; one in flight closes its
        /// connection). The token also cancels the response's body reads until the response is
        /// disposed.</summary>
        public Response GetResponse(HttpRequest request, CancellationToken cancellationToken)
        {
            if (request == null) throw new ArgumentNullException("request");
            if (request.Url == null) throw new ArgumentNullException("request.Url");
            cancellationToken.ThrowIfCancellationRequested();
            byte[] method = request.EncodedMethod();
            byte[] url = request.EncodedUrl();
            IntPtr m = _h.Enter(Name);
            IntPtr req = IntPtr.Zero;
            BodyPump pump = null;
            GCHandle pumpHandle = default(GCHandle);
            NativeCancel cancel = null;
            try
            {
                req = NewDescription(request, method, url, ref pump, ref pumpHandle);
                cancel = NativeCancel.Attach(req, cancellationToken);
                IntPtr resp;
                CertificateValidation.LastError = null;
                int rc = Native.sp_request(m, req, out resp);
                if (rc != 0)
                {
                    Exception inner = pump != null ? pump.Error : null;
                    if (inner == null) inner = CertificateValidation.LastError;
                    CertificateValidation.LastError = null;
                    ServicePointException error = Native.Error(rc, "sp_request", inner);
                    throw Cancellation.Map(error, cancellationToken);
                }
                NativeCancel owned = cancel;
                cancel = null; // the response owns it now (it disposes it on error too)
                return new Response(resp, this, owned);
            }
            finally
            {
                if (cancel != null) cancel.Dispose();
                if (req != IntPtr.Zero) Native.sp_http_request_free(req);
                // The pump may go only after sp_request has returned.
                if (pumpHandle.IsAllocated) pumpHandle.Free();
                _h.Exit();
            }
        }

        /// <summary>Sends a request without blocking a thread (sp_request_async_queued): the
        /// Task completes with the Response once its head has arrived, or faults with the
        /// ServicePointException GetResponse would throw. The completion runs on the binding's
        /// pump thread and continuations on the thread pool; no library thread runs managed
        /// code. Canceling <paramref name="cancellationToken"/> cancels the request (a queued
        /// one leaves the queue unsent, one in flight closes its connection) and the Task is
        /// canceled (TaskCanceledException); a response arriving as it is canceled is freed.
        /// A request with a BodyStream, or sent by a manager with a
        /// ServerCertificateValidationCallback, is sent instead by the blocking GetResponse on
        /// a thread-pool thread (the library would call the stream or the validator on its own
        /// thread, which Mono then waits for at exit): same result, same cancellation, but it
        /// holds a pool thread until the head has arrived.</summary>
        public Task<Response> GetResponseAsync(HttpRequest request, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (request == null) throw new ArgumentNullException("request");
            if (request.Url == null) throw new ArgumentNullException("request.Url");
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<Response>(cancellationToken);
            if (request.BodyStream != null || _validator != null)
            {
                // Task.Run with the token: the OperationCanceledException GetResponse throws
                // for this token makes the Task canceled, as the queued path does.
                return Task.Run(() => GetResponse(request, cancellationToken), cancellationToken);
            }
            byte[] method = request.EncodedMethod();
            byte[] url = request.EncodedUrl();
            IntPtr queue = CompletionPump.Queue;
            IntPtr m = _h.Enter(Name);
            IntPtr req = IntPtr.Zero;
            var state = new AsyncRequest(this, cancellationToken);
            GCHandle self = default(GCHandle);
            bool started = false;
            try
            {
                req = NewDescription(request, method, url, ref state.Pump, ref state.PumpHandle);
                self = GCHandle.Alloc(state);
                IntPtr op;
                int rc = Native.sp_request_async_queued(m, req, queue, AsyncRequest.Callback, GCHandle.ToIntPtr(self), out op);
                if (rc != 0) return Task.FromException<Response>(Native.Error(rc, "sp_request_async", null));
                started = true;
                state.Started(op);
                return state.Completion.Task;
            }
            finally
            {
                // The description is borrowed only by the call; the pump lives until the callback.
                if (req != IntPtr.Zero) Native.sp_http_request_free(req);
                if (!started)
                {
                    if (self.IsAllocated) self.Free();
                    if (state.PumpHandle.IsAllocated) state.PumpHandle.Free();
                }
                _h.Exit();
            }
        }

        /// <summary>BeginGetResponse (APM, as HttpWebRequest's) over GetResponseAsync: callback
        /// runs on the thread pool when the response head has arrived; call EndGetResponse
        /// with the IAsyncResult (its AsyncState is <paramref name="state"/>).</summary>
        public IAsyncResult BeginGetResponse(HttpRequest request, AsyncCallback callback, object state)
        {
            return Apm.Begin(GetResponseAsync(request), callback, state);
        }

        /// <summary>Waits for and returns the response of BeginGetResponse; throws what
        /// GetResponse would.</summary>
        public Response EndGetResponse(IAsyncResult asyncResult)
        {
            return Apm.End<Response>(asyncResult, "BeginGetResponse");
        }

        /// <summary>A native description of <paramref name="request"/> (free it with
        /// sp_http_request_free); a BodyStream gets a pump, whose GCHandle the caller frees
        /// once the send is over.</summary>
        static IntPtr NewDescription(HttpRequest request, byte[] method, byte[] url, ref BodyPump pump, ref GCHandle pumpHandle)
        {
            IntPtr req;
            Native.Check(Native.sp_http_request_new(method, url, out req), "sp_http_request_new");
            try
            {
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
                if (request.Pipelined.HasValue)
                {
                    Native.Check(Native.sp_http_request_set_pipelined(req, request.Pipelined.Value ? 1 : 0), "sp_http_request_set_pipelined");
                }
                if (request.Proxy != null)
                {
                    string proxy = HttpRequest.ProxyText(request.Proxy, new Uri(request.Url));
                    Native.Check(Native.sp_http_request_set_proxy(req, Native.Utf8Z(proxy, "proxy")), "sp_http_request_set_proxy");
                }
                return req;
            }
            catch
            {
                Native.sp_http_request_free(req);
                throw;
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

        /// <summary>Shorthand: GetResponseAsync(new HttpRequest(method, url) { Body = body }, cancellationToken).</summary>
        public Task<Response> RequestAsync(string method, string url, byte[] body = null, CancellationToken cancellationToken = default(CancellationToken))
        {
            var request = new HttpRequest(method, url);
            request.Body = body;
            return GetResponseAsync(request, cancellationToken);
        }

        /// <summary>Shorthand: an asynchronous GET of url.</summary>
        public Task<Response> GetAsync(string url, CancellationToken cancellationToken = default(CancellationToken))
        {
            return GetResponseAsync(new HttpRequest("GET", url), cancellationToken);
        }

        /// <summary>Frees the manager. Safe to call more than once.</summary>
        public void Dispose()
        {
            _h.Dispose();
        }

        public override string ToString()
        {
            return IsDisposed ? "HttpServicePointManager (disposed)" : "HttpServicePointManager";
        }
    }
}
