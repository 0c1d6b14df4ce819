// Proxies from C#: the manager's Proxy (a WebProxy), ProxyUrl, ProxyBypass,
// UseEnvironmentProxy, HttpRequest.Proxy (an IWebProxy), FindServicePoint(Uri, IWebProxy), and
// requests through a small recording proxy written here (absolute form, Basic credentials,
// a 407 and a refused CONNECT).

using System;
using System.Collections.Generic;
using System.IO;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using IPAddress = System.Net.IPAddress;
using IPEndPoint = System.Net.IPEndPoint;

namespace Servicepoint.Tests
{
    /// <summary>Forwards absolute-form GETs (Content-Length bodies) to their origin, refuses
    /// every CONNECT with 403, demands Basic credentials when asked to; records each request
    /// line with its Proxy-Authorization.</summary>
    sealed class RecordingProxy : IDisposable
    {
        readonly TcpListener _listener;
        readonly object _lock = new object();
        readonly List<KeyValuePair<string, string>> _seen = new List<KeyValuePair<string, string>>();
        volatile bool _stopping;
        public readonly int Port;
        public string Require;

        public RecordingProxy()
        {
            _listener = new TcpListener(IPAddress.Loopback, 0);
            _listener.Start(16);
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            new Thread(Accept) { IsBackground = true, Name = "test-proxy" }.Start();
        }

        public string Url { get { return "http://127.0.0.1:" + Port; } }

        public List<KeyValuePair<string, string>> Seen
        {
            get { lock (_lock) return new List<KeyValuePair<string, string>>(_seen); }
        }

        void Accept()
        {
            while (!_stopping)
            {
                TcpClient c;
                try { c = _listener.AcceptTcpClient(); }
                catch (Exception) { return; }
                new Thread(() => Serve(c)) { IsBackground = true }.Start();
            }
        }

        static List<string> ReadHead(Stream s)
        {
            var lines = new List<string>();
            var line = new StringBuilder();
            while (true)
            {
                int b = s.ReadByte();
                if (b < 0) return null;
                if (b == '\n')
                {
                    string l = line.ToString().TrimEnd('\r');
                    line.Length = 0;
                    if (l.Length == 0) return lines;
                    lines.Add(l);
                }
                else line.Append((char)b);
            }
        }

        static string HeaderOf(List<string> head, string name)
        {
            for (int i = 1; i < head.Count; i++)
            {
                int colon = head[i].IndexOf(':');
                if (colon > 0 && string.Equals(head[i].Substring(0, colon).Trim(), name, StringComparison.OrdinalIgnoreCase))
                    return head[i].Substring(colon + 1).Trim();
            }
            return null;
        }

        static void Write(Stream s, string text)
        {
            byte[] b = Encoding.ASCII.GetBytes(text);
            s.Write(b, 0, b.Length);
        }

        void Serve(TcpClient client)
        {
            try
            {
                using (client)
                {
                    client.ReceiveTimeout = 10000;
                    Stream s = client.GetStream();
                    List<string> head;
                    while ((head = ReadHead(s)) != null && head.Count > 0)
                    {
                        string auth = HeaderOf(head, "Proxy-Authorization");
                        lock (_lock) _seen.Add(new KeyValuePair<string, string>(head[0], auth));
                        if (Require != null && auth != Require)
                        {
                            Write(s, "HTTP/1.1 407 Proxy Authentication Required\r\nProxy-Authenticate: Basic realm=\"t\"\r\nContent-Length: 0\r\n\r\n");
                            continue;
                        }
                        string[] parts = head[0].Split(' ');
                        if (parts[0] == "CONNECT")
                        {
                            Write(s, "HTTP/1.1 403 No Tunnels Here\r\nContent-Length: 0\r\n\r\n");
                            continue;
                        }
                        var target = new Uri(parts[1]);
                        using (var up = new TcpClient())
                        {
                            up.Connect(target.Host, target.Port);
                            up.ReceiveTimeout = 10000;
                            Stream us = up.GetStream();
                            var sb = new StringBuilder(parts[0] + " " + target.PathAndQuery + " HTTP/1.1\r\n");
                            for (int i = 1; i < head.Count; i++)
                                if (!head[i].StartsWith("Proxy-", StringComparison.OrdinalIgnoreCase) &&
                                    !head[i].StartsWith("Connection:", StringComparison.OrdinalIgnoreCase))
                                    sb.Append(head[i]).Append("\r\n");
                            sb.Append("Connection: close\r\n\r\n");
                            Write(us, sb.ToString());
                            List<string> answer = ReadHead(us);
                            int length = int.Parse(HeaderOf(answer, "Content-Length") ?? "0");
                            var body = new byte[length];
                            for (int got = 0; got < length;)
                            {
                                int n = us.Read(body, got, length - got);
                                if (n <= 0) throw new IOException("origin closed early");
                                got += n;
                            }
                            var rh = new StringBuilder(answer[0] + "\r\n");
                            for (int i = 1; i < answer.Count; i++)
                                if (!answer[i].StartsWith("Connection:", StringComparison.OrdinalIgnoreCase))
                                    rh.Append(answer[i]).Append("\r\n");
                            Write(s, rh.Append("\r\n").ToString());
                            s.Write(body, 0, length);
                        }
                    }
                }
            }
            catch (Exception)
            {
                // The client went away; nothing to record.
            }
        }

        public void Dispose()
        {
            _stopping = true;
            _listener.Stop();
        }
    }

