//! The `haproxy:` section: ports, the check binary and the connection limits.

use std::net::IpAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

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

    /// Every limit that cannot work.
    pub(crate) fn limits_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        // A zero maxconn is a problem of its own.
        if self.maxconn > 0 && self.reserved_conns >= self.maxconn {
            problems.push(Problem::new(
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
                problems.push(Problem::new(
                    field,
                    "must be at least 1 (to lift a per-source limit for some clients, list them in haproxy.unlimited_sources)".to_string(),
                ));
            }
        }
        problems
    }
}
