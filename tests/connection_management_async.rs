//! The ServicePoint rules (DESIGN.md's behaviour table) through asynchronous requests, each
//! checked against what the loopback server observed. Durations are short and margins generous
//! for a loaded 2-core machine.
//!
//! The tests of `connection_management.rs`, each request sent with `Manager::send_async`
//! (and the response body read as usual).

mod support;

const ASYNC: bool = true;
include!("common/connection_rules.rs");
