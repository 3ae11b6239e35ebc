//! One description per site kind: everything that differs between a static,
//! a static-git and a WordPress site, asked by every crate that treats sites
//! differently (the units' renderer, the importer, export and refresh,
//! `hostyard`'s help). A new kind is a [`KindSpec`] here, its importer's
//! builder, its Dockerfile and the goldens; the compiler points at the
//! builder through the exhaustive match on [`SiteKind`].

use std::path::PathBuf;

use crate::domain::Domain;
use crate::kind::SiteKind;
use crate::layout::{ImportLayout, Layout};

/// A path of one site's data on the server.
pub type SitePath = fn(&Layout, &Domain) -> PathBuf;
/// A path inside an export (the migration layout of [`ImportLayout`]).
pub type ExportPath = fn(&ImportLayout) -> PathBuf;

/// Where the web root the kind's image serves lives inside its container is
/// the image's business; this says what of the site's data it sees.
#[derive(Debug, Clone, Copy)]
pub struct Mount {
    pub data: SitePath,
    pub target: &'static str,
    pub read_only: bool,
}

/// One part of a site's data, as export and refresh treat it.
#[derive(Debug, Clone, Copy)]
pub enum Part {
    /// A directory of the site's files: copied into the export, and replaced
    /// whole (swapped in one rename) by a refresh. The site's own code may
    /// write it while it is read, so it is always read beneath its root.
    Tree {
        data: SitePath,
        export: ExportPath,
        label: &'static str,
    },
    /// A file copied when the site has one, and replaced by a refresh when
    /// the export has one.
    OptionalFile {
        data: SitePath,
        export: ExportPath,
        label: &'static str,
    },
    /// The file naming where the site's content comes from (a repository
    /// URL, which may hold credentials): exported private; a refresh keeps
    /// the site's and refuses an export whose copy differs.
    Source { data: SitePath, export: ExportPath },
    /// The site's own MariaDB: dumped before anything else is copied, and
    /// loaded after everything else is replaced.
    Database,
}

/// A kind's periodic job, run inside its running container.
#[derive(Debug, Clone, Copy)]
pub struct Cron {
    /// What the unit's description says it runs.
    pub what: &'static str,
    pub user: &'static str,
    pub command: &'static str,
    /// systemd time span between two runs.
    pub every: &'static str,
}

/// Everything about one kind of site.
#[derive(Debug, Clone, Copy)]
pub struct KindSpec {
    pub kind: SiteKind,
    /// One line for `--help` and the docs.
    pub about: &'static str,
    /// The site's data the container mounts.
    pub mounts: &'static [Mount],
    /// The container's root filesystem is read-only (with tmpfs `/run`
    /// and `/tmp`): a server that writes nothing outside its mounts.
    pub read_only: bool,
    /// The importer fetches over the network (a clone); the others read
    /// local files only and get no network at all.
    pub import_fetches: bool,
    /// A puller timer publishes new content while the site runs.
    pub puller: bool,
    /// The site has its own MariaDB (`mysql@D`, on a network shared with
    /// the site only). The container gets its host name in
    /// `HOSTYARD_DB_HOST` and its credentials from `env_file`.
    pub database: bool,
    /// A `docker --env-file` of the site's secrets the container reads.
    pub env_file: Option<SitePath>,
    /// The application requests its own URL (health pages, loopbacks): its
    /// name resolves to the container itself, and it gets it in
    /// `HOSTYARD_DOMAIN`.
    pub requests_itself: bool,
    /// The application sends mail (PHP's mail()): postfix gets a submission
    /// service for the site, and signs its mail with the domain's DKIM key.
    pub sends_mail: bool,
    pub cron: Option<Cron>,
    /// The parts of its data, in the order an export writes them.
    pub parts: &'static [Part],
}

/// The script the WordPress image carries for hostyard's jobs (cron, the
/// administrator's password).
pub const WORDPRESS_SITE_SCRIPT: &str = "/usr/local/share/hostyard/wp-site.php";

pub static STATIC: KindSpec = KindSpec {
    kind: SiteKind::Static,
    about: "files uploaded or imported into the site's folder, served by nginx",
    mounts: &[Mount {
        data: Layout::www_dir,
        target: "/srv/www",
        read_only: true,
    }],
    read_only: true,
    import_fetches: false,
    puller: false,
    database: false,
    env_file: None,
    requests_itself: false,
    sends_mail: false,
    cron: None,
    parts: &[Part::Tree {
        data: Layout::www_dir,
        export: ImportLayout::www_content,
        label: "www/",
    }],
};

