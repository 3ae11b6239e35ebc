//! The limits of haproxy.cfg against a real HAProxy on the config
//! [`render_cfg`] renders: one client cannot starve the others, a client's
//! own address headers never reach a site, and WordPress's login paths are
//! rate-limited per client.
//!
//! Each client binds its socket to a loopback address of its own (Linux
//! routes all of 127/8 to `lo`), so HAProxy sees them as different
//! sources. Every load runs for a bounded time and stops by itself.
//!
//! `HOSTYARD_LIMITS=off` renders the same template with every limit lifted
//! through the node config (no per-source limit, no reserve, the handshake
//! timeout at `timeout client`, no TLS rate), which is how HAProxy was
//! configured before the limits; the tests then fail, and print the
//! figures to compare.

mod util;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hostyard_config::FleetPeer;
use hostyard_config::NodeConfig;
use hostyard_haproxy::{Entry, HostMap};
use hostyard_testsupport::client::{connect_from, exchange, tls_client};
use hostyard_testsupport::{free_port, wait_until, Backend, FleetCa, Haproxy};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, StreamOwned};
use util::{loopback_config, start_haproxy};

/// What a client would see as an outage: a request of another client that
/// takes longer than this has failed.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);

/// The client addresses: attackers and the bystander each have their own.
const HOLDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const BYSTANDER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const FLOODER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);
const PEER: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 5);

fn limits_off() -> bool {
    std::env::var("HOSTYARD_LIMITS").is_ok_and(|v| v == "off")
}

/// HAProxy on the rendered config with `hosts` routed to `backend`; killed
/// on drop with its temp dir.
struct Edge {
    config: NodeConfig,
    haproxy: Haproxy,
    _dir: tempfile::TempDir,
}

impl Edge {
    fn start(hosts: &[&str], backend: SocketAddr, tweak: impl FnOnce(&mut NodeConfig)) -> Edge {
        let (dir, mut config) = loopback_config("hyl");
        // Every client here is on loopback, which the default exempts.
        config.haproxy.unlimited_sources = vec![];
        tweak(&mut config);
        if limits_off() {
            let hp = &mut config.haproxy;
            hp.unlimited_sources = vec!["0.0.0.0/0".parse().unwrap(), "::/0".parse().unwrap()];
            hp.reserved_conns = 0;
            hp.handshake_timeout_secs = 60;
            hp.max_ssl_rate = 1_000_000;
        }
        let map: HostMap = hosts
            .iter()
            .map(|h| (h.to_string(), Entry::Route(backend)))
            .collect();
        let (haproxy, _) = start_haproxy(&config, &map);
        Edge {
            config,
            haproxy,
            _dir: dir,
        }
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.haproxy.http_port))
    }

    fn https(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.config.haproxy.https_port))
    }
}

