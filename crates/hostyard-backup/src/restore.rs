//! `hostyard backup run D` and `hostyard restore D`.
//!
//! A restore never writes a site: it puts the snapshot's export where the
//! importer looks (`import/<domain>/`), and the site's importer then builds
//! the site from it like any import (staged, checked, renamed into place
//! only when complete, never over existing data).

use std::fs;
use std::os::unix::fs::DirBuilderExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use hostyard_config::limits::UnpackLimits;
use hostyard_config::NodeConfig;
use hostyard_core::{Domain, SiteKind};
use hostyard_fs::unpack::copy_tree;
use hostyard_fs::{rename_no_replace, sync_dir};

use crate::export::{export, site_kind, KIND_FILE};
use crate::restic::{BackupSummary, Restic, Snapshot};
use crate::skip::{self, Decision, Reason};
use crate::state::{self, LastBackup};

/// What one `hostyard backup run` did.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Exported and stored, for this reason.
    Stored(BackupSummary, Reason),
    /// Unchanged since this snapshot, which the repository still has:
    /// neither exported nor stored again.
    Unchanged(LastBackup),
}

/// Exports `domain` and stores the export in the repository, unless the
/// site is unchanged since its last snapshot ([`crate::skip`]; `force`
/// stores one regardless); records the backup as the site's last good one
/// either way.
pub fn backup(
    config: &NodeConfig,
    restic: &Restic,
    domain: &Domain,
    force: bool,
) -> Result<(SiteKind, Outcome)> {
    let layout = config.layout();
    let kind = site_kind(&layout, domain)?.with_context(|| {
        format!(
            "{domain} has no data on this server ({} does not exist)",
            layout.domain_dir(domain).display()
        )
    })?;
    // Taken before the export: a change made while it copies shows in the
    // next backup's fingerprint. One that cannot be taken (the tree is
    // being swapped) is no reason to skip: the export decides.
    let fingerprint = crate::fingerprint::site(&layout, domain, kind).unwrap_or(None);
    let repository = crate::fingerprint::repository(&config.backup)?;
    let last = state::read(&layout, domain)?;
    let now = skip::Now {
        force,
        fingerprint: fingerprint.as_deref(),
        repository: &repository,
        time: state::now(),
        max_age_secs: config.backup.unchanged_max_age.as_secs(),
    };
    let reason = match skip::decide(last.as_ref(), &now) {
        Decision::Snapshot(reason) => reason,
        Decision::SkipIfPresent(id) => match skip::confirm(restic.has_snapshot(domain, &id)?) {
            Some(reason) => reason,
            None => {
                let last = last.as_ref().expect("decide skips only with a record");
                let record = skip::skipped(last, now.time);
                state::record(&layout, domain, &record)?;
                return Ok((kind, Outcome::Unchanged(record)));
            }
        },
    };
    // Before the dump: a repository that does not open fails in a second.
    restic.check_open()?;
    let dir = layout.backup_export_dir(domain);
    if fs::symlink_metadata(&dir).is_ok() {
        // Left by a backup that was killed: it is ours to remove.
        fs::remove_dir_all(&dir).with_context(|| format!("cannot remove {}", dir.display()))?;
    }
    if let Some(parent) = dir.parent() {
        hostyard_fs::make_dirs(parent, 0o700)?;
    }
    let kind = export(config, domain, &dir)?;
    let stored = restic.backup(&dir, domain, kind);
    let _ = fs::remove_dir_all(&dir);
    let summary = stored?;
    let time = state::now();
    state::record(
        &layout,
        domain,
        &LastBackup {
            time,
            snapshot: summary.snapshot_id.clone(),
            snapshot_time: Some(time),
            fingerprint,
            repository: Some(repository),
        },
    )?;
    Ok((kind, Outcome::Stored(summary, reason)))
}

/// What a restore put in place.
#[derive(Debug, Clone)]
pub struct Restored {
    pub kind: SiteKind,
    pub snapshot: Snapshot,
    pub import_dir: PathBuf,
}

/// The snapshot to restore: `wanted` (an ID or its prefix) among the
/// site's, or the newest.
pub fn pick(domain: &Domain, snapshots: &[Snapshot], wanted: Option<&str>) -> Result<Snapshot> {
    match wanted {
        None => snapshots.last().cloned().with_context(|| {
            format!("the repository has no snapshot of {domain} (hostyard backup ls {domain})")
        }),
        Some(id) => {
            let found: Vec<&Snapshot> = snapshots
                .iter()
                .filter(|s| !id.is_empty() && s.id.starts_with(id))
                .collect();
            match found.as_slice() {
                [one] => Ok((*one).clone()),
                [] => bail!(
                    "{domain} has no snapshot {id:?} (hostyard backup ls {domain} lists them)"
                ),
                _ => bail!("{id:?} names several snapshots of {domain}: give more of its ID"),
            }
        }
    }
}

