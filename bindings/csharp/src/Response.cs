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

        readonly ResponseHandle _h;
        // Keeps the manager object alive while the response is (its finalizer would free it).
        readonly HttpServicePointManager _owner;
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
        int _retried = -1;
        // TLS facts, read together on first use: 0 not yet, 1 plain http, 2 read.
        int _tlsState;
        TlsVersion _tlsVersion;
        string _tlsCipherSuite;
        bool _tlsResumed;
        bool _eof;
        // Body bytes still to come by Content-Length (identity framing only), else -1: a read
        // that delivers the last of them ends the body without a second native call (the
        // library has already given the connection back to the pool).
        long _remaining = -1;
        /// <summary>ReadAsync calls of this response that had to wait (went through
        /// sp_response_read_async_queued) rather than take bytes that had arrived; for the tests.</summary>
        internal int _waitingReads;
        ResponseStream _stream;
        // The CancellationToken given to GetResponse, bridged to the native token that this
        // response's body reads watch too (null without one); disposed with the response.
        readonly NativeCancel _cancel;

        internal Response(IntPtr handle, HttpServicePointManager owner, NativeCancel cancel)
        {
            _h = new ResponseHandle(handle);
            _owner = owner;
            _cancel = cancel;
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
                _h.Dispose();
                if (cancel != null) cancel.Dispose();
                throw;
            }
        }

        /// <summary>The CancellationToken the request was sent with (CancellationToken.None if
        /// none): canceling it also cancels this response's body reads.</summary>
        internal CancellationToken CancelToken
        {
            get { return _cancel != null ? _cancel.Token : CancellationToken.None; }
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
            _remaining = KnownLength(head, _headerStart);
        }

        /// <summary>The Content-Length of a head without Transfer-Encoding (one value, digits
        /// only), else -1; scanned on the bytes, no string is made.</summary>
        static long KnownLength(byte[] head, int pos)
        {
            long length = -1;
            while (pos < head.Length)
            {
                int eol = IndexOfCrLf(head, pos);
                if (eol <= pos) break;
                int colon = Array.IndexOf(head, (byte)':', pos, eol - pos);
                if (colon > pos)
                {
                    if (NameIs(head, pos, colon, "transfer-encoding")) return -1;
                    if (NameIs(head, pos, colon, "content-length"))
                    {
                        if (length >= 0) return -1;
                        long n = 0;
                        int digits = 0;
                        for (int i = colon + 1; i < eol; i++)
                        {
                            byte c = head[i];
                            if (c == (byte)' ' || c == (byte)'\t') continue;
                            if (c < (byte)'0' || c > (byte)'9' || digits >= 18) return -1;
                            n = n * 10 + (c - '0');
                            digits++;
                        }
                        if (digits == 0) return -1;
                        length = n;
                    }
                }
                pos = eol + 2;
            }
            return length;
        }

        static bool NameIs(byte[] head, int start, int end, string lowerName)
        {
            if (end - start != lowerName.Length) return false;
            for (int i = 0; i < lowerName.Length; i++)
            {
                int c = head[start + i];
                if (c >= 'A' && c <= 'Z') c += 32;
                if (c != lowerName[i]) return false;
            }
            return true;
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
        public HttpServicePointManager Manager
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

        /// <summary>True if the request was sent a second time, on a new connection, after a
        /// reused one turned out stale (sp_response_retried). Read on first use, then cached
        /// (so it stays readable after Dispose once read).</summary>
        public bool Retried
        {
            get
            {
                int r = _retried;
                if (r >= 0) return r != 0;
                IntPtr h = _h.Enter(Name);
                try
                {
                    Native.Check(Native.sp_response_retried(h, out r), "sp_response_retried");
                }
                finally
                {
                    _h.Exit();
                }
                _retried = r != 0 ? 1 : 0;
                return r != 0;
            }
        }

        /// <summary>Reads the TLS facts once (they stay readable after Dispose once read).</summary>
        bool LoadTls()
        {
            if (_tlsState != 0) return _tlsState == 2;
            IntPtr h = _h.Enter(Name);
            try
            {
                int version, resumed;
                IntPtr suite;
                int rc = Native.sp_response_tls_version(h, out version);
                if (rc == (int)ErrorCode.NotFound)
                {
                    _tlsState = 1;
                    return false;
                }
                Native.Check(rc, "sp_response_tls_version");
                Native.Check(Native.sp_response_tls_cipher_suite(h, out suite), "sp_response_tls_cipher_suite");
                Native.Check(Native.sp_response_tls_resumed(h, out resumed), "sp_response_tls_resumed");
                _tlsVersion = (TlsVersion)version;
                _tlsCipherSuite = Native.PtrToString(suite);
                _tlsResumed = resumed != 0;
                _tlsState = 2;
                return true;
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>The TLS version the response's connection negotiated (Tls12 or Tls13); null
        /// for http.</summary>
        public TlsVersion? TlsVersion
        {
            get { return LoadTls() ? _tlsVersion : (TlsVersion?)null; }
        }

        /// <summary>The negotiated cipher suite by its IANA name, as .NET's TlsCipherSuite names
        /// it (e.g. "TLS_AES_256_GCM_SHA384"); null for http.</summary>
        public string TlsCipherSuite
        {
            get { return LoadTls() ? _tlsCipherSuite : null; }
        }

        /// <summary>True if the connection's TLS handshake resumed an earlier session, false for
        /// a full handshake; null for http.</summary>
        public bool? TlsResumed
        {
            get { return LoadTls() ? _tlsResumed : (bool?)null; }
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

        /// <summary>Reads up to count body bytes (at least one, unless at the end) into buffer
        /// at offset; 0 means the end of the body. This is the fast path: the caller's array is
        /// pinned for the one native call and the library writes into it directly (no copy, no
        /// allocation), and when Content-Length says the body is complete, the next call
        /// returns 0 without calling the library.</summary>
        public unsafe int Read(byte[] buffer, int offset, int count)
        {
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (offset < 0 || count < 0 || offset > buffer.Length - count)
                throw new ArgumentOutOfRangeException("offset", "offset and count do not describe a range of the buffer");
            IntPtr h = _h.Enter(Name);
            try
            {
                if (_eof || count == 0) return 0;
                if (_remaining == 0)
                {
                    _eof = true; // Content-Length: 0
                    return 0;
                }
                UIntPtr got;
                int rc;
                fixed (byte* p = &buffer[offset])
                {
                    rc = Native.sp_response_read(h, p, new UIntPtr((uint)count), out got);
                }
                if (rc != 0) throw ReadError(rc, "sp_response_read");
                int n = (int)got.ToUInt32();
                Consumed(n);
                return n;
            }
            finally
            {
                _h.Exit();
            }
        }

        Exception ReadError(int rc, string function)
        {
            ServicePointException error = Native.Error(rc, function, null);
            return _cancel != null ? Cancellation.Map(error, _cancel.Token) : error;
        }

        /// <summary>Accounts for n body bytes just read (0: the end).</summary>
        internal void Consumed(int n)
        {
            if (n == 0)
            {
                _eof = true;
            }
            else if (_remaining > 0)
            {
                _remaining -= n;
                if (_remaining <= 0) _eof = true;
            }
        }

        /// <summary>The completed Task of a read at the end of the body (shared: a completed
        /// Task cannot change).</summary>
        static readonly Task<int> Zero = Task.FromResult(0);

        /// <summary>Reads up to count body bytes without blocking a thread: the Task gives the
        /// count (at least one, 0 at the end of the body). Bytes that have already arrived (a
        /// small body comes with its head) are taken at once with sp_response_read_now, straight
        /// into the caller's array, and the Task returned is already complete (the continuation
        /// of an await then runs on, on this thread). Only when nothing has arrived yet does the
        /// read wait, through sp_response_read_async_queued: the bytes are then copied into
        /// buffer on the binding's pump thread, and continuations run on the thread pool.
        /// Canceling <paramref name="cancellationToken"/> ends a waiting read (the Task is
        /// canceled: TaskCanceledException) and closes the connection. One read at a time per
        /// response (a second concurrent read faults with InvalidArgumentException).</summary>
        public unsafe Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken = default(CancellationToken))
        {
            if (buffer == null) throw new ArgumentNullException("buffer");
            if (offset < 0 || count < 0 || offset > buffer.Length - count)
                throw new ArgumentOutOfRangeException("offset", "offset and count do not describe a range of the buffer");
            if (cancellationToken.IsCancellationRequested) return Task.FromCanceled<int>(cancellationToken);
            IntPtr h = _h.Enter(Name);
            try
            {
                if (_eof || count == 0) return Zero;
                if (_remaining == 0)
                {
                    _eof = true;
                    return Zero;
                }
                // The fast path: what has already arrived, without waiting and without the
                // pump thread and thread-pool hops of a completion.
                UIntPtr got;
                int done;
                int rc;
                fixed (byte* p = &buffer[offset])
                {
                    rc = Native.sp_response_read_now(h, p, new UIntPtr((uint)count), out got, out done);
                }
                if (rc != 0)
                {
                    // As the completion of an asynchronous read maps its failure.
                    Exception error = ReadError(rc, "sp_response_read_now");
                    if (rc == (int)ErrorCode.Canceled && cancellationToken.IsCancellationRequested)
                        return Task.FromCanceled<int>(cancellationToken);
                    return Task.FromException<int>(error);
                }
                ulong n64 = got.ToUInt64();
                if (n64 > (ulong)count) return Task.FromException<int>(new InvalidOperationException("the library returned more bytes than asked for"));
                int n = (int)n64;
                if (n > 0)
                {
                    Consumed(n);
                    if (done != 0) _eof = true;
                    return Task.FromResult(n);
                }
                if (done != 0)
                {
                    Consumed(0);
                    return Zero;
                }
                // Nothing yet: wait for the bytes without blocking a thread.
                IntPtr queue = CompletionPump.Queue;
                var state = new AsyncRead(this, buffer, offset, count, cancellationToken);
                GCHandle self = GCHandle.Alloc(state);
                IntPtr op;
                rc = Native.sp_response_read_async_queued(h, queue, new UIntPtr((uint)count), AsyncRead.Callback, GCHandle.ToIntPtr(self), out op);
                if (rc != 0)
                {
                    Exception error = ReadError(rc, "sp_response_read_async");
                    self.Free();
                    return Task.FromException<int>(error);
                }
                state.Started(op);
                _waitingReads++;
                return state.Completion.Task;
            }
            finally
            {
                _h.Exit();
            }
        }

        /// <summary>Read with a CancellationToken: canceling it from another thread ends the
        /// blocked read with OperationCanceledException and closes the connection. Without a
        /// cancelable token this is Read itself (the fast path); with one, the read goes through
        /// ReadAsync and this thread waits for it.</summary>
        public int Read(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            if (!cancellationToken.CanBeCanceled) return Read(buffer, offset, count);
            return ReadAsync(buffer, offset, count, cancellationToken).GetAwaiter().GetResult();
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
                int rc = Native.sp_response_read_all(h, out data, out len);
                if (rc != 0) throw ReadError(rc, "sp_response_read_all");
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
            _h.Dispose();
            if (_cancel != null) _cancel.Dispose();
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
}
