//! The node config, `/etc/hostyard/hostyard.yaml`.
//!
//! Every field has a default, so an empty file (or none) is a working
//! single-server config. Unknown fields are refused: a typo must not silently
//! fall back to a default on a production server. Errors carry the file,
//! line and column that the YAML parser (yaml_serde) reports.

use std::fmt;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::config_layers;
use crate::domain::Domain;
use crate::kind::SiteKind;
use crate::layout::Layout;

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
    pub limits: crate::limits::Limits,
    /// Backups of every site into a restic repository.
    pub backup: crate::backup::BackupConfig,
    pub tls: TlsConfig,
    pub wordpress: WordpressConfig,
    pub fleet: FleetConfig,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster.
    pub endpoints: Vec<String>,
    /// Prefix in front of `/services/...` and `/sites/...`; empty for the
    /// original layout.
    pub prefix: String,
    /// The fleet CA's certificate (PEM) the members' certificates are
    /// checked against; empty for plain http (a member on loopback only).
    pub ca_file: PathBuf,
    /// This server's client certificate (PEM); its common name is the etcd
    /// user whose role says what the server may touch.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM); refused unless only its owner
    /// may read it (mode 0600 or stricter).
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The docker client the units call.
    pub binary: PathBuf,
    /// The dedicated bridge network every site container joins.
    pub network: String,
}

/// Image name per container; tags are part of the name (`hostyard/static:1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Images {
    #[serde(rename = "static")]
    pub static_: String,
    pub static_git: String,
    pub wordpress: String,
    pub mysql: String,
    pub haproxy: String,
    pub postfix: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyConfig {
    pub bind_address: IpAddr,
    pub http_port: u16,
    pub https_port: u16,
    /// The HAProxy binary confd runs as `haproxy -c -f` before any reload.
    /// HAProxy itself runs in a container; setup installs Debian's haproxy
    /// package on the host too (same 3.0 as the image, which is built from
    /// the same Debian release) so validation needs no container start.
    pub check_binary: PathBuf,
    /// Extra lines for the HTTP frontend (e.g. `http-request deny if { src
    /// 192.0.2.7 }`), placed before the routing rules. confd validates the
    /// whole config with `haproxy -c` before using it.
    pub frontend_rules: Vec<String>,
    /// Connections HAProxy takes at once (global `maxconn`).
    pub maxconn: u32,
    /// Requests of one site in flight at once; more get a 503 with
    /// `Retry-After`.
    pub site_maxconn: u32,
    /// Connections the public frontend leaves to the rest (the fleet's
    /// peer frontend): it takes at most `maxconn - reserved_conns`.
    pub reserved_conns: u32,
    /// Connections one client address (an IPv6 /64) holds at once; more
    /// are closed as they come.
    pub source_maxconn: u32,
    /// New connections of one client address in 10 seconds; more are
    /// closed as they come, before a TLS handshake.
    pub source_conn_rate: u32,
    /// Requests of one client address in 10 seconds; more get a 429.
    pub source_req_rate: u32,
    /// Requests of one client address to `wp-login.php` or `xmlrpc.php`
    /// (any site) in a minute; more get a 429.
    pub login_rate: u32,
    /// Client addresses no per-source limit applies to (by default the
    /// server itself).
    pub unlimited_sources: Vec<ipnet::IpNet>,
    /// New TLS sessions HAProxy starts per second (global `maxsslrate`);
    /// more wait in the kernel's backlog.
    pub max_ssl_rate: u32,
    /// Seconds a client has to finish its TLS handshake (`timeout
    /// client-hs`).
    pub handshake_timeout_secs: u32,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// How often static-git sites pull, as a systemd time span (`10min`).
    pub poll_interval: TimeSpan,
    /// Fetch timeout in seconds.
    pub fetch_timeout_secs: u64,
    /// How many published trees to keep for rollback.
    pub keep_trees: usize,
}

/// What the importers keep of the imports they used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    /// How long a used import stays in `import/.done/` (to look at or
    /// import again) before an importer removes it: it holds the site's
    /// TLS key and a WordPress dump with its users' password hashes.
    pub keep_done: TimeSpan,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            keep_done: TimeSpan::from_secs(7 * 86400).expect("not zero"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Lease TTL of a registration; kept alive at a third of it. Whole
    /// seconds in the file (`ttl_secs`).
    #[serde(rename = "ttl_secs", with = "whole_secs")]
    pub ttl: Duration,
    /// Seconds between health checks.
    pub interval_secs: u64,
    /// Consecutive failed checks before a site leaves routing.
    pub failures: u32,
    pub health_path: String,
    /// Any status in 200..=399 counts as healthy unless this is set.
    pub expect_status: Option<u16>,
    pub timeout_secs: u64,
    /// Bound of `hostyard-discovery wait` in the site unit's ExecStartPost.
    pub wait_timeout_secs: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfdConfig {
    /// A single change that would remove more than this share of all routes
    /// is held rather than applied.
    pub hold_fraction: f64,
    /// How long a held change must persist before it is applied anyway.
    /// Whole seconds in the file (`hold_secs`).
    #[serde(rename = "hold_secs", with = "whole_secs")]
    pub hold: Duration,
    /// The hold applies only when at least this many routes would go at
    /// once: stopping one site of two must take effect at once.
    pub hold_min_removals: usize,
    /// Debounce window for bursts of etcd events. Whole milliseconds in the
    /// file (`debounce_ms`).
    #[serde(rename = "debounce_ms", with = "whole_millis")]
    pub debounce: Duration,
    /// Networks a registered address may be in (CIDR); empty means the
    /// subnet of the sites' Docker network (`docker.network`). The server's
    /// own addresses are refused in any case unless listed one by one.
    pub allowed_networks: Vec<ipnet::IpNet>,
}

/// postfix, which forwards mail for hosted domains (per-domain forward files
/// under `runtime/postfix/forwards/`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The name postfix greets with and puts in `Received:`; empty means the
    /// kernel host name.
    pub hostname: String,
    /// Where forwarded mail goes next: empty delivers to each destination's
    /// MX; `[smtp.example.org]:587` sends everything through one relay.
    pub relayhost: String,
}

/// WordPress sites.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WordpressConfig {
    /// The e-mail address a new site's administrator is installed with
    /// (WordPress sends it update and password notices); `None` means
    /// `admin@<the site's domain>`. An imported site keeps its own.
    pub admin_email: Option<crate::mail::MailAddress>,
}

