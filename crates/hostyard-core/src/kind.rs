//! Site kinds and every name derived from a (kind, domain) pair.
//!
//! Unit names, container names and the kind's slug in etcd keys are built
//! here and nowhere else, and each builder has its inverse so that a name read
//! back (from systemd, docker or etcd) is parsed rather than sliced by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::Domain;

/// What a site is; decides its container image, its units and its data.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SiteKind {
    /// Content uploaded or imported into the site's folder.
    Static,
    /// Content published from a git repository by `hostyard-gitpull`.
    StaticGit,
    /// WordPress with its own MariaDB container.
    Wordpress,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown site kind {0:?}; expected one of: static, static-git, wordpress")]
pub struct UnknownKind(pub String);

impl SiteKind {
    pub const ALL: [SiteKind; 3] = [SiteKind::Static, SiteKind::StaticGit, SiteKind::Wordpress];

    /// The slug used in unit names, container names and etcd keys.
    pub fn as_str(self) -> &'static str {
        match self {
            SiteKind::Static => "static",
            SiteKind::StaticGit => "static-git",
            SiteKind::Wordpress => "wordpress",
        }
    }

    /// Whether sites of this kind have a git puller timer.
    pub fn has_puller(self) -> bool {
        self == SiteKind::StaticGit
    }

    /// Whether sites of this kind need their own database container.
    pub fn has_database(self) -> bool {
        self == SiteKind::Wordpress
    }

    /// `static-git@example.com.service`
    pub fn site_unit(self, domain: &Domain) -> String {
        format!("{}@{domain}.service", self.as_str())
    }

    /// `static-git` for `static-git@.service`: the template's prefix.
    pub fn unit_prefix(self, role: UnitRole) -> String {
        match role {
            UnitRole::Site => self.as_str().to_string(),
            UnitRole::Importer => format!("{}-importer", self.as_str()),
            UnitRole::Discovery => format!("{}-discovery", self.as_str()),
            UnitRole::Puller => format!("{}-puller", self.as_str()),
        }
    }

    /// The template unit file name, e.g. `static-git-discovery@.service`.
    pub fn template_unit(self, role: UnitRole) -> String {
        format!("{}@.service", self.unit_prefix(role))
    }

    /// The instance unit name, e.g. `static-git-discovery@example.com.service`.
    pub fn instance_unit(self, role: UnitRole, domain: &Domain) -> String {
        format!("{}@{domain}.service", self.unit_prefix(role))
    }

    /// The container's name: `static-git_example.com`.
    ///
    /// The separator is `_`, which no domain contains: with `-`, the static
    /// site `git-example.com` and the static-git site `example.com` would
    /// both be `static-git-example.com`.
    pub fn container_name(self, domain: &Domain) -> String {
        format!("{}_{domain}", self.as_str())
    }

    /// Parses a container name made by [`SiteKind::container_name`].
    pub fn parse_container_name(name: &str) -> Option<(SiteKind, Domain)> {
        let (kind, domain) = name.split_once('_')?;
        Some((kind.parse().ok()?, Domain::parse(domain).ok()?))
    }
}

/// The per-site units a kind has besides its database.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnitRole {
    Site,
    Importer,
    Discovery,
    Puller,
}

/// The database unit of a WordPress site: `mysql@example.com.service`.
pub fn mysql_unit(domain: &Domain) -> String {
    format!("mysql@{domain}.service")
}

/// The database container of a WordPress site: `mysql_example.com`.
pub fn mysql_container_name(domain: &Domain) -> String {
    format!("mysql_{domain}")
}

impl fmt::Display for SiteKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for SiteKind {
    type Err = UnknownKind;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        SiteKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownKind(s.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    #[test]
    fn kind_slugs_round_trip() {
        for k in SiteKind::ALL {
            assert_eq!(k.as_str().parse::<SiteKind>().unwrap(), k);
            let json = serde_json::to_string(&k).unwrap();
            assert_eq!(json, format!("\"{}\"", k.as_str()));
        }
        let err = "php".parse::<SiteKind>().unwrap_err().to_string();
        assert!(err.contains("static-git"), "{err}");
    }

    #[test]
    fn unit_names() {
        let dom = d("example.com");
        assert_eq!(
            SiteKind::StaticGit.site_unit(&dom),
            "static-git@example.com.service"
        );
        assert_eq!(
            SiteKind::StaticGit.instance_unit(UnitRole::Discovery, &dom),
            "static-git-discovery@example.com.service"
        );
        assert_eq!(
            SiteKind::Wordpress.template_unit(UnitRole::Importer),
            "wordpress-importer@.service"
        );
        assert_eq!(mysql_unit(&dom), "mysql@example.com.service");
    }

    #[test]
    fn container_names_round_trip() {
        for k in SiteKind::ALL {
            for dom in ["example.com", "git-example.com", "static-git.io"] {
                let name = k.container_name(&d(dom));
                assert_eq!(
                    SiteKind::parse_container_name(&name),
                    Some((k, d(dom))),
                    "{name}"
                );
            }
        }
        assert_ne!(
            SiteKind::Static.container_name(&d("git-example.com")),
            SiteKind::StaticGit.container_name(&d("example.com"))
        );
        assert_eq!(SiteKind::parse_container_name("nginx"), None);
        assert_eq!(SiteKind::parse_container_name("static_../etc"), None);
    }
}
