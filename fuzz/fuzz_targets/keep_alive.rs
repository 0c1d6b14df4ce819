//! `Keep-Alive: timeout=N, max=M` parsing (`ResponseHead::keep_alive_hint`) and what the pool
//! does with the hint: a connection carrying it is released to a pool, reaped and acquired
//! again, as after a real response.
//!
//! Input: header values separated by LF, each sent as its own `Keep-Alive` field.
#![no_main]

use libfuzzer_sys::fuzz_target;
use servicepoint::connection::{Connection, KeepAliveHint};
use servicepoint::http1::Fields;
use servicepoint::http1::head::ResponseHead;
use servicepoint::pool::{Grant, Pool};
use servicepoint::reuse::Settings;
use servicepoint::reaper::Reaper;
use servicepoint::stats::Stats;
use servicepoint_fuzz::connected_pair;
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

fn head(values: &[&[u8]]) -> ResponseHead {
    ResponseHead {
        minor_version: 1,
        status: 200,
        reason: "OK".into(),
        headers: Fields::from_pairs(&values.iter().map(|v| ("Keep-Alive", *v)).collect::<Vec<_>>()),
    }
}

/// A live loopback connection kept across executions (a new one when the pool closed it).
static CONN: Mutex<Option<(Connection, TcpStream)>> = Mutex::new(None);

fn through_pool(hint: KeepAliveHint, max_idle: Option<Duration>) {
    let mut slot = CONN.lock().unwrap();
    let (mut conn, server) = slot.take().unwrap_or_else(connected_pair);
    conn.hint = hint;
    conn.last_used = Instant::now();
    let stats = Arc::new(Stats::default());
    let pool = Pool::new(Arc::clone(&stats), Arc::new(Reaper::default()));
    let settings = Settings {
        lease_timeout_ms: -1,
        max_idle,
        max_requests_per_connection: 0,
    };
    // The slot the connection occupies, then its release as after a complete response.
    let ticket = match pool.acquire(2, &settings, None, None) {
        Ok((Grant::Open, ticket)) => ticket,
        _ => panic!("an empty pool grants an opening slot"),
    };
    pool.release(Some(conn), Ok(()), &ticket, 2, &settings);
    let _ = pool.reap(&settings, &mut Vec::new());
    let (open, idle, waiting) = pool.counts();
    assert_eq!((open, waiting), (idle, 0));
    match pool.acquire(2, &settings, None, None) {
        Ok((Grant::Idle(conn), _)) => *slot = Some((conn, server)),
        Ok((Grant::Open, _)) => {
            // Closed for its idle limit: only a server timeout of 0 leaves none (1 s still
            // leaves 750 ms, far more than this takes).
            let t = hint
                .timeout
                .expect("only a server timeout expires it this fast");
            assert!(t.is_zero(), "closed with timeout {t:?}");
        }
        Ok((Grant::Turn(_), _)) => panic!("a turn with nothing pipelined"),
        Err(_) => panic!("no grant with the pool empty"),
    }
}

fuzz_target!(|data: &[u8]| {
    let values: Vec<&[u8]> = data.split(|&b| b == b'\n').collect();
    let hint = head(&values).keep_alive_hint();
    // A list-based field means the same split over several fields or joined by commas.
    let joined = values.join(&b","[..]);
    assert_eq!(head(&[&joined]).keep_alive_hint(), hint);
    // Other fields do not change it.
    let mut with_others = head(&[]);
    with_others.headers.push("Keep-Alivex", b"timeout=7, max=7");
    for v in &values {
        with_others.headers.push("Keep-Alive", v);
    }
    assert_eq!(with_others.keep_alive_hint(), hint);
    through_pool(hint, None);
    through_pool(hint, Some(Duration::from_secs(100)));
});
