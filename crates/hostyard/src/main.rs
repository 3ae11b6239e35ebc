//! hostyard: flags and exit codes only; the work is in the library
//! (`units`, `write`, `status`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use hostyard::units::{check_config_path, render_units};
use hostyard::write::{check_units, write_units, Change, Difference};
use hostyard_core::cli;
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
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }
}
