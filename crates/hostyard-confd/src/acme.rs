//! ACME in confd: one thread of its own, with its own small runtime, that
//! (a) keeps HAProxy's `acme.map` equal to etcd's challenge keys, on every
//! server, whether or not this one orders (the CA's validation request may
//! reach any server of the fleet), and (b) when `tls.acme` is set, orders
//! and renews the sites' certificates ([`hostyard_tls::acme`]).
//!
//! Why here: confd already has what ACME needs (etcd, the layout,
//! HAProxy's runtime socket) and runs on every server; the certificate
//! thread installs what an order writes, as it installs imported files.
//! Why a thread of its own: an order waits seconds to minutes on a CA, and
//! that must delay neither a routing change nor a certificate install.

use std::time::Duration;

use anyhow::Context;
use etcd_client::{EventType, WatchOptions};
use hostyard_core::config::EtcdConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::{log, Layout, NodeConfig};
use hostyard_tls::acme::{Acme, AcmeStatus, Outcome};
use hostyard_tls::challenges::ChallengeMap;

/// Wait before a new etcd session after one broke.
const RECONNECT: Duration = Duration::from_secs(2);
/// How often a challenge change HAProxy did not take is tried again.
const RETRY_RUNTIME: Duration = Duration::from_secs(1);

/// Starts the ACME thread; it runs for ever.
pub fn spawn(config: &NodeConfig, status: AcmeStatus) -> anyhow::Result<()> {
    let layout = Layout::new(&config.data_root);
    let schema = Schema::new(&config.etcd.prefix);
    let etcd = config.etcd.clone();
    let acme = config.tls.acme.enabled().then(|| {
        Acme::new(
            layout.clone(),
            schema.clone(),
            config.tls.acme.clone(),
            config.node_name(),
            status,
        )
    });
    let every = Duration::from_secs(config.tls.scan_secs);
    std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || {
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(r) => r,
                Err(e) => {
                    log!(Err, "ACME: cannot start the runtime: {e}");
                    return;
                }
            };
            runtime.block_on(async {
                tokio::join!(
                    challenges(&etcd, &schema, &layout),
                    orders(&etcd, acme, every)
                );
            });
        })
        .context("starting the ACME thread")?;
    Ok(())
}

/// Keeps `acme.map` equal to etcd, across broken sessions.
async fn challenges(etcd: &EtcdConfig, schema: &Schema, layout: &Layout) {
    let mut map = ChallengeMap::new(layout.clone());
    let mut last_error = String::new();
    loop {
        let e = match challenge_session(etcd, schema, &mut map).await {
            Ok(()) => return,
            Err(e) => format!("{e:#}"),
        };
        // confd's routing feed reports etcd's troubles; once here is enough.
        if e != last_error {
            log!(Warning, "ACME challenges: {e}; retrying");
            last_error = e;
        }
        tokio::time::sleep(RECONNECT).await;
    }
}

async fn challenge_session(
    etcd: &EtcdConfig,
    schema: &Schema,
    map: &mut ChallengeMap,
) -> anyhow::Result<()> {
    let prefix = schema.acme_challenges_prefix();
    let mut client = hostyard_routing::etcd::connect(etcd).await?;
    let (kvs, revision) = hostyard_routing::etcd::read_all(&mut client, &prefix).await?;
    map.replace(
        kvs.into_iter()
            .filter_map(|(k, v)| k.strip_prefix(&prefix).map(|t| (t.to_string(), v))),
    );
    let mut failing = flush(map, false);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
    let mut tick = tokio::time::interval(RETRY_RUNTIME);
    loop {
        tokio::select! {
            msg = stream.message() => {
                let resp = match msg {
                    Ok(Some(r)) => r,
                    Ok(None) => anyhow::bail!("etcd closed the watch"),
                    Err(e) => anyhow::bail!("the watch broke: {e}"),
                };
                if resp.canceled() {
                    anyhow::bail!("etcd cancelled the watch: {}", resp.cancel_reason());
                }
                for ev in resp.events() {
                    let Some(kv) = ev.kv() else { continue };
                    let key = String::from_utf8_lossy(kv.key());
                    let Some(token) = key.strip_prefix(&prefix) else { continue };
                    match ev.event_type() {
                        EventType::Put => map.set(token, Some(kv.value())),
                        EventType::Delete => map.set(token, None),
                    }
                }
                failing = flush(map, failing);
            }
            _ = tick.tick(), if failing => {
                failing = flush(map, failing);
            }
        }
    }
}

/// Flushes; logs a failure when it starts. Returns whether it fails.
fn flush(map: &mut ChallengeMap, was_failing: bool) -> bool {
    match map.flush() {
        Ok(()) => false,
        Err(e) => {
            if !was_failing {
                log!(Err, "{e:#} (tried again every second)");
            }
            true
        }
    }
}

/// Orders and renews, every `every`, when ACME is configured.
async fn orders(etcd: &EtcdConfig, acme: Option<Acme>, every: Duration) {
    let Some(mut acme) = acme else { return };
    let mut client = loop {
        match hostyard_routing::etcd::connect(etcd).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(RECONNECT).await,
        }
    };
    loop {
        for (domain, outcome) in acme.pass(&mut client).await {
            if outcome == Outcome::Busy {
                log!(
                    Info,
                    "{domain}: another server or process is ordering its certificate"
                );
            }
        }
        tokio::time::sleep(every).await;
    }
}
