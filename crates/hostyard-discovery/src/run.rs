//! The long-running service: check the site, keep etcd following the checks.
//!
//! One task probes on a fixed interval and hands outcomes over a channel;
//! the main loop owns the policy ([`Tracker`]) and etcd ([`Registrar`]), and
//! also answers signals, lease keep-alives and the systemd watchdog. Probes
//! run beside the loop so that a check waiting on a hung container never
//! delays a stop: SIGTERM revokes the lease at once.

use hostyard_log::log;
use std::path::PathBuf;
use std::time::Duration;

use hostyard_config::NodeConfig;
use hostyard_core::etcd::ServiceValue;
use hostyard_core::{Domain, SiteKind};
use sd_notify::NotifyState;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;
use tokio::time::{Instant, MissedTickBehavior};

use crate::health::{Change, Outcome, Tracker};
use crate::probe::{Prober, SITE_PORT};
use crate::registry::{self, Declared, NotOwner, Registrar};

/// How long a stop may spend revoking the lease: the site must be out of
/// routing within a second of SIGTERM.
const WITHDRAW_BUDGET: Duration = Duration::from_millis(900);

/// Until the site first answers, checks come fast and slow down as the wait
/// goes on: discovery starts beside the container and `systemctl start`
/// waits (ExecStartPost) for the first registration, so a whole interval
/// would be added to every start; but twenty sites started at once on two
/// cores must not each ask the docker engine five times a second for as
/// long as the machine is busy. The pause is an eighth of the time waited so far,
/// at least this, at most the configured interval.
const FIRST_ANSWER_MIN_PAUSE: Duration = Duration::from_millis(100);

/// The pause before the next check.
fn probe_pause(answered_once: bool, since_start: Duration, interval: Duration) -> Duration {
    if answered_once {
        interval
    } else {
        (since_start / 8).clamp(FIRST_ANSWER_MIN_PAUSE.min(interval), interval)
    }
}

/// First retry delay after an etcd failure; doubles up to a third of the TTL.
const FIRST_BACKOFF: Duration = Duration::from_millis(250);

pub async fn run(
    config: NodeConfig,
    kind: SiteKind,
    domain: Domain,
    docker_socket: PathBuf,
) -> anyhow::Result<()> {
    let d = &config.discovery;
    let prober = Prober::new(&config, kind, &domain, docker_socket);
    let client = registry::connect(&config).await?;
    let mut registrar = Registrar::new(client, &config, kind, &domain);
    let node = config.node_name();
    // Another server's site fails here at once. An etcd that does not
    // answer yet is not a refusal: every registration checks again.
    if let Err(e) = registrar.check_owner().await {
        if e.is::<NotOwner>() {
            return Err(e);
        }
    }
    let mut tracker = Tracker::new(d.failures);
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let interval = Duration::from_secs(d.interval_secs.max(1));
    let keepalive_every = (d.ttl / 3).max(Duration::from_secs(1));
    let max_backoff = keepalive_every.min(Duration::from_secs(5));
    log!(
        Info,
        "checking container {} on docker network {} (engine {}) every {}s (http path {}); \
         registering {} with a {}s lease",
        prober.container(),
        config.docker.network,
        prober.socket().display(),
        interval.as_secs(),
        d.health_path,
        registrar.service_key(),
        d.ttl.as_secs()
    );
    status("waiting for the first good check");

    let (tx, mut outcomes) = mpsc::channel::<Outcome>(1);
    let probe_task = tokio::spawn(async move {
        let started = Instant::now();
        let mut answered = false;
        loop {
            let outcome = prober.check().await;
            answered |= matches!(outcome, Outcome::Healthy(_));
            if tx.send(outcome).await.is_err() {
                break;
            }
            tokio::time::sleep(probe_pause(answered, started.elapsed(), interval)).await;
        }
    });

    let mut keepalive = tokio::time::interval_at(Instant::now() + keepalive_every, keepalive_every);
    keepalive.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let watchdog = sd_notify::watchdog_enabled();
    let watchdog_every = watchdog
        .map(|w| (w / 2).max(Duration::from_millis(100)))
        .unwrap_or(Duration::from_secs(3600));
    let mut watchdog_tick = tokio::time::interval(watchdog_every);

    let mut declared = false;
    let mut ready = false;
    let mut retry_at: Option<Instant> = None;
    let mut backoff = FIRST_BACKOFF;
    let mut etcd_trouble: Option<String> = None;
    let mut last_failure: Option<String> = None;
    let mut registered_once = false;
    // Set when another server owns the site: the loop ends, the lease goes.
    let mut lost: Option<anyhow::Error> = None;

    loop {
        tokio::select! {
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
            Some(outcome) = outcomes.recv() => {
                report_outcome(&outcome, &tracker, &mut last_failure);
                match tracker.observe(&outcome) {
                    Some(Change::Register(_)) | None => {}
                    Some(Change::Moved { from, to }) => {
                        log!(Notice, "address changed from {from} to {to}");
                    }
                    Some(Change::Remove) => {
                        log!(Warning,
                            "unhealthy {} times in a row: removing from routing",
                            tracker.consecutive_failures()
                        );
                        status("unhealthy: out of routing");
                    }
                }
            }
            _ = keepalive.tick() => {
                match registrar.keep_alive().await {
                    Ok(Some(restored)) => log!(Warning, "{restored}"),
                    Ok(None) => {}
                    Err(e) if e.is::<NotOwner>() => {
                        lost = Some(e);
                        break;
                    }
                    Err(e) => note_trouble(&mut etcd_trouble, &e),
                }
            }
            _ = tokio::time::sleep_until(retry_at.unwrap_or_else(Instant::now)), if retry_at.is_some() => {
                retry_at = None;
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                // The loop is alive and serving: tell systemd.
                let _ = sd_notify::notify(&[NotifyState::Watchdog]);
            }
        }

        let desired = tracker.routed().map(|ip| ServiceValue {
            ip,
            port: SITE_PORT,
            node: Some(node.clone()),
        });
        let needs_declaring = !declared && desired.is_some();
        if retry_at.is_some() || (!needs_declaring && registrar.in_sync(desired.as_ref())) {
            continue;
        }
        let was_held = desired.as_ref().is_some_and(|v| registrar.holds(v));
        let was_registered = registrar.is_registered();
        let result = async {
            if needs_declaring {
                if let Declared::Conflict(why) = registrar.declare().await? {
                    log!(Warning, "conflict: {why}");
                }
                declared = true;
            }
            registrar.sync(desired.as_ref()).await
        }
        .await;
        match result {
            Ok(()) => {
                backoff = FIRST_BACKOFF;
                if etcd_trouble.take().is_some() {
                    log!(Notice, "etcd answers again");
                }
                match &desired {
                    Some(_) if was_held => {}
                    Some(v) => {
                        registered_once = true;
                        log!(Notice, "registered {}:{}", v.ip, v.port);
                        status(&format!("routed at {}:{}", v.ip, v.port));
                        if !ready {
                            ready = true;
                            let _ = sd_notify::notify(&[NotifyState::Ready]);
                        }
                    }
                    None if was_registered => log!(Notice, "removed from routing"),
                    None => {}
                }
            }
            Err(e) if e.is::<NotOwner>() => {
                lost = Some(e);
                break;
            }
            Err(e) => {
                note_trouble(&mut etcd_trouble, &e);
                retry_at = Some(Instant::now() + backoff);
                backoff = (backoff * 2).min(max_backoff);
            }
        }
    }

    probe_task.abort();
    let _ = sd_notify::notify(&[NotifyState::Stopping]);
    match registrar.withdraw(WITHDRAW_BUDGET).await {
        Ok(()) if registered_once => log!(Notice, "stopping: removed from routing"),
        Ok(()) => log!(Info, "stopping"),
        Err(e) => log!(Warning, "stopping: {e:#}"),
    }
    // The caller reports it (one line) and exits with its own status.
    lost.map_or(Ok(()), Err)
}

