//! The etcd schema: every key and value hostyard reads or writes.
//!
//! Every key is under the configurable prefix:
//!
//! | key | value | lifetime |
//! | --- | --- | --- |
//! | `{prefix}/services/<kind>/<domain>` | [`ServiceValue`]: where the site answers now | attached to a lease that discovery keeps alive while the site passes its health check |
//! | `{prefix}/sites/<domain>` | [`SiteDecl`]: the site is hosted here, of this kind, with these aliases | persistent, written when a site is first registered, removed only by `hostyard site forget` |
//! | `{prefix}/owners/<domain>` | the `node_name` of the one server that may register and publish the site ([`parse_owner`]) | persistent: claimed by the site's first registration when absent, moved only by `hostyard site claim --take-over`, `hostyard site transfer` (a move) or `hostyard restore`, removed by `hostyard site forget` |
//! | `{prefix}/acme/challenges/<token>` | an ACME HTTP-01 key authorization | on a lease of the order that wrote it |
//! | `{prefix}/acme/locks/<domain>` | the node ordering the domain's certificate | on a lease of that order |
//! | `{prefix}/tls/certs/<domain>` | the domain's certificate bundle (PEM: chain and private key), published by the server that obtained it, in a fleet only | persistent, replaced at each renewal |
//!
//! The service key is the original system's layout, so its values are read
//! as the original wrote them (`"port": "80"`). The declaration key is new: it
//! is what lets confd tell "hosted but down" (503) from "not hosted" (404)
//! once a lease has expired. The owner key is what keeps one site on one
//! server: registrations and certificate publications are transactions
//! that compare it with the writer's node name, so a second copy of a site
//! (a restore while the first server was frozen) never takes its routing,
//! and ownership changes hands in one transaction (`owner == from` → `to`).

use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::domain::{Domain, DomainError};
use crate::edge::EdgeRules;
use crate::kind::{SiteKind, UnknownKind};

/// The key layout under one prefix (`etcd.prefix` of the node config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Schema {
    prefix: String,
}

/// Why an etcd key is not one of ours.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("key {key:?} is not under {expected:?}")]
    WrongPrefix { key: String, expected: String },
    #[error("key {key:?} does not have the form <prefix>/services/<kind>/<domain>")]
    Shape { key: String },
    #[error("key {key:?}: {source}")]
    Kind { key: String, source: UnknownKind },
    #[error("key {key:?}: {source}")]
    Domain { key: String, source: DomainError },
}

impl Schema {
    /// `prefix` is empty or starts with `/` and does not end with one
    /// (the node config validates that).
    pub fn new(prefix: &str) -> Schema {
        Schema {
            prefix: prefix.trim_end_matches('/').to_string(),
        }
    }

    /// `{prefix}/services/`: every registration, for a range read or watch.
    pub fn services_prefix(&self) -> String {
        format!("{}/services/", self.prefix)
    }

    /// `{prefix}/sites/`: every declaration.
    pub fn sites_prefix(&self) -> String {
        format!("{}/sites/", self.prefix)
    }

    /// `{prefix}/`: everything hostyard keeps in etcd, for one watch.
    pub fn root_prefix(&self) -> String {
        format!("{}/", self.prefix)
    }

    /// `{prefix}/owners/`: which server owns each site. Outside
    /// [`Schema::routing_range`]: routing follows registrations, and the
    /// owner only decides who may write them.
    pub fn owners_prefix(&self) -> String {
        format!("{}/owners/", self.prefix)
    }

    pub fn owner_key(&self, domain: &Domain) -> String {
        format!("{}{domain}", self.owners_prefix())
    }

    /// Inverse of [`Schema::owner_key`].
    pub fn parse_owner_key(&self, key: &str) -> Result<Domain, KeyError> {
        domain_under(key, self.owners_prefix())
    }

    /// `{prefix}/acme/challenges/`: pending HTTP-01 answers, each
    /// `<token>` → key authorization on a lease, so a forgotten one
    /// disappears by itself. Every confd serves them (any server may
    /// receive the CA's validation request).
    pub fn acme_challenges_prefix(&self) -> String {
        format!("{}/acme/challenges/", self.prefix)
    }

