//! Work that must not delay the next change, on blocking threads: the
//! host map file (with 10,000 sites, 20,000 lines), its fsync and the state
//! file (megabytes of JSON). At most one of each runs at a time; what is
//! asked meanwhile folds into one more run with the newest data.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use hostyard_haproxy::{self as haproxy, HostMap};
use hostyard_log::log;
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

/// One job on a blocking thread, at most one run at a time: what is asked
/// while it runs folds into one more run, which picks up the newest data.
/// The three writers below (state file, map file, fsync) share it.
#[derive(Clone, Default)]
struct Folding {
    /// (a run is going on, another was asked meanwhile)
    slot: Arc<Mutex<(bool, bool)>>,
}

impl Folding {
    /// Runs `work` on a blocking thread, or once more after the run going on.
    /// Without a tokio runtime (tests, exit paths), runs it here.
    fn request(&self, work: impl Fn() + Send + 'static) {
        {
            let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.0 {
                slot.1 = true;
                return;
            }
            *slot = (true, false);
        }
        let slot = self.slot.clone();
        let job = move || loop {
            work();
            let mut slot = slot.lock().unwrap_or_else(PoisonError::into_inner);
            if slot.1 {
                slot.1 = false;
            } else {
                slot.0 = false;
                return;
            }
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => drop(h.spawn_blocking(job)),
            Err(_) => job(),
        }
    }

    fn busy(&self) -> bool {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).0
    }
}

/// Writes the state file on a blocking thread: with 10,000 sites its JSON
/// takes milliseconds that must not delay the next change. Of the states
/// saved while a write runs only the newest is written.
#[derive(Clone)]
pub struct StateWriter {
    path: Arc<PathBuf>,
    newest: Arc<Mutex<Option<StateJob>>>,
    runs: Folding,
}

impl StateWriter {
    pub fn new(path: PathBuf) -> StateWriter {
        StateWriter {
            path: Arc::new(path),
            newest: Arc::default(),
            runs: Folding::default(),
        }
    }

    pub fn save(&self, job: StateJob) {
        *self.newest.lock().unwrap_or_else(PoisonError::into_inner) = Some(job);
        let (path, newest) = (self.path.clone(), self.newest.clone());
        self.runs.request(move || {
            let job = newest.lock().unwrap_or_else(PoisonError::into_inner).take();
            if let Some(job) = job {
                job.write(&path);
            }
        });
    }

    /// Saves `job` and returns once the file holds it (at exit).
    pub fn save_and_wait(&self, job: StateJob) {
        self.save(job);
        // Bounded: one write of the state file.
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.runs.busy() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Runs the host map's fsyncs on a blocking thread, at most one per
/// [`SYNC_EVERY`]; requests made meanwhile fold into one more.
#[derive(Default, Clone)]
pub struct Syncer {
    runs: Folding,
}

impl Syncer {
    pub fn request(&self, path: PathBuf) {
        self.runs.request(move || {
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
        });
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
    runs: Folding,
    syncer: Syncer,
}

impl MapFile {
    pub fn new(path: PathBuf, routing: SharedRouting, on_disk: Option<u64>) -> MapFile {
        MapFile {
            path,
            routing,
            disk: Arc::new(Mutex::new(on_disk)),
            runs: Folding::default(),
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

    /// Forgets which generation the file holds, so the next write writes
    /// it whatever it was: HAProxy loaded an older map than the one written,
    /// and the file on disk may be that older one (put back by a restore of
    /// the data root, or by hand).
    pub fn forget_disk(&self) {
        *self.disk.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }

    /// Writes the file on a blocking thread; `done` gets the outcome of
    /// each write (the generation written, or why not).
    pub fn write_later(&self, done: UnboundedSender<Result<u64, String>>) {
        let this = self.clone();
        self.runs.request(move || {
            let outcome = this.write_now().map_err(|e| format!("{e:#}"));
            // The loop may be gone at exit; it writes the file itself then.
            let _ = done.send(outcome);
        });
    }
}
