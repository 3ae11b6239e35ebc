//! confd's decisions, apart from the loop that carries them out: each is a
//! function of (state, event) that returns what to do, reads no clock,
//! touches no file or socket, and is unit-tested here without etcd or
//! HAProxy. The daemon ([`crate::daemon`]) owns the state, passes the time
//! in, and performs the actions.
//!
//! - [`View`]: what etcd holds and the routing it asks for, updated by each
//!   [`Feed`] message, change by change ([`Table`]).
//! - [`Gate`]: the hold state machine for mass removals (the rule itself,
//!   [`routing::is_mass_removal`], lives with the other routing rules).
//! - [`plan`]: what one apply sends to the runtime API, per host or the
//!   whole map, and whether the map file is to be rewritten after it;
//!   [`runtime_stale`]: whether HAProxy reloaded on an older map file.
//! - [`config_step`]: what a new HAProxy config leads to (install, reload,
//!   keep the current one).
//! - [`Schedule`]: when the next apply runs: at once after a quiet period,
//!   then coalescing what follows into one apply per window.
//! - [`Throttle`]: how often the state file is written.
//! - [`ProblemLog`]: which skipped keys to log, once each.
//! - [`NetworkWatch`]: what is known of the sites' Docker network and when
//!   to read it again.
//! - [`acme_wakes`]: which sites the ACME thread looks at now, rather than
//!   at its next periodic pass.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use hostyard_config::ConfdConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::Domain;
use hostyard_haproxy::{Entry, HostMap};
use hostyard_routing::site_network::SiteNetwork;
use hostyard_routing::table::{Changed, Table};
use hostyard_routing::{self as routing, AllowedNetworks, Problem};

use crate::etcd_feed::Feed;

/// Above this many changed hosts, one atomic full replace is cheaper than
/// one command per host, in a small map (see [`full_replace_above`]).
pub const INCREMENTAL_LIMIT: usize = 200;
/// A full replace costs HAProxy work for every entry of the map (parsed and
/// indexed again: about 0.8 s of its CPU for 200,000 entries), a command
/// per host about ten times one entry's share of it: per host is cheaper
/// up to a tenth of the map.
pub const FULL_REPLACE_SHARE: usize = 10;

/// Above how many changed hosts the whole runtime map of `hosts` entries
/// is replaced rather than changed host by host.
pub fn full_replace_above(hosts: usize) -> usize {
    INCREMENTAL_LIMIT.max(hosts / FULL_REPLACE_SHARE)
}
/// How long after a refused apply it is tried again.
pub const RETRY_AFTER: Duration = Duration::from_secs(1);
/// The map file is rewritten at most this often (with 10,000 sites it is
/// 20,000 lines): at once after a quiet period, then what follows together.
pub const MAP_FILE_EVERY: Duration = Duration::from_millis(100);
/// How often confd asks HAProxy which routing generation it holds, besides
/// after each map file write: a reload from outside that began before a
/// write may load the older file and end after the write's check.
pub const RUNTIME_CHECK_EVERY: Duration = Duration::from_secs(1);

/// The time, passed in: monotonic for timers, Unix seconds for the state
/// file.
#[derive(Debug, Clone, Copy)]
pub struct Now {
    pub instant: Instant,
    pub unix: u64,
}

// ---- the view of etcd --------------------------------------------------

/// The desired routing of what etcd holds under the root prefix, as far
/// as the feed told (the table keeps every key parsed; the raw values are
/// not kept).
#[derive(Debug)]
pub struct View {
    pub table: Table,
    pub revision: i64,
    /// Whether a full read ever arrived (before it, nothing is applied).
    pub have_view: bool,
    pub etcd_connected: bool,
}

/// What a feed message is worth a log line for.
#[derive(Debug, PartialEq, Eq)]
pub enum FeedNote {
    /// A full read after start or an outage.
    Connected { keys: usize, revision: i64 },
    /// etcd went away; the last view is kept.
    Lost(String),
}

impl View {
    pub fn new(schema: Schema, allowed: AllowedNetworks) -> View {
        View {
            table: Table::new(schema, allowed),
            revision: 0,
            have_view: false,
            etcd_connected: false,
        }
    }

    /// New allowed networks: every registration is judged again.
    pub fn set_allowed(&mut self, allowed: AllowedNetworks) {
        self.table.set_allowed(allowed);
    }

    pub fn on_feed(&mut self, feed: Feed) -> Option<FeedNote> {
        match feed {
            Feed::Snapshot { kvs, revision } => {
                let note = (!self.etcd_connected).then_some(FeedNote::Connected {
                    keys: kvs.len(),
                    revision,
                });
                let schema = self.table.schema().clone();
                let allowed = self.table.allowed().clone();
                // The old table goes first: one in memory at a time.
                self.table = Table::new(schema.clone(), allowed.clone());
                self.table = Table::build(schema, allowed, kvs);
                self.revision = revision;
                self.have_view = true;
                self.etcd_connected = true;
                note
            }
            Feed::Changes { changes, revision } => {
                self.table
                    .update(changes.iter().map(|(k, v)| (k.as_str(), v.as_deref())));
                self.revision = revision;
                None
            }
            Feed::Lost(why) => {
                self.etcd_connected = false;
                Some(FeedNote::Lost(why))
            }
        }
    }
}

// ---- the hold state machine --------------------------------------------

/// When a change counts as a mass removal, and how long it is held.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HoldPolicy {
    pub fraction: f64,
    pub min_removals: usize,
    pub hold: Duration,
}

impl From<&ConfdConfig> for HoldPolicy {
    fn from(c: &ConfdConfig) -> HoldPolicy {
        HoldPolicy {
            fraction: c.hold_fraction,
            min_removals: c.hold_min_removals,
            hold: c.hold,
        }
    }
}

/// A mass removal kept from HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hold {
    pub started: Instant,
    pub since_unix: u64,
    /// Routes the held change would remove (updated as etcd changes).
    pub removed: usize,
}

/// Holds mass removals until they persist or an operator accepts them.
#[derive(Debug, Default)]
pub struct Gate {
    hold: Option<Hold>,
    /// The operator accepted the held change (SIGUSR1).
    accepted: bool,
}

/// Why a held change is applied after all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Release {
    /// The operator accepted it.
    Accepted,
    /// It persisted for the hold time.
    Persisted { removed: usize },
    /// etcd changed again and it is no longer a mass removal.
    NoLongerMass,
}

