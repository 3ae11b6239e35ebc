//! The WordPress sites' PHP limits in HAProxy: each WordPress declaration
//! ([`hostyard_core::php`]) becomes an entry of the PHP map, `<domain>` →
//! `<largest body>/<server timeout in ms>`, with the node config's
//! defaults for what the site does not set; kept equal to etcd like the
//! redirect maps ([`crate::edge`]): the file, then HAProxy's memory through
//! the runtime API, without a reload. Other sites have no entry: no body
//! limit of their own, the default server timeout.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Context;
use hostyard_config::NodeConfig;
use hostyard_core::etcd::{Schema, SiteDecl};
use hostyard_core::php::{effective, PhpBounds};
use hostyard_core::{Domain, Layout, SiteKind};
use hostyard_log::log;

use crate::edge::{MapContent, SyncedMap};

/// Wait before a new etcd session after one broke.
const RECONNECT: Duration = Duration::from_secs(2);

/// The PHP map's wanted content from the declarations.
#[derive(Debug)]
pub struct Limits {
    bounds: PhpBounds,
    sites: BTreeMap<Domain, String>,
}

impl Limits {
    pub fn new(bounds: PhpBounds) -> Limits {
        Limits {
            bounds,
            sites: BTreeMap::new(),
        }
    }

    /// One site's declaration changed (`None`: removed).
    pub fn set(&mut self, domain: Domain, value: Option<&[u8]>) {
        match value.map(SiteDecl::parse) {
            Some(Ok(decl)) if decl.kind == SiteKind::Wordpress => {
                let value = effective(&decl.php, &self.bounds).map_value();
                self.sites.insert(domain, value);
            }
            // The routing feed logs a malformed declaration.
            _ => {
                self.sites.remove(&domain);
            }
        }
    }

    pub fn map(&self) -> MapContent {
        self.sites
            .iter()
            .map(|(d, v)| (d.to_string(), v.clone()))
            .collect()
    }
}

/// Starts the PHP limits' thread; it runs for ever.
pub fn spawn(config: &NodeConfig, schema: &Schema, layout: &Layout) -> anyhow::Result<()> {
    let (etcd, schema) = (config.etcd.clone(), schema.clone());
    let bounds = config.wordpress.php_limits;
    let mut map = SyncedMap::new(layout.php_limits_map(), layout.haproxy_admin_socket());
    std::thread::Builder::new()
        .name("php".into())
        .spawn(move || {
            let runtime = match hostyard_etcd::runtime() {
                Ok(r) => r,
                Err(e) => {
                    log!(Err, "PHP limits: {e:#}");
                    return;
                }
            };
            runtime.block_on(async {
                let mut last_error = String::new();
                loop {
                    let prefix = schema.sites_prefix();
                    let outcome = async {
                        let mut client = hostyard_etcd::connect(&etcd).await?;
                        let mut follower = Follower {
                            schema: &schema,
                            limits: Limits::new(bounds),
                            map: &mut map,
                        };
                        crate::follow::follow(&mut client, &prefix, &mut follower).await
                    }
                    .await;
                    if let Err(e) = outcome {
                        let e = format!("{e:#}");
                        if e != last_error {
                            log!(Warning, "PHP limits: {e}; retrying");
                            last_error = e;
                        }
                        tokio::time::sleep(RECONNECT).await;
                    }
                }
            });
        })
        .context("starting the PHP limits' thread")?;
    Ok(())
}

struct Follower<'a> {
    schema: &'a Schema,
    limits: Limits,
    map: &'a mut SyncedMap,
}

impl crate::follow::Follower for Follower<'_> {
    fn load(&mut self, kvs: BTreeMap<String, Vec<u8>>) {
        self.limits = Limits::new(self.limits.bounds);
        for (key, value) in &kvs {
            self.change(key, Some(value));
        }
    }

    fn change(&mut self, key: &str, value: Option<&[u8]>) {
        if let Ok(domain) = self.schema.parse_site_key(key) {
            self.limits.set(domain, value);
        }
    }

    fn apply(&mut self, was_failing: bool) -> bool {
        match self.map.flush(&self.limits.map()) {
            Ok(()) => false,
            Err(e) => {
                if !was_failing {
                    log!(Err, "PHP limits: {e:#} (tried again every second)");
                }
                true
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_wordpress_site_gets_its_limits_or_the_defaults_and_others_none() {
        let wp = Domain::parse("wp.example").unwrap();
        let other = Domain::parse("static.example").unwrap();
        let mut limits = Limits::new(PhpBounds::default());
        limits.set(wp.clone(), Some(br#"{"kind":"wordpress"}"#));
        limits.set(other.clone(), Some(br#"{"kind":"static"}"#));
        let default_body = 64 * 1024 * 1024 + hostyard_core::php::BODY_MARGIN;
        assert_eq!(
            limits.map(),
            MapContent::from([("wp.example".into(), format!("{default_body}/65000"))])
        );
        limits.set(
            wp.clone(),
            Some(br#"{"kind":"wordpress","php":{"upload":"2M","time":"120s"}}"#),
        );
        let body = 2 * 1024 * 1024 + hostyard_core::php::BODY_MARGIN;
        assert_eq!(
            limits.map(),
            MapContent::from([("wp.example".into(), format!("{body}/125000"))])
        );
        limits.set(wp, None);
        assert!(limits.map().is_empty());
    }
}
