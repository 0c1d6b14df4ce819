// C# binding of libservicepoint: asynchronous requests and body reads
// (sp_request_async_queued, sp_response_read_async_queued) as Tasks, their completions run on
// the binding's own pump thread, CancellationToken support for blocking calls (cancel tokens)
// and the APM (Begin/End) pattern over the Tasks.

using System;
using System.Runtime.InteropServices;
using System.Threading;
using System.Threading.Tasks;

namespace Servicepoint
{
    /// <summary>
    /// The process-wide completion queue of the asynchronous calls and the managed thread that
    /// runs their callbacks. No library thread ever runs managed code: a library (tokio) thread
    /// that called a managed callback would be attached to the runtime, and Mono waits at exit
    /// for attached threads that never end (the process hangs after Main returns). So every
    /// asynchronous call goes through the _queued variants on <see cref="Queue"/>, and one
    /// background thread loops sp_completion_queue_wait then sp_completion_queue_run: the
    /// callbacks run there, only complete TaskCompletionSources (continuations run on the
    /// thread pool: RunContinuationsAsynchronously) and never block.
    ///
    /// Lifetime: created on first use and never freed (freeing it while a callback may still
    /// be queued, or while the pump waits on it, would be a use after free; the process's exit
    /// reclaims it). The thread is a background thread, so it never keeps the process alive,
    /// and its wait is bounded (<see cref="WaitMs"/>), so it returns to managed code often
    /// enough to see the shutdown flag (set at ProcessExit) and the runtime's own shutdown
    /// request (Mono aborts background threads at exit, which takes effect when the thread is
    /// back in managed code).
    /// </summary>
    internal static class CompletionPump
    {
        /// <summary>The longest wait in native code between two looks at the shutdown flag.</summary>
        internal const int WaitMs = 250;

        /// <summary>Callbacks run per sp_completion_queue_run call.</summary>
        const int Batch = 64;

        static readonly object Gate = new object();
        static IntPtr _queue;
        static Thread _thread;
        static volatile bool _stopping;

        /// <summary>The queue, created (with its pump thread) on first use.</summary>
        internal static IntPtr Queue
        {
            get
            {
                IntPtr q = Volatile.Read(ref _queue);
                if (q != IntPtr.Zero) return q;
                lock (Gate)
                {
                    if (_queue != IntPtr.Zero) return _queue;
                    IntPtr created;
                    Native.Check(Native.sp_completion_queue_new(out created), "sp_completion_queue_new");
                    var thread = new Thread(() => Run(created))
                    {
                        IsBackground = true,
                        Name = "servicepoint completions",
                    };
                    try
                    {
                        thread.Start();
                    }
                    catch
                    {
                        // Nothing was queued on it yet, and no thread uses it.
                        Native.sp_completion_queue_free(created);
                        throw;
                    }
                    AppDomain.CurrentDomain.ProcessExit += (sender, e) => _stopping = true;
                    _thread = thread;
                    Volatile.Write(ref _queue, created);
                    return created;
                }
            }
        }

        /// <summary>The pump thread (null before the first asynchronous call); for tests.</summary>
        internal static Thread PumpThread
        {
            get { return _thread; }
        }

        static void Run(IntPtr queue)
        {
            while (!_stopping)
            {
                try
                {
                    int ready;
                    int rc = Native.sp_completion_queue_wait(queue, WaitMs, out ready);
                    if (rc != 0)
                    {
                        // Cannot happen with a live queue and a valid timeout; do not spin.
                        Thread.Sleep(WaitMs);
                        continue;
                    }
                    if (ready == 0) continue;
                    UIntPtr ran;
                    do
                    {
                        rc = Native.sp_completion_queue_run(queue, new UIntPtr(Batch), out ran);
                    } while (rc == 0 && ran.ToUInt64() == Batch && !_stopping);
                }
                catch (ThreadAbortException)
                {
                    throw; // the runtime is shutting down
                }
                catch (Exception)
                {
                    // The callbacks catch everything themselves; never let the pump die.
                }
            }
        }
    }

