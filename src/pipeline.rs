//! HTTP/1.1 pipelining (seed 003), off by default: with the group at its connection limit, a
//! request waits in the FIFO queue as always, but one that may be pipelined carries its encoded
//! head there (an [`Offer`]). Whoever holds a busy connection takes such requests from the
//! front of the queue into the connection's [`Line`] and writes their heads right after its
//! own, before its response is read; so only the turn holder ever touches a socket.
//!
//! Turns: when response k is done (its body read or drained), the connection passes to place
//! k+1 (`Pool::pass_turn`), which reads its own response without sending anything. A place
//! that went away (timeout, cancel) before its turn leaves its response to be read and dropped
//! by the next turn ([`Line::skip`]); with nobody behind it, the connection closes.
//!
//! Failure is not loss: when the connection ends after response k (close, EOF, reset,
//! Keep-Alive `max`), every place behind k gets a replay verdict and sends its request again,
//! once, on a new connection, never pipelined. A connection that ends unannounced before
//! answering any pipelined request (the server closes after the first batch, or swallows the
//! extra requests) marks the server as not supporting pipelining, as an HTTP/1.0 answer or an
//! out-of-protocol answer to a pipelined request does.
//!
//! The rules (who may be pipelined, on which connection, how deep) are in `reuse`.

use crate::connection::CloseReason;
use crate::fork::Lock;
use crate::pool::Waiter;
use std::collections::VecDeque;
use std::sync::Arc;

/// Default maximum of requests in flight on one connection (the one being answered included).
pub const DEFAULT_DEPTH: i32 = 8;
/// Largest depth accepted (.NET Framework pauses its write list at 10).
pub const MAX_DEPTH: i32 = 64;
/// Largest request (head and body) sent ahead: a pipelined request never waits for the server
/// to read, since the server may be blocked writing the responses nobody reads yet.
pub const MAX_OFFER_BYTES: usize = 16 * 1024;

/// A queued request's encoded head (and body), ready to be written behind another.
pub struct Offer {
    pub bytes: Vec<u8>,
    /// A HEAD request: its response has no body (the next turn must know, to skip it).
    pub head_only: bool,
}

/// A request whose head was written on a connection, waiting for its turn to read.
pub struct Place {
    pub waiter: Arc<Waiter>,
    pub head_only: bool,
}

/// The places of a connection, shared with its pool's list of busy connections so that a
/// manager being freed can fail them (`Pool::close_all`).
pub type Places = Lock<VecDeque<Place>>;

/// A connection's pipeline: the requests written behind the one being answered, in order.
#[derive(Default)]
pub struct Line {
    /// Created at the first place.
    pub places: Option<Arc<Places>>,
    /// Responses ahead of the next place that nobody will read (their requests went away),
    /// oldest first: true for a HEAD (no body).
    pub skip: VecDeque<bool>,
    /// Pipelined requests written on this connection, and those whose response head was read.
    pub sent: u32,
    pub answered: u32,
    /// The turn holder's request is a HEAD (if it goes away, its response has no body).
    pub turn_head_only: bool,
}

impl Line {
    /// Places waiting behind the turn holder.
    pub fn waiting(&self) -> usize {
        self.places.as_ref().map_or(0, |p| p.lock().len())
    }

    pub fn is_empty(&self) -> bool {
        self.waiting() == 0 && self.skip.is_empty()
    }

    /// Requests wait behind the turn holder, or a pipelined request is unanswered: ending a
    /// turn on this connection is `Pool::pass_turn`'s business.
    pub fn in_use(&self) -> bool {
        !self.is_empty() || self.sent > self.answered
    }

    /// The shared list, created on first use.
    pub fn places(&mut self) -> Arc<Places> {
        Arc::clone(self.places.get_or_insert_with(Arc::default))
    }

    /// True when the connection ended, unannounced, before the server proved it pipelines:
    /// it closed after the first batch, or ignored the extra requests until a timeout. The
    /// proof is two pipelined responses (the first may have been answered before the requests
    /// behind it arrived, so the server may not have seen a pipeline yet). A close the server
    /// announced (`Connection: close`, `Keep-Alive: max`) is its request cap, and reasons of the
    /// client's own making say nothing about the server.
    pub fn disqualifies(&self, reason: CloseReason) -> bool {
        let servers_doing = matches!(
            reason,
            CloseReason::Error | CloseReason::InFlight | CloseReason::Stale
        );
        servers_doing && self.sent > 0 && self.answered < 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_server_side_end_before_any_pipelined_answer_disqualifies() {
        let mut line = Line::default();
        assert!(
            !line.disqualifies(CloseReason::InFlight),
            "nothing pipelined"
        );
        line.sent = 3;
        for reason in [
            CloseReason::Error,
            CloseReason::InFlight,
            CloseReason::Stale,
        ] {
            assert!(line.disqualifies(reason), "{reason:?}");
        }
        for reason in [
            CloseReason::ServerClose,
            CloseReason::MaxRequests,
            CloseReason::Lease,
            CloseReason::KeepAliveOff,
            CloseReason::Abandoned,
            CloseReason::ManagerClosed,
            CloseReason::GroupClosed,
        ] {
            assert!(!line.disqualifies(reason), "{reason:?}");
        }
        line.answered = 1;
        assert!(
            line.disqualifies(CloseReason::InFlight),
            "one answer may have come before the server saw the pipeline"
        );
        line.answered = 2;
        assert!(
            !line.disqualifies(CloseReason::InFlight),
            "it answered a pipeline: a later close is a close, not a refusal"
        );
    }

    #[test]
    fn a_line_is_empty_only_without_places_and_skips() {
        let mut line = Line::default();
        assert!(line.is_empty());
        line.skip.push_back(false);
        assert!(!line.is_empty());
        line.skip.clear();
        let _ = line.places();
        assert!(line.is_empty() && line.waiting() == 0);
    }
}
