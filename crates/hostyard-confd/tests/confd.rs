//! hostyard-confd against real etcd, real HAProxy and real backends on
//! loopback: routing without reloads, redirects, 404 and 503 pages, bad
//! data, etcd outages, held mass removals, status and systemd's notify.

mod util;

use std::time::{Duration, Instant};

use etcd_client::{Txn, TxnOp};
use hostyard_config::{FleetConfig, FleetPeer};
use hostyard_core::etcd::Schema;
use hostyard_core::SiteKind;
use hostyard_testsupport::{http_get_with_headers, wait_until, Backend, Etcd};
use util::{d, Router, T};

#[test]
fn site_is_added_moved_and_removed_without_a_reload() {
    let etcd = Etcd::start().unwrap();
    let r = Router::started(&etcd);
    let pid = r.haproxy().worker_pid().unwrap();
    let one = Backend::start("one");
    let two = Backend::start("two");

    r.register(&etcd, SiteKind::Static, "a.example.com", one.port());
    r.wait_for("a.example.com", 200, "one");
    r.put_service(&etcd, SiteKind::Static, &d("a.example.com"), two.port());
    r.wait_for("a.example.com", 200, "two");
    etcd.delete(&r.schema.service_key(SiteKind::Static, &d("a.example.com")))
        .unwrap();
    r.wait_for("a.example.com", 503, "maintenance");
    etcd.delete(&r.schema.site_key(&d("a.example.com")))
        .unwrap();
    r.wait_for("a.example.com", 404, "not found");

    assert_eq!(
        r.haproxy().worker_pid().unwrap(),
        pid,
        "HAProxy was reloaded"
    );
    // The file, written after the runtime API, catches up with what the
    // runtime API holds: a restart comes back the same.
    let mut last = Default::default();
    let same = wait_until("the map file equal to the runtime map", T, || {
        let file = std::fs::read_to_string(r.layout.hosts_map()).ok()?;
        let runtime = r
            .haproxy()
            .runtime(&format!("show map {}", r.layout.hosts_map().display()))
            .ok()?;
        last = (
            hostyard_haproxy::parse_map(&file),
            hostyard_haproxy::parse_map(&runtime),
        );
        (last.0 == last.1 && hostyard_haproxy::parse_generation(&file).is_some()).then_some(())
    });
    assert!(same.is_ok(), "file, runtime: {last:?}");
}

#[test]
fn host_header_port_and_case_do_not_matter() {
    let etcd = Etcd::start().unwrap();
    let (r, _b) = Router::routed_from_start(&etcd, "p.example.com", "ported");
    for host in ["p.example.com:80", "P.Example.COM", "P.EXAMPLE.com:8080"] {
        assert_eq!(r.get(host), (200, "ported".to_string()), "{host}");
    }
}

#[test]
fn www_and_aliases_redirect_301_to_the_canonical_domain() {
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    let b = Backend::start("canon");
    etcd.put(
        &r.schema.site_key(&d("c.example.com")),
        r#"{"kind":"static","aliases":["c.example.org"]}"#,
    )
    .unwrap();
    r.put_service(&etcd, SiteKind::Static, &d("c.example.com"), b.port());
    r.start();
    r.wait_for("c.example.com", 200, "canon");
    for host in ["www.c.example.com", "WWW.c.example.com:80", "c.example.org"] {
        let resp = http_get_with_headers(r.port, host, "/a/b?x=1", &[]).unwrap();
        assert_eq!(resp.status, 301, "{host}");
        // HAProxy's HTTP port here is not 80: the redirect names it.
        assert_eq!(
            resp.header("location"),
            Some(format!("http://c.example.com:{}/a/b?x=1", r.port).as_str()),
            "{host}"
        );
    }
}

