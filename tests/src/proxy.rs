//! A TCP forwarder on loopback that a test can cut: the cluster harness puts one between
//! every pair of processes that talk, so "partition process X" means cutting every proxy
//! whose source or destination is X — traffic is dropped, the processes keep running.
//!
//! Each accepted connection is copied both ways by two threads. Cutting shuts down every
//! open connection and makes new ones close at once (the peer sees a reset or EOF, as behind
//! a dropped link it would see a timeout; both are failures it must handle).

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

#[derive(Debug, Default)]
struct State {
    cut: AtomicBool,
    stop: AtomicBool,
    open: Mutex<Vec<TcpStream>>,
}

/// A running forwarder from [`Proxy::addr`] to a target address; stops when dropped.
#[derive(Debug)]
pub struct Proxy {
    addr: SocketAddr,
    state: Arc<State>,
}

impl Proxy {
    /// Listens on `listen` (use `127.0.0.1:0` for any port) and forwards to `to`.
    pub fn start(listen: SocketAddr, to: SocketAddr) -> anyhow::Result<Proxy> {
        let listener = TcpListener::bind(listen)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(State::default());
        let s = state.clone();
        std::thread::Builder::new()
            .name(format!("proxy-{}", addr.port()))
            .spawn(move || {
                for conn in listener.incoming() {
                    if s.stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let Ok(conn) = conn else { continue };
                    if s.cut.load(Ordering::Relaxed) {
                        let _ = conn.shutdown(Shutdown::Both);
                        continue;
                    }
                    let s = s.clone();
                    let _ = std::thread::Builder::new().spawn(move || forward(conn, to, &s));
                }
            })?;
        Ok(Proxy { addr, state })
    }

    /// The address clients connect to.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Cuts (`true`) or restores (`false`) the link.
    pub fn set_cut(&self, cut: bool) {
        self.state.cut.store(cut, Ordering::Relaxed);
        if cut {
            let mut open = self.state.open.lock().unwrap_or_else(|p| p.into_inner());
            for c in open.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    /// Whether the link is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::Relaxed)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.state.stop.store(true, Ordering::Relaxed);
        self.set_cut(true);
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

fn forward(client: TcpStream, to: SocketAddr, s: &Arc<State>) {
    let Ok(server) = TcpStream::connect_timeout(&to, Duration::from_secs(2)) else {
        let _ = client.shutdown(Shutdown::Both);
        return;
    };
    let _ = client.set_nodelay(true);
    let _ = server.set_nodelay(true);
    let (Ok(c2), Ok(s2)) = (client.try_clone(), server.try_clone()) else {
        return;
    };
    {
        let mut open = s.open.lock().unwrap_or_else(|p| p.into_inner());
        open.retain(|c| c.peer_addr().is_ok());
        if let (Ok(a), Ok(b)) = (client.try_clone(), server.try_clone()) {
            open.push(a);
            open.push(b);
        }
    }
    let up = std::thread::Builder::new().spawn(move || copy(client, server));
    copy(s2, c2);
    if let Ok(h) = up {
        let _ = h.join();
    }
}

fn copy(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Write);
    let _ = from.shutdown(Shutdown::Read);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_until_cut_and_again_after() {
        let echo = TcpListener::bind("127.0.0.1:0").unwrap();
        let echo_addr = echo.local_addr().unwrap();
        std::thread::spawn(move || {
            for c in echo.incoming() {
                let Ok(mut c) = c else { continue };
                std::thread::spawn(move || {
                    let mut b = [0u8; 64];
                    while let Ok(n) = c.read(&mut b) {
                        if n == 0 || c.write_all(&b[..n]).is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let p = Proxy::start("127.0.0.1:0".parse().unwrap(), echo_addr).unwrap();
        let roundtrip = || -> std::io::Result<Vec<u8>> {
            let mut c = TcpStream::connect(p.addr())?;
            c.set_read_timeout(Some(Duration::from_secs(5)))?;
            c.write_all(b"ping")?;
            let mut b = [0u8; 4];
            c.read_exact(&mut b)?;
            Ok(b.to_vec())
        };
        assert_eq!(roundtrip().unwrap(), b"ping");
        let mut held = TcpStream::connect(p.addr()).unwrap();
        held.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        held.write_all(b"x").unwrap();
        let mut one = [0u8; 1];
        held.read_exact(&mut one).unwrap();
        p.set_cut(true);
        assert!(p.is_cut());
        // The open connection is closed and a new one gets nothing back.
        assert!(matches!(held.read(&mut one), Ok(0) | Err(_)));
        assert!(roundtrip().is_err());
        p.set_cut(false);
        assert_eq!(roundtrip().unwrap(), b"ping");
    }
}
