//! `hostyard site forget D`: removes a site's persistent declaration.
//!
//! Discovery writes `/sites/<domain>` the first time a site runs and never
//! overwrites it: the declaration is what lets confd answer 503 (hosted, but
//! down) instead of 404, and it settles which kind a domain is. So when a
//! site changes kind (a static site becomes WordPress), the old declaration
//! wins and the new site is ignored until an operator forgets the old one.
//! This is that command. It refuses while the declared site runs, anywhere
//! in the cluster (its registration is in etcd) or here (its unit is
//! active), and never touches the site's data.

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Result};
use etcd_client::{Compare, CompareOp, Txn, TxnOp};
use hostyard_config::NodeConfig;
use hostyard_core::edge::{BasicAuth, Canonical, EdgeRules, HeadersPreset, PathRedirect};
use hostyard_core::etcd::{Schema, ServiceValue, SiteDecl};
use hostyard_core::{Domain, SiteKind, UnitRole};

/// What `forget` did.
#[derive(Debug, PartialEq, Eq)]
pub enum Forgot {
    /// The declaration was removed; it said this kind (`None`: it was
    /// malformed).
    Declaration(Option<SiteKind>),
    /// There was no declaration.
    Nothing,
}

/// Every etcd call of a command is bounded: a down cluster is one clear
/// line, not a hang.
pub(crate) async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> Result<T> {
    hostyard_etcd::bounded(what, hostyard_etcd::COMMAND_TIMEOUT, call).await
}

/// Whether systemd runs this machine (sd_booted(3)'s test).
fn systemd_runs_here() -> bool {
    Path::new("/run/systemd/system").is_dir()
}

/// Whether `unit` is active on this machine.
pub fn unit_is_active(unit: &str) -> bool {
    systemd_runs_here()
        && Command::new("systemctl")
            .args(["is-active", "--quiet", "--", unit])
            .status()
            .is_ok_and(|s| s.success())
}

/// Removes `domain`'s declaration unless the declared site runs.
pub fn forget(config: &NodeConfig, domain: &Domain) -> Result<Forgot> {
    let schema = Schema::new(&config.etcd.prefix);
    let site_key = schema.site_key(domain);
    hostyard_etcd::block_on(async {
        let mut client =
            hostyard_etcd::connect_within(&config.etcd, hostyard_etcd::COMMAND_TIMEOUT).await?;
        let got = bounded("get", client.get(site_key.as_str(), None)).await?;
        let Some(kv) = got.kvs().first() else {
            return Ok(Forgot::Nothing);
        };
        let revision = kv.mod_revision();
        let kind = SiteDecl::parse(kv.value()).ok().map(|d| d.kind);
        if let Some(kind) = kind {
            let service_key = schema.service_key(kind, domain);
            let reg = bounded("get", client.get(service_key.as_str(), None)).await?;
            if let Some(kv) = reg.kvs().first() {
                let node = ServiceValue::parse(kv.value())
                    .ok()
                    .and_then(|v| v.node)
                    .map(|n| format!(" on server {n}"))
                    .unwrap_or_default();
                bail!(
                    "{domain} runs as a {kind} site{node} ({service_key} is registered): stop it \
                     first with `systemctl stop {}`, then forget it",
                    kind.instance_unit(UnitRole::Site, domain)
                );
            }
            let unit = kind.instance_unit(UnitRole::Site, domain);
            if unit_is_active(&unit) {
                bail!(
                    "{unit} is active here: stop it first with `systemctl stop {unit}`, then forget it"
                );
            }
        }
        // Only the declaration read above: if it changed meanwhile, nothing
        // is deleted.
        let txn = Txn::new()
            .when([Compare::mod_revision(
                site_key.as_str(),
                CompareOp::Equal,
                revision,
            )])
            // The owner goes with the declaration: the site is not hosted
            // anywhere any more, and may come back on any server.
            .and_then([
                TxnOp::delete(site_key.as_str(), None),
                TxnOp::delete(schema.owner_key(domain).as_str(), None),
            ]);
        let done = bounded("delete", client.txn(txn)).await?;
        if !done.succeeded() {
            bail!("{site_key} changed while it was being forgotten; nothing was removed, run the command again");
        }
        Ok(Forgot::Declaration(kind))
    })
}

