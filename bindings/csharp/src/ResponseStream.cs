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

        /// <summary>Reads without blocking a thread: bytes that have arrived at once
        /// (sp_response_read_now, the Task already complete), else through
        /// sp_response_read_async; see Response.ReadAsync.</summary>
        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken)
        {
            return _response.ReadAsync(buffer, offset, count, cancellationToken);
        }

#if !NETSTANDARD2_0
        // netstandard2.0 has neither Memory<T> nor this overload (there the base class routes it
        // to the byte[] one above); Mono's and .NET's runtimes have both.
        /// <summary>Reads without blocking a thread into a Memory&lt;byte&gt; (an array-backed
        /// one directly, any other through a temporary array).</summary>
        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default(CancellationToken))
        {
            ArraySegment<byte> segment;
            if (System.Runtime.InteropServices.MemoryMarshal.TryGetArray((ReadOnlyMemory<byte>)buffer, out segment))
                return new ValueTask<int>(_response.ReadAsync(segment.Array, segment.Offset, segment.Count, cancellationToken));
            var temp = new byte[Math.Min(buffer.Length, 1 << 20)];
            Task<int> read = _response.ReadAsync(temp, 0, temp.Length, cancellationToken);
            return new ValueTask<int>(read.ContinueWith(t =>
            {
                int n = t.GetAwaiter().GetResult();
                new ReadOnlySpan<byte>(temp, 0, n).CopyTo(buffer.Span);
                return n;
            }, CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default));
        }
#endif

        /// <summary>BeginRead over ReadAsync (no thread blocked while the read waits). When the
        /// bytes had arrived, the callback runs on the calling thread before BeginRead returns
        /// (past a few nested callbacks on one thread, on the thread pool).</summary>
        public override IAsyncResult BeginRead(byte[] buffer, int offset, int count, AsyncCallback callback, object state)
        {
            return Apm.Begin(_response.ReadAsync(buffer, offset, count, CancellationToken.None), callback, state);
        }

        public override int EndRead(IAsyncResult asyncResult)
        {
            return Apm.End<int>(asyncResult, "BeginRead");
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
