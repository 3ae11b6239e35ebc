//! The desired routing kept up to date change by change: what [`desired`]
//! computes from all of etcd, recomputed only for the domains a change
//! touches (and the aliases they claim), so a change costs the same with 40
//! sites or 10,000. A property test holds it equal to [`desired`] after
//! any sequence of changes.
//!
//! [`desired`]: crate::desired

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::sync::Arc;

use hostyard_core::etcd::{Schema, ServiceValue, SiteDecl};
use hostyard_core::{Domain, SiteKind, UnitRole};
use hostyard_haproxy::{Entry, HostMap};

use crate::{problem, AllowedNetworks, Problem, Site, SiteState};

/// A registration's kind, address and server (or why its value is
/// unusable).
type Registration = (SiteKind, Result<(SocketAddr, Option<String>), String>);

/// Every key of one domain, parsed, in key order (two keys can name the
/// same domain and kind; as in [`crate::desired`], the last one wins).
/// Sorted vectors, not maps: almost always one entry each, and a map node
/// per domain would cost several times the memory with 10,000 sites.
#[derive(Debug, Default)]
struct DomainKeys {
    /// The registered address, not yet judged against the allowed networks
    /// (they can change while the keys stay).
    services: Vec<(String, Registration)>,
    sites: Vec<(String, Result<SiteDecl, String>)>,
}

/// Puts (`Some`) or removes (`None`) `key` in a vector sorted by key.
fn set_sorted<V>(entries: &mut Vec<(String, V)>, key: &str, value: Option<V>) {
    match (
        entries.binary_search_by(|(k, _)| k.as_str().cmp(key)),
        value,
    ) {
        (Ok(i), Some(v)) => entries[i].1 = v,
        (Ok(i), None) => {
            entries.remove(i);
        }
        (Err(i), Some(v)) => entries.insert(i, (key.to_string(), v)),
        (Err(_), None) => {}
    }
    entries.shrink_to_fit();
}

impl DomainKeys {
    fn is_empty(&self) -> bool {
        self.services.is_empty() && self.sites.is_empty()
    }
}

/// One domain: its keys and what they come to (one map entry per domain,
/// not two: with 10,000 sites every copy of the names counts).
#[derive(Debug, Default)]
struct DomainState {
    keys: DomainKeys,
    out: DomainOut,
}

/// What one domain contributes to the routing.
#[derive(Debug, Default)]
struct DomainOut {
    /// Its own map entry (none for a conflict).
    entry: Option<Entry>,
    /// Shared, so a snapshot for the state file copies pointers only.
    site: Option<Arc<Site>>,
    problems: Vec<Problem>,
}

impl DomainOut {
    /// Names it claims as aliases: its www name and declared aliases (none
    /// for a conflict). Derived, not stored: 10,000 sites would keep 10,000
    /// more names.
    fn claims(&self) -> Vec<Domain> {
        let Some(site) = self.site.as_deref().filter(|_| self.entry.is_some()) else {
            return Vec::new();
        };
        let mut claims: Vec<Domain> = site
            .domain
            .www()
            .into_iter()
            .chain(site.aliases.iter().cloned())
            .filter(|a| a != &site.domain)
            .collect();
        claims.sort();
        claims.dedup();
        claims
    }
}

/// Which hosts changed since the last [`Table::take_changed`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Possibly every host (a full read, new allowed networks).
    All,
    Hosts(BTreeSet<String>),
}

impl Changed {
    pub fn merge(&mut self, other: Changed) {
        match (&mut *self, other) {
            (Changed::All, _) => {}
            (_, Changed::All) => *self = Changed::All,
            (Changed::Hosts(a), Changed::Hosts(b)) => a.extend(b),
        }
    }

    pub fn is_empty(&self) -> bool {
        matches!(self, Changed::Hosts(h) if h.is_empty())
    }
}

