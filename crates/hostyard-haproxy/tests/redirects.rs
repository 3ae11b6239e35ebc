//! Every canonical redirect of haproxy.cfg against a real HAProxy on the
//! config [`render_cfg`] renders: over HTTP and HTTPS, to the canonical
//! name, `www.` and another alias, of a site with a valid certificate (in
//! the crt-list and the HTTPS policy map, as tls-sync writes them; the
//! final HTTPS answer is checked against its CA) and one without, with and
//! without a path and query. Each answer is a route or one permanent
//! redirect (301 or 308, never 302 or 307) to the canonical name, path and
//! query kept, whose target is no redirect itself. The same matrices with
//! each site served under its `www.` name (`--canonical www`); and the
//! other edge rules of a site (basic auth, the headers preset).

mod util;

use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::Duration;

use hostyard_core::edge::{redirect_entries, site_entries, Canonical, EdgeRules, PathRedirect};
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
/// redirects (and `edge`'s other rules, for each site).
struct Setup {
    ports: Ports,
    verified: Arc<ClientConfig>,
    _backend: Backend,
    _dir: tempfile::TempDir,
    _haproxy: hostyard_testsupport::Haproxy,
}

fn setup(prefix: &str, rules: &[PathRedirect]) -> Setup {
    setup_edge(prefix, rules, &EdgeRules::default())
}

fn setup_edge(prefix: &str, rules: &[PathRedirect], edge: &EdgeRules) -> Setup {
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
    let (mut canonical, mut auth, mut headers) = (String::new(), String::new(), String::new());
    for site in ["secure.example", "plain.example"] {
        let e = site_entries(&Domain::parse(site).unwrap(), edge);
        for (text, entry) in [
            (&mut canonical, e.canonical),
            (&mut auth, e.basic_auth),
            (&mut headers, e.headers),
        ] {
            if let Some((k, v)) = entry {
                text.push_str(&format!("{k} {v}\n"));
            }
        }
    }
    FILE.write(&layout.canonical_map(), canonical.as_bytes())
        .unwrap();
    FILE.write(&layout.basic_auth_map(), auth.as_bytes())
        .unwrap();
    FILE.write(&layout.headers_map(), headers.as_bytes())
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
    assert_eq!(canonical_matrix(&s, false), 2 * 3 * 2 * 2);
}

/// `--canonical www`: www.D is served, D and the alias get one 301 to it,
/// over HTTPS when the site's policy says so (the certificate covers www.).
#[test]
fn with_www_canonical_every_redirect_is_one_permanent_hop_to_www() {
    let edge = EdgeRules {
        canonical: Canonical::Www,
        ..EdgeRules::default()
    };
    let s = setup_edge("hyw", &[], &edge);
    assert_eq!(canonical_matrix(&s, true), 2 * 3 * 2 * 2);
}

