//! Test exporters: tiny HTTP/1.1 servers on loopback that serve a scripted `/metrics`
//! response, each on its own port. Their behaviour can be changed while they run.
//!
//! Hand-written over `std::net` (one thread per connection, `Connection: close`): the
//! tests need status codes, delays and exact bodies, not a web framework.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What an exporter answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// 200 with this body as `text/plain; version=0.0.4`.
    Ok(String),
    /// This status code with a short body.
    Status(u16),
    /// Waits this long, then answers 200 with the body.
    Slow(Duration, String),
}

#[derive(Debug)]
struct Shared {
    behavior: Mutex<Behavior>,
    requests: AtomicU64,
    stop: AtomicBool,
}

/// A running exporter; stops when dropped.
#[derive(Debug)]
pub struct Exporter {
    addr: SocketAddr,
    shared: Arc<Shared>,
}

impl Exporter {
    /// Starts an exporter on `127.0.0.1:0`.
    pub fn start(behavior: Behavior) -> anyhow::Result<Exporter> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            behavior: Mutex::new(behavior),
            requests: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        });
        let s = shared.clone();
        std::thread::Builder::new()
            .name(format!("exporter-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    let s = s.clone();
                    let _ = std::thread::Builder::new().spawn(move || serve(conn, &s));
                }
            })?;
        Ok(Exporter { addr, shared })
    }

    /// `host:port`, as a static target.
    pub fn target(&self) -> String {
        self.addr.to_string()
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Requests served so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::Relaxed)
    }

    /// Changes the answer from the next request on.
    pub fn set(&self, b: Behavior) {
        *self
            .shared
            .behavior
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = b;
    }
}

impl Drop for Exporter {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn serve(conn: TcpStream, s: &Shared) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(match conn.try_clone() {
        Ok(c) => c,
        Err(_) => return,
    });
    // Read the request head; the body of a GET is empty.
    let mut line = String::new();
    loop {
        line.clear();
        match reader.read_line(&mut line) {
            Ok(0) | Err(_) => return,
            Ok(_) if line == "\r\n" || line == "\n" => break,
            Ok(_) => {}
        }
    }
    s.requests.fetch_add(1, Ordering::Relaxed);
    let b = s.behavior.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let (status, body) = match b {
        Behavior::Ok(body) => (200, body),
        Behavior::Status(code) => (code, format!("status {code}\n")),
        Behavior::Slow(d, body) => {
            std::thread::sleep(d);
            (200, body)
        }
    };
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        500 => "Internal Server Error",
        503 => "Service Unavailable",
        _ => "Status",
    };
    let mut conn = conn;
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let _ = conn.write_all(head.as_bytes());
    let _ = conn.write_all(body.as_bytes());
    let _ = conn.flush();
}

/// A body of `n` gauges `name{i="0".."n-1"}` with value `v`.
pub fn series_body(name: &str, n: usize, v: f64) -> String {
    let mut s = format!("# TYPE {name} gauge\n");
    for i in 0..n {
        s.push_str(&format!("{name}{{i=\"{i}\"}} {v}\n"));
    }
    s
}
