//! restic, Debian's, run with the node config's repository and password
//! file. Both reach restic through its environment (`RESTIC_REPOSITORY`,
//! `RESTIC_PASSWORD_FILE`): the password itself is only ever in its 0600
//! file, never on a command line, in a unit or in the journal.
//!
//! restic's failures become one line naming the repository and the fix;
//! the ones an operator meets (no repository, wrong password, a lock) are
//! recognised by restic's exit status (0.17 and newer: 10, 11, 12) or its
//! message (older releases exit 1 for all of them).

use std::ffi::OsStr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use hostyard_config::BackupConfig;
use hostyard_core::{Domain, SiteKind};
use serde::Deserialize;

/// The tag every hostyard snapshot has, and the prefixes of its per-site tags.
pub const TAG: &str = "hostyard";
const SITE_TAG: &str = "site=";
const KIND_TAG: &str = "kind=";

#[derive(Debug, Clone)]
pub struct Restic {
    binary: PathBuf,
    repository: String,
    password_file: PathBuf,
}

/// One snapshot of a site, as `restic snapshots --json` lists it.
#[derive(Debug, Clone, Deserialize)]
pub struct Snapshot {
    pub id: String,
    pub short_id: String,
    /// RFC 3339, as restic writes it.
    pub time: String,
    pub paths: Vec<String>,
    /// The server that made it (restic's host name). A restore takes a
    /// site's snapshots from any server, since restoring on another one is
    /// the drill for a lost server; the listing and the restore name it.
    #[serde(default)]
    pub hostname: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// restic 0.17 and newer record what the backup saw.
    #[serde(default)]
    pub summary: Option<Summary>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Summary {
    #[serde(default)]
    pub total_bytes_processed: u64,
    #[serde(default)]
    pub data_added: u64,
}

/// Snapshots in the order of their times as instants: restic writes each
/// with the offset of the server that made it and with as many fraction
/// digits as it has, so the strings do not sort as the times do.
pub fn oldest_first(list: Vec<Snapshot>) -> Result<Vec<Snapshot>> {
    let mut timed = Vec::with_capacity(list.len());
    for s in list {
        let at =
            time::OffsetDateTime::parse(&s.time, &time::format_description::well_known::Rfc3339)
                .with_context(|| {
                    format!(
                        "snapshot {} has a time restic did not write: {:?}",
                        s.short_id, s.time
                    )
                })?;
        timed.push((at, s));
    }
    timed.sort_by_key(|(at, _)| *at);
    Ok(timed.into_iter().map(|(_, s)| s).collect())
}

impl Snapshot {
    pub fn kind(&self) -> Option<SiteKind> {
        self.tags
            .iter()
            .find_map(|t| t.strip_prefix(KIND_TAG))
            .and_then(|k| k.parse().ok())
    }
}

/// What one backup stored.
#[derive(Debug, Clone, Deserialize)]
pub struct BackupSummary {
    pub snapshot_id: String,
    #[serde(default)]
    pub data_added: u64,
    #[serde(default)]
    pub total_bytes_processed: u64,
}

impl Restic {
    /// restic for the node config's `backup:`; an error naming the fix
    /// when no repository is configured.
    pub fn new(config: &BackupConfig, config_path: &Path) -> Result<Restic> {
        if !config.enabled() {
            bail!(
                "backup.repository is not set in {}: set it to a path or sftp:user@host:/path, then run hostyard backup init",
                config_path.display()
            );
        }
        Ok(Restic {
            binary: config.restic_binary.clone(),
            repository: config.repository.clone(),
            password_file: config.password_file.clone(),
        })
    }

    pub fn repository(&self) -> &str {
        &self.repository
    }

    /// Refuses a local repository on a read-only file system. That is what a
    /// sandboxed backup unit sees when it was generated before
    /// `backup.repository` took its value (its `ReadWritePaths=` names the
    /// old one): restic would retry its lock for hours instead of failing.
    pub fn check_writable(&self) -> Result<()> {
        if !self.repository.starts_with('/') {
            return Ok(());
        }
        // The repository itself, or before `backup init` the nearest
        // directory above it that exists.
        let mut dir = Path::new(&self.repository);
        while !dir.exists() {
            match dir.parent() {
                Some(parent) => dir = parent,
                None => return Ok(()),
            }
        }
        let stat = nix::sys::statvfs::statvfs(dir)
            .with_context(|| format!("cannot stat the file system of {}", dir.display()))?;
        if stat.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) {
            bail!(
                "the repository {} is on a read-only file system here: if this is a backup unit, \
                 it was generated for another backup.repository; run hostyard generate --out \
                 /etc/systemd/system && systemctl daemon-reload, then start it again",
                self.repository
            );
        }
        Ok(())
    }

