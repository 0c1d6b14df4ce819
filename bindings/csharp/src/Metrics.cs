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
    /// <summary>A snapshot of statistics (struct sp_statistics): of one service point
    /// (HttpServicePoint.Statistics) or summed over a manager's (HttpServicePointManager.Statistics).
    /// Open = Idle + Busy are the open connections by state.</summary>
    public sealed class ServicePointStatistics
    {
        internal ServicePointStatistics(Native.sp_statistics s)
        {
            Open = s.open;
            Idle = s.idle;
            Busy = s.busy;
            Waiting = s.waiting;
            ConnectionsOpened = s.connections_opened;
            Requests = s.requests;
            Reuses = s.reuses;
            Retries = s.retries;
            ClosedLease = s.closed_lease;
            ClosedIdle = s.closed_idle;
            ClosedKeepAliveOff = s.closed_keep_alive_off;
            ClosedServer = s.closed_server;
            ClosedStale = s.closed_stale;
            ClosedError = s.closed_error;
            ClosedMaxRequests = s.closed_max_requests;
            ClosedGroup = s.closed_group;
            ClosedAbandoned = s.closed_abandoned;
            TlsFullHandshakes = s.tls_full_handshakes;
            TlsResumedHandshakes = s.tls_resumed_handshakes;
            ClosedInFlight = s.closed_in_flight;
            ClosedAddressGone = s.closed_address_gone;
            Pipelined = s.pipelined;
            PipelineReplays = s.pipeline_replays;
        }

        /// <summary>Open connections (idle + busy).</summary>
        public ulong Open { get; private set; }
        /// <summary>Idle connections in the pool.</summary>
        public ulong Idle { get; private set; }
        /// <summary>Connections serving a request whose response has not been released.</summary>
        public ulong Busy { get; private set; }
        /// <summary>Requests waiting for a connection.</summary>
        public ulong Waiting { get; private set; }
        /// <summary>Connections opened since the service point was created.</summary>
        public ulong ConnectionsOpened { get; private set; }
        /// <summary>Requests that received a response head.</summary>
        public ulong Requests { get; private set; }
        /// <summary>Requests sent on a reused connection.</summary>
        public ulong Reuses { get; private set; }
        /// <summary>Requests retried on a new connection after a stale reused one failed.</summary>
        public ulong Retries { get; private set; }
        /// <summary>Connections closed because their lease timeout expired.</summary>
        public ulong ClosedLease { get; private set; }
        /// <summary>Connections closed because they were idle longer than the max idle time.</summary>
        public ulong ClosedIdle { get; private set; }
        /// <summary>Connections closed because a request had keep-alive off.</summary>
        public ulong ClosedKeepAliveOff { get; private set; }
        /// <summary>Connections closed because the server said so (Connection: close, HTTP/1.0, EOF).</summary>
        public ulong ClosedServer { get; private set; }
        /// <summary>Idle connections found dead (EOF, reset, stray bytes) before reuse.</summary>
        public ulong ClosedStale { get; private set; }
        /// <summary>Connections closed after an error.</summary>
        public ulong ClosedError { get; private set; }
        /// <summary>Connections closed after their max requests (the server's or the service point's).</summary>
        public ulong ClosedMaxRequests { get; private set; }
        /// <summary>Connections closed by CloseConnectionGroup or disposing the manager.</summary>
        public ulong ClosedGroup { get; private set; }
        /// <summary>Connections closed because a response was disposed with much of its body unread.</summary>
        public ulong ClosedAbandoned { get; private set; }
        /// <summary>TLS connections opened with a full handshake.</summary>
        public ulong TlsFullHandshakes { get; private set; }
        /// <summary>TLS connections opened by resuming an earlier session (abbreviated handshake).</summary>
        public ulong TlsResumedHandshakes { get; private set; }
        /// <summary>Reused connections that failed under a request before any response byte (the
        /// server closed or reset them as the request arrived); the request was retried if
        /// allowed. Unlike ClosedStale (found dead before reuse), a request paid for it.</summary>
        public ulong ClosedInFlight { get; private set; }

        /// <summary>Idle connections closed because their address left the host's DNS answer
        /// (looked up again after DnsRefreshTimeout) or its resolve override.</summary>
        public ulong ClosedAddressGone { get; private set; }

        /// <summary>Requests written on a busy connection behind another
        /// (HttpServicePoint.Pipelining, HttpRequest.Pipelined).</summary>
        public ulong Pipelined { get; private set; }

        /// <summary>Pipelined requests sent again on another connection because theirs ended
        /// before their response (each at most once).</summary>
        public ulong PipelineReplays { get; private set; }

        public override string ToString()
        {
            return string.Format(
                "open={0} idle={1} busy={2} waiting={3} opened={4} requests={5} reuses={6} retries={7} " +
                "closed: lease={8} idle={9} keep_alive_off={10} server={11} stale={12} error={13} " +
                "max_requests={14} group={15} abandoned={16} in_flight={19} address_gone={20} tls: full={17} resumed={18} " +
                "pipelined={21} pipeline_replays={22}",
                Open, Idle, Busy, Waiting, ConnectionsOpened, Requests, Reuses, Retries, ClosedLease,
                ClosedIdle, ClosedKeepAliveOff, ClosedServer, ClosedStale, ClosedError,
                ClosedMaxRequests, ClosedGroup, ClosedAbandoned, TlsFullHandshakes, TlsResumedHandshakes,
                ClosedInFlight, ClosedAddressGone, Pipelined, PipelineReplays);
        }
    }

    /// <summary>Which duration a <see cref="DurationHistogram"/> counts.</summary>
    public enum HistogramKind
    {
        /// <summary>SP_METRIC_QUEUE_WAIT: how long each request waited for a connection (0 included).</summary>
        QueueWait = 0,
        /// <summary>SP_METRIC_CONNECTION_LIFETIME: connect to close, per closed connection.</summary>
        ConnectionLifetime = 1,
    }

    /// <summary>One bucket of a <see cref="DurationHistogram"/>: the observations at most
    /// <see cref="UpperBound"/> (and above the previous bucket's bound).</summary>
    public struct HistogramBucket
    {
        internal HistogramBucket(TimeSpan upperBound, ulong count, bool unbounded)
        {
            UpperBound = upperBound;
            Count = count;
            IsUnbounded = unbounded;
        }

        /// <summary>The bucket's upper bound (TimeSpan.MaxValue for the last bucket).</summary>
        public TimeSpan UpperBound { get; private set; }

        /// <summary>Observations in this bucket.</summary>
        public ulong Count { get; private set; }

        /// <summary>True for the last bucket, which has no bound.</summary>
        public bool IsUnbounded { get; private set; }

        public override string ToString()
        {
            return (IsUnbounded ? "+inf" : "<=" + UpperBound.TotalMilliseconds + "ms") + ": " + Count;
        }
    }

    /// <summary>A snapshot of a histogram of durations (struct sp_histogram): Count
    /// observations summing to Sum, spread over fixed buckets.</summary>
    public sealed class DurationHistogram
    {
        static TimeSpan[] _bounds;

        internal unsafe DurationHistogram(HistogramKind kind, ref Native.sp_histogram h)
        {
            Kind = kind;
            Count = h.count;
            Sum = FromMicroseconds(h.sum_us);
            TimeSpan[] bounds = Bounds();
            int n = (int)Math.Min(h.bucket_count, (uint)Native.SP_HISTOGRAM_BUCKETS);
            var buckets = new HistogramBucket[n];
            fixed (ulong* b = h.buckets)
            {
                for (int i = 0; i < n; i++)
                    buckets[i] = new HistogramBucket(bounds[i], b[i], bounds[i] == TimeSpan.MaxValue);
            }
            Buckets = new ReadOnlyCollection<HistogramBucket>(buckets);
        }

        static TimeSpan FromMicroseconds(ulong us)
        {
            if (us >= (ulong)(TimeSpan.MaxValue.Ticks / 10)) return TimeSpan.MaxValue;
            return TimeSpan.FromTicks((long)us * 10);
        }

        /// <summary>The bucket bounds (sp_histogram_bound_us), asked once.</summary>
        static TimeSpan[] Bounds()
        {
            TimeSpan[] b = _bounds;
            if (b != null) return b;
            b = new TimeSpan[Native.SP_HISTOGRAM_BUCKETS];
            for (int i = 0; i < b.Length; i++)
            {
                ulong us = Native.sp_histogram_bound_us(new UIntPtr((uint)i));
                b[i] = us == ulong.MaxValue ? TimeSpan.MaxValue : FromMicroseconds(us);
            }
            _bounds = b;
            return b;
        }

        internal static unsafe Native.sp_histogram Empty()
        {
            var h = new Native.sp_histogram();
            h.struct_size = (uint)sizeof(Native.sp_histogram);
            return h;
        }

        /// <summary>What the histogram counts.</summary>
        public HistogramKind Kind { get; private set; }

        /// <summary>The number of observations.</summary>
        public ulong Count { get; private set; }

        /// <summary>The sum of the observed durations.</summary>
        public TimeSpan Sum { get; private set; }

        /// <summary>Sum / Count (TimeSpan.Zero when empty).</summary>
        public TimeSpan Mean
        {
            get { return Count == 0 ? TimeSpan.Zero : TimeSpan.FromTicks(Sum.Ticks / (long)Count); }
        }

        /// <summary>The buckets, in increasing bound order; their counts add up to Count.</summary>
        public IList<HistogramBucket> Buckets { get; private set; }

        public override string ToString()
        {
            return string.Format("{0}: count={1} mean={2}ms", Kind, Count, Mean.TotalMilliseconds);
        }
    }
}
