//! Scale benchmarks of the core: FindServicePoint on a manager holding 10,000 service points
//! (through the Rust API and through the C ABI), and acquire/release on a warm pool.
//! Run with `cargo bench --bench pool`.

use criterion::{Criterion, criterion_group, criterion_main};
use servicepoint::Manager;
use servicepoint::ffi::manager::{sp_find, sp_manager, sp_manager_free, sp_manager_new};
use servicepoint::ffi::point::sp_point_free;
use servicepoint::pool::Grant;
use std::ffi::CString;
use std::hint::black_box;
use std::net::TcpListener;

const POINTS: usize = 10_000;

fn urls() -> Vec<String> {
    (0..POINTS)
        .map(|i| format!("http://host{i}.example.test:{}/path?q={i}", 1024 + i % 1000))
        .collect()
}

fn find(c: &mut Criterion) {
    let urls = urls();
    let manager = Manager::new();
    for u in &urls {
        manager.find(u).unwrap();
    }
    let mut i = 0;
    c.bench_function("find/rust/10k_points", |b| {
        b.iter(|| {
            i = (i + 7919) % POINTS;
            black_box(manager.find(&urls[i]).unwrap())
        })
    });

    let curls: Vec<CString> = urls
        .iter()
        .map(|u| CString::new(u.as_str()).unwrap())
        .collect();
    let mut m: *mut sp_manager = std::ptr::null_mut();
    sp_manager_new(&mut m);
    for u in &curls {
        let mut p = std::ptr::null_mut();
        sp_find(m, u.as_ptr(), &mut p);
        sp_point_free(p);
    }
    c.bench_function("find/c_abi/10k_points (sp_find + sp_point_free)", |b| {
        b.iter(|| {
            i = (i + 7919) % POINTS;
            let mut p = std::ptr::null_mut();
            sp_find(m, curls[i].as_ptr(), &mut p);
            sp_point_free(black_box(p));
        })
    });
    sp_manager_free(m);
}

fn acquire_release(c: &mut Criterion) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let manager = Manager::new();
    let point = manager.find(&url).unwrap();
    let pool = point.group("");
    let (limit, settings) = (point.connection_limit(), point.reuse_settings());
    // Warm the pool with one real loopback connection.
    let (grant, ticket) = pool.acquire(limit, &settings, None, None).ok().unwrap();
    assert!(matches!(grant, Grant::Open));
    let conn = servicepoint::connection::connect(
        &point.origin,
        &point.resolve().unwrap(),
        None,
        None,
        ticket.generation,
        &mut |s| pool.track(&ticket, s),
    )
    .unwrap();
    let _server_side = listener.accept().unwrap();
    pool.release(Some(conn), Ok(()), &ticket, limit, &settings);
    c.bench_function(
        "pool/acquire_release_warm (includes the liveness check)",
        |b| {
            b.iter(|| {
                let (grant, ticket) = pool.acquire(limit, &settings, None, None).ok().unwrap();
                match grant {
                    Grant::Idle(conn) => {
                        pool.release(Some(conn), Ok(()), &ticket, limit, &settings)
                    }
                    Grant::Open | Grant::Turn(_) => unreachable!("the warm connection is idle"),
                }
            })
        },
    );
}

criterion_group!(benches, find, acquire_release);
criterion_main!(benches);