impl WordpressConfig {
    /// The address a new WordPress site `domain` is installed with.
    pub fn admin_email_for(&self, domain: &Domain) -> String {
        match &self.admin_email {
            Some(address) => address.to_string(),
            None => format!("admin@{domain}"),
        }
    }
}

/// The other servers of a fleet, for forwarding: a request for a site
/// another server registered goes to that server's peer frontend, on its
/// private address, with the PROXY protocol. Written by `deploy/` from the
/// inventory (`hostyard fleet node-config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// This server's private address: the peer frontend listens there
    /// only. `None`: a single server, no peer frontend.
    pub private_address: Option<IpAddr>,
    /// The peer frontend's port, the same on every server.
    pub peer_port: u16,
    /// The other servers, by node name. Only these are forwarded to, and
    /// only their addresses may send the peer frontend anything.
    pub peers: Vec<FleetPeer>,
    /// The fleet CA's certificate (PEM): a peer's certificate, in either
    /// direction, must be signed by it. Needed with `private_address`.
    pub ca_file: PathBuf,
    /// This server's certificate from the fleet CA (PEM), for serverAuth
    /// and clientAuth, named `hostyard-<node_name>-<hex>` as `deploy/ca.sh`
    /// issues it: presented to the peers it forwards to and to those that
    /// forward to it.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM); refused unless only its owner
    /// may read it (mode 0600 or stricter).
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetPeer {
    pub name: String,
    pub address: IpAddr,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            private_address: None,
            peer_port: 8405,
            peers: Vec::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

/// HTTPS: which sites redirect and send HSTS, and how often confd looks
/// for changed certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Sites that keep answering plain HTTP although they have a valid
    /// certificate (every other such site redirects HTTP to HTTPS).
    pub http_sites: Vec<Domain>,
    /// Sites whose HTTPS answers carry `Strict-Transport-Security` (opt-in:
    /// browsers remember it for a year, so a site must mean it).
    pub hsts_sites: Vec<Domain>,
    /// Seconds between two looks at the sites' certificate files.
    pub scan_secs: u64,
    /// Certificates from an ACME CA (HTTP-01) for sites without an
    /// imported one; an empty directory URL turns it off.
    pub acme: AcmeConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's ACME directory URL (https://); empty: no ACME.
    pub directory: String,
    /// Contact e-mail given to the CA with the account (expiry notices).
    pub email: String,
    /// Whether the operator accepted the CA's terms of service; nothing is
    /// ordered until they did (the CA requires the agreement).
    pub terms_accepted: bool,
    /// A PEM file with the root the ACME server's own HTTPS certificate
    /// chains to, for a private or test CA (pebble); empty: the system's roots.
    /// Roots that follow it (the one a private CA signs certificates with)
    /// are trusted, beside the system's, for the fleet's certificates.
    pub ca_file: PathBuf,
    /// Seconds before the first retry after a failed order; each further
    /// failure doubles it (at most a day). 300 keeps a name under the CAs'
    /// limit of 5 failed validations an hour.
    pub retry_secs: u64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: String::new(),
            email: String::new(),
            terms_accepted: false,
            ca_file: PathBuf::new(),
            retry_secs: 300,
        }
    }
}

impl AcmeConfig {
    /// Whether ACME is configured at all.
    pub fn enabled(&self) -> bool {
        !self.directory.is_empty()
    }

    /// The first field that is wrong, with what is wrong and the fix.
    fn problem(&self) -> Option<(&'static str, String)> {
        if self.retry_secs == 0 {
            return Some(("tls.acme.retry_secs", "must be at least 1".to_string()));
        }
        if !self.enabled() {
            return None;
        }
        if !self.directory.starts_with("https://") || self.directory.len() <= "https://".len() {
            return Some((
                "tls.acme.directory",
                format!(
                    "{:?} must be an https:// URL, like https://acme-v02.api.letsencrypt.org/directory",
                    self.directory
                ),
            ));
        }
        let email_ok = self
            .email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !self.email.contains(char::is_whitespace);
        if !email_ok {
            return Some((
                "tls.acme.email",
                format!(
                    "{:?} must be an e-mail address the CA can write to, like admin@example.org",
                    self.email
                ),
            ));
        }
        if !self.ca_file.as_os_str().is_empty() && !self.ca_file.is_absolute() {
            return Some((
                "tls.acme.ca_file",
                format!(
                    "{} must be an absolute path or empty",
                    self.ca_file.display()
                ),
            ));
        }
        None
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            http_sites: Vec::new(),
            hsts_sites: Vec::new(),
            scan_secs: 2,
            acme: AcmeConfig::default(),
        }
    }
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
            limits: crate::limits::Limits::default(),
            backup: crate::backup::BackupConfig::default(),
            tls: TlsConfig::default(),
            wordpress: WordpressConfig::default(),
            fleet: FleetConfig::default(),
        }
    }
}

/// The PEM texts of the etcd TLS files, read for one connection.
pub struct EtcdTlsPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl EtcdConfig {
    /// Reads the TLS files named by the config; `None` for plain http. The
    /// key must be readable by its owner alone: a key others could read is
    /// refused rather than used, since it is this server's whole identity.
    pub fn tls_pem(&self) -> Result<Option<EtcdTlsPem>, String> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("etcd.{field} {}: {e}", path.display()))
        };
        private_key_mode("etcd.key_file", &self.key_file)?;
        Ok(Some(EtcdTlsPem {
            ca: read("ca_file", &self.ca_file)?,
            cert: read("cert_file", &self.cert_file)?,
            key: read("key_file", &self.key_file)?,
        }))
    }
}

/// Refuses a private key that others than its owner may read: it is this
/// server's whole identity.
fn private_key_mode(field: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{field} {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{field} {} may be read by others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}

/// What HAProxy's peer frontend and peers backend need, as HAProxy reads
/// it: this server's certificate with its key in one PEM, and the fleet CA.
pub struct PeerTlsPem {
    pub cert_and_key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl FleetConfig {
    /// The common names of the peers' certificates, as one regular
    /// expression (HAProxy's `-m reg`): `deploy/ca.sh issue` names a
    /// server's certificate `hostyard-<name>-<hex>` (its etcd user too), the
    /// hex new at each issue. `None` when there are no peers.
    pub fn peer_cn_regex(&self) -> Option<String> {
        if self.peers.is_empty() {
            return None;
        }
        // Names are letters, digits and `-` (validated): nothing to escape;
        // the hex has no `-`, so one name never matches another's.
        let names: Vec<&str> = self.peers.iter().map(|p| p.name.as_str()).collect();
        Some(format!("^hostyard-({})-[0-9a-f]+$", names.join("|")))
    }

    /// Reads the fleet TLS files; `None` for a single server (no
    /// `private_address`). The key is refused when others may read it.
    pub fn tls_pem(&self) -> Result<Option<PeerTlsPem>, String> {
        if self.private_address.is_none() {
            return Ok(None);
        }
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("fleet.{field} {}: {e}", path.display()))
        };
        private_key_mode("fleet.key_file", &self.key_file)?;
        let mut cert_and_key = read("cert_file", &self.cert_file)?;
        if !cert_and_key.ends_with(b"\n") {
            cert_and_key.push(b'\n');
        }
        cert_and_key.extend(read("key_file", &self.key_file)?);
        Ok(Some(PeerTlsPem {
            cert_and_key,
            ca: read("ca_file", &self.ca_file)?,
        }))
    }
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            prefix: String::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            binary: PathBuf::from("/usr/bin/docker"),
            network: "hostyard".to_string(),
        }
    }
}

