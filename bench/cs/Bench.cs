// C# bench client for Mono, same contract as bench/py/client.py:
//
//   mono Bench.exe MODE URL SECONDS THREADS LIMIT LEASE_MS
//
// MODE `sp`: the servicepoint binding (bindings/csharp/HttpServicePoint.cs): one manager, the
// URL's service point with ConnectionLimit LIMIT and ConnectionLeaseTimeout LEASE_MS; each
// request is GetResponse + ReadAll + Dispose. MODE `hwr`: Mono's own System.Net.HttpWebRequest
// with HttpServicePointManager.DefaultConnectionLimit = LIMIT, the URL's HttpServicePoint with
// ConnectionLeaseTimeout = LEASE_MS, KeepAlive on unless LEASE_MS is 0, the response stream read
// to its end and closed (no proxy, Nagle off, Expect: 100-continue off).
// LEASE_MS -1 keeps connections alive, 0 opens a new connection per request. For https URLs
// both modes trust the CA in $BENCH_CA and keep verifying the certificate. Mono's managed X509
// code cannot decode ECDSA keys, so `hwr` cannot check the chain itself in a validation
// callback; instead it leaves verification to Mono's TLS (BoringSSL), giving it the CA through a
// private trust store: $XDG_CONFIG_HOME points at a temporary directory holding
// .mono/new-certs/Trust/<subject hash>.0 (the hash from `openssl x509 -subject_hash`).
//
// Asynchronous modes (THREADS is then the number of requests in flight, each a chain of
// asynchronous calls started from the main thread; continuations run on the thread pool, as
// .NET's asynchronous APIs run them):
//   `sp_async`: servicepoint's GetResponseAsync, then the response stream's ReadAsync to the end
//     (a 64 KiB buffer per chain), Dispose; one HttpRequest shared by every chain.
//   `sp_apm`: servicepoint's BeginGetResponse/EndGetResponse, then BeginRead/EndRead.
//   `httpclient`: Mono's System.Net.Http.HttpClient (one client; HttpClientHandler with
//     MaxConnectionsPerServer = LIMIT where Mono supports it, and
//     ServicePointManager.DefaultConnectionLimit = LIMIT, which Mono's handler obeys),
//     GetAsync(ResponseHeadersRead), the content stream's ReadAsync to the end.
//   `hwr_apm`: Mono's HttpWebRequest.BeginGetResponse/EndGetResponse, then the response
//     stream's BeginRead/EndRead to the end (settings as `hwr`).
// Their phases end when the clock has passed the stop time and the chains have finished.
//
// After a 0.3 s warm-up, THREADS threads send requests for SECONDS; prints one line:
//   RESULT requests=<n> seconds=<wall> cpu_us_per_req=<user+sys CPU of the process per request>
//          max_rss_kib=<peak working set> errors=<n>
// Exit status 0, or 2 for a usage or setup error.

using System;
using System.Diagnostics;
using System.Globalization;
using System.IO;
using System.Net.Http;
using System.Net.Security;
using System.Threading;
using System.Threading.Tasks;

namespace Servicepoint.Bench
{
    static class Program
    {
        static long _errors;
        static int _reported;

        static void Report(Exception e)
        {
            Interlocked.Increment(ref _errors);
            if (Interlocked.Exchange(ref _reported, 1) == 0)
                Console.Error.WriteLine("first error: {0}: {1}", e.GetType().Name, e.Message);
        }

        static Action MakeSp(string url, int limit, int lease)
        {
            var manager = new HttpServicePointManager();
            string ca = Environment.GetEnvironmentVariable("BENCH_CA");
            if (!string.IsNullOrEmpty(ca) && url.StartsWith("https:", StringComparison.OrdinalIgnoreCase))
                manager.AddCaFile(ca);
            HttpServicePoint point = manager.FindServicePoint(url);
            point.ConnectionLimit = limit;
            point.ConnectionLeaseTimeout = lease;
            // A description is not changed by GetResponse, so the threads share one.
            var request = new HttpRequest("GET", url);
            return () =>
            {
                // The loop every .NET user writes: the response stream read into a buffer.
                byte[] buffer = _buffer ?? (_buffer = new byte[65536]);
                using (Response response = manager.GetResponse(request))
                using (Stream body = response.GetResponseStream())
                {
                    while (body.Read(buffer, 0, buffer.Length) > 0)
                    {
                    }
                }
                GC.KeepAlive(point);
            };
        }

        [ThreadStatic]
        static byte[] _buffer;

