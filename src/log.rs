//! What the library did and why, as messages a program can route to its own logging: each
//! connection opened (address, local port, TLS full or resumed), reused, closed (with its
//! reason), each retry and its cause, queue waits over a threshold. Off by default and free
//! when off: an emit site checks one atomic before it formats anything.

use crate::fork::Lock;
use std::fmt::Arguments;
use std::sync::Arc;
use std::sync::atomic::{AtomicI32, Ordering::Relaxed};
use std::time::Duration;

/// Message levels, most severe first; a sink set at a level gets that level and the ones
/// above it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
#[repr(i32)]
pub enum Level {
    Error = 1,
    Warn = 2,
    Info = 3,
    Debug = 4,
}

impl Level {
    pub fn from_i32(v: i32) -> Option<Level> {
        match v {
            1 => Some(Level::Error),
            2 => Some(Level::Warn),
            3 => Some(Level::Info),
            4 => Some(Level::Debug),
            _ => None,
        }
    }
}

/// Receives messages (on the thread whose call made the event; for the reaper, a runtime
/// thread). Must not block for long.
pub trait Sink: Send + Sync {
    fn log(&self, level: Level, message: &str);
}

/// Queue waits at least this long are logged (at `Info`).
pub const QUEUE_WAIT_THRESHOLD: Duration = Duration::from_millis(100);

/// A manager's logging: its level (0 = off) and its sink.
#[derive(Default)]
pub struct Log {
    level: AtomicI32,
    sink: Lock<Option<Arc<dyn Sink>>>,
    /// When set, messages are delivered through this queue (on the thread that drains it)
    /// instead of on the thread that logs: a runtime that must not see library threads (Mono)
    /// drains it on a thread of its own.
    queue: Lock<Option<Arc<crate::operation::CompletionQueue>>>,
}

impl Log {
    /// Sets the sink and its level, or turns logging off with `None`.
    pub fn set(&self, sink: Option<(Level, Arc<dyn Sink>)>) {
        let mut slot = self.sink.lock();
        match sink {
            Some((level, sink)) => {
                *slot = Some(sink);
                self.level.store(level as i32, Relaxed);
            }
            None => {
                self.level.store(0, Relaxed);
                *slot = None;
            }
        }
    }

    /// The level messages are delivered at, or `None` when off.
    /// Routes messages through `queue` (`None`: call the sink on the logging thread).
    pub fn set_queue(&self, queue: Option<Arc<crate::operation::CompletionQueue>>) {
        *self.queue.lock() = queue;
    }

    pub fn has_queue(&self) -> bool {
        self.queue.lock().is_some()
    }

    pub fn level(&self) -> Option<Level> {
        Level::from_i32(self.level.load(Relaxed))
    }

    /// True when a message at `level` would be delivered (one atomic load).
    #[inline]
    pub fn enabled(&self, level: Level) -> bool {
        level as i32 <= self.level.load(Relaxed)
    }

    /// Delivers a message if its level is enabled; formats only then.
    #[inline]
    pub fn emit(&self, level: Level, message: Arguments<'_>) {
        if self.enabled(level) {
            self.deliver(level, message);
        }
    }

    #[cold]
    fn deliver(&self, level: Level, message: Arguments<'_>) {
        let sink = self.sink.lock().clone();
        if let Some(sink) = sink {
            let text = message.to_string();
            let queue = self.queue.lock().clone();
            match queue {
                Some(q) => q.push(Box::new(move || sink.log(level, &text))),
                None => crate::callback::run(|| sink.log(level, &text)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    #[derive(Default)]
    struct Collect(Mutex<Vec<(Level, String)>>);

    impl Sink for Collect {
        fn log(&self, level: Level, message: &str) {
            self.0.lock().unwrap().push((level, message.to_string()));
        }
    }

    #[test]
    fn levels_filter_and_off_is_off() {
        let log = Log::default();
        assert!(!log.enabled(Level::Error));
        let sink = Arc::new(Collect::default());
        log.set(Some((Level::Info, sink.clone())));
        log.emit(Level::Debug, format_args!("hidden"));
        log.emit(Level::Info, format_args!("shown {}", 1));
        log.emit(Level::Error, format_args!("also"));
        log.set(None);
        log.emit(Level::Error, format_args!("off"));
        let got = sink.0.lock().unwrap().clone();
        assert_eq!(
            got,
            [
                (Level::Info, "shown 1".to_string()),
                (Level::Error, "also".to_string())
            ]
        );
    }

    #[test]
    fn a_log_queue_delivers_on_the_draining_thread() {
        let log = Log::default();
        let sink = Arc::new(Collect::default());
        log.set(Some((Level::Info, sink.clone())));
        let queue = Arc::new(crate::operation::CompletionQueue::new().unwrap());
        log.set_queue(Some(Arc::clone(&queue)));
        assert!(log.has_queue());
        log.emit(Level::Info, format_args!("queued"));
        assert!(
            sink.0.lock().unwrap().is_empty(),
            "nothing before the queue runs"
        );
        assert_eq!(queue.run(10), 1);
        assert_eq!(sink.0.lock().unwrap().len(), 1);
        log.set_queue(None);
        log.emit(Level::Info, format_args!("direct"));
        assert_eq!(sink.0.lock().unwrap().len(), 2);
        assert!(queue.is_empty());
    }
}