/// The desired routing of what etcd holds, updated key by key.
#[derive(Debug)]
pub struct Table {
    schema: Schema,
    allowed: AllowedNetworks,
    domains: BTreeMap<Domain, DomainState>,
    /// Problems of keys that name no domain (a bad key).
    key_problems: BTreeMap<String, Problem>,
    /// Alias name → the sites claiming it, sorted.
    claims: BTreeMap<Domain, Vec<Domain>>,
    /// Alias names claimed by two sites or more, with the problems that
    /// say so. (An alias routed to its one owner is a redirect in `map`.)
    contested: BTreeMap<Domain, Vec<Problem>>,
    map: HostMap,
    /// Each problem with the number of places reporting it.
    problems: BTreeMap<Problem, usize>,
    changed: Changed,
}

impl Table {
    pub fn new(schema: Schema, allowed: AllowedNetworks) -> Table {
        Table {
            schema,
            allowed,
            domains: BTreeMap::new(),
            key_problems: BTreeMap::new(),
            claims: BTreeMap::new(),
            contested: BTreeMap::new(),
            map: HostMap::new(),
            problems: BTreeMap::new(),
            changed: Changed::All,
        }
    }

    /// A table of everything in `kvs` (every host counts as changed).
    /// Consumes `kvs` a chunk at a time: with 10,000 sites, the raw values
    /// and one update's bookkeeping for all of them at once would add
    /// megabytes to confd's peak memory, which it keeps.
    pub fn build(
        schema: Schema,
        allowed: AllowedNetworks,
        kvs: BTreeMap<String, Vec<u8>>,
    ) -> Table {
        const CHUNK: usize = 256;
        let mut t = Table::new(schema, allowed);
        let mut chunk = Vec::with_capacity(CHUNK);
        let mut kvs = kvs.into_iter();
        loop {
            chunk.extend(kvs.by_ref().take(CHUNK));
            if chunk.is_empty() {
                break;
            }
            t.update(chunk.iter().map(|(k, v)| (k.as_str(), Some(v.as_slice()))));
            chunk.clear();
        }
        t.changed = Changed::All;
        t
    }

    pub fn schema(&self) -> &Schema {
        &self.schema
    }

    pub fn allowed(&self) -> &AllowedNetworks {
        &self.allowed
    }

    pub fn map(&self) -> &HostMap {
        &self.map
    }

    /// Every site, in domain order.
    pub fn sites(&self) -> impl Iterator<Item = &Site> {
        self.domains.values().filter_map(|d| d.out.site.as_deref())
    }

    /// Every site, in domain order, without copying one.
    pub fn site_snapshot(&self) -> Vec<Arc<Site>> {
        self.domains
            .values()
            .filter_map(|d| d.out.site.clone())
            .collect()
    }

    /// Every problem, sorted, each once.
    pub fn problems(&self) -> Vec<Problem> {
        self.problems.keys().cloned().collect()
    }

    /// New allowed networks: every registration is judged again.
    pub fn set_allowed(&mut self, allowed: AllowedNetworks) {
        self.allowed = allowed;
        let all: BTreeSet<Domain> = self.domains.keys().cloned().collect();
        self.recompute(all);
        self.changed = Changed::All;
    }

    /// The hosts whose entry may have changed since the last call.
    pub fn take_changed(&mut self) -> Changed {
        std::mem::replace(&mut self.changed, Changed::Hosts(BTreeSet::new()))
    }

