//! The etcd side: one full read, then a watch from the next revision; on
//! any break (error, cancel, compaction, etcd restart) a fresh full read.
//! The result is a stream of [`Feed`] messages, so the rest of confd never
//! sees a connection and can never keep a view that silently went stale.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{EventType, WatchOptions};
use hostyard_config::EtcdConfig;
use hostyard_core::etcd::Schema;
use hostyard_etcd::{connect, read_routing};
use tokio::sync::mpsc;

#[derive(Debug)]
pub enum Feed {
    /// Everything under the prefix at `revision`: replaces the whole view.
    Snapshot {
        kvs: BTreeMap<String, Vec<u8>>,
        revision: i64,
    },
    /// Changes in one watch response, in order.
    Changes {
        changes: Vec<(String, Option<Vec<u8>>)>,
        revision: i64,
    },
    /// etcd went away; the view is kept (last good) until the next snapshot.
    Lost(String),
}

/// Runs forever: sends a snapshot, then changes, then on a break `Lost` and
/// a new snapshot once etcd answers again. Ends when the receiver is gone.
/// Only the keys routing depends on ([`Schema::routing_range`]).
pub async fn run(etcd: EtcdConfig, schema: Schema, tx: mpsc::Sender<Feed>) {
    let mut backoff = Duration::from_millis(100);
    let mut reported = false;
    loop {
        let mut established = false;
        let why = match session(&etcd, &schema, &tx, &mut established).await {
            Ok(()) => return,
            Err(e) => e,
        };
        if established {
            // The last session worked: this is a new outage, report it and
            // retry fast.
            reported = false;
            backoff = Duration::from_millis(100);
        }
        if !reported {
            if tx.send(Feed::Lost(format!("{why:#}"))).await.is_err() {
                return;
            }
            reported = true;
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(Duration::from_secs(2));
    }
}

/// One connection's life. `Ok(())` only when confd is shutting down.
async fn session(
    etcd: &EtcdConfig,
    schema: &Schema,
    tx: &mpsc::Sender<Feed>,
    established: &mut bool,
) -> anyhow::Result<()> {
    let mut client = connect(etcd).await?;
    let (kvs, revision) = read_routing(&mut client, schema).await?;
    if tx.send(Feed::Snapshot { kvs, revision }).await.is_err() {
        return Ok(());
    }
    *established = true;
    let (start, end) = schema.routing_range();
    let options = WatchOptions::new()
        .with_range(end)
        .with_start_revision(revision + 1);
    let mut stream = client.watch(start, Some(options)).await?;
    loop {
        let resp = match stream.message().await {
            Ok(Some(resp)) => resp,
            Ok(None) => anyhow::bail!("etcd closed the watch"),
            Err(e) => anyhow::bail!("the watch broke: {e}"),
        };
        if resp.canceled() {
            anyhow::bail!(
                "etcd cancelled the watch (compact revision {}): {}",
                resp.compact_revision(),
                resp.cancel_reason()
            );
        }
        let revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        let changes: Vec<(String, Option<Vec<u8>>)> = resp
            .events()
            .iter()
            .filter_map(|ev| {
                let kv = ev.kv()?;
                let key = String::from_utf8_lossy(kv.key()).into_owned();
                Some(match ev.event_type() {
                    EventType::Put => (key, Some(kv.value().to_vec())),
                    EventType::Delete => (key, None),
                })
            })
            .collect();
        if changes.is_empty() {
            continue;
        }
        if tx.send(Feed::Changes { changes, revision }).await.is_err() {
            return Ok(());
        }
    }
}
