//! ACME with a real CA: pebble on loopback validates HTTP-01 against the
//! HAProxy under test, whose answers come from etcd through confd. A
//! site's certificate is obtained and served (checked by curl against
//! pebble's root, for the domain and its www. alias) without a reload,
//! renewed, not ordered again after a restart; a failed validation backs
//! off (persisted), two orderers make one order, and an unreachable ACME
//! server leaves HTTP serving. In a fleet, the certificate the hosting
//! server obtained is served by the other servers too, without an order
//! of theirs; a single server publishes nothing.

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use hostyard_config::{AcmeConfig, FleetConfig, FleetPeer};
use hostyard_core::etcd::SiteDecl;
use hostyard_core::SiteKind;
use hostyard_testsupport::{free_port, http_get, wait_until, Backend, Etcd, Pebble};
use hostyard_tls::acme::{self, Acme, Outcome};
use util::{d, Router};

/// Pebble validates at once, but two cores shared by parallel tests make
/// an order take seconds.
const ORDER: Duration = Duration::from_secs(60);

fn acme_config(pebble: &Pebble) -> AcmeConfig {
    // pebble's HTTPS root first (the ACME client's), then the root it
    // signs certificates with (what a fleet's certificates chain to).
    let ca_file = pebble.dir().join("acme-roots.pem");
    let mut roots = std::fs::read(pebble.server_ca()).unwrap();
    roots.extend(std::fs::read(pebble.root_file()).unwrap());
    std::fs::write(&ca_file, roots).unwrap();
    AcmeConfig {
        directory: pebble.directory_url(),
        email: "ops@example.org".into(),
        terms_accepted: true,
        ca_file,
        retry_secs: 1,
    }
}

/// A router whose sites' HTTP port is what `pebble` validates against.
fn router_with_acme(etcd: &Etcd, acme: Option<AcmeConfig>) -> (Router, u16) {
    let mut r = Router::new(etcd);
    if let Some(a) = acme {
        r.config.tls.acme = a;
    }
    r.write_config();
    let port = r.port;
    (r, port)
}

/// A started router that orders from a new pebble (on the router's HTTP
/// port); HAProxy's worker at the start.
fn started_with_pebble(etcd: &Etcd) -> (Router, Pebble, u32) {
    let (mut r, port) = router_with_acme(etcd, None);
    let pebble = Pebble::start(port).unwrap();
    r.config.tls.acme = acme_config(&pebble);
    r.write_config();
    r.start();
    let worker = r.haproxy().worker_pid().unwrap();
    (r, pebble, worker)
}

fn site(r: &Router, etcd: &Etcd, domain: &str, backend: &Backend) {
    std::fs::create_dir_all(r.layout.domain_dir(&d(domain))).unwrap();
    r.register(etcd, SiteKind::Static, domain, backend.port());
    r.wait_for(domain, 200, "acme site");
}

/// Whether HTTPS for `host` verifies against `ca` (curl: any answer).
fn verifies(r: &Router, host: &str, ca: &Path) -> bool {
    r.https_verifies(host, ca)
}

/// Waits until HTTPS for each of `hosts` verifies against pebble's root;
/// on a time-out, panics with confd's and pebble's logs.
fn wait_https_from_pebble(r: &Router, pebble: &Pebble, what: &str, hosts: &[&str]) {
    let root = pebble.root_file();
    let res = wait_until(what, ORDER, || {
        hosts.iter().all(|h| verifies(r, h, &root)).then_some(())
    });
    if let Err(e) = res {
        panic!(
            "{e:#}\nconfd log:\n{}\npebble log:\n{}",
            r.confd_log(),
            std::fs::read_to_string(pebble.log_path()).unwrap_or_default()
        );
    }
}

/// Whether HTTPS for `domain` and for its `www.` alias verifies against `ca`.
fn verifies_with_www(r: &Router, domain: &str, ca: &Path) -> bool {
    verifies(r, domain, ca) && verifies(r, &format!("www.{domain}"), ca)
}

