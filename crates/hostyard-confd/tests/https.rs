//! HTTPS through confd and a real HAProxy: a site's certificate file is
//! served (HTTP/2 by ALPN) without a reload, a bad one is refused and the
//! site keeps its certificate, HTTP redirects once the certificate is
//! valid, and certificates change under keep-alive TLS load with no failed
//! request and HAProxy's worker unchanged. The client is curl, checking
//! the chain against the test's own CAs.

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use std::path::{Path, PathBuf};
use std::process::Command;

use hostyard_core::SiteKind;
use hostyard_testsupport::{wait_until, Backend, Etcd, SiteCa};
use util::{d, Router, T};

struct Ca {
    ca: SiteCa,
    /// The CA's certificate, for curl --cacert.
    file: PathBuf,
}

impl Ca {
    fn new(dir: &Path, name: &str) -> Ca {
        let ca = SiteCa::new(name);
        let file = dir.join(format!("{name}.pem"));
        std::fs::write(&file, ca.pem()).unwrap();
        Ca { ca, file }
    }

    /// A bundle for `domain` and `www.domain`: leaf, this CA, key.
    fn bundle(&self, domain: &str, years: (i32, i32)) -> String {
        self.bundle_for(&[domain, &format!("www.{domain}")], years)
    }

    /// A bundle for `names`, the first one its common name.
    fn bundle_for(&self, names: &[&str], years: (i32, i32)) -> String {
        self.ca.bundle(names, years)
    }
}

const GOOD: (i32, i32) = (2020, 2090);

fn put_cert(r: &Router, domain: &str, pem: &str) {
    let path = r.layout.tls_pem(&d(domain));
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    // As an operator would: a new file renamed into place.
    let tmp = path.with_extension("new");
    std::fs::write(&tmp, pem).unwrap();
    std::fs::rename(&tmp, &path).unwrap();
}

