//! One etcd prefix kept in step with something of HAProxy's: read whole at
//! one revision, then watched from the next, each batch of changes applied
//! at once, and applied again every second while applying fails (HAProxy
//! restarting, say). ACME's challenges and the edge rules follow this way.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, EventType, WatchOptions};

/// How often a failed apply is tried again.
const RETRY_RUNTIME: Duration = Duration::from_secs(1);

/// What follows a prefix.
pub(crate) trait Follower {
    /// The whole prefix, as read at one revision.
    fn load(&mut self, kvs: BTreeMap<String, Vec<u8>>);
    /// One key under the prefix put (`Some`) or deleted (`None`).
    fn change(&mut self, key: &str, value: Option<&[u8]>);
    /// Applies what changed; logs a failure when it starts (`was_failing`
    /// false). Returns whether it fails.
    fn apply(&mut self, was_failing: bool) -> bool;
}

/// Follows `prefix` with `follower` until the watch ends (an error: the
/// caller connects again).
pub(crate) async fn follow(
    client: &mut Client,
    prefix: &str,
    follower: &mut impl Follower,
) -> anyhow::Result<()> {
    let (kvs, revision) = hostyard_etcd::read_all(client, prefix).await?;
    follower.load(kvs);
    let mut failing = follower.apply(false);
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = client.watch(prefix, Some(options)).await?;
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
                    match ev.event_type() {
                        EventType::Put => follower.change(&key, Some(kv.value())),
                        EventType::Delete => follower.change(&key, None),
                    }
                }
                failing = follower.apply(failing);
            }
            _ = tick.tick(), if failing => {
                failing = follower.apply(failing);
            }
        }
    }
}
