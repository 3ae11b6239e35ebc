//! The `docker:` section.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DockerConfig {
    /// The docker client the units call.
    pub binary: PathBuf,
    /// The dedicated bridge network every site container joins.
    pub network: String,
}

impl Default for DockerConfig {
    fn default() -> Self {
        DockerConfig {
            binary: PathBuf::from("/usr/bin/docker"),
            network: "hostyard".to_string(),
        }
    }
}