/// What to do with the desired routing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Apply it; `released` says why a hold ended, if one did.
    Apply { released: Option<Release> },
    /// Keep HAProxy as it is. `new`: the hold began with this change.
    Hold {
        new: bool,
        removed: usize,
        routes: usize,
    },
}

/// A hold as the state file recorded it when confd last ran.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordedHold {
    pub since_unix: u64,
    pub removed: usize,
    pub accepted: bool,
}

impl Gate {
    /// The gate after a restart, from the hold confd recorded before it.
    /// A restart neither gives a held change a new full hold time (the hold
    /// keeps its start) nor takes back an operator's acceptance. A hold
    /// recorded longer ago than the hold time is not resumed unless it was
    /// accepted: confd did not run to see the change persist, so it is held
    /// afresh if it still is a mass removal.
    pub fn resume(recorded: Option<RecordedHold>, policy: &HoldPolicy, now: Now) -> Gate {
        let Some(r) = recorded else {
            return Gate::default();
        };
        let age = Duration::from_secs(now.unix.saturating_sub(r.since_unix));
        if age >= policy.hold && !r.accepted {
            return Gate::default();
        }
        Gate {
            hold: Some(Hold {
                started: now.instant.checked_sub(age).unwrap_or(now.instant),
                since_unix: r.since_unix,
                removed: r.removed,
            }),
            accepted: r.accepted,
        }
    }

    pub fn held(&self) -> Option<&Hold> {
        self.hold.as_ref()
    }

    /// Whether the operator accepted the held change (not applied yet).
    pub fn accepted(&self) -> bool {
        self.accepted && self.hold.is_some()
    }

    /// Judges a change that would remove `removal.removed` of
    /// `removal.routes` routes.
    pub fn judge(&mut self, removal: Removal, policy: &HoldPolicy, now: Now) -> Verdict {
        let Removal { routes, removed } = removal;
        let mass = routing::is_mass(routes, removed, policy.fraction, policy.min_removals);
        if !mass || self.accepted {
            let released = self.hold.take().map(|_| {
                if self.accepted {
                    Release::Accepted
                } else {
                    Release::NoLongerMass
                }
            });
            return Verdict::Apply { released };
        }
        match &mut self.hold {
            None => {
                self.hold = Some(Hold {
                    started: now.instant,
                    since_unix: now.unix,
                    removed,
                });
                Verdict::Hold {
                    new: true,
                    removed,
                    routes,
                }
            }
            Some(h) if now.instant.saturating_duration_since(h.started) >= policy.hold => {
                self.hold = None;
                Verdict::Apply {
                    released: Some(Release::Persisted { removed }),
                }
            }
            Some(h) => {
                h.removed = removed;
                Verdict::Hold {
                    new: false,
                    removed,
                    routes,
                }
            }
        }
    }

    /// After an apply the verdict asked for. An accepted change whose apply
    /// failed stays accepted for the retry: resetting first would re-hold it.
    pub fn applied(&mut self, retry: bool) {
        if !retry {
            self.accepted = false;
        }
    }

    /// The operator accepts the held change; false when nothing is held.
    pub fn accept(&mut self) -> bool {
        if self.hold.is_some() {
            self.accepted = true;
        }
        self.accepted
    }

    /// When the hold ends by itself, if one is active.
    pub fn deadline(&self, policy: &HoldPolicy) -> Option<Instant> {
        self.hold.as_ref().map(|h| h.started + policy.hold)
    }
}

pub fn route_count(map: &HostMap) -> usize {
    map.values().filter(|e| e.is_route()).count()
}

/// What a change would take away: `removed` of the `routes` HAProxy has.
/// `routes` is counted only when something is removed (0 otherwise): the
/// count walks the whole map, most of a millisecond at 10,000 sites, and
/// would sit on every change's path to HAProxy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Removal {
    pub routes: usize,
    pub removed: usize,
}

/// The removal from `applied` to `next`, looking only at the `changed`
/// hosts (every other host is the same in both).
pub fn removal(applied: &HostMap, next: &HostMap, changed: &Changed) -> Removal {
    let removed = match changed {
        Changed::All => routing::removed_routes(applied, next),
        Changed::Hosts(hosts) => hosts
            .iter()
            .filter(|h| {
                applied.get(*h).is_some_and(Entry::is_route)
                    && !next.get(*h).is_some_and(Entry::is_route)
            })
            .count(),
    };
    Removal {
        routes: if removed == 0 {
            0
        } else {
            route_count(applied)
        },
        removed,
    }
}

/// While a mass removal is held: what goes to HAProxy anyway, and what
/// waits with the hold.
#[derive(Debug, PartialEq)]
pub struct DuringHold {
    /// The routing HAProxy gets now: `applied` with every change but the
    /// held removals (a new site, a move, a redirect, a site that is down
    /// without having been routed).
    pub target: HostMap,
    /// The hosts that change now.
    pub now: Changed,
    /// The hosts whose route would go: they wait for the hold's end.
    pub held: Changed,
}

/// Splits the `changed` hosts between `applied` and `next` into those
/// applied at once and the removals the hold keeps (a host routed in
/// `applied` and not in `next`): a held removal never delays an addition.
pub fn during_hold(applied: &HostMap, next: &HostMap, changed: &Changed) -> DuringHold {
    let hosts: Vec<String> = match changed {
        Changed::All => diff(applied, next).into_iter().map(|(h, _)| h).collect(),
        Changed::Hosts(hosts) => hosts.iter().cloned().collect(),
    };
    let mut target = applied.clone();
    let mut now = BTreeSet::new();
    let mut held = BTreeSet::new();
    for host in hosts {
        let was_route = applied.get(&host).is_some_and(Entry::is_route);
        let will_route = next.get(&host).is_some_and(Entry::is_route);
        if was_route && !will_route {
            held.insert(host);
            continue;
        }
        match next.get(&host) {
            Some(e) => target.insert(host.clone(), e.clone()),
            None => target.remove(&host),
        };
        now.insert(host);
    }
    DuringHold {
        target,
        now: Changed::Hosts(now),
        held: Changed::Hosts(held),
    }
}

// ---- one apply ---------------------------------------------------------

/// Host → new entry (`None`: removed), for hosts that differ.
pub type Changes<'a> = Vec<(String, Option<&'a Entry>)>;

