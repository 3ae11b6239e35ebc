//! The sites' edge rules in HAProxy: every site declaration's path
//! redirects ([`hostyard_core::edge`]) kept equal to the two redirect maps,
//! the file first (a reload or restart loads the same), then HAProxy's
//! memory through the runtime API, without a reload. On every server: a
//! request may reach any of them.
//!
//! Why a thread of its own beside the routing loop: the rules change
//! rarely and by hand, a site's routing never waits on them, and the
//! routing loop keeps its one concern (the host map and its hold).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use hostyard_config::EtcdConfig;
use hostyard_core::edge::{redirect_entries, PathRedirect};
use hostyard_core::etcd::{Schema, SiteDecl};
use hostyard_core::{Domain, Layout};
use hostyard_haproxy::{CliError, MapApi, Session};
use hostyard_log::log;

/// Wait before a new etcd session after one broke.
const RECONNECT: Duration = Duration::from_secs(2);

/// Each site's rules, as etcd holds them (a malformed declaration has none).
#[derive(Debug, Default)]
pub struct Rules {
    sites: BTreeMap<Domain, Vec<PathRedirect>>,
}

/// One map's wanted content: key → value.
pub type MapContent = BTreeMap<String, String>;

impl Rules {
    /// One site's declaration changed (`None`: removed).
    pub fn set(&mut self, domain: Domain, value: Option<&[u8]>) {
        let rules = match value.map(SiteDecl::parse) {
            Some(Ok(decl)) => decl.edge.redirects,
            // The routing feed logs a malformed declaration.
            Some(Err(_)) | None => Vec::new(),
        };
        if rules.is_empty() {
            self.sites.remove(&domain);
        } else {
            self.sites.insert(domain, rules);
        }
    }

    /// The exact and the prefix map's content.
    pub fn maps(&self) -> (MapContent, MapContent) {
        let mut exact = MapContent::new();
        let mut prefix = MapContent::new();
        for (domain, rules) in &self.sites {
            let (e, p) = redirect_entries(domain, rules);
            exact.extend(e);
            prefix.extend(p);
        }
        (exact, prefix)
    }
}

/// One map file kept equal to its wanted content, file then runtime.
pub(crate) struct SyncedMap {
    path: PathBuf,
    admin_socket: PathBuf,
    written: Option<MapContent>,
    runtime_pending: bool,
}

impl SyncedMap {
    pub(crate) fn new(path: PathBuf, admin_socket: PathBuf) -> SyncedMap {
        SyncedMap {
            path,
            admin_socket,
            written: None,
            runtime_pending: true,
        }
    }

    pub(crate) fn flush(&mut self, wanted: &MapContent) -> anyhow::Result<()> {
        if self.written.as_ref() != Some(wanted) {
            let text: String = wanted.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            hostyard_haproxy::FILE
                .write(&self.path, text.as_bytes())
                .with_context(|| format!("writing {}", self.path.display()))?;
            self.written = Some(wanted.clone());
            self.runtime_pending = true;
        }
        if !self.runtime_pending {
            return Ok(());
        }
        match self.apply_runtime(wanted) {
            // A HAProxy that does not run loads the file when it starts.
            Ok(()) | Err(CliError::Absent { .. }) => {
                self.runtime_pending = false;
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(
                "{} is written but HAProxy did not take it: {e}",
                self.path.display()
            )),
        }
    }

    fn apply_runtime(&mut self, wanted: &MapContent) -> Result<(), CliError> {
        let mut session = Session::connect(&self.admin_socket)?;
        let mut map = MapApi::new(&mut session, &self.path);
        let now: MapContent = map.show_values()?.into_iter().collect();
        for (key, value) in wanted {
            if now.get(key) != Some(value) {
                map.upsert_value(key, value)?;
            }
        }
        for key in now.keys() {
            if !wanted.contains_key(key) {
                map.remove(key)?;
            }
        }
        Ok(())
    }
}

