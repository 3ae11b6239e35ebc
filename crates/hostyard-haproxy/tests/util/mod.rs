//! What the HAProxy tests share: a node's HAProxy files written as confd
//! writes them, and HAProxy started on them.

use hostyard_config::NodeConfig;
use hostyard_core::Layout;
use hostyard_haproxy::{render_cfg, render_map, write_peer_tls, HostMap, FILE, PAGE_404, PAGE_503};
use hostyard_testsupport::{free_port, Haproxy};

/// A node config for a test's HAProxy: its data under a new temp dir
/// (under /tmp: HAProxy's socket paths must stay short; named `prefix`),
/// listening on 127.0.0.1 on two free ports. (Each test file compiles this
/// module; the peers test builds its own fleet configs.)
#[allow(dead_code)]
pub fn loopback_config(prefix: &str) -> (tempfile::TempDir, NodeConfig) {
    let dir = tempfile::Builder::new()
        .prefix(prefix)
        .tempdir_in("/tmp")
        .unwrap();
    let mut config = NodeConfig {
        data_root: dir.path().join("data"),
        ..NodeConfig::default()
    };
    config.haproxy.bind_address = "127.0.0.1".parse().unwrap();
    config.haproxy.http_port = free_port();
    config.haproxy.https_port = free_port();
    (dir, config)
}

/// Writes `map`, the base TLS files, the error pages, the fleet's peer
/// files and haproxy.cfg for `config`, and starts HAProxy on them; also
/// whether the peer files were new.
pub fn start_haproxy(config: &NodeConfig, map: &HostMap) -> (Haproxy, bool) {
    let layout = Layout::new(&config.data_root);
    FILE.write(&layout.hosts_map(), render_map(map, 1).as_bytes())
        .unwrap();
    hostyard_tls::ensure_base(&layout).unwrap();
    FILE.write(&layout.haproxy_error_page(404), PAGE_404.as_bytes())
        .unwrap();
    FILE.write(&layout.haproxy_error_page(503), PAGE_503.as_bytes())
        .unwrap();
    let peer_files_new = write_peer_tls(config).unwrap();
    let cfg = layout.haproxy_cfg();
    FILE.write(&cfg, render_cfg(config).unwrap().as_bytes())
        .unwrap();
    (Haproxy::start(&cfg).unwrap(), peer_files_new)
}
