// C# binding of libservicepoint: the library's log messages as a TraceSource.

// TraceSource.TraceEvent is [Conditional("TRACE")]: without this, a build that does not define
// TRACE (mcs does not by default) would compile the calls away.
#define TRACE

using System;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace Servicepoint
{
    /// <summary>
    /// The library's log messages (connections opened, reused, closed and why, retries, long
    /// queue waits) go to the TraceSource <see cref="Source"/>, named "Servicepoint". It is off
    /// by default, and then costs nothing: a manager installs the native log callback only when
    /// the source's switch lets something through, at the matching native level
    /// (Error/Critical: SP_LOG_ERROR, Warning: SP_LOG_WARN, Information: SP_LOG_INFO,
    /// Verbose/All: SP_LOG_DEBUG). Turn it on before creating the manager, in app.config
    /// (&lt;source name="Servicepoint" switchValue="Information"&gt;) or in code:
    /// <code>
    /// ServicepointTrace.Source.Switch.Level = SourceLevels.Information;
    /// ServicepointTrace.Source.Listeners.Add(new ConsoleTraceListener());
    /// </code>
    /// then call <see cref="HttpServicePointManager.UpdateTraceLevel"/> on managers created
    /// earlier. Events map as Error: TraceEventType.Error, Warn: Warning, Info: Information,
    /// Debug: Verbose; the event id is the manager's <see cref="HttpServicePointManager.Id"/>.
    /// Messages arrive on the thread of the event or on a library thread (the idle reaper);
    /// a listener must not block for long, and an exception it throws is swallowed.
    /// </summary>
    public static class ServicepointTrace
    {
        /// <summary>The TraceSource's name.</summary>
        public const string SourceName = "Servicepoint";

        /// <summary>The source every manager logs to (off unless configured).</summary>
        public static readonly TraceSource Source = new TraceSource(SourceName, SourceLevels.Off);

        // Kept in a static field (and referenced by each manager that installed it): a
        // collected delegate would crash the next callback.
        internal static readonly Native.LogCallback Callback = OnLog;

        /// <summary>The native level (SP_LOG_*) matching the switch's level now.</summary>
        internal static int NativeLevel()
        {
            SourceLevels level = Source.Switch.Level;
            if ((level & SourceLevels.Verbose) == SourceLevels.Verbose) return Native.SP_LOG_DEBUG;
            if ((level & SourceLevels.Information) == SourceLevels.Information) return Native.SP_LOG_INFO;
            if ((level & SourceLevels.Warning) == SourceLevels.Warning) return Native.SP_LOG_WARN;
            if ((level & (SourceLevels.Error | SourceLevels.Critical)) != 0) return Native.SP_LOG_ERROR;
            return Native.SP_LOG_OFF;
        }

        internal static TraceEventType EventType(int level)
        {
            switch (level)
            {
                case Native.SP_LOG_ERROR: return TraceEventType.Error;
                case Native.SP_LOG_WARN: return TraceEventType.Warning;
                case Native.SP_LOG_INFO: return TraceEventType.Information;
                default: return TraceEventType.Verbose;
            }
        }

        static void OnLog(IntPtr userdata, int level, IntPtr message)
        {
            try
            {
                TraceEventType type = EventType(level);
                if (!Source.Switch.ShouldTrace(type)) return;
                Source.TraceEvent(type, (int)userdata.ToInt64(), Native.PtrToString(message) ?? "");
            }
            catch
            {
                // Must never unwind into the library.
            }
        }
    }
}