    pub fn acme_challenge_key(&self, token: &str) -> String {
        format!("{}{token}", self.acme_challenges_prefix())
    }

    /// `{prefix}/acme/locks/<domain>`: held (on a lease) by whoever orders
    /// a certificate for the domain, so one order runs at a time.
    pub fn acme_lock_key(&self, domain: &Domain) -> String {
        format!("{}/acme/locks/{domain}", self.prefix)
    }

    /// `{prefix}/tls/certs/`: in a fleet, each site's certificate bundle
    /// (chain and private key) as its hosting server obtained it, so every
    /// server can terminate TLS for it. Outside [`Schema::routing_range`]:
    /// a few kB a site must not swell confd's routing reads.
    pub fn tls_certs_prefix(&self) -> String {
        format!("{}/tls/certs/", self.prefix)
    }

    pub fn tls_cert_key(&self, domain: &Domain) -> String {
        format!("{}{domain}", self.tls_certs_prefix())
    }

    /// Inverse of [`Schema::tls_cert_key`].
    pub fn parse_tls_cert_key(&self, key: &str) -> Result<Domain, KeyError> {
        domain_under(key, self.tls_certs_prefix())
    }

    /// The key range routing depends on, `[start, end)`: every
    /// `services/` and `sites/` key (they sort next to each other) and
    /// nothing else of ours, so confd's full read and watch carry neither
    /// certificate bundles nor ACME challenges.
    pub fn routing_range(&self) -> (String, String) {
        // '0' is the byte after '/': the end of everything under `sites/`.
        (self.services_prefix(), format!("{}/sites0", self.prefix))
    }

    pub fn service_key(&self, kind: SiteKind, domain: &Domain) -> String {
        format!("{}{}/{domain}", self.services_prefix(), kind.as_str())
    }

    pub fn site_key(&self, domain: &Domain) -> String {
        format!("{}{domain}", self.sites_prefix())
    }

    /// Inverse of [`Schema::service_key`].
    pub fn parse_service_key(&self, key: &str) -> Result<(SiteKind, Domain), KeyError> {
        let expected = self.services_prefix();
        let rest = key
            .strip_prefix(&expected)
            .ok_or_else(|| KeyError::WrongPrefix {
                key: key.to_string(),
                expected,
            })?;
        let (kind, domain) = rest.split_once('/').ok_or_else(|| KeyError::Shape {
            key: key.to_string(),
        })?;
        let kind = kind.parse().map_err(|source| KeyError::Kind {
            key: key.to_string(),
            source,
        })?;
        let domain = Domain::parse(domain).map_err(|source| KeyError::Domain {
            key: key.to_string(),
            source,
        })?;
        Ok((kind, domain))
    }

    /// Inverse of [`Schema::site_key`].
    pub fn parse_site_key(&self, key: &str) -> Result<Domain, KeyError> {
        domain_under(key, self.sites_prefix())
    }
}

/// The domain that is the rest of `key` after `prefix`.
fn domain_under(key: &str, prefix: String) -> Result<Domain, KeyError> {
    let rest = key
        .strip_prefix(&prefix)
        .ok_or_else(|| KeyError::WrongPrefix {
            key: key.to_string(),
            expected: prefix.clone(),
        })?;
    Domain::parse(rest).map_err(|source| KeyError::Domain {
        key: key.to_string(),
        source,
    })
}

/// Where a site answers: the value of `/services/<kind>/<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServiceValue {
    pub ip: IpAddr,
    /// Written as a string, as the original did; read from a string or a number.
    #[serde(
        serialize_with = "port_as_string",
        deserialize_with = "port_from_either"
    )]
    pub port: u16,
    /// The server that registered it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node: Option<String>,
}

