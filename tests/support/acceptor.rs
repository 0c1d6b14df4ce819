//! The accept loop every loopback test server shares: a listener on 127.0.0.1 polled until
//! stopped, a thread per connection, and a Drop that stops accepting and joins every thread.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What runs on a connection's own thread, given the stop flag.
pub type Job = Box<dyn FnOnce(&AtomicBool) + Send>;

pub struct Acceptor {
    pub port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    workers: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Acceptor {
    /// Listens on an ephemeral loopback port. For each connection `accept` runs on the accept
    /// thread, in accept order (it numbers and records the connection), and returns the job
    /// then run on the connection's own thread. The stream is blocking.
    pub fn start(mut accept: impl FnMut(TcpStream, SocketAddr) -> Job + Send + 'static) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
        listener
            .set_nonblocking(true)
            .expect("nonblocking listener");
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let workers: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let thread = {
            let (stop, workers) = (stop.clone(), workers.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let Ok((stream, peer)) = listener.accept() else {
                        std::thread::sleep(Duration::from_millis(2));
                        continue;
                    };
                    stream.set_nonblocking(false).unwrap();
                    let job = accept(stream, peer);
                    let stop = stop.clone();
                    let h = std::thread::spawn(move || job(&stop));
                    workers.lock().unwrap_or_else(|e| e.into_inner()).push(h);
                }
            })
        };
        Acceptor {
            port,
            stop,
            thread: Some(thread),
            workers,
        }
    }
}

impl Drop for Acceptor {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let workers = std::mem::take(&mut *self.workers.lock().unwrap_or_else(|e| e.into_inner()));
        for w in workers {
            let _ = w.join();
        }
    }
}