    /// Applies changed keys (`None`: deleted), in order.
    pub fn update<'a>(&mut self, changes: impl IntoIterator<Item = (&'a str, Option<&'a [u8]>)>) {
        let services = self.schema.services_prefix();
        let sites = self.schema.sites_prefix();
        let mut dirty = BTreeSet::new();
        for (key, value) in changes {
            if key.starts_with(&services) {
                match self.schema.parse_service_key(key) {
                    Ok((kind, domain)) => {
                        let keys = &mut self.domains.entry(domain.clone()).or_default().keys;
                        let reg = value.map(|raw| {
                            let addr = ServiceValue::parse(raw)
                                .map(|v| (SocketAddr::new(v.ip, v.port), v.node))
                                .map_err(|e| e.to_string());
                            (kind, addr)
                        });
                        set_sorted(&mut keys.services, key, reg);
                        dirty.insert(domain);
                    }
                    Err(e) => self.key_problem(key, value.map(|_| e.to_string())),
                }
            } else if key.starts_with(&sites) {
                match self.schema.parse_site_key(key) {
                    Ok(domain) => {
                        let keys = &mut self.domains.entry(domain.clone()).or_default().keys;
                        let decl = value.map(|raw| SiteDecl::parse(raw).map_err(|e| e.to_string()));
                        set_sorted(&mut keys.sites, key, decl);
                        dirty.insert(domain);
                    }
                    Err(e) => self.key_problem(key, value.map(|_| e.to_string())),
                }
            }
        }
        self.recompute(dirty);
    }

    fn key_problem(&mut self, key: &str, message: Option<String>) {
        if let Some(old) = self.key_problems.remove(key) {
            unref(&mut self.problems, std::slice::from_ref(&old));
        }
        if let Some(message) = message {
            let p = problem(key, message);
            add_ref(&mut self.problems, std::slice::from_ref(&p));
            self.key_problems.insert(key.to_string(), p);
        }
    }

    fn recompute(&mut self, dirty: BTreeSet<Domain>) {
        let mut fresh = Vec::new();
        // Alias names whose verdict may change: a dirty domain's old and
        // new claims, and its own name (a site name wins over an alias).
        let mut affected: BTreeSet<Domain> = BTreeSet::new();
        for domain in dirty {
            let out = match self.domains.get(&domain) {
                Some(d) if !d.keys.is_empty() => {
                    domain_out(&self.schema, &self.allowed, &domain, &d.keys)
                }
                _ => DomainOut::default(),
            };
            if let Some(old) = self.domains.get(&domain) {
                affected.extend(old.out.claims());
            }
            affected.extend(out.claims());
            affected.insert(domain.clone());
            fresh.push((domain, out));
        }
        for alias in &affected {
            // A site's own entry is a route or down, never a redirect.
            if let Some(Entry::Redirect(_)) = self.map.get(alias.as_str()) {
                self.map.remove(alias.as_str());
                self.touch(alias.as_str());
            }
            if let Some(problems) = self.contested.remove(alias) {
                unref(&mut self.problems, &problems);
            }
        }
        for (domain, out) in fresh {
            let old = self
                .domains
                .get_mut(&domain)
                .map(|d| std::mem::take(&mut d.out));
            if let Some(old) = old {
                if old.entry.is_some() {
                    self.map.remove(domain.as_str());
                    self.touch(domain.as_str());
                }
                unref(&mut self.problems, &old.problems);
                for alias in &old.claims() {
                    if let Some(owners) = self.claims.get_mut(alias) {
                        owners.retain(|o| o != &domain);
                        if owners.is_empty() {
                            self.claims.remove(alias);
                        }
                    }
                }
            }
            if let Some(entry) = &out.entry {
                self.map.insert(domain.as_str().to_string(), entry.clone());
                self.touch(domain.as_str());
            }
            add_ref(&mut self.problems, &out.problems);
            for alias in &out.claims() {
                let owners = self.claims.entry(alias.clone()).or_default();
                if let Err(i) = owners.binary_search(&domain) {
                    owners.insert(i, domain.clone());
                }
            }
            match self.domains.get_mut(&domain) {
                Some(d) if d.keys.is_empty() => {
                    self.domains.remove(&domain);
                }
                Some(d) => d.out = out,
                None => {}
            }
        }
        for alias in affected {
            self.resolve_alias(alias);
        }
    }

    /// The alias rule of [`crate::desired`]: a name that is a site itself
    /// stays that site; one claimed by two sites is routed to neither.
    fn resolve_alias(&mut self, alias: Domain) {
        let Some(owners) = self.claims.get(&alias) else {
            return;
        };
        if self
            .domains
            .get(&alias)
            .is_some_and(|d| d.out.entry.is_some())
        {
            return;
        }
        if owners.len() > 1 {
            let names: Vec<&str> = owners.iter().map(|d| d.as_str()).collect();
            let problems: Vec<Problem> = owners
                .iter()
                .map(|owner| {
                    problem(
                        &self.schema.site_key(owner),
                        format!(
                            "alias {alias} is claimed by {}; it is not routed",
                            names.join(", ")
                        ),
                    )
                })
                .collect();
            add_ref(&mut self.problems, &problems);
            self.contested.insert(alias, problems);
            return;
        }
        if let Some(owner) = owners.iter().next() {
            let entry = Entry::Redirect(owner.clone());
            self.map.insert(alias.as_str().to_string(), entry);
            self.touch(alias.as_str());
        }
    }

    fn touch(&mut self, host: &str) {
        if let Changed::Hosts(hosts) = &mut self.changed {
            hosts.insert(host.to_string());
        }
    }
}

