//! The daemon: one loop that owns the view of etcd and what HAProxy was
//! given, and turns feed messages, timers and signals into applies.
//!
//! Order of every apply: files first (so a HAProxy start or reload at any
//! moment loads the newest routing), then the runtime API.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hostyard_core::etcd::Schema;
use hostyard_core::{Layout, NodeConfig};
use hostyard_haproxy::{self as haproxy, CliError, Entry, HostMap, MapApi, Session};
use hostyard_routing::state::{Held, StateView};
use hostyard_routing::{self as routing, AllowedNetworks, Problem};
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc;

use crate::etcd_feed::{self, Feed};

/// Above this many changed hosts, one atomic full replace is cheaper than
/// one command per host.
const INCREMENTAL_LIMIT: usize = 200;
/// How long start-up waits for etcd before serving the last written files.
const STARTUP_WAIT: Duration = Duration::from_secs(2);

struct Hold {
    started: Instant,
    since_unix: u64,
    removed: usize,
}

pub struct Daemon {
    config_path: PathBuf,
    config: NodeConfig,
    layout: Layout,
    schema: Schema,
    allowed: AllowedNetworks,
    kvs: BTreeMap<String, Vec<u8>>,
    revision: i64,
    have_view: bool,
    etcd_connected: bool,
    /// What HAProxy was given (files, and the runtime map when it runs).
    applied: HostMap,
    /// Whether HAProxy's runtime map is known to equal `applied`.
    runtime_synced: bool,
    haproxy_running: bool,
    hold: Option<Hold>,
    accept_hold: bool,
    logged: BTreeSet<Problem>,
    config_rejected: Option<String>,
    /// The verdicts of the last computation, for the state file.
    last_sites: Vec<routing::Site>,
    last_problems: Vec<Problem>,
    syncer: Syncer,
}

/// Runs fsyncs on a blocking thread, at most one at a time; requests made
/// while one runs are folded into one more.
#[derive(Default, Clone)]
struct Syncer {
    /// (running, another requested)
    state: std::sync::Arc<std::sync::Mutex<(bool, bool)>>,
}

