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