/// Starts the edge rules' thread; it runs for ever.
pub fn spawn(etcd: &EtcdConfig, schema: &Schema, layout: &Layout) -> anyhow::Result<()> {
    let (etcd, schema) = (etcd.clone(), schema.clone());
    let socket = layout.haproxy_admin_socket();
    let mut maps = [
        SyncedMap::new(layout.redirect_exact_map(), socket.clone()),
        SyncedMap::new(layout.redirect_prefix_map(), socket),
    ];
    std::thread::Builder::new()
        .name("edge".into())
        .spawn(move || {
            let runtime = match hostyard_etcd::runtime() {
                Ok(r) => r,
                Err(e) => {
                    log!(Err, "edge rules: {e:#}");
                    return;
                }
            };
            runtime.block_on(async {
                let mut last_error = String::new();
                loop {
                    if let Err(e) = session(&etcd, &schema, &mut maps).await {
                        let e = format!("{e:#}");
                        if e != last_error {
                            log!(Warning, "edge rules: {e}; retrying");
                            last_error = e;
                        }
                        tokio::time::sleep(RECONNECT).await;
                    }
                }
            });
        })
        .context("starting the edge rules' thread")?;
    Ok(())
}

async fn session(
    etcd: &EtcdConfig,
    schema: &Schema,
    maps: &mut [SyncedMap; 2],
) -> anyhow::Result<()> {
    let prefix = schema.sites_prefix();
    let mut client = hostyard_etcd::connect(etcd).await?;
    let mut edge = Edge {
        schema,
        rules: Rules::default(),
        maps,
    };
    crate::follow::follow(&mut client, &prefix, &mut edge).await
}

/// The sites' declarations followed into the two redirect maps.
struct Edge<'a> {
    schema: &'a Schema,
    rules: Rules,
    maps: &'a mut [SyncedMap; 2],
}

impl crate::follow::Follower for Edge<'_> {
    fn load(&mut self, kvs: BTreeMap<String, Vec<u8>>) {
        self.rules = Rules::default();
        for (key, value) in &kvs {
            self.change(key, Some(value));
        }
    }

    fn change(&mut self, key: &str, value: Option<&[u8]>) {
        if let Ok(domain) = self.schema.parse_site_key(key) {
            self.rules.set(domain, value);
        }
    }

    fn apply(&mut self, was_failing: bool) -> bool {
        flush(&self.rules, self.maps, was_failing)
    }
}

/// Flushes both maps; logs a failure when it starts. Returns whether it
/// fails.
fn flush(rules: &Rules, maps: &mut [SyncedMap; 2], was_failing: bool) -> bool {
    let (exact, prefix) = rules.maps();
    let outcome = maps[0].flush(&exact).and_then(|()| maps[1].flush(&prefix));
    match outcome {
        Ok(()) => false,
        Err(e) => {
            if !was_failing {
                log!(Err, "edge rules: {e:#} (tried again every second)");
            }
            true
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_sites_rules_become_map_lines_and_go_with_the_site() {
        let a = Domain::parse("a.example").unwrap();
        let b = Domain::parse("b.example").unwrap();
        let with = |spec: &str, prefix: bool| {
            let mut decl = SiteDecl::parse(br#"{"kind":"static"}"#).unwrap();
            decl.edge.redirects = vec![PathRedirect::parse(spec, prefix).unwrap()];
            decl.to_json().into_bytes()
        };
        let mut rules = Rules::default();
        rules.set(a.clone(), Some(&with("/old=/new", false)));
        rules.set(
            b.clone(),
            Some(&with("308:/blog/=https://blog.example/", true)),
        );
        let (exact, prefix) = rules.maps();
        assert_eq!(
            exact,
            MapContent::from([("a.example/old".into(), "301/4//new".into())])
        );
        assert_eq!(
            prefix,
            MapContent::from([(
                "b.example/blog/".into(),
                "308/6/https://blog.example/".into()
            )])
        );
        rules.set(a, None);
        rules.set(b, Some(b"{not json"));
        let (exact, prefix) = rules.maps();
        assert!(exact.is_empty() && prefix.is_empty());
    }
}