/// What `hostyard site show` prints: the declaration and the owner.
#[derive(Debug, PartialEq, Eq)]
pub struct Shown {
    pub kind: SiteKind,
    pub aliases: Vec<Domain>,
    pub redirects: Vec<PathRedirect>,
    /// The whole edge rules (canonical name, basic auth, headers too).
    pub edge: EdgeRules,
    pub php: hostyard_core::php::PhpLimits,
    pub owner: Option<String>,
}

/// `domain`'s declaration and owner, or why there is none.
pub fn show(config: &NodeConfig, domain: &Domain) -> Result<Shown> {
    let schema = Schema::new(&config.etcd.prefix);
    hostyard_etcd::block_on(async {
        let mut client =
            hostyard_etcd::connect_within(&config.etcd, hostyard_etcd::COMMAND_TIMEOUT).await?;
        let decl = declaration(&mut client, &schema, domain).await?;
        let owner = owner_of(&mut client, &schema, domain).await?;
        Ok(Shown {
            kind: decl.kind,
            aliases: decl.aliases,
            redirects: decl.edge.redirects.clone(),
            edge: decl.edge,
            php: decl.php,
            owner,
        })
    })
}

/// What `hostyard site set` changes: aliases and path redirects.
#[derive(Debug, Default)]
pub struct SiteChange {
    pub add_aliases: Vec<Domain>,
    pub remove_aliases: Vec<Domain>,
    pub add_redirects: Vec<PathRedirect>,
    /// The `from` paths of the redirects to remove.
    pub remove_redirects: Vec<String>,
    /// The name to serve the site under.
    pub canonical: Option<Canonical>,
    /// Basic auth to set (`Some(Some(_))`) or remove (`Some(None)`).
    pub basic_auth: Option<Option<BasicAuth>>,
    pub headers: Option<HeadersPreset>,
    /// A WordPress site's PHP limits ([`crate::php`]).
    pub php: hostyard_core::php::PhpChange,
}

impl SiteChange {
    pub fn is_empty(&self) -> bool {
        self.add_aliases.is_empty()
            && self.remove_aliases.is_empty()
            && self.add_redirects.is_empty()
            && self.remove_redirects.is_empty()
            && self.canonical.is_none()
            && self.basic_auth.is_none()
            && self.headers.is_none()
            && self.php.is_empty()
    }
}

/// What `set` did: the declaration after it, and whether it changed.
#[derive(Debug, PartialEq, Eq)]
pub struct SiteSet {
    pub decl: SiteDecl,
    pub changed: bool,
}

