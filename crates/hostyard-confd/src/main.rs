//! hostyard-confd: the router. Watches etcd and keeps HAProxy's host map
//! equal to it through the runtime API; see the crate's lib.rs.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hostyard_cli::{self as cli, EXIT_FAILURE, EXIT_USAGE};
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};

const PROGRAM: &str = "hostyard-confd";

#[derive(Parser)]
#[command(version, about = "Keep HAProxy's routing equal to what etcd holds")]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// Apply a single full read of etcd and exit.
    #[arg(long)]
    once: bool,
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    let config = match NodeConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return cli::fail(PROGRAM, EXIT_USAGE, e),
    };
    // Under systemd (which sets INVOCATION_ID) the unit's sandbox hides some
    // paths: a file there would fail later as "not found", or only at the
    // next certificate order.
    if std::env::var_os("INVOCATION_ID").is_some() {
        if let Some(problem) = config.unit_path_problems().first() {
            return cli::fail(
                PROGRAM,
                EXIT_USAGE,
                format_args!("{}: {problem}", cli.config.display()),
            );
        }
    }
    let runtime = match hostyard_etcd::runtime() {
        Ok(r) => r,
        Err(e) => return cli::fail(PROGRAM, EXIT_FAILURE, format_args!("{e:#}")),
    };
    let result = runtime.block_on(async {
        if cli.once {
            hostyard_confd::daemon::run_once(&cli.config, config).await
        } else {
            hostyard_confd::daemon::run(&cli.config, config).await
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => cli::fail(PROGRAM, EXIT_FAILURE, format_args!("{e:#}")),
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
