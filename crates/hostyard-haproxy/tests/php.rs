//! A WordPress site's PHP limits in haproxy.cfg against a real HAProxy:
//! a body declared larger than the site's upload limit (and its margin)
//! gets 413 from HAProxy and never reaches the site, one under it passes,
//! another site is not limited, and HAProxy waits for the site's response
//! as long as its PHP time (and the margin), not the 60 s default.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use hostyard_core::php::{effective, PhpBounds, PhpLimits, Seconds, Size, BODY_MARGIN};
use hostyard_core::Layout;
use hostyard_haproxy::{Entry, HostMap, FILE};
use hostyard_testsupport::Backend;
use util::{loopback_config, start_haproxy};

/// POSTs `len` bytes to `host` (sending at most `send` of them) and
/// returns the status HAProxy answers.
fn post(port: u16, host: &str, len: u64, send: u64) -> u16 {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let head = format!(
        "POST /wp-admin/async-upload.php HTTP/1.1\r\nHost: {host}\r\nContent-Type: \
         application/octet-stream\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    tcp.write_all(head.as_bytes()).unwrap();
    let chunk = vec![b'x'; 64 * 1024];
    let mut left = send.min(len);
    while left > 0 {
        let n = left.min(chunk.len() as u64) as usize;
        // HAProxy may answer and close before it read the whole body.
        if tcp.write_all(&chunk[..n]).is_err() {
            break;
        }
        left -= n as u64;
    }
    // The head is enough: after a 413 HAProxy drains what the client
    // still sends before it closes.
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&answer);
    text.split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no HTTP answer from {host}: {text:?}"))
}

fn get_status(port: u16, host: &str) -> u16 {
    let mut tcp = TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    tcp.write_all(
        format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .unwrap();
    let mut answer = Vec::new();
    let _ = tcp.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn a_body_over_the_sites_upload_limit_gets_413_and_the_timeout_follows_php_time() {
    let site = Backend::start("site");
    let hung = Backend::hung();
    let (_dir, config) = loopback_config("hyphp");
    let port = config.haproxy.http_port;
    let layout = Layout::new(&config.data_root);
    let mut map = HostMap::new();
    map.insert("wp.example".into(), Entry::Route(site.addr()));
    map.insert("other.example".into(), Entry::Route(site.addr()));
    map.insert("slow.example".into(), Entry::Route(hung.addr()));
    let bounds = PhpBounds::default();
    let small = effective(
        &PhpLimits {
            upload: Some(Size(2 << 20)),
            ..PhpLimits::default()
        },
        &bounds,
    );
    let quick = effective(
        &PhpLimits {
            time: Some(Seconds(1)),
            ..PhpLimits::default()
        },
        &bounds,
    );
    hostyard_tls::ensure_base(&layout).unwrap();
    FILE.write(
        &layout.php_limits_map(),
        format!(
            "wp.example {}\nslow.example {}\n",
            small.map_value(),
            quick.map_value()
        )
        .as_bytes(),
    )
    .unwrap();
    let (_haproxy, _) = start_haproxy(&config, &map);

    let limit = (2 << 20) + BODY_MARGIN;
    // 1.5 MB passes, as does a body at the limit exactly.
    assert_eq!(post(port, "wp.example", 1_500_000, u64::MAX), 200);
    assert_eq!(post(port, "wp.example", limit, u64::MAX), 200);
    // One byte over: 413, before the body is read (a client sending 3 MB
    // is stopped after HAProxy's buffer).
    assert_eq!(post(port, "wp.example", limit + 1, 64 * 1024), 413);
    assert_eq!(post(port, "wp.example", 3_000_000, u64::MAX), 413);
    let before = site.requests();
    assert_eq!(post(port, "wp.example", 3_000_000, 64 * 1024), 413);
    assert_eq!(site.requests(), before, "the site never saw it");
    // A site without PHP limits (static): no limit here.
    assert_eq!(post(port, "other.example", 3_000_000, u64::MAX), 200);

    // The server timeout is the site's PHP time plus the margin: 504
    // after 6 s, not the default 60 s.
    let start = Instant::now();
    assert_eq!(get_status(port, "slow.example"), 504);
    let took = start.elapsed();
    let want = Duration::from_millis(quick.server_timeout_ms());
    assert!(
        took >= want - Duration::from_millis(200) && took < want + Duration::from_secs(3),
        "504 after {took:?}, want about {want:?}"
    );
}
