//! The `discovery:` section: registration and health checks.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timespan::whole_secs;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct DiscoveryConfig {
    /// Lease TTL of a registration; kept alive at a third of it. Whole
    /// seconds in the file (`ttl_secs`).
    #[serde(rename = "ttl_secs", with = "whole_secs")]
    pub ttl: Duration,
    /// Seconds between health checks.
    pub interval_secs: u64,
    /// Consecutive failed checks before a site leaves routing.
    pub failures: u32,
    pub health_path: String,
    /// Any status in 200..=399 counts as healthy unless this is set.
    pub expect_status: Option<u16>,
    pub timeout_secs: u64,
    /// Bound of `hostyard-discovery wait` in the site unit's ExecStartPost.
    pub wait_timeout_secs: u64,
}

impl Default for DiscoveryConfig {
    fn default() -> Self {
        DiscoveryConfig {
            ttl: Duration::from_secs(60),
            interval_secs: 5,
            failures: 3,
            health_path: "/".to_string(),
            expect_status: None,
            timeout_secs: 3,
            wait_timeout_secs: 60,
        }
    }
}
