//! `hostyard backup` and `hostyard restore`: sites into the restic
//! repository and back.

use std::path::Path;

use clap::Subcommand;
use hostyard::units::render_units;
use hostyard::write::{check_units, Difference};
use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use super::{note, runtime, usage, Failure, PROGRAM};

#[derive(Subcommand)]
pub enum BackupAction {
    /// Make the password file (if missing, mode 0600) and the repository.
    Init,
    /// Export the site and store the export as a snapshot (backup@D.service),
    /// unless it is unchanged since its last snapshot.
    Run {
        /// Store a snapshot even when the site is unchanged.
        #[arg(long)]
        force: bool,
        /// The site's domain (example.com).
        domain: String,
    },
    /// List the site's snapshots with their times and sizes.
    Ls {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Apply the retention (backup.keep_*) with restic forget --prune.
    Prune,
    /// Check the repository and read back backup.check_percent of its data.
    Check,
    /// Log that a backup unit failed (backup-failed@.service, their
    /// OnFailure= hook).
    Failed {
        /// The site whose backup failed, or prune or check.
        job: String,
    },
}

fn restic(
    config: &NodeConfig,
    config_path: &Path,
) -> Result<hostyard_backup::restic::Restic, Failure> {
    hostyard_backup::restic::Restic::new(&config.backup, config_path).map_err(usage)
}

/// Where setup.sh installs the units; `backup init` checks the backup units
/// there when hostyard's units are installed there.
const SYSTEM_UNIT_DIR: &str = "/etc/systemd/system";

/// Refuses `backup init` while the installed backup units were generated
/// from another `backup:` (a new repository their sandbox cannot write, or
/// none at all), naming the command that brings them up to date.
fn installed_backup_units_current(config: &NodeConfig, config_path: &Path) -> Result<(), Failure> {
    let dir = Path::new(SYSTEM_UNIT_DIR);
    if !dir.join("hostyard.target").exists() {
        return Ok(());
    }
    let config_path = std::path::absolute(config_path)
        .map_err(|e| usage(anyhow::anyhow!("--config {}: {e}", config_path.display())))?;
    let files: Vec<_> = render_units(config, &config_path)
        .map_err(|e| runtime(anyhow::Error::new(e).context("cannot render the units")))?
        .into_iter()
        .filter(|f| f.name.starts_with("backup"))
        .collect();
    let stale = check_units(dir, &files).map_err(runtime)?;
    if let Some(first) = stale.first() {
        let path = match first {
            Difference::Missing(p) | Difference::Differs(p) => p,
        };
        return Err(runtime(anyhow::anyhow!(
            "{} is not generated for this backup configuration yet: run hostyard generate --out {SYSTEM_UNIT_DIR} && systemctl daemon-reload, then hostyard backup init again",
            path.display()
        )));
    }
    Ok(())
}

/// `hostyard restore D`: the snapshot into the import dir, this server made
/// the site's owner, then the site's start, whose importer builds the site
/// from it.
pub fn restore(
    config: &NodeConfig,
    config_path: &Path,
    domain: &str,
    snapshot: Option<&str>,
    no_start: bool,
    take_over: bool,
) -> Result<u8, Failure> {
    let domain = Domain::parse_instance(domain).map_err(usage)?;
    let restic = restic(config, config_path)?;
    let again = format!("hostyard restore {domain} --take-over");
    // Asked before anything is restored: a copy another server serves is
    // refused at once. Claimed once the import is in place, so that a
    // failed restore takes nothing from the owner.
    hostyard::owner::claim(config, &domain, take_over, true, &again).map_err(runtime)?;
    let restored =
        hostyard_backup::restore::restore(config, &restic, &domain, snapshot).map_err(runtime)?;
    let owned = hostyard::owner::claim(config, &domain, take_over, false, &again).map_err(|e| {
        runtime(anyhow::anyhow!(
            "{e:#}; the restored import waits in {}",
            restored.import_dir.display()
        ))
    })?;
    println!("{}", owned.describe(&domain, &config.node_name()));
    let unit = restored.kind.site_unit(&domain);
    println!(
        "restored snapshot {} of {domain} ({}, {}, made on {}) to {}",
        restored.snapshot.short_id,
        restored.kind,
        restored.snapshot.time,
        restored.snapshot.hostname,
        restored.import_dir.display()
    );
    if no_start {
        println!("start it with: systemctl start {unit}");
        return Ok(0);
    }
    // A unit left from the replaced site would keep the new one from being
    // built: an importer that stayed active is not run again by the start,
    // and a database still serves the old data.
    let stale = restored.kind.units_holding_data(&domain);
    let stopped = systemctl("stop", &stale)?;
    if !stopped.success() {
        return Err(runtime(anyhow::anyhow!(
            "systemctl stop {} failed ({stopped}); the import waits in {}: stop them, then systemctl start {unit}",
            stale.join(" "),
            restored.import_dir.display()
        )));
    }
    let status = systemctl("start", std::slice::from_ref(&unit))?;
    if !status.success() {
        return Err(runtime(anyhow::anyhow!(
            "systemctl start {unit} failed ({status}); the import waits in {}: see journalctl -u {}",
            restored.import_dir.display(),
            restored.kind.instance_unit(hostyard_core::UnitRole::Importer, &domain)
        )));
    }
    println!("started {unit}");
    Ok(0)
}

pub fn run(config: &NodeConfig, config_path: &Path, action: BackupAction) -> Result<u8, Failure> {
    match action {
        BackupAction::Failed { job } => {
            use hostyard_core::backup::{FAILED_CHECK, FAILED_PRUNE};
            let unit = match job.as_str() {
                FAILED_PRUNE => hostyard_core::backup::BACKUP_PRUNE_UNIT.to_string(),
                FAILED_CHECK => hostyard_core::backup::BACKUP_CHECK_UNIT.to_string(),
                domain => hostyard_core::backup::backup_unit(
                    &Domain::parse_instance(domain).map_err(usage)?,
                ),
            };
            // Priority 3 (err): `journalctl -p err` and any hook the
            // operator adds to backup-failed@.service show it.
            hostyard_log::log!(
                Err,
                "{PROGRAM}: {unit} failed: no new backup; journalctl -u {unit} says why"
            );
            return Ok(0);
        }
        BackupAction::Init => {
            let restic = restic(config, config_path)?;
            restic.check_writable().map_err(runtime)?;
            installed_backup_units_current(config, config_path)?;
            let path = &config.backup.password_file;
            if hostyard_backup::restic::ensure_password_file(path).map_err(runtime)? {
                println!(
                    "made {} (mode 0600): keep a copy elsewhere, the backups cannot be read without it",
                    path.display()
                );
            }
            if restic.check_open().is_ok() {
                println!("the repository at {} exists and opens", restic.repository());
                return Ok(0);
            }
            restic.init().map_err(runtime)?;
            println!("created the restic repository at {}", restic.repository());
        }
        BackupAction::Run { force, domain } => {
            use hostyard_backup::restore::Outcome;
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let restic = restic(config, config_path)?;
            restic.check_writable().map_err(runtime)?;
            let (kind, outcome) = hostyard_backup::restore::backup(config, &restic, &domain, force)
                .map_err(runtime)?;
            match outcome {
                Outcome::Stored(summary, reason) => println!(
                    "backed up {kind} site {domain} ({}): snapshot {}, {} processed, {} added",
                    reason.describe(),
                    short(&summary.snapshot_id),
                    bytes(summary.total_bytes_processed),
                    bytes(summary.data_added)
                ),
                Outcome::Unchanged(last) => println!(
                    "{kind} site {domain} is unchanged since snapshot {}, which the repository still has: nothing stored",
                    short(&last.snapshot)
                ),
            }
        }
        BackupAction::Ls { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let restic = restic(config, config_path)?;
            let list = restic.snapshots(&domain).map_err(runtime)?;
            println!(
                "{:<10} {:<26} {:<11} {:>10}  HOST",
                "ID", "TIME", "KIND", "SIZE"
            );
            for s in &list {
                let time: String = s.time.chars().take(19).collect();
                println!(
                    "{:<10} {:<26} {:<11} {:>10}  {}",
                    s.short_id,
                    time.replace('T', " "),
                    s.kind().map_or("?", |k| k.as_str()),
                    s.summary
                        .as_ref()
                        .map_or("-".to_string(), |x| bytes(x.total_bytes_processed)),
                    s.hostname
                );
            }
            if list.is_empty() {
                note(format_args!(
                    "no snapshot of {domain} in {}",
                    restic.repository()
                ));
            }
        }
        BackupAction::Prune => {
            let restic = restic(config, config_path)?;
            restic.check_writable().map_err(runtime)?;
            print!("{}", restic.forget_prune(&config.backup).map_err(runtime)?);
        }
        BackupAction::Check => {
            let restic = restic(config, config_path)?;
            restic.check_writable().map_err(runtime)?;
            print!(
                "{}",
                restic.check(config.backup.check_percent).map_err(runtime)?
            );
        }
    }
    Ok(0)
}

/// A snapshot's ID as restic shows it short.
fn short(id: &str) -> &str {
    id.get(..8).unwrap_or(id)
}

/// Bytes for people: 1.5 MiB.
fn bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = n as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// `systemctl <verb> -- <units>`, its exit status.
fn systemctl(verb: &str, units: &[String]) -> Result<std::process::ExitStatus, Failure> {
    std::process::Command::new("systemctl")
        .args([verb, "--"])
        .args(units)
        .status()
        .map_err(|e| runtime(anyhow::anyhow!("cannot run systemctl: {e}")))
}
