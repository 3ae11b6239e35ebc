//! hostyard-discovery against real etcd, a real docker engine and real
//! HAProxy. Each test has its own etcd, docker network and domain.

mod util;

use std::net::IpAddr;
use std::time::{Duration, Instant};

use hostyard_core::etcd::{ServiceValue, SiteDecl};
use hostyard_core::{Domain, SiteKind};
use hostyard_testsupport::{free_port, wait_until, Backend, Etcd, Haproxy, SocketDir};
use nix::sys::signal::Signal;
use util::*;

fn setup(prefix: &str) -> (Etcd, Network, Node, Domain) {
    hostyard_testsupport::require_docker();
    let etcd = Etcd::start().unwrap();
    let net = Network::create("hyd-net").unwrap();
    let node = Node::new(&etcd, &net.name);
    let domain = d(&format!("{}.example.com", unique(prefix)));
    (etcd, net, node, domain)
}

/// A site's container, its discovery, its service key, the container's
/// address and the registration, once the site is registered at that
/// address. Bound in this order, the discovery is dropped first.
fn run_site(
    etcd: &Etcd,
    net: &Network,
    node: &Node,
    domain: &Domain,
    kind: SiteKind,
) -> (Container, Discovery, String, IpAddr, ServiceValue) {
    let site = Container::site(kind, domain, net);
    let disc = node.run(kind, domain);
    let key = node.schema.service_key(kind, domain);
    let ip = site.ip(net);
    let value = wait_registered_at(etcd, &key, ip, &disc);
    (site, disc, key, ip, value)
}