#[test]
fn unknown_host_gets_404_and_expired_registration_gets_503_never_404() {
    let etcd = Etcd::start().unwrap();
    let r = Router::started(&etcd);
    let (status, body) = r.get("nobody.example.com");
    assert_eq!(status, 404);
    assert!(body.contains("Site not found"), "{body}");

    let b = Backend::start("leased");
    let domain = d("l.example.com");
    etcd.put(&r.schema.site_key(&domain), r#"{"kind":"static"}"#)
        .unwrap();
    etcd.put_with_lease(
        &r.schema.service_key(SiteKind::Static, &domain),
        &format!(r#"{{"ip":"127.0.0.1","port":"{}"}}"#, b.port()),
        2,
    )
    .unwrap();
    r.wait_for("l.example.com", 200, "leased");
    // The lease is not kept alive: etcd expires it (2 s TTL, checked within 10 s).
    r.wait_for("l.example.com", 503, "Down for maintenance");
    // The state file follows HAProxy by up to a quarter second.
    wait_until("the state file to say down", T, || {
        let state = r.state();
        let site = &state["sites"][0];
        (site["domain"] == "l.example.com" && site["state"] == "down").then_some(())
    })
    .unwrap();
}

#[test]
fn malformed_data_is_logged_once_and_skipped_while_others_route() {
    let etcd = Etcd::start().unwrap();
    let good = Backend::start("good");
    let other = Backend::start("other");
    let r = Router::started(&etcd);
    r.register(&etcd, SiteKind::Static, "good.example.com", good.port());
    r.wait_for("good.example.com", 200, "good");

    let bad = [
        ("/services/static/bad.example.com", "{not json"),
        (
            "/services/static/Bad_Domain",
            r#"{"ip":"127.0.0.1","port":"80"}"#,
        ),
        (
            "/services/php/x.example.com",
            r#"{"ip":"127.0.0.1","port":"80"}"#,
        ),
        (
            "/services/static/far.example.com",
            r#"{"ip":"192.0.2.1","port":"80"}"#,
        ),
        ("/sites/junk.example.com", "]"),
    ];
    for (k, v) in bad {
        etcd.put(k, v).unwrap();
    }
    // The same domain under two kinds, with no declaration to settle it.
    r.put_service(&etcd, SiteKind::Static, &d("two.example.com"), other.port());
    r.put_service(
        &etcd,
        SiteKind::Wordpress,
        &d("two.example.com"),
        other.port(),
    );
    // A later good change still goes through.
    r.register(&etcd, SiteKind::Static, "after.example.com", other.port());
    r.wait_for("after.example.com", 200, "other");
    assert_eq!(r.get("good.example.com"), (200, "good".to_string()));
    assert_eq!(r.get("two.example.com").0, 404);
    assert_eq!(r.get("far.example.com").0, 503);

    // Each bad key is logged once, naming the key, even after more changes.
    r.register(&etcd, SiteKind::Static, "more.example.com", other.port());
    r.wait_for("more.example.com", 200, "other");
    let log = r.confd_log();
    for key in [
        "/services/static/bad.example.com",
        "/services/static/Bad_Domain",
        "/services/php/x.example.com",
        "/services/static/far.example.com",
        "/sites/junk.example.com",
        "/services/static/two.example.com",
        "/services/wordpress/two.example.com",
    ] {
        let n = log
            .lines()
            .filter(|l| l.starts_with(&format!("skipped {key}:")))
            .count();
        assert_eq!(n, 1, "{key} logged {n} times:\n{log}");
    }
    // The state file follows HAProxy by up to a quarter second.
    wait_until("the state file to show the conflict", T, || {
        let state = r.state();
        let two = state["sites"]
            .as_array()?
            .iter()
            .find(|s| s["domain"] == "two.example.com")?
            .clone();
        (two["state"] == "conflict").then_some(())
    })
    .unwrap();
}

#[test]
fn etcd_restart_while_confd_runs_then_new_keys_are_routed() {
    let mut etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    let one = Backend::start("before");
    let two = Backend::start("after");
    r.register(&etcd, SiteKind::Static, "before.example.com", one.port());
    r.start();
    r.wait_for("before.example.com", 200, "before");

    etcd.stop();
    // While etcd is away the last good routing keeps serving.
    wait_until("confd to notice etcd is gone", T, || {
        r.confd_log().contains("etcd unreachable").then_some(())
    })
    .unwrap();
    assert_eq!(r.get("before.example.com"), (200, "before".to_string()));
    etcd.start_again().unwrap();
    r.register(&etcd, SiteKind::Static, "after.example.com", two.port());
    r.wait_for("after.example.com", 200, "after");
    assert_eq!(r.get("before.example.com"), (200, "before".to_string()));
}

#[test]
fn compaction_does_not_disturb_routing() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("compacted");
    let r = Router::started(&etcd);
    // Many revisions, then a compaction: the watch itself keeps working
    // (it is past the compacted revision), and routing stays exact.
    for i in 0..20 {
        r.register(
            &etcd,
            SiteKind::Static,
            &format!("s{i}.example.com"),
            b.port(),
        );
    }
    etcd.compact().unwrap();
    r.register(&etcd, SiteKind::Static, "late.example.com", b.port());
    r.wait_for("late.example.com", 200, "compacted");
    r.wait_for("s0.example.com", 200, "compacted");
}

#[test]
fn confd_started_with_etcd_down_serves_the_last_written_routing_and_catches_up() {
    let mut etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    let one = Backend::start("kept");
    let two = Backend::start("new");
    r.register(&etcd, SiteKind::Static, "kept.example.com", one.port());
    r.start_confd();
    let status = r.confd.take().unwrap().stop();
    assert!(status.success(), "confd exit on SIGTERM: {status}");

    etcd.stop();
    // READY without etcd (haproxy.service Requires confd), on the old files.
    r.start_confd();
    r.start_haproxy();
    r.wait_for("kept.example.com", 200, "kept");
    assert!(
        r.confd_log().contains("etcd unreachable"),
        "{}",
        r.confd_log()
    );

    etcd.start_again().unwrap();
    r.register(&etcd, SiteKind::Static, "new.example.com", two.port());
    r.wait_for("new.example.com", 200, "new");
    assert_eq!(r.get("kept.example.com"), (200, "kept".to_string()));
}

#[test]
fn mass_removal_is_held_until_an_operator_accepts_it() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("site");
    // etcd emptied: every route would go at once.
    let r = held_router(&etcd, &b, Duration::from_secs(3600), Schema::root_prefix);
    for i in 0..6 {
        assert_eq!(r.get(&format!("m{i}.example.com")).0, 200, "m{i} dropped");
    }
    assert!(r.confd_log().contains("HOLDING"), "{}", r.confd_log());
    assert_eq!(r.state()["held"]["removed_routes"], 6);

    r.confd.as_ref().unwrap().signal("USR1");
    r.wait_for("m0.example.com", 404, "not found");
    // The state file is written after the apply that HAProxy already shows.
    r.wait_state(
        "the hold to leave the state file",
        "held",
        serde_json::Value::is_null,
    );
}