    /// <summary>
    /// A CancellationToken bridged to an sp_cancel_token for blocking calls: the token is set on
    /// the request description, and canceling the CancellationToken (from any thread) cancels the
    /// native token, which makes a blocked sp_request or sp_response_read return SP_E_CANCELED
    /// at once. Lives as long as the response (its body reads watch the same token); Dispose
    /// unregisters and frees the native handle.
    /// </summary>
    internal sealed class NativeCancel : IDisposable
    {
        static readonly Action<object> OnCancel = Cancel;

        readonly CancelTokenHandle _h;
        internal readonly CancellationToken Token;
        CancellationTokenRegistration _registration;

        NativeCancel(IntPtr handle, CancellationToken token)
        {
            _h = new CancelTokenHandle(handle);
            Token = token;
        }

        /// <summary>A native token watching <paramref name="token"/>, set on the description
        /// <paramref name="request"/> (null when the token can never be canceled).</summary>
        internal static NativeCancel Attach(IntPtr request, CancellationToken token)
        {
            if (!token.CanBeCanceled) return null;
            IntPtr h;
            Native.Check(Native.sp_cancel_token_new(out h), "sp_cancel_token_new");
            var c = new NativeCancel(h, token);
            try
            {
                Native.Check(Native.sp_http_request_set_cancel_token(request, h), "sp_http_request_set_cancel_token");
                // Registered last: a token canceled already runs OnCancel here, and the send
                // then fails at once with SP_E_CANCELED.
                c._registration = token.Register(OnCancel, c);
            }
            catch
            {
                c.Dispose();
                throw;
            }
            return c;
        }

        static void Cancel(object state)
        {
            var c = (NativeCancel)state;
            try
            {
                IntPtr h = c._h.Enter("CancellationToken");
                try
                {
                    Native.sp_cancel_token_cancel(h);
                }
                finally
                {
                    c._h.Exit();
                }
            }
            catch (ObjectDisposedException)
            {
                // The call and its response are over: nothing to cancel.
            }
        }

        public void Dispose()
        {
            _registration.Dispose();
            _h.Dispose();
        }
    }

    /// <summary>Maps a failure to the exception a caller with a CancellationToken expects:
    /// SP_E_CANCELED while the token is canceled becomes OperationCanceledException (with the
    /// library's CanceledException inside), anything else the ServicePointException.</summary>
    internal static class Cancellation
    {
        internal static Exception Map(ServicePointException error, CancellationToken token)
        {
            if (error.NativeCode == ErrorCode.Canceled && token.IsCancellationRequested)
                return new OperationCanceledException(error.Message, error, token);
            return error;
        }
    }

    /// <summary>
    /// One sp_request_async call: the TaskCompletionSource, the manager (kept alive until the
    /// callback), the body pump and the operation handle. The callback delegate is one static
    /// instance (never collected); the state goes through userdata as a GCHandle freed by the
    /// callback. The operation handle is freed, and the CancellationToken registration disposed,
    /// by whichever of the starting thread and the callback comes second (the callback may run
    /// before sp_request_async has returned the handle). A stale operation handle is answered
    /// with SP_E_INVALID_HANDLE (handle keys are never reused), so a cancel racing the free is
    /// harmless.
    /// </summary>
    internal sealed class AsyncRequest
    {
        internal static readonly Native.ResponseCallback Callback = OnComplete;
        static readonly Action<object> OnCancel = Cancel;

