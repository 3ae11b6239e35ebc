//! A WordPress site's PHP limits, as `hostyard site set --php-upload`
//! writes them into its declaration, reach HAProxy through confd's
//! runtime API without a reload: a body over the new limit gets 413, and
//! the reset brings the default back.

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use hostyard_core::etcd::SiteDecl;
use hostyard_core::php::{PhpLimits, Size};
use hostyard_core::SiteKind;
use hostyard_testsupport::{wait_until, Backend, Etcd};
use util::{d, Router, T};

/// The status of a POST of `len` bytes.
fn post(port: u16, host: &str, len: u64) -> u16 {
    let Ok(mut tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return 0;
    };
    tcp.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let head = format!(
        "POST / HTTP/1.1\r\nHost: {host}\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n"
    );
    let _ = tcp.write_all(head.as_bytes());
    // HAProxy may answer 413 and stop reading before the end.
    let _ = tcp.write_all(&vec![b'x'; len as usize]);
    let mut answer = Vec::new();
    let mut buf = [0u8; 4096];
    while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
        match tcp.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => answer.extend_from_slice(&buf[..n]),
        }
    }
    String::from_utf8_lossy(&answer)
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0)
}

#[test]
fn php_limits_follow_the_declaration_without_a_reload() {
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    let backend = Backend::start("wp");
    r.start();
    r.register(&etcd, SiteKind::Wordpress, "wp.example.com", backend.port());
    r.wait_for("wp.example.com", 200, "wp");
    let worker = r.haproxy().worker_pid().unwrap();
    let key = r.schema.site_key(&d("wp.example.com"));
    // 3 MB: under the default upload limit (64M), so it passes.
    let wait = |want: u16| {
        let mut last = 0;
        if let Err(e) = wait_until(&format!("a 3 MB body -> {want}"), T, || {
            last = post(r.port, "wp.example.com", 3_000_000);
            (last == want).then_some(())
        }) {
            panic!("{e:#}; last {last}\nconfd log:\n{}", r.confd_log());
        }
    };
    wait(200);
    let mut decl = SiteDecl {
        kind: SiteKind::Wordpress,
        aliases: vec![],
        edge: Default::default(),
        php: PhpLimits {
            upload: Some(Size(2 << 20)),
            ..PhpLimits::default()
        },
    };
    etcd.put(&key, &decl.to_json()).unwrap();
    wait(413);
    assert_eq!(post(r.port, "wp.example.com", 1_500_000), 200);
    decl.php = PhpLimits::default();
    etcd.put(&key, &decl.to_json()).unwrap();
    wait(200);
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
    // The file holds what HAProxy holds: a restart loads the same.
    let map = std::fs::read_to_string(r.layout.php_limits_map()).unwrap();
    assert!(map.starts_with("wp.example.com 67371008/65000\n"), "{map}");
}