#[test]
fn registers_the_container_under_a_lease_with_a_declaration() {
    let (etcd, net, node, domain) = setup("reg");
    let kind = SiteKind::Static;
    let (_site, disc, key, ip, value) = run_site(&etcd, &net, &node, &domain, kind);
    assert_eq!(
        value,
        ServiceValue {
            ip,
            port: 80,
            node: Some("n1".into())
        }
    );
    // The original's value format: the port is a string.
    let raw = etcd.get(&key).unwrap().unwrap();
    assert!(raw.contains(r#""port":"80""#), "{raw}");
    assert!(etcd.lease_of(&key).unwrap().is_some(), "key has no lease");
    let decl = etcd.get(&node.schema.site_key(&domain)).unwrap().unwrap();
    assert_eq!(
        SiteDecl::parse(decl.as_bytes()).unwrap(),
        SiteDecl {
            kind,
            aliases: vec![],
            edge: Default::default(),
            php: Default::default(),
        }
    );
    assert_eq!(
        etcd.lease_of(&node.schema.site_key(&domain)).unwrap(),
        None,
        "the declaration must be persistent"
    );
    assert!(
        disc.log_text().contains("registered "),
        "{}",
        disc.log_text()
    );
}

#[test]
fn tells_systemd_ready_only_once_registered_and_feeds_the_watchdog() {
    let (etcd, net, node, domain) = setup("notify");
    let kind = SiteKind::Static;
    let sock = node.dir.path().join("notify.sock");
    let notify = std::os::unix::net::UnixDatagram::bind(&sock).unwrap();
    notify
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    // Discovery starts before its container, as under systemd.
    let disc = node.run_with_env(
        kind,
        &domain,
        &[
            ("NOTIFY_SOCKET", sock.as_os_str()),
            ("WATCHDOG_USEC", std::ffi::OsStr::new("400000")),
        ],
    );
    let key = node.schema.service_key(kind, &domain);
    let mut seen = String::new();
    let mut next = || {
        let mut buf = [0u8; 4096];
        let n = notify.recv(&mut buf).ok()?;
        let text = String::from_utf8_lossy(&buf[..n]).into_owned();
        seen.push_str(&text);
        seen.push('\n');
        Some(text)
    };
    // Watchdog pings while waiting for the container, but no READY.
    wait_until("a watchdog ping", T, || {
        next().filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
    })
    .unwrap();
    let site = Container::site(kind, &domain, &net);
    wait_until("READY=1", T, || {
        let m = next()?;
        if m.lines().any(|l| l == "READY=1") {
            // READY means registered: the key is already there.
            assert!(
                etcd.get(&key).unwrap().is_some(),
                "READY before registration"
            );
            return Some(());
        }
        None
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", disc.log_text()));
    assert_eq!(registration(&etcd, &key).map(|v| v.ip), Some(site.ip(&net)));
    wait_until("a watchdog ping after READY", T, || {
        next().filter(|m| m.lines().any(|l| l == "WATCHDOG=1"))
    })
    .unwrap();
    assert!(seen.contains("STATUS=routed at "), "{seen}");
}

/// A static site without an index.html answers 404 at `/`: it is up, and
/// used to be never routed (health took only 200..=399).
#[test]
fn a_site_answering_404_is_up_and_routed() {
    let (etcd, net, mut node, domain) = setup("notfound");
    node.config.discovery.health_path = "/no-such-page".to_string();
    node.write_config();
    run_site(&etcd, &net, &node, &domain, SiteKind::Static);
}

#[test]
fn waits_for_a_container_that_starts_later() {
    let (etcd, net, node, domain) = setup("late");
    let kind = SiteKind::StaticGit;
    let disc = node.run(kind, &domain);
    disc.wait_for_log("does not exist", T);
    let key = node.schema.service_key(kind, &domain);
    assert_eq!(etcd.get(&key).unwrap(), None);
    let site = Container::site(kind, &domain, &net);
    wait_registered_at(&etcd, &key, site.ip(&net), &disc);
}

#[test]
fn hung_container_leaves_routing_after_n_failures_and_not_before() {
    let (etcd, net, node, domain) = setup("hang");
    let (site, disc, key, ip, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    let lease = etcd.lease_of(&key).unwrap();

    // Accepts connections, never answers: only the check's timeout ends it.
    site.hang();
    disc.wait_for_log("check failed (1 of 3)", T);
    assert!(
        disc.log_text().contains("did not answer within 1s"),
        "{}",
        disc.log_text()
    );
    disc.wait_for_log("check failed (2 of 3)", T);
    // Two failures: still routed, under the same lease. The third check is
    // at least an interval away.
    assert_eq!(registration(&etcd, &key).map(|v| v.ip), Some(ip));
    assert_eq!(etcd.lease_of(&key).unwrap(), lease);

    wait_gone(&etcd, &key, T, &disc);
    let log = disc.log_text();
    assert!(log.contains("check failed (3 of 3)"), "{log}");
    assert!(
        log.contains("unhealthy 3 times in a row: removing from routing"),
        "{log}"
    );
    // The declaration stays, so routing shows the site as down (503), not unknown.
    assert!(etcd.get(&node.schema.site_key(&domain)).unwrap().is_some());

    // Recovery puts it back.
    site.resume();
    wait_registered_at(&etcd, &key, ip, &disc);
}

#[test]
fn a_single_failure_does_not_remove_the_site() {
    let (etcd, net, node, domain) = setup("blip");
    let (site, disc, key, ip, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    site.hang();
    disc.wait_for_log("check failed (1 of 3)", T);
    site.resume();
    disc.wait_for_log("answering again", T);
    assert_eq!(registration(&etcd, &key).map(|v| v.ip), Some(ip));
    assert!(!disc.log_text().contains("removing from routing"));
}

#[test]
fn restarted_container_is_registered_at_its_new_address() {
    let (etcd, net, node, domain) = setup("move");
    let kind = SiteKind::Static;
    let (site, disc, key, old_ip, _) = run_site(&etcd, &net, &node, &domain, kind);

    // Replace the container; a filler started in between takes the freed
    // address if docker would hand it out again.
    site.remove();
    let _filler = Container::run(&unique("hyd-filler"), &net);
    let site = Container::site(kind, &domain, &net);
    let new_ip = site.ip(&net);
    assert_ne!(new_ip, old_ip, "docker gave the same address back");
    wait_registered_at(&etcd, &key, new_ip, &disc);
}

#[test]
fn paused_or_stopped_container_leaves_routing_and_comes_back() {
    let (etcd, net, node, domain) = setup("pause");
    let (site, disc, key, ip, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);

    docker_ok(&["pause", &site.name]);
    wait_gone(&etcd, &key, T, &disc);
    let log = disc.log_text();
    assert!(
        log.contains(&format!("container {} is paused", site.name)),
        "{log}"
    );
    docker_ok(&["unpause", &site.name]);
    wait_registered_at(&etcd, &key, ip, &disc);

    docker_ok(&["stop", "-t", "0", &site.name]);
    wait_gone(&etcd, &key, T, &disc);
    disc.wait_for_log(&format!("container {} is not running", site.name), T);
    docker_ok(&["start", &site.name]);
    wait_registered_at(&etcd, &key, site.ip(&net), &disc);
}

/// A static site's discovery that asks the docker engine at `socket`.
fn run_with_docker_at(node: &Node, domain: &Domain, socket: &std::path::Path) -> Discovery {
    let host = format!("unix://{}", socket.display());
    node.run_with_env(
        SiteKind::Static,
        domain,
        &[("DOCKER_HOST", std::ffi::OsStr::new(&host))],
    )
}

/// The docker engine behind a socket that accepts and never answers: each
/// check gives up after the check timeout, says so, and the next one comes.
#[test]
fn a_hung_docker_engine_fails_each_check_within_the_timeout() {
    let etcd = Etcd::start().unwrap();
    let node = Node::new(&etcd, "hostyard");
    let domain = d(&format!("{}.example.com", unique("hungengine")));
    let engine = HungEngine::start(&node.dir.path().join("docker.sock"));
    let start = Instant::now();
    let disc = run_with_docker_at(&node, &domain, &engine.path);
    let engine_at = engine.path.display();
    disc.wait_for_log(
        &format!("the docker engine at {engine_at} did not answer within 1s"),
        T,
    );
    // Checks keep coming: the engine never answers, so without the bound
    // the first check would wait forever and no second one would connect.
    wait_until("three checks reaching the engine", T, || {
        (engine.connections() >= 3).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", disc.log_text()));
    eprintln!("three checks of a hung engine took {:?}", start.elapsed());
    assert_eq!(etcd.get_prefix("").unwrap(), vec![], "etcd was written");
}

#[test]
fn a_missing_or_foreign_docker_engine_is_named() {
    let etcd = Etcd::start().unwrap();
    let node = Node::new(&etcd, "hostyard");
    let domain = d(&format!("{}.example.com", unique("noengine")));
    let missing = node.dir.path().join("no-docker.sock");
    let disc = run_with_docker_at(&node, &domain, &missing);
    let engine_at = missing.display();
    disc.wait_for_log(
        &format!("no docker engine at {engine_at} (is docker running?"),
        T,
    );
    drop(disc);

    // Only a unix socket is read: anything else is refused at start.
    let out = std::process::Command::new(BIN)
        .arg("--config")
        .arg(&node.config_path)
        .args(["run", "static", domain.as_str()])
        .env("DOCKER_HOST", "tcp://127.0.0.1:2375")
        .env_remove("NOTIFY_SOCKET")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("hostyard-discovery: DOCKER_HOST=\"tcp://127.0.0.1:2375\"")
            && stderr.trim_end().lines().count() == 1,
        "{stderr:?}"
    );
}

#[test]
fn sigterm_takes_the_site_out_of_routing_within_a_second() {
    let (etcd, net, node, domain) = setup("stop");
    let (_site, mut disc, key, _, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Wordpress);

    let start = Instant::now();
    disc.signal(Signal::SIGTERM);
    wait_gone(&etcd, &key, Duration::from_secs(1), &disc);
    let took = start.elapsed();
    let status = disc.wait_exit(Duration::from_secs(5));
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        disc.log_text()
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
    // The declaration is not the stop's business.
    assert!(etcd.get(&node.schema.site_key(&domain)).unwrap().is_some());
}

#[test]
fn sigterm_during_a_hung_check_exits_at_once() {
    let (etcd, net, mut node, domain) = setup("stophung");
    // A long check timeout: the stop must not wait for it.
    node.config.discovery.timeout_secs = 10;
    node.write_config();
    let (site, mut disc, key, ip, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    site.hang();
    // Checks run every second and now each waits 10 s: wait until one is
    // in flight (its connection to the frozen site is open).
    let checked = std::net::SocketAddr::new(ip, 80);
    wait_until("a check in flight to the frozen site", T, || {
        connected_to(checked).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", disc.log_text()));
    let start = Instant::now();
    disc.signal(Signal::SIGTERM);
    wait_gone(&etcd, &key, Duration::from_secs(1), &disc);
    let status = disc.wait_exit(Duration::from_secs(2));
    assert!(
        status.success(),
        "exit {status:?}; log:\n{}",
        disc.log_text()
    );
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    site.resume();
}

#[test]
fn registration_comes_back_with_a_new_lease_after_an_etcd_restart() {
    let (mut etcd, net, node, domain) = setup("etcd");
    let (_site, disc, key, ip, _) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    let old_lease = etcd.lease_of(&key).unwrap().unwrap();

    etcd.stop();
    disc.wait_for_log("retrying", T);
    etcd.start_again().unwrap();
    let new_lease = wait_until("the key under a new lease", T, || {
        etcd.lease_of(&key)
            .ok()
            .flatten()
            .filter(|l| *l != old_lease)
    })
    .unwrap_or_else(|e| panic!("{e}; log:\n{}", disc.log_text()));
    assert_ne!(new_lease, old_lease);
    assert_eq!(registration(&etcd, &key).map(|v| v.ip), Some(ip));
    disc.wait_for_log("etcd answers again", T);
}

/// The bug this pins: a second discovery for the same key (a typo'd unit
/// name) revoked its lease on stop, the key vanished with it, and the real
/// discovery never put it back: the site stayed a 503 until restarted.
#[test]
fn a_removed_or_replaced_registration_is_put_back_under_its_own_lease() {
    let (etcd, net, node, domain) = setup("putback");
    let (_site, disc, key, _, ours) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    let lease = etcd
        .lease_of(&key)
        .unwrap()
        .expect("registered under a lease");
    let wait_ours_back = |what: &str| {
        wait_until(what, T, || {
            (registration(&etcd, &key).as_ref() == Some(&ours)
                && etcd.lease_of(&key).unwrap() == Some(lease))
            .then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; discovery log:\n{}", disc.log_text()))
    };

    // Replaced by someone else's value under someone else's lease.
    let other = r#"{"ip":"192.0.2.9","port":"80"}"#;
    let started = Instant::now();
    let other_lease = etcd.put_with_lease(&key, other, 60).unwrap();
    assert_ne!(other_lease, lease);
    wait_ours_back("our value under our lease again");
    eprintln!("replaced key put back after {:?}", started.elapsed());
    disc.wait_for_log("put it back", T);

    // Removed outright (the typo'd unit's lease revoked).
    let started = Instant::now();
    etcd.delete(&key).unwrap();
    wait_ours_back("the removed key back");
    eprintln!("removed key put back after {:?}", started.elapsed());
}

/// How long a test watches a registration for flapping: five keep-alives
/// of the tests' 6 s lease (one every 2 s), where each of two fighting
/// discoveries put its own value back.
const OBSERVE: Duration = Duration::from_secs(10);

/// The restore-while-frozen sequence. n1 runs the site and owns it; its
/// discovery is frozen (SIGSTOP), and n2 starts the same site, as after a
/// restore on n2. n2 must not register (it exits 3, naming n1 and the
/// take-over command), and once n1 resumes, the registration never shows
/// n2's value. Both "servers" check the same real container (a docker
/// engine has one container of a name); their registrations differ by node
/// name and lease, which is what confd and this test see.
#[test]
fn a_second_server_never_takes_a_site_its_owner_registered() {
    let (etcd, net, node1, domain) = setup("owner");
    let node2 = Node::other(&etcd, &net.name, "n2");
    let kind = SiteKind::Static;
    let (_site, disc1, key, _, ours) = run_site(&etcd, &net, &node1, &domain, kind);
    let owner_key = node1.schema.owner_key(&domain);

    let from = etcd.revision().unwrap() + 1;
    disc1.signal(Signal::SIGSTOP);
    let mut disc2 = node2.run(kind, &domain);
    // n2 either refuses (and exits) or registers over n1 (the bug).
    let n2_outcome = wait_until("n2 to exit or to register", T, || {
        if let Some(status) = disc2.child.try_wait().unwrap() {
            return Some(Some(status));
        }
        registration(&etcd, &key)
            .filter(|v| v.node.as_deref() == Some("n2"))
            .map(|_| None)
    });
    disc1.signal(Signal::SIGCONT);
    std::thread::sleep(OBSERVE);
    let changes = history(&etcd, &key, from);
    let by_n2 = changes
        .iter()
        .filter(|c| c.node().as_deref() == Some("n2"))
        .count();
    eprintln!(
        "over {OBSERVE:?} after n2 started: {} changes of {key}, {by_n2} of them n2's: {changes:?}",
        changes.len()
    );
    assert_eq!(
        by_n2,
        0,
        "n2 registered over n1's site {by_n2} times ({} changes); n2's log:\n{}",
        changes.len(),
        disc2.log_text()
    );
    let status = n2_outcome
        .ok()
        .flatten()
        .unwrap_or_else(|| panic!("n2 did not exit; its log:\n{}", disc2.log_text()));
    assert_eq!(status.code(), Some(3), "n2's log:\n{}", disc2.log_text());
    let log2 = disc2.log_text();
    let refusal: Vec<&str> = log2.lines().filter(|l| l.contains("owned by")).collect();
    assert_eq!(refusal.len(), 1, "{log2}");
    assert!(
        refusal[0].contains("server n1")
            && refusal[0].contains(&format!("hostyard site claim {domain} --take-over")),
        "{log2}"
    );
    // n1 kept (or got back) the site under its own lease; its first
    // registration claimed the site, persistently, and n2 changed nothing.
    assert_eq!(registration(&etcd, &key), Some(ours));
    assert_eq!(etcd.get(&owner_key).unwrap().as_deref(), Some("n1"));
    assert_eq!(etcd.lease_of(&owner_key).unwrap(), None);
    let log1 = disc1.log_text();
    assert!(!log1.contains("owned by"), "{log1}");
}

/// A take-over (`hostyard site claim D --take-over` on n2 writes the owner
/// key, in one transaction tested with the command) ends the old owner's
/// registration: its discovery stops registering and exits 3, and n2's
/// registration then stays.
#[test]
fn a_taken_over_site_stops_its_old_owners_discovery() {
    let (etcd, net, node1, domain) = setup("takeover");
    let node2 = Node::other(&etcd, &net.name, "n2");
    let kind = SiteKind::Static;
    let (_site, mut disc1, key, _, _) = run_site(&etcd, &net, &node1, &domain, kind);
    let owner_key = node1.schema.owner_key(&domain);

    let start = Instant::now();
    etcd.put(&owner_key, "n2").unwrap();
    let status = exited_within(&mut disc1, T)
        .unwrap_or_else(|| panic!("n1 still runs; its log:\n{}", disc1.log_text()));
    eprintln!(
        "n1's discovery exited {:?} after the take-over",
        start.elapsed()
    );
    assert_eq!(status.code(), Some(3), "{}", disc1.log_text());
    let log1 = disc1.log_text();
    assert!(log1.contains("owned by server n2"), "{log1}");
    // It withdrew its registration on the way out.
    wait_gone(&etcd, &key, Duration::from_secs(1), &disc1);

    let from = etcd.revision().unwrap() + 1;
    let disc2 = node2.run(kind, &domain);
    let theirs = wait_until("n2's registration", T, || {
        registration(&etcd, &key).filter(|v| v.node.as_deref() == Some("n2"))
    })
    .unwrap_or_else(|e| panic!("{e}; n2's log:\n{}", disc2.log_text()));
    std::thread::sleep(OBSERVE);
    let changes = history(&etcd, &key, from);
    assert!(
        changes.iter().all(|c| c.node().as_deref() == Some("n2")),
        "{changes:?}"
    );
    assert_eq!(registration(&etcd, &key), Some(theirs));
    assert_eq!(etcd.get(&owner_key).unwrap().as_deref(), Some("n2"));
}

#[test]
fn another_kinds_declaration_is_not_overwritten() {
    let (etcd, net, node, domain) = setup("clash");
    let site_key = node.schema.site_key(&domain);
    let theirs = SiteDecl {
        kind: SiteKind::Wordpress,
        aliases: vec![d("www2.example.org")],
        edge: Default::default(),
        php: Default::default(),
    };
    etcd.put(&site_key, &theirs.to_json()).unwrap();
    let (_site, disc, ..) = run_site(&etcd, &net, &node, &domain, SiteKind::Static);
    disc.wait_for_log("conflict: ", T);
    let now = etcd.get(&site_key).unwrap().unwrap();
    assert_eq!(SiteDecl::parse(now.as_bytes()).unwrap(), theirs);
}

#[test]
fn hostile_arguments_are_refused_with_exit_2_and_nothing_written() {
    let etcd = Etcd::start().unwrap();
    let node = Node::new(&etcd, "hostyard");
    for args in [
        &["run", "static", "../../etc/passwd"][..],
        &["run", "static", "-rf"],
        &["run", "static", "a.com/../../x"],
        &["run", "static", "exa mple.com"],
        &["run", "static", "example.com;rm -rf /"],
        &["run", "php", "example.com"],
        // Not canonical: another unit for the same site would fight over
        // its key and revoke it on stop.
        &["run", "static", "Example.com"],
        &["run", "static", "example.com."],
        &["wait", "static", "EXAMPLE.COM"],
        &["wait", "static", "$(reboot).com"],
        &["wait", "../static", "example.com"],
        &["run", "static"],
    ] {
        let out = node.exec(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(
            stderr.starts_with("hostyard-discovery: ") && stderr.trim_end().lines().count() == 1,
            "{args:?}: {stderr:?}"
        );
    }
    assert_eq!(etcd.get_prefix("").unwrap(), vec![], "etcd was written");
}

/// What `hostyard-discovery wait` talks to: etcd, and HAProxy routing
/// the domain `up` to a live backend and `down` to its own 503.
fn wait_setup() -> (Etcd, Node, Domain, Domain, Backend, (Haproxy, SocketDir)) {
    let etcd = Etcd::start().unwrap();
    let mut node = Node::new(&etcd, "hostyard");
    let up = d(&format!("{}.example.com", unique("up")));
    let down = d(&format!("{}.example.com", unique("down")));
    let backend = Backend::start("the site");
    let (sockets, haproxy, port) = haproxy_for(up.as_str(), &backend, down.as_str());
    node.config.haproxy.http_port = port;
    node.write_config();
    (etcd, node, up, down, backend, (haproxy, sockets))
}

/// A HAProxy that routes `up` to a live backend, `down` to HAProxy's own
/// 503 and anything else to its own 404, both marked with
/// `X-Hostyard-Page` like confd's config does.
fn haproxy_for(up: &str, up_backend: &Backend, down: &str) -> (SocketDir, Haproxy, u16) {
    let sockets = SocketDir::new().unwrap();
    let port = free_port();
    let cfg = sockets.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {admin} level admin\n\
             defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
             frontend fe\n  bind 127.0.0.1:{port}\n\
             \x20 use_backend site if {{ hdr(host) -i {up} }}\n\
             \x20 use_backend down if {{ hdr(host) -i {down} }}\n\
             \x20 default_backend unknown\n\
             backend site\n  server s1 {addr}\n\
             backend down\n  http-request return status 503 hdr X-Hostyard-Page down\n\
             backend unknown\n  http-request return status 404 hdr X-Hostyard-Page unknown\n",
            admin = sockets.admin_socket_path().display(),
            addr = up_backend.addr(),
        ),
    )
    .unwrap();
    let h = Haproxy::start(&cfg).unwrap();
    (sockets, h, port)
}

#[test]
fn wait_returns_once_registered_and_answering_through_haproxy() {
    let (etcd, node, up, _down, backend, _haproxy) = wait_setup();

    let kind = SiteKind::Static;
    let value = ServiceValue {
        ip: "127.0.0.1".parse().unwrap(),
        port: backend.port(),
        node: Some("n1".into()),
    };
    etcd.put_with_lease(&node.schema.service_key(kind, &up), &value.to_json(), 30)
        .unwrap();
    let start = Instant::now();
    let out = node.exec(&["wait", "static", up.as_str(), "--timeout", "10"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(backend.requests() >= 1);
}

#[test]
fn wait_times_out_with_one_clear_line() {
    let (etcd, node, _up, down, _backend, _haproxy) = wait_setup();

    // Not registered at all.
    let start = Instant::now();
    let out = node.exec(&["wait", "static", down.as_str(), "--timeout", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert!(
        stderr.contains(&format!("{down} is not up after 1s"))
            && stderr.contains("not registered in etcd yet"),
        "{stderr}"
    );

    // Registered, but HAProxy has no server for it: its 503 is not the site.
    let value = ServiceValue {
        ip: "127.0.0.1".parse().unwrap(),
        port: 9,
        node: None,
    };
    etcd.put_with_lease(
        &node.schema.service_key(SiteKind::Static, &down),
        &value.to_json(),
        30,
    )
    .unwrap();
    let out = node.exec(&["wait", "static", down.as_str(), "--timeout", "1"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("answers its own 503 (down)"), "{stderr}");
}
