//! The last good backup of each site, written after restic stored it (or
//! after a backup found the site unchanged since that snapshot, which is
//! still in the repository), read by `hostyard status` (a site whose last
//! good backup is older than twice the schedule's interval needs an
//! operator) and by the next backup, which skips an unchanged site.

use std::fs;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use hostyard_core::{Domain, Layout};
use hostyard_fs::AtomicWrite;
use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LastBackup {
    /// Unix time the backup finished: the snapshot was stored, or the site
    /// was found unchanged since `snapshot`, which the repository still had.
    pub time: u64,
    pub snapshot: String,
    /// Unix time `snapshot` was stored. Absent in records written before
    /// backups skipped unchanged sites: those take a snapshot.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot_time: Option<u64>,
    /// The site's fingerprint ([`crate::fingerprint`]) taken just before
    /// the export `snapshot` stores; absent for a site that is always
    /// backed up (one with a database).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fingerprint: Option<String>,
    /// The repository's fingerprint (its address and password file) when
    /// `snapshot` was stored.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub repository: Option<String>,
}

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

pub fn record(layout: &Layout, domain: &Domain, last: &LastBackup) -> Result<()> {
    let dir = layout.backup_dir();
    hostyard_fs::make_dirs(&dir, 0o700)?;
    let text = serde_json::to_vec(last)?;
    AtomicWrite::new(0o600).write(&layout.backup_state(domain), &text)
}

/// `None` when the site was never backed up here.
pub fn read(layout: &Layout, domain: &Domain) -> Result<Option<LastBackup>> {
    let path = layout.backup_state(domain);
    hostyard_fs::read_json_if_exists(&path, "a backup record")
}

/// How one site's backups stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The last good backup is within twice the schedule's interval.
    Fresh(LastBackup),
    /// Older than that: a backup failed, or the timer does not run.
    Stale(LastBackup),
    /// No good backup recorded on this server.
    Never,
}

impl Verdict {
    pub fn needs_attention(&self) -> bool {
        !matches!(self, Verdict::Fresh(_))
    }
}

/// The verdict for a site last backed up at `last`, at `now`, with backups
/// every `interval_secs`.
pub fn judge(last: Option<LastBackup>, now: u64, interval_secs: u64) -> Verdict {
    match last {
        None => Verdict::Never,
        Some(l) if now.saturating_sub(l.time) > 2 * interval_secs => Verdict::Stale(l),
        Some(l) => Verdict::Fresh(l),
    }
}

/// Every site with data on this server (`domains/<domain>`), sorted, with
/// its verdict.
pub fn report(layout: &Layout, now: u64, interval_secs: u64) -> Result<Vec<(Domain, Verdict)>> {
    let dir = layout.domains_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    let mut out = Vec::new();
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
        if !entry.file_type().map(|t| t.is_dir()).unwrap_or(false) {
            continue;
        }
        // Staging dirs and anything else that is not a site's name.
        let Some(domain) = entry
            .file_name()
            .to_str()
            .and_then(|n| Domain::parse_instance(n).ok())
        else {
            continue;
        };
        let last = read(layout, &domain)?;
        out.push((domain.clone(), judge(last, now, interval_secs)));
    }
    out.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(time: u64) -> Option<LastBackup> {
        Some(LastBackup {
            time,
            snapshot: "abc".into(),
            snapshot_time: None,
            fingerprint: None,
            repository: None,
        })
    }

    #[test]
    fn a_backup_older_than_twice_the_interval_is_stale() {
        let day = 86_400;
        assert!(matches!(
            judge(at(1000), 1000 + 2 * day, day),
            Verdict::Fresh(_)
        ));
        assert!(matches!(
            judge(at(1000), 1001 + 2 * day, day),
            Verdict::Stale(_)
        ));
        assert_eq!(judge(None, 5, day), Verdict::Never);
        assert!(judge(None, 5, day).needs_attention());
        // A clock set back is not a stale backup.
        assert!(matches!(judge(at(5000), 10, day), Verdict::Fresh(_)));
    }

    #[test]
    fn the_report_lists_sites_with_data_and_skips_other_entries() {
        let tmp =
            std::env::temp_dir().join(format!("hostyard-backup-report-{}", std::process::id()));
        let layout = Layout::new(&tmp);
        let a = Domain::parse("a.example").unwrap();
        let b = Domain::parse("b.example").unwrap();
        for d in [&a, &b] {
            fs::create_dir_all(layout.domain_dir(d)).unwrap();
        }
        fs::create_dir_all(layout.domains_dir().join(".staging-a.example-1")).unwrap();
        record(
            &layout,
            &a,
            &LastBackup {
                time: 100,
                snapshot: "s".into(),
                snapshot_time: Some(100),
                fingerprint: None,
                repository: None,
            },
        )
        .unwrap();
        let r = report(&layout, 200, 3600).unwrap();
        fs::remove_dir_all(&tmp).unwrap();
        assert_eq!(r.len(), 2);
        assert_eq!(r[0].0, a);
        assert!(matches!(r[0].1, Verdict::Fresh(_)));
        assert_eq!(r[1], (b, Verdict::Never));
    }
}
