//! hostyard-routing: which host goes where, the one home of the routing
//! rules that confd applies and `hostyard status` shows.
//!
//! The desired routing is a pure function from what etcd holds to the
//! HAProxy host map, plus a verdict for every site. This is where the
//! bad-data rules live, so that one broken key can never take routing away
//! from the others: every key or value that cannot be used becomes a
//! [`Problem`] naming the key, and the computation goes on with the rest.
//! [`table::Table`] keeps the same result up to date change by change.
//! Beside it: the hold rule for mass removals ([`is_mass_removal`]),
//! reading the records from etcd ([`etcd`]), confd's state file ([`state`])
//! and the status report that joins etcd, HAProxy and that file
//! ([`status`]).

pub mod site_network;
pub mod state;
pub mod status;
pub mod table;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};

use hostyard_core::etcd::Schema;
use hostyard_core::{Domain, SiteKind};
use hostyard_haproxy::{Entry, HostMap};
use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// A site's verdict, for logs and `hostyard status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SiteState {
    /// Registered with a usable address: routed.
    Routed,
    /// Declared (or once registered) but no usable registration: 503 page.
    Down,
    /// Registered under two kinds and no declaration says which: not routed.
    Conflict,
    /// Its only registration is unusable (malformed, address not allowed).
    Invalid,
}

