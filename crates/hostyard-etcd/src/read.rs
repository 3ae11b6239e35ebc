//! Consistent reads of a prefix or a range: one snapshot, page by page.
//! confd's watch starts from one; `hostyard status` reads the routing once.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use hostyard_core::etcd::{prefix_end, Schema};

/// Keys per page of a full read: bounds confd's peak memory and keeps
/// every response far below gRPC's 4 MB message limit, however many sites.
const PAGE: i64 = 1000;

/// One full read of `prefix`, page by page at one revision (a consistent
/// snapshot, as a single range read would be).
pub async fn read_all(
    client: &mut Client,
    prefix: &str,
) -> anyhow::Result<(BTreeMap<String, Vec<u8>>, i64)> {
    read_range(client, prefix, &prefix_end(prefix), PAGE).await
}

/// Keys per page of a read of certificate bundles (a few kB each, at
/// most 40 kB on average for a page to stay under gRPC's 4 MB).
pub const BUNDLE_PAGE: i64 = 100;

/// [`read_all`] with `page` keys a page, for large values.
pub async fn read_all_paged(
    client: &mut Client,
    prefix: &str,
    page: i64,
) -> anyhow::Result<(BTreeMap<String, Vec<u8>>, i64)> {
    read_range(client, prefix, &prefix_end(prefix), page).await
}

/// What routing depends on ([`Schema::routing_range`]), read like
/// [`read_all`].
pub async fn read_routing(
    client: &mut Client,
    schema: &Schema,
) -> anyhow::Result<(BTreeMap<String, Vec<u8>>, i64)> {
    let (start, end) = schema.routing_range();
    read_range(client, &start, end.as_bytes(), PAGE).await
}

/// Every key in `[start, end)`, `page` keys at a time, at one revision.
async fn read_range(
    client: &mut Client,
    start: &str,
    end: &[u8],
    page: i64,
) -> anyhow::Result<(BTreeMap<String, Vec<u8>>, i64)> {
    let prefix = start;
    let end = end.to_vec();
    let mut from = start.as_bytes().to_vec();
    let mut revision = 0;
    let mut kvs = BTreeMap::new();
    loop {
        let mut options = GetOptions::new().with_range(end.clone()).with_limit(page);
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