impl Default for Images {
    fn default() -> Self {
        Images {
            static_: "hostyard/static".to_string(),
            static_git: "hostyard/static-git".to_string(),
            wordpress: "hostyard/wordpress".to_string(),
            mysql: "hostyard/mysql".to_string(),
            haproxy: "hostyard/haproxy".to_string(),
            postfix: "hostyard/postfix".to_string(),
        }
    }
}

/// The images of the server-wide containers, named like site kinds.
pub const MYSQL_IMAGE_KIND: &str = "mysql";
pub const HAPROXY_IMAGE_KIND: &str = "haproxy";
pub const POSTFIX_IMAGE_KIND: &str = "postfix";

impl Images {
    pub fn for_kind(&self, kind: SiteKind) -> &str {
        match kind {
            SiteKind::Static => &self.static_,
            SiteKind::StaticGit => &self.static_git,
            SiteKind::Wordpress => &self.wordpress,
        }
    }

    /// Every image as (kind, name): the kind is the image's slug (a site
    /// kind's, or `mysql`, `haproxy`, `postfix`), which names its
    /// Dockerfile, its tarball (`<kind>.tar`) and its config key
    /// ([`Images::config_key`]). The one list scripts get from
    /// `hostyard names images` and validation walks.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            (SiteKind::Static.as_str(), &self.static_),
            (SiteKind::StaticGit.as_str(), &self.static_git),
            (SiteKind::Wordpress.as_str(), &self.wordpress),
            (MYSQL_IMAGE_KIND, &self.mysql),
            (HAPROXY_IMAGE_KIND, &self.haproxy),
            (POSTFIX_IMAGE_KIND, &self.postfix),
        ]
    }

    /// The node config's key of an image kind: `images.static_git` for
    /// `static-git` (YAML keys use `_`, kinds `-`).
    pub fn config_key(kind: &str) -> String {
        format!("images.{}", kind.replace('-', "_"))
    }
}

impl Default for HaproxyConfig {
    fn default() -> Self {
        HaproxyConfig {
            bind_address: IpAddr::from([0, 0, 0, 0]),
            http_port: 80,
            https_port: 443,
            check_binary: PathBuf::from("/usr/sbin/haproxy"),
            frontend_rules: Vec::new(),
            maxconn: 4096,
            site_maxconn: 500,
            reserved_conns: 256,
            source_maxconn: 100,
            source_conn_rate: 600,
            source_req_rate: 1000,
            login_rate: 20,
            unlimited_sources: vec![
                "127.0.0.0/8".parse().expect("a network"),
                "::1/128".parse().expect("a network"),
            ],
            max_ssl_rate: 500,
            handshake_timeout_secs: 5,
        }
    }
}

impl HaproxyConfig {
    /// Connections the public frontend takes at once.
    pub fn public_maxconn(&self) -> u32 {
        self.maxconn.saturating_sub(self.reserved_conns)
    }

    /// The first limit that cannot work, as (field, problem).
    fn limits_problem(&self) -> Option<(&'static str, String)> {
        if self.reserved_conns >= self.maxconn {
            return Some((
                "haproxy.reserved_conns",
                format!(
                    "{} must be below haproxy.maxconn ({}): the public frontend needs connections too",
                    self.reserved_conns, self.maxconn
                ),
            ));
        }
        for (field, value) in [
            ("haproxy.source_maxconn", self.source_maxconn),
            ("haproxy.source_conn_rate", self.source_conn_rate),
            ("haproxy.source_req_rate", self.source_req_rate),
            ("haproxy.login_rate", self.login_rate),
            ("haproxy.max_ssl_rate", self.max_ssl_rate),
            (
                "haproxy.handshake_timeout_secs",
                self.handshake_timeout_secs,
            ),
        ] {
            if value == 0 {
                return Some((
                    field,
                    "must be at least 1 (to lift a per-source limit for some clients, list them in haproxy.unlimited_sources)".to_string(),
                ));
            }
        }
        None
    }
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            poll_interval: TimeSpan::from_secs(600).expect("not zero"),
            fetch_timeout_secs: 60,
            keep_trees: 3,
        }
    }
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            ttl: Duration::from_secs(60),
            interval_secs: 5,
            failures: 3,
            health_path: "/".to_string(),
            expect_status: None,
            timeout_secs: 3,
            wait_timeout_secs: 60,
        }
    }
}

