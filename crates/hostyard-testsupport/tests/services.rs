//! The harness against the real services it starts.

use std::path::PathBuf;
use std::time::Duration;

use hostyard_testsupport::{
    free_port, haproxy_check, http_get, process_alive, wait_until, Backend, Etcd, Haproxy,
    SocketDir,
};

#[test]
fn etcd_puts_and_gets_values_and_prefixes() {
    let etcd = Etcd::start().expect("etcd starts");
    assert!(etcd.endpoint().starts_with("http://127.0.0.1:"));
    assert_eq!(etcd.get("/t/a").expect("get"), None);
    etcd.put("/t/a", "1").expect("put");
    etcd.put("/t/b", "2").expect("put");
    etcd.put("/u/c", "3").expect("put");
    assert_eq!(etcd.get("/t/a").expect("get").as_deref(), Some("1"));
    assert_eq!(
        etcd.get_prefix("/t/").expect("get prefix"),
        vec![("/t/a".into(), "1".into()), ("/t/b".into(), "2".into())]
    );
    assert_eq!(etcd.lease_of("/t/a").expect("lease_of"), None);
    etcd.delete("/t/a").expect("delete");
    assert_eq!(etcd.get("/t/a").expect("get"), None);
    etcd.delete_prefix("/t/").expect("delete prefix");
    assert!(etcd.get_prefix("/t/").expect("get prefix").is_empty());
    assert_eq!(etcd.get("/u/c").expect("get").as_deref(), Some("3"));
    etcd.compact().expect("compact");
}

#[test]
fn etcd_key_with_lease_disappears_when_the_lease_expires() {
    let etcd = Etcd::start().expect("etcd starts");
    let lease = etcd
        .put_with_lease("/leased", "x", 1)
        .expect("put with lease");
    assert_eq!(etcd.lease_of("/leased").expect("lease_of"), Some(lease));
    // etcd rounds a 1 s TTL up to its minimum (~2 s) and checks expiry
    // every 500 ms.
    wait_until("the leased key to expire", Duration::from_secs(10), || {
        etcd.get("/leased").ok().flatten().is_none().then_some(())
    })
    .expect("lease expires");
}

#[test]
fn etcd_restart_keeps_data_and_endpoint() {
    let mut etcd = Etcd::start().expect("etcd starts");
    let endpoint = etcd.endpoint();
    etcd.put("/persist", "yes").expect("put");
    etcd.stop();
    assert!(
        etcd.get("/persist").is_err(),
        "a stopped etcd cannot answer"
    );
    etcd.start_again().expect("etcd starts again");
    assert_eq!(etcd.endpoint(), endpoint);
    assert_eq!(etcd.get("/persist").expect("get").as_deref(), Some("yes"));
}

#[test]
fn etcd_process_is_gone_after_drop() {
    let etcd = Etcd::start().expect("etcd starts");
    let pid = etcd.pid();
    let dir = etcd.dir().to_owned();
    drop(etcd);
    assert!(!process_alive(pid), "etcd {pid} still runs");
    assert!(!dir.exists(), "{} still exists", dir.display());
}

/// A config routing every request to `backend`, with the admin socket in
/// `sockets`.
/// A started HAProxy routing every host on `port` to a backend answering
/// "one", and its config file.
fn haproxy_to_one() -> (SocketDir, PathBuf, u16, Backend, Haproxy) {
    let sockets = SocketDir::new().expect("socket dir");
    let backend = Backend::start("one");
    let port = free_port();
    let cfg = sockets.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(&sockets, port, &backend)).expect("write");
    let haproxy = Haproxy::start(&cfg).expect("haproxy starts");
    (sockets, cfg, port, backend, haproxy)
}

fn haproxy_config(sockets: &SocketDir, port: u16, backend: &Backend) -> String {
    format!(
        "global\n\
         \x20   stats socket {admin} mode 600 level admin\n\
         defaults\n\
         \x20   mode http\n\
         \x20   timeout connect 2s\n\
         \x20   timeout client 5s\n\
         \x20   timeout server 5s\n\
         frontend web\n\
         \x20   bind 127.0.0.1:{port}\n\
         \x20   default_backend sites\n\
         backend sites\n\
         \x20   server s1 {addr}\n",
        admin = sockets.admin_socket_path().display(),
        addr = backend.addr(),
    )
}