#[test]
fn held_mass_removal_is_applied_when_it_persists_past_the_hold_time() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("site");
    // All registrations at once (one etcd revision), as when leases are
    // lost together.
    let r = held_router(&etcd, &b, Duration::from_secs(2), Schema::services_prefix);
    assert_eq!(r.get("m0.example.com").0, 200);
    // Declared sites whose registrations all went: 503 after the hold.
    r.wait_for("m0.example.com", 503, "maintenance");
}

/// Six routed sites (m0 to m5), then every key under `removed` deleted
/// in one revision: a mass removal, held for `hold`.
fn held_router(
    etcd: &Etcd,
    backend: &Backend,
    hold: Duration,
    removed: fn(&Schema) -> String,
) -> Router {
    let mut r = Router::new(etcd);
    r.config.confd.hold = hold;
    r.write_config();
    for i in 0..6 {
        r.register(
            etcd,
            SiteKind::Static,
            &format!("m{i}.example.com"),
            backend.port(),
        );
    }
    r.start();
    r.wait_for("m5.example.com", 200, "site");
    etcd.delete_prefix(&removed(&r.schema)).unwrap();
    r.wait_state(
        "the hold to show in the state file",
        "held",
        serde_json::Value::is_object,
    );
    r
}

#[test]
fn a_new_site_is_routed_while_a_mass_removal_is_held() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("site");
    let r = held_router(
        &etcd,
        &b,
        Duration::from_secs(3600),
        Schema::services_prefix,
    );
    let new = Backend::start("new");
    r.register(&etcd, SiteKind::Static, "new.example.com", new.port());
    r.wait_for("new.example.com", 200, "new");
    // The removals are still held.
    for i in 0..6 {
        assert_eq!(r.get(&format!("m{i}.example.com")).0, 200, "m{i} dropped");
    }
    assert_eq!(r.state()["held"]["removed_routes"], 6);
    // And go once the operator accepts them; the new site stays.
    r.confd.as_ref().unwrap().signal("USR1");
    r.wait_for("m0.example.com", 503, "maintenance");
    assert_eq!(r.get("new.example.com"), (200, "new".to_string()));
}

#[test]
fn a_restart_of_confd_resumes_a_hold_without_a_new_hold_time() {
    let etcd = Etcd::start().unwrap();
    let b = Backend::start("site");
    let mut r = held_router(
        &etcd,
        &b,
        Duration::from_secs(3600),
        Schema::services_prefix,
    );
    let since = r.state()["held"]["since_unix"].as_u64().unwrap();
    // A second later, so a hold armed again would show another start.
    let unix = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    wait_until("the next second", T, || (unix() > since).then_some(())).unwrap();
    let state_path = r.layout.confd_state();
    // The state file as the stopping confd left it.
    assert!(r.confd.take().unwrap().stop().success());
    let before = std::fs::metadata(&state_path).unwrap().modified().unwrap();
    r.start_confd();
    wait_until("the state file written by the new confd", T, || {
        let m = std::fs::metadata(&state_path).ok()?.modified().ok()?;
        (m > before && r.state()["held"].is_object()).then_some(())
    })
    .unwrap();
    let log = r.confd_log();
    assert_eq!(
        r.state()["held"]["since_unix"].as_u64(),
        Some(since),
        "the restart armed the hold again:\n{log}"
    );
    assert_eq!(log.matches("HOLDING").count(), 1, "{log}");
    assert!(log.contains("still held since unix time"), "{log}");
    assert_eq!(r.get("m0.example.com").0, 200);
    // Accepted, then restarted: not held again.
    r.confd.as_ref().unwrap().signal("USR1");
    r.wait_for("m0.example.com", 503, "maintenance");
    assert!(r.confd.take().unwrap().stop().success());
    r.start_confd();
    r.wait_state(
        "no hold in the state file",
        "held",
        serde_json::Value::is_null,
    );
    assert_eq!(r.get("m0.example.com").0, 503);
}

