//! The fleet's peer frontend against real HAProxy instances on the config
//! [`render_cfg`] renders: only a peer's own certificate of the fleet CA
//! gets a forwarded request in. An address that the peer frontend accepts
//! proves nothing (a site container's connection leaves its server
//! masqueraded as that server's private address), so a forged PROXY header
//! from such an address is refused, in clear or with any certificate but a
//! peer's.
//!
//! Each server has a loopback address of its own (Linux routes all of 127/8
//! to `lo`) as its private address.

mod util;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use hostyard_config::FleetPeer;
use hostyard_config::NodeConfig;
use hostyard_haproxy::{Entry, HostMap};
use hostyard_testsupport::client::{connect_from, exchange, tls_client};
use hostyard_testsupport::{free_port, Backend, FleetCa, Haproxy, Issued};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use util::start_haproxy;

const TIMEOUT: Duration = Duration::from_secs(5);
const N1: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 11);
const N2: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 12);

/// One server of a two-server fleet (n1, n2) on its own HAProxy.
struct Server {
    config: NodeConfig,
    _haproxy: Haproxy,
    _dir: tempfile::TempDir,
}

impl Server {
    fn start(name: &str, ca: &FleetCa, issued: &Issued, peer_port: u16, map: &HostMap) -> Server {
        let (own, other, other_name) = match name {
            "n1" => (N1, N2, "n2"),
            _ => (N2, N1, "n1"),
        };
        // Under /tmp: HAProxy's socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("hyp")
            .tempdir_in("/tmp")
            .unwrap();
        let mut config = NodeConfig {
            node_name: name.into(),
            data_root: dir.path().join("data"),
            ..NodeConfig::default()
        };
        config.haproxy.bind_address = IpAddr::V4(own);
        config.haproxy.http_port = free_port();
        config.haproxy.https_port = free_port();
        config.fleet.private_address = Some(IpAddr::V4(own));
        config.fleet.peer_port = peer_port;
        config.fleet.peers = vec![FleetPeer {
            name: other_name.into(),
            address: IpAddr::V4(other),
        }];
        config.fleet.ca_file = ca.ca_file();
        config.fleet.cert_file = issued.cert_file.clone();
        config.fleet.key_file = issued.key_file.clone();
        let (haproxy, peer_files_new) = start_haproxy(&config, map);
        assert!(peer_files_new, "the peer files are new");
        Server {
            config,
            _haproxy: haproxy,
            _dir: dir,
        }
    }

    fn http(&self) -> SocketAddr {
        SocketAddr::new(
            self.config.haproxy.bind_address,
            self.config.haproxy.http_port,
        )
    }

    fn peer(&self) -> SocketAddr {
        SocketAddr::new(
            self.config.fleet.private_address.unwrap(),
            self.config.fleet.peer_port,
        )
    }
}

/// n2 hosts `b.example` (its backend answers "b"); n1 forwards it to n2.
struct Fleet {
    ca: FleetCa,
    n1: Server,
    n2: Server,
    _site: Backend,
    _dir: tempfile::TempDir,
}

/// Server `name` at `address`, its certificate from `ca`, routing
/// b.example to `entry`.
fn server(name: &str, address: Ipv4Addr, ca: &FleetCa, peer_port: u16, entry: Entry) -> Server {
    let cert = ca.issue_server(name, IpAddr::V4(address)).unwrap();
    let map = HostMap::from([
        ("b.example".to_string(), entry),
        (
            "www.b.example".to_string(),
            Entry::Redirect("b.example".parse().unwrap()),
        ),
    ]);
    Server::start(name, ca, &cert, peer_port, &map)
}

fn fleet() -> Fleet {
    let dir = tempfile::tempdir().unwrap();
    let ca = FleetCa::new(dir.path(), "fleet").unwrap();
    let site = Backend::start("b");
    let peer_port = free_port();
    let n2 = server("n2", N2, &ca, peer_port, Entry::Route(site.addr()));
    let n1 = server("n1", N1, &ca, peer_port, Entry::Peer(n2.peer()));
    Fleet {
        ca,
        n1,
        n2,
        _site: site,
        _dir: dir,
    }
}

/// What a site container on n2 can do to n1's peer frontend: connect from
/// n2's address (masqueraded) and claim any client in a PROXY header.
const FORGED: &[u8] = b"PROXY TCP4 203.0.113.66 127.0.0.12 40000 8405\r\n";

/// The PROXY header, then TLS with `identity` (none: no client certificate).
fn forged_over_tls(to: SocketAddr, identity: Option<&Issued>) -> std::io::Result<String> {
    let mut tcp = connect(N2, to);
    tcp.write_all(FORGED)?;
    let name = ServerName::IpAddress(to.ip().into());
    let conn = ClientConnection::new(tls_client(identity, true), name).unwrap();
    answer(StreamOwned::new(conn, tcp), "b.example")
}

