//! hostyard: flags and exit codes only; the work is in the library
//! (`units`, `write`, `status`, `config_get`, `names`, `etcd_check`,
//! `image_id`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostyard::units::{check_config_path, render_units};
use hostyard::write::{check_units, write_units, Change, Difference};
use hostyard_cli as cli;
use hostyard_core::{NodeConfig, DEFAULT_CONFIG_PATH};

const PROGRAM: &str = "hostyard";

#[derive(Parser)]
#[command(
    version,
    about = "Generate hostyard's systemd units and inspect the server"
)]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH, global = true)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Write every hostyard unit into DIR, touching only files that changed.
    Generate {
        /// Where the units go, e.g. /etc/systemd/system.
        #[arg(long, value_name = "DIR")]
        out: PathBuf,
        /// Write nothing; exit 1 and list the files that differ or are missing.
        #[arg(long)]
        check: bool,
    },
    /// Show the sites this server routes and runs.
    Status {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Render postfix's config from the forward files (postfix.service runs
    /// this before postfix starts and on reload).
    Mail {
        /// Write nothing; exit 1 and list the files that differ or are missing.
        #[arg(long)]
        check: bool,
        /// Write nothing; exit 0 when postfix's certificate copy is out of
        /// date (postfix-tls.service's ExecCondition), 1 when it is current.
        #[arg(long, conflicts_with = "check")]
        certificate_changed: bool,
    },
    /// Wait until postfix answers SMTP on 127.0.0.1:25 (postfix.service's
    /// ExecStartPost).
    MailWait {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 60, value_name = "SECS")]
        timeout: u64,
    },
    /// Manage a site's records in etcd.
    Site {
        #[command(subcommand)]
        action: SiteAction,
    },
    /// A WordPress site's administrator password.
    Wordpress {
        #[command(subcommand)]
        action: WordpressAction,
    },
    /// Read the node config as hostyard parses it (for scripts).
    Config {
        #[command(subcommand)]
        action: ConfigAction,
    },
    /// Print names scripts need, one per line, from hostyard's own
    /// definitions (binaries, images, units, the data layout's dirs).
    Names {
        #[arg(value_enum)]
        what: hostyard::names::Names,
    },
    /// Where the node config's etcd is, and whether it answers (for setup).
    Etcd {
        #[command(subcommand)]
        action: EtcdAction,
    },
    /// The fleet, from the jump box: the inventory's answers and the etcd
    /// administration `deploy/` needs (for scripts).
    Fleet {
        /// The inventory; its directory also holds known_hosts and ca/.
        #[arg(
            long,
            env = "HOSTYARD_INVENTORY",
            default_value = "/etc/hostyard-fleet/fleet.yaml"
        )]
        inventory: PathBuf,
        #[command(subcommand)]
        action: FleetAction,
    },
    /// Print the image ID (hex, no sha256:) a `docker save` tarball holds.
    ImageId {
        /// The tarball, e.g. static.tar of `scripts/images.sh save`.
        tar: PathBuf,
    },
    /// Write a site's data into DIR in the migration layout the importer
    /// reads (a WordPress database dumped consistently while it serves).
    Export {
        /// The site's domain (example.com).
        domain: String,
        /// Where the export goes; must not exist yet.
        dir: PathBuf,
    },
    /// Bring a stopped site's data up to DIR, a newer export of the same
    /// site (a move's second copy): its files replaced, a WordPress
    /// database dropped and loaded from the dump into its running MariaDB.
    /// Refused while the site runs.
    Refresh {
        /// The site's domain (example.com).
        domain: String,
        /// The export (`hostyard export` of the same site).
        dir: PathBuf,
        /// How long to wait for a WordPress site's MariaDB to answer (it
        /// may still be initialising from an import).
        #[arg(long, default_value_t = 120, value_name = "SECS")]
        db_timeout: u64,
    },
    /// Bring a site back from a backup: the snapshot goes to the site's
    /// import dir and the site's importer builds it. Refused for a site
    /// that exists.
    Restore {
        /// The site's domain (example.com).
        domain: String,
        /// The snapshot (an ID or its prefix, from `hostyard backup ls`);
        /// default the newest.
        #[arg(long, value_name = "ID")]
        snapshot: Option<String>,
        /// Only put the import in place; do not start the site.
        #[arg(long)]
        no_start: bool,
        /// Restore even though another server owns the site and serves it
        /// now: this server becomes its owner, and the other's copy leaves
        /// routing.
        #[arg(long)]
        take_over: bool,
    },
    /// Back sites up into the restic repository of backup.repository.
    Backup {
        #[command(subcommand)]
        action: BackupAction,
    },
    /// The sites' certificates from ACME.
    Tls {
        #[command(subcommand)]
        action: TlsAction,
    },
}