/// The serial of the certificate HAProxy serves for `host`.
fn served_serial(r: &Router, host: &str) -> String {
    served(r, host, "-serial")
}

/// The public key of the certificate HAProxy serves for `host` (PEM).
fn served_public_key(r: &Router, host: &str) -> String {
    served(r, host, "-pubkey")
}

/// What `openssl x509 -noout <part>` prints of the certificate HAProxy
/// serves for `host`.
fn served(r: &Router, host: &str, part: &str) -> String {
    let port = r.config.haproxy.https_port;
    let script = format!(
        "openssl s_client -connect 127.0.0.1:{port} -servername {host} </dev/null 2>/dev/null | openssl x509 -noout {part}"
    );
    let out = Command::new("sh").arg("-c").arg(script).output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn file_serial(path: &Path) -> String {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-serial", "-in"])
        .arg(path)
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

fn tls_state(r: &Router) -> serde_json::Value {
    std::fs::read(r.layout.tls_state())
        .ok()
        .and_then(|raw| serde_json::from_slice(&raw).ok())
        .unwrap_or_default()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn client(etcd: &Etcd) -> etcd_client::Client {
    etcd_client::Client::connect([etcd.endpoint()], None)
        .await
        .unwrap()
}

fn runner(r: &Router, config: AcmeConfig, node: &str) -> Acme {
    Acme::new(
        r.layout.clone(),
        r.schema.clone(),
        config,
        node.to_string(),
        acme::load_status(&r.layout),
    )
}

#[test]
fn a_site_gets_a_certificate_from_pebble_renews_and_a_restart_does_not_reorder() {
    let etcd = Etcd::start().unwrap();
    let (mut r, pebble, worker) = started_with_pebble(&etcd);
    let backend = Backend::start("acme site");
    site(&r, &etcd, "acme.example.com", &backend);

    let root = pebble.root_file();
    wait_https_from_pebble(
        &r,
        &pebble,
        "HTTPS from pebble's CA",
        &["acme.example.com", "www.acme.example.com"],
    );
    let state = tls_state(&r);
    assert_eq!(
        state["sites"]["acme.example.com"]["source"], "acme",
        "{state}"
    );
    assert!(r.confd_log().contains("ACME certificate obtained"));
    let key = std::fs::metadata(r.layout.acme_account()).unwrap();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(key.permissions().mode() & 0o777, 0o600);
    // The order's lock and challenges went with its lease.
    wait_until("challenges and lock gone", Duration::from_secs(10), || {
        (etcd
            .get_prefix(&format!("{}acme/", r.schema.root_prefix()))
            .unwrap()
            .is_empty()
            && std::fs::read_to_string(r.layout.acme_map()).unwrap_or_default() == "")
            .then_some(())
    })
    .unwrap();
    let first = file_serial(&r.layout.acme_cert(&d("acme.example.com")));
    assert_eq!(served_serial(&r, "acme.example.com"), first);
    // Not in a fleet: the private key stays on this server's disk (the
    // publisher runs right after an order, before the certificate above
    // was even served).
    assert_eq!(
        etcd.get_prefix(&r.schema.tls_certs_prefix()).unwrap(),
        vec![],
        "{}",
        r.confd_log()
    );

    // Renewal (the path a pass takes at two thirds of the lifetime, forced
    // here): a new certificate served without a reload.
    let rt = runtime();
    let mut c = rt.block_on(client(&etcd));
    let mut a = runner(&r, acme_config(&pebble), "test-renewer");
    let outcome = rt.block_on(a.renew(&mut c, &d("acme.example.com")));
    assert_eq!(outcome, Outcome::Obtained, "{}", r.confd_log());
    let second = file_serial(&r.layout.acme_cert(&d("acme.example.com")));
    assert_ne!(first, second);
    wait_until(
        "the renewed certificate served",
        Duration::from_secs(10),
        || (served_serial(&r, "acme.example.com") == second).then_some(()),
    )
    .unwrap();
    assert!(verifies(&r, "www.acme.example.com", &root));
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");

    // A restart (a new runner on the same files) orders nothing: the
    // certificate is within its first two thirds.
    let mut again = runner(&r, acme_config(&pebble), "after-restart");
    assert_eq!(rt.block_on(again.pass(&mut c)), vec![]);
    assert_eq!(
        file_serial(&r.layout.acme_cert(&d("acme.example.com"))),
        second
    );

    // The server joins a fleet (its node config gains peers, then SIGHUP,
    // as deploy/server.sh does): its certificate is published, no restart.
    r.config.fleet = FleetConfig {
        private_address: Some("127.0.0.2".parse().unwrap()),
        peer_port: free_port(),
        peers: vec![FleetPeer {
            name: "other".into(),
            address: "127.0.0.3".parse().unwrap(),
        }],
        ..util::fleet_tls("n1", "127.0.0.2")
    };
    r.apply_config();
    let key = r.schema.tls_cert_key(&d("acme.example.com"));
    let file = std::fs::read(r.layout.acme_cert(&d("acme.example.com"))).unwrap();
    wait_until("published after SIGHUP", Duration::from_secs(10), || {
        (etcd.get(&key).unwrap().as_deref().map(str::as_bytes) == Some(&file[..])).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
}

/// The DNS names of the certificate in `path`, sorted.
fn file_names(path: &Path) -> Vec<String> {
    let out = Command::new("openssl")
        .args(["x509", "-noout", "-ext", "subjectAltName", "-in"])
        .arg(path)
        .output()
        .unwrap();
    let mut names: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .split([',', '\n'])
        .filter_map(|p| p.trim().strip_prefix("DNS:").map(str::to_string))
        .collect();
    names.sort();
    names
}

#[test]
fn a_site_gets_https_for_the_names_the_ca_can_validate() {
    let etcd = Etcd::start().unwrap();
    let (mut r, port) = router_with_acme(&etcd, None);
    let pebble = Pebble::start(port).unwrap();
    // The CA's DNS knows the site and one declared alias, not www. (the
    // case of every blog.example.org) nor an alias whose DNS has not moved.
    pebble
        .dns_only(&["blog.example.org", "blog.example.net"])
        .unwrap();
    r.config.tls.acme = acme_config(&pebble);
    r.write_config();
    r.start();
    let backend = Backend::start("blog");
    let domain = d("blog.example.org");
    std::fs::create_dir_all(r.layout.domain_dir(&domain)).unwrap();
    let decl = SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![d("blog.example.net"), d("old.example.com")],
        edge: Default::default(),
        php: Default::default(),
    };
    etcd.put(&r.schema.site_key(&domain), &decl.to_json())
        .unwrap();
    r.put_service(&etcd, SiteKind::Static, &domain, backend.port());
    r.wait_for("blog.example.org", 200, "blog");

    wait_https_from_pebble(&r, &pebble, "HTTPS for the site", &["blog.example.org"]);
    // The alias the CA validated is in the certificate; www. and the
    // other alias are not.
    assert_eq!(
        file_names(&r.layout.acme_cert(&domain)),
        vec!["blog.example.net", "blog.example.org"]
    );
    let log = r.confd_log();
    assert_eq!(lines(&log, "ACME certificate obtained"), 1, "{log}");
    for name in ["old.example.com", "www.blog.example.org"] {
        assert_eq!(
            log.lines()
                .filter(|l| l.contains(" left out of the certificate") && l.contains(name))
                .count(),
            1,
            "{name}: {log}"
        );
    }
    assert_eq!(tls_state(&r)["sites"]["blog.example.org"]["source"], "acme");
}

#[test]
fn challenges_are_answered_only_for_declared_or_routed_hosts() {
    let etcd = Etcd::start().unwrap();
    // No tls.acme: every server answers challenges, whichever orders.
    let (mut r, port) = router_with_acme(&etcd, None);
    r.start();
    let backend = Backend::start("acme site");
    site(&r, &etcd, "declared.example.com", &backend);
    let token = "LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0";
    let answer = format!("{token}.thumbprint");
    etcd.put(&r.schema.acme_challenge_key(token), &answer)
        .unwrap();
    let path = format!("/.well-known/acme-challenge/{token}");
    let get = |host: &str| http_get(port, host, &path).unwrap_or((0, String::new()));
    // The site, its www. name and a declared-but-down site are answered.
    wait_until("the challenge answered", Duration::from_secs(10), || {
        (get("declared.example.com") == (200, answer.clone())).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
    assert_eq!(get("www.declared.example.com"), (200, answer.clone()));
    let down = d("down.example.com");
    let decl = SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![],
        edge: Default::default(),
        php: Default::default(),
    };
    etcd.put(&r.schema.site_key(&down), &decl.to_json())
        .unwrap();
    r.wait_for("down.example.com", 503, "");
    assert_eq!(get("down.example.com"), (200, answer.clone()));
    // A name that is neither declared nor routed gets the unknown host's
    // page: no certificate for it through this fleet.
    for host in ["victim.example.net", "www.victim.example.net", "127.0.0.1"] {
        let (status, body) = get(host);
        assert_eq!(status, 404, "{host}: {body}");
        assert!(!body.contains(&answer), "{host}: {body}");
    }
}

#[test]
fn a_renewal_request_makes_confd_serve_a_new_key_at_once() {
    let etcd = Etcd::start().unwrap();
    let (r, pebble, worker) = started_with_pebble(&etcd);
    let backend = Backend::start("renew site");
    // (HTTP may redirect to HTTPS before a wait for a 200 would see it:
    // the HTTPS wait below is it.)
    std::fs::create_dir_all(r.layout.domain_dir(&d("renew.example.com"))).unwrap();
    r.register(&etcd, SiteKind::Static, "renew.example.com", backend.port());
    let root = pebble.root_file();
    wait_until("HTTPS from pebble's CA", ORDER, || {
        verifies(&r, "renew.example.com", &root).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
    let before = served_public_key(&r, "renew.example.com");
    assert!(before.contains("PUBLIC KEY"), "{before}");

    // What `hostyard tls renew` leaves: confd orders within a pass,
    // though the certificate is days from renewal.
    let domain = d("renew.example.com");
    let request = acme::request_renewal(&r.layout, &domain).unwrap();
    let after = wait_until("a new key served", ORDER, || {
        let now = served_public_key(&r, "renew.example.com");
        (now.contains("PUBLIC KEY") && now != before).then_some(now)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
    assert_ne!(after, before);
    assert!(verifies(&r, "renew.example.com", &root));
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
    wait_until("the request removed", Duration::from_secs(10), || {
        (!request.exists()).then_some(())
    })
    .unwrap();
    let log = r.confd_log();
    assert_eq!(lines(&log, "ACME certificate obtained"), 2, "{log}");
    assert_eq!(lines(&log, "(hostyard tls renew)"), 1, "{log}");
}

#[test]
fn a_failed_validation_backs_off_and_a_restart_keeps_the_backoff() {
    let etcd = Etcd::start().unwrap();
    let (mut r, _port) = router_with_acme(&etcd, None);
    // This CA validates on a port nobody listens on: every validation fails.
    let pebble = Pebble::start(free_port()).unwrap();
    r.start();
    let backend = Backend::start("acme site");
    site(&r, &etcd, "fail.example.com", &backend);

    let rt = runtime();
    let mut c = rt.block_on(client(&etcd));
    let mut config = acme_config(&pebble);
    config.retry_secs = 3600;
    let status = acme::load_status(&r.layout);
    let mut a = Acme::new(
        r.layout.clone(),
        r.schema.clone(),
        config.clone(),
        "n1".into(),
        status.clone(),
    );
    let outcomes = rt.block_on(a.pass(&mut c));
    assert_eq!(outcomes.len(), 1, "{outcomes:?}");
    let Outcome::Failed(why) = &outcomes[0].1 else {
        panic!("{outcomes:?}")
    };
    assert!(why.contains("validation failed"), "{why}");
    assert!(!r.layout.acme_cert(&d("fail.example.com")).exists());
    // At once again: nothing, the domain waits.
    assert_eq!(rt.block_on(a.pass(&mut c)), vec![]);

    // The certificate thread writes the record to tls-state.json, where a
    // restarted confd reads it: still waiting.
    let mut certs =
        hostyard_tls::CertSync::new(r.layout.clone(), r.config.tls.clone()).with_acme(status);
    certs.pass().unwrap();
    let state = tls_state(&r);
    let site = &state["sites"]["fail.example.com"];
    assert_eq!(site["source"], "default", "{state}");
    assert_eq!(site["acme"]["failures"], 1, "{state}");
    assert!(site["acme"]["error"]
        .as_str()
        .unwrap()
        .contains("validation failed"));
    let mut restarted = runner(&r, config, "n1");
    assert_eq!(rt.block_on(restarted.pass(&mut c)), vec![]);
    // HTTP keeps serving the site.
    r.wait_for("fail.example.com", 200, "acme site");
}

/// With the periodic looks an hour apart, only the reaction to the
/// registration (the ACME thread woken by the routing watch) and to the
/// file it wrote (the certificate thread woken by the ACME thread) can
/// serve a new site's certificate within the wait.
#[test]
fn a_new_registration_gets_its_certificate_served_without_waiting_for_a_scan() {
    let etcd = Etcd::start().unwrap();
    let (mut r, port) = router_with_acme(&etcd, None);
    let pebble = Pebble::start(port).unwrap();
    r.config.tls.acme = acme_config(&pebble);
    r.config.tls.scan_secs = 3600;
    r.write_config();
    r.start();
    // Both threads made their first look at the start (no site yet): the
    // next ones are an hour away.
    let backend = Backend::start("acme site");
    site(&r, &etcd, "woken.example.com", &backend);
    wait_https_from_pebble(
        &r,
        &pebble,
        "HTTPS from pebble's CA with looks an hour apart",
        &["woken.example.com"],
    );
    // A second site while the first is served: a wake after the threads
    // went back to their hour-long wait.
    let other = Backend::start("second acme site");
    site(&r, &etcd, "second.example.com", &other);
    wait_https_from_pebble(
        &r,
        &pebble,
        "the second site's HTTPS from pebble's CA",
        &["second.example.com"],
    );
}

/// A site whose order fails and that comes and goes (each registration
/// wakes the ACME thread) is not ordered again before its backoff ends:
/// the CA's rate limits.
#[test]
fn a_flapping_site_is_ordered_no_more_often_than_its_backoff() {
    let etcd = Etcd::start().unwrap();
    let (mut r, _port) = router_with_acme(&etcd, None);
    // This CA validates on a port nobody listens on: every validation fails.
    let pebble = Pebble::start(free_port()).unwrap();
    let mut config = acme_config(&pebble);
    config.retry_secs = 3600;
    r.config.tls.acme = config;
    r.config.tls.scan_secs = 3600;
    r.write_config();
    r.start();
    let failed = |r: &Router, domain: &str| {
        lines(
            &r.confd_log(),
            &format!("{domain}: no ACME certificate from"),
        )
    };
    let backend = Backend::start("acme site");
    site(&r, &etcd, "flap.example.com", &backend);
    wait_until("the first order failed", ORDER, || {
        (failed(&r, "flap.example.com") == 1).then_some(())
    })
    .unwrap();
    let domain = d("flap.example.com");
    for _ in 0..5 {
        etcd.delete(&r.schema.service_key(SiteKind::Static, &domain))
            .unwrap();
        r.put_service(&etcd, SiteKind::Static, &domain, backend.port());
    }
    // Another site's registration after the flaps: once its order ran,
    // the wakes of the flaps (earlier in the same watch) were looked at.
    let other = Backend::start("second acme site");
    site(&r, &etcd, "after.example.com", &other);
    wait_until("the other site's order failed", ORDER, || {
        (failed(&r, "after.example.com") == 1).then_some(())
    })
    .unwrap();
    assert_eq!(failed(&r, "flap.example.com"), 1, "{}", r.confd_log());
    // HTTP keeps serving the site.
    r.wait_for("flap.example.com", 200, "acme site");
}

#[test]
fn two_orderers_make_one_order() {
    let etcd = Etcd::start().unwrap();
    let (mut r, port) = router_with_acme(&etcd, None);
    let pebble = Pebble::start(port).unwrap();
    r.start();
    let backend = Backend::start("acme site");
    site(&r, &etcd, "lock.example.com", &backend);

    let rt = runtime();
    let (mut c1, mut c2) = rt.block_on(async { (client(&etcd).await, client(&etcd).await) });
    let mut a1 = runner(&r, acme_config(&pebble), "one");
    let mut a2 = runner(&r, acme_config(&pebble), "two");
    let domain = d("lock.example.com");
    let (o1, o2) = rt
        .block_on(async { tokio::join!(a1.obtain(&mut c1, &domain), a2.obtain(&mut c2, &domain)) });
    let outcomes = [o1, o2];
    let obtained = outcomes.iter().filter(|o| **o == Outcome::Obtained).count();
    assert_eq!(obtained, 1, "{outcomes:?}");
    assert!(
        outcomes
            .iter()
            .any(|o| matches!(o, Outcome::Busy | Outcome::NotDue)),
        "{outcomes:?}"
    );
    assert!(verifies_after_install(&r, "lock.example.com", &pebble));
}

/// Waits for the certificate thread to serve what an in-process order wrote.
fn verifies_after_install(r: &Router, host: &str, pebble: &Pebble) -> bool {
    wait_until(
        "the ordered certificate served",
        Duration::from_secs(10),
        || verifies(r, host, &pebble.root_file()).then_some(()),
    )
    .is_ok()
}

#[test]
fn an_unreachable_acme_server_leaves_http_serving() {
    let etcd = Etcd::start().unwrap();
    let nobody = free_port();
    let (mut r, _port) = router_with_acme(
        &etcd,
        Some(AcmeConfig {
            directory: format!("https://127.0.0.1:{nobody}/dir"),
            email: "ops@example.org".into(),
            terms_accepted: true,
            ca_file: Default::default(),
            retry_secs: 3600,
        }),
    );
    r.start();
    let backend = Backend::start("acme site");
    site(&r, &etcd, "down.example.com", &backend);
    let state = wait_until("the ACME error in the state", ORDER, || {
        let s = tls_state(&r);
        s["sites"]["down.example.com"]["acme"]["error"]
            .as_str()
            .map(str::to_string)
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", r.confd_log()));
    assert!(state.contains("unreachable"), "{state}");
    r.wait_for("down.example.com", 200, "acme site");
    let log = r.confd_log();
    let lines = log
        .lines()
        .filter(|l| l.contains("no ACME certificate"))
        .count();
    assert_eq!(lines, 1, "one line, then a backoff of an hour:\n{log}");
}

#[test]
fn without_accepted_terms_nothing_is_ordered() {
    let etcd = Etcd::start().unwrap();
    let (r, port) = router_with_acme(&etcd, None);
    let pebble = Pebble::start(port).unwrap();
    std::fs::create_dir_all(r.layout.domain_dir(&d("terms.example.com"))).unwrap();
    let rt = runtime();
    let mut c = rt.block_on(client(&etcd));
    let mut config = acme_config(&pebble);
    config.terms_accepted = false;
    let mut a = runner(&r, config, "n1");
    let outcomes = rt.block_on(a.pass(&mut c));
    let Some((_, Outcome::Failed(why))) = outcomes.first() else {
        panic!("{outcomes:?}")
    };
    assert!(why.contains("terms_accepted"), "{why}");
    assert!(!r.layout.acme_account().exists());
}

/// Two servers of a fleet: HTTP and HTTPS on 127.0.0.1 (where pebble
/// validates, at `a`'s port), peer frontends on 127.0.0.2 and .3; both
/// order with ACME when they host a site.
fn fleet_pair(etcd: &Etcd) -> (Router, Router, Pebble) {
    let peer_port = free_port();
    let names = [("a", "127.0.0.2"), ("b", "127.0.0.3")];
    let mut routers: Vec<Router> = names.iter().map(|_| Router::new(etcd)).collect();
    let pebble = Pebble::start(routers[0].port).unwrap();
    for (r, (name, _)) in routers.iter_mut().zip(names) {
        r.config.node_name = name.to_string();
        r.config.tls.acme = acme_config(&pebble);
        r.config.fleet = util::fleet_among(&names, name, peer_port);
        r.write_config();
        r.start();
    }
    let b = routers.pop().unwrap();
    let a = routers.pop().unwrap();
    (a, b, pebble)
}

fn lines(log: &str, needle: &str) -> usize {
    log.lines().filter(|l| l.contains(needle)).count()
}

#[test]
fn in_a_fleet_the_hosting_servers_certificate_is_served_by_every_server() {
    let etcd = Etcd::start().unwrap();
    let (a, b, pebble) = fleet_pair(&etcd);
    let b_worker = b.haproxy().worker_pid().unwrap();
    let backend = Backend::start("fleet site");
    let domain = d("fleet.example.com");
    // Hosted by a only: its data is there. (HTTP may redirect to HTTPS
    // before a wait for a 200 would see it: the HTTPS wait below is it.)
    std::fs::create_dir_all(a.layout.domain_dir(&domain)).unwrap();
    a.register(&etcd, SiteKind::Static, "fleet.example.com", backend.port());

    // a orders; b serves the same certificate for the domain and its www.
    // alias, verified against pebble's root, without a reload.
    let root = pebble.root_file();
    let res = wait_until("HTTPS through b from a's certificate", ORDER, || {
        verifies_with_www(&b, "fleet.example.com", &root).then_some(())
    });
    if let Err(e) = res {
        panic!(
            "{e:#}\na's confd log:\n{}\nb's confd log:\n{}",
            a.confd_log(),
            b.confd_log()
        );
    }
    let serial = file_serial(&a.layout.acme_cert(&domain));
    assert_eq!(served_serial(&b, "fleet.example.com"), serial);
    assert_eq!(b.haproxy().worker_pid().unwrap(), b_worker, "no reload");
    assert_eq!(
        tls_state(&b)["sites"]["fleet.example.com"]["source"],
        "fleet"
    );
    let published = std::fs::read(a.layout.acme_cert(&domain)).unwrap();
    let key = a.schema.tls_cert_key(&domain);
    assert_eq!(
        etcd.get(&key).unwrap().unwrap().as_bytes(),
        published.as_slice()
    );
    let stored = b.layout.acme_cert(&domain);
    assert_eq!(std::fs::read(&stored).unwrap(), published);
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&stored).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // One order in the fleet: a's; b, which does not host the site, made none.
    let (alog, blog) = (a.confd_log(), b.confd_log());
    assert_eq!(lines(&alog, "ACME certificate obtained"), 1, "{alog}");
    assert_eq!(lines(&blog, "ACME certificate obtained"), 0, "{blog}");
    assert!(!b.layout.acme_account().exists(), "{blog}");
    // The key material is in no log line.
    let pem_key = String::from_utf8_lossy(&published)
        .lines()
        .find(|l| !l.starts_with("-----") && l.len() > 40)
        .map(str::to_string)
        .unwrap();
    assert!(!alog.contains(&pem_key) && !blog.contains(&pem_key));

    // A corrupt bundle put into etcd by hand: refused on b with one line,
    // and b keeps serving the good one; a, which hosts the site, puts its
    // own back.
    etcd.put(
        &key,
        "-----BEGIN CERTIFICATE-----\ngarbage\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let refused = "refused the certificate the fleet's store holds";
    wait_until(
        "a puts its certificate back",
        Duration::from_secs(10),
        || {
            (lines(&b.confd_log(), refused) > 0
                && etcd.get(&key).unwrap().as_deref().map(str::as_bytes) == Some(&published[..]))
            .then_some(())
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}\n{}", a.confd_log(), b.confd_log()));
    assert_eq!(lines(&b.confd_log(), refused), 1, "{}", b.confd_log());
    // Refused before it reached the file the certificate thread reads.
    assert_eq!(std::fs::read(&stored).unwrap(), published);
    assert_eq!(served_serial(&b, "fleet.example.com"), serial);

    // The site moves to b: b has its certificate already and orders none
    // before renewal time.
    std::fs::create_dir_all(b.layout.domain_dir(&domain)).unwrap();
    std::fs::remove_dir_all(a.layout.domain_dir(&domain)).unwrap();
    let rt = runtime();
    let mut c = rt.block_on(client(&etcd));
    let mut on_b = runner(&b, acme_config(&pebble), "b");
    assert_eq!(rt.block_on(on_b.pass(&mut c)), vec![]);
    // Nor when its copy is not on its disk (yet): the ACME pass takes the
    // one etcd holds instead of ordering. b's confd may be the one taking
    // it (then this pass finds the domain locked, or done).
    std::fs::remove_file(&stored).unwrap();
    let outcomes = rt.block_on(on_b.pass(&mut c));
    assert!(
        outcomes
            .iter()
            .all(|(_, o)| matches!(o, Outcome::NotDue | Outcome::Busy)),
        "{outcomes:?}"
    );
    wait_until("b's copy back from etcd", Duration::from_secs(10), || {
        (std::fs::read(&stored).ok().as_deref() == Some(&published[..])).then_some(())
    })
    .unwrap();
    wait_until("b serves it as its own", Duration::from_secs(10), || {
        (verifies(&b, "fleet.example.com", &root)
            && tls_state(&b)["sites"]["fleet.example.com"]["source"] == "acme")
            .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", b.confd_log()));
    assert_eq!(lines(&b.confd_log(), "ACME certificate obtained"), 0);

    // The site leaves the fleet (`hostyard site forget`: its declaration
    // and owner deleted): its key leaves etcd, no server keeps a copy, and
    // HTTPS answers with the default certificate.
    std::fs::remove_dir_all(b.layout.domain_dir(&domain)).unwrap();
    let forgotten = std::time::Instant::now();
    etcd.delete(&a.schema.site_key(&domain)).unwrap();
    etcd.delete(&a.schema.owner_key(&domain)).unwrap();
    wait_until("the copies gone", Duration::from_secs(10), || {
        (etcd.get(&key).unwrap().is_none()
            && !stored.exists()
            && !a.layout.acme_cert(&domain).exists()
            && !verifies(&b, "fleet.example.com", &root)
            && !verifies(&a, "fleet.example.com", &root))
        .then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}\n{}", b.confd_log()));
    eprintln!(
        "a forgotten site's certificate left etcd and both servers' HTTPS in {} ms",
        forgotten.elapsed().as_millis()
    );
}