fn http_from(
    source: Ipv4Addr,
    to: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> std::io::Result<(u16, String)> {
    let s = connect_from(source, to, REQUEST_TIMEOUT)?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    s.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    exchange(s, host, path, headers)
}

/// A TLS connection from `source` with its handshake done.
fn tls_from(
    tls: &Arc<ClientConfig>,
    source: Ipv4Addr,
    to: SocketAddr,
    sni: &str,
) -> std::io::Result<StreamOwned<ClientConnection, TcpStream>> {
    let mut sock = connect_from(source, to, REQUEST_TIMEOUT)?;
    sock.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    sock.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let name = ServerName::try_from(sni.to_string()).map_err(std::io::Error::other)?;
    let mut conn = ClientConnection::new(tls.clone(), name).map_err(std::io::Error::other)?;
    while conn.is_handshaking() {
        conn.complete_io(&mut sock)?;
    }
    Ok(StreamOwned::new(conn, sock))
}

/// A ClientHello as rustls writes it. A flood sends the same one on every
/// connection: HAProxy still does a whole handshake's work (key exchange
/// and signature) for each, the flood next to none.
fn client_hello(tls: &Arc<ClientConfig>, sni: &str) -> Vec<u8> {
    let name = ServerName::try_from(sni.to_string()).unwrap();
    let mut conn = ClientConnection::new(tls.clone(), name).unwrap();
    let mut hello = Vec::new();
    while conn.wants_write() {
        conn.write_tls(&mut hello).unwrap();
    }
    hello
}

/// One flood connection from `source`: the ClientHello, then the server's
/// first answer, then close. `Ok(true)` when HAProxy answered (it did the
/// handshake's work), `Ok(false)` when it closed the connection instead.
fn flood_once(source: Ipv4Addr, to: SocketAddr, hello: &[u8]) -> std::io::Result<bool> {
    let mut s = connect_from(source, to, REQUEST_TIMEOUT)?;
    s.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    s.write_all(hello)?;
    let mut buf = [0u8; 512];
    Ok(s.read(&mut buf)? > 0)
}

fn https_from(
    tls: &Arc<ClientConfig>,
    source: Ipv4Addr,
    to: SocketAddr,
    host: &str,
) -> std::io::Result<(u16, String)> {
    exchange(tls_from(tls, source, to, host)?, host, "/", &[])
}

/// Enough descriptors for the connections a test holds (the soft limit
/// up to the hard one).
fn raise_nofile(want: u64) {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft < want {
        setrlimit(Resource::RLIMIT_NOFILE, want.min(hard), hard).unwrap();
    }
    let (soft, _) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    assert!(
        soft >= want,
        "RLIMIT_NOFILE {soft} < {want}: raise the hard limit (ulimit -Hn) to run this test"
    );
}

/// Threads that run `f` until [`Load::stop`], which joins them.
struct Load {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Load {
    fn new() -> Load {
        Load {
            stop: Arc::new(AtomicBool::new(false)),
            threads: Vec::new(),
        }
    }

    fn spawn(&mut self, f: impl FnOnce(Arc<AtomicBool>) + Send + 'static) {
        let stop = self.stop.clone();
        self.threads.push(thread::spawn(move || f(stop)));
    }

    fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for t in self.threads {
            t.join().unwrap();
        }
    }
}

/// Keeps up to `count` idle connections from `source` to `to` open until
/// stopped: every second it drops the ones HAProxy closed and opens new
/// ones (for at most a second), as a client bent on holding them would.
/// `opened` counts connections opened, `attempts` connects tried.
fn hold(
    stop: &AtomicBool,
    source: Ipv4Addr,
    to: SocketAddr,
    count: usize,
    opened: &AtomicU64,
    attempts: &AtomicU64,
) {
    let mut held: Vec<TcpStream> = Vec::with_capacity(count);
    let mut buf = [0u8; 64];
    while !stop.load(Ordering::SeqCst) {
        held.retain_mut(|s| match s.read(&mut buf) {
            Ok(0) => false,
            Ok(_) => true,
            Err(e) => e.kind() == std::io::ErrorKind::WouldBlock,
        });
        let pass = Instant::now();
        while held.len() < count
            && pass.elapsed() < Duration::from_secs(1)
            && !stop.load(Ordering::SeqCst)
        {
            attempts.fetch_add(1, Ordering::SeqCst);
            if let Ok(s) = connect_from(source, to, Duration::from_millis(500)) {
                if s.set_nonblocking(true).is_ok() {
                    held.push(s);
                    opened.fetch_add(1, Ordering::SeqCst);
                }
            }
        }
        thread::sleep(Duration::from_secs(1));
    }
}

fn p50(times: &mut [Duration]) -> Duration {
    times.sort();
    times[times.len() / 2]
}

/// `count` requests of the bystander for b.example, a new connection
/// each, two in three over HTTPS, one in three over HTTP: the failures,
/// and the median time over HTTPS and over HTTP (a failed request counts
/// as [`REQUEST_TIMEOUT`]).
fn bystander(
    tls: &Arc<ClientConfig>,
    http: SocketAddr,
    https: SocketAddr,
    count: usize,
) -> (Vec<String>, (Duration, Duration)) {
    let mut failures = Vec::new();
    let mut times = (Vec::new(), Vec::new());
    for i in 0..count {
        let t = Instant::now();
        let (answer, times) = if i % 3 == 2 {
            (
                http_from(BYSTANDER, http, "b.example", "/", &[]),
                &mut times.1,
            )
        } else {
            (https_from(tls, BYSTANDER, https, "b.example"), &mut times.0)
        };
        let took = t.elapsed();
        match answer {
            Ok((200, text)) if text.ends_with("\r\n\r\nb") => times.push(took),
            other => {
                failures.push(format!("request {i} after {took:?}: {other:?}"));
                times.push(took.max(REQUEST_TIMEOUT));
            }
        }
        thread::sleep(Duration::from_millis(100));
    }
    (failures, (p50(&mut times.0), p50(&mut times.1)))
}

/// Seen on a server: one address opened 4,500 connections to port 443 and
/// sent nothing, and another client's requests to another site all timed
/// out. Here one address tries to hold 5,000 idle connections to 443 and
/// another floods it with TLS handshakes while a third asks another site
/// for 20 pages over HTTPS and 10 over HTTP: every one is answered.
#[test]
fn one_client_holding_connections_or_flooding_handshakes_leaves_another_answered() {
    raise_nofile(12_000);
    let site = Backend::start("b");
    let edge = Edge::start(&["a.example", "b.example"], site.addr(), |_| {});
    let (http, https) = (edge.http(), edge.https());
    let tls = tls_client(None, false);
    let (quiet_https, quiet_http) = bystander(&tls, http, https, 10).1;

    let mut load = Load::new();
    let opened = Arc::new(AtomicU64::new(0));
    let attempts = Arc::new(AtomicU64::new(0));
    for _ in 0..4 {
        let (opened, attempts) = (opened.clone(), attempts.clone());
        load.spawn(move |stop| hold(&stop, HOLDER, https, 1250, &opened, &attempts));
    }
    let handshakes = Arc::new(AtomicU64::new(0));
    let refused = Arc::new(AtomicU64::new(0));
    let hello = Arc::new(client_hello(&tls, "a.example"));
    for _ in 0..4 {
        let (handshakes, refused, hello) = (handshakes.clone(), refused.clone(), hello.clone());
        load.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                match flood_once(FLOODER, https, &hello) {
                    Ok(true) => handshakes.fetch_add(1, Ordering::SeqCst),
                    _ => refused.fetch_add(1, Ordering::SeqCst),
                };
            }
        });
    }
    // The holder has tried its 5,000 (or spent 10 s at it), the flood runs.
    wait_until(
        "the holder's 5,000 connects",
        Duration::from_secs(10),
        || (attempts.load(Ordering::SeqCst) >= 5000).then_some(()),
    )
    .ok();
    wait_until("the handshake flood", Duration::from_secs(10), || {
        (handshakes.load(Ordering::SeqCst) + refused.load(Ordering::SeqCst) > 0).then_some(())
    })
    .unwrap();
    let info = edge.haproxy.runtime("show info").unwrap_or_default();
    let conns = info
        .lines()
        .find(|l| l.starts_with("CurrConns:"))
        .unwrap_or("CurrConns: ?")
        .to_string();

    let (failures, (https_p50, http_p50)) = bystander(&tls, http, https, 30);
    load.stop();
    eprintln!(
        "limits {}: b.example p50 over HTTPS {https_p50:?}, over HTTP {http_p50:?}, {} of 30 failed \
         (before the load: {quiet_https:?}, {quiet_http:?}); holder opened {} connections in {} \
         connects, flood {} handshakes and {} refused; {conns} while the holder held",
        if limits_off() { "off" } else { "on" },
        failures.len(),
        opened.load(Ordering::SeqCst),
        attempts.load(Ordering::SeqCst),
        handshakes.load(Ordering::SeqCst),
        refused.load(Ordering::SeqCst),
    );
    assert!(failures.is_empty(), "{failures:#?}");
    // The limits held: the flood was refused past its connection rate.
    assert!(refused.load(Ordering::SeqCst) > 0);
}