/// How HAProxy's runtime map gets the change, when HAProxy runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Runtime {
    /// One command per changed host.
    PerHost,
    /// The whole map replaced atomically: when the runtime map is not known
    /// to equal what was applied, or when that is fewer commands.
    Full,
}

/// What one apply does.
#[derive(Debug, PartialEq)]
pub enum Plan<'a> {
    /// Nothing changed and the runtime map is known to be right.
    Nothing,
    Apply {
        changes: Changes<'a>,
        /// Something changed: the routing's generation goes up and the map
        /// file is rewritten, after the runtime API (off the path a change
        /// waits on; see [`runtime_stale`] for a reload in between).
        write_file: bool,
        runtime: Runtime,
    },
}

/// What to do to go from `applied` to `next`, where only the `changed`
/// hosts can differ, given whether HAProxy's runtime map is known to equal
/// `applied`.
pub fn plan<'a>(
    applied: &HostMap,
    next: &'a HostMap,
    changed: &Changed,
    runtime_synced: bool,
) -> Plan<'a> {
    let changes = match changed {
        Changed::All => diff(applied, next),
        Changed::Hosts(hosts) => hosts
            .iter()
            .filter(|h| applied.get(*h) != next.get(*h))
            .map(|h| (h.clone(), next.get(h)))
            .collect(),
    };
    if changes.is_empty() && runtime_synced {
        return Plan::Nothing;
    }
    let runtime = if !runtime_synced || changes.len() > full_replace_above(next.len()) {
        Runtime::Full
    } else {
        Runtime::PerHost
    };
    Plan::Apply {
        write_file: !changes.is_empty(),
        changes,
        runtime,
    }
}

/// After the map file was written with generation `written` (confd has
/// applied `applied`): whether to ask HAProxy which generation its runtime
/// map holds. Only once the file holds every change: an older write is
/// followed by a newer one, which asks then.
pub fn check_after_write(written: u64, applied: u64) -> bool {
    written == applied
}

/// Whether HAProxy's runtime map, holding generation `runtime` (`None`: no
/// generation at all), must be replaced whole: HAProxy reloaded or
/// restarted on a map file older than what confd applied, between a
/// runtime change and the file's write.
pub fn runtime_stale(runtime: Option<u64>, applied: u64) -> bool {
    runtime != Some(applied)
}

/// Host → new entry (`None`: removed), for hosts that differ.
pub fn diff<'a>(current: &HostMap, next: &'a HostMap) -> Changes<'a> {
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

// ---- the HAProxy config ------------------------------------------------

/// What a rendered HAProxy config leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigStep {
    /// It equals the file: nothing to do.
    Unchanged,
    /// `haproxy -c` refused it and there is no config at all: confd cannot
    /// start.
    Unusable(String),
    /// `haproxy -c` refused it: the current config stays, and the reason
    /// goes to the log and the state file.
    Rejected(String),
    /// Rename it into place; `reload`: HAProxy runs on the old one and gets
    /// a hitless reload through its master socket.
    Install { reload: bool },
}

/// `current`: the config file now (None: absent); `check`: the verdict of
/// `haproxy -c` on the candidate, asked only when it differs;
/// `master_running`: HAProxy's master socket exists.
pub fn config_step(
    current: Option<&str>,
    candidate: &str,
    check: impl FnOnce() -> Result<(), String>,
    master_running: bool,
) -> ConfigStep {
    if current == Some(candidate) {
        return ConfigStep::Unchanged;
    }
    match check() {
        Err(why) if current.is_none() => ConfigStep::Unusable(why),
        Err(why) => ConfigStep::Rejected(why),
        Ok(()) => ConfigStep::Install {
            reload: current.is_some() && master_running,
        },
    }
}

// ---- when to apply -----------------------------------------------------

/// When the next apply runs. A change after a quiet period (no apply within
/// the window) is applied at once; changes that follow an apply within the
/// window wait for its end and go together, so a burst costs one apply per
/// window however many changes it has, and an isolated change waits for
/// nothing.
#[derive(Debug)]
pub struct Schedule {
    window: Duration,
    /// When the last apply ended.
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Schedule {
    pub fn new(window: Duration) -> Schedule {
        Schedule {
            window,
            last: None,
            due: None,
        }
    }

    pub fn set_window(&mut self, window: Duration) {
        self.window = window;
    }

    /// When the next apply is due, if one is.
    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// etcd changed at `now`. An apply already due (a coalescing window, a
    /// retry) takes the change along.
    pub fn changed(&mut self, now: Instant) {
        if self.due.is_some() {
            return;
        }
        self.due = Some(match self.last {
            Some(last) if now < last + self.window => last + self.window,
            _ => now,
        });
    }

    /// Apply at once, whatever the window (SIGHUP, an accepted hold).
    pub fn now(&mut self, now: Instant) {
        self.due = Some(now);
    }

    /// An apply ended at `now`; `retry`: HAProxy refused it.
    pub fn ran(&mut self, now: Instant, retry: bool) {
        self.last = Some(now);
        self.due = retry.then(|| now + RETRY_AFTER);
    }
}

// ---- how often the state file is written ------------------------------

/// How stale the state file (`hostyard status`) may get while changes go
/// on: with 10,000 sites each write is megabytes of JSON.
pub const STATE_EVERY: Duration = Duration::from_millis(250);

/// At most one run per period: the first request after a quiet period runs
/// at once, the ones that follow within the period fold into one run at its
/// end.
#[derive(Debug)]
pub struct Throttle {
    every: Duration,
    last: Option<Instant>,
    due: Option<Instant>,
}

impl Throttle {
    pub fn new(every: Duration) -> Throttle {
        Throttle {
            every,
            last: None,
            due: None,
        }
    }

    /// Something changed at `now`: true to run now, else it runs at
    /// [`Throttle::due`].
    pub fn request(&mut self, now: Instant) -> bool {
        if self.due.is_some() {
            return false;
        }
        match self.last {
            Some(last) if now < last + self.every => {
                self.due = Some(last + self.every);
                false
            }
            _ => {
                self.last = Some(now);
                true
            }
        }
    }

    pub fn due(&self) -> Option<Instant> {
        self.due
    }