    /// The password file must exist and be readable by its owner alone.
    fn check_password_file(&self) -> Result<()> {
        let path = &self.password_file;
        let meta = std::fs::metadata(path).with_context(|| {
            format!(
                "cannot read the repository password file {} (hostyard backup init makes one)",
                path.display()
            )
        })?;
        if meta.permissions().mode() & 0o077 != 0 {
            bail!(
                "{} is readable by others (mode {:o}): chmod 600 {}",
                path.display(),
                meta.permissions().mode() & 0o777,
                path.display()
            );
        }
        Ok(())
    }

    fn command<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut cmd = Command::new(&self.binary);
        cmd.args(args)
            .env("RESTIC_REPOSITORY", &self.repository)
            .env("RESTIC_PASSWORD_FILE", &self.password_file)
            // Only the file: a stray password in the caller's environment
            // (or a command that would print one) must not win.
            .env_remove("RESTIC_PASSWORD")
            .env_remove("RESTIC_PASSWORD_COMMAND")
            .env_remove("RESTIC_REPOSITORY_FILE")
            .stdin(Stdio::null());
        if std::env::var_os("RESTIC_CACHE_DIR").is_none() && std::env::var_os("HOME").is_none() {
            // A system unit has no HOME; restic would then run without a
            // cache and read every index from the repository each time.
            cmd.env("RESTIC_CACHE_DIR", "/var/cache/hostyard-restic");
        }
        cmd
    }

    /// Runs restic; a failure is one line saying what and why.
    fn run(&self, what: &str, mut cmd: Command) -> Result<Output> {
        self.check_password_file()?;
        let out = cmd.output().with_context(|| {
            format!(
                "cannot run {} (apt-get install restic)",
                self.binary.display()
            )
        })?;
        if out.status.success() {
            return Ok(out);
        }
        let stderr = String::from_utf8_lossy(&out.stderr);
        bail!("{}", self.explain(what, out.status.code(), &stderr))
    }

    fn explain(&self, what: &str, code: Option<i32>, stderr: &str) -> String {
        let repo = &self.repository;
        let low = stderr.to_lowercase();
        if code == Some(10)
            || low.contains("repository does not exist")
            || low.contains("is there a repository at the following location")
        {
            return format!(
                "restic {what}: there is no restic repository at {repo}: create it with hostyard backup init, or fix backup.repository"
            );
        }
        if code == Some(12) || low.contains("wrong password") {
            return format!(
                "restic {what}: the password in {} does not open the repository at {repo}: put the repository's password there",
                self.password_file.display()
            );
        }
        if code == Some(11)
            || low.contains("repository is already locked")
            || low.contains("unable to create lock")
        {
            return format!(
                "restic {what}: the repository at {repo} is locked by another restic: wait for it, or if none runs, remove the stale lock with restic unlock"
            );
        }
        let last = stderr
            .lines()
            .map(str::trim)
            .rev()
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        format!(
            "restic {what} failed on the repository at {repo} (exit {}): {last}; restic check tells whether the repository is damaged",
            code.map_or("by a signal".to_string(), |c| c.to_string())
        )
    }

    /// Creates the repository.
    pub fn init(&self) -> Result<()> {
        self.run("init", self.command(["init"]))?;
        Ok(())
    }

    /// Fails with one line unless the repository opens with the password.
    pub fn check_open(&self) -> Result<()> {
        self.run("cat config", self.command(["cat", "config"]))?;
        Ok(())
    }

    /// Stores the export at `dir` (an absolute path) as a snapshot tagged
    /// with the site and its kind.
    pub fn backup(&self, dir: &Path, domain: &Domain, kind: SiteKind) -> Result<BackupSummary> {
        let mut cmd = self.command(["backup", "--json", "--tag"]);
        cmd.arg(format!("{TAG},{SITE_TAG}{domain},{KIND_TAG}{kind}"))
            .arg("--")
            .arg(dir);
        let out = self.run("backup", cmd)?;
        // --json prints one object a line; the last has the summary.
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .rev()
            .filter(|l| l.contains("\"summary\""))
            .find_map(|l| serde_json::from_str::<BackupSummary>(l).ok())
            .context("restic backup printed no summary")
    }

    /// The site's snapshots, oldest first.
    pub fn snapshots(&self, domain: &Domain) -> Result<Vec<Snapshot>> {
        let mut cmd = self.command(["snapshots", "--json", "--tag"]);
        cmd.arg(format!("{TAG},{SITE_TAG}{domain}"));
        let out = self.run("snapshots", cmd)?;
        let list: Vec<Snapshot> =
            serde_json::from_slice(&out.stdout).context("cannot read restic snapshots' JSON")?;
        oldest_first(list)
    }

    /// Whether the repository still has the site's snapshot `id` (its full
    /// ID or a prefix, as `restic backup --json` printed it). A local
    /// repository is asked without restic: each snapshot is a file
    /// `snapshots/<ID>` there (restic's repository layout), and opening the
    /// repository costs restic a key derivation tuned to take half a
    /// second. Elsewhere (sftp) restic lists the site's snapshots.
    pub fn has_snapshot(&self, domain: &Domain, id: &str) -> Result<bool> {
        if id.is_empty() {
            return Ok(false);
        }
        if !self.repository.starts_with('/') {
            return Ok(self.snapshots(domain)?.iter().any(|s| s.id.starts_with(id)));
        }
        let dir = Path::new(&self.repository).join("snapshots");
        if id.len() == 64 {
            return match std::fs::symlink_metadata(dir.join(id)) {
                Ok(_) => Ok(true),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
                Err(e) => Err(e).with_context(|| format!("cannot read {}", dir.display())),
            };
        }
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot read {}", dir.display()))?;
            if entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(id.as_bytes())
            {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Restores a snapshot under `target`, which must exist: its files land
    /// at `target/<the snapshot's path>`.
    pub fn restore(&self, snapshot: &str, target: &Path) -> Result<()> {
        let mut cmd = self.command(["restore", "--target"]);
        cmd.arg(target).arg("--").arg(snapshot);
        self.run("restore", cmd)?;
        Ok(())
    }

    /// Applies the retention to every hostyard snapshot: per site (restic
    /// groups by host and path, and each site's export has its own path),
    /// then prunes the data no snapshot uses any more.
    pub fn forget_prune(&self, config: &BackupConfig) -> Result<String> {
        let mut cmd = self.command(["forget", "--prune", "--tag", TAG]);
        for (flag, n) in [
            ("--keep-daily", config.keep_daily),
            ("--keep-weekly", config.keep_weekly),
            ("--keep-monthly", config.keep_monthly),
        ] {
            if n > 0 {
                cmd.arg(flag).arg(n.to_string());
            }
        }
        let out = self.run("forget --prune", cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }

    /// Checks the repository's structure and reads back `percent`% of its
    /// data.
    pub fn check(&self, percent: u8) -> Result<String> {
        let cmd = self.command([
            "check".to_string(),
            format!("--read-data-subset={percent}%"),
        ]);
        let out = self.run("check", cmd)?;
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    }
}

/// Makes the repository's password file when it is missing: 256 random
/// bits as hex, mode 0600 from the start. Returns whether it made one.
pub fn ensure_password_file(path: &Path) -> Result<bool> {
    if std::fs::symlink_metadata(path).is_ok() {
        return Ok(false);
    }
    let hex = hostyard_core::secret::new_password()?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    }
    hostyard_fs::AtomicWrite::new(0o600)
        .no_replace()
        .write(path, format!("{hex}\n").as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn snap(id: &str, time: &str) -> Snapshot {
        Snapshot {
            id: id.into(),
            short_id: id.into(),
            time: time.into(),
            paths: Vec::new(),
            hostname: String::new(),
            tags: Vec::new(),
            summary: None,
        }
    }

    #[test]
    fn snapshots_sort_by_instant_not_by_string() {
        let sorted = oldest_first(vec![
            // 09:00:00.5 UTC, written by a server at +01:00.
            snap("a", "2026-12-05T10:00:00.5+01:00"),
            snap("b", "2026-12-05T09:30:00Z"),
            // A whole second: its string sorts after the fraction's.
            snap("c", "2026-12-05T09:00:00Z"),
            snap("d", "2026-12-05T09:00:00.123456789Z"),
        ])
        .unwrap();
        let ids: Vec<&str> = sorted.iter().map(|s| s.id.as_str()).collect();
        assert_eq!(ids, ["c", "d", "a", "b"]);
    }

    #[test]
    fn a_snapshot_time_that_is_not_rfc3339_is_an_error_naming_it() {
        let err = oldest_first(vec![snap("abc", "yesterday")])
            .unwrap_err()
            .to_string();
        assert!(err.contains("abc") && err.contains("yesterday"), "{err}");
    }
}
