//! `hostyard names WHAT`: the names scripts need, from their one home.
//!
//! `scripts/setup.sh`, `scripts/images.sh` and the test scripts install the
//! binaries, build and load the images, make the data layout and wait for
//! the server-wide units. Each of those names has one home in Rust (the
//! constants in [`crate::units`], [`hostyard_config::Images::all`],
//! [`hostyard_core::Layout`]); a copy in shell would drift. So a script asks
//! one question and reads lines back, one name (or one `KIND NAME` pair)
//! per line.

use clap::ValueEnum;
use hostyard_config::NodeConfig;
use hostyard_core::kind::{db_network_name, MYSQL_TEMPLATE_UNIT};
use hostyard_core::{Domain, Layout, SiteKind};

use crate::units::{
    CONFD_BIN, CONFD_UNIT, DISCOVERY_BIN, GITPULL_BIN, HAPROXY_UNIT, HOOK_BIN, HOSTYARD_BIN,
    IMPORT_BIN, POSTFIX_UNIT, TARGET_UNIT,
};

/// What a script can ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Names {
    /// The binaries installed in bin_dir, one per line.
    Binaries,
    /// Every image as `KIND NAME`: the kind names its Dockerfile and
    /// tarball (`KIND.tar`), the name is the node config's (images.*).
    Images,
    /// The target that starts the server-wide units.
    Target,
    /// The server-wide services the target starts, one per line.
    Services,
    /// Every site kind as `KIND DATABASE`: the prefix of its database's
    /// unit (`mysql` for `mysql@DOMAIN`), `-` for a kind without one.
    Kinds,
    /// The data layout's directories setup makes, parents first, as
    /// `ROLE PATH` (root, domains, import, runtime, haproxy, postfix).
    Dirs,
    /// One site's names as `ROLE NAME` (data, import, import_done,
    /// move_stage, db_network), for `deploy/site.sh move`; needs DOMAIN.
    Site,
}

/// Every binary a server needs in `bin_dir`.
pub const BINARIES: [&str; 6] = [
    HOSTYARD_BIN,
    CONFD_BIN,
    DISCOVERY_BIN,
    IMPORT_BIN,
    GITPULL_BIN,
    HOOK_BIN,
];

/// The services `hostyard.target` starts (its `Wants=`).
pub const SERVICES: [&str; 3] = [CONFD_UNIT, HAPROXY_UNIT, POSTFIX_UNIT];

/// The lines `hostyard names WHAT [DOMAIN]` prints; only `site` takes a
/// domain, and it must have one.
pub fn lines(
    config: &NodeConfig,
    what: Names,
    domain: Option<&Domain>,
) -> Result<Vec<String>, String> {
    if let (Names::Site, Some(domain)) = (what, domain) {
        return Ok(site(&config.layout(), domain));
    }
    match (what, domain) {
        (Names::Site, None) => {
            return Err(
                "names site needs the site's DOMAIN: hostyard names site example.com".into(),
            )
        }
        (_, Some(domain)) => {
            return Err(format!(
                "names {} takes no domain ({domain}); only names site does",
                what.to_possible_value()
                    .map(|v| v.get_name().to_string())
                    .unwrap_or_default()
            ))
        }
        (_, None) => {}
    }
    Ok(match what {
        Names::Site => unreachable!("handled above"),
        Names::Binaries => BINARIES.iter().map(|b| b.to_string()).collect(),
        Names::Images => config
            .images
            .all()
            .iter()
            .map(|(kind, name)| format!("{kind} {name}"))
            .collect(),
        Names::Kinds => SiteKind::ALL
            .iter()
            .map(|kind| {
                let db = match kind.spec().database {
                    true => MYSQL_TEMPLATE_UNIT.split('@').next().unwrap_or_default(),
                    false => "-",
                };
                format!("{kind} {db}")
            })
            .collect(),
        Names::Target => vec![TARGET_UNIT.to_string()],
        Names::Services => SERVICES.iter().map(|s| s.to_string()).collect(),
        Names::Dirs => config
            .layout()
            .base_dirs()
            .iter()
            .map(|(role, d)| format!("{role} {}", d.display()))
            .collect(),
    })
}

/// A site's names on this server: its data, where an import of it waits
/// and where used ones go, a move's staged export, its database network.
fn site(layout: &Layout, domain: &Domain) -> Vec<String> {
    [
        ("data", layout.domain_dir(domain)),
        ("import", layout.import_dir(domain)),
        ("import_done", layout.import_done_dir()),
        ("move_stage", layout.move_stage_dir(domain)),
    ]
    .iter()
    .map(|(role, path)| format!("{role} {}", path.display()))
    .chain([format!("db_network {}", db_network_name(domain))])
    .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_name_their_database_unit() {
        assert_eq!(
            lines(&NodeConfig::default(), Names::Kinds, None).unwrap(),
            ["static -", "static-git -", "wordpress mysql"]
        );
    }
    use hostyard_config::Images;
    use std::path::PathBuf;

    #[test]
    fn image_kinds_name_their_config_keys() {
        let mut config = NodeConfig::default();
        config.images.static_git = "registry.example/sg:2".into();
        for line in lines(&config, Names::Images, None).unwrap() {
            let (kind, name) = line.split_once(' ').expect("KIND NAME");
            assert!(!name.contains(' '), "{line}");
            let key = Images::config_key(kind);
            assert_eq!(
                crate::config_get::get(&config, &key).expect("a key"),
                [name],
                "{key}"
            );
        }
        assert!(lines(&config, Names::Images, None)
            .unwrap()
            .contains(&"static-git registry.example/sg:2".into()));
    }

    #[test]
    fn dirs_follow_data_root() {
        let config = NodeConfig {
            data_root: PathBuf::from("/srv/yard"),
            ..NodeConfig::default()
        };
        let dirs = lines(&config, Names::Dirs, None).unwrap();
        assert_eq!(dirs[0], "root /srv/yard");
        assert!(dirs.contains(&"import /srv/yard/import".to_string()));
    }

    #[test]
    fn site_names_follow_data_root_and_need_a_domain() {
        let config = NodeConfig {
            data_root: PathBuf::from("/srv/yard"),
            ..NodeConfig::default()
        };
        let domain = Domain::parse_instance("example.com").unwrap();
        assert_eq!(
            lines(&config, Names::Site, Some(&domain)).unwrap(),
            [
                "data /srv/yard/domains/example.com",
                "import /srv/yard/import/example.com",
                "import_done /srv/yard/import/.done",
                "move_stage /srv/yard/import/.move/example.com",
                "db_network hostyard-db-example.com"
            ]
        );
        let missing = lines(&config, Names::Site, None).unwrap_err();
        assert!(
            missing.contains("hostyard names site example.com"),
            "{missing}"
        );
        let extra = lines(&config, Names::Kinds, Some(&domain)).unwrap_err();
        assert!(extra.contains("names kinds takes no domain"), "{extra}");
    }

    #[test]
    fn binaries_are_this_workspace_s_binaries() {
        // Each is a package of the workspace, whose binary has its name.
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
        for b in BINARIES {
            assert!(root.join(b).join("Cargo.toml").is_file(), "{b}");
        }
    }
}
