//! Work that must not delay the next change, on blocking threads: the
//! host map file (with 10,000 sites, 20,000 lines), its fsync and the state
//! file (megabytes of JSON). At most one of each runs at a time; what is
//! asked meanwhile folds into one more run with the newest data.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hostyard_core::log;
use hostyard_haproxy::{self as haproxy, HostMap};
use tokio::sync::mpsc::UnboundedSender;

/// The host map is fsynced at most this often.
const SYNC_EVERY: Duration = Duration::from_secs(1);
use hostyard_routing::state::{Held, StateView};
use hostyard_routing::{Problem, Site};

/// The state file as of one moment, owned, so a blocking thread can write
/// it while the loop goes on.
pub struct StateJob {
    pub revision: i64,
    pub etcd_connected: bool,
    pub sites: Vec<Arc<Site>>,
    pub problems: Vec<Problem>,
    pub held: Option<Held>,
    pub config_rejected: Option<String>,
    pub haproxy_running: bool,
}

impl StateJob {
    fn write(&self, path: &Path) {
        let view = StateView {
            revision: self.revision,
            etcd_connected: self.etcd_connected,
            sites: &self.sites,
            problems: &self.problems,
            held: self.held.clone(),
            config_rejected: self.config_rejected.as_deref(),
            haproxy_running: self.haproxy_running,
        };
        if let Err(e) = view.save(path) {
            log!(Err, "cannot write the state file: {e:#}");
        }
    }
}

/// Writes the state file on a blocking thread: with 10,000 sites its JSON
/// takes milliseconds that must not delay the next change. At most one
/// write runs; of the states saved meanwhile only the newest is written.
#[derive(Clone)]
pub struct StateWriter {
    path: PathBuf,
    /// (a write is running, the newest state waiting)
    slot: Arc<Mutex<(bool, Option<StateJob>)>>,
}

impl StateWriter {
    pub fn new(path: PathBuf) -> StateWriter {
        StateWriter {
            path,
            slot: Arc::new(Mutex::new((false, None))),
        }
    }

    pub fn save(&self, job: StateJob) {
        {
            let Ok(mut slot) = self.slot.lock() else {
                return;
            };
            slot.1 = Some(job);
            if slot.0 {
                return;
            }
            slot.0 = true;
        }
        let this = self.clone();
        let work = move || loop {
            let job = {
                let Ok(mut slot) = this.slot.lock() else {
                    return;
                };
                match slot.1.take() {
                    Some(job) => job,
                    None => {
                        slot.0 = false;
                        return;
                    }
                }
            };
            job.write(&this.path);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(work)),
            Err(_) => work(),
        }
    }

    /// Saves `job` and returns once the file holds it (at exit).
    pub fn save_and_wait(&self, job: StateJob) {
        self.save(job);
        // Bounded: one write of the state file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.slot.lock().is_ok_and(|slot| slot.0) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Runs the host map's fsyncs on a blocking thread, at most one per
/// [`SYNC_EVERY`]; requests made meanwhile fold into one more.
#[derive(Default, Clone)]
pub struct Syncer {
    /// (running, another requested)
    state: std::sync::Arc<std::sync::Mutex<(bool, bool)>>,
}

impl Syncer {
    pub fn request(&self, path: PathBuf) {
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
            let started = Instant::now();
            if let Err(e) = hostyard_fs::sync_file(&path) {
                log!(Err, "{e:#}");
            }
            // At most one fsync per SYNC_EVERY: each forces a journal commit
            // that the next change's map write can wait behind (milliseconds
            // with 10,000 sites on a busy disk). The runtime map has the
            // change already, and at start confd rewrites the file from
            // etcd, so a second's delay of durability costs nothing.
            std::thread::sleep(SYNC_EVERY.saturating_sub(started.elapsed()));
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

/// What HAProxy was given: the host map and its generation (raised with
/// every change, see [`haproxy::GENERATION_KEY`]). The loop changes it; the
/// map file's writer renders it.
#[derive(Debug, Default)]
pub struct Routing {
    pub map: HostMap,
    pub generation: u64,
}

pub type SharedRouting = Arc<Mutex<Routing>>;

/// The routing, even if a thread panicked while holding it (a render cannot
/// leave it half-changed).
pub fn lock(routing: &Mutex<Routing>) -> MutexGuard<'_, Routing> {
    routing.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Writes `hosts.map` from the shared routing: on a blocking thread after a
/// runtime change ([`MapFile::write_later`]), so no change waits for
/// 20,000 lines, or at once ([`MapFile::write_now`]) before confd reloads
/// HAProxy, before READY and at exit. Writes never overlap and never put an
/// older generation over a newer one.
#[derive(Clone)]
pub struct MapFile {
    path: PathBuf,
    routing: SharedRouting,
    /// The generation the file holds (`None`: unknown); locked for the
    /// whole of a write.
    disk: Arc<Mutex<Option<u64>>>,
    /// (a background write is running, another was asked meanwhile)
    slot: Arc<Mutex<(bool, bool)>>,
    syncer: Syncer,
}

impl MapFile {
    pub fn new(path: PathBuf, routing: SharedRouting, on_disk: Option<u64>) -> MapFile {
        MapFile {
            path,
            routing,
            disk: Arc::new(Mutex::new(on_disk)),
            slot: Arc::new(Mutex::new((false, false))),
            syncer: Syncer::default(),
        }
    }

    /// Writes the file unless it holds the newest routing already; returns
    /// the generation it holds. The routing is locked only to render it in
    /// memory, so the loop waits for no disk.
    pub fn write_now(&self) -> anyhow::Result<u64> {
        let mut disk = self.disk.lock().unwrap_or_else(PoisonError::into_inner);
        let (text, generation) = {
            let routing = lock(&self.routing);
            if *disk == Some(routing.generation) {
                return Ok(routing.generation);
            }
            let mut text = Vec::with_capacity(routing.map.len() * 48 + 128);
            haproxy::write_map(&routing.map, routing.generation, &mut text)?;
            (text, routing.generation)
        };
        haproxy::FILE.write(&self.path, &text)?;
        *disk = Some(generation);
        // Durable later, off every path that waits.
        self.syncer.request(self.path.clone());
        Ok(generation)
    }

    /// Writes the file on a blocking thread; `done` gets the outcome of
    /// each write (the generation written, or why not).
    pub fn write_later(&self, done: UnboundedSender<Result<u64, String>>) {
        {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.0 {
                slot.1 = true;
                return;
            }
            *slot = (true, false);
        }
        let this = self.clone();
        let work = move || loop {
            let outcome = this.write_now().map_err(|e| format!("{e:#}"));
            // The loop may be gone at exit; it writes the file itself then.
            let _ = done.send(outcome);
            let mut slot = this.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.1 {
                slot.1 = false;
            } else {
                slot.0 = false;
                return;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(work)),
            Err(_) => work(),
        }
    }
}