/// A site hosted by hostyard: the value of `/sites/<domain>`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteDecl {
    pub kind: SiteKind,
    /// Other names that redirect (301) to the domain; `www.<domain>` does too (or is served, `edge.canonical`).
    #[serde(default)]
    pub aliases: Vec<Domain>,
    /// Path redirects and the other rules HAProxy applies for the site's
    /// names ([`crate::edge`]); absent when there are none.
    #[serde(default, skip_serializing_if = "EdgeRules::is_empty")]
    pub edge: EdgeRules,
    /// A WordPress site's PHP limits ([`crate::php`]); absent when it has
    /// the node config's defaults.
    #[serde(default, skip_serializing_if = "crate::php::PhpLimits::is_empty")]
    pub php: crate::php::PhpLimits,
}

/// Why a value read from etcd is unusable. Carries the raw text (cut short)
/// so the log line shows what was there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("malformed value {raw:?}: {reason}")]
pub struct ValueError {
    pub raw: String,
    pub reason: String,
}

impl ValueError {
    fn new(raw: &[u8], reason: impl fmt::Display) -> ValueError {
        let mut raw = String::from_utf8_lossy(raw).into_owned();
        crate::text::shorten(&mut raw, 120);
        ValueError {
            raw,
            reason: reason.to_string(),
        }
    }
}

impl ServiceValue {
    pub fn parse(raw: &[u8]) -> Result<ServiceValue, ValueError> {
        let value: ServiceValue =
            serde_json::from_slice(raw).map_err(|e| ValueError::new(raw, e))?;
        if value.port == 0 {
            return Err(ValueError::new(raw, "port 0 is not a port"));
        }
        if value.ip.is_unspecified() || value.ip.is_multicast() {
            return Err(ValueError::new(
                raw,
                format!("{} is not a host address", value.ip),
            ));
        }
        Ok(value)
    }

    pub fn to_json(&self) -> String {
        // Serializing plain strings and numbers cannot fail.
        serde_json::to_string(self).unwrap_or_default()
    }
}

impl SiteDecl {
    pub fn parse(raw: &[u8]) -> Result<SiteDecl, ValueError> {
        let decl: SiteDecl = serde_json::from_slice(raw).map_err(|e| ValueError::new(raw, e))?;
        // The rules as `hostyard site set` checks them: a hand-written
        // value that would put a space or a loop into HAProxy's maps is
        // refused whole.
        if !decl.edge.redirects.is_empty() {
            crate::edge::decide_redirects(&[], &decl.edge.redirects, &[])
                .map_err(|problems| ValueError::new(raw, problems.join("; ")))?;
        }
        if let Some(auth) = &decl.edge.basic_auth {
            auth.check().map_err(|e| ValueError::new(raw, e))?;
        }
        Ok(decl)
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// The longest node name an owner value may hold (a DNS label's length).
pub const MAX_NODE_NAME: usize = 63;

/// The value of `/owners/<domain>`: a server's `node_name`, as it is
/// (letters, digits, `.`, `_`, `-`), so that `etcdctl get` shows it plainly.
pub fn parse_owner(raw: &[u8]) -> Result<String, ValueError> {
    let text = std::str::from_utf8(raw).map_err(|_| ValueError::new(raw, "not UTF-8"))?;
    if text.is_empty() || text.len() > MAX_NODE_NAME {
        return Err(ValueError::new(
            raw,
            format!("a node name has 1 to {MAX_NODE_NAME} characters"),
        ));
    }
    if let Some(c) = text
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-')))
    {
        return Err(ValueError::new(
            raw,
            format!("{c:?} is not allowed in a node name"),
        ));
    }
    Ok(text.to_string())
}

/// An owner value as it is shown and compared: the node name, or, when it
/// is none, the raw text quoted (which names no server, so it is never
/// taken for this one).
pub fn owner_or_raw(raw: &[u8]) -> String {
    parse_owner(raw).unwrap_or_else(|_| format!("{:?}", String::from_utf8_lossy(raw)))
}

fn port_as_string<S: Serializer>(port: &u16, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&port.to_string())
}

fn port_from_either<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Port {
        Num(u16),
        Text(String),
    }
    match Port::deserialize(d)? {
        Port::Num(n) => Ok(n),
        Port::Text(t) => t.parse().map_err(|_| {
            serde::de::Error::custom(format!("port {t:?} is not a number in 1..65535"))
        }),
    }
}