impl fmt::Display for SiteState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SiteState::Routed => "routed",
            SiteState::Down => "down",
            SiteState::Conflict => "conflict",
            SiteState::Invalid => "invalid",
        })
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Site {
    pub domain: Domain,
    /// The declared kind, else the registered one (absent for a conflict).
    pub kind: Option<SiteKind>,
    pub address: Option<SocketAddr>,
    pub state: SiteState,
    pub aliases: Vec<Domain>,
    /// Why the site is not routed, when it is not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// A key that was skipped, and why. Logged once per distinct problem.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Problem {
    pub key: String,
    pub message: String,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Desired {
    pub map: HostMap,
    pub sites: Vec<Site>,
    pub problems: Vec<Problem>,
}

/// Addresses a registration may point to.
///
/// A registration is a claim anyone with write access to etcd can make: an
/// address of 127.0.0.1:2379 would publish etcd itself on every site's
/// hostname. So only the sites' own network is allowed (the subnet of the
/// Docker network site containers join, unless `confd.allowed_networks`
/// names others), and never the server itself: loopback, link-local
/// (cloud metadata services live there), the bridge gateway and the
/// server's own addresses are refused even inside an allowed network,
/// unless the operator lists that very address (`/32`, `/128`).
#[derive(Debug, Clone, PartialEq)]
pub struct AllowedNetworks {
    nets: Vec<IpNet>,
    denied: Vec<IpNet>,
    exact: Vec<IpAddr>,
    fleet: Option<Fleet>,
}

/// This server's name and its fleet peers' frontends (`fleet:` in the node
/// config): a registration by a peer is forwarded to that peer, never to
/// the address it names (that is on the peer's own sites' network, which
/// this server cannot reach and may even have a container of its own at).
#[derive(Debug, Clone, PartialEq)]
struct Fleet {
    node: String,
    peers: Vec<(String, SocketAddr)>,
}

/// Never a site, whatever network is allowed.
const ALWAYS_DENIED: [&str; 6] = [
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "::/128",
];

impl AllowedNetworks {
    /// `configured` is `confd.allowed_networks`; when it is empty the
    /// sites' network (`site_subnets`) is allowed. `server` holds the
    /// addresses of the server itself (its interfaces, the bridge gateway).
    pub fn new(configured: &[IpNet], site_subnets: &[IpNet], server: &[IpAddr]) -> AllowedNetworks {
        let nets = if configured.is_empty() {
            site_subnets.to_vec()
        } else {
            configured.to_vec()
        };
        let mut denied: Vec<IpNet> = ALWAYS_DENIED
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        denied.extend(server.iter().map(|ip| IpNet::from(canonical(*ip))));
        let exact = configured
            .iter()
            .filter(|n| n.prefix_len() == n.max_prefix_len())
            .map(|n| n.addr())
            .collect();
        AllowedNetworks {
            nets,
            denied,
            exact,
            fleet: None,
        }
    }

    /// With a fleet: `node` is this server's name, `peers` the other
    /// servers' names and peer frontends. Only the config names peers, not
    /// etcd, so a registration can send requests to no other address.
    pub fn with_fleet(mut self, node: &str, peers: Vec<(String, SocketAddr)>) -> AllowedNetworks {
        self.fleet = Some(Fleet {
            node: node.to_string(),
            peers,
        });
        self
    }

    /// Where a registration of `addr` by server `node` is served from: a
    /// peer's registration goes to that peer; this server's own (or one
    /// without a node, or any outside a fleet) to `addr`, when allowed.
    pub fn judge(&self, addr: SocketAddr, node: Option<&str>) -> Result<Entry, String> {
        if let (Some(fleet), Some(node)) = (&self.fleet, node) {
            if node != fleet.node {
                return match fleet.peers.iter().find(|(name, _)| name == node) {
                    Some((_, peer)) => Ok(Entry::Peer(*peer)),
                    None => Err(format!(
                        "registered by server {node:?}, which is not in fleet.peers of this \
                         server ({}); add it to the inventory and run deploy/server.sh add \
                         {node}",
                        fleet.node
                    )),
                };
            }
        }
        match self.refusal(&addr.ip()) {
            Some(why) => Err(why),
            None => Ok(Entry::Route(addr)),
        }
    }

    /// Why `ip` may not be routed to, or `None` when it may.
    pub fn refusal(&self, ip: &IpAddr) -> Option<String> {
        let ip = canonical(*ip);
        if self.exact.contains(&ip) {
            return None;
        }
        if self.denied.iter().any(|n| n.contains(&ip)) {
            return Some(format!(
                "address {ip} is the server itself (loopback, link-local, the bridge gateway or \
                 one of its addresses), never a site; list {ip}/{} in confd.allowed_networks if \
                 it really is one",
                if ip.is_ipv4() { 32 } else { 128 }
            ));
        }
        if !self.nets.iter().any(|n| n.contains(&ip)) {
            let allowed: Vec<String> = self.nets.iter().map(|n| n.to_string()).collect();
            return Some(format!(
                "address {ip} {NOT_ON_SITES_NETWORK} (allowed: {})",
                if allowed.is_empty() {
                    "none yet: the sites' Docker network does not exist".to_string()
                } else {
                    allowed.join(", ")
                }
            ));
        }
        None
    }

    pub fn contains(&self, ip: &IpAddr) -> bool {
        self.refusal(ip).is_none()
    }

    /// Whether `ip` is refused as the server itself.
    pub fn is_server(&self, ip: &IpAddr) -> bool {
        let ip = canonical(*ip);
        !self.exact.contains(&ip) && self.denied.iter().any(|n| n.contains(&ip))
    }

    /// The allowed networks, for the log.
    pub fn networks(&self) -> &[IpNet] {
        &self.nets
    }
}

/// What a refusal for an address outside the allowed networks says.
const NOT_ON_SITES_NETWORK: &str = "is not on the sites' network";

/// Whether a problem's message is a refusal of an address outside the
/// allowed networks (not of the server itself): confd then asks Docker
/// again, in case the sites' network is new.
pub fn is_outside_refusal(message: &str) -> bool {
    message.contains(NOT_ON_SITES_NETWORK)
}

/// An IPv4-mapped IPv6 address is judged as the IPv4 address it is.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Computes the host map and site verdicts from every key under the root
/// prefix. Keys outside `services/` and `sites/` are ignored. One home for
/// the rules: the [`table::Table`] confd keeps up to date change by change,
/// built from everything at once.
pub fn desired(
    schema: &Schema,
    kvs: &BTreeMap<String, Vec<u8>>,
    allowed: &AllowedNetworks,
) -> Desired {
    let table = table::Table::build(schema.clone(), allowed.clone(), kvs.clone());
    Desired {
        map: table.map().clone(),
        sites: table.sites().cloned().collect(),
        problems: table.problems(),
    }
}

fn problem(key: &str, message: String) -> Problem {
    Problem {
        key: key.to_string(),
        message,
    }
}

/// How many routes `next` would take away from `current`: hosts routed now
/// that would no longer be routed (moved addresses do not count).
pub fn removed_routes(current: &HostMap, next: &HostMap) -> usize {
    current
        .iter()
        .filter(|(host, e)| e.is_route() && !next.get(*host).is_some_and(Entry::is_route))
        .count()
}

/// Whether a change is a mass removal that must be held: more than
/// `fraction` of the current routes, and at least `min_removals` of them.
pub fn is_mass_removal(
    current: &HostMap,
    next: &HostMap,
    fraction: f64,
    min_removals: usize,
) -> bool {
    let routes = current.values().filter(|e| e.is_route()).count();
    is_mass(
        routes,
        removed_routes(current, next),
        fraction,
        min_removals,
    )
}

/// [`is_mass_removal`] from the counts: `removed` of `routes` routes.
pub fn is_mass(routes: usize, removed: usize, fraction: f64, min_removals: usize) -> bool {
    removed >= min_removals.max(1) && removed as f64 > fraction * routes as f64
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeSet;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn allowed() -> AllowedNetworks {
        AllowedNetworks::new(
            &[
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            &[],
            &[],
        )
    }

    fn ips(list: &[&str]) -> Vec<IpAddr> {
        list.iter().map(|s| s.parse().unwrap()).collect()
    }

    /// The attack this pins: `etcdctl put /services/static/evil.example
    /// '{"ip":"127.0.0.1","port":"2379"}'` published etcd on the Internet.
    #[test]
    fn by_default_only_the_sites_network_and_never_the_server_itself() {
        let subnet: IpNet = "172.18.0.0/16".parse().unwrap();
        let a = AllowedNetworks::new(&[], &[subnet], &ips(&["172.18.0.1", "192.0.2.10"]));
        for ok in ["172.18.0.5", "::ffff:172.18.0.9"] {
            assert!(a.contains(&ok.parse().unwrap()), "{ok}");
        }
        for (bad, why) in [
            ("127.0.0.1", "the server itself"),
            ("::1", "the server itself"),
            ("169.254.169.254", "the server itself"),
            ("172.18.0.1", "the server itself"),
            ("192.0.2.10", "the server itself"),
            (
                "10.0.0.5",
                "not on the sites' network (allowed: 172.18.0.0/16)",
            ),
            ("::ffff:127.0.0.1", "the server itself"),
        ] {
            let got = a.refusal(&bad.parse().unwrap()).unwrap_or_default();
            assert!(got.contains(why), "{bad}: {got}");
        }
        // No network yet (no site started): nothing is routed.
        let none = AllowedNetworks::new(&[], &[], &[]);
        assert!(none
            .refusal(&"172.18.0.5".parse().unwrap())
            .unwrap()
            .contains("does not exist"));
        // Listed networks replace the default; the server stays refused
        // unless its very address is listed.
        let listed = AllowedNetworks::new(
            &[
                "10.0.0.0/8".parse().unwrap(),
                "127.0.0.1/32".parse().unwrap(),
            ],
            &[subnet],
            &ips(&["10.0.0.1"]),
        );
        assert!(listed.contains(&"10.1.2.3".parse().unwrap()));
        assert!(listed.contains(&"127.0.0.1".parse().unwrap()));
        assert!(!listed.contains(&"127.0.0.2".parse().unwrap()));
        assert!(!listed.contains(&"10.0.0.1".parse().unwrap()));
        assert!(!listed.contains(&"172.18.0.5".parse().unwrap()));
    }

    /// etcd's keys and values, each written `key => value`.
    fn kvs(pairs: &[&str]) -> BTreeMap<String, Vec<u8>> {
        pairs
            .iter()
            .map(|kv| {
                let (k, v) = kv.split_once(" => ").unwrap();
                (k.to_string(), v.as_bytes().to_vec())
            })
            .collect()
    }

    /// The routing table and problems of etcd's `pairs` (see [`kvs`])
    /// under `prefix`, outside a fleet.
    fn desired_from(prefix: &str, pairs: &[&str]) -> Desired {
        desired(&Schema::new(prefix), &kvs(pairs), &allowed())
    }

    fn route(s: &str) -> Entry {
        Entry::Route(s.parse().unwrap())
    }

    #[test]
    fn routed_site_gets_its_address_and_a_www_redirect() {
        let want = desired_from(
            "",
            &[
                r#"/services/static/a.example.com => {"ip":"10.0.0.5","port":"80"}"#,
                r#"/sites/a.example.com => {"kind":"static","aliases":["a.example.org"]}"#,
            ],
        );
        assert!(want.problems.is_empty(), "{:?}", want.problems);
        assert_eq!(want.map["a.example.com"], route("10.0.0.5:80"));
        assert_eq!(
            want.map["www.a.example.com"],
            Entry::Redirect(d("a.example.com"))
        );
        assert_eq!(
            want.map["a.example.org"],
            Entry::Redirect(d("a.example.com"))
        );
        assert_eq!(want.sites[0].state, SiteState::Routed);
    }

    #[test]
    fn declared_site_without_registration_is_down_not_unknown() {
        let want = desired_from(
            "/hy",
            &[r#"/hy/sites/b.example.com => {"kind":"wordpress"}"#],
        );
        assert_eq!(want.map["b.example.com"], Entry::Down);
        assert_eq!(want.sites[0].state, SiteState::Down);
        assert_eq!(want.sites[0].kind, Some(SiteKind::Wordpress));
    }

    #[test]
    fn bad_data_is_skipped_with_its_key_and_others_still_route() {
        let s = Schema::new("");
        let want = desired(
            &s,
            &kvs(&[
                r#"/services/static/good.example.com => {"ip":"10.0.0.1","port":80}"#,
                r#"/services/static/bad.example.com => not json"#,
                r#"/services/static/far.example.com => {"ip":"8.8.8.8","port":80}"#,
                r#"/services/static/Bad Domain => {"ip":"10.0.0.2","port":80}"#,
                r#"/services/php/x.example.com => {"ip":"10.0.0.3","port":80}"#,
                r#"/services/static/two.example.com => {"ip":"10.0.0.4","port":80}"#,
                r#"/services/wordpress/two.example.com => {"ip":"10.0.0.5","port":80}"#,
                r#"/sites/junk.example.com => {"#,
                r#"/unrelated => x"#,
            ]),
            &allowed(),
        );
        assert_eq!(want.map["good.example.com"], route("10.0.0.1:80"));
        // Registered but unusable: known, so the 503 page, never another site.
        assert_eq!(want.map["bad.example.com"], Entry::Down);
        assert_eq!(want.map["far.example.com"], Entry::Down);
        assert!(!want.map.contains_key("two.example.com"));
        assert!(!want.map.contains_key("x.example.com"));
        let keys: BTreeSet<&str> = want.problems.iter().map(|p| p.key.as_str()).collect();
        for k in [
            "/services/static/bad.example.com",
            "/services/static/far.example.com",
            "/services/static/Bad Domain",
            "/services/php/x.example.com",
            "/services/static/two.example.com",
            "/services/wordpress/two.example.com",
            "/sites/junk.example.com",
        ] {
            assert!(keys.contains(k), "{k} missing from {keys:?}");
        }
        let two = want
            .sites
            .iter()
            .find(|s| s.domain.as_str() == "two.example.com")
            .unwrap();
        assert_eq!(two.state, SiteState::Conflict);
    }

    /// In a fleet, a peer's registration goes to that peer's frontend,
    /// whatever address it names (that address is on the peer's own sites'
    /// network, where this server may have another container); one by a
    /// server that is no peer is refused; this server's own is judged as
    /// ever. Without a fleet, `node` changes nothing.
    #[test]
    fn a_peers_registration_is_forwarded_to_that_peer_only() {
        let s = Schema::new("");
        let fleet = allowed().with_fleet(
            "n1",
            vec![("n2".into(), "192.0.2.12:8405".parse().unwrap())],
        );
        let keys = kvs(&[
            r#"/services/static/mine.example.com => {"ip":"10.0.0.5","port":"80","node":"n1"}"#,
            r#"/services/static/theirs.example.com => {"ip":"10.0.0.5","port":"80","node":"n2"}"#,
            r#"/services/static/stray.example.com => {"ip":"10.0.0.5","port":"80","node":"n9"}"#,
            r#"/services/static/old.example.com => {"ip":"10.0.0.6","port":"80"}"#,
        ]);
        let want = desired(&s, &keys, &fleet);
        assert_eq!(want.map["mine.example.com"], route("10.0.0.5:80"));
        assert_eq!(
            want.map["theirs.example.com"],
            Entry::Peer("192.0.2.12:8405".parse().unwrap())
        );
        assert_eq!(want.map["stray.example.com"], Entry::Down);
        assert_eq!(want.map["old.example.com"], route("10.0.0.6:80"));
        assert_eq!(want.problems.len(), 1, "{:?}", want.problems);
        assert!(
            want.problems[0]
                .message
                .contains("\"n9\", which is not in fleet.peers"),
            "{:?}",
            want.problems
        );
        let alone = desired(&s, &keys, &allowed());
        assert_eq!(alone.map["theirs.example.com"], route("10.0.0.5:80"));
        assert!(alone.problems.is_empty());
    }

    #[test]
    fn declaration_settles_a_kind_conflict() {
        let want = desired_from(
            "",
            &[
                r#"/services/static/two.example.com => {"ip":"10.0.0.4","port":80}"#,
                r#"/services/wordpress/two.example.com => {"ip":"10.0.0.5","port":80}"#,
                r#"/sites/two.example.com => {"kind":"wordpress"}"#,
            ],
        );
        assert_eq!(want.map["two.example.com"], route("10.0.0.5:80"));
        assert_eq!(want.problems.len(), 1);
        assert_eq!(want.problems[0].key, "/services/static/two.example.com");
        // A kind change: the status line names the way out.
        assert!(
            want.problems[0].message.contains(
                "`systemctl stop wordpress@two.example.com.service`, then \
                 `hostyard site forget two.example.com`"
            ),
            "{}",
            want.problems[0].message
        );
    }

    #[test]
    fn a_site_named_like_an_alias_wins_and_shared_aliases_are_skipped() {
        let want = desired_from(
            "",
            &[
                r#"/services/static/example.com => {"ip":"10.0.0.1","port":80}"#,
                r#"/services/static/www.example.com => {"ip":"10.0.0.2","port":80}"#,
                r#"/sites/a.example.net => {"kind":"static","aliases":["shared.example.net"]}"#,
                r#"/sites/b.example.net => {"kind":"static","aliases":["shared.example.net"]}"#,
            ],
        );
        assert_eq!(want.map["www.example.com"], route("10.0.0.2:80"));
        assert!(!want.map.contains_key("shared.example.net"));
        assert_eq!(want.problems.len(), 2);
    }

    #[test]
    fn mass_removal_needs_both_the_fraction_and_the_minimum() {
        let mut cur = HostMap::new();
        for i in 0..10 {
            cur.insert(format!("s{i}.example.com"), route("10.0.0.1:80"));
        }
        let mut next = cur.clone();
        for i in 0..5 {
            next.insert(format!("s{i}.example.com"), Entry::Down);
        }
        assert!(
            !is_mass_removal(&cur, &next, 0.5, 3),
            "exactly half is not more than half"
        );
        next.insert("s5.example.com".into(), Entry::Down);
        assert!(is_mass_removal(&cur, &next, 0.5, 3));
        assert!(is_mass_removal(&cur, &HostMap::new(), 0.5, 3));
        // One site of one stopping is a normal stop.
        let one: HostMap = [("a.example.com".to_string(), route("10.0.0.1:80"))].into();
        assert!(!is_mass_removal(&one, &HostMap::new(), 0.5, 3));
        // A move is not a removal.
        let moved: HostMap = cur
            .keys()
            .map(|k| (k.clone(), route("10.0.0.2:80")))
            .collect();
        assert!(!is_mass_removal(&cur, &moved, 0.5, 3));
    }

    proptest! {
        #[test]
        fn arbitrary_etcd_content_never_panics(
            entries in proptest::collection::vec(("\\PC{0,40}", proptest::collection::vec(any::<u8>(), 0..60)), 0..20)
        ) {
            let s = Schema::new("");
            let kv: BTreeMap<String, Vec<u8>> = entries
                .into_iter()
                .map(|(k, v)| (format!("/services/{k}"), v))
                .collect();
            let want = desired(&s, &kv, &allowed());
            for (host, entry) in &want.map {
                prop_assert!(Domain::parse(host).is_ok());
                prop_assert_eq!(Entry::parse_map_value(&entry.map_value()), Some(entry.clone()));
            }
        }
    }
}
