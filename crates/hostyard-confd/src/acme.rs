//! ACME in confd: one thread of its own, with its own small runtime, that
//! (a) keeps HAProxy's `acme.map` equal to etcd's challenge keys, on every
//! server, whether or not this one orders (the CA's validation request may
//! reach any server of the fleet), (b) when `tls.acme` is set, orders
//! and renews the sites' certificates ([`hostyard_tls::acme`]), and (c) in
//! a fleet, publishes the hosted sites' certificates to etcd and writes
//! out those the other servers published ([`hostyard_tls::fleet`]): TLS
//! ends on whichever server a request reaches.
//!
//! Why here: confd already has what ACME needs (etcd, the layout,
//! HAProxy's runtime socket) and runs on every server; the certificate
//! thread installs what an order writes, as it installs imported files.
//! Why a thread of its own: an order waits seconds to minutes on a CA, and
//! that must delay neither a routing change nor a certificate install.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use etcd_client::{EventType, WatchOptions};
use hostyard_config::EtcdConfig;
use hostyard_config::NodeConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::{Domain, Layout};
use hostyard_log::log;
use hostyard_tls::acme::{Acme, AcmeStatus, Outcome};
use hostyard_tls::challenges::ChallengeMap;
use hostyard_tls::fleet::{Publisher, Received, Receiver};
use hostyard_tls::wake::Wake;
use hostyard_tls::Trust;

/// Wait before a new etcd session after one broke.
const RECONNECT: Duration = Duration::from_secs(2);

