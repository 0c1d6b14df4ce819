// C# binding of libservicepoint: the native handles as SafeHandle subclasses.

using System;
using System.Runtime.InteropServices;
using System.Threading;

namespace Servicepoint
{
    /// <summary>
    /// Base of the native handles: one SafeHandle subclass per handle kind, whose ReleaseHandle
    /// calls that kind's _free. SafeHandle gives the standard guarantees: the handle is freed
    /// exactly once (by Dispose or by the critical finalizer), and a handle in use between
    /// Enter() and Exit() (DangerousAddRef/DangerousRelease) is freed only by the last Exit(),
    /// so a concurrent Dispose never frees memory a call is still copying from. The library
    /// keys its handles in a table, so even a stale handle passed back is answered with
    /// SP_E_INVALID_HANDLE, never a crash.
    /// The P/Invoke declarations take IntPtr, not the SafeHandle, so that the hot path
    /// (Response.Read) pays for one AddRef/Release pair per call and no marshalling.
    /// </summary>
    internal abstract class SpSafeHandle : SafeHandle
    {
        protected SpSafeHandle(IntPtr h) : base(IntPtr.Zero, true)
        {
            SetHandle(h);
        }

        public override bool IsInvalid
        {
            get { return handle == IntPtr.Zero; }
        }

        /// <summary>The live handle, marked in use until Exit(); ObjectDisposedException if closed.</summary>
        internal virtual IntPtr Enter(string objectName)
        {
            if (IsClosed) throw new ObjectDisposedException(objectName);
            bool added = false;
            try
            {
                DangerousAddRef(ref added);
            }
            catch (ObjectDisposedException)
            {
                throw new ObjectDisposedException(objectName);
            }
            return handle;
        }

        internal virtual void Exit()
        {
            DangerousRelease();
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
    }

    /// <summary>sp_manager*. Unlike the other kinds, a call does not hold the handle: freeing
    /// the manager must not wait for requests blocked on other threads (the library ends them
    /// with SP_E_MANAGER_CLOSED), and the manager hands out no borrowed memory.</summary>
    internal sealed class ManagerHandle : SpSafeHandle
    {
        /// <summary>The key of the manager's certificate validator in CertificateValidation
        /// (0 = none), dropped when the manager is freed.</summary>
        internal long ValidatorKey;

        internal ManagerHandle(IntPtr h) : base(h)
        {
        }

        internal override IntPtr Enter(string objectName)
        {
            IntPtr h = handle;
            if (IsClosed || h == IntPtr.Zero) throw new ObjectDisposedException(objectName);
            return h;
        }

        internal override void Exit()
        {
        }

        protected override bool ReleaseHandle()
        {
            Native.sp_manager_free(handle);
            CertificateValidation.Unregister(Interlocked.Exchange(ref ValidatorKey, 0));
            return true;
        }
    }

    /// <summary>sp_point*.</summary>
    internal sealed class PointHandle : SpSafeHandle
    {
        internal PointHandle(IntPtr h) : base(h)
        {
        }

        protected override bool ReleaseHandle()
        {
            Native.sp_point_free(handle);
            return true;
        }
    }

    /// <summary>sp_response*.</summary>
    internal sealed class ResponseHandle : SpSafeHandle
    {
        internal ResponseHandle(IntPtr h) : base(h)
        {
        }

        protected override bool ReleaseHandle()
        {
            Native.sp_response_free(handle);
            return true;
        }
    }

    /// <summary>sp_cancel_token*: the native side of a CancellationToken for blocking calls
    /// (see NativeCancel).</summary>
    internal sealed class CancelTokenHandle : SpSafeHandle
    {
        internal CancelTokenHandle(IntPtr h) : base(h)
        {
        }

        protected override bool ReleaseHandle()
        {
            Native.sp_cancel_token_free(handle);
            return true;
        }
    }

    // sp_http_request* has no SafeHandle: a description lives only inside one GetResponse
    // call, freed in its finally block, and a finalizable object per request would cost more
    // than it protects.
}
