//! confd's state file: what it applied, what it holds back, and why, for
//! `hostyard status` (which cannot ask a running confd anything else).

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use serde::{Deserialize, Serialize};

use crate::{Problem, Site};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConfdState {
    /// etcd revision of the view the sites below come from (0: none yet).
    pub revision: i64,
    /// Whether confd's etcd watch is up; false means it serves the last
    /// good routing and retries.
    pub etcd_connected: bool,
    /// Every site as etcd has it now (even when a hold keeps it from HAProxy).
    pub sites: Vec<Site>,
    pub problems: Vec<Problem>,
    /// A mass removal waiting for its hold time or an operator.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    /// Why the last structural config change was not applied, if it was not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_rejected: Option<String>,
    /// Whether HAProxy's runtime API was reachable at the last apply.
    pub haproxy_running: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Held {
    /// Routes that the held change would remove.
    pub removed_routes: usize,
    /// Routes HAProxy has now.
    pub current_routes: usize,
    /// Unix time the hold began and when it ends by itself.
    pub since_unix: u64,
    pub until_unix: u64,
    /// How an operator applies it now.
    pub accept_with: String,
    /// The operator accepted it and its apply is still to succeed: a
    /// restart of confd applies it rather than holding it again.
    #[serde(default)]
    pub accepted: bool,
}

impl ConfdState {
    pub fn load(path: &Path) -> anyhow::Result<Option<ConfdState>> {
        hostyard_fs::read_json_if_exists(path, "a confd state file")
    }
}

/// The state file as confd writes it: the sites shared with confd's
/// routing table, so saving 10,000 sites copies none. Same JSON as
/// [`ConfdState`].
#[derive(Serialize)]
pub struct StateView<'a> {
    pub revision: i64,
    pub etcd_connected: bool,
    #[serde(serialize_with = "shared_sites")]
    pub sites: &'a [Arc<Site>],
    pub problems: &'a [Problem],
    #[serde(skip_serializing_if = "Option::is_none")]
    pub held: Option<Held>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub config_rejected: Option<&'a str>,
    pub haproxy_running: bool,
}

fn shared_sites<S: serde::Serializer>(sites: &&[Arc<Site>], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(sites.iter().map(|site| &**site))
}

impl StateView<'_> {
    pub fn save(&self, path: &Path) -> anyhow::Result<()> {
        hostyard_haproxy::FILE
            .write_with(path, |w| {
                serde_json::to_writer(&mut *w, self).map_err(std::io::Error::other)?;
                w.write_all(b"\n")
            })
            .context("saving confd state")
    }
}
