//! `hostyard status`: every site with its kind, address and state (routed /
//! down / conflict / invalid / held), from etcd, HAProxy's runtime map and
//! confd's state file.
//!
//! The work is in `hostyard_routing::status`, next to the routing rules, so
//! the verdicts shown are computed by the same function confd applies.

use hostyard_core::NodeConfig;

/// Prints the server's status as a table or JSON; returns 0 when all is
/// well, 1 when something needs attention (a held change, a rejected
/// config, skipped keys, conflicts, etcd unreachable).
pub fn run(config: &NodeConfig, json: bool) -> anyhow::Result<i32> {
    hostyard_routing::status::run(config, json)
}
