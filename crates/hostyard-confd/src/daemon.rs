//! The daemon: the thin loop around [`crate::decide`]. It owns the view of
//! etcd and what HAProxy was given, passes feed messages, timers and
//! signals to the decisions, and performs what they ask: files, HAProxy's
//! runtime API and master socket, the state file, logs.
//!
//! Order of every apply: the runtime API first, at once, then the map file
//! on a blocking thread, at most every [`decide::MAP_FILE_EVERY`], with the
//! fsync and the state file: no change waits for a disk. A HAProxy reload
//! or restart loads the file, so confd flushes it before its own reloads,
//! before READY and at exit; and after each write it asks HAProxy for the
//! routing's generation, and again every second, which shows whether an
//! outside reload or restart (`systemctl reload haproxy`, a crash) loaded
//! an older file in between: then the whole runtime map is replaced.

use hostyard_log::log;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use hostyard_config::NodeConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::Layout;
use hostyard_haproxy::{self as haproxy, CliError, Entry, HostMap, MapApi, Session};
use hostyard_routing::state::Held;
use hostyard_routing::table::Changed;
use hostyard_routing::AllowedNetworks;
use hostyard_tls::wake::Wake;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::mpsc::{self, UnboundedReceiver, UnboundedSender};

use crate::background::{self, MapFile, Routing, SharedRouting, StateJob, StateWriter};
use crate::decide::{
    self, ConfigStep, FeedNote, Gate, HoldPolicy, NetworkNote, NetworkRead, NetworkWatch, Now,
    Plan, ProblemLog, RecordedHold, Release, Runtime, Schedule, Throttle, Verdict, View,
};
use crate::etcd_feed::{self, Feed};

/// How long start-up waits for etcd before serving the last written files.
const STARTUP_WAIT: Duration = Duration::from_secs(2);

pub struct Daemon {
    config_path: PathBuf,
    config: NodeConfig,
    layout: Layout,
    schema: Schema,
    allowed: AllowedNetworks,
    view: View,
    /// The sites' Docker network as last read (a failed read keeps it).
    network: NetworkWatch,
    /// Whether a registration is refused for being outside the allowed
    /// networks (the network is then read again: see [`NetworkWatch`]).
    refused_outside: bool,
    /// What HAProxy was given (the runtime map when it runs, the file as
    /// soon as the writer caught up), shared with the map file's writer.
    routing: SharedRouting,
    map_file: MapFile,
    map_file_throttle: Throttle,
    /// Outcomes of the map file's background writes.
    map_written_tx: UnboundedSender<Result<u64, String>>,
    map_written_rx: UnboundedReceiver<Result<u64, String>>,
    map_file_failing: bool,
    /// Hosts of the desired routing that may differ from `routing`.
    pending: Changed,
    /// Whether HAProxy's runtime map is known to equal `routing`.
    runtime_synced: bool,
    haproxy_running: bool,
    gate: Gate,
    problem_log: ProblemLog,
    config_rejected: Option<String>,
    state_writer: StateWriter,
    state_throttle: Throttle,
    /// Whether `fleet.peers` lists servers, shared with the certificate
    /// and ACME threads (a SIGHUP may change it).
    in_fleet: Arc<AtomicBool>,
    /// Woken with the sites whose registration appeared: the ACME thread
    /// orders their certificates now.
    acme_wake: Arc<Wake>,
}

fn now() -> Now {
    Now {
        instant: Instant::now(),
        unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or_default(),
    }
}

