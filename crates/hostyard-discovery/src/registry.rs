//! The site's entries in etcd: the persistent declaration and the leased
//! registration.
//!
//! The registration lives under a lease so that a dead discovery process or a
//! vanished server takes the site out of routing by itself. This module keeps
//! etcd equal to what the health policy wants (`desired`), and survives etcd
//! going away: any failed call drops the lease it knew, and the next attempt
//! (after a backoff) grants a fresh lease and puts the value again, so a lease
//! that expired while etcd was unreachable is never relied on.
//!
//! Only the site's owner registers it: every put of the registration is a
//! transaction that compares `{prefix}/owners/<domain>` with this server's
//! node name (or, when no server owns the site yet, creates it naming this
//! one, in the same transaction). So a second copy of the site on another
//! server never takes its routing, and a server that lost the site (taken
//! over, moved) notices at its next keep-alive and stops: [`NotOwner`].

use std::time::Duration;

use etcd_client::{
    Client, Compare, CompareOp, LeaseKeepAliveStream, LeaseKeeper, PutOptions, Txn, TxnOp,
    TxnOpResponse,
};
use hostyard_config::NodeConfig;
use hostyard_core::etcd::{owner_or_raw, Schema, ServiceValue, SiteDecl};
use hostyard_core::owner::may_write;
use hostyard_core::{Domain, SiteKind};
use hostyard_log::log;

/// Every etcd call is bounded by this: a partitioned etcd must not stall
/// the health loop (or a stop) for longer.
pub const CALL_TIMEOUT: Duration = Duration::from_secs(2);

/// Connects lazily: the client is made even when etcd is down, and calls
/// fail (bounded by [`CALL_TIMEOUT`]) until it is back.
pub async fn connect(config: &NodeConfig) -> anyhow::Result<Client> {
    Ok(hostyard_etcd::connect(&config.etcd).await?)
}

/// Runs one etcd call with the deadline.
async fn bounded<T>(
    what: &str,
    call: impl std::future::Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    hostyard_etcd::bounded(what, CALL_TIMEOUT, call).await
}

/// What the declaration step found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Declared {
    /// Written now, or already there for this kind.
    Ours,
    /// Another kind declares this domain; left as it is.
    Conflict(String),
}

/// Another server owns the site: this one must not register it. The one
/// line an operator reads in the unit's failure.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "{domain} is owned by server {owner} ({owner_key}), not by this server ({me}): \
     not registering it here. Stop it here, or to serve it from this server instead: \
     hostyard site claim {domain} --take-over, then systemctl restart {unit}"
)]
pub struct NotOwner {
    pub domain: Domain,
    pub owner: String,
    pub owner_key: String,
    pub me: String,
    pub unit: String,
}

/// The keys of one site and the lease that holds its registration.
pub struct Registrar {
    client: Client,
    kind: SiteKind,
    domain: Domain,
    /// This server's node name: the owner value it writes and compares.
    node: String,
    site_key: String,
    service_key: String,
    owner_key: String,
    ttl_secs: i64,
    lease: Option<Lease>,
    /// The value under the current lease, once put.
    written: Option<ServiceValue>,
    /// Leases we no longer use but have not seen revoked.
    stale: Vec<i64>,
}

struct Lease {
    id: i64,
    keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)>,
}

impl Registrar {
    pub fn new(client: Client, config: &NodeConfig, kind: SiteKind, domain: &Domain) -> Registrar {
        let schema = Schema::new(&config.etcd.prefix);
        Registrar {
            client,
            kind,
            domain: domain.clone(),
            node: config.node_name(),
            site_key: schema.site_key(domain),
            service_key: schema.service_key(kind, domain),
            owner_key: schema.owner_key(domain),
            ttl_secs: i64::try_from(config.discovery.ttl.as_secs()).unwrap_or(i64::MAX),
            lease: None,
            written: None,
            stale: Vec::new(),
        }
    }

