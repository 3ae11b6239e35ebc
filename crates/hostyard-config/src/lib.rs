//! hostyard-config: the node config, `/etc/hostyard/hostyard.yaml`.
//!
//! Every field has a default, so an empty file (or none) is a working
//! single-server config. Unknown fields are refused: a typo must not silently
//! fall back to a default on a production server. Errors carry the file,
//! line and column that the YAML parser (yaml_serde) reports.
//!
//! Each section has a module of its own; [`NodeConfig::load`] is the one
//! place that reads files, [`NodeConfig::parse`] and the validation work on
//! text.

use std::path::{Path, PathBuf};

use hostyard_core::Layout;
use serde::{Deserialize, Serialize};

pub mod backup;
pub mod confd;
pub mod discovery;
pub mod docker;
pub mod etcd;
pub mod fleet;
pub mod git;
pub mod haproxy;
pub mod images;
pub mod import;
pub mod layers;
pub mod limits;
mod load;
pub mod mail;
mod parse;
pub mod timespan;
pub mod tls;
mod validate;
pub mod wordpress;

#[cfg(test)]
mod tests;

pub use backup::{BackupConfig, Schedule};
pub use confd::ConfdConfig;
pub use discovery::DiscoveryConfig;
pub use docker::DockerConfig;
pub use etcd::{EtcdConfig, EtcdTlsPem};
pub use fleet::{FleetConfig, FleetPeer, PeerTlsPem};
pub use git::GitConfig;
pub use haproxy::{BindV6, HaproxyConfig};
pub use images::{Images, HAPROXY_IMAGE_KIND, MYSQL_IMAGE_KIND, POSTFIX_IMAGE_KIND};
pub use import::ImportConfig;
pub use limits::Limits;
pub use mail::MailConfig;
pub use parse::{ConfigError, FileProblem};
pub use timespan::{BadTimeSpan, TimeSpan};
pub use tls::{AcmeConfig, TlsConfig};
pub use validate::{is_server_name, Problem};
pub use wordpress::WordpressConfig;

/// Where the node config lives on a server.
pub const DEFAULT_CONFIG_PATH: &str = "/etc/hostyard/hostyard.yaml";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct NodeConfig {
    /// This server's name in etcd values; empty means the kernel host name.
    pub node_name: String,
    /// Root of `domains/`, `import/` and `runtime/`.
    pub data_root: PathBuf,
    /// Where the hostyard binaries are installed; units call them from here.
    pub bin_dir: PathBuf,
    pub etcd: EtcdConfig,
    pub docker: DockerConfig,
    pub images: Images,
    pub haproxy: HaproxyConfig,
    pub git: GitConfig,
    pub import: ImportConfig,
    pub discovery: DiscoveryConfig,
    pub confd: ConfdConfig,
    pub mail: MailConfig,
    /// Memory, CPU and process limits per kind of container.
    pub limits: Limits,
    /// Backups of every site into a restic repository.
    pub backup: BackupConfig,
    pub tls: TlsConfig,
    pub wordpress: WordpressConfig,
    pub fleet: FleetConfig,
}

impl Default for NodeConfig {
    fn default() -> Self {
        NodeConfig {
            node_name: String::new(),
            data_root: PathBuf::from("/data"),
            bin_dir: PathBuf::from("/usr/local/bin"),
            etcd: EtcdConfig::default(),
            docker: DockerConfig::default(),
            images: Images::default(),
            haproxy: HaproxyConfig::default(),
            git: GitConfig::default(),
            import: ImportConfig::default(),
            discovery: DiscoveryConfig::default(),
            confd: ConfdConfig::default(),
            mail: MailConfig::default(),
            limits: Limits::default(),
            backup: BackupConfig::default(),
            tls: TlsConfig::default(),
            wordpress: WordpressConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

/// Why a sandboxed unit cannot read `path`, if it cannot: every hostyard
/// unit has its own `/tmp` and `/var/tmp` (`PrivateTmp=yes`), and the
/// daemons see no `/home`, `/root` or `/run/user` (`ProtectHome=`) when
/// `home_hidden`. A file there exists for the operator's shell and not for
/// the unit, which would only say "no such file".
pub fn hidden_from_unit(path: &Path, home_hidden: bool) -> Option<&'static str> {
    const TMP: &str = "PrivateTmp=yes gives the unit a /tmp and /var/tmp of its own";
    const HOME: &str = "ProtectHome= hides /home, /root and /run/user from the unit";
    [
        ("/tmp", TMP, false),
        ("/var/tmp", TMP, false),
        ("/home", HOME, true),
        ("/root", HOME, true),
        ("/run/user", HOME, true),
    ]
    .into_iter()
    .find(|(dir, _, home)| path.starts_with(dir) && (home_hidden || !home))
    .map(|(_, why, _)| why)
}

impl NodeConfig {
    /// Every file of the config that a sandboxed unit reads, and the unit:
    /// one line for each that its sandbox hides (empty when all are seen).
    pub fn unit_path_problems(&self) -> Vec<String> {
        const ETCD_READERS: &str = "haproxy-confd.service and every discovery@ unit";
        let daemons = [
            ("etcd.ca_file", &self.etcd.ca_file, ETCD_READERS),
            ("etcd.cert_file", &self.etcd.cert_file, ETCD_READERS),
            ("etcd.key_file", &self.etcd.key_file, ETCD_READERS),
            (
                "tls.acme.ca_file",
                &self.tls.acme.ca_file,
                "haproxy-confd.service",
            ),
            (
                "fleet.ca_file",
                &self.fleet.ca_file,
                "haproxy-confd.service",
            ),
            (
                "fleet.cert_file",
                &self.fleet.cert_file,
                "haproxy-confd.service",
            ),
            (
                "fleet.key_file",
                &self.fleet.key_file,
                "haproxy-confd.service",
            ),
        ];
        let mut problems = Vec::new();
        let mut check = |field: &str, path: &Path, unit: &str, home_hidden: bool| {
            if let Some(why) = hidden_from_unit(path, home_hidden) {
                problems.push(format!(
                    "{field}: {} cannot be read by {unit} ({why}): move it under /etc/hostyard and set {field} to the new path",
                    path.display()
                ));
            }
        };
        for (field, path, unit) in daemons {
            check(field, path, unit, true);
        }
        if self.backup.enabled() {
            // The backup units keep /root readable: restic's ssh needs
            // root's keys.
            check(
                "backup.password_file",
                &self.backup.password_file,
                "the backup units",
                false,
            );
        }
        problems
    }
}

impl NodeConfig {
    /// The data layout under `data_root`.
    pub fn layout(&self) -> Layout {
        Layout::new(&self.data_root)
    }

    /// `node_name`, or the kernel's host name when it is empty.
    pub fn node_name(&self) -> String {
        if !self.node_name.is_empty() {
            return self.node_name.clone();
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|s| s.trim().to_string())
            .unwrap_or_else(|_| "localhost".to_string())
    }
}
