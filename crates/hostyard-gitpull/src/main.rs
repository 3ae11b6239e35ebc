//! hostyard-gitpull: publishes a static-git site's branch tip (run by the
//! site's puller timer, and by hand to force a refresh).
//!
//! `hostyard-gitpull [--config FILE] <domain>`. Exit 0: published or already
//! up to date; 1: the fetch or export failed and the last good tree keeps
//! serving; 2: bad arguments or config.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use hostyard_cli::{self as cli, EXIT_FAILURE};
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};
use hostyard_core::Domain;
use hostyard_git::{check_site, publish, read_git_url, Outcome};

const PROGRAM: &str = "hostyard-gitpull";

#[derive(Parser)]
#[command(version, about = "Publish the branch tip of a static-git site")]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
    /// The site's domain.
    domain: String,
}

fn notice(line: std::fmt::Arguments) {
    hostyard_log::line(hostyard_log::Priority::Notice, line);
}

fn main() -> ExitCode {
    let cli: Cli = cli::parse_or_exit(PROGRAM);
    let domain = cli::valid_or_exit(PROGRAM, Domain::parse_instance(&cli.domain));
    let config = cli::valid_or_exit(PROGRAM, NodeConfig::load(&cli.config));
    let layout = config.layout();
    let result = check_site(&layout, &domain)
        .and_then(|()| read_git_url(&layout, &domain))
        .and_then(|url| publish(&layout, &domain, &url, &config.git, &config.limits.unpack));
    match result {
        Ok(Outcome::Published { commit, previous }) => {
            match previous {
                Some(p) => notice(format_args!(
                    "{PROGRAM}: {domain}: published {commit} (was {p})"
                )),
                None => notice(format_args!("{PROGRAM}: {domain}: published {commit}")),
            }
            ExitCode::SUCCESS
        }
        Ok(Outcome::UpToDate { .. }) => ExitCode::SUCCESS,
        Ok(Outcome::Held { commit }) => {
            notice(format_args!(
                "{PROGRAM}: {domain}: {commit} is held back by a rollback; the next pushed commit is published"
            ));
            ExitCode::SUCCESS
        }
        Err(e) => cli::fail(
            PROGRAM,
            EXIT_FAILURE,
            format_args!("{domain}: keeping the last good tree: {e:#}"),
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