fn add_ref(counts: &mut BTreeMap<Problem, usize>, problems: &[Problem]) {
    for p in problems {
        *counts.entry(p.clone()).or_default() += 1;
    }
}

fn unref(counts: &mut BTreeMap<Problem, usize>, problems: &[Problem]) {
    for p in problems {
        if let Some(n) = counts.get_mut(p) {
            *n -= 1;
            if *n == 0 {
                counts.remove(p);
            }
        }
    }
}

/// One domain's entry, verdict, problems and alias claims from its keys:
/// the routing rules, in one place ([`crate::desired`] is a table built
/// from every key at once).
fn domain_out(
    schema: &Schema,
    allowed: &AllowedNetworks,
    domain: &Domain,
    keys: &DomainKeys,
) -> DomainOut {
    let mut problems = Vec::new();
    let mut by_kind: Vec<(SiteKind, Result<Entry, String>)> = Vec::new();
    for (key, (kind, reg)) in &keys.services {
        let reg = match reg {
            Ok((addr, node)) => allowed.judge(*addr, node.as_deref()),
            Err(e) => Err(e.clone()),
        };
        if let Err(e) = &reg {
            problems.push(problem(key, e.clone()));
        }
        by_kind.retain(|(k, _)| k != kind);
        by_kind.push((*kind, reg));
        by_kind.sort_by_key(|(k, _)| *k);
    }
    let mut decl = None;
    for (key, parsed) in &keys.sites {
        match parsed {
            Ok(d) => decl = Some(d),
            Err(e) => problems.push(problem(key, e.clone())),
        }
    }
    if decl.is_none() && by_kind.is_empty() {
        return DomainOut {
            problems,
            ..DomainOut::default()
        };
    }
    let (kind, reg) = match decl {
        Some(decl) => {
            for (other, _) in by_kind.iter().filter(|(k, _)| *k != decl.kind) {
                problems.push(problem(
                    &schema.service_key(*other, domain),
                    format!(
                        "{domain} is declared as {} but also registered as {other}; \
                         this registration is ignored (to make it a {other} site: \
                         `systemctl stop {}`, then `hostyard site forget {domain}`)",
                        decl.kind,
                        decl.kind.instance_unit(UnitRole::Site, domain)
                    ),
                ));
            }
            let reg = by_kind
                .iter()
                .find(|(k, _)| *k == decl.kind)
                .map(|(_, r)| r.clone());
            (Some(decl.kind), reg)
        }
        None if by_kind.len() > 1 => {
            let kinds: Vec<&str> = by_kind.iter().map(|(k, _)| k.as_str()).collect();
            let detail = format!(
                "{domain} is registered under {} kinds ({}) and has no declaration; \
                 none is routed",
                kinds.len(),
                kinds.join(", ")
            );
            for (k, _) in &by_kind {
                problems.push(problem(&schema.service_key(*k, domain), detail.clone()));
            }
            problems.sort();
            problems.dedup();
            return DomainOut {
                entry: None,
                site: Some(Arc::new(Site {
                    domain: domain.clone(),
                    kind: None,
                    address: None,
                    state: SiteState::Conflict,
                    aliases: Vec::new(),
                    detail: Some(detail),
                })),
                problems,
            };
        }
        None => match by_kind.into_iter().next() {
            Some((k, r)) => (Some(k), Some(r)),
            None => (None, None),
        },
    };
    let (entry, state, address, detail) = match reg {
        Some(Ok(entry)) => {
            let address = entry.address();
            (entry, SiteState::Routed, address, None)
        }
        Some(Err(why)) => (Entry::Down, SiteState::Invalid, None, Some(why)),
        None => (
            Entry::Down,
            SiteState::Down,
            None,
            Some("no registration".to_string()),
        ),
    };
    let aliases = decl.map(|d| d.aliases.clone()).unwrap_or_default();
    // The same problem twice from one domain counts once, as in `desired`.
    problems.sort();
    problems.dedup();
    DomainOut {
        entry: Some(entry),
        site: Some(Arc::new(Site {
            domain: domain.clone(),
            kind,
            address,
            state,
            aliases,
            detail,
        })),
        problems,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::desired;
    use proptest::prelude::*;

    fn allowed() -> AllowedNetworks {
        AllowedNetworks::new(&["10.0.0.0/8".parse().unwrap()], &[], &[])
    }

    fn same_as_desired(t: &Table, kvs: &BTreeMap<String, Vec<u8>>) -> Result<(), TestCaseError> {
        let want = desired(&Schema::new(""), kvs, &allowed());
        prop_assert_eq!(t.map(), &want.map);
        prop_assert_eq!(t.sites().cloned().collect::<Vec<_>>(), want.sites);
        prop_assert_eq!(t.problems(), want.problems);
        Ok(())
    }

    /// Keys and values from a small alphabet, so that puts and deletes hit
    /// the same domains, aliases collide, kinds conflict and values break.
    fn key() -> impl Strategy<Value = String> {
        let domain = prop::sample::select(vec![
            "a.example.com",
            "www.a.example.com",
            "b.example.com",
            "A.example.com",
            "c.example.com",
            "bad_name",
        ]);
        let kind = prop::sample::select(vec!["static", "static-git", "wordpress", "nokind"]);
        (0..3usize, kind, domain).prop_map(|(which, kind, domain)| match which {
            0 => format!("/services/{kind}/{domain}"),
            1 => format!("/sites/{domain}"),
            _ => format!("/services/{kind}"),
        })
    }

    fn value() -> impl Strategy<Value = Option<Vec<u8>>> {
        prop::sample::select(vec![
            None,
            Some(r#"{"ip":"10.0.0.5","port":"80"}"#),
            Some(r#"{"ip":"10.0.0.6","port":81}"#),
            Some(r#"{"ip":"192.0.2.1","port":"80"}"#),
            Some(r#"{"kind":"static","aliases":[]}"#),
            Some(r#"{"kind":"static","aliases":["c.example.com","b.example.com"]}"#),
            Some(r#"{"kind":"wordpress","aliases":["c.example.com"]}"#),
            Some(r#"{"kind":"static-git","aliases":["www.a.example.com"]}"#),
            Some("not json"),
        ])
        .prop_map(|v| v.map(|s| s.as_bytes().to_vec()))
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(512))]
        #[test]
        fn after_any_changes_the_table_equals_one_built_from_scratch(
            batches in prop::collection::vec(prop::collection::vec((key(), value()), 1..4), 1..12)
        ) {
            let mut kvs = BTreeMap::new();
            let mut t = Table::new(Schema::new(""), allowed());
            prop_assert_eq!(t.take_changed(), Changed::All, "a new table is all news");
            let mut before = HostMap::new();
            for batch in batches {
                for (k, v) in &batch {
                    match v {
                        Some(v) => kvs.insert(k.clone(), v.clone()),
                        None => kvs.remove(k),
                    };
                }
                t.update(batch.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
                same_as_desired(&t, &kvs)?;
                // Every host whose entry changed is reported as changed.
                let Changed::Hosts(hosts) = t.take_changed() else {
                    panic!("an update reports hosts");
                };
                let after = t.map().clone();
                for host in before.keys().chain(after.keys()) {
                    if before.get(host) != after.get(host) {
                        prop_assert!(hosts.contains(host), "{} changed unreported", host);
                    }
                }
                before = after;
            }
        }
    }
}