    pub fn service_key(&self) -> &str {
        &self.service_key
    }

    /// Whether some value is in etcd under a lease we hold.
    pub fn is_registered(&self) -> bool {
        self.lease.is_some() && self.written.is_some()
    }

    /// Whether the value is in etcd under a live (as far as we know) lease.
    pub fn holds(&self, value: &ServiceValue) -> bool {
        self.lease.is_some() && self.written.as_ref() == Some(value)
    }

    /// Writes the persistent declaration unless one exists. An existing
    /// declaration is never overwritten: its aliases belong to the admin,
    /// and one of another kind is a conflict for a human to settle.
    pub async fn declare(&mut self) -> anyhow::Result<Declared> {
        let decl = SiteDecl {
            kind: self.kind,
            aliases: Vec::new(),
            edge: Default::default(),
            php: Default::default(),
        };
        let txn = Txn::new()
            .when([Compare::version(
                self.site_key.as_str(),
                CompareOp::Equal,
                0,
            )])
            .and_then([TxnOp::put(self.site_key.as_str(), decl.to_json(), None)])
            .or_else([TxnOp::get(self.site_key.as_str(), None)]);
        let response = bounded("declare", self.client.txn(txn)).await?;
        if response.succeeded() {
            return Ok(Declared::Ours);
        }
        let existing = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => get.kvs().first().map(|kv| kv.value().to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        match SiteDecl::parse(&existing) {
            Ok(d) if d.kind == self.kind => Ok(Declared::Ours),
            Ok(d) => Ok(Declared::Conflict(format!(
                "{} declares this domain as a {} site, not {}; left unchanged \
                 (forget the other site first if this one should take over)",
                self.site_key,
                d.kind.as_str(),
                self.kind.as_str()
            ))),
            Err(e) => Ok(Declared::Conflict(format!(
                "{} holds a malformed declaration, left unchanged: {e}",
                self.site_key
            ))),
        }
    }

    /// Puts `value` under our lease, granting a fresh lease if we hold none.
    async fn register(&mut self, value: &ServiceValue) -> anyhow::Result<()> {
        let result = self.try_register(value).await;
        if result.is_err() {
            self.forget_lease();
        }
        result
    }

    async fn try_register(&mut self, value: &ServiceValue) -> anyhow::Result<()> {
        let id = match &self.lease {
            Some(lease) => lease.id,
            None => {
                let granted =
                    bounded("lease grant", self.client.lease_grant(self.ttl_secs, None)).await?;
                self.lease = Some(Lease {
                    id: granted.id(),
                    keeper: None,
                });
                granted.id()
            }
        };
        self.put_as_owner(value, id).await?;
        self.written = Some(value.clone());
        Ok(())
    }

    /// Puts the registration under lease `id` in a transaction that holds
    /// only while this server owns the site; claims it in the same
    /// transaction when nobody does.
    async fn put_as_owner(&mut self, value: &ServiceValue, id: i64) -> anyhow::Result<()> {
        let (owner_key, service_key) = (self.owner_key.as_str(), self.service_key.as_str());
        let put = || {
            TxnOp::put(
                service_key,
                value.to_json(),
                Some(PutOptions::new().with_lease(id)),
            )
        };
        let mut claim = false;
        // Each failed attempt reads the owner it failed on; the next one
        // compares with that. Three rounds cover a claim racing a removal.
        for _ in 0..3 {
            let txn = if claim {
                Txn::new()
                    .when([Compare::version(owner_key, CompareOp::Equal, 0)])
                    .and_then([TxnOp::put(owner_key, self.node.as_str(), None), put()])
            } else {
                Txn::new()
                    .when([Compare::value(
                        owner_key,
                        CompareOp::Equal,
                        self.node.as_str(),
                    )])
                    .and_then([put()])
            }
            .or_else([TxnOp::get(owner_key, None)]);
            let response = bounded("put", self.client.txn(txn)).await?;
            if response.succeeded() {
                if claim {
                    log!(
                        Notice,
                        "{} had no owner: this server ({}) owns it now ({owner_key})",
                        self.domain,
                        self.node
                    );
                }
                return Ok(());
            }
            let owner = self.owner_in(&response)?;
            claim = self.may_write(owner.as_deref())?;
        }
        anyhow::bail!("{owner_key} kept changing while registering; trying again")
    }

    /// The owner a transaction's `else` branch read (`None`: no owner).
    fn owner_in(&self, response: &etcd_client::TxnResponse) -> anyhow::Result<Option<String>> {
        let raw = response.op_responses().into_iter().find_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().map(|kv| kv.value().to_vec())),
            _ => None,
        });
        // A value that is no node name is nobody's: refused like another
        // server's, shown as it is.
        Ok(raw.flatten().map(|raw| owner_or_raw(&raw)))
    }

    /// [`may_write`] for this server, its refusal as a [`NotOwner`] error.
    fn may_write(&self, owner: Option<&str>) -> anyhow::Result<bool> {
        may_write(&self.node, owner).map_err(|owner| {
            anyhow::Error::new(NotOwner {
                domain: self.domain.clone(),
                owner,
                owner_key: self.owner_key.clone(),
                me: self.node.clone(),
                unit: self
                    .kind
                    .instance_unit(hostyard_core::UnitRole::Site, &self.domain),
            })
        })
    }

    /// Fails with [`NotOwner`] when another server owns the site (checked
    /// at start, so that a copy on the wrong server fails at once rather
    /// than when its container first answers).
    pub async fn check_owner(&mut self) -> anyhow::Result<()> {
        let response = bounded("get", self.client.get(self.owner_key.as_str(), None)).await?;
        let owner = response.kvs().first().map(|kv| owner_or_raw(kv.value()));
        self.may_write(owner.as_deref()).map(drop)
    }

    /// Makes etcd hold `desired` (or nothing), then revokes leases we lost
    /// track of. Registering comes first so that moving to a new lease never
    /// leaves a gap in routing.
    pub async fn sync(&mut self, desired: Option<&ServiceValue>) -> anyhow::Result<()> {
        match desired {
            Some(value) if !self.holds(value) => self.register(value).await?,
            Some(_) => {}
            None => {
                if let Some(lease) = self.lease.take() {
                    self.stale.push(lease.id);
                }
                self.written = None;
            }
        }
        self.revoke_stale().await
    }

    /// Whether [`Registrar::sync`] has anything to do.
    pub fn in_sync(&self, desired: Option<&ServiceValue>) -> bool {
        self.stale.is_empty()
            && match desired {
                Some(value) => self.holds(value),
                None => self.lease.is_none(),
            }
    }

    /// Revoking a lease deletes the key attached to it in the same step.
    async fn revoke_stale(&mut self) -> anyhow::Result<()> {
        while let Some(&id) = self.stale.last() {
            match bounded("lease revoke", self.client.lease_revoke(id)).await {
                Ok(_) => {}
                // Expired meanwhile: what it held is gone already.
                Err(e) if e.to_string().contains("lease not found") => {}
                Err(e) => return Err(e),
            }
            self.stale.pop();
        }
        Ok(())
    }

    /// On stop: everything of ours out of etcd now, within `budget`.
    pub async fn withdraw(&mut self, budget: Duration) -> anyhow::Result<()> {
        if let Some(lease) = self.lease.take() {
            self.stale.push(lease.id);
        }
        self.written = None;
        match tokio::time::timeout(budget, self.revoke_stale()).await {
            Ok(r) => r,
            Err(_) => Err(anyhow::anyhow!(
                "etcd did not revoke the lease within {}ms; the registration expires with its lease",
                budget.as_millis()
            )),
        }
    }

    /// Renews the lease, then checks that the key still holds our value
    /// under our lease and puts it back when it does not. An error means
    /// the registration may be gone: the lease is forgotten and the caller
    /// registers again.
    ///
    /// Returns what was put back, for the log. Something else may remove or
    /// replace the key: an operator's `etcdctl`, or a second discovery for
    /// the same key whose lease is revoked when it stops. A lease alone
    /// would keep a key that is no longer there "alive" forever, leaving the
    /// site out of routing; so each keep-alive (one `get`, and at most one
    /// `put`) also proves the key is ours.
    pub async fn keep_alive(&mut self) -> anyhow::Result<Option<String>> {
        let result = match self.try_keep_alive().await {
            Ok(()) => self.restore_if_lost().await,
            Err(e) => Err(e),
        };
        if result.is_err() {
            self.forget_lease();
        }
        result
    }

    async fn restore_if_lost(&mut self) -> anyhow::Result<Option<String>> {
        let (Some(lease), Some(value)) = (&self.lease, self.written.clone()) else {
            return Ok(None);
        };
        let lease_id = lease.id;
        // The key, read only while this server still owns the site: a
        // take-over or a move ends this registration here.
        let txn = Txn::new()
            .when([Compare::value(
                self.owner_key.as_str(),
                CompareOp::Equal,
                self.node.as_str(),
            )])
            .and_then([TxnOp::get(self.service_key.as_str(), None)])
            .or_else([TxnOp::get(self.owner_key.as_str(), None)]);
        let response = bounded("get", self.client.txn(txn)).await?;
        if !response.succeeded() {
            // Removed by hand: claimed again with the put below.
            let owner = self.owner_in(&response)?;
            self.may_write(owner.as_deref())?;
            self.try_register(&value).await?;
            return Ok(Some(format!(
                "{} was removed; this server claimed it again",
                self.owner_key
            )));
        }
        let kvs = response
            .op_responses()
            .into_iter()
            .find_map(|op| match op {
                TxnOpResponse::Get(get) => Some(get.kvs().to_vec()),
                _ => None,
            })
            .unwrap_or_default();
        let found = kvs.first().map(|kv| {
            (
                kv.lease(),
                ServiceValue::parse(kv.value()).ok(),
                String::from_utf8_lossy(kv.value()).into_owned(),
            )
        });
        let lost = match found {
            None => "was removed".to_string(),
            Some((lease, Some(v), _)) if lease == lease_id && v == value => return Ok(None),
            Some((lease, _, raw)) => {
                format!("held {raw:?} under lease {lease:x} instead of ours ({lease_id:x})")
            }
        };
        self.try_register(&value).await?;
        Ok(Some(format!("{} {lost}; put it back", self.service_key)))
    }

    async fn try_keep_alive(&mut self) -> anyhow::Result<()> {
        let Some(lease) = self.lease.as_mut() else {
            return Ok(());
        };
        if lease.keeper.is_none() {
            let pair = bounded("lease keep-alive", self.client.lease_keep_alive(lease.id)).await?;
            lease.keeper = Some(pair);
        }
        let Some((keeper, stream)) = lease.keeper.as_mut() else {
            return Ok(());
        };
        bounded("lease keep-alive", keeper.keep_alive()).await?;
        let answer = bounded("lease keep-alive", stream.message()).await?;
        match answer {
            Some(r) if r.ttl() > 0 => Ok(()),
            Some(_) => Err(anyhow::anyhow!(
                "etcd lease {:x} expired; registering again",
                lease.id
            )),
            None => Err(anyhow::anyhow!("etcd closed the lease keep-alive stream")),
        }
    }

    /// After an error: the lease may have expired or may still hold the
    /// key. Either way the next registration uses a new one, and this one is
    /// revoked once etcd answers again (harmless if it expired).
    fn forget_lease(&mut self) {
        if let Some(lease) = self.lease.take() {
            self.stale.push(lease.id);
        }
        self.written = None;
    }
}