impl Default for ConfdConfig {
    fn default() -> Self {
        ConfdConfig {
            hold_fraction: 0.5,
            hold: Duration::from_secs(300),
            hold_min_removals: 3,
            debounce: Duration::from_millis(5),
            allowed_networks: Vec::new(),
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

/// Why a node config could not be used.
///
/// Each message is complete on its own, and the underlying error is not
/// also exposed as a `source`: callers print error chains (`{:#}`), which
/// would otherwise repeat it.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {error}")]
    Read {
        path: PathBuf,
        error: std::io::Error,
    },
    /// The YAML parser's message names the field and carries line and column.
    #[error("{path}: {error}")]
    Parse {
        path: PathBuf,
        error: yaml_serde::Error,
    },
    #[error("{path}: {field}: {problem}")]
    Invalid {
        path: PathBuf,
        /// The dotted key, as `hostyard config get` takes it.
        field: String,
        problem: String,
    },
    #[error("{path}: drop-ins are read only when named *.yaml: rename it")]
    DropInName { path: PathBuf },
}

impl NodeConfig {
    /// Reads a config file and the drop-ins beside it
    /// (`hostyard.yaml.d/*.yaml`, merged in name order; see
    /// [`crate::config_layers`]). A missing file at the default path is the
    /// default config; a missing file named explicitly is an error.
    pub fn load(path: &Path) -> Result<NodeConfig, ConfigError> {
        let read_error = |path: &Path, error| ConfigError::Read {
            path: path.to_path_buf(),
            error,
        };
        let main = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && path == Path::new(DEFAULT_CONFIG_PATH) =>
            {
                String::new()
            }
            Err(error) => return Err(read_error(path, error)),
        };
        let mut files = vec![(path.to_path_buf(), main)];
        let dir = config_layers::drop_in_dir(path);
        let mut names = Vec::new();
        match std::fs::read_dir(&dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| read_error(&dir, e))?;
                    let name = entry.file_name().to_string_lossy().into_owned();
                    if name.ends_with(".yml") {
                        return Err(ConfigError::DropInName { path: entry.path() });
                    }
                    if config_layers::is_drop_in_name(&name) {
                        names.push(name);
                    }
                }
            }
            // No directory, or a config named /dev/null: no drop-ins.
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::NotFound | std::io::ErrorKind::NotADirectory
                ) => {}
            Err(error) => return Err(read_error(&dir, error)),
        }
        names.sort();
        for name in names {
            let file = dir.join(&name);
            let text = std::fs::read_to_string(&file).map_err(|e| read_error(&file, e))?;
            files.push((file, text));
        }
        NodeConfig::parse_files(&files)
    }

    /// Parses YAML text; `path` names the source in errors.
    pub fn parse(text: &str, path: &Path) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse_files(&[(path.to_path_buf(), text.to_string())])
    }

    /// Parses the files of a node config, merged in order; each error names
    /// the file it is in.
    pub fn parse_files(files: &[(PathBuf, String)]) -> Result<NodeConfig, ConfigError> {
        let mut layers = Vec::new();
        for (path, text) in files {
            // An empty document is null in YAML; treat it as "all defaults".
            if text.trim().is_empty() {
                continue;
            }
            let parse_error = |error| ConfigError::Parse {
                path: path.clone(),
                error,
            };
            // Each file alone first: its errors carry its line and column.
            yaml_serde::from_str::<NodeConfig>(text).map_err(parse_error)?;
            let value = yaml_serde::from_str(text).map_err(parse_error)?;
            layers.push(config_layers::Layer {
                path: path.clone(),
                value,
            });
        }
        let main = files
            .first()
            .map(|(p, _)| p.clone())
            .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
        let merged = config_layers::merge(&layers).map_err(|c| ConfigError::Invalid {
            path: c.second.clone(),
            field: c.key.clone(),
            problem: format!(
                "is also set in {}: keep it in one file (deploy/ owns node_name, etcd and fleet in {}/fleet.yaml)",
                c.first.display(),
                config_layers::drop_in_dir(&main).display(),
            ),
        })?;
        let config: NodeConfig = if merged.value.is_empty() {
            NodeConfig::default()
        } else {
            yaml_serde::from_value(yaml_serde::Value::Mapping(merged.value.clone())).map_err(
                |error| ConfigError::Parse {
                    path: main.clone(),
                    error,
                },
            )?
        };
        config.validate(&main).map_err(|e| match e {
            ConfigError::Invalid { field, problem, .. } => ConfigError::Invalid {
                path: merged.owner(&field).unwrap_or(&main).to_path_buf(),
                field,
                problem,
            },
            other => other,
        })?;
        Ok(config)
    }

    fn validate(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        if !self.data_root.is_absolute() {
            return Err(invalid(
                "data_root",
                format!("{:?} must be an absolute path", self.data_root),
            ));
        }
        if !self.bin_dir.is_absolute() {
            return Err(invalid(
                "bin_dir",
                format!("{:?} must be an absolute path", self.bin_dir),
            ));
        }
        if !self.docker.binary.is_absolute() {
            return Err(invalid(
                "docker.binary",
                format!("{:?} must be an absolute path", self.docker.binary),
            ));
        }
        for (field, p) in [
            ("data_root", &self.data_root),
            ("bin_dir", &self.bin_dir),
            ("docker.binary", &self.docker.binary),
            ("haproxy.check_binary", &self.haproxy.check_binary),
        ] {
            if let Some(c) = p
                .to_str()
                .and_then(|s| s.chars().find(|c| !is_unit_safe_path_char(*c)))
            {
                return Err(invalid(
                    field,
                    format!("{p:?} contains {c:?}; use a path of letters, digits and / . _ -"),
                ));
            }
        }
        if self.etcd.endpoints.is_empty() {
            return Err(invalid(
                "etcd.endpoints",
                "needs at least one URL, like http://127.0.0.1:2379".into(),
            ));
        }
        for e in &self.etcd.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                return Err(invalid(
                    "etcd.endpoints",
                    format!("{e:?} must start with http:// or https://"),
                ));
            }
        }
        self.validate_etcd_tls(path)?;
        if !self.etcd.prefix.is_empty()
            && (!self.etcd.prefix.starts_with('/') || self.etcd.prefix.ends_with('/'))
        {
            return Err(invalid(
                "etcd.prefix",
                format!(
                    "{:?} must start with / and not end with /, like /hostyard",
                    self.etcd.prefix
                ),
            ));
        }
        if !is_docker_name(&self.docker.network) {
            return Err(invalid(
                "docker.network",
                format!("{:?} is not a docker network name", self.docker.network),
            ));
        }
        for (kind, image) in self.images.all() {
            if !is_image_ref(image) {
                return Err(ConfigError::Invalid {
                    path: path.to_path_buf(),
                    field: Images::config_key(kind),
                    problem: format!(
                        "{image:?} is not a docker image reference like hostyard/static:1"
                    ),
                });
            }
        }
        if self.git.keep_trees == 0 {
            return Err(invalid(
                "git.keep_trees",
                "must be at least 1 (the tree being served)".into(),
            ));
        }
        if self.discovery.ttl < Duration::from_secs(3) {
            return Err(invalid(
                "discovery.ttl_secs",
                "must be at least 3 seconds".into(),
            ));
        }
        if self.discovery.failures == 0 {
            return Err(invalid("discovery.failures", "must be at least 1".into()));
        }
        if !self.discovery.health_path.starts_with('/')
            || self
                .discovery
                .health_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(invalid(
                "discovery.health_path",
                format!(
                    "{:?} must be a URL path starting with /",
                    self.discovery.health_path
                ),
            ));
        }
        if let Some(rule) = self
            .haproxy
            .frontend_rules
            .iter()
            .find(|r| r.chars().any(|c| c.is_control()))
        {
            return Err(invalid(
                "haproxy.frontend_rules",
                format!("{rule:?} must be one line without control characters"),
            ));
        }
        if !(self.confd.hold_fraction > 0.0 && self.confd.hold_fraction <= 1.0) {
            return Err(invalid(
                "confd.hold_fraction",
                format!("{} must be in (0, 1]", self.confd.hold_fraction),
            ));
        }
        if !self.mail.hostname.is_empty() && Domain::parse(&self.mail.hostname).is_err() {
            return Err(invalid(
                "mail.hostname",
                format!(
                    "{:?} is not a host name like mail.example.org",
                    self.mail.hostname
                ),
            ));
        }
        if self.haproxy.maxconn == 0 {
            return Err(invalid("haproxy.maxconn", "must be at least 1".to_string()));
        }
        if self.haproxy.site_maxconn == 0 || self.haproxy.site_maxconn > self.haproxy.maxconn {
            return Err(invalid(
                "haproxy.site_maxconn",
                format!(
                    "{} must be between 1 and haproxy.maxconn ({})",
                    self.haproxy.site_maxconn, self.haproxy.maxconn
                ),
            ));
        }
        if let Some((field, problem)) = self.haproxy.limits_problem() {
            return Err(invalid(field, problem));
        }
        if let Some((field, problem)) = self.backup.problem() {
            return Err(invalid(field, problem));
        }
        if self.tls.scan_secs == 0 {
            return Err(invalid("tls.scan_secs", "must be at least 1".to_string()));
        }
        if let Some((field, problem)) = self.tls.acme.problem() {
            return Err(invalid(field, problem));
        }
        if self.haproxy.https_port == self.haproxy.http_port {
            return Err(invalid(
                "haproxy.https_port",
                format!(
                    "{} is haproxy.http_port too; give HTTPS a port of its own (443)",
                    self.haproxy.https_port
                ),
            ));
        }
        self.validate_fleet(path)?;
        if !crate::mail::is_relayhost(&self.mail.relayhost) {
            return Err(invalid(
                "mail.relayhost",
                format!(
                    "{:?} must be empty, a host name or IPv4 address, optionally in [] and with :port, like [smtp.example.org]:587",
                    self.mail.relayhost
                ),
            ));
        }
        Ok(())
    }

    /// The data layout under `data_root`.
    /// Peers need this server's own private address (the peer frontend
    /// listens there), names and addresses once each, none of them this
    /// server, and a port of the peer frontend's own.
    fn validate_fleet(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let f = &self.fleet;
        if f.private_address.is_none() && !f.peers.is_empty() {
            return Err(invalid(
                "fleet.private_address",
                "is null but fleet.peers lists servers; set this server's private address".into(),
            ));
        }
        if f.private_address.is_some()
            && (f.peer_port == 0
                || f.peer_port == self.haproxy.http_port
                || f.peer_port == self.haproxy.https_port)
        {
            return Err(invalid(
                "fleet.peer_port",
                format!(
                    "{} must be a port of its own, not 0 or haproxy's http or https port (8405)",
                    f.peer_port
                ),
            ));
        }
        let me = self.node_name();
        for (i, p) in f.peers.iter().enumerate() {
            let field = format!("fleet.peers[{i}]");
            if p.name.is_empty() || p.name == me {
                return Err(invalid(
                    &field,
                    format!("name {:?} must be another server's node_name", p.name),
                ));
            }
            // The peer frontend matches the name in its certificate.
            if !is_server_name(&p.name) {
                return Err(invalid(
                    &field,
                    format!(
                        "name {:?} must be a server name of the inventory: lower-case letters, digits and -",
                        p.name
                    ),
                ));
            }
            if Some(p.address) == f.private_address {
                return Err(invalid(
                    &field,
                    format!(
                        "address {} is this server's own fleet.private_address",
                        p.address
                    ),
                ));
            }
            if f.peers[..i]
                .iter()
                .any(|q| q.name == p.name || q.address == p.address)
            {
                return Err(invalid(
                    &field,
                    format!(
                        "{} {} is listed twice; list each server once",
                        p.name, p.address
                    ),
                ));
            }
        }
        // Peers prove who they are with a certificate of the fleet CA: an
        // address proves nothing (a site container's connection leaves its
        // server masqueraded as that server's private address).
        if f.private_address.is_some() {
            for (field, p) in [
                ("fleet.ca_file", &f.ca_file),
                ("fleet.cert_file", &f.cert_file),
                ("fleet.key_file", &f.key_file),
            ] {
                if p.as_os_str().is_empty() {
                    return Err(invalid(
                        field,
                        "is empty while fleet.private_address is set; peers authenticate each other with the fleet CA: set fleet.ca_file, cert_file and key_file (deploy/ sets them to the files in /etc/hostyard/etcd)".into(),
                    ));
                }
                if !p.is_absolute() {
                    return Err(invalid(field, format!("{p:?} must be an absolute path")));
                }
            }
        }
        Ok(())
    }

    /// TLS files: all three or none; with them every endpoint is https://
    /// (a client certificate is never offered over plain http), without
    /// them none is.
    fn validate_etcd_tls(&self, path: &Path) -> Result<(), ConfigError> {
        let invalid = |field: &str, problem: String| ConfigError::Invalid {
            path: path.to_path_buf(),
            field: field.to_string(),
            problem,
        };
        let files = [
            ("etcd.ca_file", &self.etcd.ca_file),
            ("etcd.cert_file", &self.etcd.cert_file),
            ("etcd.key_file", &self.etcd.key_file),
        ];
        let set = files
            .iter()
            .filter(|(_, p)| !p.as_os_str().is_empty())
            .count();
        for (field, p) in files {
            if set != 0 && p.as_os_str().is_empty() {
                return Err(invalid(
                    field,
                    "is empty while another of etcd.ca_file, cert_file, key_file is set; set all three or none".into(),
                ));
            }
            if set != 0 && !p.is_absolute() {
                return Err(invalid(field, format!("{p:?} must be an absolute path")));
            }
        }
        for e in &self.etcd.endpoints {
            if set != 0 && !e.starts_with("https://") {
                return Err(invalid(
                    "etcd.endpoints",
                    format!("{e:?} is plain http while etcd.ca_file, cert_file and key_file are set; use https://"),
                ));
            }
            if set == 0 && e.starts_with("https://") {
                return Err(invalid(
                    "etcd.endpoints",
                    format!("{e:?} needs etcd.ca_file, cert_file and key_file (the fleet CA and this server's certificate and key)"),
                ));
            }
        }
        Ok(())
    }

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