        static Action MakeHwr(string url, int limit, int lease)
        {
            var uri = new Uri(url);
            System.Net.ServicePointManager.DefaultConnectionLimit = limit;
            System.Net.ServicePointManager.Expect100Continue = false;
            System.Net.ServicePointManager.UseNagleAlgorithm = false;
            string ca = Environment.GetEnvironmentVariable("BENCH_CA");
            if (!string.IsNullOrEmpty(ca) && uri.Scheme == "https") TrustCaForMono(ca);
            // Only a chain Mono verified completely (root, dates, host name) is accepted.
            System.Net.ServicePointManager.ServerCertificateValidationCallback =
                (sender, cert, chain, errors) => errors == SslPolicyErrors.None;
            System.Net.ServicePoint point = System.Net.ServicePointManager.FindServicePoint(uri);
            point.ConnectionLimit = limit;
            point.ConnectionLeaseTimeout = lease;
            return () =>
            {
                var request = (System.Net.HttpWebRequest)System.Net.WebRequest.Create(uri);
                request.Proxy = null;
                request.KeepAlive = lease != 0;
                byte[] buffer = _buffer ?? (_buffer = new byte[65536]);
                using (var response = (System.Net.HttpWebResponse)request.GetResponse())
                using (Stream body = response.GetResponseStream())
                {
                    while (body.Read(buffer, 0, buffer.Length) > 0)
                    {
                    }
                }
                GC.KeepAlive(point);
            };
        }


        /// <summary>Mono's own settings shared by `hwr`, `hwr_apm` and `httpclient`.</summary>
        static void SetUpMono(Uri uri, int limit, int lease)
        {
            System.Net.ServicePointManager.DefaultConnectionLimit = limit;
            System.Net.ServicePointManager.Expect100Continue = false;
            System.Net.ServicePointManager.UseNagleAlgorithm = false;
            string ca = Environment.GetEnvironmentVariable("BENCH_CA");
            if (!string.IsNullOrEmpty(ca) && uri.Scheme == "https" && _trustDir == null) TrustCaForMono(ca);
            // Only a chain Mono verified completely (root, dates, host name) is accepted.
            System.Net.ServicePointManager.ServerCertificateValidationCallback =
                (sender, cert, chain, errors) => errors == SslPolicyErrors.None;
            System.Net.ServicePoint point = System.Net.ServicePointManager.FindServicePoint(uri);
            point.ConnectionLimit = limit;
            point.ConnectionLeaseTimeout = lease;
            _monoPoint = point;
        }

        static System.Net.ServicePoint _monoPoint;

        static Func<byte[], Task> MakeSpAsync(string url, int limit, int lease)
        {
            var manager = new HttpServicePointManager();
            string ca = Environment.GetEnvironmentVariable("BENCH_CA");
            if (!string.IsNullOrEmpty(ca) && url.StartsWith("https:", StringComparison.OrdinalIgnoreCase))
                manager.AddCaFile(ca);
            HttpServicePoint point = manager.FindServicePoint(url);
            point.ConnectionLimit = limit;
            point.ConnectionLeaseTimeout = lease;
            var request = new HttpRequest("GET", url);
            return async buffer =>
            {
                using (Response response = await manager.GetResponseAsync(request))
                using (Stream body = response.GetResponseStream())
                {
                    while (await body.ReadAsync(buffer, 0, buffer.Length) > 0)
                    {
                    }
                }
                GC.KeepAlive(point);
            };
        }

        static Func<byte[], Task> MakeSpApm(string url, int limit, int lease)
        {
            var manager = new HttpServicePointManager();
            string ca = Environment.GetEnvironmentVariable("BENCH_CA");
            if (!string.IsNullOrEmpty(ca) && url.StartsWith("https:", StringComparison.OrdinalIgnoreCase))
                manager.AddCaFile(ca);
            HttpServicePoint point = manager.FindServicePoint(url);
            point.ConnectionLimit = limit;
            point.ConnectionLeaseTimeout = lease;
            var request = new HttpRequest("GET", url);
            return buffer =>
            {
                var done = new TaskCompletionSource<bool>();
                manager.BeginGetResponse(request, ar =>
                {
                    try
                    {
                        Response response = manager.EndGetResponse(ar);
                        ReadApm(response.GetResponseStream(), buffer, done);
                    }
                    catch (Exception e)
                    {
                        done.TrySetException(e);
                    }
                }, null);
                GC.KeepAlive(point);
                return done.Task;
            };
        }