/// `haproxy.reserved_conns` keeps connections for the fleet's peer
/// frontend: with the public frontend full (many clients, here one that is
/// exempt from the per-source limits), a peer's forwarded request is
/// answered while a public one waits.
#[test]
fn a_full_public_frontend_leaves_room_for_the_peer_frontend() {
    raise_nofile(2_000);
    let site = Backend::start("b");
    let peer_port = free_port();
    let certs = tempfile::tempdir().unwrap();
    let ca = FleetCa::new(certs.path(), "fleet").unwrap();
    let n1 = ca
        .issue_server("n1", IpAddr::V4(Ipv4Addr::LOCALHOST))
        .unwrap();
    let n2 = ca.issue_server("n2", IpAddr::V4(PEER)).unwrap();
    let edge = Edge::start(&["b.example"], site.addr(), |c| {
        c.node_name = "n1".into();
        c.haproxy.maxconn = 300;
        c.haproxy.reserved_conns = 100;
        c.haproxy.site_maxconn = 100;
        c.haproxy.unlimited_sources = vec!["127.0.0.2/32".parse().unwrap()];
        c.fleet.private_address = Some(IpAddr::V4(Ipv4Addr::LOCALHOST));
        c.fleet.peer_port = peer_port;
        c.fleet.peers = vec![FleetPeer {
            name: "n2".into(),
            address: IpAddr::V4(PEER),
        }];
        c.fleet.ca_file = ca.ca_file();
        c.fleet.cert_file = n1.cert_file.clone();
        c.fleet.key_file = n1.key_file.clone();
    });
    let http = edge.http();
    // More idle connections than HAProxy takes at all; they last until
    // timeout http-request (10 s).
    let held: Vec<TcpStream> = (0..350)
        .filter_map(|_| connect_from(HOLDER, http, Duration::from_millis(200)).ok())
        .collect();
    let full = wait_until("the public frontend full", Duration::from_secs(5), || {
        let info = edge.haproxy.runtime("show info").ok()?;
        let conns: u32 = info
            .lines()
            .find_map(|l| l.strip_prefix("CurrConns: "))?
            .trim()
            .parse()
            .ok()?;
        (conns >= edge.config.haproxy.public_maxconn()).then_some(conns)
    });
    eprintln!("{} held, HAProxy's connections: {full:?}", held.len());
    // A public request waits (the frontend takes no more).
    let public = http_from(BYSTANDER, http, "b.example", "/", &[]);
    assert!(
        public.is_err(),
        "the public frontend was not full: {public:?}"
    );
    // A peer's request, PROXY header first, then TLS with its
    // certificate, is served.
    let mut peer = connect_from(
        PEER,
        SocketAddr::from(([127, 0, 0, 1], peer_port)),
        REQUEST_TIMEOUT,
    )
    .unwrap();
    peer.set_read_timeout(Some(REQUEST_TIMEOUT)).unwrap();
    peer.write_all(b"PROXY TCP4 198.51.100.7 127.0.0.1 40000 80\r\n")
        .unwrap();
    let conn = ClientConnection::new(
        tls_client(Some(&n2), true),
        ServerName::IpAddress(Ipv4Addr::LOCALHOST.into()),
    )
    .unwrap();
    let answer = exchange(StreamOwned::new(conn, peer), "b.example", "/", &[]);
    assert!(
        matches!(&answer, Ok((200, text)) if text.ends_with("\r\n\r\nb")),
        "{answer:?}"
    );
    drop(held);
}

