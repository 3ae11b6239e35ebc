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

use hostyard_core::edge::{redirect_entries, PathRedirect};
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

/// What every test here runs against: a HAProxy with secure.example (a
/// valid certificate, HTTP goes to HTTPS) and plain.example (none), each
/// with its www. name and an alias, and `rules` as each site's path
/// redirects.
struct Setup {
    ports: Ports,
    verified: Arc<ClientConfig>,
    _backend: Backend,
    _dir: tempfile::TempDir,
    _haproxy: hostyard_testsupport::Haproxy,
}

fn setup(prefix: &str, rules: &[PathRedirect]) -> Setup {
    let backend = Backend::start("site");
    let (dir, config) = loopback_config(prefix);
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
    let (mut exact, mut by_prefix) = (String::new(), String::new());
    for site in ["secure.example", "plain.example"] {
        let (e, p) = redirect_entries(&Domain::parse(site).unwrap(), rules);
        for (k, v) in e {
            exact.push_str(&format!("{k} {v}\n"));
        }
        for (k, v) in p {
            by_prefix.push_str(&format!("{k} {v}\n"));
        }
    }
    FILE.write(&layout.redirect_exact_map(), exact.as_bytes())
        .unwrap();
    FILE.write(&layout.redirect_prefix_map(), by_prefix.as_bytes())
        .unwrap();
    let (haproxy, _) = start_haproxy(&config, &map);
    Setup {
        ports,
        verified,
        _backend: backend,
        _dir: dir,
        _haproxy: haproxy,
    }
}

#[test]
fn every_canonical_redirect_is_one_permanent_hop() {
    let s = setup("hyr", &[]);
    let (ports, verified) = (&s.ports, s.verified.clone());
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
                    let (status, location) = ask(ports, scheme, &host, path, first_tls);
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
                    let (second, again) = ask(ports, &to_scheme, &to_host, &to_path, final_tls);
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

/// The path redirects of `hostyard site set --redirect` and
/// `--redirect-prefix` over the same matrix of names, schemes and queries:
/// each is one 301 or 308, the status its rule chose, to the rule's target
/// with the rest of a prefix and the query kept; a target on the site is
/// served at once (never a second hop through HTTPS or the canonical name).
#[test]
fn every_path_redirect_is_one_permanent_hop_keeping_the_query() {
    let rule = |spec: &str, prefix: bool| PathRedirect::parse(spec, prefix).unwrap();
    let rules = [
        rule("/old=/new", false),
        rule("308:/api=/v2/api", false),
        rule("/blog/=https://blog.example.org/", true),
        rule("/docs/=/manual/", true),
        // Longer than /docs/: wins for what it covers.
        rule("308:/docs/v1/=/manual/legacy/", true),
        // An exact rule wins over every prefix.
        rule("/docs/index.html=/manual/", false),
    ];
    let s = setup("hyp", &rules);
    let (ports, verified) = (&s.ports, s.verified.clone());
    let cases: [(&str, u16, &str); 6] = [
        ("/old", 301, "/new"),
        ("/api", 308, "/v2/api"),
        (
            "/blog/2020/post.html",
            301,
            "https://blog.example.org/2020/post.html",
        ),
        ("/docs/a/b", 301, "/manual/a/b"),
        ("/docs/v1/x", 308, "/manual/legacy/x"),
        ("/docs/index.html", 301, "/manual/"),
    ];
    let mut checked = 0;
    for (site, has_cert) in [("secure.example", true), ("plain.example", false)] {
        for host in [
            site.to_string(),
            format!("www.{site}"),
            format!("old-{site}"),
        ] {
            for scheme in ["http", "https"] {
                for (path, code, target) in cases {
                    for query in ["", "?q=1&r=a%20b"] {
                        let what = format!("{scheme}://{host}{path}{query}");
                        let (status, location) =
                            ask(ports, scheme, &host, &format!("{path}{query}"), None);
                        assert_eq!(status, code, "{what}: {status} {location:?}");
                        let location = location.unwrap_or_else(|| panic!("{what}: no Location"));
                        if target.starts_with("https://") {
                            assert_eq!(location, format!("{target}{query}"), "{what}");
                            checked += 1;
                            continue;
                        }
                        let want_scheme = if has_cert { "https" } else { scheme };
                        let want_port = if want_scheme == "https" {
                            ports.https
                        } else {
                            ports.http
                        };
                        assert_eq!(
                            location,
                            format!("{want_scheme}://{site}:{want_port}{target}{query}"),
                            "{what}"
                        );
                        let (to_scheme, to_host, _, to_path) = split_url(&location);
                        let tls = (to_scheme == "https" && has_cert).then(|| verified.clone());
                        let (second, again) = ask(ports, &to_scheme, &to_host, &to_path, tls);
                        assert_eq!(
                            second, 200,
                            "{what} -> {location} -> {second} {again:?}: two hops"
                        );
                        checked += 1;
                    }
                }
            }
        }
    }
    assert_eq!(checked, 2 * 3 * 2 * cases.len() * 2);
    // A path no rule takes is served, or redirected as before.
    let (status, _) = ask(ports, "https", "secure.example", "/olds", Some(verified));
    assert_eq!(status, 200);
    let (status, _) = ask(ports, "http", "plain.example", "/old/", None);
    assert_eq!(status, 200);
}

/// A rule on the whole site (`--redirect-prefix /=...`) leaves ACME's
/// challenges and the deploy hook where they are: a moved site still gets
/// its certificate renewed and its pushes published.
#[test]
fn a_redirect_of_the_whole_site_leaves_acme_and_the_deploy_hook_alone() {
    let rules = [PathRedirect::parse("/=https://moved.example.org/", true).unwrap()];
    let s = setup("hyq", &rules);
    let ports = &s.ports;
    let (status, location) = ask(ports, "http", "plain.example", "/x?y=1", None);
    assert_eq!(
        (status, location.as_deref()),
        (301, Some("https://moved.example.org/x?y=1"))
    );
    for path in [
        hostyard_core::HOOK_PATH,
        "/.well-known/acme-challenge/unknown-token",
    ] {
        let (status, location) = ask(ports, "http", "plain.example", path, None);
        assert!(
            status != 301 && status != 308,
            "{path}: redirected ({status} {location:?})"
        );
    }
}