/// Where a replaced site's data is moved aside: hidden in `domains/`, so
/// that nothing takes it for a site (a `D.old` is a valid domain name).
/// The time in the name keeps a second replacement from moving into the
/// first one's directory.
pub fn aside(layout: &hostyard_core::Layout, domain: &Domain) -> PathBuf {
    layout
        .domains_dir()
        .join(format!(".{domain}.replaced-{}", state::now()))
}

/// Refuses when `domain` has data or an import waiting: a restore never
/// replaces a site.
pub fn check_no_site(config: &NodeConfig, domain: &Domain) -> Result<()> {
    let layout = config.layout();
    if let Some(kind) = site_kind(&layout, domain).ok().flatten() {
        let dir = layout.domain_dir(domain);
        bail!(
            "{domain} exists ({} has its data): a restore never overwrites a site; to replace it, \
             systemctl stop {} && mv {} {}, then hostyard restore {domain} again",
            dir.display(),
            kind.units_holding_data(domain).join(" "),
            dir.display(),
            aside(&layout, domain).display(),
        );
    }
    let dir = layout.domain_dir(domain);
    if fs::symlink_metadata(&dir).is_ok() {
        bail!(
            "{} exists: a restore never overwrites a site; move it aside first",
            dir.display()
        );
    }
    let mut waiting = vec![layout.import_dir(domain)];
    waiting.extend(layout.import_tarballs(domain));
    if let Some(p) = waiting.iter().find(|p| fs::symlink_metadata(p).is_ok()) {
        bail!(
            "{} is already waiting to be imported: start the site to import it, or move it aside before a restore",
            p.display()
        );
    }
    Ok(())
}

/// Restores a snapshot of `domain` into `import/<domain>/`, for the site's
/// importer. Nothing is written under `domains/`.
pub fn restore(
    config: &NodeConfig,
    restic: &Restic,
    domain: &Domain,
    wanted: Option<&str>,
) -> Result<Restored> {
    check_no_site(config, domain)?;
    let snapshots = restic.snapshots(domain)?;
    let snapshot = pick(domain, &snapshots, wanted)?;
    let layout = config.layout();
    let imports = layout.imports_dir();
    hostyard_fs::make_dirs(&imports, 0o755)?;
    let staging = layout.restore_staging_dir(domain, std::process::id());
    if fs::symlink_metadata(&staging).is_ok() {
        fs::remove_dir_all(&staging)
            .with_context(|| format!("cannot remove {}", staging.display()))?;
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let placed = place(
        restic,
        domain,
        &snapshot,
        &staging,
        &layout.import_dir(domain),
        &config.limits.unpack,
    );
    let _ = fs::remove_dir_all(&staging);
    let kind = placed?;
    sync_dir(&imports)?;
    Ok(Restored {
        kind,
        snapshot,
        import_dir: layout.import_dir(domain),
    })
}

fn place(
    restic: &Restic,
    domain: &Domain,
    snapshot: &Snapshot,
    staging: &Path,
    import_dir: &Path,
    limits: &UnpackLimits,
) -> Result<SiteKind> {
    let [path] = snapshot.paths.as_slice() else {
        bail!(
            "snapshot {} holds {} paths, not one site's export",
            snapshot.short_id,
            snapshot.paths.len()
        );
    };
    // restic restores a path below the target as it was: /x/y -> target/x/y.
    let rel: PathBuf = Path::new(path)
        .components()
        .filter_map(|c| match c {
            Component::Normal(p) => Some(Ok(p)),
            Component::RootDir => None,
            _ => Some(Err(())),
        })
        .collect::<Result<PathBuf, ()>>()
        .map_err(|()| anyhow::anyhow!("snapshot {} has the path {path:?}", snapshot.short_id))?;
    // restic restores owners and modes as recorded, and whoever can write
    // the repository records what they like (a setuid file, a fifo). What
    // it restored stays in the private staging dir; the import dir gets a
    // copy made as an import's (modes normalised, special files refused,
    // within limits.unpack).
    let unpacked = staging.join("restic");
    let copied = staging.join("copy");
    for dir in [&unpacked, &copied] {
        fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    restic.restore(&snapshot.id, &unpacked)?;
    let restored = unpacked.join(rel);
    let kind_file = restored.join(KIND_FILE);
    let text = fs::read_to_string(&kind_file).with_context(|| {
        format!(
            "snapshot {} is not a hostyard export (no {KIND_FILE})",
            snapshot.short_id
        )
    })?;
    let kind: SiteKind = text.trim().parse()?;
    if let Some(tagged) = snapshot.kind() {
        if tagged != kind {
            bail!(
                "snapshot {} is tagged {tagged} but holds a {kind} export",
                snapshot.short_id
            );
        }
    }
    copy_tree(&restored, &copied, Some(limits)).with_context(|| {
        format!(
            "snapshot {} (made on {}) is refused",
            snapshot.short_id, snapshot.hostname
        )
    })?;
    rename_no_replace(&copied, import_dir).with_context(|| {
        format!(
            "cannot move the restored export to {} for {domain}'s importer",
            import_dir.display()
        )
    })?;
    Ok(kind)
}
