//! Reading the routing records from etcd: one consistent snapshot of a
//! prefix, page by page. confd's watch starts from it; `hostyard status`
//! reads it once.

use std::collections::BTreeMap;
use std::time::Duration;

use etcd_client::{Certificate, Client, ConnectOptions, GetOptions, Identity, TlsOptions};
use hostyard_config::EtcdConfig;
use hostyard_core::etcd::{prefix_end, Schema};

/// A client of the config's cluster, with its TLS files when it has them.
pub async fn connect(etcd: &EtcdConfig) -> Result<Client, etcd_client::Error> {
    connect_to(etcd, &etcd.endpoints).await
}

/// A client of some of the config's endpoints (`hostyard etcd check` asks
/// each on its own), with the config's TLS files.
pub async fn connect_to(
    etcd: &EtcdConfig,
    endpoints: &[String],
) -> Result<Client, etcd_client::Error> {
    // Keep-alive pings notice a silent network break on an idle watch;
    // no overall request timeout, which would also cut the watch stream.
    let options = ConnectOptions::new()
        .with_connect_timeout(Duration::from_secs(2))
        .with_keep_alive(Duration::from_secs(5), Duration::from_secs(5))
        .with_keep_alive_while_idle(true);
    let options = with_tls(options, etcd)?;
    Client::connect(endpoints, Some(options)).await
}

/// Adds the config's TLS files to `options`: the fleet CA is the only root
/// the members' certificates are checked against, and the server's own
/// certificate is its etcd identity (etcd's --client-cert-auth takes the
/// user from its common name).
pub fn with_tls(
    options: ConnectOptions,
    etcd: &EtcdConfig,
) -> Result<ConnectOptions, etcd_client::Error> {
    Ok(
        match etcd.tls_pem().map_err(etcd_client::Error::InvalidArgs)? {
            None => options,
            Some(pem) => options.with_tls(
                TlsOptions::new()
                    .ca_certificate(Certificate::from_pem(pem.ca))
                    .identity(Identity::from_pem(pem.cert, pem.key)),
            ),
        },
    )
}

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
