//! HAProxy listens on IPv6 beside IPv4 (`haproxy.bind_address_v6`): the
//! same site over `127.0.0.1` and `::1`, HTTP and HTTPS, against a real
//! HAProxy on the config [`render_cfg`] renders. Needs `::1` on the
//! loopback (a container without IPv6 has none): the test says so and
//! fails rather than pass without trying.

mod util;

use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::time::Duration;

use hostyard_config::BindV6;
use hostyard_haproxy::{Entry, HostMap};
use hostyard_testsupport::client::{exchange, tls_client};
use hostyard_testsupport::Backend;
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, StreamOwned};
use util::{loopback_config, start_haproxy};

const TIMEOUT: Duration = Duration::from_secs(5);

fn get(addr: SocketAddr, tls: bool) -> (u16, String) {
    let tcp = TcpStream::connect_timeout(&addr, TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let host = "v6.example";
    if tls {
        let conn =
            ClientConnection::new(tls_client(None, true), ServerName::try_from(host).unwrap())
                .unwrap();
        exchange(StreamOwned::new(conn, tcp), host, "/", &[])
    } else {
        exchange(tcp, host, "/", &[])
    }
    .unwrap_or_else(|e| panic!("GET / from {addr}: {e}"))
}

#[test]
fn the_frontends_answer_on_ipv4_and_ipv6() {
    assert!(
        std::net::TcpListener::bind((Ipv6Addr::LOCALHOST, 0)).is_ok(),
        "this machine has no ::1 on its loopback; run this test where it has (ip -6 addr show lo)"
    );
    let backend = Backend::start("over both");
    let (_dir, mut config) = loopback_config("hy6");
    config.haproxy.bind_address_v6 = BindV6::Address(Ipv6Addr::LOCALHOST);
    let mut map = HostMap::new();
    map.insert("v6.example".into(), Entry::Route(backend.addr()));
    let (_haproxy, _) = start_haproxy(&config, &map);
    for ip in [
        IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(Ipv6Addr::LOCALHOST),
    ] {
        for (port, tls) in [
            (config.haproxy.http_port, false),
            (config.haproxy.https_port, true),
        ] {
            let (status, text) = get(SocketAddr::new(ip, port), tls);
            assert_eq!(status, 200, "{ip} port {port}: {text}");
            assert!(text.ends_with("over both"), "{ip} port {port}: {text}");
        }
    }
}
