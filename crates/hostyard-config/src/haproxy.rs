//! The `haproxy:` section: ports, the check binary and the connection limits.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HaproxyConfig {
    pub bind_address: IpAddr,
    /// Where the frontends listen on IPv6 beside an IPv4 `bind_address`.
    pub bind_address_v6: BindV6,
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
            bind_address_v6: BindV6::Auto,
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

/// `haproxy.bind_address_v6`: `auto` (every IPv6 address when
/// `bind_address` is every IPv4 one, `0.0.0.0`; none beside a single IPv4
/// address, which a hoster chose to narrow the listening), `none` (IPv4
/// only, for a kernel without IPv6), or an IPv6 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum BindV6 {
    Auto,
    None,
    Address(Ipv6Addr),
}

impl TryFrom<String> for BindV6 {
    type Error = String;

    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "auto" => Ok(BindV6::Auto),
            "none" => Ok(BindV6::None),
            other => other.parse().map(BindV6::Address).map_err(|_| {
                format!("{other:?} is not auto, none or an IPv6 address (like :: or 2001:db8::1)")
            }),
        }
    }
}

impl From<BindV6> for String {
    fn from(value: BindV6) -> String {
        value.to_string()
    }
}

impl fmt::Display for BindV6 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BindV6::Auto => f.write_str("auto"),
            BindV6::None => f.write_str("none"),
            BindV6::Address(a) => write!(f, "{a}"),
        }
    }
}

impl HaproxyConfig {
    /// The IPv6 address the frontends listen on beside `bind_address`, if
    /// any: only when `bind_address` is IPv4 (an IPv6 one is the only
    /// address, as before this key existed).
    pub fn extra_bind_v6(&self) -> Option<Ipv6Addr> {
        match (self.bind_address, self.bind_address_v6) {
            (IpAddr::V6(_), _) | (_, BindV6::None) => None,
            (IpAddr::V4(v4), BindV6::Auto) => v4.is_unspecified().then_some(Ipv6Addr::UNSPECIFIED),
            (IpAddr::V4(_), BindV6::Address(a)) => Some(a),
        }
    }

    /// Connections the public frontend takes at once.
    pub fn public_maxconn(&self) -> u32 {
        self.maxconn.saturating_sub(self.reserved_conns)
    }

    /// Every limit that cannot work.
    pub(crate) fn limits_problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if let (IpAddr::V6(_), BindV6::Address(a)) = (self.bind_address, self.bind_address_v6) {
            problems.push(Problem::new(
                "haproxy.bind_address_v6",
                format!(
                    "{a} is set but haproxy.bind_address ({}) is IPv6 already: set bind_address to an IPv4 address (0.0.0.0 for all), or bind_address_v6 to auto",
                    self.bind_address
                ),
            ));
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn with(bind: &str, v6: &str) -> HaproxyConfig {
        HaproxyConfig {
            bind_address: bind.parse().unwrap(),
            bind_address_v6: BindV6::try_from(v6.to_string()).unwrap(),
            ..HaproxyConfig::default()
        }
    }

    #[test]
    fn ipv6_is_listened_on_beside_every_ipv4_address_only() {
        let any = Some(Ipv6Addr::UNSPECIFIED);
        assert_eq!(HaproxyConfig::default().extra_bind_v6(), any);
        assert_eq!(with("0.0.0.0", "auto").extra_bind_v6(), any);
        // A single IPv4 address narrows the listening: no IPv6 unless named.
        assert_eq!(with("192.0.2.10", "auto").extra_bind_v6(), None);
        assert_eq!(
            with("192.0.2.10", "2001:db8::1").extra_bind_v6(),
            Some("2001:db8::1".parse().unwrap())
        );
        assert_eq!(with("0.0.0.0", "none").extra_bind_v6(), None);
        // An IPv6 bind_address stays the only one, as before the key.
        assert_eq!(with("::", "auto").extra_bind_v6(), None);
        assert!(with("::", "auto").limits_problems().is_empty());
    }

    #[test]
    fn a_second_ipv6_address_beside_an_ipv6_bind_address_is_refused() {
        let problems = with("::", "::1").limits_problems();
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(format!("{problems:?}").contains("haproxy.bind_address_v6"));
    }

    #[test]
    fn bind_address_v6_reads_and_writes_its_words_and_addresses() {
        for text in ["auto", "none", "::", "2001:db8::1"] {
            let v = BindV6::try_from(text.to_string()).unwrap();
            assert_eq!(String::from(v), text);
        }
        let err = BindV6::try_from("127.0.0.1".to_string()).unwrap_err();
        assert!(err.contains("not auto, none or an IPv6 address"), "{err}");
    }
}
