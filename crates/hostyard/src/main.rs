//! hostyard: the flags; each subcommand is a module of [`cmd`], and the
//! work is in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostyard_cli as cli;
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};

mod cmd;

use cmd::backup::BackupAction;
use cmd::config::ConfigAction;
use cmd::etcd::EtcdAction;
use cmd::fleet::FleetAction;
use cmd::moving::MoveAction;
use cmd::site::SiteAction;
use cmd::tls::TlsAction;
use cmd::wordpress::WordpressAction;
use cmd::{runtime, usage, Failure, PROGRAM};

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
        #[command(subcommand)]
        action: Option<cmd::mail::MailAction>,
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
        /// The site, for `names site`.
        domain: Option<String>,
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
    /// A site's move between servers, one step at a time on the server it
    /// concerns (`deploy/site.sh move` runs them).
    Move {
        #[command(subcommand)]
        action: MoveAction,
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

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    ExitCode::from(run(cli).unwrap_or_else(Failure::report))
}

fn run(cli: Cli) -> Result<u8, Failure> {
    let config = NodeConfig::load(&cli.config).map_err(usage)?;
    match cli.command {
        Command::Generate { out, check } => cmd::generate::run(&config, &cli.config, &out, check),
        Command::Status { json } => {
            let code = hostyard::status::run(&config, json).map_err(runtime)?;
            Ok(u8::try_from(code).unwrap_or(1))
        }
        Command::Mail {
            action: Some(action),
            ..
        } => cmd::mail::action(&config, action),
        Command::Mail {
            certificate_changed: true,
            ..
        } => cmd::mail::certificate_changed(&config),
        Command::Mail { check, .. } => cmd::mail::run(&config, check),
        Command::MailWait { timeout } => cmd::mail::wait(timeout),
        Command::Site { action } => cmd::site::run(&config, action),
        Command::Wordpress { action } => cmd::wordpress::run(&config, action),
        Command::Config { action } => cmd::config::run(&config, action),
        Command::Names { what, domain } => {
            let domain = domain
                .map(|d| hostyard_core::Domain::parse_instance(&d).map_err(usage))
                .transpose()?;
            for line in hostyard::names::lines(&config, what, domain.as_ref())
                .map_err(|e| usage(anyhow::Error::msg(e)))?
            {
                println!("{line}");
            }
            Ok(0)
        }
        Command::Etcd { action } => cmd::etcd::run(&config, &cli.config, action),
        Command::Fleet { inventory, action } => cmd::fleet::run(&inventory, action),
        Command::ImageId { tar } => {
            println!("{}", hostyard::image_id::image_id(&tar).map_err(runtime)?);
            Ok(0)
        }
        Command::Export { domain, dir } => cmd::export::export(&config, &domain, &dir),
        Command::Refresh {
            domain,
            dir,
            db_timeout,
        } => cmd::export::refresh(&config, &domain, &dir, db_timeout),
        Command::Restore {
            domain,
            snapshot,
            no_start,
            take_over,
        } => cmd::backup::restore(
            &config,
            &cli.config,
            &domain,
            snapshot.as_deref(),
            no_start,
            take_over,
        ),
        Command::Move { action } => cmd::moving::run(&config, action),
        Command::Backup { action } => cmd::backup::run(&config, &cli.config, action),
        Command::Tls { action } => cmd::tls::run(&config, action),
    }
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
