//! A structural reload under keep-alive: what `option idle-close-on-response`
//! in unit-templates/haproxy.cfg is for. Without it the old worker closes
//! idle client connections as soon as the new one takes over, and a client
//! that sends on one then sees the connection closed instead of an answer
//! (the confd bench's failed requests with HAProxy 2.6).

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;

use hostyard_core::SiteKind;
use hostyard_testsupport::{wait_until, Backend, Etcd};
use util::{d, Router, T};

/// One response read from a keep-alive connection: status, lower-cased
/// headers and the body (by Content-Length). `Err` says what came instead.
fn read_response(conn: &mut TcpStream) -> Result<(u16, String, String), String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    let head_end = loop {
        if let Some(i) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
        match conn.read(&mut chunk) {
            Ok(0) => return Err(format!("connection closed after {} bytes", buf.len())),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read failed after {} bytes: {e}", buf.len())),
        }
    };
    let head = String::from_utf8_lossy(&buf[..head_end]).to_lowercase();
    let status = head
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("no status line in {head:?}"))?;
    let length: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse().ok())
        .ok_or_else(|| format!("no content-length in {head:?}"))?;
    while buf.len() < head_end + length {
        match conn.read(&mut chunk) {
            Ok(0) => return Err("connection closed inside the body".into()),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) => return Err(format!("read failed inside the body: {e}")),
        }
    }
    let body = String::from_utf8_lossy(&buf[head_end..head_end + length]).into_owned();
    Ok((status, head, body))
}

fn send_get(conn: &mut TcpStream, host: &str) {
    // One write: a request in pieces would race the reload differently.
    conn.write_all(format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n").as_bytes())
        .expect("write the request");
}

#[test]
fn an_idle_keep_alive_connection_gets_its_next_answer_across_a_reload() {
    let etcd = Etcd::start().unwrap();
    let (mut r, _b) = Router::routed_from_start(&etcd, "k.example.com", "steady");

    // A keep-alive connection, answered once and idle in the current worker.
    let mut conn = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
    conn.set_read_timeout(Some(T)).unwrap();
    send_get(&mut conn, "k.example.com");
    let (status, head, body) = read_response(&mut conn).unwrap();
    assert_eq!((status, body.as_str()), (200, "steady"), "{head}");
    assert!(!head.contains("connection: close"), "{head}");
    let old = r.haproxy().worker_pid().unwrap();

    // A structural change: confd reloads HAProxy through the master.
    r.config.haproxy.frontend_rules = vec!["http-request set-header X-Hostyard 1".into()];
    r.apply_config();
    r.wait_new_worker("the new worker to take over", old);

    // The old worker kept the idle connection: the next request on it is
    // answered, with "Connection: close" so the client moves to the new one.
    send_get(&mut conn, "k.example.com");
    let (status, head, body) = read_response(&mut conn).unwrap_or_else(|e| {
        panic!(
            "the request on the idle connection got no answer across the reload: {e}\n\
             HAProxy log:\n{}",
            std::fs::read_to_string(r.haproxy().log_path()).unwrap_or_default()
        )
    });
    assert_eq!((status, body.as_str()), (200, "steady"), "{head}");
    assert!(head.contains("connection: close"), "{head}");
    // And a new connection is served by the new worker.
    r.wait_for("k.example.com", 200, "steady");
}

/// confd changes HAProxy's runtime map first and rewrites the map file
/// after it (at most every 100 ms), so a reload from outside confd
/// (`systemctl reload haproxy`, or a restart) can load a file without the
/// newest change. confd then sees HAProxy's older routing generation after
/// its write and replaces the runtime map: the change stays. Each round
/// makes the race happen, every time: once the change is live and in the
/// file, the file is put back as it was before the change (what a reload
/// that read the file a moment earlier would load), then HAProxy reloads.
#[test]
fn a_reload_right_after_a_runtime_change_keeps_it() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("kept");
    let r = Router::started(&etcd);
    let map = r.layout.hosts_map();
    for round in 0..4 {
        let host = format!("r{round}.example.com");
        // The site's declaration first; once the file has it, the
        // registration comes within the file's period.
        r.register(&etcd, SiteKind::Static, &host, b.port());
        let in_file = format!("{host} route/");
        let _ = etcd.delete(&r.schema.service_key(SiteKind::Static, &d(&host)));
        let before = wait_until("the file without the registration", T, || {
            let text = std::fs::read_to_string(&map).ok()?;
            (text.contains(&host) && !text.contains(&in_file)).then_some(text)
        })
        .unwrap();
        r.put_service(&etcd, SiteKind::Static, &d(&host), b.port());
        wait_until("the change live through the runtime API", T, || {
            let (status, body) = r.get(&host);
            (status == 200 && body == "kept").then_some(())
        })
        .unwrap();
        wait_until("the change in the file", T, || {
            let text = std::fs::read_to_string(&map).ok()?;
            text.contains(&in_file).then_some(())
        })
        .unwrap();
        let older = map.with_extension("older");
        std::fs::write(&older, &before).unwrap();
        std::fs::rename(&older, &map).unwrap();
        let old = r.haproxy().worker_pid().unwrap();
        r.haproxy().master("reload").unwrap();
        r.wait_new_worker("the new worker to take over", old);
        r.wait_for(&host, 200, "kept");
    }
    // The file caught up and holds what HAProxy routes.
    wait_until("the file equal to the runtime map", T, || {
        let file = std::fs::read_to_string(&map).ok()?;
        let runtime = r
            .haproxy()
            .runtime(&format!("show map {}", map.display()))
            .ok()?;
        let (file, runtime) = (
            hostyard_haproxy::parse_map(&file),
            hostyard_haproxy::parse_map(&runtime),
        );
        // Four sites and their www. names.
        (file == runtime && file.len() == 8).then_some(())
    })
    .unwrap();
    let seen = r.confd_log().matches("on an older host map").count();
    assert!(
        seen >= 4,
        "confd saw an older host map after {seen} of 4 reloads; its log:\n{}",
        r.confd_log()
    );
}