/// A TCP connection from `source` that must open.
fn connect(source: Ipv4Addr, to: SocketAddr) -> TcpStream {
    connect_from(source, to, TIMEOUT).unwrap()
}

/// The whole answer to one request for `host`, or the error that ended it.
fn answer(stream: impl Read + Write, host: &str) -> std::io::Result<String> {
    exchange(stream, host, "/", &[]).map(|(_, text)| text)
}

fn refused(answer: &std::io::Result<String>) -> bool {
    match answer {
        Err(_) => true,
        Ok(text) => !text.starts_with("HTTP/"),
    }
}

#[test]
fn a_peer_is_served_through_its_certificate_and_a_forged_proxy_header_is_refused() {
    let f = fleet();
    // n1's backend peers (its certificate, n2's checked) reaches n2's site.
    let through_n1 = answer(connect(Ipv4Addr::LOCALHOST, f.n1.http()), "b.example");
    assert!(
        matches!(&through_n1, Ok(text) if text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nb")),
        "{through_n1:?}"
    );

    // From n2's address (a peer's, which the source check lets in): a PROXY
    // header in clear, as the peer frontend took it before.
    let mut clear = connect(N1, f.n2.peer());
    clear.write_all(FORGED).unwrap();
    let answer = answer(clear, "b.example");
    assert!(refused(&answer), "forged PROXY header in clear: {answer:?}");

    // Then TLS without a client certificate.
    let answer = forged_over_tls(f.n1.peer(), None);
    assert!(refused(&answer), "no client certificate: {answer:?}");

    // With a server certificate of another CA, in n2's name.
    let other = FleetCa::new(f._dir.path(), "other").unwrap();
    let impostor = other.issue_server("n2", IpAddr::V4(N2)).unwrap();
    let answer = forged_over_tls(f.n1.peer(), Some(&impostor));
    assert!(refused(&answer), "certificate of another CA: {answer:?}");

    // With the fleet CA's root identity (clientAuth only): valid, but no
    // server's.
    let root = f.ca.issue_root().unwrap();
    let answer = forged_over_tls(f.n1.peer(), Some(&root));
    assert!(refused(&answer), "the root identity: {answer:?}");

    // With n2's own certificate, n1 is a peer frontend like before (so what
    // the others prove is the certificate, not a broken frontend).
    let n2_cert = f.ca.issue_server("n2", IpAddr::V4(N2)).unwrap();
    let answer = forged_over_tls(f.n1.peer(), Some(&n2_cert));
    assert!(
        matches!(&answer, Ok(text) if text.starts_with("HTTP/1.1 503")),
        "n2's certificate (b.example is n2's, so n1's 503): {answer:?}"
    );
}

/// n1 forwards to whoever answers at n2's peer address only if the fleet
/// CA signed its certificate: an impostor there gets no request.
#[test]
fn a_peer_frontend_with_a_certificate_of_another_ca_gets_no_request() {
    let dir = tempfile::tempdir().unwrap();
    let ca = FleetCa::new(dir.path(), "fleet").unwrap();
    let other = FleetCa::new(dir.path(), "other").unwrap();
    let site = Backend::start("b");
    let peer_port = free_port();
    let n2 = server("n2", N2, &other, peer_port, Entry::Route(site.addr()));
    let n1 = server("n1", N1, &ca, peer_port, Entry::Peer(n2.peer()));
    let answer = answer(connect(Ipv4Addr::LOCALHOST, n1.http()), "b.example");
    assert!(
        matches!(&answer, Ok(text) if text.starts_with("HTTP/1.1 503")),
        "{answer:?}"
    );
}

/// A site served under its www. name (`--canonical www`, the canonical map
/// on every server) is served as www.b.example through the peer, whose
/// host map has it as an alias too; b.example gets one 301 to it.
#[test]
fn a_site_served_under_www_is_served_through_its_peer() {
    let f = fleet();
    for server in [&f.n1, &f.n2] {
        let layout = hostyard_core::Layout::new(&server.config.data_root);
        let mut session =
            hostyard_haproxy::Session::connect(&layout.haproxy_admin_socket()).unwrap();
        hostyard_haproxy::MapApi::new(&mut session, &layout.canonical_map())
            .upsert_value("b.example", "www.b.example")
            .unwrap();
    }
    let through_n1 = answer(connect(Ipv4Addr::LOCALHOST, f.n1.http()), "www.b.example");
    assert!(
        matches!(&through_n1, Ok(text) if text.starts_with("HTTP/1.1 200") && text.ends_with("\r\n\r\nb")),
        "{through_n1:?}"
    );
    let bare = answer(connect(Ipv4Addr::LOCALHOST, f.n1.http()), "b.example").unwrap();
    let want = format!(
        "location: http://www.b.example:{}/\r\n",
        f.n1.config.haproxy.http_port
    );
    assert!(
        bare.starts_with("HTTP/1.1 301") && bare.to_ascii_lowercase().contains(&want),
        "{bare}"
    );
}