#[derive(Subcommand)]
enum TlsAction {
    /// Have haproxy-confd order a new key and certificate for the site now
    /// (a leaked key, a name that now resolves), whatever the current
    /// one's age; it is served without a reload once the CA issues it.
    Renew {
        /// The site's domain (example.com), hosted on this server.
        domain: String,
    },
}

#[derive(Subcommand)]
enum BackupAction {
    /// Make the password file (if missing, mode 0600) and the repository.
    Init,
    /// Export the site and store the export as a snapshot (backup@D.service).
    Run {
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

#[derive(Subcommand)]
enum EtcdAction {
    /// Print `local` when every etcd.endpoints URL is on this server's
    /// loopback (it runs its own member), else `cluster`.
    Placement,
    /// Wait until at least one etcd.endpoints URL answers a read; print
    /// which answered. Exit 1 if none did within the timeout.
    Check {
        /// Give up after this many seconds.
        #[arg(long, default_value_t = 15, value_name = "SECS")]
        timeout: u64,
    },
}

#[derive(Subcommand)]
enum FleetAction {
    /// Check the inventory; print how many servers, members and sites.
    Check,
    /// Print `NAME SSH PRIVATE ROLE`, one server a line.
    Servers,
    /// Print `DOMAIN KIND SERVER`, one site a line.
    Sites {
        /// Only the sites of this server.
        #[arg(long)]
        server: Option<String>,
    },
    /// Print the node config of server NAME (its etcd endpoints and TLS files).
    NodeConfig { name: String },
    /// Make the inventory say that site DOMAIN lives on SERVER (deploy/site.sh move does, once it serves there).
    SetServer { domain: String, server: String },
    /// Print the etcd settings of member NAME; CLUSTER as `member-add` printed it, none for the first.
    MemberEnv {
        name: String,
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Administer the cluster at ENDPOINT with the fleet's root identity (ca/root.pem).
    Etcd {
        /// A member's client URL, e.g. https://127.0.0.1:2379 through ssh -L.
        #[arg(long)]
        endpoint: String,
        #[command(subcommand)]
        action: FleetEtcdAction,
    },
}

#[derive(Subcommand)]
enum FleetEtcdAction {
    /// Create the root user and turn authentication on (once).
    EnableAuth,
    /// Create USER (a server certificate's common name) with a role that may use `PREFIX/` only.
    Grant {
        user: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete USER and its role: its certificate is refused from then on.
    Revoke { user: String },
    /// Print `NAME PEER-URL`, one member a line.
    Members,
    /// Print etcd's users, one a line.
    Users,
    /// Add server NAME as a member (unless it is one); print ETCD_INITIAL_CLUSTER for its first start.
    MemberAdd { name: String },
    /// Promote the learner NAME to a voting member once it has caught up (exit 1 until then).
    MemberPromote { name: String },
    /// Remove server NAME's member, if there is one.
    MemberRemove { name: String },
}

#[derive(Subcommand)]
enum SiteAction {
    /// Print the server that owns the site (only its discovery registers
    /// it); nothing when no server does.
    Owner {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Make this server the site's owner. Refused while another server
    /// owns it and serves it, unless --take-over.
    Claim {
        /// The site's domain (example.com).
        domain: String,
        /// Take it from the server that serves it now: that server's
        /// discovery stops registering it and its unit fails.
        #[arg(long)]
        take_over: bool,
    },
    /// Hand the site from server FROM to server TO in one transaction (a
    /// move's switch). Refused when a third server owns it and serves it,
    /// unless --take-over.
    Transfer {
        /// The site's domain (example.com).
        domain: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Take it from a third server that serves it now.
        #[arg(long)]
        take_over: bool,
    },
    /// Remove the site's declaration (its kind and aliases) from etcd, e.g.
    /// before it comes back as another kind. Refused while the declared site
    /// runs; its data is left as it is.
    Forget {
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
}

#[derive(Subcommand)]
enum WordpressAction {
    /// Print the administrator and password hostyard installed the site
    /// with, or set last (secrets/wp-admin.env).
    Password {
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
    /// Set a new generated password for the site's administrator (the one
    /// of secrets/wp-admin.env, else its first) in the running site and
    /// store it in secrets/wp-admin.env (0600). Printed only with --print.
    ResetPassword {
        /// Another user's login instead.
        #[arg(long, value_name = "LOGIN")]
        user: Option<String>,
        /// Print the new password too.
        #[arg(long)]
        print: bool,
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
}

#[derive(Subcommand)]
enum ConfigAction {
    /// Print one value: a scalar as it is, a list one item per line.
    Get {
        /// A dotted key as in docs/reference/config.md, e.g. bin_dir, etcd.endpoints, images.static_git.
        key: String,
    },
}

/// A failure and the exit code it gets: 2 for bad input (flags, config), 1
/// for everything that went wrong while doing the work.
struct Failure {
    code: u8,
    error: anyhow::Error,
}

fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 2,
        error: error.into(),
    }
}

fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: 1,
        error: error.into(),
    }
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    match run(cli) {
        Ok(code) => ExitCode::from(code),
        Err(f) => {
            // One line, whatever the error's sources contain.
            let message = format!("{:#}", f.error).replace('\n', " ");
            eprintln!("{PROGRAM}: {message}");
            ExitCode::from(f.code)
        }
    }
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let config = NodeConfig::load(&cli.config).map_err(usage)?;
    match cli.command {
        Command::Generate { out, check } => generate(&config, &cli.config, &out, check),
        Command::Status { json } => {
            let code = hostyard::status::run(&config, json).map_err(runtime)?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Mail {
            check,
            certificate_changed,
        } => {
            if certificate_changed {
                mail_certificate_changed(&config)
            } else {
                mail(&config, check)
            }
        }
        Command::MailWait { timeout } => {
            let address = hostyard::mail::SMTP_ADDRESS
                .parse()
                .map_err(|e| runtime(anyhow::anyhow!("{e}")))?;
            let took =
                hostyard::mail::wait_for_smtp(address, std::time::Duration::from_secs(timeout))
                    .map_err(|e| runtime(anyhow::anyhow!(e)))?;
            eprintln!(
                "{PROGRAM}: postfix answers on {address} after {} ms",
                took.as_millis()
            );
            Ok(0)
        }
        Command::Site {
            action: SiteAction::Forget { domain },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            match hostyard::site::forget(&config, &domain).map_err(runtime)? {
                hostyard::site::Forgot::Nothing => {
                    println!("{domain} has no declaration; nothing changed");
                }
                hostyard::site::Forgot::Declaration(kind) => {
                    let kind = kind.map_or("malformed".to_string(), |k| format!("a {k}"));
                    println!(
                        "forgot {domain} (declared as {kind} site); its data in {} is left as it is",
                        config.layout().domain_dir(&domain).display()
                    );
                }
            }
            Ok(0)
        }
        Command::Site {
            action: SiteAction::Owner { domain },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            if let Some(owner) = hostyard::owner::owner(&config, &domain).map_err(runtime)? {
                println!("{owner}");
            }
            Ok(0)
        }
        Command::Site {
            action: SiteAction::Claim { domain, take_over },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            let again = format!("hostyard site claim {domain} --take-over");
            let changed = hostyard::owner::claim(&config, &domain, take_over, false, &again)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &config.node_name()));
            Ok(0)
        }
        Command::Site {
            action:
                SiteAction::Transfer {
                    domain,
                    from,
                    to,
                    take_over,
                },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            for name in [&from, &to] {
                hostyard_core::etcd::parse_owner(name.as_bytes())
                    .map_err(|e| usage(anyhow::anyhow!("server name {name:?}: {}", e.reason)))?;
            }
            let changed = hostyard::owner::transfer(&config, &domain, &from, &to, take_over)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &to));
            Ok(0)
        }
        Command::Wordpress {
            action: WordpressAction::Password { domain },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            match hostyard::wordpress::read_admin(&config, &domain).map_err(runtime)? {
                Some(admin) => {
                    println!("user: {}\npassword: {}", admin.user, admin.password);
                    Ok(0)
                }
                None => Err(runtime(anyhow::anyhow!(
                    "{domain} keeps the administrators it was imported with: \
                     hostyard wordpress reset-password {domain} sets a new password"
                ))),
            }
        }
        Command::Wordpress {
            action:
                WordpressAction::ResetPassword {
                    user,
                    print,
                    domain,
                },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            let admin = hostyard::wordpress::reset_password(&config, &domain, user.as_deref())
                .map_err(runtime)?;
            println!(
                "set a new password for {} of {domain}, stored in {}",
                admin.user,
                config.layout().wp_admin_file(&domain).display()
            );
            if print {
                println!("password: {}", admin.password);
            }
            Ok(0)
        }
        Command::Config {
            action: ConfigAction::Get { key },
        } => {
            for line in hostyard::config_get::get(&config, &key).map_err(usage)? {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Names { what } => {
            for line in hostyard::names::lines(&config, what) {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Etcd {
            action: EtcdAction::Placement,
        } => {
            let placement = hostyard::etcd_check::Placement::of(&config.etcd.endpoints);
            println!("{}", placement.as_str());
            Ok(0)
        }
        Command::Etcd {
            action: EtcdAction::Check { timeout },
        } => etcd_check(&config, &cli.config, timeout),
        Command::Fleet { inventory, action } => fleet(&inventory, action),
        Command::ImageId { tar } => {
            println!("{}", hostyard::image_id::image_id(&tar).map_err(runtime)?);
            Ok(0)
        }
        Command::Export { domain, dir } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            let kind = hostyard_backup::export(&config, &domain, &dir).map_err(runtime)?;
            eprintln!(
                "{PROGRAM}: exported {kind} site {domain} to {}",
                dir.display()
            );
            Ok(0)
        }
        Command::Refresh {
            domain,
            dir,
            db_timeout,
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            let layout = config.layout();
            let unit = hostyard_backup::site_kind(&layout, &domain)
                .map_err(runtime)?
                .map(|k| k.site_unit(&domain));
            if let Some(unit) = unit.filter(|u| hostyard::site::unit_is_active(u)) {
                return Err(runtime(anyhow::anyhow!(
                    "{unit} runs: a refresh replaces a stopped site's data; systemctl stop {unit} first"
                )));
            }
            let done = hostyard_backup::refresh::refresh(
                &config,
                &domain,
                &dir,
                std::time::Duration::from_secs(db_timeout),
            )
            .map_err(runtime)?;
            println!(
                "refreshed {} site {domain} from {}: {}",
                done.kind,
                dir.display(),
                if done.parts.is_empty() {
                    "nothing to replace".to_string()
                } else {
                    done.parts.join(", ")
                }
            );
            Ok(0)
        }
        Command::Restore {
            domain,
            snapshot,
            no_start,
            take_over,
        } => restore(
            &config,
            &cli.config,
            &domain,
            snapshot.as_deref(),
            no_start,
            take_over,
        ),
        Command::Backup { action } => backup(&config, &cli.config, action),
        Command::Tls {
            action: TlsAction::Renew { domain },
        } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            hostyard::tls::renew(&config, &domain).map_err(runtime)?;
            println!("{}", hostyard::tls::next_steps(&config, &domain));
            Ok(0)
        }
    }
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
fn restore(
    config: &NodeConfig,
    config_path: &Path,
    domain: &str,
    snapshot: Option<&str>,
    no_start: bool,
    take_over: bool,
) -> Result<u8, Failure> {
    let domain = hostyard_core::Domain::parse_instance(domain).map_err(usage)?;
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
    let stopped = std::process::Command::new("systemctl")
        .args(["stop", "--"])
        .args(&stale)
        .status()
        .map_err(|e| runtime(anyhow::anyhow!("cannot run systemctl: {e}")))?;
    if !stopped.success() {
        return Err(runtime(anyhow::anyhow!(
            "systemctl stop {} failed ({stopped}); the import waits in {}: stop them, then systemctl start {unit}",
            stale.join(" "),
            restored.import_dir.display()
        )));
    }
    let status = std::process::Command::new("systemctl")
        .args(["start", "--"])
        .arg(&unit)
        .status()
        .map_err(|e| runtime(anyhow::anyhow!("cannot run systemctl: {e}")))?;
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

fn backup(config: &NodeConfig, config_path: &Path, action: BackupAction) -> Result<u8, Failure> {
    match action {
        BackupAction::Failed { job } => {
            use hostyard_core::backup::{FAILED_CHECK, FAILED_PRUNE};
            let unit = match job.as_str() {
                FAILED_PRUNE => hostyard_core::backup::BACKUP_PRUNE_UNIT.to_string(),
                FAILED_CHECK => hostyard_core::backup::BACKUP_CHECK_UNIT.to_string(),
                domain => hostyard_core::backup::backup_unit(
                    &hostyard_core::Domain::parse_instance(domain).map_err(usage)?,
                ),
            };
            // Priority 3 (err): `journalctl -p err` and any hook the
            // operator adds to backup-failed@.service show it.
            hostyard_core::log!(
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
        BackupAction::Run { domain } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
            let restic = restic(config, config_path)?;
            restic.check_writable().map_err(runtime)?;
            let (kind, summary) =
                hostyard_backup::restore::backup(config, &restic, &domain).map_err(runtime)?;
            println!(
                "backed up {kind} site {domain}: snapshot {}, {} processed, {} added",
                &summary.snapshot_id[..summary.snapshot_id.len().min(8)],
                bytes(summary.total_bytes_processed),
                bytes(summary.data_added)
            );
        }
        BackupAction::Ls { domain } => {
            let domain = hostyard_core::Domain::parse_instance(&domain).map_err(usage)?;
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
                eprintln!(
                    "{PROGRAM}: no snapshot of {domain} in {}",
                    restic.repository()
                );
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

fn fleet(path: &Path, action: FleetAction) -> Result<u8, Failure> {
    use hostyard::fleet::{self, Admin, Inventory, RootIdentity};
    let inv = Inventory::load(path).map_err(usage)?;
    match action {
        FleetAction::Check => println!(
            "{} servers ({} members), {} sites",
            inv.servers.len(),
            inv.members().count(),
            inv.sites.len()
        ),
        FleetAction::Servers => {
            for s in &inv.servers {
                println!("{} {} {} {}", s.name, s.ssh, s.private, s.role.as_str());
            }
        }
        FleetAction::Sites { server } => {
            if let Some(name) = &server {
                inv.server(name).map_err(usage)?;
            }
            for s in inv
                .sites
                .iter()
                .filter(|s| server.as_ref().is_none_or(|n| *n == s.server))
            {
                println!("{} {} {}", s.domain, s.kind, s.server);
            }
        }
        FleetAction::NodeConfig { name } => {
            print!("{}", fleet::node_config(&inv, &name).map_err(usage)?);
        }
        FleetAction::SetServer { domain, server } => {
            match fleet::set_site_server(path, &domain, &server).map_err(usage)? {
                fleet::SiteServer::Unchanged => {
                    println!(
                        "{domain} is on {server} in {} already; nothing changed",
                        path.display()
                    )
                }
                fleet::SiteServer::Moved { from } => {
                    println!("{domain}: server {from} -> {server} in {}", path.display())
                }
            }
        }
        FleetAction::MemberEnv { name, cluster } => {
            print!(
                "{}",
                fleet::member_env(&inv, &name, &cluster).map_err(usage)?
            );
        }
        FleetAction::Etcd { endpoint, action } => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut admin =
                Admin::connect(&RootIdentity::in_fleet(dir), &endpoint).map_err(runtime)?;
            let said = |changed: bool, done: &str, already: &str| {
                println!("{}", if changed { done } else { already });
            };
            match action {
                FleetEtcdAction::EnableAuth => said(
                    admin.enable_auth().map_err(runtime)?,
                    "authentication enabled",
                    "authentication was enabled already; nothing changed",
                ),
                FleetEtcdAction::Grant { user, prefix } => said(
                    admin.grant(&user, &prefix).map_err(runtime)?,
                    &format!("granted {user} {prefix}/"),
                    &format!("{user} exists; nothing changed"),
                ),
                FleetEtcdAction::Revoke { user } => said(
                    admin.revoke(&user).map_err(runtime)?,
                    &format!("revoked {user}"),
                    &format!("{user} does not exist; nothing changed"),
                ),
                FleetEtcdAction::Users => {
                    for user in admin.users().map_err(runtime)? {
                        println!("{user}");
                    }
                }
                FleetEtcdAction::Members => {
                    for (_, name, urls) in admin.members().map_err(runtime)? {
                        println!(
                            "{} {}",
                            if name.is_empty() { "-" } else { &name },
                            urls.join(",")
                        );
                    }
                }
                FleetEtcdAction::MemberAdd { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    let (added, cluster) = admin
                        .member_add(&name, &fleet::peer_url(server))
                        .map_err(runtime)?;
                    eprintln!(
                        "{PROGRAM}: {name} {}",
                        if added {
                            "added as a member"
                        } else {
                            "is a member already; nothing changed"
                        }
                    );
                    println!("{cluster}");
                }
                FleetEtcdAction::MemberPromote { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    said(
                        admin
                            .promote(&name, &fleet::peer_url(server))
                            .map_err(runtime)?,
                        &format!("promoted {name} to a voting member"),
                        &format!("{name} votes already; nothing changed"),
                    );
                }
                FleetEtcdAction::MemberRemove { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    said(
                        admin
                            .member_remove(&name, &fleet::peer_url(server))
                            .map_err(runtime)?,
                        &format!("removed member {name}"),
                        &format!("{name} is no member; nothing changed"),
                    );
                }
            }
        }
    }
    Ok(0)
}

/// `hostyard etcd check`: the endpoints that answered on stdout, as
/// setup.sh shows them; none within `timeout` is a failure naming each
/// endpoint's error and the fix.
fn etcd_check(config: &NodeConfig, config_path: &Path, timeout: u64) -> Result<u8, Failure> {
    // Before the probes: a certificate at or past its end is the likely
    // reason when none answers.
    if let Some(warning) = hostyard::etcd_check::cert_warning_now(config) {
        eprintln!("{PROGRAM}: WARNING: {warning}");
    }
    let health = hostyard::etcd_check::check(&config.etcd, std::time::Duration::from_secs(timeout))
        .map_err(runtime)?;
    if health.healthy.is_empty() {
        return Err(runtime(anyhow::anyhow!(
            "no etcd endpoint of {} answers within {timeout}s: {}. Start or reach that cluster \
             from this server (firewall, address; with TLS, a certificate of the fleet CA whose \
             etcd user exists: `deploy/server.sh add` makes both), or set etcd.endpoints to \
             http://127.0.0.1:2379 for a member on this server.",
            config_path.display(),
            health.failed_line()
        )));
    }
    println!("healthy: {}", health.healthy.join(" "));
    if !health.failed.is_empty() {
        println!(
            "not answering (the others serve meanwhile): {}",
            health.failed_line()
        );
    }
    Ok(0)
}

fn generate(
    config: &NodeConfig,
    config_path: &Path,
    out: &Path,
    check: bool,
) -> Result<u8, Failure> {
    // The units name the config as an absolute path: they run from /.
    let config_path = std::path::absolute(config_path)
        .map_err(|e| usage(anyhow::anyhow!("--config {}: {e}", config_path.display())))?;
    check_config_path(&config_path).map_err(usage)?;
    let hidden = config.unit_path_problems();
    if !hidden.is_empty() {
        return Err(usage(anyhow::anyhow!(
            "{}: {}",
            config_path.display(),
            hidden.join("; ")
        )));
    }
    let files = render_units(config, &config_path)
        .map_err(|e| runtime(anyhow::Error::new(e).context("cannot render the units")))?;
    if check {
        let differences = check_units(out, &files).map_err(runtime)?;
        for d in &differences {
            match d {
                Difference::Missing(p) => println!("missing {}", p.display()),
                Difference::Differs(p) => println!("differs {}", p.display()),
            }
        }
        if differences.is_empty() {
            eprintln!(
                "{PROGRAM}: all {} units in {} are up to date",
                files.len(),
                out.display()
            );
            return Ok(0);
        }
        eprintln!(
            "{PROGRAM}: {} of {} units in {} are not up to date; run hostyard generate --out {}",
            differences.len(),
            files.len(),
            out.display(),
            out.display()
        );
        return Ok(1);
    }
    let changes = write_units(out, &files).map_err(runtime)?;
    for c in &changes {
        match c {
            Change::Created(p) => println!("created {}", p.display()),
            Change::Updated(p) => println!("updated {}", p.display()),
        }
    }
    if changes.is_empty() {
        eprintln!(
            "{PROGRAM}: all {} units in {} were up to date",
            files.len(),
            out.display()
        );
    } else {
        eprintln!(
            "{PROGRAM}: wrote {} of {} units; run systemctl daemon-reload",
            changes.len(),
            files.len()
        );
    }
    Ok(0)
}

/// `hostyard mail`: validate every forward file, then write postfix's config
/// dir (only files that changed). A bad forward file is reported, one line
/// each, and skipped (its domain deferred): postfix.service runs this before
/// every start, and one typo must not stop mail for every domain. `--check`
/// lists bad files too, and exits 1 for them.
fn mail(config: &NodeConfig, check: bool) -> Result<u8, Failure> {
    use hostyard::mail;
    let layout = config.layout();
    let forwards = layout.postfix_forwards_dir();
    let read = mail::read_forwards(&forwards).map_err(runtime)?;
    for bad in &read.bad {
        let deferred = match &bad.domain {
            Some(d) => format!("mail for {d} is deferred until it is fixed"),
            None => "fix or remove it".to_string(),
        };
        // <4>: journald files it as a warning (`journalctl -p warning`).
        eprintln!(
            "<4>{PROGRAM}: skipped {}; {deferred}",
            error_chain(&bad.error)
        );
    }
    let deferred = read.deferred();
    let maps = read.maps;
    let hostname = mail_hostname(config)?;
    let cert = mail::mail_certificate(&layout, &hostname).map_err(runtime)?;
    if cert.is_none() {
        eprintln!(
            "<4>{PROGRAM}: no certificate for {hostname} and no default one in {}: postfix offers no STARTTLS until haproxy-confd has made one",
            layout.haproxy_certs_dir().display()
        );
    }
    let files = mail::render_mail(
        &layout,
        &hostname,
        &config.mail.relayhost,
        &maps,
        &deferred,
        cert.is_some(),
    )
    .map_err(|e| runtime(anyhow::Error::new(e).context("cannot render postfix's config")))?;
    let out = layout.postfix_config_dir();
    let tls_path = out.join(mail::TLS_PEM);
    let tls_current = hostyard_fs::read_if_exists(&tls_path).map_err(runtime)?;
    let tls_stale = tls_current.as_deref() != cert.as_ref().map(|c| c.pem.as_slice());
    if check {
        let mut differences = check_units(&out, &files).map_err(runtime)?;
        if tls_stale {
            differences.push(match tls_current {
                None => Difference::Missing(tls_path.clone()),
                Some(_) => Difference::Differs(tls_path.clone()),
            });
        }
        for d in &differences {
            match d {
                Difference::Missing(p) => println!("missing {}", p.display()),
                Difference::Differs(p) => println!("differs {}", p.display()),
            }
        }
        for bad in &read.bad {
            println!("bad {}", error_chain(&bad.error));
        }
        return Ok(u8::from(!differences.is_empty() || !read.bad.is_empty()));
    }
    // The operator's directory and postfix's queue exist from the first
    // render on, so there is an obvious place to put a forward file.
    for dir in [&forwards, &layout.postfix_queue_dir()] {
        std::fs::create_dir_all(dir)
            .map_err(|e| runtime(anyhow::anyhow!("cannot create {}: {e}", dir.display())))?;
    }
    let mut changes = write_units(&out, &files).map_err(runtime)?;
    // Before postfix reads main.cf's TLS lines; a private key: 0600.
    if tls_stale {
        match &cert {
            Some(c) => {
                hostyard_tls::files::KEY_FILE
                    .write(&tls_path, &c.pem)
                    .map_err(runtime)?;
                changes.push(match tls_current {
                    None => Change::Created(tls_path.clone()),
                    Some(_) => Change::Updated(tls_path.clone()),
                });
                eprintln!(
                    "{PROGRAM}: postfix's certificate is now {}",
                    c.source.display()
                );
            }
            None => std::fs::remove_file(&tls_path).map_err(|e| {
                runtime(anyhow::anyhow!("cannot remove {}: {e}", tls_path.display()))
            })?,
        }
    }
    for c in &changes {
        match c {
            Change::Created(p) => println!("created {}", p.display()),
            Change::Updated(p) => println!("updated {}", p.display()),
        }
    }
    eprintln!(
        "{PROGRAM}: mail for {} domain(s) from {}; {} of {} files in {} changed",
        maps.len(),
        forwards.display(),
        changes.len(),
        files.len() + usize::from(cert.is_some()),
        out.display()
    );
    Ok(0)
}

/// The name postfix greets with, from the config or the kernel.
fn mail_hostname(config: &NodeConfig) -> Result<String, Failure> {
    let kernel_hostname = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    hostyard::mail::mail_hostname(config, &kernel_hostname).map_err(usage)
}

/// `hostyard mail --certificate-changed`: whether postfix's copy of its
/// certificate differs from the one it should offer (exit 0: reload it; 1:
/// nothing to do). postfix-tls.service asks this whenever HAProxy's
/// certificate directory changes, so a renewal of another site's
/// certificate does not reload postfix.
fn mail_certificate_changed(config: &NodeConfig) -> Result<u8, Failure> {
    let layout = config.layout();
    let hostname = mail_hostname(config)?;
    let cert = hostyard::mail::mail_certificate(&layout, &hostname).map_err(runtime)?;
    let copy = layout.postfix_config_dir().join(hostyard::mail::TLS_PEM);
    let current = hostyard_fs::read_if_exists(&copy).map_err(runtime)?;
    if current.as_deref() == cert.as_ref().map(|c| c.pem.as_slice()) {
        return Ok(1);
    }
    let source = cert.map_or_else(|| "none".to_string(), |c| c.source.display().to_string());
    eprintln!("{PROGRAM}: postfix's certificate is out of date (now: {source})");
    Ok(0)
}

/// An error and its sources on one line, `outer: inner: innermost`.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    line.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