/// A server's name in the fleet's inventory: lower-case letters, digits
/// and `-`, neither first nor last.
pub fn is_server_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 63
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-')
}

/// Characters a path may have and still go into a unit file unquoted and
/// unescaped (no spaces, no `%`, no `$`, no quotes).
fn is_unit_safe_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '/' | '.' | '_' | '-')
}

fn is_docker_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

fn is_image_ref(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 255
        && s.starts_with(|c: char| c.is_ascii_alphanumeric())
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-' | '/' | ':' | '@'))
}

/// A time span as the config writes it for systemd, in the simple forms
/// docs/reference/config.md documents: `600`, `30s`, `10min`, `1h`, `1d`. Parsed once,
/// when the config is read (a bad one is an error naming the field, with
/// line and column); it goes into a unit as [`TimeSpan`]'s `Display`, the
/// largest unit that divides it (`600` is written `10min`), which systemd
/// reads as the same span.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct TimeSpan {
    secs: u64,
}

/// A time span that is not one of the documented forms.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a systemd time span like 10min or 1h (a whole number, then s, min, h or d)")]
pub struct BadTimeSpan(pub String);

impl TimeSpan {
    /// A span of `secs` seconds; `None` for zero, which no timer means.
    pub fn from_secs(secs: u64) -> Option<TimeSpan> {
        (secs > 0).then_some(TimeSpan { secs })
    }