#[test]
fn config_change_failing_haproxy_check_is_never_applied() {
    let etcd = Etcd::start().unwrap();
    let (mut r, _b) = Router::routed_from_start(&etcd, "s.example.com", "steady");
    let cfg_before = std::fs::read_to_string(r.layout.haproxy_cfg()).unwrap();
    let pid = r.haproxy().worker_pid().unwrap();

    r.config.haproxy.frontend_rules = vec!["http-request no-such-action".into()];
    r.apply_config();
    r.wait_state(
        "the rejection in the state file",
        "config_rejected",
        serde_json::Value::is_string,
    );
    assert!(r.confd_log().contains("config change NOT applied"));
    assert_eq!(
        std::fs::read_to_string(r.layout.haproxy_cfg()).unwrap(),
        cfg_before
    );
    assert_eq!(r.haproxy().worker_pid().unwrap(), pid);
    assert_eq!(r.get("s.example.com"), (200, "steady".to_string()));

    // A valid structural change is reloaded hitlessly and keeps routing.
    r.config.haproxy.frontend_rules = vec!["http-request set-header X-Hostyard 1".into()];
    r.apply_config();
    r.wait_new_worker("a reload", pid);
    r.wait_for("s.example.com", 200, "steady");
    r.wait_state(
        "the rejection to clear",
        "config_rejected",
        serde_json::Value::is_null,
    );
}

/// `hostyard-confd --once` on `r`'s config, which must succeed: the host
/// map it wrote.
fn run_once(r: &Router) -> String {
    hostyard_testsupport::output_ok(
        std::process::Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
            .arg("--config")
            .arg(&r.config_path)
            .arg("--once"),
    );
    std::fs::read_to_string(r.layout.hosts_map()).unwrap()
}

#[test]
fn once_applies_one_full_read_and_exits() {
    let etcd = Etcd::start().unwrap();
    let r = Router::new(&etcd);
    let b = Backend::start("once");
    r.register(&etcd, SiteKind::Static, "o.example.com", b.port());
    let map = run_once(&r);
    assert!(
        map.contains(&format!("o.example.com route/127.0.0.1/{}", b.port())),
        "{map}"
    );
    assert!(map.contains("www.o.example.com redirect/o.example.com"));
}

#[test]
fn certificate_bundles_in_etcd_stay_out_of_the_routing_reads() {
    // A fleet's `tls/certs/`: 1,000 bundles of 5 kB. Read with the routing
    // keys, one 1,000-key page would be 5 MB, past gRPC's 4 MB message
    // limit: neither confd nor `hostyard status` could read etcd at all.
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    r.config.fleet = FleetConfig {
        private_address: Some("127.0.0.2".parse().unwrap()),
        peer_port: hostyard_testsupport::free_port(),
        peers: vec![FleetPeer {
            name: "other".into(),
            address: "127.0.0.3".parse().unwrap(),
        }],
        ..util::fleet_tls("n1", "127.0.0.2")
    };
    r.write_config();
    let b = Backend::start("beside bundles");
    r.register(&etcd, SiteKind::Static, "o.example.com", b.port());
    // Each site owned by another server: a bundle of a site neither
    // declared nor owned would be withdrawn from etcd.
    let keys: Vec<(String, String)> = (0..1000)
        .map(|i| d(&format!("c{i}.example.com")))
        .map(|domain| (r.schema.tls_cert_key(&domain), r.schema.owner_key(&domain)))
        .collect();
    let bundle = "x".repeat(5000);
    etcd.with_client("put the bundles", |mut c| async move {
        // etcd takes at most 128 operations and 1.5 MB per request.
        for chunk in keys.chunks(50) {
            let ops: Vec<TxnOp> = chunk
                .iter()
                .flat_map(|(k, owner)| {
                    [
                        TxnOp::put(k.as_str(), bundle.as_str(), None),
                        TxnOp::put(owner.as_str(), "other", None),
                    ]
                })
                .collect();
            c.txn(Txn::new().and_then(ops)).await?;
        }
        Ok(())
    })
    .unwrap();
    let map = run_once(&r);
    assert!(
        map.contains(&format!("o.example.com route/127.0.0.1/{}", b.port())),
        "{map}"
    );
    let report =
        hostyard_routing::status::report(&r.config, &hostyard_routing::status::no_certificates)
            .unwrap();
    assert_eq!(report.etcd, "ok");
    assert_eq!(report.sites.len(), 1, "{}", report.table());

    // The fleet's certificate reader takes them all, in smaller pages
    // (and refuses each of these, which are not certificates).
    r.start();
    r.wait_for("o.example.com", 200, "beside bundles");
    let refused = |log: &str| {
        log.lines()
            .filter(|l| l.contains("refused the certificate the fleet's store holds"))
            .count()
    };
    wait_until("every bundle judged", T, || {
        (refused(&r.confd_log()) == 1000).then_some(())
    })
    .unwrap_or_else(|e| panic!("{e:#}: {} refused", refused(&r.confd_log())));
    assert!(
        !r.confd_log().contains("fleet certificates:"),
        "{}",
        r.confd_log()
    );
}

