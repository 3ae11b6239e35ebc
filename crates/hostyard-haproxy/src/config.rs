//! haproxy.cfg: rendered from the node config (askama, `unit-templates/`)
//! and checked with `haproxy -c` before it is used; the error pages it
//! names; how every file HAProxy reads is written.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use askama::Template;
use hostyard_config::NodeConfig;
use hostyard_core::Layout;
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
    /// The IPv6 listening beside an IPv4 `bind`, if any.
    bind_v6: Option<String>,
    bind_https_v6: Option<String>,
    default_cert: String,
    crt_list: String,
    https_map: String,
    acme_map: String,
    redirect_exact_map: String,
    redirect_prefix_map: String,
    canonical_map: String,
    basic_auth_map: String,
    headers_map: String,
    security_headers: Vec<SecurityHeaderRule>,
    php_limits_map: String,
    https_port_suffix: String,
    http_port_suffix: String,
    hook_path: &'static str,
    hook_port: u16,
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
    /// The peers' certificate names (a regular expression); `None` when
    /// there are none.
    peer_cn_regex: Option<String>,
    /// This server's certificate for its peers, key included.
    peer_cert: String,
    /// The fleet CA.
    peer_ca: String,
}

/// One `http-response set-header` rule of the security headers presets.
struct SecurityHeaderRule {
    name: &'static str,
    value: &'static str,
    /// The presets that add it, space-separated (`-m str` takes any).
    presets: &'static str,
    https_only: bool,
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
        bind_v6: hp.extra_bind_v6().map(|a| format!("{a}:{}", hp.http_port)),
        bind_https_v6: hp.extra_bind_v6().map(|a| format!("{a}:{}", hp.https_port)),
        default_cert: path(layout.haproxy_default_cert()),
        crt_list: path(layout.haproxy_crt_list()),
        https_map: path(layout.https_map()),
        acme_map: path(layout.acme_map()),
        redirect_exact_map: path(layout.redirect_exact_map()),
        redirect_prefix_map: path(layout.redirect_prefix_map()),
        canonical_map: path(layout.canonical_map()),
        basic_auth_map: path(layout.basic_auth_map()),
        headers_map: path(layout.headers_map()),
        security_headers: hostyard_core::edge::SECURITY_HEADERS
            .iter()
            .map(|h| SecurityHeaderRule {
                name: h.name,
                value: h.value,
                presets: if h.strict_only {
                    "strict"
                } else {
                    "basic strict"
                },
                https_only: h.https_only,
            })
            .collect(),
        php_limits_map: path(layout.php_limits_map()),
        https_port_suffix: match hp.https_port {
            443 => String::new(),
            port => format!(":{port}"),
        },
        http_port_suffix: match hp.http_port {
            80 => String::new(),
            port => format!(":{port}"),
        },
        hook_path: hostyard_core::HOOK_PATH,
        hook_port: config.git.hook_port,
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
        peer_cn_regex: config.fleet.peer_cn_regex(),
        peer_cert: path(layout.haproxy_peer_cert()),
        peer_ca: path(layout.haproxy_peer_ca()),
    };
    let mut text = cfg.render().context("rendering haproxy.cfg")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Puts this server's certificate with its key, and the fleet CA, where
/// haproxy.cfg names them (HAProxy reads a certificate and its key from
/// one file, and sees only the runtime dir in its container): in a
/// directory and files only their owner reads, like the site keys. Returns
/// whether a file changed (HAProxy reads them at a reload only). A single
/// server (no `fleet.private_address`) has none: nothing is written.
pub fn write_peer_tls(config: &NodeConfig) -> anyhow::Result<bool> {
    let Some(pem) = config.fleet.tls_pem().map_err(anyhow::Error::msg)? else {
        return Ok(false);
    };
    let layout = Layout::new(&config.data_root);
    let dir = layout.haproxy_peer_dir();
    hostyard_fs::private_dir(&dir)?;
    let mut changed = false;
    for (path, text) in [
        (layout.haproxy_peer_cert(), &pem.cert_and_key),
        (layout.haproxy_peer_ca(), &pem.ca),
    ] {
        if std::fs::read(&path).ok().as_ref() != Some(text) {
            PEER_FILE.write(&path, text)?;
            changed = true;
        }
    }
    Ok(changed)
}

