//! The `confd:` section: how confd applies routing changes.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::timespan::{whole_millis, whole_secs};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ConfdConfig {
    /// A single change that would remove more than this share of all routes
    /// is held rather than applied.
    pub hold_fraction: f64,
    /// How long a held change must persist before it is applied anyway.
    /// Whole seconds in the file (`hold_secs`).
    #[serde(rename = "hold_secs", with = "whole_secs")]
    pub hold: Duration,
    /// The hold applies only when at least this many routes would go at
    /// once: stopping one site of two must take effect at once.
    pub hold_min_removals: usize,
    /// Debounce window for bursts of etcd events. Whole milliseconds in the
    /// file (`debounce_ms`).
    #[serde(rename = "debounce_ms", with = "whole_millis")]
    pub debounce: Duration,
    /// Networks a registered address may be in (CIDR); empty means the
    /// subnet of the sites' Docker network (`docker.network`). The server's
    /// own addresses are refused in any case unless listed one by one.
    pub allowed_networks: Vec<ipnet::IpNet>,
}

impl Default for ConfdConfig {
    fn default() -> Self {
        ConfdConfig {
            hold_fraction: 0.5,
            hold: Duration::from_secs(300),
            hold_min_removals: 3,
            debounce: Duration::from_millis(5),
            allowed_networks: Vec::new(),
        }
    }
}