    pub fn as_secs(self) -> u64 {
        self.secs
    }
}

/// A duration the config file writes as whole seconds: parsed into a
/// [`Duration`] once, when the config is read.
mod whole_secs {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(d.as_secs())
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_secs)
    }
}

/// A duration the config file writes as whole milliseconds.
mod whole_millis {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        u64::deserialize(d).map(Duration::from_millis)
    }
}

impl FromStr for TimeSpan {
    type Err = BadTimeSpan;
    fn from_str(s: &str) -> Result<TimeSpan, BadTimeSpan> {
        let bad = || BadTimeSpan(s.to_string());
        let digits = s.chars().take_while(|c| c.is_ascii_digit()).count();
        let n = s[..digits].parse::<u64>().map_err(|_| bad())?;
        let unit = match &s[digits..] {
            "" | "s" | "sec" => 1,
            "m" | "min" => 60,
            "h" => 3600,
            "d" => 86400,
            _ => return Err(bad()),
        };
        n.checked_mul(unit)
            .and_then(TimeSpan::from_secs)
            .ok_or_else(bad)
    }
}

impl fmt::Display for TimeSpan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (n, unit) = [(86400, "d"), (3600, "h"), (60, "min")]
            .into_iter()
            .find(|(unit, _)| self.secs % unit == 0)
            .map_or((self.secs, "s"), |(unit, name)| (self.secs / unit, name));
        write!(f, "{n}{unit}")
    }
}