    /// <summary>An IWebProxy that never bypasses (Mono's WebProxy bypasses loopback).</summary>
    sealed class AlwaysProxy : IWebProxy
    {
        readonly Uri _proxy;
        public AlwaysProxy(string proxy, ICredentials credentials = null) { _proxy = new Uri(proxy); Credentials = credentials; }
        public ICredentials Credentials { get; set; }
        public Uri GetProxy(Uri destination) { return _proxy; }
        public bool IsBypassed(Uri host) { return false; }
    }

    static partial class Program
    {
        const string Basic = "Basic dXNlcjpwQHNz"; // user:p@ss

        static void ProxyChecks()
        {
            Check("proxy settings: ProxyUrl, Proxy (WebProxy), ProxyBypass, UseEnvironmentProxy", () =>
            {
                using (var m = new HttpServicePointManager())
                {
                    Equal(null, m.ProxyUrl, "no proxy by default");
                    Equal("localhost, 127.0.0.0/8, ::1", m.ProxyBypass, "default bypass list");
                    Equal(false, m.UseEnvironmentProxy, "environment not used by default");
                    m.Proxy = new WebProxy("http://proxy.example:3128") { Credentials = new NetworkCredential("user", "p@ss") };
                    Equal("http://user:p%40ss@proxy.example:3128", m.ProxyUrl, "ProxyUrl from the WebProxy");
                    Equal("", m.ProxyBypass, "its empty bypass list");
                    WebProxy back = m.Proxy;
                    Equal(new Uri("http://proxy.example:3128/"), back.Address, "Address");
                    Equal("p@ss", back.Credentials.GetCredential(back.Address, "Basic").Password, "password");
                    m.Proxy = new WebProxy("http://p:1", true, new[] { ".corp.example" });
                    Equal(".corp.example, <local>, localhost, 127.0.0.0/8, ::1", m.ProxyBypass, "BypassList and BypassProxyOnLocal");
                    Assert(m.Proxy.BypassProxyOnLocal, "BypassProxyOnLocal reads back");
                    Throws<UnsupportedSchemeException>(() => m.ProxyUrl = "socks5://h:1080", "socks proxy");
                    Throws<InvalidArgumentException>(() => m.ProxyBypass = "10.0.0.0/99", "bad bypass entry");
                    m.Proxy = null;
                    Equal(null, m.ProxyUrl, "Proxy = null");
                    Equal(WebExceptionStatus.RequestProhibitedByProxy,
                        ServicePointException.StatusOf(ErrorCode.ProxyConnect, false, "sp_request"), "status of ProxyConnect");
                    Equal("proxy authentication required (407)", ServicePointException.StrError(ErrorCode.ProxyAuthenticationRequired), "strerror");
                }
            });

            Check("plain http through a proxy: absolute form, Basic credentials, the proxy's service point", () =>
            {
                using (var server = new TestServer())
                using (var proxy = new RecordingProxy { Require = Basic })
                using (var m = new HttpServicePointManager())
                {
                    m.ProxyUrl = "http://user:p%40ss@127.0.0.1:" + proxy.Port;
                    Equal("hello world\n", GetText(m, server.Url("/hello")), "direct (loopback bypassed)");
                    Equal(0, proxy.Seen.Count, "the proxy saw nothing");
                    m.ProxyBypass = "";
                    Equal("hello world\n", GetText(m, server.Url("/hello?x=1")), "through the proxy");
                    var seen = proxy.Seen;
                    Equal(1, seen.Count, "one request at the proxy");
                    Equal("GET " + server.Url("/hello?x=1") + " HTTP/1.1", seen[0].Key, "absolute form");
                    Equal(Basic, seen[0].Value, "Proxy-Authorization");
                    Equal(null, server.Requests[1].Header("Proxy-Authorization"), "not passed to the origin");
                    using (HttpServicePoint p = m.FindServicePoint(new Uri(server.Url("/")), new AlwaysProxy(proxy.Url)))
                        Equal(new Uri("http://127.0.0.1:" + proxy.Port + "/"), p.Address, "the proxy's service point");
                    // A request's own IWebProxy: a WebProxy without Address is direct.
                    var direct = new HttpRequest(server.Url("/hello")) { Proxy = new WebProxy() };
                    using (Response r = m.GetResponse(direct)) r.ReadAll();
                    Equal(1, proxy.Seen.Count, "direct request not seen by the proxy");
                }
            });

            Check("https through a proxy: 407 and a refused CONNECT have their own exceptions", () =>
            {
                using (var proxy = new RecordingProxy { Require = Basic })
                using (var m = new HttpServicePointManager())
                {
                    m.ProxyBypass = "";
                    var req = new HttpRequest("https://127.0.0.1:9/") { Proxy = new AlwaysProxy(proxy.Url) };
                    var e = Throws<ProxyAuthenticationRequiredException>(() => m.GetResponse(req).Dispose(), "no credentials");
                    Assert(e.Message.Contains("407"), e.Message);
                    Equal(WebExceptionStatus.RequestProhibitedByProxy, e.Status, "Status");
                    req.Proxy = new AlwaysProxy(proxy.Url, new NetworkCredential("user", "p@ss"));
                    var r = Throws<ProxyConnectException>(() => m.GetResponse(req).Dispose(), "refused CONNECT");
                    Assert(r.Message.Contains("403 No Tunnels Here"), r.Message);
                    Equal("CONNECT 127.0.0.1:9 HTTP/1.1", proxy.Seen[1].Key, "CONNECT line");
                    Equal(Basic, proxy.Seen[1].Value, "credentials of the request's proxy");
                }
            });
        }
    }
}
