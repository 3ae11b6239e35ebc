//! hostyard-discovery: keeps one site in routing while it answers.
//!
//! `run` is the per-site `Type=notify` service: it finds the site
//! container's address on the docker network, checks it over HTTP, and
//! keeps `/services/<kind>/<domain>` registered in etcd under a lease while
//! it answers. `wait` is the site unit's `ExecStartPost=`: it returns once the
//! site is registered and answers through HAProxy. Both refuse a bad kind or
//! domain (exit 2) before touching anything. `run` exits 3 when another
//! server owns the site (`{prefix}/owners/<domain>`): it never registers
//! another server's site.

mod health;
mod probe;
mod registry;
mod run;
mod wait;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand};
use hostyard_cli::{self as cli, EXIT_FAILURE, EXIT_NOT_OWNER, EXIT_USAGE};
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};
use hostyard_core::{Domain, SiteKind};

const PROGRAM: &str = "hostyard-discovery";

#[derive(Parser)]
#[command(version, about = "Keep a site registered in etcd while it answers")]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check the site's container and keep it registered while it answers
    /// (the discovery service, Type=notify).
    Run {
        /// The site's kind.
        #[arg(value_parser = hostyard_cli::KindParser)]
        kind: SiteKind,
        /// The site's domain.
        domain: String,
    },
    /// Wait until the site is registered and answers through HAProxy
    /// (the site unit's ExecStartPost=).
    Wait {
        /// The site's kind.
        #[arg(value_parser = hostyard_cli::KindParser)]
        kind: SiteKind,
        /// The site's domain.
        domain: String,
        /// Give up after this many seconds [default: discovery.wait_timeout_secs].
        #[arg(long, value_name = "SECS")]
        timeout: Option<u64>,
    },
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    let (kind, domain) = match &cli.command {
        Command::Run { kind, domain } | Command::Wait { kind, domain, .. } => {
            match parse_site(*kind, domain) {
                Ok(site) => site,
                Err(e) => return cli::fail(PROGRAM, EXIT_USAGE, e),
            }
        }
    };
    let config = match NodeConfig::load(&cli.config) {
        Ok(c) => c,
        Err(e) => return cli::fail(PROGRAM, EXIT_USAGE, e),
    };
    let runtime = match hostyard_etcd::per_site_runtime() {
        Ok(r) => r,
        Err(e) => return cli::fail(PROGRAM, EXIT_FAILURE, format_args!("{e:#}")),
    };
    let result = match cli.command {
        Command::Run { .. } => {
            let socket = match probe::docker_socket(std::env::var("DOCKER_HOST").ok().as_deref()) {
                Ok(s) => s,
                Err(e) => return cli::fail(PROGRAM, EXIT_USAGE, e),
            };
            let result = runtime.block_on(run::run(config, kind, domain, socket));
            // A check blocked on a hung container must not hold up the exit
            // (dropping the runtime would wait for it): the lease is revoked
            // already, so leave that thread behind.
            runtime.shutdown_background();
            result
        }
        Command::Wait { timeout, .. } => {
            let secs = timeout.unwrap_or(config.discovery.wait_timeout_secs);
            runtime.block_on(wait::wait(
                &config,
                kind,
                &domain,
                Duration::from_secs(secs),
            ))
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        // Not restarted by systemd (RestartPreventExitStatus=): only an
        // operator's take-over or a move changes the owner.
        Err(e) if e.is::<registry::NotOwner>() => {
            cli::fail(PROGRAM, EXIT_NOT_OWNER, format_args!("{e:#}"))
        }
        Err(e) => cli::fail(PROGRAM, EXIT_FAILURE, format_args!("{e:#}")),
    }
}

/// Validates the arguments that become etcd keys and container names.
fn parse_site(kind: SiteKind, domain: &str) -> anyhow::Result<(SiteKind, Domain)> {
    let domain = Domain::parse_instance(domain)?;
    Ok((kind, domain))
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    /// What `run KIND DOMAIN` makes of its arguments: clap's kind, then
    /// the domain check.
    fn parse_run(kind: &str, domain: &str) -> anyhow::Result<(SiteKind, Domain)> {
        let cli = Cli::try_parse_from(["hostyard-discovery", "run", kind, domain])?;
        let Command::Run { kind, domain } = &cli.command else {
            unreachable!("parsed as run")
        };
        parse_site(*kind, domain)
    }

    #[test]
    fn hostile_arguments_are_refused() {
        for (kind, domain) in [
            ("static", "../etc"),
            ("static", "a/b.com"),
            ("static", "-rf.com"),
            ("static", "example.com\n"),
            ("static", ""),
            ("php", "example.com"),
            ("static_git", "example.com"),
        ] {
            assert!(parse_run(kind, domain).is_err(), "{kind} {domain:?}");
        }
        // The instance must be the canonical name (Domain::parse_instance):
        // another spelling would be a second unit fighting over one key.
        assert!(parse_run("static-git", "Example.COM").is_err());
        assert!(parse_run("static-git", "example.com").is_ok());
    }
}
