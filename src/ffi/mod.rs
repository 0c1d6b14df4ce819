//! The C ABI. Thin by rule: check handles and pointers, convert strings and buffers, call the
//! safe core, map errors to codes, catch panics. No connection policy lives here.
//!
//! Every exported function runs its body inside `boundary::call` or `boundary::guard`, so a
//! Rust panic never crosses into C (a test in `tests/ffi_abi.rs` checks this).

#![allow(non_camel_case_types)]
// Exports are plain `extern "C" fn`: C cannot see `unsafe`, and each pointer's contract
// (validity, lifetime) is stated in the function's header documentation instead.
#![allow(clippy::not_unsafe_ptr_arg_deref)]

pub mod access;
pub mod boundary;
pub mod expect;
pub mod handles;
pub mod manager;
pub mod observe;
pub mod operation;
pub mod pipelining;
pub mod point;
pub mod proxy;
pub mod request;
pub mod resolve;
pub mod response;
pub mod result;
pub mod server_facts;
pub mod socket;
pub mod tls;
pub mod version;

pub use result::sp_result;
