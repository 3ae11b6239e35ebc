//! The WordPress sites' PHP limits in HAProxy: each WordPress declaration
//! ([`hostyard_core::php`]) becomes an entry of the PHP map, `<domain>` →
//! `<largest body>/<server timeout in ms>`, with the node config's
//! defaults for what the site does not set; kept equal to etcd by the
//! edge rules' thread with the other maps ([`crate::edge`]): the file,
//! then HAProxy's memory through the runtime API, without a reload. Other
//! sites have no entry: no body limit of their own, the default server
//! timeout.

use std::collections::BTreeMap;

use hostyard_core::etcd::SiteDecl;
use hostyard_core::php::{effective, PhpBounds};
use hostyard_core::{Domain, SiteKind};

use crate::edge::MapContent;

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

    pub fn bounds(&self) -> PhpBounds {
        self.bounds
    }

    pub fn map(&self) -> MapContent {
        self.sites
            .iter()
            .map(|(d, v)| (d.to_string(), v.clone()))
            .collect()
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