/// The peer TLS files: the key is in one of them.
const PEER_FILE: AtomicWrite = AtomicWrite::new(0o600);

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

/// A map that holds secrets' hashes (the sites' basic auth): as [`FILE`],
/// but for root only. HAProxy reads its maps as root, when it starts.
pub const SECRET_FILE: AtomicWrite = AtomicWrite::new(0o600).unsynced();

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
        ]
        .into_iter()
        .chain(layout.edge_maps())
        {
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
        // In a fleet: the peer frontend on the private address, PROXY and
        // mutual TLS only, from the peers only (none listed yet: from
        // nobody), with a peer's certificate only.
        let ca = hostyard_testsupport::FleetCa::new(dir.path(), "fleet").unwrap();
        let n1 = ca.issue_server("n1", "127.0.0.1".parse().unwrap()).unwrap();
        for (peers, rules) in [
            (
                vec![("n2", "10.0.0.12"), ("n3", "10.0.0.13")],
                vec![
                    "tcp-request connection reject unless { src 10.0.0.12 10.0.0.13 }\n",
                    "tcp-request session reject unless { ssl_c_s_dn(CN) -m reg '^hostyard-(n2|n3)-[0-9a-f]+$' }\n",
                ],
            ),
            (vec![], vec!["tcp-request connection reject\n"]),
        ] {
            let fleet = NodeConfig {
                node_name: "n1".into(),
                fleet: hostyard_config::FleetConfig {
                    private_address: Some("127.0.0.1".parse().unwrap()),
                    peers: peers
                        .iter()
                        .map(|(n, a)| hostyard_config::FleetPeer {
                            name: n.to_string(),
                            address: a.parse().unwrap(),
                        })
                        .collect(),
                    ca_file: ca.ca_file(),
                    cert_file: n1.cert_file.clone(),
                    key_file: n1.key_file.clone(),
                    ..Default::default()
                },
                ..config.clone()
            };
            let text = render_cfg(&fleet).unwrap();
            let (cert, ca_file) = (
                layout.haproxy_peer_cert().display().to_string(),
                layout.haproxy_peer_ca().display().to_string(),
            );
            assert!(
                text.contains(&format!(
                    "bind 127.0.0.1:8405 accept-proxy ssl crt {cert} ca-file {ca_file} verify required\n"
                )),
                "{text}"
            );
            for rule in rules {
                assert!(text.contains(rule), "{text}");
            }
            assert!(
                text.contains(&format!(
                    "send-proxy-v2 source 127.0.0.1 ssl crt {cert} ca-file {ca_file} verify required\n"
                )),
                "{text}"
            );
            write_peer_tls(&fleet).unwrap();
            FILE.write(&layout.haproxy_cfg(), text.as_bytes()).unwrap();
            check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap();
        }
        // The key is the owner's alone, in a directory that is too.
        use std::os::unix::fs::PermissionsExt;
        for (p, mode) in [
            (layout.haproxy_peer_dir(), 0o700),
            (layout.haproxy_peer_cert(), 0o600),
        ] {
            let m = std::fs::metadata(&p).unwrap().permissions().mode() & 0o777;
            assert_eq!(m, mode, "{p:?}");
        }
        // A single server: no peer frontend, no TLS toward peers.
        let single = render_cfg(&config).unwrap();
        assert!(!single.contains("frontend peer"));
        assert!(single.contains("    server peer 0.0.0.0:0 send-proxy-v2\n"));
        assert!(!write_peer_tls(&config).unwrap());
        let bad = NodeConfig {
            haproxy: hostyard_config::HaproxyConfig {
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
