//! Two servers of a fleet on one machine: two confd + HAProxy pairs on
//! 127.0.0.2 and 127.0.0.3 against one real etcd. A site registered by one
//! is served through the other, forwarded to the first's peer frontend with
//! the PROXY protocol; the peer frontend takes nothing from anyone else.

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use hostyard_config::FleetPeer;
use hostyard_core::etcd::ServiceValue;
use hostyard_core::SiteKind;
use hostyard_testsupport::{free_port, wait_until, Etcd};
use util::{d, Router, T};

/// A site that answers with its name and the forwarding headers it got,
/// so the test sees where a request went and what the site learnt of the
/// client.
struct EchoSite {
    port: u16,
}

impl EchoSite {
    fn start(name: &'static str) -> EchoSite {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        std::thread::spawn(move || {
            for conn in listener.incoming().flatten() {
                std::thread::spawn(move || echo(conn, name));
            }
        });
        EchoSite { port }
    }
}

fn echo(conn: TcpStream, name: &str) {
    let mut reader = BufReader::new(conn.try_clone().unwrap());
    let mut xff = Vec::new();
    let mut proto = Vec::new();
    let mut line = String::new();
    while reader.read_line(&mut line).unwrap_or(0) > 0 && line != "\r\n" {
        if let Some((k, v)) = line.split_once(':') {
            match k.to_ascii_lowercase().as_str() {
                "x-forwarded-for" => xff.push(v.trim().to_string()),
                "x-forwarded-proto" => proto.push(v.trim().to_string()),
                _ => {}
            }
        }
        line.clear();
    }
    let body = format!(
        "site={name} xff=[{}] proto=[{}]",
        xff.join(","),
        proto.join(",")
    );
    let _ = (&conn).write_all(
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    );
}

/// One request over a fresh connection: the status and body, or `None`
/// when the connection closed without an answer.
fn request(addr: SocketAddr, preamble: &str, host: &str, extra: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let req =
        format!("{preamble}GET / HTTP/1.1\r\nHost: {host}\r\n{extra}Connection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut text = String::new();
    let _ = s.read_to_string(&mut text);
    let status = text.split_whitespace().nth(1)?.parse().ok()?;
    let body = text.split_once("\r\n\r\n")?.1.to_string();
    Some((status, body))
}

struct Server {
    name: &'static str,
    router: Router,
    ip: IpAddr,
}

impl Server {
    fn http(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.router.port)
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(self.ip, self.router.config.fleet.peer_port)
    }

    fn get(&self, host: &str) -> Option<(u16, String)> {
        request(self.http(), "", host, "")
    }

    /// Waits until `host` through this server answers `status` with a body
    /// containing `body`.
    fn wait_for(&self, host: &str, status: u16, body: &str) {
        let mut last = None;
        let r = wait_until(&format!("{host} via {}", self.name), T, || {
            last = self.get(host);
            last.as_ref()
                .is_some_and(|(s, b)| *s == status && b.contains(body))
                .then_some(())
        });
        if let Err(e) = r {
            panic!(
                "{e:#}; last answer {last:?}\nconfd log:\n{}",
                self.router.confd_log()
            );
        }
    }

    /// A registration by this server (its node name), as discovery writes it.
    fn register(&self, etcd: &Etcd, domain: &str, port: u16, lease_ttl: Option<i64>) {
        let domain = d(domain);
        etcd.put(
            &self.router.schema.site_key(&domain),
            r#"{"kind":"static"}"#,
        )
        .unwrap();
        let v = ServiceValue {
            ip: "127.0.0.1".parse().unwrap(),
            port,
            node: Some(self.name.to_string()),
        };
        let key = self.router.schema.service_key(SiteKind::Static, &domain);
        match lease_ttl {
            Some(ttl) => {
                etcd.put_with_lease(&key, &v.to_json(), ttl).unwrap();
            }
            None => etcd.put(&key, &v.to_json()).unwrap(),
        }
    }
}