impl Daemon {
    pub fn new(config_path: &Path, config: NodeConfig) -> anyhow::Result<Daemon> {
        let layout = Layout::new(&config.data_root);
        let (network, note) = NetworkWatch::new(read_network(&config), Instant::now());
        let allowed = hostyard_routing::site_network::allowed_in(&config, network.known());
        log_network(&config, &note, &allowed);
        // A hold running when confd stopped goes on where it was: a restart
        // neither gives it a new hold time nor forgets an acceptance.
        let recorded = match hostyard_routing::state::ConfdState::load(&layout.confd_state()) {
            Ok(state) => state.and_then(|s| s.held).map(|h| RecordedHold {
                since_unix: h.since_unix,
                removed: h.removed_routes,
                accepted: h.accepted,
            }),
            Err(e) => {
                log!(
                    Warning,
                    "cannot read the state file, so no hold is resumed: {e:#}"
                );
                None
            }
        };
        let gate = Gate::resume(recorded, &HoldPolicy::from(&config.confd), now());
        if let Some(h) = gate.held() {
            log!(
                Warning,
                "a change removing {} routes is still held since unix time {} (recorded \
                 before this start); it is applied if it persists until unix time {}, or now \
                 with: {}",
                h.removed,
                h.since_unix,
                h.since_unix + config.confd.hold.as_secs(),
                ACCEPT_WITH
            );
        }
        // The last written map is what HAProxy serves (or will, once it
        // starts): the baseline for the hold rule and for serving while
        // etcd is unreachable.
        let (map, on_disk) = match std::fs::read_to_string(layout.hosts_map()) {
            Ok(text) => (haproxy::parse_map(&text), haproxy::parse_generation(&text)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (HostMap::new(), None),
            Err(e) => {
                return Err(e).with_context(|| format!("reading {}", layout.hosts_map().display()))
            }
        };
        let routing = std::sync::Arc::new(std::sync::Mutex::new(Routing {
            map,
            generation: on_disk.unwrap_or_default(),
        }));
        let map_file = MapFile::new(layout.hosts_map(), routing.clone(), on_disk);
        let (map_written_tx, map_written_rx) = mpsc::unbounded_channel();
        let view = View::new(Schema::new(&config.etcd.prefix), allowed.clone());
        let state_writer = StateWriter::new(layout.confd_state());
        let in_fleet = Arc::new(AtomicBool::new(!config.fleet.peers.is_empty()));
        Ok(Daemon {
            in_fleet,
            acme_wake: Arc::default(),
            config_path: config_path.to_path_buf(),
            schema: Schema::new(&config.etcd.prefix),
            layout,
            allowed,
            network,
            refused_outside: false,
            config,
            view,
            routing,
            map_file,
            map_file_throttle: Throttle::new(decide::MAP_FILE_EVERY),
            map_written_tx,
            map_written_rx,
            map_file_failing: false,
            pending: Changed::All,
            runtime_synced: false,
            haproxy_running: false,
            gate,
            problem_log: ProblemLog::default(),
            config_rejected: None,
            state_writer,
            state_throttle: Throttle::new(decide::STATE_EVERY),
        })
    }

    /// Writes the error pages, the map (if absent) and the config, reloading
    /// HAProxy if the config changed and passed `haproxy -c`. Fails only when
    /// there is no usable config at all.
    pub fn prepare_files(&mut self) -> anyhow::Result<()> {
        // haproxy.cfg names the default certificate, the crt-list and the
        // HTTPS map: they exist before the config is checked.
        hostyard_tls::ensure_base(&self.layout)?;
        for (status, page) in [(404, haproxy::PAGE_404), (503, haproxy::PAGE_503)] {
            let path = self.layout.haproxy_error_page(status);
            if std::fs::read(&path).ok().as_deref() != Some(page.as_bytes()) {
                haproxy::FILE.write(&path, page.as_bytes())?;
            }
        }
        if !self.layout.hosts_map().exists() {
            self.map_file.write_now()?;
        }
        self.ensure_structure()
    }

    fn ensure_structure(&mut self) -> anyhow::Result<()> {
        // The peer TLS files first: the config's check loads them. A
        // certificate renewed alone (same config) takes a reload too.
        let peer_tls_changed = match haproxy::write_peer_tls(&self.config) {
            Ok(changed) => changed,
            Err(e) => {
                log!(
                    Err,
                    "peer TLS files NOT updated, HAProxy keeps those it has: {e:#}"
                );
                false
            }
        };
        let cfg_path = self.layout.haproxy_cfg();
        let text = haproxy::render_cfg(&self.config)?;
        let current = std::fs::read_to_string(&cfg_path).ok();
        // Validated next to the real file (same directory, so every path in
        // it resolves the same); a rejected candidate stays there for the
        // operator to inspect.
        let candidate = cfg_path.with_extension("cfg.candidate");
        let mut written = Ok(());
        let check = || {
            written = haproxy::FILE.write(&candidate, text.as_bytes());
            written.as_ref().map_err(|e| format!("{e:#}"))?;
            haproxy::check_cfg(&self.config.haproxy.check_binary, &candidate)
                .map_err(|e| format!("{e:#}"))
        };
        let master = self.layout.haproxy_master_socket();
        let step = decide::config_step(current.as_deref(), &text, check, master.exists());
        written?;
        let reload = match step {
            ConfigStep::Unchanged if peer_tls_changed && master.exists() => {
                self.config_rejected = None;
                self.map_file_before_reload();
                match haproxy::reload(&master) {
                    Ok(()) => log!(Notice, "peer TLS files changed; HAProxy reloaded hitlessly"),
                    Err(e) => log!(Err, "peer TLS files changed but the reload failed: {e:#}"),
                }
                return Ok(());
            }
            ConfigStep::Unchanged => {
                self.config_rejected = None;
                return Ok(());
            }
            ConfigStep::Unusable(why) => anyhow::bail!("no usable HAProxy config: {why}"),
            ConfigStep::Rejected(why) => {
                log!(
                    Err,
                    "config change NOT applied, HAProxy keeps its current config: {why}"
                );
                self.config_rejected = Some(why);
                return Ok(());
            }
            ConfigStep::Install { reload } => reload,
        };
        std::fs::rename(&candidate, &cfg_path)
            .with_context(|| format!("renaming into {}", cfg_path.display()))?;
        hostyard_fs::sync_file(&cfg_path)?;
        self.config_rejected = None;
        if reload {
            let started = Instant::now();
            self.map_file_before_reload();
            match haproxy::reload(&master) {
                Ok(()) => {
                    // The new worker loaded the map file, which equals the routing.
                    log!(
                        Notice,
                        "HAProxy config changed; reloaded hitlessly in {} ms",
                        started.elapsed().as_millis()
                    );
                }
                Err(e) => log!(Err, "HAProxy config changed but the reload failed: {e:#}"),
            }
        } else {
            log!(Info, "wrote {}", cfg_path.display());
        }
        Ok(())
    }

    fn on_feed(&mut self, feed: Feed) {
        if let Feed::Changes { changes, .. } = &feed {
            let started = decide::acme_wakes(&self.schema, changes);
            if !started.is_empty() {
                self.acme_wake.wake(started);
            }
        }
        match self.view.on_feed(feed) {
            None => {}
            Some(FeedNote::Connected { keys, revision }) => log!(
                Info,
                "etcd: read {keys} keys at revision {revision}; watching from {}",
                revision + 1
            ),
            Some(FeedNote::Lost(why)) => {
                log!(Warning,
                "etcd unreachable ({why}); serving the last good routing ({} hosts) and retrying",
                background::lock(&self.routing).map.len()
            )
            }
        }
    }

    /// Applies the desired routing unless it is a held mass removal.
    /// Returns whether it has to be retried (HAProxy refused).
    pub fn cycle(&mut self) -> bool {
        if !self.view.have_view {
            self.state_changed();
            return false;
        }
        let refused_outside = |problems: &[hostyard_routing::Problem]| {
            problems
                .iter()
                .any(|p| hostyard_routing::is_outside_refusal(&p.message))
        };
        let mut problems = self.view.table.problems();
        self.refused_outside = refused_outside(&problems);
        let relies_on_docker = self.config.confd.allowed_networks.is_empty();
        if self
            .network
            .next_read_on_change(relies_on_docker, self.refused_outside)
            .is_some_and(|due| due <= Instant::now())
        {
            // The sites' network may be new (the first site created it).
            let config = self.config.clone();
            if self.read_network(&config) {
                problems = self.view.table.problems();
                self.refused_outside = refused_outside(&problems);
            }
        }
        let table = &mut self.view.table;
        self.pending.merge(table.take_changed());
        let (new, resolved) = self.problem_log.update(&problems);
        for p in new {
            log!(Warning, "skipped {}: {}", p.key, p.message);
        }
        for key in resolved {
            log!(Notice, "resolved {key}");
        }
        let removal = decide::removal(
            &background::lock(&self.routing).map,
            table.map(),
            &self.pending,
        );
        let confd = &self.config.confd;
        let policy = HoldPolicy::from(confd);
        let retry = match self.gate.judge(removal, &policy, now()) {
            Verdict::Hold {
                new: true,
                removed,
                routes,
            } => {
                log!(
                    Warning,
                    "HOLDING a change that would remove {removed} of {routes} routes at once \
                     (etcd emptied or restored?); HAProxy keeps those routes, other changes \
                     go on. It is applied if it persists for {} s, or now with: {ACCEPT_WITH}",
                    confd.hold.as_secs()
                );
                self.apply_beside_hold()
            }
            Verdict::Hold { new: false, .. } => self.apply_beside_hold(),
            Verdict::Apply { released } => {
                match released {
                    None => {}
                    Some(Release::Accepted) => {
                        log!(Notice, "held change accepted by the operator; applying it")
                    }
                    Some(Release::NoLongerMass) => {
                        log!(
                            Notice,
                            "held change is no longer a mass removal; applying normally"
                        )
                    }
                    Some(Release::Persisted { removed }) => {
                        log!(Notice,
                        "held change persisted for {} s; applying it ({removed} routes removed)",
                        confd.hold.as_secs()
                    )
                    }
                }
                let retry = self.apply(None);
                self.gate.applied(retry);
                retry
            }
        };
        self.state_changed();
        retry
    }

    /// When the hold ends by itself, if one is active.
    fn hold_deadline(&self) -> Option<Instant> {
        self.gate.deadline(&HoldPolicy::from(&self.config.confd))
    }

    /// While a mass removal is held: every other change is applied (a new
    /// site is routed at once), the held removals wait.
    fn apply_beside_hold(&mut self) -> bool {
        let split = decide::during_hold(
            &background::lock(&self.routing).map,
            self.view.table.map(),
            &self.pending,
        );
        let mut retry = false;
        if !split.now.is_empty() || !self.runtime_synced {
            self.pending = split.now;
            retry = self.apply(Some(&split.target));
        }
        self.pending.merge(split.held);
        retry
    }

    /// When the sites' network is to be read again, if it is.
    fn network_due(&self) -> Option<Instant> {
        self.network.next_read(
            self.config.confd.allowed_networks.is_empty(),
            self.refused_outside,
        )
    }

    /// Reads the sites' network (at start, on SIGHUP, and on a timer while
    /// a read failed or a registration is refused as outside it). A failed
    /// read keeps the network known before. Returns whether what is allowed
    /// changed.
    fn read_network(&mut self, config: &NodeConfig) -> bool {
        let note = self.network.on_read(read_network(config), Instant::now());
        let allowed = hostyard_routing::site_network::allowed_in(config, self.network.known());
        log_network(config, &note, &allowed);
        if allowed == self.allowed {
            return false;
        }
        self.view.set_allowed(allowed.clone());
        self.allowed = allowed;
        true
    }

    /// The runtime API at once, then the map file off this loop. Returns
    /// true when HAProxy has to be retried. `held`: the routing to apply
    /// instead of etcd's while a mass removal is held.
    fn apply(&mut self, held: Option<&HostMap>) -> bool {
        let started = Instant::now();
        let next = held.unwrap_or(self.view.table.map());
        let shared = self.routing.clone();
        let mut routing = background::lock(&shared);
        let Plan::Apply {
            changes,
            write_file,
            runtime,
        } = decide::plan(&routing.map, next, &self.pending, self.runtime_synced)
        else {
            self.pending = Changed::Hosts(Default::default());
            return false;
        };
        let generation = routing.generation + u64::from(write_file);
        let result = match Session::connect(&self.layout.haproxy_admin_socket()) {
            Err(CliError::Absent { .. }) => {
                if self.haproxy_running {
                    log!(
                        Warning,
                        "HAProxy's runtime API is gone; routing goes to the files only"
                    );
                }
                self.haproxy_running = false;
                self.runtime_synced = false;
                Ok("files only")
            }
            Err(e) => Err(e),
            Ok(mut session) => {
                if !self.haproxy_running {
                    log!(
                        Notice,
                        "HAProxy's runtime API answers; routing goes through it"
                    );
                }
                self.haproxy_running = true;
                let mut api = MapApi::new(&mut session, &self.layout.hosts_map());
                let r = match runtime {
                    Runtime::Full => api
                        .replace_all(next, generation)
                        .map(|()| "runtime API, full map"),
                    // One round trip: the runtime map is known to hold
                    // what was applied (`runtime_synced`).
                    Runtime::PerHost => api
                        .apply_known(&routing.map, &changes, generation)
                        .map(|()| "runtime API"),
                };
                self.runtime_synced = r.is_ok();
                r
            }
        };
        let retry = match result {
            Ok(how) => {
                log_changes(&routing.map, &changes, how, started.elapsed());
                false
            }
            Err(e) => {
                log!(Warning, "HAProxy refused a routing change, retrying: {e}");
                // The runtime map is unknown; the file gets `next` below.
                self.runtime_synced = false;
                true
            }
        };
        for (host, entry) in changes {
            match entry {
                Some(e) => routing.map.insert(host, e.clone()),
                None => routing.map.remove(&host),
            };
        }
        routing.generation = generation;
        drop(routing);
        self.pending = Changed::Hosts(Default::default());
        if write_file {
            self.map_file_changed();
        }
        retry
    }

    /// The routing changed: the map file is written at once after a quiet
    /// period, else once the period ends.
    fn map_file_changed(&mut self) {
        if self.map_file_throttle.request(Instant::now()) {
            self.map_file.write_later(self.map_written_tx.clone());
        }
    }

    /// The map file's period ended with a write due.
    fn map_file_due(&mut self) {
        self.map_file_throttle.ran(Instant::now());
        self.map_file.write_later(self.map_written_tx.clone());
    }

    /// A background write of the map file ended. Returns true when HAProxy's
    /// whole runtime map is to be replaced at once (it reloaded or restarted
    /// on an older file meanwhile).
    fn map_file_written(&mut self, outcome: Result<u64, String>) -> bool {
        let written = match outcome {
            Ok(written) => written,
            Err(e) => {
                if !self.map_file_failing {
                    log!(
                        Err,
                        "cannot write the host map ({e}); HAProxy has the change, but a \
                         reload or restart would lose it until the file is written: retrying"
                    );
                }
                self.map_file_failing = true;
                self.map_file_changed();
                return false;
            }
        };
        if std::mem::take(&mut self.map_file_failing) {
            log!(Notice, "the host map is written again");
        }
        let applied = background::lock(&self.routing).generation;
        decide::check_after_write(written, applied) && self.check_runtime()
    }

    /// Asks HAProxy for the generation of its runtime map. Returns true
    /// when that map is to be replaced whole: it reloaded or restarted on an
    /// older map file (after a write, and every [`decide::RUNTIME_CHECK_EVERY`]:
    /// a reload that began before a write may end after it).
    fn check_runtime(&mut self) -> bool {
        if !self.runtime_synced {
            // Known already: the next apply replaces the whole map.
            return false;
        }
        let applied = background::lock(&self.routing).generation;
        let runtime = match Session::connect(&self.layout.haproxy_admin_socket()) {
            // Not running: it loads the file when it starts, and a write
            // still due checks again after it.
            Err(CliError::Absent { .. }) => return false,
            Err(e) => Err(e),
            Ok(mut session) => MapApi::new(&mut session, &self.layout.hosts_map()).generation(),
        };
        match runtime {
            Ok(runtime) if !decide::runtime_stale(runtime, applied) => false,
            Ok(runtime) => {
                log!(
                    Warning,
                    "HAProxy reloaded or restarted on an older host map (its generation {}, \
                     confd's {applied}); replacing its runtime map and writing the file again",
                    runtime.map_or("none".to_string(), |g| g.to_string())
                );
                self.runtime_synced = false;
                self.map_file.forget_disk();
                self.map_file_changed();
                true
            }
            Err(e) => {
                log!(
                    Warning,
                    "cannot read HAProxy's routing generation ({e}); replacing its runtime map"
                );
                self.runtime_synced = false;
                true
            }
        }
    }

    /// Writes the map file before a reload: the new worker loads it, so it
    /// must hold every change the runtime API has. When it cannot, the
    /// whole runtime map is replaced after the reload instead.
    fn map_file_before_reload(&mut self) {
        if let Err(e) = self.map_file.write_now() {
            log!(
                Err,
                "cannot write the host map before reloading HAProxy ({e:#}); \
                 its whole runtime map is replaced after the reload"
            );
            self.runtime_synced = false;
        }
    }

    /// Before READY, at exit and after `--once`: the map file holds the
    /// routing when this returns, for a HAProxy that starts or reloads.
    fn flush_map_file(&mut self) {
        if let Err(e) = self.map_file.write_now() {
            log!(Err, "cannot write the host map: {e:#}");
        }
    }

    fn state_job(&self) -> StateJob {
        let held = self.gate.held().map(|h| Held {
            removed_routes: h.removed,
            current_routes: decide::route_count(&background::lock(&self.routing).map),
            since_unix: h.since_unix,
            until_unix: h.since_unix + self.config.confd.hold.as_secs(),
            accept_with: ACCEPT_WITH.to_string(),
            accepted: self.gate.accepted(),
        });
        StateJob {
            revision: self.view.revision,
            etcd_connected: self.view.etcd_connected,
            sites: self.view.table.site_snapshot(),
            problems: self.view.table.problems(),
            held,
            config_rejected: self.config_rejected.clone(),
            haproxy_running: self.haproxy_running,
        }
    }

    /// Writes the state file now, or once its period ends.
    fn state_changed(&mut self) {
        if self.state_throttle.request(Instant::now()) {
            self.state_writer.save(self.state_job());
        }
    }

    /// The state file's period ended with a write due.
    fn state_due(&mut self) {
        self.state_throttle.ran(Instant::now());
        self.state_writer.save(self.state_job());
    }

    /// At exit: the state file written before returning.
    fn save_state_and_wait(&self) {
        self.state_writer.save_and_wait(self.state_job());
    }

    fn reload_config(&mut self) {
        match NodeConfig::load(&self.config_path) {
            // A config's problems are one line each: every one reaches the
            // journal at the error priority.
            Err(e) => {
                for problem in e.to_string().lines() {
                    log!(Err, "SIGHUP: keeping the current config: {problem}");
                }
            }
            Ok(new) => {
                if new.etcd != self.config.etcd || new.data_root != self.config.data_root {
                    log!(
                        Warning,
                        "SIGHUP: etcd and data_root changes take effect on restart; \
                         applying the rest"
                    );
                }
                self.read_network(&new);
                self.config.docker = new.docker;
                self.config.haproxy = new.haproxy;
                self.config.confd = new.confd;
                // A server added to or removed from the fleet: its peer
                // frontend's sources and where its sites go.
                self.config.fleet = new.fleet;
                self.in_fleet
                    .store(!self.config.fleet.peers.is_empty(), Ordering::Relaxed);
                log!(Notice, "SIGHUP: re-read {}", self.config_path.display());
                if let Err(e) = self.ensure_structure() {
                    log!(Err, "SIGHUP: {e:#}");
                }
            }
        }
    }
}

/// How an operator applies a held change at once: the signal to confd's
/// main process only (not to a `docker` it may be running).
const ACCEPT_WITH: &str = "systemctl kill --kill-who=main -s USR1 haproxy-confd";

/// One read of the sites' Docker network (see
/// [`hostyard_routing::site_network`]).
fn read_network(config: &NodeConfig) -> NetworkRead {
    match hostyard_routing::site_network::docker_network(config) {
        Ok(Some(net)) => NetworkRead::Found(net),
        Ok(None) => NetworkRead::Absent,
        Err(e) => NetworkRead::Failed(format!("{e:#}")),
    }
}

/// Logs what a read of the sites' network changed. Unknown networks matter
/// only when `confd.allowed_networks` is empty (Docker's is the one used).
fn log_network(config: &NodeConfig, note: &NetworkNote, allowed: &AllowedNetworks) {
    let relies_on_docker = config.confd.allowed_networks.is_empty();
    let every = decide::NETWORK_RETRY.as_secs();
    match note {
        NetworkNote::Same => {}
        NetworkNote::Known => {
            let nets: Vec<String> = allowed.networks().iter().map(|n| n.to_string()).collect();
            log!(Info, "registrations allowed in {}", nets.join(", "));
        }
        _ if !relies_on_docker => {}
        NetworkNote::Absent => log!(
            Warning,
            "sites' network unknown, no registration is routed until it is: {}",
            hostyard_routing::site_network::absent(config)
        ),
        NetworkNote::Kept(why) => log!(
            Warning,
            "cannot read the sites' network ({why}); keeping the last known one and \
             reading it again every {every} s"
        ),
        NetworkNote::Unknown(why) => log!(
            Warning,
            "sites' network unknown, no registration is routed until it is: {why}; \
             reading it again every {every} s"
        ),
    }
}

fn log_changes(before: &HostMap, changes: &[(String, Option<&Entry>)], how: &str, took: Duration) {
    if changes.is_empty() {
        log!(Info, "routing in sync ({how})");
        return;
    }
    if changes.len() <= 20 {
        for (host, entry) in changes {
            let was = before.get(host).map(Entry::map_value);
            let now = entry.map(|e| e.map_value());
            log!(
                Info,
                "{host}: {} -> {}",
                was.as_deref().unwrap_or("(none)"),
                now.as_deref().unwrap_or("(none)")
            );
        }
    }
    log!(
        Info,
        "applied {} host change(s) through the {how} in {} ms",
        changes.len(),
        took.as_millis()
    );
}

fn notify(state: &[sd_notify::NotifyState]) {
    // Outside systemd NOTIFY_SOCKET is unset and this does nothing.
    if let Err(e) = sd_notify::notify(state) {
        log!(Warning, "cannot notify systemd: {e}");
    }
}

/// `--once`: one full read, one apply. A held mass removal is an error.
pub async fn run_once(config_path: &Path, config: NodeConfig) -> anyhow::Result<()> {
    let mut d = Daemon::new(config_path, config)?;
    d.prepare_files()?;
    hostyard_tls::CertSync::new(d.layout.clone(), d.config.tls.clone())
        .with_fleet(d.in_fleet.clone())
        .pass()?;
    let mut client = hostyard_etcd::connect(&d.config.etcd)
        .await
        .context("connecting to etcd")?;
    let (kvs, revision) = hostyard_etcd::read_routing(&mut client, &d.schema).await?;
    d.on_feed(Feed::Snapshot { kvs, revision });
    let retry = d.cycle();
    d.flush_map_file();
    d.save_state_and_wait();
    if retry {
        anyhow::bail!("HAProxy did not take the routing (see above)");
    }
    if d.gate.held().is_some() {
        anyhow::bail!(
            "the change was held as a mass removal; its removals were not applied \
             (every other change was)"
        );
    }
    Ok(())
}

pub async fn run(config_path: &Path, config: NodeConfig) -> anyhow::Result<()> {
    let mut d = Daemon::new(config_path, config)?;
    d.prepare_files()?;
    // Certificates on a thread of their own: checking files and talking to
    // HAProxy about them never delays a routing change. The first pass
    // runs before READY, so HAProxy starts with today's certificates.
    // Read before the certificate thread rewrites the state file.
    let acme_status = hostyard_tls::acme::load_status(&d.layout);
    // Woken by the ACME thread when it wrote a certificate file: installed
    // at once, not at the next look.
    let installed = Arc::new(Wake::default());
    let mut certs = hostyard_tls::CertSync::new(d.layout.clone(), d.config.tls.clone())
        .with_acme(acme_status.clone())
        .with_fleet(d.in_fleet.clone())
        .with_wake(installed.clone());
    if let Err(e) = certs.pass() {
        log!(Err, "certificates: {e:#}");
    }
    std::thread::Builder::new()
        .name("certificates".into())
        .spawn(move || certs.run())
        .context("starting the certificate thread")?;
    crate::acme::spawn(
        &d.config,
        acme_status,
        d.in_fleet.clone(),
        d.acme_wake.clone(),
        installed,
    )?;
    crate::edge::spawn(
        &d.config.etcd,
        &d.schema,
        &d.layout,
        d.config.wordpress.php_limits,
    )?;
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;
    let mut sighup = signal(SignalKind::hangup())?;
    let mut sigusr1 = signal(SignalKind::user_defined1())?;
    let (tx, mut rx) = mpsc::channel(1024);
    let feed = tokio::spawn(etcd_feed::run(d.config.etcd.clone(), d.schema.clone(), tx));

    // Start-up: wait briefly for etcd so HAProxy starts with today's routing;
    // without it, serve what was last written.
    match tokio::time::timeout(STARTUP_WAIT, rx.recv()).await {
        Ok(Some(f)) => {
            d.on_feed(f);
        }
        Ok(None) => anyhow::bail!("the etcd feed ended"),
        Err(_) => log!(
            Warning,
            "etcd did not answer within {} s; serving the last written routing ({} hosts)",
            STARTUP_WAIT.as_secs(),
            background::lock(&d.routing).map.len()
        ),
    }
    let retry = d.cycle();
    // HAProxy starts after READY and loads the file.
    d.flush_map_file();
    notify(&[sd_notify::NotifyState::Ready]);
    log!(Notice, "ready");

    let watchdog = sd_notify::watchdog_enabled().map(|t| t / 2);
    let mut watchdog_tick = tokio::time::interval(watchdog.unwrap_or(Duration::from_secs(3600)));
    let mut runtime_check = tokio::time::interval(decide::RUNTIME_CHECK_EVERY);
    runtime_check.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut schedule = Schedule::new(d.config.confd.debounce);
    schedule.ran(Instant::now(), retry);
    loop {
        let due = schedule.due().map(tokio::time::Instant::from_std);
        let hold_due = d.hold_deadline().map(tokio::time::Instant::from_std);
        let network_due = d.network_due().map(tokio::time::Instant::from_std);
        let state_due = d.state_throttle.due().map(tokio::time::Instant::from_std);
        let map_file_due = d
            .map_file_throttle
            .due()
            .map(tokio::time::Instant::from_std);
        tokio::select! {
            f = rx.recv() => {
                let Some(f) = f else { anyhow::bail!("the etcd feed ended") };
                d.on_feed(f);
                // What is already queued goes into the same apply.
                while let Ok(f) = rx.try_recv() {
                    d.on_feed(f);
                }
                let now = Instant::now();
                schedule.changed(now);
                // A change after a quiet period is applied here: a timer
                // for "now" would fire at the runtime's next millisecond
                // tick, up to a millisecond of a change's whole latency.
                if schedule.due().is_some_and(|due| due <= now) {
                    let retry = d.cycle();
                    schedule.ran(Instant::now(), retry);
                }
            }
            _ = async { tokio::time::sleep_until(due.unwrap_or_else(tokio::time::Instant::now)).await }, if due.is_some() => {
                while let Ok(f) = rx.try_recv() {
                    d.on_feed(f);
                }
                let retry = d.cycle();
                schedule.ran(Instant::now(), retry);
            }
            _ = async { tokio::time::sleep_until(hold_due.unwrap_or_else(tokio::time::Instant::now)).await }, if hold_due.is_some() => {
                let retry = d.cycle();
                schedule.ran(Instant::now(), retry);
            }
            _ = async { tokio::time::sleep_until(network_due.unwrap_or_else(tokio::time::Instant::now)).await }, if network_due.is_some() => {
                // No etcd event may come: the read does not wait for one.
                let config = d.config.clone();
                if d.read_network(&config) {
                    let retry = d.cycle();
                    schedule.ran(Instant::now(), retry);
                }
            }
            _ = async { tokio::time::sleep_until(state_due.unwrap_or_else(tokio::time::Instant::now)).await }, if state_due.is_some() => {
                d.state_due();
            }
            _ = async { tokio::time::sleep_until(map_file_due.unwrap_or_else(tokio::time::Instant::now)).await }, if map_file_due.is_some() => {
                d.map_file_due();
            }
            Some(outcome) = d.map_written_rx.recv() => {
                if d.map_file_written(outcome) {
                    schedule.now(Instant::now());
                }
            }
            _ = runtime_check.tick(), if d.haproxy_running => {
                if d.check_runtime() {
                    schedule.now(Instant::now());
                }
            }
            _ = watchdog_tick.tick(), if watchdog.is_some() => {
                notify(&[sd_notify::NotifyState::Watchdog]);
            }
            _ = sighup.recv() => {
                d.reload_config();
                schedule.set_window(d.config.confd.debounce);
                schedule.now(Instant::now());
            }
            _ = sigusr1.recv() => {
                if d.gate.accept() {
                    schedule.now(Instant::now());
                } else {
                    log!(Notice, "SIGUSR1: nothing is held");
                }
            }
            _ = sigterm.recv() => break,
            _ = sigint.recv() => break,
        }
    }
    notify(&[sd_notify::NotifyState::Stopping]);
    feed.abort();
    d.flush_map_file();
    d.save_state_and_wait();
    log!(Notice, "stopping; HAProxy keeps the current routing");
    Ok(())
}