/// Starts the ACME thread; it runs for ever. `in_fleet`: whether this
/// server is part of a fleet now (confd changes it on SIGHUP). `wake`:
/// woken by the routing feed with the sites whose registration appeared,
/// ordered at once; `installed`: woken here when a certificate file was
/// written, so the certificate thread installs it at once.
pub fn spawn(
    config: &NodeConfig,
    status: AcmeStatus,
    in_fleet: Arc<AtomicBool>,
    wake: Arc<Wake>,
    installed: Arc<Wake>,
) -> anyhow::Result<()> {
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
    let publisher = Publisher::new(layout.clone(), schema.clone(), config.node_name());
    let receiver = Receiver::new(layout.clone(), Trust::load(&config.tls.acme.ca_file));
    std::thread::Builder::new()
        .name("acme".into())
        .spawn(move || {
            let runtime = match hostyard_etcd::runtime() {
                Ok(r) => r,
                Err(e) => {
                    log!(Err, "ACME: {e:#}");
                    return;
                }
            };
            // Sites this server hosts whose key in etcd changed to
            // something else than what it serves: the publisher looks again.
            let recheck = Mutex::new(BTreeSet::new());
            runtime.block_on(async {
                tokio::join!(
                    challenges(&etcd, &schema, &layout),
                    certificates(&etcd, &schema, &receiver, &in_fleet, &recheck, &installed),
                    orders(
                        &etcd,
                        acme,
                        publisher,
                        &in_fleet,
                        &recheck,
                        Passes {
                            every,
                            wake: &wake,
                            installed: &installed
                        }
                    )
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
        match challenge_session(etcd, schema, &mut map).await {
            Ok(()) => return,
            Err(e) => after_failure("ACME challenges", e, &mut last_error).await,
        }
    }
}

/// Logs a session's failure once per distinct error (confd's routing feed
/// reports etcd's troubles; once here is enough), then waits before the
/// next attempt.
async fn after_failure(what: &str, error: anyhow::Error, last_error: &mut String) {
    let e = format!("{error:#}");
    if e != *last_error {
        log!(Warning, "{what}: {e}; retrying");
        *last_error = e;
    }
    tokio::time::sleep(RECONNECT).await;
}

async fn challenge_session(
    etcd: &EtcdConfig,
    schema: &Schema,
    map: &mut ChallengeMap,
) -> anyhow::Result<()> {
    let prefix = schema.acme_challenges_prefix();
    let mut client = hostyard_etcd::connect(etcd).await?;
    let mut challenges = Challenges {
        prefix: &prefix,
        map,
    };
    crate::follow::follow(&mut client, &prefix, &mut challenges).await
}

/// etcd's challenge keys followed into HAProxy's challenge map (token ->
/// key authorization).
struct Challenges<'a> {
    prefix: &'a str,
    map: &'a mut ChallengeMap,
}

impl crate::follow::Follower for Challenges<'_> {
    fn load(&mut self, kvs: std::collections::BTreeMap<String, Vec<u8>>) {
        let prefix = self.prefix;
        self.map.replace(
            kvs.into_iter()
                .filter_map(|(k, v)| k.strip_prefix(prefix).map(|t| (t.to_string(), v))),
        );
    }

    fn change(&mut self, key: &str, value: Option<&[u8]>) {
        if let Some(token) = key.strip_prefix(self.prefix) {
            self.map.set(token, value);
        }
    }

    fn apply(&mut self, was_failing: bool) -> bool {
        flush(self.map, was_failing)
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

/// When the ACME thread looks: every `every` at every site (renewals, a
/// site whose registration came while etcd was away), and at once at the
/// sites `wake` names; `installed` is woken when a pass wrote a file.
struct Passes<'a> {
    every: Duration,
    wake: &'a Wake,
    installed: &'a Wake,
}

/// Orders and renews when ACME is configured, and in a fleet publishes
/// what is served, every `every` and when woken: a certificate just
/// obtained is published in the same pass.
async fn orders(
    etcd: &EtcdConfig,
    mut acme: Option<Acme>,
    mut publisher: Publisher,
    in_fleet: &AtomicBool,
    recheck: &Mutex<BTreeSet<Domain>>,
    passes: Passes<'_>,
) {
    let mut client = loop {
        match hostyard_etcd::connect(etcd).await {
            Ok(c) => break c,
            Err(_) => tokio::time::sleep(RECONNECT).await,
        }
    };
    loop {
        // The full pass; then woken passes until the next one is due.
        let next = tokio::time::Instant::now() + passes.every;
        let mut woken = None;
        loop {
            let obtained = match (&mut acme, &woken) {
                (None, _) => false,
                (Some(acme), None) => report(acme.pass(&mut client).await, passes.installed),
                (Some(acme), Some(domains)) => {
                    report(acme.pass_for(&mut client, domains).await, passes.installed)
                }
            };
            if woken.is_none() || obtained {
                if in_fleet.load(Ordering::Relaxed) {
                    for domain in std::mem::take(&mut *lock(recheck)) {
                        publisher.recheck(&domain);
                    }
                    publisher.pass(&mut client).await;
                } else {
                    publisher.reset();
                }
            }
            let left = next.saturating_duration_since(tokio::time::Instant::now());
            // A wake that came during the pass is kept: this wait returns
            // at once with it.
            woken = match passes.wake.wait(left).await {
                Some(domains) if !left.is_zero() => Some(domains),
                // Due: the full pass looks at the woken sites too.
                _ => break,
            };
        }
    }
}

/// Logs what a pass came to; wakes `installed` for the files it wrote.
/// Returns whether it obtained a certificate.
fn report(outcomes: Vec<(Domain, Outcome)>, installed: &Wake) -> bool {
    let mut written = Vec::new();
    for (domain, outcome) in outcomes {
        match outcome {
            Outcome::Busy => log!(
                Info,
                "{domain}: another server or process is ordering its certificate"
            ),
            // NotDue may have written the fleet's certificate.
            Outcome::Obtained | Outcome::NotDue => written.push(domain),
            Outcome::Failed(_) => {}
        }
    }
    let obtained = !written.is_empty();
    if obtained {
        installed.wake(written);
    }
    obtained
}

/// Writes out the certificates other servers published, across broken
/// sessions, while this server is part of a fleet.
async fn certificates(
    etcd: &EtcdConfig,
    schema: &Schema,
    receiver: &Receiver,
    in_fleet: &AtomicBool,
    recheck: &Mutex<BTreeSet<Domain>>,
    installed: &Wake,
) {
    let mut last_error = String::new();
    loop {
        if !in_fleet.load(Ordering::Relaxed) {
            tokio::time::sleep(RECONNECT).await;
            continue;
        }
        match certificate_session(etcd, schema, receiver, in_fleet, recheck, installed).await {
            // It left the fleet; a full read when it joins again.
            Ok(()) => continue,
            Err(e) => after_failure("fleet certificates", e, &mut last_error).await,
        }
    }
}

/// A full read of `tls/certs/`, then the watch. `Ok(())` when the server
/// left the fleet.
async fn certificate_session(
    etcd: &EtcdConfig,
    schema: &Schema,
    receiver: &Receiver,
    in_fleet: &AtomicBool,
    recheck: &Mutex<BTreeSet<Domain>>,
    installed: &Wake,
) -> anyhow::Result<()> {
    let prefix = schema.tls_certs_prefix();
    let mut client = hostyard_etcd::connect(etcd).await?;
    let (kvs, revision) =
        hostyard_etcd::read_all_paged(&mut client, &prefix, hostyard_etcd::BUNDLE_PAGE).await?;
    let done = receiver.replace(
        kvs.into_iter()
            .filter_map(|(k, v)| Some((schema.parse_tls_cert_key(&k).ok()?, v))),
    );
    for (domain, received) in done {
        note(recheck, receiver, installed, domain, &received);
    }
    let options = WatchOptions::new()
        .with_prefix()
        .with_start_revision(revision + 1);
    let mut stream = client.watch(prefix.as_str(), Some(options)).await?;
    let mut tick = tokio::time::interval(RECONNECT);
    loop {
        let resp = tokio::select! {
            msg = stream.message() => match msg {
                Ok(Some(r)) => r,
                Ok(None) => anyhow::bail!("etcd closed the watch"),
                Err(e) => anyhow::bail!("the watch broke: {e}"),
            },
            _ = tick.tick() => {
                if !in_fleet.load(Ordering::Relaxed) {
                    return Ok(());
                }
                continue;
            }
        };
        if resp.canceled() {
            anyhow::bail!("etcd cancelled the watch: {}", resp.cancel_reason());
        }
        for ev in resp.events() {
            let Some(kv) = ev.kv() else { continue };
            let key = String::from_utf8_lossy(kv.key());
            // Never the value in a log line: it holds a private key.
            let Ok(domain) = schema.parse_tls_cert_key(&key) else {
                continue;
            };
            let received = match ev.event_type() {
                EventType::Put => receiver.set(&domain, Some(kv.value())),
                EventType::Delete => receiver.set(&domain, None),
            };
            note(recheck, receiver, installed, domain, &received);
        }
    }
}

/// A site hosted here whose key now holds something else than what it
/// serves goes to the publisher, which puts its own back; a file written
/// or removed wakes the certificate thread, which serves the change now.
fn note(
    recheck: &Mutex<BTreeSet<Domain>>,
    receiver: &Receiver,
    installed: &Wake,
    domain: Domain,
    r: &Received,
) {
    if matches!(r, Received::Stored | Received::Removed) {
        installed.wake([domain.clone()]);
    }
    let worse = match r {
        Received::OwnKept => true,
        Received::Refused(_) => receiver.hosts(&domain),
        Received::Stored | Received::Removed | Received::Unchanged => false,
    };
    if worse {
        lock(recheck).insert(domain);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic elsewhere left a plain set, still whole.
    m.lock().unwrap_or_else(|e| e.into_inner())
}