/// Two servers, each the other's only peer, sharing one peer port.
fn fleet(etcd: &Etcd) -> (Server, Server) {
    let peer_port = free_port();
    let servers = [("a", "127.0.0.2"), ("b", "127.0.0.3")];
    let mut out = Vec::new();
    for (name, ip) in servers {
        let mut router = Router::new(etcd);
        let ip: IpAddr = ip.parse().unwrap();
        router.config.node_name = name.to_string();
        router.config.haproxy.bind_address = ip;
        router.config.fleet = util::fleet_among(&servers, name, peer_port);
        router.write_config();
        router.start();
        out.push(Server { name, router, ip });
    }
    let b = out.pop().unwrap();
    let a = out.pop().unwrap();
    (a, b)
}

#[test]
fn every_server_serves_every_site_and_only_peers_may_forward() {
    let etcd = Etcd::start().unwrap();
    let (a, b) = fleet(&etcd);
    let pids = (
        a.router.haproxy().worker_pid().unwrap(),
        b.router.haproxy().worker_pid().unwrap(),
    );
    let on_b = EchoSite::start("on-b");
    let on_a = EchoSite::start("on-a");

    // Registered by b: served by b directly and through a, which forwards
    // it to b's peer frontend; the site sees the client (127.0.0.1), once.
    b.register(&etcd, "one.example.com", on_b.port, None);
    let client = "xff=[127.0.0.1] proto=[http]";
    b.wait_for("one.example.com", 200, &format!("site=on-b {client}"));
    a.wait_for("one.example.com", 200, &format!("site=on-b {client}"));
    let shown = a
        .router
        .haproxy()
        .runtime(&format!(
            "show map {}",
            a.router.layout.hosts_map().display()
        ))
        .unwrap();
    assert!(
        shown.contains(&format!(
            "one.example.com peer/127.0.0.3/{}",
            b.peer().port()
        )),
        "{shown}"
    );
    // And the other way round.
    a.register(&etcd, "two.example.com", on_a.port, None);
    b.wait_for("two.example.com", 200, &format!("site=on-a {client}"));

    // What a client claims is not passed on, directly or forwarded.
    for s in [&a, &b] {
        let got = request(
            s.http(),
            "",
            "one.example.com",
            "X-Forwarded-For: 203.0.113.9\r\nX-Forwarded-Proto: https\r\n",
        );
        assert_eq!(
            got,
            Some((200, format!("site=on-b {client}"))),
            "via {}",
            s.name
        );
    }

    // The peer frontend: nothing from an address that is not a peer (the
    // test connects from 127.0.0.1), with or without a PROXY header, and a
    // PROXY header cannot make it one.
    for preamble in [
        "",
        "PROXY TCP4 127.0.0.2 127.0.0.3 40000 8405\r\n",
        "PROXY TCP4 203.0.113.9 127.0.0.3 40000 8405\r\n",
    ] {
        assert_eq!(
            request(b.peer(), preamble, "one.example.com", ""),
            None,
            "{preamble:?}"
        );
    }
    // Nor does it listen anywhere but the private address.
    assert!(TcpStream::connect(("127.0.0.1", b.peer().port())).is_err());

    // A registration by a server that is not a peer is not routed: 503 on
    // a, and b, which is not that server either, the same.
    let stray = ServiceValue {
        ip: "127.0.0.1".parse().unwrap(),
        port: on_b.port,
        node: Some("zz".to_string()),
    };
    etcd.put(
        &a.router.schema.site_key(&d("stray.example.com")),
        r#"{"kind":"static"}"#,
    )
    .unwrap();
    etcd.put(
        &a.router
            .schema
            .service_key(SiteKind::Static, &d("stray.example.com")),
        &stray.to_json(),
    )
    .unwrap();
    a.wait_for("stray.example.com", 503, "");
    b.wait_for("stray.example.com", 503, "");

    // Routing changes never reloaded either HAProxy.
    assert_eq!(
        (
            a.router.haproxy().worker_pid().unwrap(),
            b.router.haproxy().worker_pid().unwrap()
        ),
        pids,
        "a HAProxy was reloaded"
    );
}