#[test]
fn bad_arguments_and_config_exit_2_with_one_line() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
        .arg("--config")
        .arg("/nonexistent/hostyard.yaml")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.starts_with("hostyard-confd: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
        .arg("--bogus")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let _ = Duration::ZERO;
}

#[test]
fn status_lists_every_site_from_etcd_and_haproxy_with_held_changes() {
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    r.config.confd.hold = Duration::from_secs(3600);
    r.write_config();
    let b = Backend::start("st");
    for i in 0..4 {
        r.register(
            &etcd,
            SiteKind::Static,
            &format!("r{i}.example.com"),
            b.port(),
        );
    }
    etcd.put(
        &r.schema.site_key(&d("down.example.com")),
        r#"{"kind":"wordpress"}"#,
    )
    .unwrap();
    r.put_service(&etcd, SiteKind::Static, &d("two.example.com"), b.port());
    r.put_service(&etcd, SiteKind::StaticGit, &d("two.example.com"), b.port());
    r.start();
    r.wait_for("r3.example.com", 200, "st");

    let report =
        hostyard_routing::status::report(&r.config, &hostyard_routing::status::no_certificates)
            .unwrap();
    assert_eq!(report.etcd, "ok");
    assert_eq!(report.haproxy, "running");
    let state_of = |rep: &hostyard_routing::status::Report, dom: &str| {
        rep.sites
            .iter()
            .find(|s| s.domain == dom)
            .map(|s| (s.state.clone(), s.kind.clone(), s.address.clone()))
            .unwrap_or_else(|| panic!("{dom} missing: {}", rep.table()))
    };
    let (st, kind, addr) = state_of(&report, "r0.example.com");
    assert_eq!((st.as_str(), kind.as_str()), ("routed", "static"));
    assert_eq!(addr, format!("127.0.0.1:{}", b.port()));
    assert_eq!(state_of(&report, "down.example.com").0, "down");
    assert_eq!(state_of(&report, "two.example.com").0, "conflict");
    assert!(report.needs_attention());
    let table = report.table();
    assert!(table.starts_with("DOMAIN"), "{table}");
    let json = serde_json::to_value(&report).unwrap();
    assert_eq!(json["sites"].as_array().unwrap().len(), report.sites.len());

    // All registrations at once (one etcd revision), as when leases are
    // lost together.
    etcd.delete_prefix(&r.schema.services_prefix()).unwrap();
    r.wait_state("the hold", "held", serde_json::Value::is_object);
    let report =
        hostyard_routing::status::report(&r.config, &hostyard_routing::status::no_certificates)
            .unwrap();
    assert_eq!(state_of(&report, "r0.example.com").0, "held");
    assert!(report.table().contains("HELD:"), "{}", report.table());
}

#[test]
fn systemd_notify_ready_watchdog_and_clean_stop() {
    let etcd = Etcd::start().unwrap();
    let r = Router::new(&etcd);
    // READY=1 is awaited by start_with_env itself.
    let confd =
        util::Confd::start_with_env(&r.config_path, r.dir.path(), &[("WATCHDOG_USEC", "200000")]);
    assert!(
        confd.wait_notify("WATCHDOG=1"),
        "no WATCHDOG=1 within {T:?}"
    );
    let status = confd.stop();
    assert!(status.success(), "{status}");
    assert!(r.confd_log().contains("stopping"));
}

#[test]
fn a_burst_of_changes_is_applied_together() {
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    // Long enough that ten puts fit in one window even on a loaded machine
    // (with 500 ms, puts slowed by two CI runs on 2 cores took 4 applies).
    r.config.confd.debounce = Duration::from_millis(2000);
    r.write_config();
    let b = Backend::start("burst");
    r.start();
    let before = r.confd_log().len();
    // Ten puts, one at a time: well inside one debounce window.
    for i in 0..5 {
        r.register(
            &etcd,
            SiteKind::Static,
            &format!("b{i}.example.com"),
            b.port(),
        );
    }
    for i in 0..5 {
        r.wait_for(&format!("b{i}.example.com"), 200, "burst");
    }
    let log = r.confd_log();
    let applies = log[before..]
        .lines()
        .filter(|l| l.starts_with("applied "))
        .count();
    assert!(
        (1..=3).contains(&applies),
        "{applies} applies for 10 puts:\n{log}"
    );
}