/// Logs a check's outcome when it changes something: each failure of a
/// routed site, a new reason while not routed, the first success after
/// failures.
fn report_outcome(outcome: &Outcome, tracker: &Tracker, last_failure: &mut Option<String>) {
    match outcome {
        Outcome::Healthy(_) => {
            if last_failure.take().is_some() && tracker.routed().is_some() {
                log!(Notice, "answering again");
            }
        }
        Outcome::Failed(why) => {
            if tracker.routed().is_some() {
                // Each step toward removal is a change of state worth a line
                // (at most `threshold` of them per episode).
                log!(
                    Warning,
                    "check failed ({} of {}): {why}",
                    tracker.consecutive_failures() + 1,
                    tracker.threshold()
                );
            } else if last_failure.as_deref() != Some(why.as_str()) {
                log!(Warning, "not answering: {why}");
                status(&format!("not answering: {why}"));
            }
            *last_failure = Some(why.clone());
        }
    }
}

/// Logs an etcd problem once per outage (and again if its nature changes).
fn note_trouble(trouble: &mut Option<String>, e: &anyhow::Error) {
    let text = format!("{e:#}");
    if trouble.as_deref() != Some(text.as_str()) {
        log!(Warning, "{text}; retrying");
        status(&format!("etcd trouble: {text}"));
        *trouble = Some(text);
    }
}

fn status(text: &str) {
    let _ = sd_notify::notify(&[NotifyState::Status(text)]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn polls_fast_at_first_then_slows_down_until_the_first_answer() {
        let interval = Duration::from_secs(5);
        let at = Duration::from_millis;
        assert_eq!(probe_pause(false, at(0), interval), FIRST_ANSWER_MIN_PAUSE);
        assert_eq!(
            probe_pause(false, at(500), interval),
            FIRST_ANSWER_MIN_PAUSE
        );
        assert_eq!(probe_pause(false, at(4000), interval), at(500));
        assert_eq!(probe_pause(false, at(60_000), interval), interval);
        assert_eq!(probe_pause(true, at(0), interval), interval);
        // A configured interval shorter than the fast poll is kept.
        let short = at(50);
        assert_eq!(probe_pause(false, at(0), short), short);
        assert_eq!(probe_pause(false, at(9000), short), short);
    }
}