/// A backend that answers each request with the request's head as its
/// body, so a test sees every header HAProxy passed on.
fn echo_backend() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    thread::spawn(move || {
        for mut s in listener.incoming().flatten() {
            thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).ok();
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") {
                    match s.read(&mut byte) {
                        Ok(1) => head.push(byte[0]),
                        _ => return,
                    }
                }
                let answer = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                    head.len()
                );
                let _ = s.write_all(answer.as_bytes());
                let _ = s.write_all(&head);
            });
        }
    });
    addr
}

/// Forwarded, X-Real-IP, X-Forwarded-Host, -Port and the like, sent by a
/// client in any case, never reach a site; the site sees exactly one
/// X-Forwarded-For (the client's address) and one X-Forwarded-Proto, both
/// HAProxy's own.
#[test]
fn address_headers_a_client_sent_never_reach_a_site() {
    let edge = Edge::start(&["b.example"], echo_backend(), |_| {});
    let forged: &[(&str, &str)] = &[
        ("Forwarded", "for=203.0.113.9;proto=https;host=evil.example"),
        ("X-Real-IP", "203.0.113.9"),
        ("x-forwarded-host", "evil.example"),
        ("X-Forwarded-Port", "443"),
        ("X-FORWARDED-FOR", "203.0.113.9"),
        ("X-Forwarded-Proto", "https"),
        ("X-Forwarded-Ssl", "on"),
        ("X-Client-IP", "203.0.113.9"),
        ("True-Client-IP", "203.0.113.9"),
        ("X-Cluster-Client-IP", "203.0.113.9"),
        ("CF-Connecting-IP", "203.0.113.9"),
    ];
    let (status, text) = http_from(BYSTANDER, edge.http(), "b.example", "/", forged).unwrap();
    assert_eq!(status, 200, "{text}");
    let seen = text.split_once("\r\n\r\n").unwrap().1.to_ascii_lowercase();
    assert!(!seen.contains("203.0.113.9"), "{seen}");
    assert!(!seen.contains("evil.example"), "{seen}");
    for name in [
        "forwarded:",
        "x-real-ip:",
        "x-forwarded-port:",
        "x-forwarded-ssl:",
    ] {
        assert!(!seen.contains(name), "{name} reached the site:\n{seen}");
    }
    assert_eq!(
        seen.matches("x-forwarded-for: 127.0.0.3\r\n").count(),
        1,
        "{seen}"
    );
    assert_eq!(
        seen.matches("x-forwarded-proto: http\r\n").count(),
        1,
        "{seen}"
    );
    assert_eq!(seen.matches("x-forwarded-").count(), 2, "{seen}");
}