        // RunContinuationsAsynchronously: continuations must not run on the pump thread (it
        // runs every completion of the process, and a continuation that blocked there would
        // stall them all, or deadlock waiting for one of them).
        internal readonly TaskCompletionSource<Response> Completion =
            new TaskCompletionSource<Response>(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly HttpServicePointManager _manager;
        readonly CancellationToken _token;
        internal BodyPump Pump;
        internal GCHandle PumpHandle;
        IntPtr _operation;
        CancellationTokenRegistration _registration;
        int _arrivals;

        internal AsyncRequest(HttpServicePointManager manager, CancellationToken token)
        {
            _manager = manager;
            _token = token;
        }

        /// <summary>Called once sp_request_async has returned SP_OK with the operation.</summary>
        internal void Started(IntPtr operation)
        {
            _operation = operation;
            if (_token.CanBeCanceled) _registration = _token.Register(OnCancel, this);
            Arrive();
        }

        void Arrive()
        {
            if (Interlocked.Increment(ref _arrivals) != 2) return;
            Native.sp_operation_free(_operation);
            _registration.Dispose();
        }

        static void Cancel(object state)
        {
            // Returns at once; the callback then fires with SP_E_CANCELED on the pump thread
            // (or the request had completed already, and this is ignored).
            Native.sp_operation_cancel(((AsyncRequest)state)._operation);
        }

        static void OnComplete(IntPtr userdata, int result, IntPtr response)
        {
            AsyncRequest s = null;
            try
            {
                GCHandle self = GCHandle.FromIntPtr(userdata);
                s = (AsyncRequest)self.Target;
                self.Free();
            }
            catch (Exception)
            {
                // Never unwind into the library; without state the response can only be freed.
                if (response != IntPtr.Zero) Native.sp_response_free(response);
                return;
            }
            try
            {
                s.Complete(result, response);
            }
            catch (Exception e)
            {
                s.Completion.TrySetException(e);
            }
            finally
            {
                if (s.PumpHandle.IsAllocated) s.PumpHandle.Free();
                s.Arrive();
            }
        }

        void Complete(int result, IntPtr response)
        {
            if (result != 0)
            {
                // First, while sp_last_error() still describes this failure.
                Exception inner = Pump != null ? Pump.Error : null;
                ServicePointException error = Native.Error(result, "sp_request_async", inner);
                if (result == (int)ErrorCode.Canceled && _token.IsCancellationRequested)
                    Completion.TrySetCanceled(_token);
                else
                    Completion.TrySetException(error);
                return;
            }
            if (_token.IsCancellationRequested)
            {
                // Canceled as the response arrived: the caller will never see it, so free it
                // here (its connection goes back to the pool or closes).
                Native.sp_response_free(response);
                Completion.TrySetCanceled(_token);
                return;
            }
            Response r;
            try
            {
                r = new Response(response, _manager, null);
            }
            catch (Exception e)
            {
                // The constructor freed the handle.
                Completion.TrySetException(e);
                return;
            }
            if (!Completion.TrySetResult(r)) r.Dispose();
        }
    }

    /// <summary>
    /// One sp_response_read_async call: copies the bytes into the caller's array inside the
    /// callback (the library's buffer is valid only there) and completes the Task with the
    /// count. Same handle and registration rules as AsyncRequest.
    /// </summary>
    internal sealed class AsyncRead
    {
        internal static readonly Native.ReadCallback Callback = OnComplete;
        static readonly Action<object> OnCancel = Cancel;

        internal readonly TaskCompletionSource<int> Completion =
            new TaskCompletionSource<int>(TaskCreationOptions.RunContinuationsAsynchronously);
        readonly Response _response;
        readonly byte[] _buffer;
        readonly int _offset, _count;
        readonly CancellationToken _token;
        IntPtr _operation;
        CancellationTokenRegistration _registration;
        int _arrivals;

        internal AsyncRead(Response response, byte[] buffer, int offset, int count, CancellationToken token)
        {
            _response = response;
            _buffer = buffer;
            _offset = offset;
            _count = count;
            _token = token;
        }

        internal void Started(IntPtr operation)
        {
            _operation = operation;
            if (_token.CanBeCanceled) _registration = _token.Register(OnCancel, this);
            Arrive();
        }