/// The attack this pins: `etcdctl put /services/static/evil.example
/// '{"ip":"127.0.0.1","port":"2379"}'` made etcd answer on
/// `Host: evil.example`, because loopback was allowed by default.
#[test]
fn by_default_registrations_route_only_into_the_sites_docker_network() {
    hostyard_testsupport::require_docker();
    let etcd = Etcd::start().unwrap();
    let net = hostyard_testsupport::Network::create("hyc-net").unwrap();
    let image = hostyard_testsupport::busybox_http_image().unwrap();
    let site = hostyard_testsupport::Container::run(&["--network", &net.name, &image]).unwrap();
    let site_ip = site.ip().unwrap();
    let gateway = hostyard_testsupport::docker(&[
        "network",
        "inspect",
        "--format",
        "{{range .IPAM.Config}}{{.Gateway}}{{end}}",
        &net.name,
    ])
    .unwrap();

    let mut r = Router::new(&etcd);
    r.config.confd.allowed_networks = Vec::new();
    r.config.docker.network = net.name.clone();
    r.write_config();
    r.start();
    let etcd_port = etcd.endpoint().rsplit(':').next().unwrap().to_string();
    for (domain, ip, port) in [
        ("evil.example.com", "127.0.0.1", etcd_port.as_str()),
        ("gateway.example.com", gateway.trim(), "80"),
        ("metadata.example.com", "169.254.169.254", "80"),
        ("elsewhere.example.com", "192.0.2.7", "80"),
    ] {
        etcd.put(
            &format!("/services/static/{domain}"),
            &format!(r#"{{"ip":"{ip}","port":"{port}"}}"#),
        )
        .unwrap();
    }
    etcd.put(
        "/services/static/site.example.com",
        &format!(r#"{{"ip":"{site_ip}","port":"80"}}"#),
    )
    .unwrap();
    r.wait_for(
        "site.example.com",
        200,
        hostyard_testsupport::BUSYBOX_HTTP_BODY.trim(),
    );
    for host in [
        "evil.example.com",
        "gateway.example.com",
        "metadata.example.com",
        "elsewhere.example.com",
    ] {
        assert_eq!(r.get(host).0, 503, "{host} was routed");
    }
    let log = r.confd_log();
    assert!(
        log.contains(
            "skipped /services/static/evil.example.com: address 127.0.0.1 is the server itself"
        ),
        "{log}"
    );
    assert_eq!(
        log.matches("skipped /services/static/evil.example.com")
            .count(),
        1,
        "{log}"
    );
    assert!(log.contains("is not on the sites' network"), "{log}");
    // And `hostyard status` shows why, from the same rules.
    let report =
        hostyard_routing::status::report(&r.config, &hostyard_routing::status::no_certificates)
            .unwrap();
    assert!(
        report
            .problems
            .iter()
            .any(|p| p.key == "/services/static/evil.example.com"
                && p.message.contains("the server itself")),
        "{:?}",
        report.problems
    );
}

/// A `docker` for confd that fails its next run as told by the file
/// `fail-once` next to it (`kill`: killed by SIGHUP, as a signal sent to
/// every process of confd's unit does; `exit`: Docker's daemon
/// unreachable), then runs the real one.
struct FlakyDocker {
    binary: std::path::PathBuf,
    fail_once: std::path::PathBuf,
}

impl FlakyDocker {
    fn new(dir: &std::path::Path) -> FlakyDocker {
        let real = std::env::var_os("PATH")
            .and_then(|p| {
                std::env::split_paths(&p)
                    .map(|d| d.join("docker"))
                    .find(|d| d.is_file())
            })
            .expect("docker on PATH");
        let binary = dir.join("flaky-docker");
        let fail_once = dir.join("fail-once");
        std::fs::write(
            &binary,
            format!(
                "#!/bin/sh\n\
                 if mode=$(cat '{f}' 2>/dev/null); then\n\
                 \x20 rm -f '{f}'\n\
                 \x20 [ \"$mode\" = kill ] && kill -HUP $$\n\
                 \x20 echo 'Cannot connect to the Docker daemon (test)' >&2\n\
                 \x20 exit 1\n\
                 fi\n\
                 exec '{real}' \"$@\"\n",
                f = fail_once.display(),
                real = real.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&binary, std::fs::Permissions::from_mode(0o755)).unwrap();
        FlakyDocker { binary, fail_once }
    }

    fn fail_next(&self, mode: &str) {
        std::fs::write(&self.fail_once, mode).unwrap();
    }

    fn failed(&self) -> bool {
        !self.fail_once.exists()
    }
}

/// A site container on its own network, routed by a confd that reads the
/// network through `docker`.
struct NetworkSite {
    net: hostyard_testsupport::Network,
    _site: hostyard_testsupport::Container,
    ip: std::net::IpAddr,
}

impl NetworkSite {
    fn start() -> NetworkSite {
        hostyard_testsupport::require_docker();
        let net = hostyard_testsupport::Network::create("hyc-net").unwrap();
        let image = hostyard_testsupport::busybox_http_image().unwrap();
        let site = hostyard_testsupport::Container::run(&["--network", &net.name, &image]).unwrap();
        let ip = site.ip().unwrap();
        NetworkSite {
            net,
            _site: site,
            ip,
        }
    }

    fn router(
        &self,
        etcd: &Etcd,
        docker: impl FnOnce(&std::path::Path) -> FlakyDocker,
    ) -> (Router, FlakyDocker) {
        let mut r = Router::new(etcd);
        let docker = docker(r.dir.path());
        r.config.confd.allowed_networks = Vec::new();
        r.config.docker.network = self.net.name.clone();
        r.config.docker.binary = docker.binary.clone();
        r.write_config();
        etcd.put(
            "/services/static/site.example.com",
            &format!(r#"{{"ip":"{}","port":"80"}}"#, self.ip),
        )
        .unwrap();
        (r, docker)
    }
}

const BUSYBOX: &str = hostyard_testsupport::BUSYBOX_HTTP_BODY;

/// `systemctl kill -s HUP haproxy-confd` (the old way deploy/ told confd
/// of new peers) also killed confd's `docker network inspect`: the site
/// went 503 for good. A failed read keeps the network confd knows.
#[test]
fn an_interrupted_read_of_the_sites_network_keeps_the_site_routed() {
    let site = NetworkSite::start();
    let etcd = Etcd::start().unwrap();
    let (mut r, docker) = site.router(&etcd, FlakyDocker::new);
    r.start();
    r.wait_for("site.example.com", 200, BUSYBOX.trim());
    let known = r.confd_log().matches("registrations allowed in").count();

    docker.fail_next("kill");
    r.confd.as_ref().unwrap().signal("HUP");
    wait_until("confd's read of the network", T, || {
        docker.failed().then_some(())
    })
    .unwrap();
    // Served throughout, until confd read the network again by itself
    // (no etcd event comes).
    let mut answers = Vec::new();
    let read_again = wait_until("the network read again", T, || {
        answers.push(r.get("site.example.com").0);
        (r.confd_log().matches("registrations allowed in").count() > known).then_some(())
    });
    let log = r.confd_log();
    assert!(
        answers.iter().all(|s| *s == 200),
        "answers after the SIGHUP: {answers:?}\n{log}"
    );
    read_again.unwrap_or_else(|e| panic!("{e:#}\n{log}"));
    assert!(
        log.contains("keeping the last known one") && log.contains("signal: 1 (SIGHUP)"),
        "{log}"
    );
    assert_eq!(r.get("site.example.com").0, 200);
}

/// Docker not answering at start: the site is routed once it answers, on
/// a timer, without an etcd event to trigger a new read.
#[test]
fn an_unknown_sites_network_is_read_again_without_an_etcd_event() {
    let site = NetworkSite::start();
    let etcd = Etcd::start().unwrap();
    let (mut r, docker) = site.router(&etcd, |dir| {
        let d = FlakyDocker::new(dir);
        d.fail_next("exit");
        d
    });
    r.start();
    assert!(docker.failed());
    let log = r.confd_log();
    assert!(
        log.contains("exit status: 1: Cannot connect to the Docker daemon (test)"),
        "the reason is logged:\n{log}"
    );
    r.wait_for("site.example.com", 200, BUSYBOX.trim());
}

/// The HTTP edge as the hardening review tried it: a trailing-dot host got
/// 404, HAProxy's own pages could not be told from a site's, there was no
/// access log, and no site had a cap on the requests it holds at once.
#[test]
fn trailing_dot_hosts_route_own_pages_are_marked_and_requests_are_logged() {
    let etcd = Etcd::start().unwrap();
    let good = Backend::start("good");
    let r = Router::started(&etcd);
    r.register(&etcd, SiteKind::Static, "good.example.com", good.port());
    r.wait_for("good.example.com", 200, "good");
    for host in ["good.example.com.", "GOOD.example.com.:80"] {
        assert_eq!(r.get(host), (200, "good".to_string()), "{host}");
    }
    // HAProxy's pages say so; a site's answer does not.
    let mark = |host: &str| {
        let resp = http_get_with_headers(r.port, host, "/", &[]).unwrap();
        (
            resp.status,
            resp.header("x-hostyard-page").map(str::to_string),
        )
    };
    assert_eq!(mark("unknown.example.org"), (404, Some("unknown".into())));
    etcd.put("/sites/down.example.com", r#"{"kind":"static"}"#)
        .unwrap();
    r.wait_for("down.example.com", 503, "");
    assert_eq!(mark("down.example.com"), (503, Some("down".into())));
    assert_eq!(mark("good.example.com"), (200, None));

    // One line per request in the log, the path without its query string.
    let resp =
        http_get_with_headers(r.port, "good.example.com", "/page?token=s3cr3t-tok", &[]).unwrap();
    assert_eq!(resp.status, 200);
    let log_path = r.haproxy().log_path().to_path_buf();
    wait_until("the access log line", T, || {
        let log = std::fs::read_to_string(&log_path).ok()?;
        log.lines()
            .find(|l| l.contains("good.example.com GET \"/page\" 200"))
            .map(str::to_string)
    })
    .unwrap();
    let log = std::fs::read_to_string(&log_path).unwrap();
    assert!(
        !log.contains("s3cr3t-tok"),
        "a query string reached the log"
    );
}

/// 64 clients that send their headers one byte at a time hold site A's
/// connections; site B keeps answering, and HAProxy cuts the slow ones at
/// `timeout http-request` (10 s). A site over `haproxy.site_maxconn`
/// requests at once gets a marked 503 for the extra ones.
#[test]
fn slow_clients_and_a_flooded_site_leave_other_sites_answering() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    let etcd = Etcd::start().unwrap();
    let mut r = Router::new(&etcd);
    r.config.haproxy.site_maxconn = 4;
    r.write_config();
    let b = Backend::start("b");
    let hung = Backend::hung();
    r.start();
    r.register(&etcd, SiteKind::Static, "b.example.com", b.port());
    r.register(&etcd, SiteKind::Static, "hung.example.com", hung.port());
    r.wait_for("b.example.com", 200, "b");

    // Slow-loris: a request line and one header byte, then nothing more.
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..64)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: hung.example.com\r\nX")
                .unwrap();
            s
        })
        .collect();
    let mut times = Vec::new();
    for _ in 0..20 {
        let t = Instant::now();
        assert_eq!(r.get("b.example.com"), (200, "b".to_string()));
        times.push(t.elapsed());
    }
    times.sort();
    eprintln!(
        "b.example.com p50 {:?} while 64 slow clients wait",
        times[10]
    );
    // Each slow client is answered 408 or closed within the timeout.
    for s in &mut slow {
        s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf).unwrap_or(0);
        let head = String::from_utf8_lossy(&buf[..n]).to_string();
        assert!(n == 0 || head.starts_with("HTTP/1.1 408"), "{head}");
    }
    let cut_after = started.elapsed();
    eprintln!("slow clients cut after {cut_after:?}");
    assert!(cut_after < Duration::from_secs(16), "{cut_after:?}");

    // A flooded site: 4 requests in flight (its backend never answers),
    // the 5th is refused at once with HAProxy's mark; b still answers.
    let mut held: Vec<TcpStream> = (0..4)
        .map(|_| {
            let mut s = TcpStream::connect(("127.0.0.1", r.port)).unwrap();
            s.write_all(b"GET / HTTP/1.1\r\nHost: hung.example.com\r\n\r\n")
                .unwrap();
            s
        })
        .collect();
    let busy = wait_until("a request over site_maxconn refused", T, || {
        let resp = http_get_with_headers(r.port, "hung.example.com", "/", &[]).ok()?;
        (resp.status == 503).then_some(resp)
    })
    .unwrap();
    assert_eq!(busy.header("x-hostyard-page"), Some("busy"));
    assert_eq!(r.get("b.example.com"), (200, "b".to_string()));
    held.clear();
}