impl Serialize for TimeSpan {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for TimeSpan {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<TimeSpan, D::Error> {
        deserializer.deserialize_any(TimeSpanVisitor)
    }
}

/// Reads a span from a string, or from a bare number in YAML
/// (`poll_interval: 600`), which is seconds as in systemd.
struct TimeSpanVisitor;

impl serde::de::Visitor<'_> for TimeSpanVisitor {
    type Value = TimeSpan;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a systemd time span like 10min or 1h")
    }

    fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<TimeSpan, E> {
        text.parse().map_err(E::custom)
    }

    fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<TimeSpan, E> {
        TimeSpan::from_secs(secs).ok_or_else(|| E::custom(BadTimeSpan(secs.to_string())))
    }

    fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<TimeSpan, E> {
        u64::try_from(secs)
            .ok()
            .and_then(TimeSpan::from_secs)
            .ok_or_else(|| E::custom(BadTimeSpan(secs.to_string())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
        NodeConfig::parse(text, Path::new("/etc/hostyard/hostyard.yaml"))
    }

    #[test]
    fn paths_a_sandboxed_unit_cannot_see_are_named_with_the_unit() {
        assert_eq!(
            parse("").unwrap().unit_path_problems(),
            Vec::<String>::new()
        );
        let c = parse(
            "tls:\n  acme:\n    ca_file: /tmp/pebble.pem\netcd:\n  endpoints: [\"https://127.0.0.1:2379\"]\n  ca_file: /root/ca.pem\n  cert_file: /etc/hostyard/etcd/c.pem\n  key_file: /etc/hostyard/etcd/c.key\nbackup:\n  repository: /srv/r\n  password_file: /root/pw\n",
        )
        .unwrap();
        let problems = c.unit_path_problems();
        assert_eq!(problems.len(), 2, "{problems:#?}");
        assert!(
            problems[0]
                .starts_with("etcd.ca_file: /root/ca.pem cannot be read by haproxy-confd.service")
                && problems[0].contains("ProtectHome="),
            "{problems:#?}"
        );
        assert!(
            problems[1].starts_with(
                "tls.acme.ca_file: /tmp/pebble.pem cannot be read by haproxy-confd.service"
            ) && problems[1].contains("PrivateTmp=yes"),
            "{problems:#?}"
        );
        // /root is readable by the backup units; /tmp is not.
        let c = parse("backup:\n  repository: /srv/r\n  password_file: /tmp/pw\n").unwrap();
        assert_eq!(c.unit_path_problems().len(), 1);
        assert!(hidden_from_unit(Path::new("/tmpx/a"), true).is_none());
        assert!(hidden_from_unit(Path::new("/var/tmp/a"), false).is_some());
    }

    #[test]
    fn drop_ins_merge_with_the_operators_file_and_conflicts_name_both() {
        let dir = tempfile::tempdir().unwrap();
        let main = dir.path().join("hostyard.yaml");
        let drop_ins = dir.path().join("hostyard.yaml.d");
        std::fs::create_dir(&drop_ins).unwrap();
        std::fs::write(
            &main,
            "haproxy:\n  site_maxconn: 123\nbackup:\n  repository: /srv/restic\n",
        )
        .unwrap();
        std::fs::write(
            drop_ins.join("fleet.yaml"),
            "node_name: n1\netcd:\n  prefix: /hy\n",
        )
        .unwrap();
        // Neither hidden nor other names are read.
        std::fs::write(drop_ins.join(".fleet.yaml.tmp"), "node_name: x\n").unwrap();
        std::fs::write(drop_ins.join("fleet.yaml~"), "node_name: y\n").unwrap();
        let c = NodeConfig::load(&main).unwrap();
        assert_eq!(c.node_name, "n1");
        assert_eq!(c.etcd.prefix, "/hy");
        assert_eq!(c.haproxy.site_maxconn, 123);
        assert_eq!(c.backup.repository, "/srv/restic");

        // A drop-in's invalid value names the drop-in.
        std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  endpoints: []\n").unwrap();
        let err = NodeConfig::load(&main).unwrap_err().to_string();
        assert!(
            err.starts_with(&format!(
                "{}: etcd.endpoints:",
                drop_ins.join("zz.yaml").display()
            )),
            "{err}"
        );
        // So does a parse error, with its line.
        std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  nope: 1\n").unwrap();
        let err = NodeConfig::load(&main).unwrap_err().to_string();
        assert!(err.contains("zz.yaml") && err.contains("line 2"), "{err}");
        // A key in two files: both named, nothing chosen.
        std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  prefix: /other\n").unwrap();
        let err = NodeConfig::load(&main).unwrap_err().to_string();
        assert!(
            err.contains("etcd.prefix")
                && err.contains("is also set in")
                && err.contains("fleet.yaml")
                && err.contains("zz.yaml"),
            "{err}"
        );
        std::fs::remove_file(drop_ins.join("zz.yaml")).unwrap();
        // A .yml drop-in is refused, not ignored.
        std::fs::write(drop_ins.join("local.yml"), "git:\n  keep_trees: 2\n").unwrap();
        let err = NodeConfig::load(&main).unwrap_err().to_string();
        assert!(err.contains("local.yml") && err.contains("rename"), "{err}");
    }

    #[test]
    fn poll_interval_is_parsed_once_into_seconds() {
        for (span, secs, shown) in [
            ("600", 600, "10min"),
            ("30s", 30, "30s"),
            ("90", 90, "90s"),
            ("10min", 600, "10min"),
            ("2h", 7200, "2h"),
            ("1d", 86400, "1d"),
        ] {
            for yaml in [
                format!("git:\n  poll_interval: {span}\n"),
                format!("git:\n  poll_interval: \"{span}\"\n"),
            ] {
                let c = parse(&yaml).unwrap();
                assert_eq!(c.git.poll_interval.as_secs(), secs, "{yaml}");
                assert_eq!(c.git.poll_interval.to_string(), shown, "{yaml}");
                // What is shown reads back as the same span.
                assert_eq!(shown.parse::<TimeSpan>().unwrap(), c.git.poll_interval);
            }
        }
        for bad in ["0min", "0", "99999999999999999999d", "10 min"] {
            let err = parse(&format!("git:\n  poll_interval: \"{bad}\"\n"))
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("git.poll_interval") && err.contains("line 2"),
                "{err}"
            );
        }
    }

    #[test]
    fn etcd_tls_is_all_three_files_with_https_or_none_with_http() {
        let tls = "  ca_file: /etc/hostyard/etcd/ca.pem\n  cert_file: /etc/hostyard/etcd/n1.pem\n  key_file: /etc/hostyard/etcd/n1.key\n";
        let c = parse(&format!(
            "etcd:\n  endpoints: [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n{tls}"
        ))
        .unwrap();
        assert_eq!(c.etcd.key_file, PathBuf::from("/etc/hostyard/etcd/n1.key"));
        for (yaml, field, says) in [
            (
                format!("etcd:\n  endpoints: [\"http://10.0.0.1:2379\"]\n{tls}"),
                "etcd.endpoints",
                "use https://",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n".to_string(),
                "etcd.endpoints",
                "needs etcd.ca_file",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n  ca_file: /ca.pem\n  cert_file: /c.pem\n".to_string(),
                "etcd.key_file",
                "set all three or none",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n  ca_file: ca.pem\n  cert_file: /c.pem\n  key_file: /k\n".to_string(),
                "etcd.ca_file",
                "absolute path",
            ),
        ] {
            let err = parse(&yaml).unwrap_err().to_string();
            assert!(err.contains(field) && err.contains(says), "{yaml}: {err}");
        }
    }

    #[test]
    fn etcd_tls_key_readable_by_others_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, name).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let etcd = EtcdConfig {
            endpoints: vec!["https://127.0.0.1:2379".into()],
            prefix: String::new(),
            ca_file: file("ca.pem", 0o644),
            cert_file: file("n1.pem", 0o644),
            key_file: file("n1.key", 0o640),
        };
        let err = etcd.tls_pem().err().unwrap();
        assert!(
            err.contains("etcd.key_file") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&etcd.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pem = etcd.tls_pem().unwrap().unwrap();
        assert_eq!(pem.key, b"n1.key");
        assert!(EtcdConfig::default().tls_pem().unwrap().is_none());
    }

    #[test]
    fn fleet_tls_is_one_pem_of_certificate_and_key_and_a_shared_key_is_refused() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str, mode: u32| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
            p
        };
        let fleet = FleetConfig {
            private_address: Some("10.0.0.11".parse().unwrap()),
            ca_file: file("ca.pem", "CA\n", 0o644),
            cert_file: file("n1.pem", "CERT", 0o644),
            key_file: file("n1.key", "KEY\n", 0o640),
            ..FleetConfig::default()
        };
        let err = fleet.tls_pem().err().unwrap();
        assert!(
            err.contains("fleet.key_file") && err.contains("chmod 600"),
            "{err}"
        );
        std::fs::set_permissions(&fleet.key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
        let pem = fleet.tls_pem().unwrap().unwrap();
        assert_eq!(pem.cert_and_key, b"CERT\nKEY\n");
        assert_eq!(pem.ca, b"CA\n");
        assert!(FleetConfig::default().tls_pem().unwrap().is_none());
        assert_eq!(FleetConfig::default().peer_cn_regex(), None);
        let peers = FleetConfig {
            peers: vec![
                FleetPeer {
                    name: "n2".into(),
                    address: "10.0.0.12".parse().unwrap(),
                },
                FleetPeer {
                    name: "n3-b".into(),
                    address: "10.0.0.13".parse().unwrap(),
                },
            ],
            ..fleet
        };
        assert_eq!(
            peers.peer_cn_regex().unwrap(),
            "^hostyard-(n2|n3-b)-[0-9a-f]+$"
        );
    }

    #[test]
    fn empty_file_is_the_default_config() {
        assert_eq!(parse("").unwrap(), NodeConfig::default());
        assert_eq!(parse("# nothing\n").unwrap(), NodeConfig::default());
    }

    #[test]
    fn partial_config_keeps_other_defaults() {
        let c = parse("node_name: n1\nhaproxy:\n  http_port: 8080\n").unwrap();
        assert_eq!(c.node_name(), "n1");
        assert_eq!(c.haproxy.http_port, 8080);
        assert_eq!(c.haproxy.https_port, 443);
        assert_eq!(c.git.poll_interval.to_string(), "10min");
    }

    #[test]
    fn unknown_field_is_refused_with_line_and_column() {
        let err = parse("node_name: n1\nhaproxy:\n  http_prot: 8080\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("http_prot"), "{err}");
        assert!(err.contains("line 3 column 3"), "{err}");
        assert!(err.starts_with("/etc/hostyard/hostyard.yaml: "), "{err}");
    }

    #[test]
    fn limits_are_parsed_once_and_bad_ones_refused_with_their_place() {
        let c = parse("limits:\n  wordpress:\n    memory: 1536M\n    cpus: 2\n    pids: 300\n")
            .unwrap();
        assert_eq!(
            c.limits.wordpress.environment(),
            [
                "HOSTYARD_MEMORY=1536m",
                "HOSTYARD_PIDS=300",
                "HOSTYARD_CPUS=2.00"
            ]
        );
        assert_eq!(c.limits.mysql, crate::limits::Limits::default().mysql);
        for (text, want) in [
            (
                "limits:\n  static:\n    memory: 5m\n    cpus: 1\n    pids: 64\n",
                "not a memory size",
            ),
            (
                "limits:\n  static:\n    memory: 64m\n    cpus: -1\n    pids: 64\n",
                "not a CPU count",
            ),
            (
                "limits:\n  static:\n    memory: 64m\n    cpus: 1\n    pids: 3\n",
                "too few",
            ),
            ("limits:\n  static:\n    memory: 64m\n", "missing field"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(
                err.contains(want) && err.contains("line "),
                "{text:?}: {err}"
            );
        }
    }

    #[test]
    fn wrong_type_is_refused_with_location() {
        let err = parse("haproxy:\n  http_port: eighty\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("line 2"), "{err}");
    }

    #[test]
    fn invalid_values_name_the_field() {
        for (text, field) in [
            ("data_root: data\n", "data_root"),
            ("data_root: \"/da ta\"\n", "data_root"),
            ("data_root: \"/data%i\"\n", "data_root"),
            ("etcd:\n  endpoints: []\n", "etcd.endpoints"),
            (
                "etcd:\n  endpoints: [\"127.0.0.1:2379\"]\n",
                "etcd.endpoints",
            ),
            ("etcd:\n  prefix: hostyard/\n", "etcd.prefix"),
            (
                "git:\n  poll_interval: \"10 minutes; rm -rf /\"\n",
                "git.poll_interval",
            ),
            ("images:\n  static: \"x y\"\n", "images.static"),
            ("docker:\n  network: \"-bad\"\n", "docker.network"),
            (
                "confd:\n  allowed_networks: [\"10.0.0.0/33\"]\n",
                "confd.allowed_networks",
            ),
            (
                "discovery:\n  health_path: \"x\"\n",
                "discovery.health_path",
            ),
            ("haproxy:\n  site_maxconn: 0\n", "haproxy.site_maxconn"),
            (
                "haproxy:\n  maxconn: 100\n  site_maxconn: 10\n  reserved_conns: 100\n",
                "haproxy.reserved_conns",
            ),
            ("haproxy:\n  source_maxconn: 0\n", "haproxy.source_maxconn"),
            ("haproxy:\n  login_rate: 0\n", "haproxy.login_rate"),
            (
                "haproxy:\n  unlimited_sources: [\"10.0.0.0/33\"]\n",
                "haproxy.unlimited_sources",
            ),
            (
                "fleet:\n  peers: [{name: n2, address: 10.0.0.12}]\n",
                "fleet.private_address",
            ),
            (
                "node_name: n1\nfleet:\n  private_address: 10.0.0.11\n  peers: [{name: n1, address: 10.0.0.12}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peers: [{name: n2, address: 10.0.0.11}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peers: [{name: n2, address: 10.0.0.12}, {name: n2, address: 10.0.0.13}]\n",
                "fleet.peers[1]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peer_port: 80\n",
                "fleet.peer_port",
            ),
            (
                "node_name: n1\nfleet:\n  private_address: 10.0.0.11\n  peers: [{name: N2, address: 10.0.0.12}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n",
                "fleet.ca_file",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  ca_file: /ca.pem\n  cert_file: /n1.pem\n",
                "fleet.key_file",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  ca_file: /ca.pem\n  cert_file: n1.pem\n  key_file: /n1.key\n",
                "fleet.cert_file",
            ),
            (
                "haproxy:\n  maxconn: 10\n  site_maxconn: 11\n",
                "haproxy.site_maxconn",
            ),
            (
                "tls:\n  acme:\n    directory: http://ca.example/dir\n    email: a@b.example\n",
                "tls.acme.directory",
            ),
            (
                "tls:\n  acme:\n    directory: https://ca.example/dir\n    email: nobody\n",
                "tls.acme.email",
            ),
            (
                "tls:\n  acme:\n    directory: https://ca.example/dir\n    email: a@b.example\n    ca_file: root.pem\n",
                "tls.acme.ca_file",
            ),
            ("tls:\n  acme:\n    retry_secs: 0\n", "tls.acme.retry_secs"),
        ] {
            let err = parse(text).unwrap_err().to_string();
            assert!(err.contains(field), "{text:?}: {err}");
        }
    }

    #[test]
    fn acme_is_off_by_default_and_on_with_a_directory() {
        assert!(!parse("").unwrap().tls.acme.enabled());
        let c =
            parse("tls:\n  acme:\n    directory: https://ca.example/dir\n    email: a@b.example\n")
                .unwrap();
        assert!(c.tls.acme.enabled());
        assert!(
            !c.tls.acme.terms_accepted,
            "the operator must accept the terms"
        );
    }

    #[test]
    fn missing_explicit_file_is_an_error_but_default_path_is_not() {
        let dir = tempfile::tempdir().unwrap();
        assert!(NodeConfig::load(&dir.path().join("nope.yaml")).is_err());
    }

    #[test]
    fn time_spans() {
        for ok in ["600", "30s", "10min", "1h", "2d", "5sec", "3m"] {
            assert!(ok.parse::<TimeSpan>().is_ok(), "{ok}");
        }
        for bad in ["", "min", "0", "10 min", "10min;", "-1s", "1y", "1.5h"] {
            let err = bad.parse::<TimeSpan>().unwrap_err().to_string();
            assert!(err.contains(&format!("{bad:?}")), "{err}");
        }
    }
}
