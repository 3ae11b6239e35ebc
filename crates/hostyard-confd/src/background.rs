//! Work that must not delay the next change, on blocking threads: the
//! host map's fsync and the state file (with 10,000 sites its JSON takes
//! milliseconds). At most one of each runs at a time; what is asked
//! meanwhile folds into one more run with the newest data.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hostyard_core::log;

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