/// A config with two problems, then SIGHUP: confd keeps the one it runs
/// with, logs each problem on a line of its own (each at the error
/// priority in the journal), and routes on.
#[test]
fn a_bad_config_on_sighup_is_refused_naming_every_problem() {
    let etcd = Etcd::start().unwrap();
    let (r, _one) = Router::routed(&etcd, "a.example.com", "one");

    let good = std::fs::read_to_string(&r.config_path).unwrap();
    let bad = good.replace("keep_trees: 3", "keep_trees: 0").replace(
        &format!("https_port: {}", r.config.haproxy.https_port),
        &format!("https_port: {}", r.config.haproxy.http_port),
    );
    assert_ne!(bad, good, "the test's edits found nothing to change");
    std::fs::write(&r.config_path, bad).unwrap();
    r.confd.as_ref().unwrap().signal("HUP");
    let logged = wait_until("both problems logged", T, || {
        let log = r.confd_log();
        let lines: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("SIGHUP: keeping the current config"))
            .collect();
        (lines.iter().any(|l| l.contains("git.keep_trees"))
            && lines.iter().any(|l| l.contains("haproxy.https_port")))
        .then_some(())
    });
    assert!(logged.is_ok(), "{}", r.confd_log());
    let two = Backend::start("two");
    r.put_service(&etcd, SiteKind::Static, &d("a.example.com"), two.port());
    r.wait_for("a.example.com", 200, "two");
}
