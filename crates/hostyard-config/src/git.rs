//! The `git:` section: static-git sites' pulls.

use serde::{Deserialize, Serialize};

use crate::TimeSpan;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct GitConfig {
    /// How often static-git sites pull, as a systemd time span (`10min`).
    pub poll_interval: TimeSpan,
    /// Fetch timeout in seconds.
    pub fetch_timeout_secs: u64,
    /// How many published trees to keep for rollback.
    pub keep_trees: usize,
    /// The loopback port HAProxy hands deploy hooks to (hostyard-hook's
    /// socket).
    pub hook_port: u16,
}

impl Default for GitConfig {
    fn default() -> Self {
        GitConfig {
            poll_interval: TimeSpan::from_secs(600).expect("not zero"),
            fetch_timeout_secs: 60,
            keep_trees: 3,
            hook_port: 8406,
        }
    }
}
