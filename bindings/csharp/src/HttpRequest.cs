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
    /// per-request policy. Reusable: HttpServicePointManager.GetResponse does not change it (a
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

        /// <summary>HttpWebRequest.Pipelined: whether this request may be pipelined. true even on
        /// a service point with Pipelining off; false never; null (the default) as its service
        /// point's Pipelining says. The other conditions still apply (a POST or a BodyStream is
        /// never pipelined).</summary>
        public bool? Pipelined { get; set; }

        /// <summary>HttpWebRequest.Proxy: this request's own proxy. null (the default) takes the
        /// manager's (HttpServicePointManager.Proxy); a WebProxy without an Address, or one
        /// whose IsBypassed(Url) is true, is a direct connection; otherwise GetProxy(Url) with
        /// the Basic credentials of Credentials.GetCredential(proxy, "Basic"). The manager's
        /// bypass list still applies.</summary>
        public IWebProxy Proxy { get; set; }

        /// <summary>The proxy of <see cref="Proxy"/> for <paramref name="target"/> as the
        /// library takes it: "" for direct, else "http://user:password@host:port".</summary>
        internal static string ProxyText(IWebProxy proxy, Uri target)
        {
            if (proxy.IsBypassed(target)) return "";
            Uri via = proxy.GetProxy(target);
            if (via == null || via == target) return "";
            string credentials = "";
            NetworkCredential c = proxy.Credentials == null ? null : proxy.Credentials.GetCredential(via, "Basic");
            if (c != null && !string.IsNullOrEmpty(c.UserName))
            {
                credentials = Uri.EscapeDataString(c.UserName) + ":" + Uri.EscapeDataString(c.Password ?? "") + "@";
            }
            return via.Scheme + "://" + credentials + via.Authority;
        }
    }
}