    /// The run that was due ran at `now`.
    pub fn ran(&mut self, now: Instant) {
        self.due = None;
        self.last = Some(now);
    }
}

// ---- logging skipped keys once -----------------------------------------

/// The problems last logged, so each is logged once when it appears and
/// once when it is resolved.
#[derive(Debug, Default)]
pub struct ProblemLog {
    logged: BTreeSet<Problem>,
}

impl ProblemLog {
    /// (new problems, keys of resolved ones), each in key order.
    pub fn update(&mut self, problems: &[Problem]) -> (Vec<Problem>, Vec<String>) {
        let now: BTreeSet<Problem> = problems.iter().cloned().collect();
        let new = now.difference(&self.logged).cloned().collect();
        let resolved = self
            .logged
            .difference(&now)
            .map(|p| p.key.clone())
            .collect();
        self.logged = now;
        (new, resolved)
    }
}

// ---- the sites' network -----------------------------------------------

/// How soon the sites' network is read again while the last read failed,
/// or while a registration is refused for being outside it (the first site
/// start creates the network, maybe after confd read it): on a timer, not
/// only on the next etcd event, which may never come.
pub const NETWORK_RETRY: Duration = Duration::from_secs(2);

/// One read of the sites' Docker network.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkRead {
    Found(SiteNetwork),
    /// Docker answered that it does not exist.
    Absent,
    /// No answer: Docker down or slow, or the inspect killed (a signal
    /// sent to every process of confd's unit).
    Failed(String),
}

/// What a read leads to, for the log.
#[derive(Debug, Clone, PartialEq)]
pub enum NetworkNote {
    /// Known, for the first time, anew or again after failures.
    Known,
    /// Nothing new to say (the same network, the same failure again).
    Same,
    /// Docker says the network does not exist: nothing routes into it.
    Absent,
    /// The read failed; the last known network stays in use.
    Kept(String),
    /// The read failed and no network was ever known: nothing routes into
    /// it until a read succeeds.
    Unknown(String),
}

/// What confd knows of the sites' network. A failed read never forgets
/// a known network: routing keeps going where it went, and the read is
/// tried again every [`NETWORK_RETRY`].
#[derive(Debug)]
pub struct NetworkWatch {
    known: Option<SiteNetwork>,
    /// The last read failed, with this reason.
    failing: Option<String>,
    /// Docker said the network is absent at the last read.
    absent: bool,
    last_read: Instant,
}

impl NetworkWatch {
    /// After the first read, at `now`.
    pub fn new(read: NetworkRead, now: Instant) -> (NetworkWatch, NetworkNote) {
        let mut w = NetworkWatch {
            known: None,
            failing: None,
            absent: false,
            last_read: now,
        };
        let note = w.on_read(read, now);
        (w, note)
    }

    /// The network registrations are judged against (`None`: unknown).
    pub fn known(&self) -> Option<&SiteNetwork> {
        self.known.as_ref()
    }

    pub fn on_read(&mut self, read: NetworkRead, now: Instant) -> NetworkNote {
        self.last_read = now;
        match read {
            NetworkRead::Found(net) => {
                let recovered = self.failing.take().is_some() || std::mem::take(&mut self.absent);
                let changed = self.known.as_ref() != Some(&net);
                self.known = Some(net);
                if changed || recovered {
                    NetworkNote::Known
                } else {
                    NetworkNote::Same
                }
            }
            NetworkRead::Absent => {
                let again = self.absent && self.known.is_none();
                self.failing = None;
                self.known = None;
                self.absent = true;
                if again {
                    NetworkNote::Same
                } else {
                    NetworkNote::Absent
                }
            }
            NetworkRead::Failed(why) => {
                let again = self.failing.as_deref() == Some(why.as_str());
                self.failing = Some(why.clone());
                if again {
                    NetworkNote::Same
                } else if self.known.is_some() {
                    NetworkNote::Kept(why)
                } else {
                    NetworkNote::Unknown(why)
                }
            }
        }
    }

    /// When to read again on a timer, if at all: after a failed read, or
    /// while no network is known and a registration is refused for being
    /// outside it (a site start created the network). Never when
    /// `relies_on_docker` is false (`confd.allowed_networks` is set).
    pub fn next_read(&self, relies_on_docker: bool, refused_outside: bool) -> Option<Instant> {
        let wanted = self.failing.is_some() || (refused_outside && self.known.is_none());
        (relies_on_docker && wanted).then_some(self.last_read + NETWORK_RETRY)
    }

    /// When an apply may read again, at most: as [`NetworkWatch::next_read`],
    /// and also with a known network while a registration is refused (the
    /// network may have been made anew): on etcd's changes, not a timer,
    /// so a lasting bad registration costs no steady `docker` runs.
    pub fn next_read_on_change(
        &self,
        relies_on_docker: bool,
        refused_outside: bool,
    ) -> Option<Instant> {
        let wanted = self.failing.is_some() || refused_outside;
        (relies_on_docker && wanted).then_some(self.last_read + NETWORK_RETRY)
    }
}

