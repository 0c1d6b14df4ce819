//! The handle table. C sees opaque pointer types (so the compiler tells a manager from a
//! response), but their values are table keys, never addresses: a freed, foreign or wrong-kind
//! handle is looked up, not dereferenced, and fails with `SP_E_INVALID_HANDLE`. Keys are never
//! reused, so a stale handle cannot alias a newer object.

use super::boundary::FfiError;
use super::result::sp_result;
use crate::fork::{self, Lock, RwLock};
use crate::manager::Manager;
use crate::point::ServicePoint;
use crate::request::Request;
use crate::response::Response;
use once_cell::sync::Lazy;
use std::collections::HashMap;
use std::ffi::CString;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

/// A service point as C holds it: the point plus its address as a C string.
pub struct PointEntry {
    pub point: Arc<ServicePoint>,
    pub address: CString,
}

/// A response as C holds it, with the C strings handed out for it (borrowed until free).
pub struct ResponseEntry {
    pub response: Response,
    /// The reason phrase as a C string, built on first use.
    pub reason: Option<CString>,
    /// Header names and values as C strings, built on first use.
    pub headers: Option<Vec<(CString, CString)>>,
    pub trailers: Option<Vec<(CString, CString)>>,
    /// The head as text (status line and fields), built on first use.
    pub head_text: Option<Vec<u8>>,
    /// The TLS cipher suite's name as a C string, built on first use.
    pub tls_cipher_suite: Option<CString>,
    /// The body collected by `sp_response_read_all`.
    pub body: Vec<u8>,
}

/// A response handle. Its mutex is held through blocking body reads, so it is not a fork-safe
/// lock: the process generation it was made in is checked before locking, and a forked child
/// never locks (or uses) a response of its parent.
pub struct ResponseCell {
    fork_generation: u64,
    entry: Mutex<ResponseEntry>,
}

impl ResponseCell {
    pub fn new(entry: ResponseEntry) -> Self {
        ResponseCell {
            fork_generation: fork::generation(),
            entry: Mutex::new(entry),
        }
    }

    /// The entry, unless the response belongs to the parent of this forked process.
    pub fn lock(&self) -> Result<MutexGuard<'_, ResponseEntry>, FfiError> {
        if self.fork_generation != fork::generation() {
            return Err(FfiError::new(
                sp_result::SP_E_INVALID_HANDLE,
                "the response belongs to the parent process (fork): free it, it cannot be used here",
            ));
        }
        Ok(self.entry.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[derive(Clone)]
pub enum Entry {
    Manager(Arc<Manager>),
    Point(Arc<PointEntry>),
    /// The description as last set. Sending takes a reference to it (so threads can send one
    /// description at once, and a setter, even one called from inside the request's own body
    /// reader, never waits for a send); a setter changes a copy if a send holds the current one.
    Request(Arc<Lock<Arc<Request>>>),
    Response(Arc<ResponseCell>),
    Operation(Arc<crate::operation::Operation>),
    Queue(Arc<crate::operation::CompletionQueue>),
    Token(crate::cancel::CancelToken),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Manager(_) => "manager",
            Entry::Point(_) => "service point",
            Entry::Request(_) => "request",
            Entry::Response(_) => "response",
            Entry::Operation(_) => "operation",
            Entry::Queue(_) => "completion queue",
            Entry::Token(_) => "cancel token",
        }
    }
}

/// The table, in shards by key, so that threads creating and freeing handles at once (a
/// response per request) take different locks: no process-wide lock on the warm path.
const SHARDS: usize = 64;

/// Keys are issued by this table (sequential, unique), never chosen by a caller, so they need
/// no collision-resistant hash: Fx is a multiply per key.
type Table = HashMap<usize, Entry, rustc_hash::FxBuildHasher>;

static TABLE: Lazy<[RwLock<Table>; SHARDS]> =
    Lazy::new(|| std::array::from_fn(|_| RwLock::new(Table::default())));

/// The shard of a key (keys step by 16, so consecutive handles land in consecutive shards).
fn shard(key: usize) -> &'static RwLock<Table> {
    &TABLE[(key >> 4) % SHARDS]
}
/// Keys start high and step by 16 so they look like (and align like) pointers, yet never
/// collide with a real allocation the library hands out (it hands out none).
static NEXT_KEY: AtomicUsize = AtomicUsize::new(0x5350_0000);

/// Stores an entry and returns its key as an opaque handle.
pub fn insert<T>(entry: Entry) -> *mut T {
    let key = NEXT_KEY.fetch_add(16, Ordering::Relaxed);
    shard(key).write().insert(key, entry);
    key as *mut T
}

/// Looks a handle up (cloning the entry's `Arc`, so the lock is not held while it is used).
pub fn get<T>(handle: *const T) -> Result<Entry, FfiError> {
    if handle.is_null() {
        return Err(FfiError::new(
            sp_result::SP_E_INVALID_HANDLE,
            "handle is NULL",
        ));
    }
    let key = handle as usize;
    shard(key).read().get(&key).cloned().ok_or_else(|| {
        FfiError::new(
            sp_result::SP_E_INVALID_HANDLE,
            format!("handle {handle:p} is freed or was never issued"),
        )
    })
}

fn wrong_kind(entry: &Entry, wanted: &str) -> FfiError {
    FfiError::new(
        sp_result::SP_E_INVALID_HANDLE,
        format!("handle is a {}, not a {wanted}", entry.kind()),
    )
}

pub fn manager<T>(h: *const T) -> Result<Arc<Manager>, FfiError> {
    match get(h)? {
        Entry::Manager(m) => Ok(m),
        other => Err(wrong_kind(&other, "manager")),
    }
}

pub fn point<T>(h: *const T) -> Result<Arc<PointEntry>, FfiError> {
    match get(h)? {
        Entry::Point(p) => Ok(p),
        other => Err(wrong_kind(&other, "service point")),
    }
}

pub fn request<T>(h: *const T) -> Result<Arc<Lock<Arc<Request>>>, FfiError> {
    match get(h)? {
        Entry::Request(r) => Ok(r),
        other => Err(wrong_kind(&other, "request")),
    }
}

pub fn response<T>(h: *const T) -> Result<Arc<ResponseCell>, FfiError> {
    match get(h)? {
        Entry::Response(r) => Ok(r),
        other => Err(wrong_kind(&other, "response")),
    }
}

/// Removes a handle only if it is of the expected kind (a `_free` of the wrong kind is ignored).
pub fn remove_kind<T>(handle: *const T, is_kind: fn(&Entry) -> bool) -> Option<Entry> {
    let key = handle as usize;
    let mut table = shard(key).write();
    if table.get(&key).is_some_and(is_kind) {
        table.remove(&key)
    } else {
        None
    }
}