/// The end of etcd's range for every key that starts with `prefix`: the
/// first key after all of them (its last byte plus one: `/hostyard/` ends
/// before `/hostyard0`), as a range read and a role's permission take it.
pub fn prefix_end(prefix: &str) -> Vec<u8> {
    let mut end = prefix.as_bytes().to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return end;
        }
    }
    // All 0xff (never for our prefixes): "to the end of the keyspace".
    vec![0]
}

#[cfg(test)]
mod tests {
    #[test]
    fn prefix_end_is_the_next_key_range() {
        assert_eq!(super::prefix_end("/services/"), b"/services0".to_vec());
        assert_eq!(super::prefix_end("/"), b"0".to_vec());
        assert_eq!(super::prefix_end("a\u{7f}"), b"a\x80".to_vec());
    }

    use super::*;
    use proptest::prelude::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn keys_round_trip_with_and_without_prefix() {
        for prefix in ["", "/hostyard"] {
            let s = Schema::new(prefix);
            let key = s.service_key(SiteKind::StaticGit, &d("example.com"));
            assert_eq!(key, format!("{prefix}/services/static-git/example.com"));
            assert_eq!(
                s.parse_service_key(&key).unwrap(),
                (SiteKind::StaticGit, d("example.com"))
            );
            let key = s.site_key(&d("example.com"));
            assert_eq!(key, format!("{prefix}/sites/example.com"));
            assert_eq!(s.parse_site_key(&key).unwrap(), d("example.com"));
        }
    }

    #[test]
    fn tls_cert_keys_round_trip_and_lie_outside_the_routing_range() {
        for prefix in ["", "/hostyard"] {
            let s = Schema::new(prefix);
            let key = s.tls_cert_key(&d("example.com"));
            assert_eq!(key, format!("{prefix}/tls/certs/example.com"));
            assert_eq!(s.parse_tls_cert_key(&key).unwrap(), d("example.com"));
            assert!(s
                .parse_tls_cert_key(&format!("{prefix}/tls/certs/a b"))
                .is_err());
            let (start, end) = s.routing_range();
            let inside = |k: &str| start.as_str() <= k && k < end.as_str();
            assert!(inside(&s.service_key(SiteKind::Static, &d("a.com"))));
            assert!(inside(&s.service_key(SiteKind::Wordpress, &d("zz.com"))));
            assert!(inside(&s.site_key(&d("a.com"))));
            assert!(inside(&s.site_key(&d("zz-9.example"))));
            assert!(!inside(&key));
            assert!(!inside(&s.acme_challenge_key("token")));
            assert!(!inside(&s.acme_lock_key(&d("a.com"))));
        }
    }

    #[test]
    fn owner_keys_round_trip_and_lie_outside_the_routing_range() {
        for prefix in ["", "/hostyard"] {
            let s = Schema::new(prefix);
            let key = s.owner_key(&d("example.com"));
            assert_eq!(key, format!("{prefix}/owners/example.com"));
            assert_eq!(s.parse_owner_key(&key).unwrap(), d("example.com"));
            assert!(s.parse_owner_key(&format!("{prefix}/owners/a b")).is_err());
            assert!(s.parse_owner_key(&s.site_key(&d("example.com"))).is_err());
            let (start, end) = s.routing_range();
            assert!(!(start.as_str() <= key.as_str() && key.as_str() < end.as_str()));
        }
    }

