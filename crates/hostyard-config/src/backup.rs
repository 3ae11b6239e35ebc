//! The node config's `backup:` section: where each site's export is stored
//! (a restic repository), how often, and how long snapshots are kept.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use crate::Problem;

/// How often `backup@D.timer` fires: a systemd calendar event with a
/// known length, so `hostyard status` can tell a stale backup (older than
/// twice the interval).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Schedule {
    Hourly,
    Daily,
    Weekly,
}

impl Schedule {
    /// The `OnCalendar=` value.
    pub fn calendar(self) -> &'static str {
        match self {
            Schedule::Hourly => "hourly",
            Schedule::Daily => "daily",
            Schedule::Weekly => "weekly",
        }
    }

    pub fn interval_secs(self) -> u64 {
        match self {
            Schedule::Hourly => 3600,
            Schedule::Daily => 86_400,
            Schedule::Weekly => 7 * 86_400,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BackupConfig {
    /// The restic repository: empty (no backups), an absolute path, or
    /// `sftp:user@host:/path`.
    pub repository: String,
    /// The repository's password, mode 0600 (`hostyard backup init` makes it).
    pub password_file: PathBuf,
    /// Debian's restic.
    pub restic_binary: PathBuf,
    pub schedule: Schedule,
    /// `RandomizedDelaySec=` of the timers, so servers and sites spread out.
    pub randomized_delay: crate::TimeSpan,
    pub keep_daily: u32,
    pub keep_weekly: u32,
    pub keep_monthly: u32,
    /// Share of the repository's data the weekly check reads back (1-100).
    pub check_percent: u8,
    /// A site whose data has not changed since its last snapshot is not
    /// exported again, until that snapshot is this old: retention then
    /// still finds a recent snapshot of every site.
    pub unchanged_max_age: crate::TimeSpan,
}

impl Default for BackupConfig {
    fn default() -> Self {
        BackupConfig {
            repository: String::new(),
            password_file: PathBuf::from("/etc/hostyard/restic-password"),
            restic_binary: PathBuf::from("/usr/bin/restic"),
            schedule: Schedule::Daily,
            randomized_delay: crate::TimeSpan::from_secs(3600).expect("not zero"),
            keep_daily: 7,
            keep_weekly: 4,
            keep_monthly: 6,
            check_percent: 5,
            unchanged_max_age: crate::TimeSpan::from_secs(7 * 86_400).expect("not zero"),
        }
    }
}

impl BackupConfig {
    /// Whether backups are configured at all.
    pub fn enabled(&self) -> bool {
        !self.repository.is_empty()
    }

    /// The repository's directory when it is on this server.
    pub fn local_repository(&self) -> Option<&std::path::Path> {
        self.repository
            .starts_with('/')
            .then(|| std::path::Path::new(&self.repository))
    }

    /// Every problem of the section.
    pub fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        let repo = &self.repository;
        if !repo.is_empty() && !repo.starts_with('/') && !repo.starts_with("sftp:") {
            problems.push(Problem::new(
                "backup.repository",
                format!("{repo:?} must be an absolute path or sftp:user@host:/path"),
            ));
        } else if repo.chars().any(|c| c.is_control() || c.is_whitespace()) {
            problems.push(Problem::new(
                "backup.repository",
                format!("{repo:?} must not contain spaces or control characters"),
            ));
        }
        for (field, p) in [
            ("backup.password_file", &self.password_file),
            ("backup.restic_binary", &self.restic_binary),
        ] {
            if !p.is_absolute() {
                problems.push(Problem::new(
                    field,
                    format!("{p:?} must be an absolute path"),
                ));
            }
        }
        if self.keep_daily + self.keep_weekly + self.keep_monthly == 0 {
            problems.push(Problem::new(
                "backup.keep_daily",
                "keep_daily, keep_weekly and keep_monthly are all 0: forget would remove every snapshot; keep at least one".into(),
            ));
        }
        if !(1..=100).contains(&self.check_percent) {
            problems.push(Problem::new(
                "backup.check_percent",
                format!("{} must be between 1 and 100", self.check_percent),
            ));
        }
        problems
    }
}