#[test]
fn haproxy_check_accepts_a_good_config_and_rejects_a_broken_one() {
    let sockets = SocketDir::new().expect("socket dir");
    let backend = Backend::start("one");
    let good = sockets.path().join("good.cfg");
    std::fs::write(&good, haproxy_config(&sockets, free_port(), &backend)).expect("write");
    haproxy_check(&good).expect("good config passes");

    let broken = sockets.path().join("broken.cfg");
    std::fs::write(
        &broken,
        "frontend web\n    bind 127.0.0.1:1\n    frobnicate now\n",
    )
    .expect("write");
    let err = haproxy_check(&broken).expect_err("broken config fails");
    assert!(
        err.contains("frobnicate"),
        "HAProxy's message names the bad keyword: {err}"
    );
}

#[test]
fn haproxy_routes_to_a_backend_answers_show_info_and_keeps_serving_across_reload() {
    let (sockets, cfg, port, _backend, haproxy) = haproxy_to_one();

    let info = haproxy.runtime("show info").expect("show info");
    assert!(info.contains("Name: HAProxy"), "{info}");
    assert!(haproxy
        .master("show proc")
        .expect("show proc")
        .contains("master"));
    assert_eq!(
        http_get(port, "example.org", "/").expect("GET"),
        (200, "one".into())
    );

    // A reload reads the config file again: point it at another backend.
    let other = Backend::start("two");
    std::fs::write(&cfg, haproxy_config(&sockets, port, &other)).expect("write");
    let worker = haproxy.worker_pid().expect("worker pid");
    haproxy.reload().expect("reload");
    assert_ne!(haproxy.worker_pid().expect("worker pid"), worker);
    assert_eq!(
        http_get(port, "example.org", "/").expect("GET"),
        (200, "two".into())
    );
    assert!(haproxy
        .runtime("show info")
        .expect("show info")
        .contains("Name: HAProxy"));
}

#[test]
fn haproxy_processes_are_gone_after_drop() {
    let (_sockets, _cfg, port, _backend, haproxy) = haproxy_to_one();
    let master = haproxy.pid();
    let worker = haproxy.worker_pid().expect("worker pid");
    drop(haproxy);
    for pid in [master, worker] {
        // SIGKILL reaches the worker asynchronously.
        wait_until("haproxy to exit", Duration::from_secs(5), || {
            (!process_alive(pid)).then_some(())
        })
        .expect("haproxy processes exit");
    }
    assert!(
        http_get(port, "example.org", "/").is_err(),
        "port {port} still answers"
    );
}

#[test]
fn backend_answers_with_its_body_and_a_hung_backend_never_answers() {
    let mut backend = Backend::start("first");
    assert_eq!(
        http_get(backend.port(), "x", "/").expect("GET"),
        (200, "first".into())
    );
    backend.set_body("second");
    assert_eq!(
        http_get(backend.port(), "x", "/a").expect("GET"),
        (200, "second".into())
    );
    assert_eq!(backend.requests(), 2);
    backend.stop();
    assert!(
        http_get(backend.port(), "x", "/").is_err(),
        "a stopped backend refuses"
    );

    let hung = Backend::hung();
    assert!(
        http_get(hung.port(), "x", "/").is_err(),
        "a hung backend times out"
    );
    assert_eq!(hung.requests(), 1);
}

#[test]
fn haproxy_start_failure_names_the_log_and_quotes_haproxy() {
    let sockets = SocketDir::new().expect("socket dir");
    let backend = Backend::start("one");
    // Hold the port so HAProxy's bind fails after the config check passed.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let cfg = sockets.path().join("haproxy.cfg");
    std::fs::write(&cfg, haproxy_config(&sockets, port, &backend)).expect("write");
    let err = match Haproxy::start(&cfg) {
        Ok(_) => panic!("haproxy started on a taken port"),
        Err(e) => format!("{e:#}"),
    };
    assert!(err.contains("haproxy.log"), "{err}");
    assert!(
        err.contains("annot bind"),
        "HAProxy's own message is quoted: {err}"
    );
    // The dir is kept so the named log can be read.
    let log = err
        .split_whitespace()
        .find(|w| w.ends_with("haproxy.log"))
        .expect("log path in message");
    assert!(std::path::Path::new(log).exists(), "{log} was removed");
    let _ = std::fs::remove_dir_all(std::path::Path::new(log).parent().expect("dir"));
}
