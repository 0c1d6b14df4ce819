//! servicepoint: an HTTP/1.1 connection manager in the model of .NET's `ServicePoint` and
//! `ServicePointManager`, with a C ABI (`src/ffi`, header `include/servicepoint.h`).
//!
//! The core below `ffi` is safe Rust and knows nothing of C: a [`Manager`] owns one
//! [`ServicePoint`] per origin; each point has connection groups ([`pool`]) with a connection
//! limit and a FIFO wait queue; requests ([`Request`]) run on pooled connections and return a
//! [`Response`] whose body streams from the socket.

pub mod callback;
pub mod cancel;
pub mod connection;
pub mod drive;
pub mod error;
pub mod exchange;
pub mod expect;
pub mod ffi;
pub mod fork;
pub mod http1;
pub mod local;
pub mod log;
pub mod manager;
pub mod operation;
pub mod origin;
pub mod pipeline;
pub mod point;
pub mod pool;
pub mod proxy;
pub mod reaper;
pub mod request;
pub mod resolve;
pub mod response;
pub mod reuse;
pub mod runtime;
pub mod server_facts;
pub mod stats;
pub mod tls;

pub use error::{Error, ErrorKind, Result};
pub use manager::Manager;
pub use point::ServicePoint;
pub use request::{Body, BodySource, Request};
pub use response::Response;
pub use stats::Snapshot;
