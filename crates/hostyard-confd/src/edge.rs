//! The sites' edge rules in HAProxy: every site declaration's path
//! redirects, canonical name, basic auth and headers preset
//! ([`hostyard_core::edge`]), and the WordPress sites' PHP limits
//! ([`crate::php`]), kept equal to the edge maps
//! ([`Layout::edge_maps`]),
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
use hostyard_core::edge::{redirect_entries, site_entries, EdgeRules};
use hostyard_core::etcd::{Schema, SiteDecl};
use hostyard_core::php::PhpBounds;
use hostyard_core::{Domain, Layout};
use hostyard_haproxy::{CliError, MapApi, Session};
use hostyard_log::log;

use crate::php::Limits;

/// Wait before a new etcd session after one broke.
const RECONNECT: Duration = Duration::from_secs(2);

/// Each site's rules, as etcd holds them (a malformed declaration has none).
#[derive(Debug, Default)]
pub struct Rules {
    sites: BTreeMap<Domain, EdgeRules>,
}

/// How many maps the edge rules keep.
const EDGE_MAPS: usize = 6;

/// One map's wanted content: key → value.
pub type MapContent = BTreeMap<String, String>;

impl Rules {
    /// One site's declaration changed (`None`: removed).
    pub fn set(&mut self, domain: Domain, value: Option<&[u8]>) {
        let rules = match value.map(SiteDecl::parse) {
            Some(Ok(decl)) => decl.edge,
            // The routing feed logs a malformed declaration.
            Some(Err(_)) | None => EdgeRules::default(),
        };
        if rules.is_empty() {
            self.sites.remove(&domain);
        } else {
            self.sites.insert(domain, rules);
        }
    }

    /// Each edge map's content, in the order of [`Layout::edge_maps`]:
    /// exact and prefix redirects, canonical names, basic auth, headers
    /// (the PHP map comes from [`crate::php::Limits`]).
    pub fn maps(&self) -> [MapContent; EDGE_MAPS] {
        let mut maps: [MapContent; EDGE_MAPS] = Default::default();
        for (domain, rules) in &self.sites {
            let (e, p) = redirect_entries(domain, &rules.redirects);
            maps[0].extend(e);
            maps[1].extend(p);
            let s = site_entries(domain, rules);
            maps[2].extend(s.canonical);
            maps[3].extend(s.basic_auth);
            maps[4].extend(s.headers);
        }
        maps
    }
}

/// One map file kept equal to its wanted content, file then runtime.
pub(crate) struct SyncedMap {
    path: PathBuf,
    file: hostyard_fs::AtomicWrite,
    admin_socket: PathBuf,
    written: Option<MapContent>,
    runtime_pending: bool,
}

impl SyncedMap {
    pub(crate) fn new(
        path: PathBuf,
        file: hostyard_fs::AtomicWrite,
        admin_socket: PathBuf,
    ) -> SyncedMap {
        SyncedMap {
            path,
            file,
            admin_socket,
            written: None,
            runtime_pending: true,
        }
    }

    pub(crate) fn flush(&mut self, wanted: &MapContent) -> anyhow::Result<()> {
        if self.written.as_ref() != Some(wanted) {
            let text: String = wanted.iter().map(|(k, v)| format!("{k} {v}\n")).collect();
            self.file
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
pub fn spawn(
    etcd: &EtcdConfig,
    schema: &Schema,
    layout: &Layout,
    bounds: PhpBounds,
) -> anyhow::Result<()> {
    let (etcd, schema) = (etcd.clone(), schema.clone());
    let socket = layout.haproxy_admin_socket();
    let mut maps = layout.edge_maps().map(|path| {
        // The basic auth hashes for root only.
        let file = if path == layout.basic_auth_map() {
            hostyard_haproxy::SECRET_FILE
        } else {
            hostyard_haproxy::FILE
        };
        SyncedMap::new(path, file, socket.clone())
    });
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
                    if let Err(e) = session(&etcd, &schema, bounds, &mut maps).await {
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
    bounds: PhpBounds,
    maps: &mut [SyncedMap; EDGE_MAPS],
) -> anyhow::Result<()> {
    let prefix = schema.sites_prefix();
    let mut client = hostyard_etcd::connect(etcd).await?;
    let mut edge = Edge {
        schema,
        rules: Rules::default(),
        php: Limits::new(bounds),
        maps,
    };
    crate::follow::follow(&mut client, &prefix, &mut edge).await
}

/// The sites' declarations followed into the edge maps.
struct Edge<'a> {
    schema: &'a Schema,
    rules: Rules,
    php: Limits,
    maps: &'a mut [SyncedMap; EDGE_MAPS],
}

impl crate::follow::Follower for Edge<'_> {
    fn load(&mut self, kvs: BTreeMap<String, Vec<u8>>) {
        self.rules = Rules::default();
        self.php = Limits::new(self.php.bounds());
        for (key, value) in &kvs {
            self.change(key, Some(value));
        }
    }

    fn change(&mut self, key: &str, value: Option<&[u8]>) {
        if let Ok(domain) = self.schema.parse_site_key(key) {
            self.php.set(domain.clone(), value);
            self.rules.set(domain, value);
        }
    }

    fn apply(&mut self, was_failing: bool) -> bool {
        flush(&self.rules, &self.php, self.maps, was_failing)
    }
}

/// Flushes every map; logs a failure when it starts. Returns whether it
/// fails.
fn flush(
    rules: &Rules,
    php: &Limits,
    maps: &mut [SyncedMap; EDGE_MAPS],
    was_failing: bool,
) -> bool {
    let mut wanted = rules.maps();
    wanted[EDGE_MAPS - 1] = php.map();
    let outcome = maps
        .iter_mut()
        .zip(&wanted)
        .try_for_each(|(map, content)| map.flush(content));
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
    use hostyard_core::edge::PathRedirect;

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
        let [exact, prefix, ..] = rules.maps();
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
        assert!(rules.maps().iter().all(MapContent::is_empty));
    }
}