pub static STATIC_GIT: KindSpec = KindSpec {
    kind: SiteKind::StaticGit,
    about: "a git repository's tree, published on every new commit, served by nginx",
    // `current` is a relative link into `trees/`: mounting the whole public
    // dir keeps it resolvable; the web root inside the container is
    // /srv/public/current.
    mounts: &[Mount {
        data: Layout::public_dir,
        target: "/srv/public",
        read_only: true,
    }],
    read_only: true,
    import_fetches: true,
    puller: true,
    database: false,
    env_file: None,
    requests_itself: false,
    sends_mail: false,
    cron: None,
    // The trees are the repository's: a copy fetches them again.
    parts: &[Part::Source {
        data: Layout::git_url_file,
        export: ImportLayout::git_url,
    }],
};

pub static WORDPRESS: KindSpec = KindSpec {
    kind: SiteKind::Wordpress,
    about: "WordPress on Apache and PHP, with its own MariaDB",
    mounts: &[
        Mount {
            data: Layout::wp_content_dir,
            target: "/srv/wp-content",
            read_only: false,
        },
        Mount {
            data: Layout::wp_salts_file,
            target: "/srv/secrets/wp-salts.php",
            read_only: true,
        },
        // The rewrite rules WordPress writes (Settings > Permalinks), where
        // Debian's .htaccess link points; the importer makes sure the file
        // exists.
        Mount {
            data: Layout::htaccess_file,
            target: "/etc/wordpress/htaccess",
            read_only: false,
        },
        // The administrator a new site is installed with, before Apache
        // starts (no open install form).
        Mount {
            data: Layout::wp_admin_file,
            target: "/srv/secrets/wp-admin.env",
            read_only: true,
        },
        // PHP's mail() submits here (msmtp to the socket): postfix's
        // service for this site alone, the container's only way out.
        Mount {
            data: Layout::mail_socket_dir,
            target: crate::mail::SITE_SOCKET_MOUNT,
            read_only: true,
        },
        // Its PHP limits (the node config's defaults, the site's own),
        // which Apache reads: the site cannot change them.
        Mount {
            data: Layout::php_dir,
            target: crate::php::CONTAINER_DIR,
            read_only: true,
        },
    ],
    // WordPress writes uploads, caches and sessions in places PHP chooses.
    read_only: false,
    import_fetches: false,
    puller: false,
    database: true,
    // Its own database user's password only; root's is MariaDB's alone.
    env_file: Some(Layout::wp_env_file),
    // Site Health, the REST API check and loopbacks: inside the container
    // that is Apache itself.
    requests_itself: true,
    sends_mail: true,
    // Visitors' requests never run it (DISABLE_WP_CRON).
    cron: Some(Cron {
        what: "WordPress's due cron events",
        user: "www-data",
        command: "php /usr/local/share/hostyard/wp-site.php cron",
        every: "1min",
    }),
    // The dump first: it is one consistent moment, and an upload made
    // between it and the copy is in the export without its post (an
    // orphan, harmless), while a post made then is not in the dump.
    parts: &[
        Part::Database,
        Part::Tree {
            data: Layout::wp_content_dir,
            export: ImportLayout::wp_content,
            label: "wp-content/",
        },
        Part::OptionalFile {
            data: Layout::htaccess_file,
            export: ImportLayout::htaccess,
            label: ".htaccess",
        },
    ],
};

impl SiteKind {
    /// This kind's description.
    pub fn spec(self) -> &'static KindSpec {
        match self {
            SiteKind::Static => &STATIC,
            SiteKind::StaticGit => &STATIC_GIT,
            SiteKind::Wordpress => &WORDPRESS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_its_own_spec() {
        for kind in SiteKind::ALL {
            assert_eq!(
                kind.spec().kind,
                kind,
                "{kind}'s spec describes another kind"
            );
        }
    }

    #[test]
    fn the_cron_command_is_the_images_script() {
        let cron = WORDPRESS.cron.unwrap();
        assert!(cron.command.contains(WORDPRESS_SITE_SCRIPT));
    }

    #[test]
    fn a_database_is_dumped_first_and_only_by_kinds_that_have_one() {
        for kind in SiteKind::ALL {
            let spec = kind.spec();
            let dumps = spec.parts.iter().any(|p| matches!(p, Part::Database));
            assert_eq!(dumps, spec.database, "{kind}");
            if dumps {
                assert!(matches!(spec.parts[0], Part::Database), "{kind}");
            }
            assert_eq!(spec.env_file.is_some(), spec.database, "{kind}");
        }
    }

    /// `mysql@.service` is one template: it requires the importer of the
    /// one kind that has a database. A second kind with a database needs a
    /// database unit of its own name first.
    #[test]
    fn one_kind_owns_the_database_unit() {
        let with_db: Vec<_> = SiteKind::ALL
            .into_iter()
            .filter(|k| k.spec().database)
            .collect();
        assert_eq!(with_db, [SiteKind::Wordpress]);
    }

    #[test]
    fn mounts_of_one_kind_never_share_a_target() {
        for kind in SiteKind::ALL {
            let mut targets: Vec<_> = kind.spec().mounts.iter().map(|m| m.target).collect();
            targets.sort();
            let n = targets.len();
            targets.dedup();
            assert_eq!(targets.len(), n, "{kind}");
        }
    }
}