/// Past `haproxy.login_rate` requests to wp-login.php or xmlrpc.php in a
/// minute, one client gets a marked 429 on those paths (however it spells
/// them) while its other pages and another client's login still answer;
/// past `haproxy.source_req_rate` in 10 s, every request of that client.
#[test]
fn login_paths_answer_429_past_the_rate_and_another_client_logs_in() {
    let site = Backend::start("wp");
    let edge = Edge::start(&["wp.example"], site.addr(), |c| {
        c.haproxy.login_rate = 5;
        c.haproxy.source_req_rate = 40;
    });
    let http = edge.http();
    let get = |from: Ipv4Addr, path: &str| {
        let (status, text) = http_from(from, http, "wp.example", path, &[]).unwrap();
        let page = text
            .lines()
            .find_map(|l| l.strip_prefix("x-hostyard-page: "))
            .map(str::to_string);
        (status, page)
    };
    for i in 0..5 {
        let path = if i % 2 == 0 {
            "/wp-login.php"
        } else {
            "/xmlrpc.php"
        };
        assert_eq!(get(HOLDER, path), (200, None), "login request {i}");
    }
    for path in [
        "/wp-login.php",
        "/xmlrpc.php",
        "//wp-login.php?action=lostpassword",
        "/wp-log%69n.php",
        "/WP-LOGIN.PHP",
        "/xmlrpc.php/x",
    ] {
        assert_eq!(get(HOLDER, path), (429, Some("limited".into())), "{path}");
    }
    assert_eq!(get(HOLDER, "/"), (200, None), "the client's other pages");
    assert_eq!(
        get(BYSTANDER, "/wp-login.php"),
        (200, None),
        "another client"
    );
    // The request rate: 12 requests so far, 40 in 10 s, then every path.
    let mut first_refused = None;
    for i in 12..45 {
        if get(HOLDER, "/").0 == 429 {
            first_refused = Some(i);
            break;
        }
    }
    assert_eq!(
        first_refused,
        Some(40),
        "the 41st request in 10 s is refused"
    );
    assert_eq!(get(BYSTANDER, "/"), (200, None), "another client");
}

/// The figure behind `haproxy.max_ssl_rate`'s default, not a check:
/// HAProxy's CPU time per full handshake (its worker's utime + stime over
/// 5 s of the handshake flood, every limit lifted). Run with
/// `cargo test -p hostyard-haproxy --test limits -- --ignored --nocapture`.
#[test]
#[ignore]
fn figure_haproxy_cpu_per_full_handshake() {
    let site = Backend::start("b");
    let edge = Edge::start(&["a.example"], site.addr(), |c| {
        c.haproxy.unlimited_sources = vec!["0.0.0.0/0".parse().unwrap()];
        c.haproxy.max_ssl_rate = 1_000_000;
    });
    let https = edge.https();
    let hello = Arc::new(client_hello(&tls_client(None, false), "a.example"));
    let pid = edge.haproxy.worker_pid().unwrap();
    // Clock ticks of user and system time, fields 14 and 15 of stat.
    let ticks = || {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
    };
    let before = ticks();
    let done = Arc::new(AtomicU64::new(0));
    let mut load = Load::new();
    for _ in 0..4 {
        let (done, hello) = (done.clone(), hello.clone());
        load.spawn(move |stop| {
            while !stop.load(Ordering::SeqCst) {
                if let Ok(true) = flood_once(FLOODER, https, &hello) {
                    done.fetch_add(1, Ordering::SeqCst);
                }
            }
        });
    }
    thread::sleep(Duration::from_secs(5));
    load.stop();
    let cpu_ms = (ticks() - before) * 1000
        / nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
            .unwrap()
            .unwrap() as u64;
    let done = done.load(Ordering::SeqCst);
    assert!(done > 0);
    eprintln!(
        "{done} handshakes in 5 s, HAProxy's CPU {cpu_ms} ms: {:.2} ms each",
        cpu_ms as f64 / done as f64
    );
}
