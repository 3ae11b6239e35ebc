//! How every hostyard program reaches etcd: one set of connection options
//! (timeouts, keep-alive, TLS), one way to bound a call, one runtime for a
//! one-shot command, and consistent paged reads ([`read`]).
//!
//! A daemon (confd, discovery) and a command (`hostyard status`, `site
//! forget`, the jump box's `fleet` steps) connect the same way, so a
//! network that drops idle connections or an etcd that rejects frequent
//! pings affects them alike and is fixed in one place.

use std::future::Future;
use std::time::Duration;

use anyhow::anyhow;
use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions};
use hostyard_config::{EtcdConfig, EtcdTlsPem};

pub mod read;

pub use read::{read_all, read_all_paged, read_routing, BUNDLE_PAGE};

/// How long a command (`hostyard site`, the jump box's fleet steps) waits
/// for one etcd call before it gives up with one clear line: on a busy
/// server a healthy etcd took more than 3 s to answer one read (a CI run on
/// 2 shared cores).
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(10);

/// How long a TCP and TLS connection to one member may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// Keep-alive pings notice a silent network break (a member's machine
/// gone, a firewall dropping the flow) within about 15 s. Not faster: etcd
/// answers pings more frequent than its --grpc-keepalive-min-time (5 s by
/// default) with GOAWAY. Pings go only while a call or a watch is open;
/// etcd refuses pings on a connection without streams, so an idle command
/// never sends one.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(10);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);

/// The connection options of every client. No overall request timeout:
/// it would also cut a watch or a lease keep-alive stream; a call that
/// must not wait long is wrapped in [`bounded`].
fn options(tls: Option<EtcdTlsPem>) -> ConnectOptions {
    let options = ConnectOptions::new()
        .with_connect_timeout(CONNECT_TIMEOUT)
        .with_keep_alive(KEEP_ALIVE_INTERVAL, KEEP_ALIVE_TIMEOUT)
        .with_keep_alive_while_idle(false);
    match tls {
        None => options,
        // The fleet CA is the only root the members' certificates are
        // checked against, and the client's certificate is its etcd
        // identity (etcd's --client-cert-auth takes the user from its
        // common name).
        Some(pem) => options.with_tls(
            TlsOptions::new()
                .ca_certificate(Certificate::from_pem(pem.ca))
                .identity(Identity::from_pem(pem.cert, pem.key)),
        ),
    }
}

/// A client of the config's cluster, with its TLS files when it has them.
/// The client connects lazily: it is made even while etcd is down, and
/// calls fail until it is back.
pub async fn connect(etcd: &EtcdConfig) -> Result<Client, etcd_client::Error> {
    connect_to(etcd, &etcd.endpoints).await
}

/// A client of some of the config's endpoints (`hostyard etcd check` asks
/// each on its own), with the config's TLS files.
pub async fn connect_to(
    etcd: &EtcdConfig,
    endpoints: &[String],
) -> Result<Client, etcd_client::Error> {
    let tls = etcd.tls_pem().map_err(etcd_client::Error::InvalidArgs)?;
    Client::connect(endpoints, Some(options(tls))).await
}

/// A client of `endpoints` with an identity that is not a server's own
/// (the jump box's root certificate).
pub async fn connect_as(
    endpoints: &[String],
    identity: EtcdTlsPem,
) -> Result<Client, etcd_client::Error> {
    Client::connect(endpoints, Some(options(Some(identity)))).await
}

/// [`connect`] that gives up after `timeout`, with an error naming the
/// endpoints.
pub async fn connect_within(etcd: &EtcdConfig, timeout: Duration) -> anyhow::Result<Client> {
    match tokio::time::timeout(timeout, connect(etcd)).await {
        Ok(client) => Ok(client?),
        Err(_) => Err(anyhow!(
            "etcd at {}: no answer within {} s",
            etcd.endpoints.join(", "),
            timeout.as_secs()
        )),
    }
}

/// Runs one etcd call, giving up after `timeout`: a partitioned etcd must
/// not stall a health loop, a stop or a command for longer. The error names
/// the call (`what`).
pub async fn bounded<T>(
    what: &str,
    timeout: Duration,
    call: impl Future<Output = Result<T, etcd_client::Error>>,
) -> anyhow::Result<T> {
    match tokio::time::timeout(timeout, call).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(anyhow!("etcd {what}: {e}")),
        Err(_) => Err(anyhow!(
            "etcd {what}: no answer within {} s",
            timeout.as_secs()
        )),
    }
}

/// The runtime a program runs its etcd calls on: one thread, the caller's.
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    build(tokio::runtime::Builder::new_current_thread().enable_all())
}

/// [`runtime`] for a process that runs once per site (discovery): blocking
/// work (an HTTP health check) gets at most two helper threads, so each
/// process stays small.
pub fn per_site_runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    build(
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .max_blocking_threads(2),
    )
}

fn build(builder: &mut tokio::runtime::Builder) -> anyhow::Result<tokio::runtime::Runtime> {
    builder
        .build()
        .map_err(|e| anyhow!("cannot start the runtime: {e}"))
}

/// Runs `work` to its end on a [`runtime`] of its own, for a command that
/// is not async.
pub fn block_on<T>(work: impl Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    runtime()?.block_on(work)
}
