//! haproxy.cfg: rendered from the node config (askama, `unit-templates/`)
//! and checked with `haproxy -c` before it is used; the error pages it
//! names; how every file HAProxy reads is written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use askama::Template;
use hostyard_core::{Layout, NodeConfig};
use hostyard_fs::AtomicWrite;

pub const PAGE_404: &str = include_str!("../../../unit-templates/haproxy/404.html");
pub const PAGE_503: &str = include_str!("../../../unit-templates/haproxy/503.html");

#[derive(Template)]
#[template(path = "haproxy.cfg")]
struct HaproxyCfg {
    admin_socket: String,
    hosts_map: String,
    page_404: String,
    page_503: String,
    bind: String,
    bind_https: String,
    default_cert: String,
    crt_list: String,
    https_map: String,
    acme_map: String,
    https_port_suffix: String,
    frontend_rules: Vec<String>,
    maxconn: u32,
    site_maxconn: u32,
    /// The public frontend's maxconn: the global one less the reserve.
    public_maxconn: u32,
    source_maxconn: u32,
    source_conn_rate: u32,
    source_req_rate: u32,
    login_rate: u32,
    /// Addresses and networks no per-source limit applies to,
    /// space-separated; `None` when there are none.
    unlimited_sources: Option<String>,
    max_ssl_rate: u32,
    handshake_timeout_secs: u32,
    /// The peer frontend's address, in a fleet.
    peer_bind: Option<String>,
    /// This server's private address, the source of forwarded requests.
    peer_source: Option<String>,
    /// The peers' addresses, space-separated; `None` when there are none.
    peer_sources: Option<String>,
}

/// Renders haproxy.cfg from the node config: a pure function, so a change
/// of the file means a change of the structure.
pub fn render_cfg(config: &NodeConfig) -> anyhow::Result<String> {
    let layout = Layout::new(&config.data_root);
    let path = |p: PathBuf| p.display().to_string();
    let hp = &config.haproxy;
    let cfg = HaproxyCfg {
        admin_socket: path(layout.haproxy_admin_socket()),
        hosts_map: path(layout.hosts_map()),
        page_404: path(layout.haproxy_error_page(404)),
        page_503: path(layout.haproxy_error_page(503)),
        // HAProxy splits an IPv6 bind address from its port at the last colon.
        bind: format!("{}:{}", hp.bind_address, hp.http_port),
        bind_https: format!("{}:{}", hp.bind_address, hp.https_port),
        default_cert: path(layout.haproxy_default_cert()),
        crt_list: path(layout.haproxy_crt_list()),
        https_map: path(layout.https_map()),
        acme_map: path(layout.acme_map()),
        https_port_suffix: match hp.https_port {
            443 => String::new(),
            port => format!(":{port}"),
        },
        frontend_rules: hp.frontend_rules.clone(),
        maxconn: hp.maxconn,
        site_maxconn: hp.site_maxconn,
        public_maxconn: hp.public_maxconn(),
        source_maxconn: hp.source_maxconn,
        source_conn_rate: hp.source_conn_rate,
        source_req_rate: hp.source_req_rate,
        login_rate: hp.login_rate,
        unlimited_sources: (!hp.unlimited_sources.is_empty()).then(|| {
            hp.unlimited_sources
                .iter()
                .map(|n| n.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }),
        max_ssl_rate: hp.max_ssl_rate,
        handshake_timeout_secs: hp.handshake_timeout_secs,
        peer_bind: config
            .fleet
            .private_address
            .map(|a| format!("{a}:{}", config.fleet.peer_port)),
        peer_source: config.fleet.private_address.map(|a| a.to_string()),
        peer_sources: (!config.fleet.peers.is_empty()).then(|| {
            config
                .fleet
                .peers
                .iter()
                .map(|p| p.address.to_string())
                .collect::<Vec<_>>()
                .join(" ")
        }),
    };
    let mut text = cfg.render().context("rendering haproxy.cfg")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Runs `haproxy -c -f FILE`; the error carries HAProxy's own explanation.
pub fn check_cfg(binary: &Path, cfg: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(binary)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (set haproxy.check_binary; is the haproxy package installed?)",
                binary.display()
            )
        })?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("[ALERT]") || l.contains("error"))
            .collect();
        bail!(
            "haproxy -c rejected {}: {}",
            cfg.display(),
            if lines.is_empty() {
                format!("{} {}", out.status, text.trim())
            } else {
                lines.join(" | ")
            }
        );
    }
    Ok(())
}