/// The sites whose registration one watch response put (a site that
/// started, or came back): the ACME thread orders their certificates now
/// rather than at its next periodic pass. A removal wakes nothing: the
/// certificate stays for the site's return. Whether one is ordered is the
/// ACME thread's rule ([`hostyard_tls::acme::due`]): a site that comes and
/// goes is not ordered more often than its backoff allows.
pub fn acme_wakes(schema: &Schema, changes: &[(String, Option<Vec<u8>>)]) -> BTreeSet<Domain> {
    changes
        .iter()
        .filter(|(_, value)| value.is_some())
        .filter_map(|(key, _)| schema.parse_service_key(key).ok())
        .map(|(_, domain)| domain)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// The verdict that holds a change: `new` for a hold that starts now.
    fn hold_verdict(new: bool, removed: usize, routes: usize) -> Verdict {
        Verdict::Hold {
            new,
            removed,
            routes,
        }
    }

    fn route(port: u16) -> Entry {
        Entry::Route(([10, 0, 0, 1], port).into())
    }

    /// `n` hosts h0..h(n-1), each routed.
    fn routes(n: usize) -> HostMap {
        (0..n)
            .map(|i| (format!("h{i}.example.com"), route(8000 + i as u16)))
            .collect()
    }

    fn judge(g: &mut Gate, applied: &HostMap, next: &HostMap, now: Now) -> Verdict {
        g.judge(removal(applied, next, &Changed::All), &policy(), now)
    }

    fn policy() -> HoldPolicy {
        HoldPolicy {
            fraction: 0.5,
            min_removals: 3,
            hold: Duration::from_secs(300),
        }
    }

    fn at(base: Instant, secs: u64) -> Now {
        Now {
            instant: base + Duration::from_secs(secs),
            unix: 1_000_000 + secs,
        }
    }

    #[test]
    fn an_ordinary_change_is_applied_and_holds_nothing() {
        let t = Instant::now();
        let mut g = Gate::default();
        let mut next = routes(10);
        next.remove("h0.example.com");
        assert_eq!(
            judge(&mut g, &routes(10), &next, at(t, 0)),
            Verdict::Apply { released: None }
        );
        assert!(g.held().is_none());
        assert_eq!(g.deadline(&policy()), None);
    }

    #[test]
    fn a_mass_removal_is_held_then_applied_when_it_persists() {
        let t = Instant::now();
        let mut g = Gate::default();
        let applied = routes(10);
        let empty = HostMap::new();
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 0)),
            hold_verdict(true, 10, 10)
        );
        let hold = *g.held().unwrap();
        assert_eq!((hold.since_unix, hold.removed), (1_000_000, 10));
        assert_eq!(g.deadline(&policy()), Some(t + Duration::from_secs(300)));
        // Still held while etcd changes within the hold: the count follows.
        let mut fewer = HostMap::new();
        fewer.insert("h0.example.com".into(), route(8000));
        assert_eq!(
            judge(&mut g, &applied, &fewer, at(t, 299)),
            hold_verdict(false, 9, 10)
        );
        assert_eq!(g.held().unwrap().removed, 9);
        assert_eq!(g.held().unwrap().started, t, "the hold keeps its start");
        assert_eq!(
            judge(&mut g, &applied, &fewer, at(t, 300)),
            Verdict::Apply {
                released: Some(Release::Persisted { removed: 9 })
            }
        );
        assert!(g.held().is_none());
    }

    #[test]
    fn a_held_change_that_stops_being_a_mass_removal_is_applied_normally() {
        let t = Instant::now();
        let mut g = Gate::default();
        let applied = routes(10);
        judge(&mut g, &applied, &HostMap::new(), at(t, 0));
        // etcd restored: only one route goes.
        let mut next = routes(10);
        next.remove("h3.example.com");
        assert_eq!(
            judge(&mut g, &applied, &next, at(t, 5)),
            Verdict::Apply {
                released: Some(Release::NoLongerMass)
            }
        );
        assert!(g.held().is_none());
    }

    #[test]
    fn an_accepted_hold_is_applied_and_stays_accepted_until_an_apply_succeeds() {
        let t = Instant::now();
        let mut g = Gate::default();
        assert!(!g.accept(), "nothing held: nothing to accept");
        let applied = routes(10);
        let empty = HostMap::new();
        judge(&mut g, &applied, &empty, at(t, 0));
        assert!(g.accept());
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 1)),
            Verdict::Apply {
                released: Some(Release::Accepted)
            }
        );
        // HAProxy refused: the retry must not hold it again.
        g.applied(true);
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 2)),
            Verdict::Apply { released: None }
        );
        g.applied(false);
        // Accepted once: the next mass removal is held again.
        assert!(matches!(
            judge(&mut g, &applied, &empty, at(t, 3)),
            Verdict::Hold { new: true, .. }
        ));
    }

    #[test]
    fn a_held_removal_never_delays_an_addition() {
        let t = Instant::now();
        let mut g = Gate::default();
        let applied = routes(10);
        // Nine sites' registrations went (a held mass removal), one site
        // was started meanwhile and one moved.
        let mut next = HostMap::new();
        next.insert("h0.example.com".into(), route(9000));
        next.insert("new.example.com".into(), route(7000));
        next.insert("down.example.com".into(), Entry::Down);
        assert!(matches!(
            judge(&mut g, &applied, &next, at(t, 0)),
            Verdict::Hold { new: true, .. }
        ));
        let split = during_hold(&applied, &next, &Changed::All);
        let hosts = |c: &Changed| match c {
            Changed::Hosts(h) => h.iter().cloned().collect::<Vec<_>>(),
            Changed::All => panic!("a split names its hosts"),
        };
        assert_eq!(
            hosts(&split.now),
            ["down.example.com", "h0.example.com", "new.example.com"]
        );
        assert_eq!(hosts(&split.held).len(), 9);
        assert!(!hosts(&split.held).contains(&"h0.example.com".to_string()));
        // HAProxy gets the new site, the move and the down page, and keeps
        // every held route.
        let mut want = routes(10);
        want.insert("h0.example.com".into(), route(9000));
        want.insert("new.example.com".into(), route(7000));
        want.insert("down.example.com".into(), Entry::Down);
        assert_eq!(split.target, want);
        // The next judgement, over what HAProxy then has and the hosts
        // still held, is the same hold, not a new one.
        assert_eq!(
            g.judge(
                removal(&split.target, &next, &split.held),
                &policy(),
                at(t, 1)
            ),
            hold_verdict(false, 9, 11)
        );
        // Only the changed hosts are looked at.
        let only_new = Changed::Hosts(BTreeSet::from(["new.example.com".to_string()]));
        let split = during_hold(&applied, &next, &only_new);
        assert_eq!(hosts(&split.now), ["new.example.com"]);
        assert!(split.held.is_empty());
    }

    #[test]
    fn a_restart_resumes_a_hold_without_a_new_hold_time_and_keeps_an_acceptance() {
        let t = Instant::now() + Duration::from_secs(1000);
        let p = policy();
        let recorded = |since_unix, accepted| {
            Some(RecordedHold {
                since_unix,
                removed: 10,
                accepted,
            })
        };
        let applied = routes(10);
        let empty = HostMap::new();
        // Held at unix 1,000,000; confd restarted 200 s later: 100 s left.
        let mut g = Gate::resume(recorded(1_000_000, false), &p, at(t, 200));
        assert_eq!(g.deadline(&p), Some(t + Duration::from_secs(300)));
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 200)),
            hold_verdict(false, 10, 10)
        );
        assert_eq!(g.held().unwrap().since_unix, 1_000_000);
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 300)),
            Verdict::Apply {
                released: Some(Release::Persisted { removed: 10 })
            }
        );
        // Accepted by the operator before the restart: applied at once.
        let mut g = Gate::resume(recorded(1_000_000, true), &p, at(t, 10));
        assert!(g.accepted());
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 10)),
            Verdict::Apply {
                released: Some(Release::Accepted)
            }
        );
        // So is an accepted one from long ago (its apply had failed).
        let mut g = Gate::resume(recorded(1_000_000, true), &p, at(t, 5000));
        assert!(matches!(
            judge(&mut g, &applied, &empty, at(t, 5000)),
            Verdict::Apply { .. }
        ));
        // A hold older than the hold time, not accepted: confd did not see
        // it persist, so it is held afresh.
        let mut g = Gate::resume(recorded(1_000_000, false), &p, at(t, 400));
        assert!(g.held().is_none());
        assert_eq!(
            judge(&mut g, &applied, &empty, at(t, 400)),
            hold_verdict(true, 10, 10)
        );
        // Nothing recorded: nothing held.
        assert!(Gate::resume(None, &p, at(t, 0)).held().is_none());
    }

    fn net(subnet: &str) -> SiteNetwork {
        SiteNetwork {
            subnets: vec![subnet.parse().unwrap()],
            gateways: vec![],
        }
    }

    #[test]
    fn a_failed_read_of_the_sites_network_keeps_the_known_one_and_reads_again_on_a_timer() {
        let t = Instant::now();
        let ten = net("10.5.0.0/16");
        let (mut w, note) = NetworkWatch::new(NetworkRead::Found(ten.clone()), t);
        assert_eq!(note, NetworkNote::Known);
        assert_eq!(w.next_read(true, false), None, "known and fine: no read");
        // The inspect killed by a SIGHUP sent to the whole unit.
        let killed = "docker network inspect hostyard ended with signal: 1 (SIGHUP)".to_string();
        let t1 = t + Duration::from_secs(60);
        assert_eq!(
            w.on_read(NetworkRead::Failed(killed.clone()), t1),
            NetworkNote::Kept(killed.clone())
        );
        assert_eq!(w.known(), Some(&ten), "the known network stays");
        assert_eq!(w.next_read(true, false), Some(t1 + NETWORK_RETRY));
        // The same failure again is not logged again.
        let t2 = t1 + NETWORK_RETRY;
        assert_eq!(
            w.on_read(NetworkRead::Failed(killed), t2),
            NetworkNote::Same
        );
        assert_eq!(w.next_read(true, false), Some(t2 + NETWORK_RETRY));
        // Read again: fine, and said so.
        let t3 = t2 + NETWORK_RETRY;
        assert_eq!(
            w.on_read(NetworkRead::Found(ten.clone()), t3),
            NetworkNote::Known
        );
        assert_eq!(w.next_read(true, false), None);
        assert_eq!(
            w.on_read(NetworkRead::Found(ten.clone()), t3),
            NetworkNote::Same
        );
        // With `confd.allowed_networks` set, Docker is never asked again.
        w.on_read(NetworkRead::Failed("docker is down".into()), t3);
        assert_eq!(w.next_read(false, true), None);
    }

    #[test]
    fn an_unknown_network_is_read_again_on_a_timer_until_it_is_known() {
        let t = Instant::now();
        let down = "docker network inspect hostyard ended with exit status: 1: \
                    Cannot connect to the Docker daemon"
            .to_string();
        let (mut w, note) = NetworkWatch::new(NetworkRead::Failed(down.clone()), t);
        assert_eq!(note, NetworkNote::Unknown(down));
        assert_eq!(w.known(), None);
        assert_eq!(w.next_read(true, false), Some(t + NETWORK_RETRY));
        let t1 = t + NETWORK_RETRY;
        assert_eq!(w.on_read(NetworkRead::Absent, t1), NetworkNote::Absent);
        // Absent and nothing refused: no site started yet, nothing to read.
        assert_eq!(w.next_read(true, false), None);
        assert_eq!(w.on_read(NetworkRead::Absent, t1), NetworkNote::Same);
        // A site started (it made the network) and its registration is
        // refused as outside: read again on the timer, no etcd event needed.
        assert_eq!(w.next_read(true, true), Some(t1 + NETWORK_RETRY));
        let ten = net("10.5.0.0/16");
        assert_eq!(
            w.on_read(NetworkRead::Found(ten.clone()), t1 + NETWORK_RETRY),
            NetworkNote::Known
        );
        assert_eq!(w.known(), Some(&ten));
        // Known, and a registration refused as outside it: not on a timer,
        // only when etcd changes.
        assert_eq!(w.next_read(true, true), None);
        assert_eq!(
            w.next_read_on_change(true, true),
            Some(t1 + NETWORK_RETRY + NETWORK_RETRY)
        );
        assert_eq!(w.next_read_on_change(true, false), None);
    }

    #[test]
    fn removing_few_routes_or_moving_many_is_never_held() {
        let t = Instant::now();
        let mut g = Gate::default();
        // Two of two: below the minimum of three.
        assert_eq!(
            judge(&mut g, &routes(2), &HostMap::new(), at(t, 0)),
            Verdict::Apply { released: None }
        );
        // All ten moved to other addresses: nothing removed.
        let moved: HostMap = routes(10)
            .into_keys()
            .enumerate()
            .map(|(i, h)| (h, route(9000 + i as u16)))
            .collect();
        assert_eq!(
            judge(&mut g, &routes(10), &moved, at(t, 0)),
            Verdict::Apply { released: None }
        );
    }

    #[test]
    fn the_plan_sends_changed_hosts_only_and_the_whole_map_when_unsure() {
        let applied = routes(3);
        assert_eq!(plan(&applied, &applied, &Changed::All, true), Plan::Nothing);
        // Nothing changed but the runtime map is unknown: replace it, no file.
        assert_eq!(
            plan(&applied, &applied, &Changed::All, false),
            Plan::Apply {
                changes: vec![],
                write_file: false,
                runtime: Runtime::Full
            }
        );
        let mut next = applied.clone();
        next.remove("h0.example.com");
        next.insert("h1.example.com".into(), Entry::Down);
        let redirect = Entry::Redirect(Domain::parse("h2.example.com").unwrap());
        next.insert("www.h2.example.com".into(), redirect.clone());
        assert_eq!(
            plan(&applied, &next, &Changed::All, true),
            Plan::Apply {
                changes: vec![
                    ("h1.example.com".into(), Some(&Entry::Down)),
                    ("www.h2.example.com".into(), Some(&redirect)),
                    ("h0.example.com".into(), None),
                ],
                write_file: true,
                runtime: Runtime::PerHost
            }
        );
    }

    #[test]
    fn only_the_changed_hosts_are_compared_and_counted() {
        let applied = routes(10);
        let mut next = applied.clone();
        next.remove("h1.example.com");
        next.remove("h2.example.com");
        next.insert("h3.example.com".into(), route(9999));
        let hosts: BTreeSet<String> = ["h1", "h3", "h4"]
            .iter()
            .map(|h| format!("{h}.example.com"))
            .collect();
        let changed = Changed::Hosts(hosts);
        // h2 differs too but is not reported: every other host is taken
        // as equal, which is what keeps a change cheap with 10,000 sites.
        assert_eq!(
            plan(&applied, &next, &changed, true),
            Plan::Apply {
                changes: vec![
                    ("h1.example.com".into(), None),
                    ("h3.example.com".into(), Some(&route(9999))),
                ],
                write_file: true,
                runtime: Runtime::PerHost
            }
        );
        assert_eq!(
            removal(&applied, &next, &changed),
            Removal {
                routes: 10,
                removed: 1
            }
        );
        assert_eq!(
            removal(&applied, &next, &Changed::All),
            Removal {
                routes: 10,
                removed: 2
            }
        );
        // Nothing removed: the routes are not counted (a walk of the whole
        // map on every change's path).
        let added = Changed::Hosts(BTreeSet::from(["h3.example.com".to_string()]));
        assert_eq!(
            removal(&applied, &next, &added),
            Removal {
                routes: 0,
                removed: 0
            }
        );
        let nothing = Changed::Hosts(BTreeSet::new());
        assert_eq!(plan(&applied, &next, &nothing, true), Plan::Nothing);
    }

    #[test]
    fn many_changes_replace_the_whole_runtime_map() {
        let next = routes(INCREMENTAL_LIMIT + 1);
        let Plan::Apply { runtime, .. } = plan(&HostMap::new(), &next, &Changed::All, true) else {
            panic!("a change must be applied");
        };
        assert_eq!(runtime, Runtime::Full);
        let next = routes(INCREMENTAL_LIMIT);
        let Plan::Apply { runtime, .. } = plan(&HostMap::new(), &next, &Changed::All, true) else {
            panic!("a change must be applied");
        };
        assert_eq!(runtime, Runtime::PerHost);
    }

    #[test]
    fn a_burst_in_a_big_map_goes_host_by_host() {
        // 100,000 sites (a route and a www redirect each): a tenth of the
        // map changes per host, more is a full replace.
        let applied: HostMap = (0..200_000)
            .map(|i| (format!("h{i}.example.com"), route(8000)))
            .collect();
        let moved = |n: usize| -> HostMap {
            let mut next = applied.clone();
            for (_, entry) in next.iter_mut().take(n) {
                *entry = route(9999);
            }
            next
        };
        for (n, want) in [(20_000, Runtime::PerHost), (20_001, Runtime::Full)] {
            let next = moved(n);
            let Plan::Apply {
                runtime, changes, ..
            } = plan(&applied, &next, &Changed::All, true)
            else {
                panic!("a change must be applied");
            };
            assert_eq!(changes.len(), n);
            assert_eq!(runtime, want, "{n} changes");
        }
        assert_eq!(full_replace_above(40), INCREMENTAL_LIMIT);
    }

    #[test]
    fn only_a_file_that_caught_up_is_checked_against_haproxy() {
        assert!(check_after_write(5, 5));
        assert!(
            !check_after_write(4, 5),
            "generation 5 is still to be written, and checked then"
        );
        assert!(!runtime_stale(Some(5), 5));
        // A reload between the runtime change (5) and the file's write
        // loaded the file of generation 4.
        assert!(runtime_stale(Some(4), 5));
        // A map file from before generations: no generation at all.
        assert!(runtime_stale(None, 5));
    }

    #[test]
    fn the_map_file_is_written_at_once_after_quiet_then_once_per_period() {
        let t = Instant::now();
        let mut th = Throttle::new(MAP_FILE_EVERY);
        assert!(th.request(t), "a change after quiet: written at once");
        // A burst of 1,000 changes, one every 0.1 ms: one more write, at
        // the period's end.
        for i in 1..=1000u32 {
            assert!(!th.request(t + Duration::from_micros(100) * i));
        }
        assert_eq!(th.due(), Some(t + MAP_FILE_EVERY));
    }

    #[test]
    fn a_config_is_installed_reloaded_or_refused() {
        let ok = || Ok(());
        let bad = || Err("line 3: unknown keyword".to_string());
        let checked_never = || -> Result<(), String> { panic!("no check of an unchanged config") };
        assert_eq!(
            config_step(Some("a"), "a", checked_never, true),
            ConfigStep::Unchanged
        );
        assert_eq!(
            config_step(None, "a", ok, false),
            ConfigStep::Install { reload: false }
        );
        assert_eq!(
            config_step(Some("a"), "b", ok, false),
            ConfigStep::Install { reload: false },
            "HAProxy not running: it loads the file when it starts"
        );
        assert_eq!(
            config_step(Some("a"), "b", ok, true),
            ConfigStep::Install { reload: true }
        );
        assert_eq!(
            config_step(Some("a"), "b", bad, true),
            ConfigStep::Rejected("line 3: unknown keyword".into())
        );
        assert_eq!(
            config_step(None, "b", bad, false),
            ConfigStep::Unusable("line 3: unknown keyword".into())
        );
    }

    #[test]
    fn the_first_change_after_quiet_is_applied_at_once() {
        let t = Instant::now();
        let w = Duration::from_millis(5);
        let mut s = Schedule::new(w);
        assert_eq!(s.due(), None);
        s.changed(t);
        assert_eq!(s.due(), Some(t));
        s.ran(t, false);
        assert_eq!(s.due(), None);
        // Quiet for a window: again at once.
        s.changed(t + w);
        assert_eq!(s.due(), Some(t + w));
    }

    #[test]
    fn changes_right_after_an_apply_wait_for_the_window_together() {
        let t = Instant::now();
        let w = Duration::from_millis(5);
        let mut s = Schedule::new(w);
        s.changed(t);
        s.ran(t, false);
        let mut applies = 1;
        // A change every 0.1 ms for 100 ms: one apply per window.
        for i in 1..=1000u32 {
            let now = t + Duration::from_micros(100) * i;
            if s.due().is_some_and(|due| due <= now) {
                s.ran(now, false);
                applies += 1;
            }
            s.changed(now);
            assert!(
                s.due().unwrap() <= now + w,
                "a change waits at most a window"
            );
        }
        assert!((20..=22).contains(&applies), "{applies} applies");
    }

    #[test]
    fn a_refused_apply_is_retried_and_takes_later_changes_along() {
        let t = Instant::now();
        let mut s = Schedule::new(Duration::from_millis(5));
        s.changed(t);
        s.ran(t, true);
        assert_eq!(s.due(), Some(t + RETRY_AFTER));
        s.changed(t + Duration::from_millis(10));
        assert_eq!(s.due(), Some(t + RETRY_AFTER));
        // SIGHUP or an accepted hold: at once.
        s.now(t + Duration::from_millis(20));
        assert_eq!(s.due(), Some(t + Duration::from_millis(20)));
    }

    #[test]
    fn the_state_file_is_written_at_once_after_quiet_then_once_per_period() {
        let t = Instant::now();
        let every = Duration::from_millis(500);
        let mut th = Throttle::new(every);
        assert!(th.request(t));
        assert_eq!(th.due(), None);
        let ms = Duration::from_millis;
        assert!(!th.request(t + ms(10)));
        assert_eq!(th.due(), Some(t + every));
        assert!(!th.request(t + ms(20)), "folded into the run already due");
        assert_eq!(th.due(), Some(t + every));
        th.ran(t + every);
        assert_eq!(th.due(), None);
        assert!(th.request(t + every + every));
    }

    #[test]
    fn the_view_follows_the_feed_and_reports_connections_once() {
        let allowed = AllowedNetworks::new(&["10.0.0.0/8".parse().unwrap()], &[], &[]);
        let mut v = View::new(Schema::new(""), allowed);
        assert!(!v.have_view);
        let decl = br#"{"kind":"static","aliases":[]}"#.to_vec();
        let kvs: BTreeMap<String, Vec<u8>> = [("/sites/a.example.com".to_string(), decl)].into();
        assert_eq!(
            v.on_feed(Feed::Snapshot { kvs, revision: 7 }),
            Some(FeedNote::Connected {
                keys: 1,
                revision: 7
            })
        );
        assert!(v.have_view && v.etcd_connected);
        assert_eq!(
            v.on_feed(Feed::Changes {
                changes: vec![
                    ("/sites/a.example.com".into(), None),
                    (
                        "/services/static/b.example.com".into(),
                        Some(br#"{"ip":"10.0.0.5","port":"80"}"#.to_vec())
                    )
                ],
                revision: 9
            }),
            None
        );
        assert_eq!(v.table.map().get("a.example.com"), None);
        assert_eq!(
            v.table.map().get("b.example.com"),
            Some(&Entry::Route(([10, 0, 0, 5], 80).into()))
        );
        assert_eq!(v.revision, 9);
        assert_eq!(
            v.on_feed(Feed::Lost("gone".into())),
            Some(FeedNote::Lost("gone".into()))
        );
        assert!(!v.etcd_connected && v.have_view, "the last view is kept");
        // The watch restarting on a live connection is not news.
        v.etcd_connected = true;
        let again = Feed::Snapshot {
            kvs: BTreeMap::new(),
            revision: 10,
        };
        assert_eq!(v.on_feed(again), None);
    }

    #[test]
    fn the_views_routing_follows_changes_and_new_allowed_networks() {
        let ten = AllowedNetworks::new(&["10.0.0.0/8".parse().unwrap()], &[], &[]);
        let mut v = View::new(Schema::new(""), ten);
        let key = "/services/static/a.example.com".to_string();
        let value = br#"{"ip":"192.168.1.5","port":"80"}"#.to_vec();
        v.on_feed(Feed::Snapshot {
            kvs: BTreeMap::new(),
            revision: 1,
        });
        assert_eq!(v.table.take_changed(), Changed::All);
        v.on_feed(Feed::Changes {
            changes: vec![(key.clone(), Some(value))],
            revision: 2,
        });
        assert_eq!(v.table.map().get("a.example.com"), Some(&Entry::Down));
        let Changed::Hosts(hosts) = v.table.take_changed() else {
            panic!("a change names its hosts");
        };
        assert!(hosts.contains("a.example.com"));
        let wider = AllowedNetworks::new(&["192.168.0.0/16".parse().unwrap()], &[], &[]);
        v.set_allowed(wider);
        assert_eq!(
            v.table.map().get("a.example.com"),
            Some(&Entry::Route(([192, 168, 1, 5], 80).into()))
        );
        assert_eq!(v.table.take_changed(), Changed::All);
    }

    #[test]
    fn each_problem_is_logged_once_and_its_resolution_once() {
        let p = |k: &str| Problem {
            key: k.into(),
            message: "bad".into(),
        };
        let mut log = ProblemLog::default();
        assert_eq!(
            log.update(&[p("/a"), p("/b")]),
            (vec![p("/a"), p("/b")], vec![])
        );
        assert_eq!(log.update(&[p("/b"), p("/a")]), (vec![], vec![]));
        assert_eq!(log.update(&[p("/b")]), (vec![], vec!["/a".to_string()]));
    }

    #[test]
    fn a_registration_put_wakes_acme_for_its_site_and_nothing_else_does() {
        use hostyard_core::SiteKind;
        let schema = Schema::new("/hy");
        let a = Domain::parse("a.example").unwrap();
        let b = Domain::parse("b.example").unwrap();
        let c = Domain::parse("c.example").unwrap();
        let changes = vec![
            (
                schema.service_key(SiteKind::Static, &a),
                Some(b"{}".to_vec()),
            ),
            // Gone: nothing to order.
            (schema.service_key(SiteKind::Static, &b), None),
            // A declaration alone is no running site.
            (schema.site_key(&c), Some(b"{}".to_vec())),
            ("/hy/elsewhere".to_string(), Some(b"x".to_vec())),
            // The same site twice in one response: one look.
            (
                schema.service_key(SiteKind::Wordpress, &a),
                Some(b"{}".to_vec()),
            ),
        ];
        assert_eq!(acme_wakes(&schema, &changes), BTreeSet::from([a]));
        assert!(acme_wakes(&schema, &[]).is_empty());
    }
}
