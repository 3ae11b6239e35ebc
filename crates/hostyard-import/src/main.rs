//! hostyard-import: creates a site's data once, before its first start
//! (the site's importer unit, `Type=oneshot`).
//!
//! `hostyard-import [--config FILE] <kind> <domain>`. Exit 0: imported, or
//! already imported (nothing changed); 1: the import was refused or failed
//! and nothing was changed; 2: bad arguments or config.

mod import;
mod pem;
mod secrets;
mod wpdump;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hostyard_cli::{self as cli, EXIT_FAILURE};
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};
use hostyard_core::{Domain, SiteKind};

const PROGRAM: &str = "hostyard-import";

#[derive(Parser)]
#[command(version, about = "Create a site's data once: from an import, or fresh")]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The site's kind.
    #[arg(value_parser = hostyard_cli::KindParser)]
    kind: SiteKind,
    /// The site's domain.
    domain: String,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    let kind = cli.kind;
    let domain = cli::valid_or_exit(PROGRAM, Domain::parse_instance(&cli.domain));
    let config = cli::valid_or_exit(PROGRAM, NodeConfig::load(&cli.config));
    match import::run(&config, kind, &domain) {
        Ok(import::Outcome::AlreadyImported) => {
            import::log_at(
                hostyard_log::Priority::Info,
                &domain,
                "already imported; nothing changed",
            );
            ExitCode::SUCCESS
        }
        Ok(import::Outcome::Imported { from }) => {
            import::log(&domain, &format!("imported {kind} site from {from}"));
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(
            PROGRAM,
            EXIT_FAILURE,
            format_args!("{domain}: import refused, nothing changed: {e:#}"),
        ),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn cli_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
