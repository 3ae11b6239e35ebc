//! `hostyard site owner|claim|transfer` and the claim of `hostyard
//! restore`: which server owns a site (`{prefix}/owners/<domain>`).
//!
//! Only the owner's discovery registers the site and only the owner
//! publishes its certificate, so the owner record is what keeps a second
//! copy of a site (a restore on another server, a move's target) out of
//! routing. It changes hands here, always in one transaction that compares
//! the owner key with what was read ([`hostyard_core::owner`] decides); a
//! server whose registration is live yields only to an explicit take-over.

use anyhow::{anyhow, bail, Result};
use etcd_client::{Client, Compare, CompareOp, Txn, TxnOp};
use hostyard_config::NodeConfig;
use hostyard_core::etcd::{parse_owner, Schema};
use hostyard_core::owner::{decide_claim, decide_transfer, Claim, Transfer};
use hostyard_core::{Domain, SiteKind};

use crate::site::bounded;

/// What a claim or a transfer did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Changed {
    /// Nobody owned it; `to` does now.
    Created,
    /// `to` owned it already.
    Unchanged,
    /// It was `from`'s; `live`: `from` served it (a take-over).
    Moved { from: String, live: bool },
}

impl Changed {
    /// One line for the operator.
    pub fn describe(&self, domain: &Domain, to: &str) -> String {
        match self {
            Changed::Created => format!("{domain} had no owner: server {to} owns it now"),
            Changed::Unchanged => format!("{domain} is owned by server {to} already"),
            Changed::Moved { from, live: true } => format!(
                "{domain} taken over from server {from}, which served it: server {to} owns it now \
                 (discovery on {from} stops registering it within a third of its lease)"
            ),
            Changed::Moved { from, live: false } => {
                format!("{domain} moved from server {from} to server {to}")
            }
        }
    }
}

/// What etcd says about a site's ownership.
struct Facts {
    owner: Option<String>,
    /// The registrations of any kind: someone serves the site now.
    live: Vec<String>,
}

/// A connected client and the keys of one site.
struct Site<'a> {
    client: Client,
    schema: Schema,
    domain: &'a Domain,
}

impl<'a> Site<'a> {
    async fn open(config: &NodeConfig, domain: &'a Domain) -> Result<Site<'a>> {
        let client =
            hostyard_etcd::connect_within(&config.etcd, hostyard_etcd::COMMAND_TIMEOUT).await?;
        Ok(Site {
            client,
            schema: Schema::new(&config.etcd.prefix),
            domain,
        })
    }

    fn owner_key(&self) -> String {
        self.schema.owner_key(self.domain)
    }

    fn service_keys(&self) -> Vec<String> {
        SiteKind::ALL
            .iter()
            .map(|k| self.schema.service_key(*k, self.domain))
            .collect()
    }

    async fn facts(&mut self) -> Result<Facts> {
        let key = self.owner_key();
        let got = bounded("get", self.client.get(key.as_str(), None)).await?;
        let owner = match got.kvs().first() {
            None => None,
            Some(kv) => Some(parse_owner(kv.value()).map_err(|e| {
                anyhow!(
                    "{key} holds {e}; set it with `hostyard site claim {} --take-over`",
                    self.domain
                )
            })?),
        };
        let mut live = Vec::new();
        for key in self.service_keys() {
            let got = bounded("get", self.client.get(key.as_str(), None)).await?;
            if !got.kvs().is_empty() {
                live.push(key);
            }
        }
        Ok(Facts { owner, live })
    }

    /// Makes `to` the owner in one transaction, on the facts read: the
    /// owner key must still hold `from` (or be absent for `None`), and,
    /// unless `take_over`, no registration may have appeared meanwhile.
    async fn write(&mut self, from: Option<&str>, to: &str, take_over: bool) -> Result<()> {
        let key = self.owner_key();
        let mut when = vec![match from {
            None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            Some(from) => Compare::value(key.as_str(), CompareOp::Equal, from),
        }];
        if !take_over && from.is_some_and(|f| f != to) {
            for service in self.service_keys() {
                when.push(Compare::version(service.as_str(), CompareOp::Equal, 0));
            }
        }
        let txn = Txn::new()
            .when(when)
            .and_then([TxnOp::put(key.as_str(), to, None)]);
        let done = bounded("txn", self.client.txn(txn)).await?;
        if !done.succeeded() {
            bail!(
                "{key} or {}'s registration changed meanwhile; nothing was changed: run the command again",
                self.domain
            );
        }
        Ok(())
    }
}

/// The server that owns `domain`, if any.
pub fn owner(config: &NodeConfig, domain: &Domain) -> Result<Option<String>> {
    hostyard_etcd::block_on(async {
        let mut site = Site::open(config, domain).await?;
        Ok(site.facts().await?.owner)
    })
}

/// The refusal of a claim or transfer, naming the command that overrides it.
fn refused(domain: &Domain, owner: &str, live: &[String], again: &str) -> anyhow::Error {
    anyhow!(
        "{domain} is owned by server {owner}, which serves it now ({} is registered): refused. \
         Stop it on {owner} first, or take it over (its copy on {owner} leaves routing): {again}",
        live.join(", ")
    )
}

/// Makes this server (`config`'s node name) the owner of `domain`.
/// `again` is the command the refusal names for a take-over. With `check`,
/// only decides: nothing is written (a restore asks before it restores).
pub fn claim(
    config: &NodeConfig,
    domain: &Domain,
    take_over: bool,
    check: bool,
    again: &str,
) -> Result<Changed> {
    let me = config.node_name();
    hostyard_etcd::block_on(async {
        let mut site = Site::open(config, domain).await?;
        let facts = site.facts().await?;
        let decision = decide_claim(
            &me,
            facts.owner.as_deref(),
            !facts.live.is_empty(),
            take_over,
        );
        let changed = match decision {
            Claim::Refuse { owner } => return Err(refused(domain, &owner, &facts.live, again)),
            Claim::Ours => return Ok(Changed::Unchanged),
            Claim::Create => Changed::Created,
            Claim::Move { from } => Changed::Moved {
                live: !facts.live.is_empty(),
                from,
            },
        };
        if !check {
            let from = match &changed {
                Changed::Moved { from, .. } => Some(from.as_str()),
                _ => None,
            };
            site.write(from, &me, take_over).await?;
        }
        Ok(changed)
    })
}

/// Hands `domain` from server `from` to server `to` (a move's switch), in
/// one transaction `owner == from` → `to`.
pub fn transfer(
    config: &NodeConfig,
    domain: &Domain,
    from: &str,
    to: &str,
    take_over: bool,
) -> Result<Changed> {
    hostyard_etcd::block_on(async {
        let mut site = Site::open(config, domain).await?;
        let facts = site.facts().await?;
        let live = !facts.live.is_empty();
        match decide_transfer(facts.owner.as_deref(), from, to, live, take_over) {
            Transfer::Done => Ok(Changed::Unchanged),
            Transfer::Refuse { owner } => Err(refused(
                domain,
                &owner,
                &facts.live,
                &format!("hostyard site transfer {domain} --from {from} --to {to} --take-over"),
            )),
            Transfer::Move { from: None } => {
                site.write(None, to, take_over).await?;
                Ok(Changed::Created)
            }
            Transfer::Move { from: Some(owner) } => {
                // The named source hands over while it serves (the move's
                // switch); a third server yields only as a claim would.
                let force = take_over || owner == from;
                site.write(Some(&owner), to, force).await?;
                Ok(Changed::Moved { from: owner, live })
            }
        }
    })
}
