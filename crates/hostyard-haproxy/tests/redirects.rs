//! Every canonical redirect of haproxy.cfg against a real HAProxy on the
//! config [`render_cfg`] renders: over HTTP and HTTPS, to the canonical
//! name, `www.` and another alias, of a site with a valid certificate (in
//! the crt-list and the HTTPS policy map, as tls-sync writes them; the
//! final HTTPS answer is checked against its CA) and one without, with and
//! without a path and query. Each answer is a route or one permanent
//! redirect (301 or 308, never 302 or 307) to the canonical name, path and
//! query kept, whose target is no redirect itself.

mod util;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hostyard_core::{Domain, Layout};
use hostyard_haproxy::{Entry, HostMap, FILE};
use hostyard_testsupport::client::{exchange, tls_client};
use hostyard_testsupport::{Backend, SiteCa};
use rustls::pki_types::ServerName;
use rustls::{ClientConfig, ClientConnection, RootCertStore, StreamOwned};
use util::{loopback_config, start_haproxy};

const TIMEOUT: Duration = Duration::from_secs(5);

struct Ports {
    http: u16,
    https: u16,
}

/// A TLS client that trusts `ca` only.
fn trusting(ca: &SiteCa) -> Arc<ClientConfig> {
    let mut roots = RootCertStore::empty();
    roots.add(ca.der().clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Arc::new(
        ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
    )
}

/// One request; the status and the Location, if any. HTTPS takes any
/// certificate unless `tls` is given.
fn ask(
    ports: &Ports,
    scheme: &str,
    host: &str,
    path_query: &str,
    tls: Option<Arc<ClientConfig>>,
) -> (u16, Option<String>) {
    let port = if scheme == "https" {
        ports.https
    } else {
        ports.http
    };
    let tcp = TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT)
        .unwrap_or_else(|e| panic!("connecting to {scheme} port {port}: {e}"));
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    tcp.set_write_timeout(Some(TIMEOUT)).unwrap();
    let (status, text) = if scheme == "https" {
        let name = ServerName::try_from(host.to_string()).unwrap();
        let conn =
            ClientConnection::new(tls.unwrap_or_else(|| tls_client(None, true)), name).unwrap();
        exchange(StreamOwned::new(conn, tcp), host, path_query, &[])
    } else {
        exchange(tcp, host, path_query, &[])
    }
    .unwrap_or_else(|e| panic!("{scheme}://{host}{path_query}: {e}"));
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let location = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("location")
            .then(|| v.trim().to_string())
    });
    (status, location)
}

/// `scheme://host[:port]/path?query` → (scheme, host, port, path?query).
fn split_url(url: &str) -> (String, String, Option<u16>, String) {
    let (scheme, rest) = url.split_once("://").expect("an absolute Location");
    let (authority, path) = match rest.find('/') {
        Some(i) => rest.split_at(i),
        None => (rest, "/"),
    };
    let (host, port) = match authority.split_once(':') {
        Some((h, p)) => (h, Some(p.parse().expect("a port"))),
        None => (authority, None),
    };
    (scheme.into(), host.into(), port, path.into())
}

#[test]
fn every_canonical_redirect_is_one_permanent_hop() {
    let backend = Backend::start("site");
    let (_dir, config) = loopback_config("hyr");
    let ports = Ports {
        http: config.haproxy.http_port,
        https: config.haproxy.https_port,
    };
    let layout = Layout::new(&config.data_root);
    // secure.example has a valid certificate (for it and www.), so HTTP
    // goes to HTTPS; plain.example has none. Each has www. and an alias.
    let mut map = HostMap::new();
    let mut policy = String::new();
    for site in ["secure.example", "plain.example"] {
        let canonical = Domain::parse(site).unwrap();
        map.insert(site.into(), Entry::Route(backend.addr()));
        for alias in [format!("www.{site}"), format!("old-{site}")] {
            map.insert(alias, Entry::Redirect(canonical.clone()));
        }
    }
    let ca = SiteCa::new("redirects test CA");
    let secure = Domain::parse("secure.example").unwrap();
    let cert = layout.haproxy_cert(&secure);
    let names = ["secure.example", "www.secure.example"];
    hostyard_tls::ensure_base(&layout).unwrap();
    std::fs::write(&cert, ca.bundle(&names, (2020, 2099))).unwrap();
    std::fs::write(
        layout.haproxy_crt_list(),
        format!("{} {}\n", cert.display(), names.join(" ")),
    )
    .unwrap();
    for host in names {
        policy.push_str(&format!("{host} redirect\n"));
    }
    FILE.write(&layout.https_map(), policy.as_bytes()).unwrap();
    let verified = trusting(&ca);
    let (_haproxy, _) = start_haproxy(&config, &map);

    let mut checked = 0;
    for (site, has_cert) in [("secure.example", true), ("plain.example", false)] {
        for host in [
            site.to_string(),
            format!("www.{site}"),
            format!("old-{site}"),
        ] {
            for scheme in ["http", "https"] {
                for path in ["/", "/x/y?q=1&r=a%20b"] {
                    let what = format!("{scheme}://{host}{path}");
                    let want_scheme = if has_cert { "https" } else { scheme };
                    // The final answer of a site with a certificate is
                    // served with it.
                    let final_tls = (has_cert && want_scheme == "https").then(|| verified.clone());
                    let first_tls = if host == site {
                        final_tls.clone()
                    } else {
                        None
                    };
                    let (status, location) = ask(&ports, scheme, &host, path, first_tls);
                    if host == site && scheme == want_scheme {
                        assert_eq!(status, 200, "{what} is served");
                        checked += 1;
                        continue;
                    }
                    assert!(
                        status == 301 || status == 308,
                        "{what}: {status}, not a permanent redirect"
                    );
                    let location = location.unwrap_or_else(|| panic!("{what}: no Location"));
                    let (to_scheme, to_host, to_port, to_path) = split_url(&location);
                    assert_eq!(
                        (to_scheme.as_str(), to_host.as_str(), to_path.as_str()),
                        (want_scheme, site, path),
                        "{what} -> {location}"
                    );
                    let want_port = if to_scheme == "https" {
                        ports.https
                    } else {
                        ports.http
                    };
                    assert_eq!(to_port, Some(want_port), "{what} -> {location}");
                    let (second, again) = ask(&ports, &to_scheme, &to_host, &to_path, final_tls);
                    assert_eq!(
                        second, 200,
                        "{what} -> {location} -> {second} {again:?}: two hops"
                    );
                    checked += 1;
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2 * 2);
}