impl Syncer {
    fn request(&self, path: PathBuf) {
        {
            let Ok(mut st) = self.state.lock() else {
                return;
            };
            if st.0 {
                st.1 = true;
                return;
            }
            *st = (true, false);
        }
        let state = self.state.clone();
        let work = move || loop {
            if let Err(e) = hostyard_fs::sync_file(&path) {
                eprintln!("{e:#}");
            }
            let Ok(mut st) = state.lock() else { return };
            if st.1 {
                st.1 = false;
            } else {
                st.0 = false;
                return;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(work)),
            Err(_) => work(),
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

impl Daemon {
    pub fn new(config_path: &Path, config: NodeConfig) -> anyhow::Result<Daemon> {
        let layout = Layout::new(&config.data_root);
        let allowed = AllowedNetworks::parse(&config.confd.allowed_networks)
            .map_err(|e| anyhow::anyhow!("confd.allowed_networks: {e}"))?;
        // The last written map is what HAProxy serves (or will, once it
        // starts): the baseline for the hold rule and for serving while
        // etcd is unreachable.
        let applied = match std::fs::read_to_string(layout.hosts_map()) {
            Ok(text) => haproxy::parse_map(&text),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => HostMap::new(),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", layout.hosts_map().display()))
            }
        };
        Ok(Daemon {
            config_path: config_path.to_path_buf(),
            schema: Schema::new(&config.etcd.prefix),
            layout,
            allowed,
            config,
            kvs: BTreeMap::new(),
            revision: 0,
            have_view: false,
            etcd_connected: false,
            applied,
            runtime_synced: false,
            haproxy_running: false,
            hold: None,
            accept_hold: false,
            logged: BTreeSet::new(),
            config_rejected: None,
            last_sites: Vec::new(),
            last_problems: Vec::new(),
            syncer: Syncer::default(),
        })
    }

    /// Writes the error pages, the map (if absent) and the config, reloading
    /// HAProxy if the config changed and passed `haproxy -c`. Fails only when
    /// there is no usable config at all.
    pub fn prepare_files(&mut self) -> anyhow::Result<()> {
        for (status, page) in [(404, haproxy::PAGE_404), (503, haproxy::PAGE_503)] {
            let path = self.layout.haproxy_error_page(status);
            if std::fs::read(&path).ok().as_deref() != Some(page.as_bytes()) {
                haproxy::FILE.write(&path, page.as_bytes())?;
            }
        }
        if !self.layout.hosts_map().exists() {
            haproxy::FILE.write(
                &self.layout.hosts_map(),
                haproxy::render_map(&self.applied).as_bytes(),
            )?;
        }
        self.ensure_structure()
    }

    fn ensure_structure(&mut self) -> anyhow::Result<()> {
        let cfg_path = self.layout.haproxy_cfg();
        let text = haproxy::render_cfg(&self.config)?;
        let current = std::fs::read_to_string(&cfg_path).ok();
        if current.as_deref() == Some(text.as_str()) {
            self.config_rejected = None;
            return Ok(());
        }
        // Validate the candidate next to the real file (same directory, so
        // every path in it resolves the same) and rename only if accepted.
        let candidate = cfg_path.with_extension("cfg.candidate");
        haproxy::FILE.write(&candidate, text.as_bytes())?;
        let checked = haproxy::check_cfg(&self.config.haproxy.check_binary, &candidate);
        if let Err(e) = checked {
            // The rejected candidate stays for the operator to inspect.
            let why = format!("{e:#}");
            if current.is_none() {
                anyhow::bail!("no usable HAProxy config: {why}");
            }
            eprintln!("config change NOT applied, HAProxy keeps its current config: {why}");
            self.config_rejected = Some(why);
            return Ok(());
        }
        std::fs::rename(&candidate, &cfg_path)
            .with_context(|| format!("renaming into {}", cfg_path.display()))?;
        hostyard_fs::sync_file(&cfg_path)?;
        self.config_rejected = None;
        let master = self.layout.haproxy_master_socket();
        if current.is_some() && master.exists() {
            let started = Instant::now();
            match haproxy::reload(&master) {
                Ok(()) => {
                    // The new worker loaded the map file, which equals `applied`.
                    eprintln!(
                        "HAProxy config changed; reloaded hitlessly in {} ms",
                        started.elapsed().as_millis()
                    );
                }
                Err(e) => eprintln!("HAProxy config changed but the reload failed: {e:#}"),
            }
        } else {
            eprintln!("wrote {}", cfg_path.display());
        }
        Ok(())
    }

    fn on_feed(&mut self, feed: Feed) {
        match feed {
            Feed::Snapshot { kvs, revision } => {
                if !self.etcd_connected {
                    eprintln!(
                        "etcd: read {} keys at revision {revision}; watching from {}",
                        kvs.len(),
                        revision + 1
                    );
                }
                self.kvs = kvs;
                self.revision = revision;
                self.have_view = true;
                self.etcd_connected = true;
            }
            Feed::Changes { changes, revision } => {
                for (key, value) in changes {
                    match value {
                        Some(v) => self.kvs.insert(key, v),
                        None => self.kvs.remove(&key),
                    };
                }
                self.revision = revision;
            }
            Feed::Lost(why) => {
                eprintln!(
                    "etcd unreachable ({why}); serving the last good routing ({} hosts) and retrying",
                    self.applied.len()
                );
                self.etcd_connected = false;
            }
        }
    }

    /// Computes the desired routing and applies it unless it is a held mass
    /// removal. Returns whether it has to be retried (HAProxy refused).
    pub fn cycle(&mut self) -> bool {
        if !self.have_view {
            self.save_state();
            return false;
        }
        // The previous verdicts go first: one copy in memory at a time.
        self.last_sites = Vec::new();
        let routing::Desired {
            map: desired,
            sites,
            problems,
        } = routing::desired(&self.schema, &self.kvs, &self.allowed);
        // Drop the previous verdicts before applying: one copy at a time.
        self.last_sites = sites;
        self.last_problems = problems;
        let problems = std::mem::take(&mut self.last_problems);
        self.log_problems(&problems);
        self.last_problems = problems;
        let confd = &self.config.confd;
        let mass = routing::is_mass_removal(
            &self.applied,
            &desired,
            confd.hold_fraction,
            confd.hold_min_removals,
        );
        let mut retry = false;
        if mass && !self.accept_hold {
            let removed = routing::removed_routes(&self.applied, &desired);
            let routes = self.applied.values().filter(|e| e.is_route()).count();
            let hold_for = Duration::from_secs(confd.hold_secs);
            match &self.hold {
                None => {
                    eprintln!(
                        "HOLDING a change that would remove {removed} of {routes} routes at once \
                         (etcd emptied or restored?); HAProxy keeps the last good routing. It is \
                         applied if it persists for {} s, or now with: \
                         systemctl kill -s USR1 haproxy-confd",
                        confd.hold_secs
                    );
                    self.hold = Some(Hold {
                        started: Instant::now(),
                        since_unix: unix_now(),
                        removed,
                    });
                }
                Some(h) if h.started.elapsed() >= hold_for => {
                    eprintln!(
                        "held change persisted for {} s; applying it ({removed} routes removed)",
                        confd.hold_secs
                    );
                    self.hold = None;
                    retry = self.apply(desired);
                }
                Some(_) => {
                    if let Some(h) = &mut self.hold {
                        h.removed = removed;
                    }
                }
            }
        } else {
            if self.hold.take().is_some() {
                if self.accept_hold {
                    eprintln!("held change accepted by the operator; applying it");
                } else {
                    eprintln!("held change is no longer a mass removal; applying normally");
                }
            }
            retry = self.apply(desired);
            // An accepted change whose apply failed is retried as accepted:
            // resetting first would re-hold it on the retry.
            if !retry {
                self.accept_hold = false;
            }
        }
        self.save_state();
        retry
    }

    /// When the hold ends by itself, if one is active.
    fn hold_deadline(&self) -> Option<Instant> {
        self.hold
            .as_ref()
            .map(|h| h.started + Duration::from_secs(self.config.confd.hold_secs))
    }

    fn log_problems(&mut self, problems: &[Problem]) {
        let now: BTreeSet<Problem> = problems.iter().cloned().collect();
        for p in now.difference(&self.logged) {
            eprintln!("skipped {}: {}", p.key, p.message);
        }
        for p in self.logged.difference(&now) {
            eprintln!("resolved {}", p.key);
        }
        self.logged = now;
    }

    /// Files, then the runtime API. Returns true when HAProxy has to be
    /// retried.
    fn apply(&mut self, next: HostMap) -> bool {
        let started = Instant::now();
        let changes = diff(&self.applied, &next);
        if changes.is_empty() && self.runtime_synced {
            return false;
        }
        if !changes.is_empty() {
            if let Err(e) =
                haproxy::FILE.write_with(&self.layout.hosts_map(), |w| haproxy::write_map(&next, w))
            {
                // Without the file a restart would lose the change: do not
                // half-apply; try again shortly.
                eprintln!("cannot write the host map: {e:#}");
                return true;
            }
        }
        let result = match Session::connect(&self.layout.haproxy_admin_socket()) {
            Err(CliError::Absent { .. }) => {
                if self.haproxy_running {
                    eprintln!("HAProxy's runtime API is gone; routing goes to the files only");
                }
                self.haproxy_running = false;
                self.runtime_synced = false;
                Ok("files only")
            }
            Err(e) => Err(e),
            Ok(mut session) => {
                if !self.haproxy_running {
                    eprintln!("HAProxy's runtime API answers; routing goes through it");
                }
                self.haproxy_running = true;
                let mut api = MapApi::new(&mut session, &self.layout.hosts_map());
                let r = if !self.runtime_synced || changes.len() > INCREMENTAL_LIMIT {
                    api.replace_all(&next).map(|()| "runtime API, full map")
                } else {
                    changes
                        .iter()
                        .try_for_each(|(host, entry)| match entry {
                            Some(e) => api.upsert(host, e),
                            None => api.remove(host),
                        })
                        .map(|()| "runtime API")
                };
                self.runtime_synced = r.is_ok();
                r
            }
        };
        if !changes.is_empty() {
            // Durable only now that the change is live, and off this loop:
            // an fsync must not delay the next change.
            self.syncer.request(self.layout.hosts_map());
        }
        match result {
            Ok(how) => {
                log_changes(&self.applied, &changes, how, started.elapsed());
                drop(changes);
                self.applied = next;
                false
            }
            Err(e) => {
                eprintln!("HAProxy refused a routing change, retrying: {e}");
                // The file already holds `next`; the runtime map is unknown.
                drop(changes);
                self.applied = next;
                self.runtime_synced = false;
                true
            }
        }
    }

    fn save_state(&self) {
        let held = self.hold.as_ref().map(|h| Held {
            removed_routes: h.removed,
            current_routes: self.applied.values().filter(|e| e.is_route()).count(),
            since_unix: h.since_unix,
            until_unix: h.since_unix + self.config.confd.hold_secs,
            accept_with: "systemctl kill -s USR1 haproxy-confd".to_string(),
        });
        let state = StateView {
            revision: self.revision,
            etcd_connected: self.etcd_connected,
            sites: &self.last_sites,
            problems: &self.last_problems,
            held,
            config_rejected: self.config_rejected.as_deref(),
            haproxy_running: self.haproxy_running,
        };
        if let Err(e) = state.save(&self.layout.confd_state()) {
            eprintln!("cannot write the state file: {e:#}");
        }
    }

    fn reload_config(&mut self) {
        match NodeConfig::load(&self.config_path) {
            Err(e) => eprintln!("SIGHUP: keeping the current config: {e}"),
            Ok(new) => {
                if new.etcd != self.config.etcd || new.data_root != self.config.data_root {
                    eprintln!(
                        "SIGHUP: etcd and data_root changes take effect on restart; \
                         applying the rest"
                    );
                }
                match AllowedNetworks::parse(&new.confd.allowed_networks) {
                    Ok(a) => self.allowed = a,
                    Err(e) => {
                        eprintln!("SIGHUP: keeping the current config: {e}");
                        return;
                    }
                }
                self.config.haproxy = new.haproxy;
                self.config.confd = new.confd;
                eprintln!("SIGHUP: re-read {}", self.config_path.display());
                if let Err(e) = self.ensure_structure() {
                    eprintln!("SIGHUP: {e:#}");
                }
            }
        }
    }
}

/// Host → new entry (`None`: removed), for hosts that differ.
fn diff<'a>(current: &HostMap, next: &'a HostMap) -> Vec<(String, Option<&'a Entry>)> {
    let mut out = Vec::new();
    for (host, entry) in next {
        if current.get(host) != Some(entry) {
            out.push((host.clone(), Some(entry)));
        }
    }
    for host in current.keys() {
        if !next.contains_key(host) {
            out.push((host.clone(), None));
        }
    }
    out
}

fn log_changes(before: &HostMap, changes: &[(String, Option<&Entry>)], how: &str, took: Duration) {
    if changes.is_empty() {
        eprintln!("routing in sync ({how})");
        return;
    }
    if changes.len() <= 20 {
        for (host, entry) in changes {
            let was = before.get(host).map(Entry::map_value);
            let now = entry.map(|e| e.map_value());
            eprintln!(
                "{host}: {} -> {}",
                was.as_deref().unwrap_or("(none)"),
                now.as_deref().unwrap_or("(none)")
            );
        }
    }
    eprintln!(
        "applied {} host change(s) through the {how} in {} ms",
        changes.len(),
        took.as_millis()
    );
}

fn notify(state: &[sd_notify::NotifyState]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    if let Err(e) = sd_notify::notify(state) {
        eprintln!("cannot notify systemd: {e}");
    }
}

/// `--once`: one full read, one apply. A held mass removal is an error.
pub async fn run_once(config_path: &Path, config: NodeConfig) -> anyhow::Result<()> {
    let mut d = Daemon::new(config_path, config)?;
    d.prepare_files()?;
    let mut client = routing::etcd::connect(&d.config.etcd.endpoints)
        .await
        .context("connecting to etcd")?;
    let (kvs, revision) = routing::etcd::read_all(&mut client, &d.schema.root_prefix()).await?;
    d.on_feed(Feed::Snapshot { kvs, revision });
    if d.cycle() {
        anyhow::bail!("HAProxy did not take the routing (see above)");
    }
    if d.hold.is_some() {
        anyhow::bail!("the change was held as a mass removal; nothing applied");
    }
    Ok(())
}

pub async fn run(config_path: &Path, config: NodeConfig) -> anyhow::Result<()> {
    let mut d = Daemon::new(config_path, config)?;
    d.prepare_files()?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let (tx, mut rx) = mpsc::channel(1024);
    let feed = tokio::spawn(etcd_feed::run(
        d.config.etcd.endpoints.clone(),
        d.schema.root_prefix(),
        tx,
    ));

    // Start-up: wait briefly for etcd so HAProxy starts with today's routing;
    // without it, serve what was last written.
    match tokio::time::timeout(STARTUP_WAIT, rx.recv()).await {
        Ok(Some(f)) => {
            d.on_feed(f);
        }
        Ok(None) => anyhow::bail!("the etcd feed ended"),
        Err(_) => eprintln!(
            "etcd did not answer within {} s; serving the last written routing ({} hosts)",
            STARTUP_WAIT.as_secs(),
            d.applied.len()
        ),
    }
    let mut retry = d.cycle();
    notify(&[sd_notify::NotifyState::Ready]);
    eprintln!("ready");

    let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let debounce = Duration::from_millis(d.config.confd.debounce_ms);
    let mut due: Option<tokio::time::Instant> =
        retry.then(|| tokio::time::Instant::now() + Duration::from_secs(1));
    loop {
        let hold_due = d.hold_deadline().map(tokio::time::Instant::from_std);
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { anyhow::bail!("the etcd feed ended") };
                d.on_feed(f);
                // Drain what is already queued, then wait out the debounce
                // window from the first event (not sliding: latency stays
                // bounded under a constant stream of changes).
                while let Ok(f) = rx.try_recv() {
                    d.on_feed(f);
                }
                if due.is_none() {
                    due = Some(tokio::time::Instant::now() + debounce);
                }
            }
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                while let Ok(f) = rx.try_recv() {
                    d.on_feed(f);
                }
                retry = d.cycle();
                due = retry.then(|| tokio::time::Instant::now() + Duration::from_secs(1));
            }
            _ = async { tokio::time::sleep_until(hold_due.unwrap_or_else(tokio::time::Instant::now)).await }, if hold_due.is_some() => {
                retry = d.cycle();
                due = retry.then(|| tokio::time::Instant::now() + Duration::from_secs(1));
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = sighup.recv() => {
                d.reload_config();
                due = Some(tokio::time::Instant::now());
            }
            _ = sigusr1.recv() => {
                if d.hold.is_some() {
                    d.accept_hold = true;
                    due = Some(tokio::time::Instant::now());
                } else {
                    eprintln!("SIGUSR1: nothing is held");
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    feed.abort();
    d.save_state();
    eprintln!("stopping; HAProxy keeps the current routing");
    Ok(())
}
