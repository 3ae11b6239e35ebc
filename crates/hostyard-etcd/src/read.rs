//! Consistent reads of a prefix or a range: one snapshot, page by page.
//! confd's watch starts from one; `hostyard status` reads the routing once.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Client, GetOptions};
use hostyard_core::etcd::{prefix_end, Schema};

/// Keys of the first page of a full read; the pages after it are sized by
/// bytes ([`next_page`]).
const PAGE: i64 = 1000;

/// What a page after the first aims at: half gRPC's 4 MB message
/// limit, and few pages. Each page costs etcd a walk over every key left in
/// the range (it counts them for its answer), so pages of 1,000 keys made
/// a read of 200,000 keys quadratic: 26 s on 2 loaded cores. A page of
/// values far larger than the last page's could still pass the limit.
const PAGE_BYTES: usize = 2 << 20;

/// At most this many keys a page, whatever their size.
const PAGE_MAX: i64 = 50_000;

/// The size of the next page, from the last one (`keys` keys in `bytes`
/// bytes): about [`PAGE_BYTES`], never fewer keys than `first`, the page
/// the read began with (it stays under the limit for the caller's values).
pub fn next_page(first: i64, keys: usize, bytes: usize) -> i64 {
    let per_key = (bytes / keys.max(1)).max(1);
    ((PAGE_BYTES / per_key) as i64).clamp(first, PAGE_MAX.max(first))
}

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
    let first = page;
    let mut page = page;
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
        let (mut keys, mut bytes) = (0, 0);
        for kv in resp.take_kvs() {
            let (key, value) = kv.into_key_value();
            keys += 1;
            bytes += key.len() + value.len();
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
                page = next_page(first, keys, bytes);
            }
            _ => return Ok((kvs, revision)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_grow_to_about_two_megabytes_and_never_shrink_below_the_first() {
        // Routing keys of about 90 bytes: 23,301 a page, not 1,000.
        assert_eq!(next_page(PAGE, 1000, 90_000), 23_301);
        // Tiny values: capped.
        assert_eq!(next_page(PAGE, 1000, 1000), PAGE_MAX);
        // Certificate bundles of 40 kB: the first page's 100 keys stay.
        assert_eq!(next_page(BUNDLE_PAGE, 100, 4_000_000), BUNDLE_PAGE);
        // Bundles of 5 kB: 419 a page (2 MB).
        assert_eq!(next_page(BUNDLE_PAGE, 100, 500_000), 419);
        assert_eq!(next_page(PAGE, 0, 0), PAGE_MAX);
    }
}