        void Arrive()
        {
            if (Interlocked.Increment(ref _arrivals) != 2) return;
            Native.sp_operation_free(_operation);
            _registration.Dispose();
        }

        static void Cancel(object state)
        {
            Native.sp_operation_cancel(((AsyncRead)state)._operation);
        }

        static void OnComplete(IntPtr userdata, int result, IntPtr data, UIntPtr len)
        {
            AsyncRead s;
            try
            {
                GCHandle self = GCHandle.FromIntPtr(userdata);
                s = (AsyncRead)self.Target;
                self.Free();
            }
            catch (Exception)
            {
                return; // never unwind into the library
            }
            try
            {
                if (result != 0)
                {
                    ServicePointException error = Native.Error(result, "sp_response_read_async", null);
                    if (result == (int)ErrorCode.Canceled && s._token.IsCancellationRequested)
                        s.Completion.TrySetCanceled(s._token);
                    else
                        s.Completion.TrySetException(Cancellation.Map(error, s._response.CancelToken));
                    return;
                }
                ulong n64 = len.ToUInt64();
                if (n64 > (ulong)s._count) throw new InvalidOperationException("the library returned more bytes than asked for");
                int n = (int)n64;
                if (n > 0) Marshal.Copy(data, s._buffer, s._offset, n);
                s._response.Consumed(n);
                s.Completion.TrySetResult(n);
            }
            catch (Exception e)
            {
                s.Completion.TrySetException(e);
            }
            finally
            {
                s.Arrive();
            }
        }
    }

    /// <summary>The APM pattern (Begin/End, IAsyncResult) over a Task, for code ported from
    /// .NET Framework's HttpWebRequest.BeginGetResponse and Stream.BeginRead.</summary>
    internal static class Apm
    {
        /// <summary>Callbacks nested on one thread before the next goes to the thread pool.</summary>
        const int MaxInlineDepth = 16;

        /// <summary>Callbacks running on this thread, each inside the one before.</summary>
        [ThreadStatic]
        static int _inlineDepth;

        internal static IAsyncResult Begin<T>(Task<T> task, AsyncCallback callback, object state)
        {
            var tcs = new TaskCompletionSource<T>(state, TaskCreationOptions.RunContinuationsAsynchronously);
            // A task that is complete already (a body read of bytes that had arrived) runs the
            // callback on this thread before Begin returns. A caller that begins the next read
            // inside its callback (the usual BeginRead loop) then nests one callback in the other
            // for as long as the bytes keep arriving first, and Mono inlines such continuations
            // without a stack check (a long body ended in a stack overflow): past MaxInlineDepth
            // nested callbacks, the callback goes to the thread pool instead.
            TaskContinuationOptions options = task.IsCompleted && _inlineDepth >= MaxInlineDepth
                ? TaskContinuationOptions.None
                : TaskContinuationOptions.ExecuteSynchronously;
            task.ContinueWith(t =>
            {
                if (t.IsFaulted) tcs.TrySetException(t.Exception.InnerExceptions);
                else if (t.IsCanceled) tcs.TrySetCanceled();
                else tcs.TrySetResult(t.Result);
                if (callback == null) return;
                _inlineDepth++;
                try
                {
                    callback(tcs.Task);
                }
                finally
                {
                    _inlineDepth--;
                }
            }, CancellationToken.None, options, TaskScheduler.Default);
            return tcs.Task;
        }

        internal static T End<T>(IAsyncResult asyncResult, string method)
        {
            var task = asyncResult as Task<T>;
            if (task == null) throw new ArgumentException("the IAsyncResult did not come from the matching Begin method (" + method + ")", "asyncResult");
            // Rethrows the original exception (not an AggregateException), as the Framework's
            // End methods do.
            return task.GetAwaiter().GetResult();
        }
    }
}