    #[test]
    fn owner_values_are_node_names() {
        for ok in ["n1", "web-2.example", "srv_3"] {
            assert_eq!(parse_owner(ok.as_bytes()).unwrap(), ok);
        }
        for bad in [
            &b""[..],
            b"n1\n",
            b" n1",
            b"{\"node\":\"n1\"}",
            b"\xff",
            "n".repeat(MAX_NODE_NAME + 1).as_bytes(),
        ] {
            assert!(
                parse_owner(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(owner_or_raw(b"n1"), "n1");
        assert_eq!(owner_or_raw(b"n1 "), "\"n1 \"");
    }

    #[test]
    fn bad_keys_are_errors_naming_the_key() {
        let s = Schema::new("");
        for (key, needle) in [
            ("/other/static/example.com", "is not under"),
            ("/services/static", "does not have the form"),
            ("/services/php/example.com", "unknown site kind"),
            ("/services/static/../etc", "contains '/'"),
            ("/services/static/Exa mple.com", "contains ' '"),
        ] {
            let err = s.parse_service_key(key).unwrap_err().to_string();
            assert!(err.contains(needle) && err.contains(key), "{key}: {err}");
        }
    }

    #[test]
    fn reads_the_original_value_format() {
        let v = ServiceValue::parse(br#"{"ip":"172.17.0.5","port":"80"}"#).unwrap();
        assert_eq!(v.ip.to_string(), "172.17.0.5");
        assert_eq!(v.port, 80);
        let v =
            ServiceValue::parse(br#"{"ip":"10.0.0.1","port":8080,"node":"n1","extra":1}"#).unwrap();
        assert_eq!(v.port, 8080);
        assert_eq!(v.node.as_deref(), Some("n1"));
    }

    #[test]
    fn writes_the_original_value_format() {
        let v = ServiceValue {
            ip: "172.17.0.5".parse().unwrap(),
            port: 80,
            node: None,
        };
        assert_eq!(v.to_json(), r#"{"ip":"172.17.0.5","port":"80"}"#);
        assert_eq!(ServiceValue::parse(v.to_json().as_bytes()).unwrap(), v);
    }

    #[test]
    fn malformed_values_are_errors() {
        for raw in [
            &b""[..],
            b"null",
            b"{}",
            b"not json",
            br#"{"ip":"172.17.0.5"}"#,
            br#"{"ip":"172.17.0.5","port":"http"}"#,
            br#"{"ip":"172.17.0.5","port":"70000"}"#,
            br#"{"ip":"172.17.0.5","port":0}"#,
            br#"{"ip":"0.0.0.0","port":"80"}"#,
            br#"{"ip":"example.com","port":"80"}"#,
            br#"{"ip":"172.17.0.5","port":-1}"#,
            b"\xff\xfe",
        ] {
            assert!(
                ServiceValue::parse(raw).is_err(),
                "{:?}",
                String::from_utf8_lossy(raw)
            );
        }
    }

    #[test]
    fn site_declarations_round_trip_and_validate_aliases() {
        let decl = SiteDecl {
            kind: SiteKind::Wordpress,
            aliases: vec![d("example.org")],
            edge: EdgeRules::default(),
            php: Default::default(),
        };
        assert_eq!(SiteDecl::parse(decl.to_json().as_bytes()).unwrap(), decl);
        assert!(!decl.to_json().contains("edge"), "no rules, no field");
        let mut with = decl.clone();
        with.edge.redirects = vec![crate::edge::PathRedirect::parse("308:/a=/b", false).unwrap()];
        assert_eq!(SiteDecl::parse(with.to_json().as_bytes()).unwrap(), with);
        let looped =
            br#"{"kind":"static","edge":{"redirects":[{"from":"/a","to":"/a","code":301}]}}"#;
        assert!(SiteDecl::parse(looped).is_err());
        let temporary =
            br#"{"kind":"static","edge":{"redirects":[{"from":"/a","to":"/b","code":302}]}}"#;
        assert!(SiteDecl::parse(temporary).is_err());
        assert!(SiteDecl::parse(br#"{"kind":"static","aliases":["../x"]}"#).is_err());
        assert!(SiteDecl::parse(br#"{"kind":"php"}"#).is_err());
    }

    proptest! {
        #[test]
        fn parsing_arbitrary_bytes_never_panics(raw in proptest::collection::vec(any::<u8>(), 0..200)) {
            let _ = ServiceValue::parse(&raw);
            let _ = SiteDecl::parse(&raw);
            if let Ok(node) = parse_owner(&raw) {
                prop_assert_eq!(node.as_bytes(), &raw[..]);
            }
        }

        #[test]
        fn parsing_arbitrary_keys_never_panics(key in "\\PC{0,100}") {
            let s = Schema::new("");
            if let Ok((kind, domain)) = s.parse_service_key(&key) {
                prop_assert_eq!(s.service_key(kind, &domain), key.to_ascii_lowercase());
            }
        }
    }
}
