//! The last good backup of each site, written after restic stored it, read
//! by `hostyard status` (a site whose last good backup is older than twice
//! the schedule's interval needs an operator).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hostyard_core::{Domain, Layout};
use hostyard_fs::AtomicWrite;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// Unix time the backup finished.
    pub time: u64,
    pub snapshot: String,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn record(layout: &Layout, domain: &Domain, last: &LastBackup) -> Result<()> {
    let dir = layout.backup_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;
    let text = serde_json::to_vec(last)?;
    AtomicWrite::new(0o600).write(&layout.backup_state(domain), &text)
}

/// `None` when the site was never backed up here.
pub fn read(layout: &Layout, domain: &Domain) -> Result<Option<LastBackup>> {
    let path = layout.backup_state(domain);
    match fs::read(&path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map(Some)
            .with_context(|| format!("{} is not a backup record", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}
