//! The socket settings of .NET's ServicePoint (ReceiveBufferSize, UseNagleAlgorithm,
//! SetTcpKeepAlive, a fixed local address, a connect timeout), read back from the connected
//! socket with getsockopt and, for the local address, as the server saw the peer.

mod support;

use servicepoint::{ErrorKind, Manager, Request};
use socket2::{Domain, SockRef, Socket, Type};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};
use support::{Reply, TestServer};

/// A body large enough that the response still holds its connection until it is read.
fn big() -> Vec<u8> {
    vec![b'x'; 64 * 1024]
}

#[test]
fn seed_000_receive_buffer_size_and_the_other_options_reach_the_socket() {
    let server = TestServer::start(|_| Reply::ok(big()));
    let m = Manager::new();
    let url = server.url("/page");
    // Default connection: system buffers, Nagle off, no keep-alive probes.
    let plain = m.send(&Request::new("GET", &url).unwrap()).unwrap();
    let s = SockRef::from(plain.socket().expect("held"));
    let default_rcvbuf = s.recv_buffer_size().unwrap();
    assert!(
        s.tcp_nodelay().unwrap(),
        "Nagle off by default (TCP_NODELAY)"
    );
    assert!(!s.keepalive().unwrap());
    drop(plain);

    // Seed 000: point.ReceiveBufferSize = 2048; point.ConnectionLeaseTimeout = Infinite.
    let point = m.find(&url).unwrap();
    point.set_receive_buffer_size(2048).unwrap();
    point.set_lease_timeout(-1).unwrap();
    point.set_send_buffer_size(4096).unwrap();
    point.set_use_nagle_algorithm(true);
    point.set_tcp_keep_alive(true, 5_000, 2_000).unwrap();
    point.set_lease_timeout(0).unwrap(); // a new connection for the next request
    let resp = m.send(&Request::new("GET", &url).unwrap()).unwrap();
    let s = SockRef::from(resp.socket().expect("held"));
    let rcvbuf = s.recv_buffer_size().unwrap();
    // Linux doubles the value asked for (bookkeeping overhead) and has a floor.
    assert!((2048..=8192).contains(&rcvbuf), "SO_RCVBUF {rcvbuf}");
    assert!(
        rcvbuf < default_rcvbuf,
        "{rcvbuf} vs default {default_rcvbuf}"
    );
    assert!((4096..=16384).contains(&s.send_buffer_size().unwrap()));
    assert!(!s.tcp_nodelay().unwrap(), "Nagle on");
    assert!(s.keepalive().unwrap());
    assert_eq!(s.tcp_keepalive_time().unwrap(), Duration::from_secs(5));
    assert_eq!(s.tcp_keepalive_interval().unwrap(), Duration::from_secs(2));
    drop(resp);
    assert_eq!(point.receive_buffer_size(), 2048);
    assert_eq!(point.tcp_keep_alive(), (true, 5_000, 2_000));
}

#[test]
fn rejected_values_change_nothing() {
    let m = Manager::new();
    let point = m.find("http://127.0.0.1:9/").unwrap();
    point.set_receive_buffer_size(1024).unwrap();
    assert_eq!(
        point.set_receive_buffer_size(-2).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(point.receive_buffer_size(), 1024);
    point.set_tcp_keep_alive(true, 1000, 1000).unwrap();
    for (time, interval) in [(0, 1000), (1000, 0), (-5, 10)] {
        let e = point.set_tcp_keep_alive(true, time, interval).unwrap_err();
        assert_eq!(e.kind, ErrorKind::OutOfRange);
    }
    assert_eq!(point.tcp_keep_alive(), (true, 1000, 1000));
    point.set_tcp_keep_alive(false, 0, 0).unwrap();
    assert_eq!(point.tcp_keep_alive(), (false, 0, 0));
    for bad in [0, -2] {
        assert_eq!(
            point.set_connect_timeout(bad).unwrap_err().kind,
            ErrorKind::OutOfRange
        );
    }
    assert_eq!(point.connect_timeout_ms(), -1);
}

#[test]
fn manager_defaults_apply_to_new_service_points() {
    let m = Manager::new();
    assert!(!m.use_nagle_algorithm());
    m.set_use_nagle_algorithm(true);
    m.set_tcp_keep_alive(true, 30_000, 1_000).unwrap();
    let point = m.find("http://127.0.0.1:9/").unwrap();
    assert!(point.use_nagle_algorithm());
    assert_eq!(point.tcp_keep_alive(), (true, 30_000, 1_000));
    assert_eq!(
        m.set_tcp_keep_alive(true, 0, 1).unwrap_err().kind,
        ErrorKind::OutOfRange
    );
    assert_eq!(m.tcp_keep_alive(), (true, 30_000, 1_000));
}

#[test]
fn the_local_address_is_what_the_server_sees() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    let server = std::thread::spawn(move || {
        let (mut s, peer) = listener.accept().unwrap();
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1024];
        let _ = s.read(&mut buf);
        s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
            .unwrap();
        peer
    });
    let m = Manager::new();
    let point = m.find(&url).unwrap();
    point.set_local_address(Some("127.0.0.2:0".parse().unwrap()));
    let mut resp = m.send(&Request::new("GET", &url).unwrap()).unwrap();
    let mut body = Vec::new();
    resp.read_to_end(&mut body).unwrap();
    let peer = server.join().unwrap();
    assert_eq!(
        peer.ip().to_string(),
        "127.0.0.2",
        "the server saw the bound address"
    );
    assert_eq!(point.local_address(), Some("127.0.0.2:0".parse().unwrap()));
}

#[test]
fn the_connect_timeout_is_separate_from_the_request_timeout() {
    // A listener whose accept queue is full: the kernel drops further SYNs, so a connect to
    // it never completes (a dead host, on loopback).
    let listener = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    listener
        .bind(
            &"127.0.0.1:0"
                .parse::<std::net::SocketAddr>()
                .unwrap()
                .into(),
        )
        .unwrap();
    listener.listen(0).unwrap();
    let addr = listener.local_addr().unwrap().as_socket().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let s = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
        s.set_nonblocking(true).unwrap();
        let _ = s.connect(&addr.into());
        fillers.push(s);
    }
    std::thread::sleep(Duration::from_millis(50));
    let url = format!("http://{addr}/");
    let m = Manager::new();
    let point = m.find(&url).unwrap();
    point.set_connect_timeout(300).unwrap();
    let mut req = Request::new("GET", &url).unwrap();
    req.timeout = Some(Duration::from_secs(5));
    let start = Instant::now();
    let Err(e) = m.send(&req) else {
        panic!("the connect completed")
    };
    let took = start.elapsed();
    assert_eq!(e.kind, ErrorKind::ConnectTimeout, "{e}");
    assert!(
        took >= Duration::from_millis(290) && took < Duration::from_millis(1500),
        "{took:?}"
    );
    drop(fillers);
}
