//! The ServicePoint rules (DESIGN.md's behaviour table), each checked against what the
//! loopback server observed. Durations are short and margins generous for a loaded 2-core
//! machine.
//!
//! Blocking requests; `connection_management_async.rs` runs the same tests asynchronously.

mod support;

const ASYNC: bool = false;
include!("common/connection_rules.rs");