/// How confd writes HAProxy's files (config, map, error pages) and its
/// state file: atomically, so HAProxy (or a reader) sees the old file or the
/// new one, never half; world-readable, as HAProxy may run as another user
/// in its container (no secrets in them); not synced, so an fsync (tens of
/// ms on a busy disk) never delays routing: [`hostyard_fs::sync_file`]
/// follows once the change is live.
pub const FILE: AtomicWrite = AtomicWrite::new(0o644).unsynced();

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_names_every_runtime_path_and_passes_haproxy_check() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            data_root: dir.path().to_path_buf(),
            ..NodeConfig::default()
        };
        let layout = Layout::new(dir.path());
        let text = render_cfg(&config).unwrap();
        for p in [
            layout.haproxy_admin_socket(),
            layout.hosts_map(),
            layout.haproxy_error_page(404),
        ] {
            assert!(text.contains(&p.display().to_string()), "{p:?}");
        }
        assert!(text.contains("level admin expose-fd listeners"));
        assert!(text.contains("bind 0.0.0.0:80\n"));
        assert!(text.contains("bind 0.0.0.0:443 ssl crt "));
        assert!(text.contains("alpn h2,http/1.1"));
        FILE.write(&layout.hosts_map(), b"").unwrap();
        hostyard_tls::ensure_base(&layout).unwrap();
        FILE.write(&layout.haproxy_error_page(404), PAGE_404.as_bytes())
            .unwrap();
        FILE.write(&layout.haproxy_error_page(503), PAGE_503.as_bytes())
            .unwrap();
        FILE.write(&layout.haproxy_cfg(), text.as_bytes()).unwrap();
        // The HAProxy servers run (3.0), not whatever the host has.
        let haproxy = hostyard_testsupport::haproxy_binary().unwrap();
        check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap();
        // In a fleet: the peer frontend on the private address, PROXY only,
        // from the peers only (none listed yet: from nobody).
        for (peers, rule) in [
            (
                vec![("n2", "10.0.0.12"), ("n3", "10.0.0.13")],
                "tcp-request connection reject unless { src 10.0.0.12 10.0.0.13 }\n",
            ),
            (vec![], "tcp-request connection reject\n"),
        ] {
            let fleet = NodeConfig {
                node_name: "n1".into(),
                fleet: hostyard_core::config::FleetConfig {
                    private_address: Some("127.0.0.1".parse().unwrap()),
                    peers: peers
                        .iter()
                        .map(|(n, a)| hostyard_core::config::FleetPeer {
                            name: n.to_string(),
                            address: a.parse().unwrap(),
                        })
                        .collect(),
                    ..Default::default()
                },
                ..config.clone()
            };
            let text = render_cfg(&fleet).unwrap();
            assert!(
                text.contains("bind 127.0.0.1:8405 accept-proxy\n"),
                "{text}"
            );
            assert!(text.contains(rule), "{text}");
            assert!(text.contains("send-proxy-v2 source 127.0.0.1\n"), "{text}");
            FILE.write(&layout.haproxy_cfg(), text.as_bytes()).unwrap();
            check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap();
        }
        assert!(!render_cfg(&config).unwrap().contains("frontend peer"));
        let bad = NodeConfig {
            haproxy: hostyard_core::config::HaproxyConfig {
                frontend_rules: vec!["http-request no-such-action".into()],
                ..config.haproxy.clone()
            },
            ..config.clone()
        };
        FILE.write(&layout.haproxy_cfg(), render_cfg(&bad).unwrap().as_bytes())
            .unwrap();
        let err = check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap_err();
        assert!(err.to_string().contains("no-such-action"), "{err}");
    }
}
