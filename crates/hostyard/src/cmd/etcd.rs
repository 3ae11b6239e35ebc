//! `hostyard etcd`: where the node config's etcd is, and whether it
//! answers (for setup).

use std::path::Path;

use clap::Subcommand;
use hostyard_config::NodeConfig;

use super::{runtime, warn, Failure};

#[derive(Subcommand)]
pub enum EtcdAction {
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

pub fn run(config: &NodeConfig, config_path: &Path, action: EtcdAction) -> Result<u8, Failure> {
    match action {
        EtcdAction::Placement => {
            let placement = hostyard::etcd_check::Placement::of(&config.etcd.endpoints);
            println!("{}", placement.as_str());
            Ok(0)
        }
        EtcdAction::Check { timeout } => check(config, config_path, timeout),
    }
}

/// `hostyard etcd check`: the endpoints that answered on stdout, as
/// setup.sh shows them; none within `timeout` is a failure naming each
/// endpoint's error and the fix.
fn check(config: &NodeConfig, config_path: &Path, timeout: u64) -> Result<u8, Failure> {
    // Before the probes: a certificate at or past its end is the likely
    // reason when none answers.
    if let Some(warning) = hostyard::etcd_check::cert_warning_now(config) {
        warn(format_args!("WARNING: {warning}"));
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
