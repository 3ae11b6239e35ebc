//! A real HTTP backend on loopback for routing tests.
//!
//! Answers every request with 200 and a settable body (a site's name, so a
//! test sees where HAProxy sent it), keeping connections alive as a web
//! server would. The hung mode accepts connections and never answers, to
//! test timeouts and health checks.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use anyhow::Context;

/// Connections served at once; more are closed at once (a test that needs
/// more load than this is measuring the backend, not hostyard).
const MAX_CONNECTIONS: usize = 512;

struct Shared {
    body: RwLock<String>,
    hung: bool,
    stopping: AtomicBool,
    requests: AtomicU64,
    /// Open connections by id, so stop() can close them all.
    conns: Mutex<HashMap<u64, TcpStream>>,
}

/// A running backend; stopped (all connections closed) on drop.
pub struct Backend {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl Backend {
    /// A backend answering 200 with `body` on a free 127.0.0.1 port.
    pub fn start(body: &str) -> Backend {
        Self::spawn(body, false).unwrap_or_else(|e| panic!("starting backend: {e:#}"))
    }

    /// A backend that accepts connections and reads requests but never
    /// answers.
    pub fn hung() -> Backend {
        Self::spawn("", true).unwrap_or_else(|e| panic!("starting hung backend: {e:#}"))
    }

    fn spawn(body: &str, hung: bool) -> anyhow::Result<Backend> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).context("bind 127.0.0.1:0")?;
        let addr = listener.local_addr().context("local_addr")?;
        let shared = Arc::new(Shared {
            body: RwLock::new(body.to_owned()),
            hung,
            stopping: AtomicBool::new(false),
            requests: AtomicU64::new(0),
            conns: Mutex::new(HashMap::new()),
        });
        let acc_shared = Arc::clone(&shared);
        let acceptor = thread::Builder::new()
            .name(format!("backend-{}", addr.port()))
            .spawn(move || accept_loop(listener, acc_shared))
            .context("spawning backend thread")?;
        Ok(Backend {
            addr,
            shared,
            acceptor: Some(acceptor),
        })
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Changes the body of later responses.
    pub fn set_body(&self, body: &str) {
        if let Ok(mut b) = self.shared.body.write() {
            *b = body.to_owned();
        }
    }

    /// Requests answered (or, when hung, received) so far.
    pub fn requests(&self) -> u64 {
        self.shared.requests.load(Ordering::SeqCst)
    }

    /// Stops listening and closes every open connection; the port then
    /// refuses connections.
    pub fn stop(&mut self) {
        self.shared.stopping.store(true, Ordering::SeqCst);
        // Wake the blocking accept() with a connection of our own.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
        if let Ok(mut conns) = self.shared.conns.lock() {
            for (_, c) in conns.drain() {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop();
    }
}

fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    let mut next_id: u64 = 0;
    for stream in listener.incoming() {
        if shared.stopping.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let Ok(clone) = stream.try_clone() else {
            continue;
        };
        {
            let Ok(mut conns) = shared.conns.lock() else {
                break;
            };
            if conns.len() >= MAX_CONNECTIONS {
                continue;
            }
            next_id += 1;
            conns.insert(next_id, clone);
        }
        let id = next_id;
        let conn_shared = Arc::clone(&shared);
        let _ = thread::Builder::new()
            .name("backend-conn".into())
            .spawn(move || {
                serve(stream, &conn_shared);
                // Dropping the last handle closes our side of the socket.
                if let Ok(mut conns) = conn_shared.conns.lock() {
                    conns.remove(&id);
                }
            });
    }
}

/// Serves one connection until the peer closes it, asks to close, or the
/// backend stops.
fn serve(stream: TcpStream, shared: &Shared) {
    let Ok(write_half) = stream.try_clone() else {
        return;
    };
    let mut writer = write_half;
    // Head and body go out in two writes: without TCP_NODELAY the second
    // waits for the peer's delayed ACK (~40 ms per keep-alive response).
    let _ = writer.set_nodelay(true);
    let mut reader = BufReader::new(stream);
    loop {
        let Some(req) = read_request(&mut reader) else {
            return;
        };
        shared.requests.fetch_add(1, Ordering::SeqCst);
        if shared.hung || shared.stopping.load(Ordering::SeqCst) {
            // Keep reading (and never answering) until the peer gives up.
            continue;
        }
        let body = shared.body.read().map(|b| b.clone()).unwrap_or_default();
        let conn = if req.close { "close" } else { "keep-alive" };
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: {conn}\r\n\r\n",
            body.len()
        );
        let head_only = req.method == "HEAD";
        let sent = writer.write_all(head.as_bytes()).and_then(|()| {
            if head_only {
                Ok(())
            } else {
                writer.write_all(body.as_bytes())
            }
        });
        if sent.is_err() || req.close {
            let _ = writer.shutdown(Shutdown::Both);
            return;
        }
    }
}

struct Request {
    method: String,
    close: bool,
}

/// Reads one request (head and body); `None` at EOF or on garbage.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut line = String::new();
    if reader.read_line(&mut line).ok()? == 0 {
        return None;
    }
    let mut parts = line.split_whitespace();
    let method = parts.next()?.to_owned();
    let _target = parts.next()?;
    let version = parts.next()?.to_owned();
    let mut close = version == "HTTP/1.0";
    let mut content_length: u64 = 0;
    loop {
        let mut h = String::new();
        if reader.read_line(&mut h).ok()? == 0 {
            return None;
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        let (name, value) = h.split_once(':')?;
        let value = value.trim();
        if name.eq_ignore_ascii_case("content-length") {
            content_length = value.parse().ok()?;
        } else if name.eq_ignore_ascii_case("connection") {
            close = value.eq_ignore_ascii_case("close");
        }
    }
    if content_length > 0 {
        std::io::copy(&mut reader.take(content_length), &mut std::io::sink()).ok()?;
    }
    Some(Request { method, close })
}