/// Changes `domain`'s declaration, on this server only when it owns the
/// site (or nobody does yet), in one transaction on everything read: the
/// declaration, the owner and every other site's declaration (so two
/// sites cannot take one alias at once). Every problem of the change is
/// reported at once and nothing is changed.
pub fn set(config: &NodeConfig, domain: &Domain, change: &SiteChange) -> Result<SiteSet> {
    let schema = Schema::new(&config.etcd.prefix);
    let node = config.node_name();
    hostyard_etcd::block_on(async {
        let mut client =
            hostyard_etcd::connect_within(&config.etcd, hostyard_etcd::COMMAND_TIMEOUT).await?;
        let mut decl = declaration(&mut client, &schema, domain).await?;
        let owner = owner_of(&mut client, &schema, domain).await?;
        if let Some(owner) = owner.as_ref().filter(|o| **o != node) {
            bail!(
                "{domain} is owned by server {owner}, not this one ({node}): change it there, \
                 where its certificate is ordered"
            );
        }
        let prefix = schema.sites_prefix();
        let (sites, revision) = hostyard_etcd::read_all(&mut client, &prefix).await?;
        let mut claims = std::collections::BTreeMap::new();
        for (key, value) in &sites {
            let (Ok(site), Ok(other)) = (schema.parse_site_key(key), SiteDecl::parse(value)) else {
                continue;
            };
            if &site == domain {
                // Read again at the revision every compare below holds.
                decl = other;
                continue;
            }
            for alias in site.www().into_iter().chain(other.aliases) {
                claims.entry(alias).or_insert_with(|| site.clone());
            }
        }
        let taken = |name: &Domain| {
            if sites.contains_key(&schema.site_key(name)) {
                Some(hostyard_core::aliases::Taken::Site)
            } else {
                claims
                    .get(name)
                    .map(|s: &Domain| hostyard_core::aliases::Taken::AliasOf(s.clone()))
            }
        };
        let mut problems = Vec::new();
        let mut next = decl.clone();
        match hostyard_core::aliases::decide(
            domain,
            &decl.aliases,
            &change.add_aliases,
            &change.remove_aliases,
            taken,
        ) {
            Ok(aliases) => next.aliases = aliases,
            Err(p) => problems.extend(p),
        }
        match hostyard_core::edge::decide_redirects(
            &decl.edge.redirects,
            &change.add_redirects,
            &change.remove_redirects,
        ) {
            Ok(redirects) => next.edge.redirects = redirects,
            Err(p) => problems.extend(p),
        }
        if let Some(canonical) = change.canonical {
            match canonical.name(domain) {
                Ok(_) => next.edge.canonical = canonical,
                Err(p) => problems.push(p),
            }
        }
        match &change.basic_auth {
            // A new salt each time: setting the same password again is a
            // change too.
            Some(Some(auth)) => next.edge.basic_auth = Some(auth.clone()),
            Some(None) if decl.edge.basic_auth.is_none() => {
                problems.push(format!("{domain} has no basic auth to remove"))
            }
            Some(None) => next.edge.basic_auth = None,
            None => {}
        }
        if let Some(headers) = change.headers {
            next.edge.headers = headers;
        }
        if let Err(p) = crate::php::decide(config, domain, &decl, &change.php, &mut next) {
            problems.extend(p);
        }
        if !problems.is_empty() {
            bail!("nothing changed: {}", problems.join("; "));
        }
        if next == decl {
            return Ok(SiteSet {
                decl,
                changed: false,
            });
        }
        let owner_key = schema.owner_key(domain);
        let txn = Txn::new()
            .when([
                Compare::mod_revision(prefix.as_str(), CompareOp::Less, revision + 1).with_prefix(),
                match &owner {
                    None => Compare::version(owner_key.as_str(), CompareOp::Equal, 0),
                    Some(owner) => {
                        Compare::value(owner_key.as_str(), CompareOp::Equal, owner.as_str())
                    }
                },
            ])
            .and_then([TxnOp::put(schema.site_key(domain), next.to_json(), None)]);
        let done = bounded("txn", client.txn(txn)).await?;
        if !done.succeeded() {
            bail!(
                "a site's declaration or {domain}'s owner changed meanwhile; nothing was \
                 changed: run the command again"
            );
        }
        Ok(SiteSet {
            decl: next,
            changed: true,
        })
    })
}

/// `domain`'s declaration; an error that says how a site gets one when
/// it has none.
async fn declaration(
    client: &mut etcd_client::Client,
    schema: &Schema,
    domain: &Domain,
) -> Result<SiteDecl> {
    let key = schema.site_key(domain);
    let got = bounded("get", client.get(key.as_str(), None)).await?;
    let Some(kv) = got.kvs().first() else {
        bail!(
            "{domain} is not declared: start it first (`systemctl start KIND@{domain}`, KIND one \
             of {}); its discovery declares it",
            SiteKind::ALL
                .iter()
                .map(|k| k.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        );
    };
    let decl = SiteDecl::parse(kv.value()).map_err(|e| {
        anyhow::anyhow!("{key} holds {e}; `hostyard site forget {domain}` and start the site again")
    })?;
    Ok(decl)
}

/// The server that owns `domain`, if any.
async fn owner_of(
    client: &mut etcd_client::Client,
    schema: &Schema,
    domain: &Domain,
) -> Result<Option<String>> {
    let key = schema.owner_key(domain);
    let got = bounded("get", client.get(key.as_str(), None)).await?;
    Ok(got
        .kvs()
        .first()
        .map(|kv| hostyard_core::etcd::owner_or_raw(kv.value())))
}