        /// <summary>BeginRead/EndRead until the end of the body, then closes the stream and
        /// completes <paramref name="done"/>.</summary>
        static void ReadApm(Stream body, byte[] buffer, TaskCompletionSource<bool> done)
        {
            AsyncCallback next = null;
            next = ar =>
            {
                try
                {
                    if (body.EndRead(ar) > 0)
                    {
                        body.BeginRead(buffer, 0, buffer.Length, next, null);
                        return;
                    }
                    body.Dispose();
                    done.TrySetResult(true);
                }
                catch (Exception e)
                {
                    body.Dispose();
                    done.TrySetException(e);
                }
            };
            body.BeginRead(buffer, 0, buffer.Length, next, null);
        }

        static Func<byte[], Task> MakeHwrApm(string url, int limit, int lease)
        {
            var uri = new Uri(url);
            SetUpMono(uri, limit, lease);
            return buffer =>
            {
                var done = new TaskCompletionSource<bool>();
                var request = (System.Net.HttpWebRequest)System.Net.WebRequest.Create(uri);
                request.Proxy = null;
                request.KeepAlive = lease != 0;
                request.BeginGetResponse(ar =>
                {
                    try
                    {
                        var response = (System.Net.HttpWebResponse)request.EndGetResponse(ar);
                        ReadApm(response.GetResponseStream(), buffer, done);
                    }
                    catch (Exception e)
                    {
                        done.TrySetException(e);
                    }
                }, null);
                return done.Task;
            };
        }

        static Func<byte[], Task> MakeHttpClient(string url, int limit, int lease)
        {
            var uri = new Uri(url);
            SetUpMono(uri, limit, lease);
            var handler = new HttpClientHandler { UseProxy = false };
            try
            {
                handler.MaxConnectionsPerServer = limit;
            }
            catch (Exception e) when (e is PlatformNotSupportedException || e is NotImplementedException)
            {
                Console.Error.WriteLine("HttpClientHandler.MaxConnectionsPerServer: {0} (ServicePointManager's limit applies)", e.GetType().Name);
            }
            var client = new HttpClient(handler);
            return async buffer =>
            {
                using (HttpResponseMessage response = await client.GetAsync(uri, HttpCompletionOption.ResponseHeadersRead))
                {
                    response.EnsureSuccessStatusCode();
                    using (Stream body = await response.Content.ReadAsStreamAsync())
                    {
                        while (await body.ReadAsync(buffer, 0, buffer.Length) > 0)
                        {
                        }
                    }
                }
            };
        }

        /// <summary>One chain: a request after another until the stop time.</summary>
        static async Task Chain(Func<byte[], Task> one, Stopwatch clock, long stopAt, long[] counts, int index)
        {
            var buffer = new byte[65536];
            long n = 0;
            while (clock.ElapsedTicks < stopAt)
            {
                try
                {
                    await one(buffer);
                    n++;
                }
                catch (Exception e)
                {
                    Report(e);
                }
            }
            counts[index] = n;
        }

        /// <summary>Keeps <paramref name="inFlight"/> chains of requests going until
        /// <paramref name="seconds"/> have passed; returns the requests completed.</summary>
        static long PhaseAsync(Func<byte[], Task> one, int inFlight, double seconds)
        {
            var counts = new long[inFlight];
            var chains = new Task[inFlight];
            var clock = Stopwatch.StartNew();
            long stopAt = (long)(seconds * Stopwatch.Frequency);
            for (int i = 0; i < inFlight; i++) chains[i] = Chain(one, clock, stopAt, counts, i);
            Task.WaitAll(chains);
            GC.KeepAlive(_monoPoint);
            long total = 0;
            foreach (long c in counts) total += c;
            return total;
        }

        static string _trustDir;

        /// <summary>Makes Mono's TLS trust the PEM CA at <paramref name="caPath"/>, for this process
        /// only (see the comment at the top).</summary>
        static void TrustCaForMono(string caPath)
        {
            var psi = new ProcessStartInfo("openssl", "x509 -noout -subject_hash -in \"" + caPath + "\"")
            {
                UseShellExecute = false,
                RedirectStandardOutput = true,
                RedirectStandardError = true,
            };
            string hash;
            using (Process p = Process.Start(psi))
            {
                var err = p.StandardError.ReadToEndAsync();
                hash = p.StandardOutput.ReadToEnd().Trim();
                if (!p.WaitForExit(30000)) throw new TimeoutException("openssl x509 -subject_hash did not finish");
                p.WaitForExit();
                if (p.ExitCode != 0 || hash.Length == 0) throw new InvalidOperationException("openssl x509 -subject_hash: " + err.Result);
            }
            _trustDir = Path.Combine(Path.GetTempPath(), "sp-bench-mono-" + Process.GetCurrentProcess().Id);
            string trust = Path.Combine(_trustDir, ".mono", "new-certs", "Trust");
            Directory.CreateDirectory(trust);
            File.Copy(caPath, Path.Combine(trust, hash + ".0"), true);
            Environment.SetEnvironmentVariable("XDG_CONFIG_HOME", _trustDir);
        }

