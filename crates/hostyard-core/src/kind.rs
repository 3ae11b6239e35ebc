//! Site kinds and every name derived from a (kind, domain) pair.
//!
//! Unit names, container names and the kind's slug in etcd keys are built
//! here and nowhere else, and each builder has its inverse so that a name read
//! back (from systemd, docker or etcd) is parsed rather than sliced by hand.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::domain::Domain;

/// Declares [`SiteKind`], [`SiteKind::ALL`] and each kind's slug from one
/// list, so `ALL` cannot miss a variant.
macro_rules! site_kinds {
    ($($(#[$doc:meta])* $variant:ident = $slug:literal,)+) => {
        /// What a site is; its [`crate::spec::KindSpec`] says what follows.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "kebab-case")]
        pub enum SiteKind {
            $($(#[$doc])* $variant,)+
        }

        impl SiteKind {
            /// Every kind, in declaration order.
            pub const ALL: [SiteKind; [$(SiteKind::$variant),+].len()] = [$(SiteKind::$variant),+];

            /// The slug used in unit names, container names and etcd keys.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(SiteKind::$variant => $slug,)+
                }
            }
        }
    };
}

site_kinds! {
    /// Content uploaded or imported into the site's folder.
    Static = "static",
    /// Content published from a git repository by `hostyard-gitpull`.
    StaticGit = "static-git",
    /// WordPress with its own MariaDB container.
    Wordpress = "wordpress",
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown site kind {0:?}; expected one of: {kinds}", kinds = SiteKind::slugs())]
pub struct UnknownKind(pub String);

impl SiteKind {
    /// Every kind's slug, comma-separated, for messages.
    pub fn slugs() -> String {
        SiteKind::ALL.map(SiteKind::as_str).join(", ")
    }

    /// Whether sites of this kind have a git puller timer.
    pub fn has_puller(self) -> bool {
        self.spec().puller
    }

    /// Whether sites of this kind need their own database container.
    pub fn has_database(self) -> bool {
        self.spec().database
    }

    /// Every unit that holds a site's data open or would skip its next
    /// import, in the order to stop them before the data is replaced: the
    /// site, its importer (`RemainAfterExit=`: while it stays active a start
    /// does not run it again) and its database.
    pub fn units_holding_data(self, domain: &Domain) -> Vec<String> {
        let mut units = vec![
            self.site_unit(domain),
            self.instance_unit(UnitRole::Importer, domain),
        ];
        if self.has_database() {
            units.push(mysql_unit(domain));
        }
        units
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
            UnitRole::Cron => format!("{}-cron", self.as_str()),
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

    /// The container's name inside a unit template, `static-git_%i`: what
    /// [`SiteKind::container_name`] gives once systemd substitutes the domain
    /// for `%i`.
    pub fn container_name_in_template(self) -> String {
        format!("{}_{UNIT_INSTANCE}", self.as_str())
    }

    /// A sibling unit as named inside a unit template,
    /// `static-git-importer@%i.service`: what [`SiteKind::instance_unit`]
    /// gives once systemd substitutes the domain for `%i`.
    pub fn instance_unit_in_template(self, role: UnitRole) -> String {
        format!("{}@{UNIT_INSTANCE}.service", self.unit_prefix(role))
    }

    /// A timer's template file name, `static-git-puller@.timer`.
    pub fn timer_template(self, role: UnitRole) -> String {
        format!("{}@.timer", self.unit_prefix(role))
    }

    /// A timer as named inside a unit template, `static-git-puller@%i.timer`.
    pub fn timer_in_template(self, role: UnitRole) -> String {
        format!("{}@{UNIT_INSTANCE}.timer", self.unit_prefix(role))
    }

    /// A timer of one site, `static-git-puller@example.com.timer`.
    pub fn timer(self, role: UnitRole, domain: &Domain) -> String {
        format!("{}@{domain}.timer", self.unit_prefix(role))
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
    /// The kind's periodic job inside its container (its spec's `cron`).
    Cron,
}

/// systemd's specifier for the instance name (the domain) in a template unit.
pub const UNIT_INSTANCE: &str = "%i";

/// The database template unit's file name.
pub const MYSQL_TEMPLATE_UNIT: &str = "mysql@.service";

/// The database unit as named inside a unit template: `mysql@%i.service`.
pub fn mysql_unit_in_template() -> String {
    format!("mysql@{UNIT_INSTANCE}.service")
}

/// The database container inside a unit template: `mysql_%i`.
pub fn mysql_container_name_in_template() -> String {
    format!("mysql_{UNIT_INSTANCE}")
}

/// The network a WordPress site shares with its database and nothing else
/// (`hostyard-db-example.com`): other sites' containers are on the sites'
/// network only, so no site reaches another site's database.
pub fn db_network_name(domain: &Domain) -> String {
    format!("hostyard-db-{domain}")
}

/// [`db_network_name`] inside a unit template: `hostyard-db-%i`.
pub fn db_network_name_in_template() -> String {
    format!("hostyard-db-{UNIT_INSTANCE}")
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

    #[test]
    fn units_holding_data_name_the_importer_and_the_database() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(
            SiteKind::Wordpress.units_holding_data(&d),
            [
                "wordpress@example.com.service",
                "wordpress-importer@example.com.service",
                "mysql@example.com.service"
            ]
        );
        assert_eq!(
            SiteKind::Static.units_holding_data(&d),
            [
                "static@example.com.service",
                "static-importer@example.com.service"
            ]
        );
    }

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
    fn template_forms_become_the_domain_forms_once_systemd_substitutes() {
        let dom = d("example.com");
        let sub = |s: String| s.replace(UNIT_INSTANCE, dom.as_str());
        for k in SiteKind::ALL {
            assert_eq!(sub(k.container_name_in_template()), k.container_name(&dom));
            for role in [
                UnitRole::Site,
                UnitRole::Importer,
                UnitRole::Discovery,
                UnitRole::Puller,
                UnitRole::Cron,
            ] {
                assert_eq!(
                    sub(k.instance_unit_in_template(role)),
                    k.instance_unit(role, &dom)
                );
            }
            for role in [UnitRole::Puller, UnitRole::Cron] {
                assert_eq!(sub(k.timer_in_template(role)), k.timer(role, &dom));
                assert_eq!(
                    k.timer_template(role).replace('@', &format!("@{dom}")),
                    k.timer(role, &dom)
                );
            }
        }
        assert_eq!(sub(mysql_unit_in_template()), mysql_unit(&dom));
        assert_eq!(
            sub(mysql_container_name_in_template()),
            mysql_container_name(&dom)
        );
        assert_eq!(sub(db_network_name_in_template()), db_network_name(&dom));
        assert_eq!(
            MYSQL_TEMPLATE_UNIT.replace('@', &format!("@{dom}")),
            mysql_unit(&dom)
        );
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