/// Every name of both sites, both schemes, with and without a query; the
/// number of cases checked.
fn canonical_matrix(s: &Setup, www: bool) -> usize {
    let (ports, verified) = (&s.ports, s.verified.clone());
    let mut checked = 0;
    for (domain, has_cert) in [("secure.example", true), ("plain.example", false)] {
        let served = if www {
            format!("www.{domain}")
        } else {
            domain.to_string()
        };
        let site = served.as_str();
        for host in [
            domain.to_string(),
            format!("www.{domain}"),
            format!("old-{domain}"),
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
    checked
}

/// The path redirects of `hostyard site set --redirect` and
/// `--redirect-prefix` over the same matrix of names, schemes and queries:
/// each is one 301 or 308, the status its rule chose, to the rule's target
/// with the rest of a prefix and the query kept; a target on the site is
/// served at once (never a second hop through HTTPS or the canonical name).
#[test]
fn every_path_redirect_is_one_permanent_hop_keeping_the_query() {
    let rules = path_rules();
    let s = setup("hyp", &rules);
    assert_eq!(path_matrix(&s, false), 2 * 3 * 2 * 6 * 2);
    // A path no rule takes is served, or redirected as before.
    let (status, _) = ask(
        &s.ports,
        "https",
        "secure.example",
        "/olds",
        Some(s.verified.clone()),
    );
    assert_eq!(status, 200);
    let (status, _) = ask(&s.ports, "http", "plain.example", "/old/", None);
    assert_eq!(status, 200);
}

/// The same path redirects of sites served under www.: a target on the
/// site names www.D, and is served at once.
#[test]
fn with_www_canonical_every_path_redirect_is_one_permanent_hop_to_www() {
    let edge = EdgeRules {
        canonical: Canonical::Www,
        ..EdgeRules::default()
    };
    let s = setup_edge("hyv", &path_rules(), &edge);
    assert_eq!(path_matrix(&s, true), 2 * 3 * 2 * 6 * 2);
}

fn path_rules() -> Vec<PathRedirect> {
    let rule = |spec: &str, prefix: bool| PathRedirect::parse(spec, prefix).unwrap();
    vec![
        rule("/old=/new", false),
        rule("308:/api=/v2/api", false),
        rule("/blog/=https://blog.example.org/", true),
        rule("/docs/=/manual/", true),
        // Longer than /docs/: wins for what it covers.
        rule("308:/docs/v1/=/manual/legacy/", true),
        // An exact rule wins over every prefix.
        rule("/docs/index.html=/manual/", false),
    ]
}

/// [`path_rules`] over every name, scheme and query; the number of cases.
fn path_matrix(s: &Setup, www: bool) -> usize {
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
    for (domain, has_cert) in [("secure.example", true), ("plain.example", false)] {
        let served = if www {
            format!("www.{domain}")
        } else {
            domain.to_string()
        };
        let site = served.as_str();
        for host in [
            domain.to_string(),
            format!("www.{domain}"),
            format!("old-{domain}"),
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
    checked
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

/// A site served under www.D keeps its deploy hook on D (the URL the
/// forge has names D) and its ACME challenges where the CA asks.
#[test]
fn with_www_canonical_the_deploy_hook_stays_on_the_bare_name() {
    let edge = EdgeRules {
        canonical: Canonical::Www,
        ..EdgeRules::default()
    };
    let s = setup_edge("hyk", &[], &edge);
    let (status, _) = ask(
        &s.ports,
        "http",
        "plain.example",
        hostyard_core::HOOK_PATH,
        None,
    );
    assert!(
        status != 301 && status != 308,
        "the hook is redirected: {status}"
    );
    let (status, location) = ask(&s.ports, "http", "plain.example", "/x", None);
    assert_eq!(
        (status, location),
        (
            301,
            Some(format!("http://www.plain.example:{}/x", s.ports.http))
        )
    );
}

/// The answer's status and headers (names lower-case) to one request with
/// `headers`.
fn ask_headers(
    s: &Setup,
    scheme: &str,
    host: &str,
    path: &str,
    headers: &[(&str, &str)],
) -> (u16, Vec<(String, String)>) {
    let port = if scheme == "https" {
        s.ports.https
    } else {
        s.ports.http
    };
    let tcp =
        TcpStream::connect_timeout(&SocketAddr::from(([127, 0, 0, 1], port)), TIMEOUT).unwrap();
    tcp.set_read_timeout(Some(TIMEOUT)).unwrap();
    let (status, text) = if scheme == "https" {
        let name = ServerName::try_from(host.to_string()).unwrap();
        let conn = ClientConnection::new(s.verified.clone(), name).unwrap();
        exchange(StreamOwned::new(conn, tcp), host, path, headers)
    } else {
        exchange(tcp, host, path, headers)
    }
    .unwrap();
    let head = text.split("\r\n\r\n").next().unwrap_or_default();
    let found = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    (status, found)
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

/// `--basic-auth`: no header or a wrong one is a 401 asking for Basic
/// credentials, the right one passes; every name of the site asks, ACME's
/// challenges and the deploy hook do not. A site without it is untouched.
#[test]
fn a_preview_asks_for_its_password_and_only_the_right_one_passes() {
    use hostyard_core::edge::{authorization, BasicAuth};
    let password = "a long preview password";
    let edge = EdgeRules {
        basic_auth: Some(BasicAuth::new("boss", password, [5; 16]).unwrap()),
        ..EdgeRules::default()
    };
    let s = setup_edge("hya", &[], &edge);
    let right = authorization("boss", password);
    let wrong_password = authorization("boss", "a long preview passworD");
    let wrong_user = authorization("bass", password);
    type Headers<'a> = Vec<(&'a str, &'a str)>;
    let cases: [(&str, Headers, u16); 5] = [
        ("no header", vec![], 401),
        (
            "a wrong password",
            vec![("Authorization", &*wrong_password)],
            401,
        ),
        ("a wrong user", vec![("Authorization", &*wrong_user)], 401),
        ("another scheme", vec![("Authorization", "Bearer x")], 401),
        ("the right password", vec![("Authorization", &*right)], 200),
    ];
    for (what, headers, want) in &cases {
        let (status, got) = ask_headers(&s, "http", "plain.example", "/x?y", headers);
        assert_eq!(status, *want, "{what}: {got:?}");
        if *want == 401 {
            // Not one of HAProxy's "not routed" pages: discovery's wait
            // after a restart of a site behind a password must end.
            assert_eq!(header(&got, "x-hostyard-page"), None, "{what}");
            assert_eq!(
                header(&got, "www-authenticate"),
                Some("Basic realm=\"plain.example\", charset=\"UTF-8\""),
                "{what}"
            );
        }
    }
    // Over HTTPS too, served with the site's certificate.
    assert_eq!(ask_headers(&s, "https", "secure.example", "/", &[]).0, 401);
    assert_eq!(
        ask_headers(
            &s,
            "https",
            "secure.example",
            "/",
            &[("Authorization", &right)]
        )
        .0,
        200
    );
    for path in [
        hostyard_core::HOOK_PATH,
        "/.well-known/acme-challenge/unknown-token",
    ] {
        let (status, _) = ask_headers(&s, "http", "plain.example", path, &[]);
        assert_ne!(status, 401, "{path} asks for the password");
    }
}

/// A site without basic auth beside one with it is served without asking.
#[test]
fn basic_auth_of_one_site_leaves_the_others_alone() {
    use hostyard_core::edge::BasicAuth;
    let s = setup("hyb", &[]);
    let layout = Layout::new(&s._dir.path().join("data"));
    let auth = BasicAuth::new("boss", "a long preview password", [6; 16]).unwrap();
    let entries = site_entries(
        &Domain::parse("plain.example").unwrap(),
        &EdgeRules {
            basic_auth: Some(auth),
            ..EdgeRules::default()
        },
    );
    let (k, v) = entries.basic_auth.unwrap();
    // Through the runtime API, as confd applies it: no reload.
    let mut session = hostyard_haproxy::Session::connect(&layout.haproxy_admin_socket()).unwrap();
    hostyard_haproxy::MapApi::new(&mut session, &layout.basic_auth_map())
        .upsert_value(&k, &v)
        .unwrap();
    assert_eq!(ask_headers(&s, "http", "plain.example", "/", &[]).0, 401);
    assert_eq!(
        ask_headers(&s, "http", "old-plain.example", "/", &[]).0,
        301
    );
    assert_eq!(ask_headers(&s, "https", "secure.example", "/", &[]).0, 200);
}

/// `--headers basic|strict`: the preset's headers on the site's answers,
/// HSTS over HTTPS only; none on a site without a preset, and a change
/// through the runtime API takes at once.
#[test]
fn the_headers_preset_adds_its_headers_hsts_over_https_only() {
    use hostyard_core::edge::HeadersPreset;
    let edge = EdgeRules {
        headers: HeadersPreset::Strict,
        ..EdgeRules::default()
    };
    let s = setup_edge("hyh", &[], &edge);
    let (status, got) = ask_headers(&s, "https", "secure.example", "/", &[]);
    assert_eq!(status, 200);
    for (name, value) in HeadersPreset::Strict.headers(true) {
        assert_eq!(
            header(&got, &name.to_ascii_lowercase()),
            Some(value),
            "{name}: {got:?}"
        );
    }
    let (status, got) = ask_headers(&s, "http", "plain.example", "/", &[]);
    assert_eq!(status, 200);
    assert_eq!(
        header(&got, "strict-transport-security"),
        None,
        "HSTS over HTTP"
    );
    for (name, value) in HeadersPreset::Strict.headers(false) {
        assert_eq!(
            header(&got, &name.to_ascii_lowercase()),
            Some(value),
            "{name}: {got:?}"
        );
    }

    // basic on one site through the runtime API, none on the other.
    let layout = Layout::new(&s._dir.path().join("data"));
    let mut session = hostyard_haproxy::Session::connect(&layout.haproxy_admin_socket()).unwrap();
    let mut map = hostyard_haproxy::MapApi::new(&mut session, &layout.headers_map());
    map.upsert_value("plain.example", "basic").unwrap();
    map.remove("secure.example").unwrap();
    let (_, got) = ask_headers(&s, "http", "plain.example", "/", &[]);
    let names: Vec<&str> = HeadersPreset::Basic
        .headers(false)
        .iter()
        .map(|(n, _)| *n)
        .collect();
    for name in &names {
        assert!(
            header(&got, &name.to_ascii_lowercase()).is_some(),
            "{name}: {got:?}"
        );
    }
    assert_eq!(header(&got, "permissions-policy"), None);
    let (_, got) = ask_headers(&s, "https", "secure.example", "/", &[]);
    for (name, _) in HeadersPreset::Strict.headers(true) {
        assert_eq!(header(&got, &name.to_ascii_lowercase()), None, "{name}");
    }
}
