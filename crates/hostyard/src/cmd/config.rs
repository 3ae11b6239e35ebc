//! `hostyard config`: the node config as hostyard parses it, for scripts.

use clap::Subcommand;
use hostyard_config::NodeConfig;

use super::{usage, Failure};

#[derive(Subcommand)]
pub enum ConfigAction {
    /// Print one value: a scalar as it is, a list one item per line.
    Get {
        /// A dotted key as in docs/reference/config.md, e.g. bin_dir, etcd.endpoints, images.static_git.
        key: String,
    },
}

pub fn run(config: &NodeConfig, action: ConfigAction) -> Result<u8, Failure> {
    match action {
        ConfigAction::Get { key } => {
            for line in hostyard::config_get::get(config, &key).map_err(usage)? {
                println!("{line}");
            }
        }
    }
    Ok(0)
}