/// One curl request: (status, HTTP version, headers, body); status 0 when
/// curl failed (e.g. the chain did not verify against `ca`).
fn curl(r: &Router, scheme: &str, host: &str, path: &str, ca: Option<&Path>) -> Curl {
    let port = if scheme == "https" {
        r.config.haproxy.https_port
    } else {
        r.port
    };
    let mut cmd = Command::new("curl");
    cmd.args(["-sS", "--max-time", "5", "-D", "-"])
        .arg("--resolve")
        .arg(format!("{host}:{port}:127.0.0.1"))
        .args(["-w", "\n%{http_code} %{http_version}"]);
    match ca {
        Some(ca) => cmd.arg("--cacert").arg(ca),
        None => cmd.arg("-k"),
    };
    let out = cmd
        .arg(format!("{scheme}://{host}:{port}{path}"))
        .output()
        .expect("curl runs (apt-get install curl)");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (rest, last) = text.rsplit_once('\n').unwrap_or(("", &text));
    let mut words = last.split_whitespace();
    Curl {
        status: words.next().and_then(|s| s.parse().ok()).unwrap_or(0),
        version: words.next().unwrap_or_default().to_string(),
        text: rest.to_lowercase(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

#[derive(Debug)]
struct Curl {
    status: u16,
    version: String,
    /// Headers and body, lower-cased.
    text: String,
    #[allow(dead_code, reason = "shown by {:?} when a wait fails")]
    stderr: String,
}

fn wait_https(r: &Router, host: &str, ca: &Path, ok: bool) {
    let mut last = None;
    let res = wait_until(&format!("https://{host} verifies: {ok}"), T, || {
        let c = curl(r, "https", host, "/", Some(ca));
        let done = (c.status != 0) == ok;
        last = Some(c);
        done.then_some(())
    });
    if let Err(e) = res {
        panic!("{e:#}; last {last:?}\nconfd log:\n{}", r.confd_log());
    }
}

#[test]
fn a_sites_certificate_is_served_replaced_and_removed_without_a_reload() {
    let etcd = Etcd::start().unwrap();
    let (r, _backend) = Router::routed(&etcd, "tls.example.com", "tls site");
    let worker = r.haproxy().worker_pid().unwrap();
    let ca1 = Ca::new(r.dir.path(), "ca1");
    let ca2 = Ca::new(r.dir.path(), "ca2");

    // No certificate yet: the default one answers HTTPS, HTTP stays.
    let c = curl(&r, "https", "tls.example.com", "/", None);
    assert_eq!((c.status, c.version.as_str()), (200, "2"), "{c:?}");
    assert!(c.text.contains("x-forwarded-proto") || c.text.contains("tls site"));
    assert_eq!(
        curl(&r, "https", "tls.example.com", "/", Some(&ca1.file)).status,
        0
    );
    assert_eq!(curl(&r, "http", "tls.example.com", "/", None).status, 200);

    put_cert(&r, "tls.example.com", &ca1.bundle("tls.example.com", GOOD));
    wait_https(&r, "tls.example.com", &ca1.file, true);
    let c = curl(&r, "https", "tls.example.com", "/", Some(&ca1.file));
    assert_eq!((c.status, c.version.as_str()), (200, "2"), "{c:?}");
    assert!(c.text.contains("tls site"), "{c:?}");
    assert!(
        !c.text.contains("strict-transport-security"),
        "HSTS is opt-in: {c:?}"
    );
    // www. is in the same certificate and redirects to the canonical name
    // (on HAProxy's HTTPS port, which is not 443 here).
    let c = curl(&r, "https", "www.tls.example.com", "/x", Some(&ca1.file));
    assert_eq!(c.status, 301, "{c:?}");
    let https_port = r.config.haproxy.https_port;
    assert!(
        c.text
            .contains(&format!("location: https://tls.example.com:{https_port}/x")),
        "{c:?}"
    );
    // HTTP now redirects to HTTPS, but not ACME's challenges.
    let c = curl(&r, "http", "tls.example.com", "/a?b=1", None);
    assert_eq!(c.status, 301, "{c:?}");
    assert!(
        c.text.contains(&format!(
            "location: https://tls.example.com:{https_port}/a?b=1"
        )),
        "{c:?}"
    );
    let c = curl(
        &r,
        "http",
        "tls.example.com",
        "/.well-known/acme-challenge/t",
        None,
    );
    assert_eq!(c.status, 200, "{c:?}");

    // Bad files change nothing: each is refused with one line.
    for (pem, words) in [
        (ca2.bundle("tls.example.com", (2018, 2019)), "it expired"),
        (
            ca2.bundle("other.example.com", GOOD),
            "but not tls.example.com",
        ),
        (
            ca2.bundle("tls.example.com", GOOD)
                .replace(&ca2.ca.pem(), ""),
            "lacks its chain",
        ),
    ] {
        put_cert(&r, "tls.example.com", &pem);
        wait_until(&format!("refusal {words:?}"), T, || {
            r.confd_log().contains(words).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
        assert!(r
            .confd_log()
            .contains("tls.example.com keeps its current certificate"));
        assert_eq!(
            curl(&r, "https", "tls.example.com", "/", Some(&ca1.file)).status,
            200
        );
    }

    // Replaced: the new chain verifies, the old one no longer does.
    put_cert(&r, "tls.example.com", &ca2.bundle("tls.example.com", GOOD));
    wait_https(&r, "tls.example.com", &ca2.file, true);
    assert_eq!(
        curl(&r, "https", "tls.example.com", "/", Some(&ca1.file)).status,
        0
    );
    // What HAProxy loads at a restart is what it serves now.
    let on_disk = std::fs::read_to_string(r.layout.haproxy_crt_list()).unwrap();
    assert!(on_disk.contains("tls.example.com.pem tls.example.com www.tls.example.com"));

    // Removed: back to the default certificate and plain HTTP.
    std::fs::remove_file(r.layout.tls_pem(&d("tls.example.com"))).unwrap();
    wait_https(&r, "tls.example.com", &ca2.file, false);
    wait_until("the state file says default", T, || {
        let state = hostyard_tls::TlsState::load(&r.layout.tls_state()).ok()??;
        (!state.sites.contains_key("tls.example.com")).then_some(())
    })
    .unwrap();
    assert_eq!(curl(&r, "http", "tls.example.com", "/", None).status, 200);
    assert!(!r.layout.haproxy_cert(&d("tls.example.com")).exists());
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
}

#[test]
fn a_declared_alias_is_served_with_the_sites_certificate() {
    let etcd = Etcd::start().unwrap();
    let (r, _backend) = Router::routed(&etcd, "alias.example.com", "alias site");
    let ca = Ca::new(r.dir.path(), "alias-ca");
    let names = [
        "alias.example.com",
        "www.alias.example.com",
        "alias.example.org",
    ];
    put_cert(&r, "alias.example.com", &ca.bundle_for(&names, GOOD));
    wait_https(&r, "alias.example.com", &ca.file, true);
    // Not declared: the name is not served with the site's certificate,
    // though the certificate covers it.
    assert_eq!(
        curl(&r, "https", "alias.example.org", "/", Some(&ca.file)).status,
        0
    );

    // Declared as an alias (the certificate already served): its HTTPS
    // gets the site's certificate and redirects to the canonical name.
    let worker = r.haproxy().worker_pid().unwrap();
    let decl = hostyard_core::etcd::SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![d("alias.example.org")],
        edge: Default::default(),
        php: Default::default(),
    };
    etcd.put(&r.schema.site_key(&d("alias.example.com")), &decl.to_json())
        .unwrap();
    wait_https(&r, "alias.example.org", &ca.file, true);
    let c = curl(&r, "https", "alias.example.org", "/x", Some(&ca.file));
    assert_eq!(c.status, 301, "{c:?}");
    assert!(
        c.text.contains(&format!(
            "location: https://alias.example.com:{}/x",
            r.config.haproxy.https_port
        )),
        "{c:?}"
    );
    wait_https(&r, "alias.example.com", &ca.file, true);
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
}

#[test]
fn hsts_and_plain_http_are_per_site_choices() {
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    r.config.tls.hsts_sites = vec![d("hsts.example.com")];
    r.config.tls.http_sites = vec![d("plain.example.com")];
    r.write_config();
    r.start();
    let backend = Backend::start("site");
    let ca = Ca::new(r.dir.path(), "ca");
    for site in ["hsts.example.com", "plain.example.com"] {
        r.register(&etcd, SiteKind::Static, site, backend.port());
        put_cert(&r, site, &ca.bundle(site, GOOD));
    }
    for site in ["hsts.example.com", "plain.example.com"] {
        wait_https(&r, site, &ca.file, true);
    }
    let c = curl(&r, "https", "hsts.example.com", "/", Some(&ca.file));
    assert!(
        c.text
            .contains("strict-transport-security: max-age=31536000"),
        "{c:?}"
    );
    assert_eq!(curl(&r, "http", "hsts.example.com", "/", None).status, 301);
    let c = curl(&r, "https", "plain.example.com", "/", Some(&ca.file));
    assert!(!c.text.contains("strict-transport-security"), "{c:?}");
    assert_eq!(curl(&r, "http", "plain.example.com", "/", None).status, 200);

    // Down (declared, no registration): HTTP answers with the down page
    // too, not a redirect. A redirect would say nothing of the site, and
    // discovery's wait, which asks over HTTP, would take it for the site.
    etcd.delete(
        &r.schema
            .service_key(SiteKind::Static, &d("hsts.example.com")),
    )
    .unwrap();
    wait_until("hsts.example.com down over HTTPS", T, || {
        let c = curl(&r, "https", "hsts.example.com", "/", Some(&ca.file));
        (c.status == 503).then_some(())
    })
    .unwrap();
    let c = curl(&r, "http", "hsts.example.com", "/", None);
    assert_eq!(c.status, 503, "{c:?}");
    assert!(c.text.contains("x-hostyard-page: down"), "{c:?}");
}

/// Certificates are added, renewed and removed while clients keep TLS
/// connections busy: no request fails and HAProxy's worker stays the same.
#[test]
fn certificates_change_under_keep_alive_tls_load_with_no_failed_request() {
    let etcd = Etcd::start().unwrap();
    let r = Router::started(&etcd);
    let backend = Backend::start("loaded");
    let ca = Ca::new(r.dir.path(), "ca");
    r.register(&etcd, SiteKind::Static, "load.example.com", backend.port());
    put_cert(&r, "load.example.com", &ca.bundle("load.example.com", GOOD));
    wait_https(&r, "load.example.com", &ca.file, true);
    let worker = r.haproxy().worker_pid().unwrap();

    // Two clients, each one curl after another with 100 requests on one
    // keep-alive connection, verifying the chain at every new handshake.
    let port = r.config.haproxy.https_port;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..2)
        .map(|_| {
            let stop = stop.clone();
            let ca = ca.file.clone();
            std::thread::spawn(move || {
                let (mut ok, mut failed, mut rounds) = (0u64, Vec::new(), 0);
                while !stop.load(std::sync::atomic::Ordering::Relaxed) && rounds < 200 {
                    rounds += 1;
                    let mut cmd = Command::new("curl");
                    cmd.args([
                        "-sS",
                        "--max-time",
                        "20",
                        "-w",
                        "%{http_code} %{num_connects}\n",
                    ])
                    .arg("--resolve")
                    .arg(format!("load.example.com:{port}:127.0.0.1"))
                    .arg("--cacert")
                    .arg(&ca);
                    for _ in 0..100 {
                        cmd.args(["-o", "/dev/null"])
                            .arg(format!("https://load.example.com:{port}/"));
                    }
                    let out = cmd.output().unwrap();
                    for line in String::from_utf8_lossy(&out.stdout).lines() {
                        if line.starts_with("200 ") {
                            ok += 1;
                        } else {
                            failed.push(line.to_string());
                        }
                    }
                    if !out.status.success() {
                        failed.push(String::from_utf8_lossy(&out.stderr).into_owned());
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    let others: Vec<String> = (0..20).map(|i| format!("s{i}.example.com")).collect();
    for (round, name) in others.iter().enumerate() {
        put_cert(&r, name, &ca.bundle(name, GOOD));
        if round % 5 == 0 {
            // Renewed while in use.
            put_cert(&r, "load.example.com", &ca.bundle("load.example.com", GOOD));
        }
    }
    let listed = |n: usize| {
        let text = r.haproxy().runtime(&format!(
            "show ssl crt-list {}",
            r.layout.haproxy_crt_list().display()
        ));
        let text = text.unwrap_or_default();
        (text
            .lines()
            .filter(|l| l.contains(".example.com.pem"))
            .count()
            == n)
            .then_some(())
    };
    wait_until("21 certificates served", T, || listed(21)).unwrap();
    for name in &others[..10] {
        std::fs::remove_file(r.layout.tls_pem(&d(name))).unwrap();
    }
    wait_until("11 certificates served", T, || listed(11)).unwrap();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let (mut ok, mut failed) = (0, Vec::new());
    for c in clients {
        let (o, f) = c.join().unwrap();
        ok += o;
        failed.extend(f);
    }
    assert!(ok >= 200, "only {ok} requests");
    assert!(
        failed.is_empty(),
        "{} failed: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
    // The last renewal is the one served.
    let served = std::fs::read_to_string(r.layout.haproxy_cert(&d("load.example.com"))).unwrap();
    let last = std::fs::read_to_string(r.layout.tls_pem(&d("load.example.com"))).unwrap();
    assert_eq!(served.trim(), last.trim());
}