        static long Phase(Action one, int threads, double seconds)
        {
            var counts = new long[threads];
            var workers = new Thread[threads];
            var clock = Stopwatch.StartNew();
            long stopAt = (long)(seconds * Stopwatch.Frequency);
            for (int i = 0; i < threads; i++)
            {
                int index = i;
                workers[i] = new Thread(() =>
                {
                    long n = 0;
                    while (clock.ElapsedTicks < stopAt)
                    {
                        try
                        {
                            one();
                            n++;
                        }
                        catch (Exception e)
                        {
                            Report(e);
                        }
                    }
                    counts[index] = n;
                });
                workers[i].Start();
            }
            foreach (Thread t in workers) t.Join();
            long total = 0;
            foreach (long c in counts) total += c;
            return total;
        }

        static long PeakRssKib()
        {
            long peak = Process.GetCurrentProcess().PeakWorkingSet64 / 1024;
            if (peak > 0) return peak;
            try
            {
                foreach (string line in File.ReadAllLines("/proc/self/status"))
                {
                    if (line.StartsWith("VmHWM:"))
                        return long.Parse(line.Substring(6).Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                }
            }
            catch (Exception)
            {
            }
            return 0;
        }

        static int Main(string[] args)
        {
            string[] modes = { "sp", "hwr", "sp_async", "sp_apm", "httpclient", "hwr_apm" };
            if (args.Length != 6 || Array.IndexOf(modes, args[0]) < 0)
            {
                Console.Error.WriteLine("usage: mono Bench.exe sp|hwr|sp_async|sp_apm|httpclient|hwr_apm URL SECONDS THREADS LIMIT LEASE_MS");
                return 2;
            }
            string mode = args[0], url = args[1];
            double seconds;
            int threads, limit, lease;
            if (!double.TryParse(args[2], NumberStyles.Float, CultureInfo.InvariantCulture, out seconds) || seconds <= 0 ||
                !int.TryParse(args[3], out threads) || threads < 1 || threads > 1024 ||
                !int.TryParse(args[4], out limit) || !int.TryParse(args[5], out lease))
            {
                Console.Error.WriteLine("bad arguments: {0}", string.Join(" ", args));
                return 2;
            }
            Func<double, long> phase;
            try
            {
                if (mode == "sp" || mode == "hwr")
                {
                    Action one = mode == "sp" ? MakeSp(url, limit, lease) : MakeHwr(url, limit, lease);
                    phase = secs => Phase(one, threads, secs);
                }
                else
                {
                    Func<byte[], Task> one = mode == "sp_async" ? MakeSpAsync(url, limit, lease)
                        : mode == "sp_apm" ? MakeSpApm(url, limit, lease)
                        : mode == "httpclient" ? MakeHttpClient(url, limit, lease)
                        : MakeHwrApm(url, limit, lease);
                    phase = secs => PhaseAsync(one, threads, secs);
                }
            }
            catch (Exception e)
            {
                Console.Error.WriteLine("setup: {0}: {1}", e.GetType().Name, e.Message);
                return 2;
            }

            phase(0.3);
            _errors = 0;
            TimeSpan cpu0 = Process.GetCurrentProcess().TotalProcessorTime;
            var wall = Stopwatch.StartNew();
            long n = phase(seconds);
            double elapsed = wall.Elapsed.TotalSeconds;
            TimeSpan cpu1 = Process.GetCurrentProcess().TotalProcessorTime;
            double cpuUs = (cpu1 - cpu0).TotalMilliseconds * 1000.0;
            Console.WriteLine(string.Format(CultureInfo.InvariantCulture,
                "RESULT requests={0} seconds={1:F3} cpu_us_per_req={2:F2} max_rss_kib={3} errors={4}",
                n, elapsed, cpuUs / Math.Max(n, 1), PeakRssKib(), Interlocked.Read(ref _errors)));
            if (_trustDir != null)
            {
                try
                {
                    Directory.Delete(_trustDir, true);
                }
                catch (Exception)
                {
                }
            }
            // As the other clients: the line is printed either way, but a run in which nothing
            // succeeded is a failure.
            return n == 0 ? 1 : 0;
        }
    }
}
