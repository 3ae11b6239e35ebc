//! Checks of a parsed config that serde's types cannot express.

use std::fmt;
use std::time::Duration;

use hostyard_core::Domain;

use crate::{Images, NodeConfig};

/// One problem of a config: the dotted key, as `hostyard config get`
/// takes it, and what is wrong with it, with the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    pub field: String,
    pub problem: String,
}

impl Problem {
    pub fn new(field: &str, problem: String) -> Problem {
        Problem {
            field: field.to_string(),
            problem,
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.field, self.problem)
    }
}

impl NodeConfig {
    /// Every problem of the config, in a fixed order (roughly the order
    /// of the sections), so that an operator fixes them all in one go;
    /// empty when the config can be used. A problem that follows from
    /// another (`haproxy.site_maxconn` above a zero `haproxy.maxconn`) is
    /// left out, and a key has one problem at a time.
    pub fn validate(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if !self.data_root.is_absolute() {
            problems.push(Problem::new(
                "data_root",
                format!("{:?} must be an absolute path", self.data_root),
            ));
        }
        if !self.bin_dir.is_absolute() {
            problems.push(Problem::new(
                "bin_dir",
                format!("{:?} must be an absolute path", self.bin_dir),
            ));
        }
        if !self.docker.binary.is_absolute() {
            problems.push(Problem::new(
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
                problems.push(Problem::new(
                    field,
                    format!("{p:?} contains {c:?}; use a path of letters, digits and / . _ -"),
                ));
            }
        }
        if self.etcd.endpoints.is_empty() {
            problems.push(Problem::new(
                "etcd.endpoints",
                "needs at least one URL, like http://127.0.0.1:2379".into(),
            ));
        }
        for e in &self.etcd.endpoints {
            if !(e.starts_with("http://") || e.starts_with("https://")) {
                problems.push(Problem::new(
                    "etcd.endpoints",
                    format!("{e:?} must start with http:// or https://"),
                ));
            }
        }
        problems.extend(self.validate_etcd_tls());
        if !self.etcd.prefix.is_empty()
            && (!self.etcd.prefix.starts_with('/') || self.etcd.prefix.ends_with('/'))
        {
            problems.push(Problem::new(
                "etcd.prefix",
                format!(
                    "{:?} must start with / and not end with /, like /hostyard",
                    self.etcd.prefix
                ),
            ));
        }
        if !is_docker_name(&self.docker.network) {
            problems.push(Problem::new(
                "docker.network",
                format!("{:?} is not a docker network name", self.docker.network),
            ));
        }
        for (kind, image) in self.images.all() {
            if !is_image_ref(image) {
                problems.push(Problem::new(
                    &Images::config_key(kind),
                    format!("{image:?} is not a docker image reference like hostyard/static:1"),
                ));
            }
        }
        if self.git.keep_trees == 0 {
            problems.push(Problem::new(
                "git.keep_trees",
                "must be at least 1 (the tree being served)".into(),
            ));
        }
        let taken = [
            ("haproxy.http_port", self.haproxy.http_port),
            ("haproxy.https_port", self.haproxy.https_port),
            ("fleet.peer_port", self.fleet.peer_port),
        ];
        if self.git.hook_port == 0 {
            problems.push(Problem::new("git.hook_port", "port 0 is not a port".into()));
        } else if let Some((key, _)) = taken.iter().find(|(_, p)| *p == self.git.hook_port) {
            problems.push(Problem::new(
                "git.hook_port",
                format!(
                    "{} is {key} already; choose another port",
                    self.git.hook_port
                ),
            ));
        }
        if self.discovery.ttl < Duration::from_secs(3) {
            problems.push(Problem::new(
                "discovery.ttl_secs",
                "must be at least 3 seconds".into(),
            ));
        }
        if self.discovery.failures == 0 {
            problems.push(Problem::new(
                "discovery.failures",
                "must be at least 1".into(),
            ));
        }
        if !self.discovery.health_path.starts_with('/')
            || self
                .discovery
                .health_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            problems.push(Problem::new(
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
            problems.push(Problem::new(
                "haproxy.frontend_rules",
                format!("{rule:?} must be one line without control characters"),
            ));
        }
        if !(self.confd.hold_fraction > 0.0 && self.confd.hold_fraction <= 1.0) {
            problems.push(Problem::new(
                "confd.hold_fraction",
                format!("{} must be in (0, 1]", self.confd.hold_fraction),
            ));
        }
        if !self.mail.hostname.is_empty() && Domain::parse(&self.mail.hostname).is_err() {
            problems.push(Problem::new(
                "mail.hostname",
                format!(
                    "{:?} is not a host name like mail.example.org",
                    self.mail.hostname
                ),
            ));
        }
        if self.haproxy.maxconn == 0 {
            problems.push(Problem::new(
                "haproxy.maxconn",
                "must be at least 1".to_string(),
            ));
        } else if self.haproxy.site_maxconn == 0 || self.haproxy.site_maxconn > self.haproxy.maxconn
        {
            problems.push(Problem::new(
                "haproxy.site_maxconn",
                format!(
                    "{} must be between 1 and haproxy.maxconn ({})",
                    self.haproxy.site_maxconn, self.haproxy.maxconn
                ),
            ));
        }
        problems.extend(self.haproxy.limits_problems());
        problems.extend(self.backup.problems());
        if self.tls.scan_secs == 0 {
            problems.push(Problem::new(
                "tls.scan_secs",
                "must be at least 1".to_string(),
            ));
        }
        problems.extend(self.tls.acme.problems());
        if self.haproxy.https_port == self.haproxy.http_port {
            problems.push(Problem::new(
                "haproxy.https_port",
                format!(
                    "{} is haproxy.http_port too; give HTTPS a port of its own (443)",
                    self.haproxy.https_port
                ),
            ));
        }
        problems.extend(self.validate_fleet());
        if !hostyard_core::mail::is_relayhost(&self.mail.relayhost) {
            problems.push(Problem::new(
                "mail.relayhost",
                format!(
                    "{:?} must be empty, a host name or IPv4 address, optionally in [] and with :port, like [smtp.example.org]:587",
                    self.mail.relayhost
                ),
            ));
        }
        for problem in self.wordpress.php_limits.check() {
            problems.push(Problem::new("wordpress.php_limits", problem));
        }
        if self.mail.site_hourly_cap == 0 {
            problems.push(Problem::new(
                "mail.site_hourly_cap",
                "must be at least 1 (messages a site's mail may leave with per hour; 200 by default)"
                    .to_string(),
            ));
        }
        problems
    }
    /// Peers need this server's own private address (the peer frontend
    /// listens there), names and addresses once each, none of them this
    /// server, and a port of the peer frontend's own.
    fn validate_fleet(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let f = &self.fleet;
        if f.private_address.is_none() && !f.peers.is_empty() {
            problems.push(Problem::new(
                "fleet.private_address",
                "is null but fleet.peers lists servers; set this server's private address".into(),
            ));
        }
        if f.private_address.is_some()
            && (f.peer_port == 0
                || f.peer_port == self.haproxy.http_port
                || f.peer_port == self.haproxy.https_port)
        {
            problems.push(Problem::new(
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
            // One problem a peer: the first of its checks that fails.
            // The peer frontend matches the name in its certificate.
            if p.name.is_empty() || p.name == me {
                problems.push(Problem::new(
                    &field,
                    format!("name {:?} must be another server's node_name", p.name),
                ));
            } else if !is_server_name(&p.name) {
                problems.push(Problem::new(
                    &field,
                    format!(
                        "name {:?} must be a server name of the inventory: lower-case letters, digits and -",
                        p.name
                    ),
                ));
            } else if Some(p.address) == f.private_address {
                problems.push(Problem::new(
                    &field,
                    format!(
                        "address {} is this server's own fleet.private_address",
                        p.address
                    ),
                ));
            } else if f.peers[..i]
                .iter()
                .any(|q| q.name == p.name || q.address == p.address)
            {
                problems.push(Problem::new(
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
                    problems.push(Problem::new(
                        field,
                        "is empty while fleet.private_address is set; peers authenticate each other with the fleet CA: set fleet.ca_file, cert_file and key_file (deploy/ sets them to the files in /etc/hostyard/etcd)".into(),
                    ));
                } else if !p.is_absolute() {
                    problems.push(Problem::new(
                        field,
                        format!("{p:?} must be an absolute path"),
                    ));
                }
            }
        }
        problems
    }

    /// TLS files: all three or none; with them every endpoint is https://
    /// (a client certificate is never offered over plain http), without
    /// them none is.
    fn validate_etcd_tls(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
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
                problems.push(Problem::new(
                    field,
                    "is empty while another of etcd.ca_file, cert_file, key_file is set; set all three or none".into(),
                ));
            } else if set != 0 && !p.is_absolute() {
                problems.push(Problem::new(
                    field,
                    format!("{p:?} must be an absolute path"),
                ));
            }
        }
        for e in &self.etcd.endpoints {
            if set != 0 && !e.starts_with("https://") {
                problems.push(Problem::new(
                    "etcd.endpoints",
                    format!("{e:?} is plain http while etcd.ca_file, cert_file and key_file are set; use https://"),
                ));
            }
            if set == 0 && e.starts_with("https://") {
                problems.push(Problem::new(
                    "etcd.endpoints",
                    format!("{e:?} needs etcd.ca_file, cert_file and key_file (the fleet CA and this server's certificate and key)"),
                ));
            }
        }
        problems
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
