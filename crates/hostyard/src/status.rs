//! `hostyard status`: what this server routes and runs (filled in by the
//! confd issue).

use hostyard_core::NodeConfig;

/// Prints the server's status; returns the process exit code.
pub fn run(config: &NodeConfig, json: bool) -> anyhow::Result<i32> {
    let _ = (config, json);
    anyhow::bail!("status is not implemented yet")
}
