//! The etcd side: one full read, then a watch from the next revision; on
//! any break (error, cancel, compaction, etcd restart) a fresh full read.
//! The result is a stream of [`Feed`] messages, so the rest of confd never
//! sees a connection and can never keep a view that silently went stale.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, ConnectOptions, EventType, GetOptions, WatchOptions};
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

pub async fn connect(endpoints: &[String]) -> Result<Client, etcd_client::Error> {
    // Keep-alive pings notice a silent network break on an idle watch;
    // no overall request timeout, which would also cut the watch stream.
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    Client::connect(endpoints, Some(options)).await
}

/// Keys per page of a full read: bounds confd's peak memory and keeps
/// every response far below gRPC's 4 MB message limit, however many sites.
const PAGE: i64 = 1000;

/// The first key after every key starting with `prefix`.
fn prefix_end(prefix: &str) -> Vec<u8> {
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

/// One full read of `prefix`, page by page at one revision (a consistent
/// snapshot, as a single range read would be).
pub async fn read_all(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<(BTreeMap<String, Vec<u8>>, i64)> {
    let end = prefix_end(prefix);
    let mut from = prefix.as_bytes().to_vec();
    let mut revision = 0;
    let mut kvs = BTreeMap::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(PAGE);
        if revision > 0 {
            options = options.with_revision(revision);
        }
        let mut resp = tokio::time::timeout(
            Duration::from_secs(10),
            client.get(from.clone(), Some(options)),
        )
        .await
        .map_err(|_| anyhow::anyhow!("etcd did not answer a read of {prefix} within 10 s"))??;
        if revision == 0 {
            revision = resp.header().map(|h| h.revision()).unwrap_or_default();
        }
        let more = resp.more();
        let mut last = None;
        for kv in resp.take_kvs() {
            let (key, value) = kv.into_key_value();
            last = Some(key.clone());
            // A key that is not UTF-8 cannot be one of ours; keep it lossy
            // so it is reported (with the replacement character), not lost.
            let key = String::from_utf8(key)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            kvs.insert(key, value);
        }
        match last {
            Some(mut key) if more => {
                // The next page starts just after the last key.
                key.push(0);
                from = key;
            }
            _ => return Ok((kvs, revision)),
        }
    }
}

/// Runs forever: sends a snapshot, then changes, then on a break `Lost` and
/// a new snapshot once etcd answers again. Ends when the receiver is gone.
pub async fn run(endpoints: Vec<String>, prefix: String, tx: mpsc::Sender<Feed>) {
    let mut backoff = Duration::from_millis(100);
    let mut reported = false;
    loop {
        let mut established = false;
        let why = match session(&endpoints, &prefix, &tx, &mut established).await {
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
    endpoints: &[String],
    prefix: &str,
    tx: &mpsc::Sender<Feed>,
    established: &mut bool,
) -> anyhow::Result<()> {
    let mut client = connect(endpoints).await?;
    let (kvs, revision) = read_all(&mut client, prefix).await?;
    if tx.send(Feed::Snapshot { kvs, revision }).await.is_err() {
        return Ok(());
    }
    *established = true;
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = client.watch(prefix, Some(options)).await?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefix_end_is_the_next_key_range() {
        assert_eq!(prefix_end("/services/"), b"/services0".to_vec());
        assert_eq!(prefix_end("/"), b"0".to_vec());
    }
}