/// Waits until this server's haproxy.cfg holds `what`.
fn cfg_says(s: &Server, what: &str) {
    let path = s.router.layout.haproxy_cfg();
    wait_until(&format!("{what:?} in haproxy.cfg"), T, || {
        std::fs::read_to_string(&path)
            .ok()
            .filter(|t| t.contains(what))
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", s.router.confd_log()));
}

/// A server added to the fleet later: the others learn it from their node
/// config on SIGHUP (deploy/server.sh add sends it), and serve its sites
/// from then on; before, its registrations are refused (503), not routed
/// to the address they name.
#[test]
fn a_peer_added_to_the_node_config_is_forwarded_to_after_sighup() {
    let etcd = Etcd::start().unwrap();
    let (mut a, b) = fleet(&etcd);
    a.router.config.fleet.peers.clear();
    a.router.apply_config();
    let site = EchoSite::start("on-b");
    b.register(&etcd, "new.example.com", site.port, None);
    b.wait_for("new.example.com", 200, "site=on-b");
    a.wait_for("new.example.com", 503, "");
    // And its peer frontend takes no peer's requests now.
    cfg_says(&a, "    tcp-request connection reject\n");
    a.router.config.fleet.peers = vec![FleetPeer {
        name: "b".into(),
        address: "127.0.0.3".parse().unwrap(),
    }];
    a.router.apply_config();
    a.wait_for("new.example.com", 200, "site=on-b xff=[127.0.0.1]");
    cfg_says(
        &a,
        "tcp-request connection reject unless { src 127.0.0.3 }\n",
    );
}

/// Losing a server: its registrations expire with their lease, and its
/// sites turn to the 503 page (not 404) on every server, within the TTL;
/// when it registers again they come back everywhere.
#[test]
fn a_lost_servers_sites_are_503_everywhere_within_the_lease_and_come_back() {
    let etcd = Etcd::start().unwrap();
    let (a, b) = fleet(&etcd);
    let site = EchoSite::start("on-b");
    let ttl = 2;
    b.register(&etcd, "lost.example.com", site.port, Some(ttl));
    a.wait_for("lost.example.com", 200, "site=on-b");
    // b stops keeping its lease alive (as when it dies or is cut off).
    let lost = Instant::now();
    for s in [&a, &b] {
        s.wait_for("lost.example.com", 503, "");
    }
    let took = lost.elapsed();
    // etcd expires a lease up to about a second after its TTL.
    assert!(
        took <= Duration::from_secs(ttl as u64 + 2),
        "503 after {took:?}"
    );
    let (_, body) = a.get("lost.example.com").unwrap();
    assert!(body.to_lowercase().contains("maintenance"), "{body}");
    b.register(&etcd, "lost.example.com", site.port, None);
    a.wait_for("lost.example.com", 200, "site=on-b");
}

/// A server's certificate renewed in place (same files, so the same
/// haproxy.cfg) is what its HAProxy presents to peers after a SIGHUP, as
/// `deploy/server.sh add` sends one: confd copies it and reloads HAProxy.
#[test]
fn a_peer_certificate_renewed_in_place_is_used_after_sighup() {
    let etcd = Etcd::start().unwrap();
    let (a, b) = fleet(&etcd);
    let site = EchoSite::start("on-b");
    b.register(&etcd, "renewed.example.com", site.port, None);
    a.wait_for("renewed.example.com", 200, "site=on-b");
    let cfg = std::fs::read_to_string(a.router.layout.haproxy_cfg()).unwrap();
    let replace = |issued: hostyard_testsupport::Issued| {
        let fleet = &a.router.config.fleet;
        std::fs::write(&fleet.cert_file, issued.cert_pem).unwrap();
        std::fs::write(&fleet.key_file, issued.key_pem).unwrap();
        a.router.confd.as_ref().unwrap().signal("HUP");
    };
    // A certificate of another CA: b's peer frontend refuses a's requests.
    let dir = tempfile::tempdir().unwrap();
    let other = hostyard_testsupport::FleetCa::new(dir.path(), "other").unwrap();
    replace(other.issue_server("a", a.ip).unwrap());
    a.wait_for("renewed.example.com", 503, "");
    // One of the fleet CA again: forwarded.
    let renewed = util::fleet_tls("a", "127.0.0.2");
    replace(hostyard_testsupport::Issued {
        cert_pem: std::fs::read_to_string(&renewed.cert_file).unwrap(),
        key_pem: std::fs::read_to_string(&renewed.key_file).unwrap(),
        cert_file: renewed.cert_file,
        key_file: renewed.key_file,
    });
    a.wait_for("renewed.example.com", 200, "site=on-b");
    assert_eq!(
        std::fs::read_to_string(a.router.layout.haproxy_cfg()).unwrap(),
        cfg,
        "the config stayed as it was: the reloads were the certificate's"
    );
}
