//! The data layout on a server: every path under the data root is built
//! here.
//!
//! ```text
//! <root>/domains/<domain>/        a site's persistent data:
//!     www/                        static: the served content
//!     git-url                     static-git: the repository URL
//!     repo/                       static-git: the clone (never served)
//!     public/current -> trees/<commit>   static-git: the served tree
//!     public/trees/<commit>/      static-git: published trees (last few)
//!     wp-content/, .htaccess      wordpress: the site's files
//!     mysql/                      wordpress: MariaDB's data directory
//!     mysql-init/dump.sql         wordpress: an imported dump, loaded by the
//!                                 mysql container on its first start
//!     secrets/                    mode 0700; db.env, wp.env, wp-admin.env and wp-salts.php, mode 0600
//!     tls/<domain>.pem            the site's certificate, if imported
//! <root>/import/<domain>/         data dropped for import (or <domain>.tar[.gz])
//! <root>/import/.done/            imports that were used, kept for reference
//! <root>/domains/.staging-<domain>-<pid>/   an import in progress (removed
//!                                 when found stale)
//! <root>/domains/.import-<domain>.lock      held while an import runs
//! <root>/runtime/haproxy/         generated HAProxy config, host map, pages/,
//!                                 sockets, confd-state.json
//! <root>/runtime/haproxy/certs/   mode 0700: HAProxy's certificates
//!                                 (`<domain>.pem`, `_default.pem`, mode 0600)
//!                                 and `certs.list`, the crt-list naming them
//! <root>/runtime/haproxy/https.map   hosts with a valid certificate and
//!                                 their HTTPS policy
//! <root>/runtime/postfix/forwards/<domain>   mail forwards of a domain
//!                                 (edited by the operator; see `mail`)
//! <root>/runtime/postfix/etc/     postfix's main.cf, master.cf and tables,
//!                                 generated from the forwards
//! <root>/runtime/postfix/queue/   postfix's queue: mail not yet delivered
//!                                 outlives the container
//! <root>/runtime/postfix/queue/public/sites/<domain>/smtp   the socket a
//!                                 site submits its mail to (its dir is
//!                                 the site container's only way out)
//! <root>/runtime/postfix/dkim/<domain>/   the domain's DKIM keys
//!                                 (`<selector>.private`, 0600) and `selector`
//! <root>/runtime/backup/<domain>/ a site's export while restic stores it
//! <root>/runtime/backup/<domain>.last.json   its last good backup
//! ```

use std::path::{Path, PathBuf};

use crate::domain::Domain;

/// The endings of an import tarball: `import/<domain>.tar` and so on.
pub const IMPORT_TARBALL_SUFFIXES: [&str; 3] = [".tar", ".tar.gz", ".tgz"];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Layout {
    root: PathBuf,
}

impl Layout {
    pub fn new(root: &Path) -> Layout {
        Layout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn domains_dir(&self) -> PathBuf {
        self.root.join("domains")
    }

    /// `<root>/domains/<domain>`: exists only once an import completed.
    pub fn domain_dir(&self, domain: &Domain) -> PathBuf {
        self.domains_dir().join(domain.as_str())
    }

    /// The site's kind as its importer recorded it (`static-git\n`): what
    /// export, refresh and restore read instead of guessing from the data.
    pub fn kind_file(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("KIND")
    }

    /// Static content served by a `static` site.
    pub fn www_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("www")
    }

    /// The file holding a static-git site's repository URL.
    pub fn git_url_file(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("git-url")
    }

    /// A static-git site's clone; outside `public/`, so `.git` is never served.
    pub fn git_repo_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("repo")
    }

    /// What a static-git container mounts: `current` and `trees/`.
    pub fn public_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("public")
    }

    /// The symlink to the served tree, switched atomically by gitpull.
    pub fn current_link(&self, domain: &Domain) -> PathBuf {
        self.public_dir(domain).join("current")
    }

    /// The remote commit a rollback holds back (`hostyard site rollback`):
    /// pulls publish nothing while the remote's tip is still that commit.
    /// Beside `public/`, never served.
    pub fn rollback_hold(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("rollback-hold")
    }

    pub fn trees_dir(&self, domain: &Domain) -> PathBuf {
        self.public_dir(domain).join("trees")
    }

    /// One published tree: `public/trees/<commit>`.
    pub fn tree_dir(&self, domain: &Domain, commit: &str) -> PathBuf {
        self.trees_dir(domain).join(commit)
    }

    /// What `current` points to for `commit`: relative to `public/`, so the
    /// link means the same inside the container and after a staged import is
    /// renamed into place.
    pub fn current_link_target(commit: &str) -> PathBuf {
        Path::new("trees").join(commit)
    }

    pub fn wp_content_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("wp-content")
    }

    pub fn htaccess_file(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join(".htaccess")
    }

    /// A WordPress site's PHP limits, Apache directives its container
    /// reads ([`crate::php`]): `defaults.conf` and `site.conf`.
    pub fn php_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("php")
    }

    /// The node config's defaults, written by the importer.
    pub fn php_defaults_conf(&self, domain: &Domain) -> PathBuf {
        self.php_dir(domain).join("defaults.conf")
    }

    /// The site's own limits, written by `hostyard site set`.
    pub fn php_site_conf(&self, domain: &Domain) -> PathBuf {
        self.php_dir(domain).join("site.conf")
    }

    pub fn mysql_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("mysql")
    }

    /// Where an imported `mysql/dump.sql` goes: the mysql container mounts
    /// this as `/docker-entrypoint-initdb.d`, which MariaDB's entrypoint runs
    /// once, when it initialises an empty data directory.
    pub fn mysql_init_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("mysql-init")
    }

    pub fn mysql_init_dump(&self, domain: &Domain) -> PathBuf {
        self.mysql_init_dir(domain).join("dump.sql")
    }

    /// Mode 0700; every file in it mode 0600.
    pub fn secrets_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("secrets")
    }

    /// A static-git site's deploy hook secret (one line, hex), which the
    /// forge signs its requests with (`hostyard site hook D`).
    pub fn hook_secret(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("hook.secret")
    }

    /// MariaDB's database name, user and passwords (root's too) as
    /// `KEY=value` lines (docker --env-file).
    pub fn db_env_file(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("db.env")
    }

    /// What the WordPress container gets: its database's name, user and
    /// that user's password, not MariaDB's root password (docker --env-file).
    pub fn wp_env_file(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("wp.env")
    }

    /// The administrator hostyard installs a new WordPress with (and that
    /// `hostyard wordpress reset-password` sets): `WP_ADMIN_USER=` and
    /// `WP_ADMIN_PASSWORD=` lines.
    pub fn wp_admin_file(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("wp-admin.env")
    }

    /// WordPress keys and salts, a PHP file included by wp-config.php.
    pub fn wp_salts_file(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("wp-salts.php")
    }

    pub fn tls_pem(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain)
            .join("tls")
            .join(format!("{domain}.pem"))
    }

    pub fn imports_dir(&self) -> PathBuf {
        self.root.join("import")
    }

    /// `<root>/import/<domain>`: a folder in the original migration layout.
    pub fn import_dir(&self, domain: &Domain) -> PathBuf {
        self.imports_dir().join(domain.as_str())
    }

    /// The tarball forms of an import, in the order they are looked for
    /// (the order of [`IMPORT_TARBALL_SUFFIXES`]).
    pub fn import_tarballs(&self, domain: &Domain) -> [PathBuf; 3] {
        IMPORT_TARBALL_SUFFIXES.map(|ext| self.imports_dir().join(format!("{domain}{ext}")))
    }

    /// `<root>/import/.move/<domain>`: where a move between servers keeps
    /// the site's export, on the source (made there) and on the target
    /// (copied there, then imported or refreshed from).
    pub fn move_stage_dir(&self, domain: &Domain) -> PathBuf {
        self.imports_dir().join(".move").join(domain.as_str())
    }

    /// Where used imports are moved (removed `import.keep_done` later).
    pub fn import_done_dir(&self) -> PathBuf {
        self.imports_dir().join(".done")
    }

    /// A used import's new name: `.done/<domain>-<unix time><suffix>`, where
    /// the suffix keeps a tarball's extension (`.tar.gz`).
    pub fn import_done_entry(&self, domain: &Domain, unix_time: u64, suffix: &str) -> PathBuf {
        self.import_done_dir()
            .join(format!("{domain}-{unix_time}{suffix}"))
    }

    /// The inverse of [`Layout::import_done_entry`] for a file name in
    /// `.done/`: the domain and the time it was used. Anything else is
    /// `None` (nothing an importer did not name is ever removed).
    pub fn parse_import_done_entry(name: &str) -> Option<(Domain, u64)> {
        let stem = IMPORT_TARBALL_SUFFIXES
            .iter()
            .find_map(|s| name.strip_suffix(s))
            .unwrap_or(name);
        let (domain, time) = stem.rsplit_once('-')?;
        if time.is_empty() || !time.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some((Domain::parse(domain).ok()?, time.parse().ok()?))
    }

    /// Of the file names in `.done/`, those used more than `keep_secs`
    /// before `now`: what an importer removes. Names it did not make are
    /// never among them.
    pub fn expired_import_done<'a>(
        names: impl IntoIterator<Item = &'a str>,
        now: u64,
        keep_secs: u64,
    ) -> Vec<&'a str> {
        names
            .into_iter()
            .filter(|name| {
                Layout::parse_import_done_entry(name)
                    .is_some_and(|(_, used)| now.saturating_sub(used) > keep_secs)
            })
            .collect()
    }

    /// An import being built, next to its target so that the final rename
    /// stays on one filesystem. It is a data root of its own: the site is
    /// staged at `Layout::new(staging).domain_dir(domain)`.
    pub fn staging_dir(&self, domain: &Domain, pid: u32) -> PathBuf {
        self.domains_dir().join(format!(".staging-{domain}-{pid}"))
    }

    /// Whether a file name in `domains/` is a staging dir of `domain` (from
    /// any process), as made by [`Layout::staging_dir`].
    pub fn is_staging_name(domain: &Domain, name: &str) -> bool {
        name.strip_prefix(".staging-")
            .and_then(|rest| rest.strip_prefix(domain.as_str()))
            .and_then(|rest| rest.strip_prefix('-'))
            .is_some_and(|pid| !pid.is_empty() && pid.bytes().all(|b| b.is_ascii_digit()))
    }

    /// Held (flock) while `domain` is imported, so that two imports never
    /// race and stale staging dirs can be removed safely.
    pub fn import_lock(&self, domain: &Domain) -> PathBuf {
        self.domains_dir().join(format!(".import-{domain}.lock"))
    }

    /// `<root>/runtime`: what the server-wide services generate and keep.
    /// Backups' working dir: each site's export while restic stores it,
    /// and the record of its last good backup.
    pub fn backup_dir(&self) -> PathBuf {
        self.runtime_dir().join("backup")
    }

    /// Where `backup@<domain>` writes the export restic stores: always the
    /// same path, so restic finds the previous snapshot as its parent.
    pub fn backup_export_dir(&self, domain: &Domain) -> PathBuf {
        self.backup_dir().join(domain.as_str())
    }

    /// The last good backup of `domain` (time and snapshot), as JSON.
    pub fn backup_state(&self, domain: &Domain) -> PathBuf {
        self.backup_dir().join(format!("{domain}.last.json"))
    }

    /// A restore being unpacked, beside the import dir it is renamed to.
    pub fn restore_staging_dir(&self, domain: &Domain, pid: u32) -> PathBuf {
        self.imports_dir().join(format!(".restore-{domain}-{pid}"))
    }

    pub fn runtime_dir(&self) -> PathBuf {
        self.root.join("runtime")
    }

    /// The directories a server has from setup on, parents first, each
    /// with its role: the root, `domains/`, `import/` (where an operator
    /// drops imports) and the server-wide services' runtime dirs.
    /// Everything below them is made by the program that writes it.
    /// `hostyard names dirs` prints these for the scripts.
    pub fn base_dirs(&self) -> [(&'static str, PathBuf); 6] {
        [
            ("root", self.root.clone()),
            ("domains", self.domains_dir()),
            ("import", self.imports_dir()),
            ("runtime", self.runtime_dir()),
            ("haproxy", self.runtime_haproxy()),
            ("postfix", self.runtime_postfix()),
        ]
    }

    pub fn runtime_haproxy(&self) -> PathBuf {
        self.runtime_dir().join("haproxy")
    }

    /// The config HAProxy runs with; written by confd, validated before use.
    pub fn haproxy_cfg(&self) -> PathBuf {
        self.runtime_haproxy().join("haproxy.cfg")
    }

    /// Host → backend map, kept equal to what the runtime API holds.
    pub fn hosts_map(&self) -> PathBuf {
        self.runtime_haproxy().join("hosts.map")
    }

    /// HAProxy's stats socket at `level admin`: the runtime API.
    pub fn haproxy_admin_socket(&self) -> PathBuf {
        self.runtime_haproxy().join("admin.sock")
    }

    /// The master CLI socket (`-S`): reloads go through it.
    pub fn haproxy_master_socket(&self) -> PathBuf {
        self.runtime_haproxy().join("master.sock")
    }

    /// Error pages HAProxy answers with (`404.html`, `503.html`).
    pub fn haproxy_pages_dir(&self) -> PathBuf {
        self.runtime_haproxy().join("pages")
    }

    /// The page HAProxy answers with for `status` (404: not hosted, 503: down).
    pub fn haproxy_error_page(&self, status: u16) -> PathBuf {
        self.haproxy_pages_dir().join(format!("{status}.html"))
    }

    /// HAProxy's certificates (mode 0700: they hold private keys).
    pub fn haproxy_certs_dir(&self) -> PathBuf {
        self.runtime_haproxy().join("certs")
    }

    /// The certificate HAProxy serves for `domain`, key included.
    pub fn haproxy_cert(&self, domain: &Domain) -> PathBuf {
        self.haproxy_certs_dir().join(format!("{domain}.pem"))
    }

    /// The self-signed certificate for names HAProxy has none for. `_` never
    /// occurs in a domain, so it cannot collide with a site's file.
    pub fn haproxy_default_cert(&self) -> PathBuf {
        self.haproxy_certs_dir().join("_default.pem")
    }

    /// This server's certificate of the fleet CA, key included, and the
    /// fleet CA, as the peer frontend and the peers backend read them
    /// (mode 0700: the key).
    pub fn haproxy_peer_dir(&self) -> PathBuf {
        self.runtime_haproxy().join("peer")
    }

    /// This server's certificate for its peers, key included (0600).
    pub fn haproxy_peer_cert(&self) -> PathBuf {
        self.haproxy_peer_dir().join("server.pem")
    }

    /// The fleet CA a peer's certificate must be signed by.
    pub fn haproxy_peer_ca(&self) -> PathBuf {
        self.haproxy_peer_dir().join("ca.pem")
    }

    /// The crt-list: one line per site certificate, with the names it
    /// serves; loaded at start, changed at run time through the runtime API.
    pub fn haproxy_crt_list(&self) -> PathBuf {
        self.haproxy_certs_dir().join("certs.list")
    }

    /// Host → HTTPS policy of the sites that have a valid certificate.
    pub fn https_map(&self) -> PathBuf {
        self.runtime_haproxy().join("https.map")
    }

    /// ACME's HTTP-01 answers: challenge token → key authorization, kept
    /// equal to etcd's challenge keys by confd (file and runtime API).
    pub fn acme_map(&self) -> PathBuf {
        self.runtime_haproxy().join("acme.map")
    }

    /// The sites' exact path redirects: `<domain><path>` →
    /// `<status>/<length>/<target>` ([`crate::edge::redirect_entries`]),
    /// kept equal to the sites' declarations by confd (file and runtime API).
    pub fn redirect_exact_map(&self) -> PathBuf {
        self.runtime_haproxy().join("redirect-exact.map")
    }

    /// The sites' prefix path redirects, as [`Layout::redirect_exact_map`].
    pub fn redirect_prefix_map(&self) -> PathBuf {
        self.runtime_haproxy().join("redirect-prefix.map")
    }

    /// The sites served under their `www.` name: `<domain>` → `www.<domain>`
    /// ([`crate::edge::site_entries`]), kept by confd like the redirects.
    pub fn canonical_map(&self) -> PathBuf {
        self.runtime_haproxy().join("canonical.map")
    }

    /// The sites behind a password: `<domain>` → `<salt>/<hash>`
    /// ([`crate::edge::BasicAuth`]), kept by confd like the redirects.
    pub fn basic_auth_map(&self) -> PathBuf {
        self.runtime_haproxy().join("basic-auth.map")
    }

    /// The sites' security headers preset: `<domain>` → `basic`|`strict`,
    /// kept by confd like the redirects.
    pub fn headers_map(&self) -> PathBuf {
        self.runtime_haproxy().join("headers.map")
    }

    /// Every map confd's edge rules keep, each created empty before
    /// HAProxy starts (haproxy.cfg names them all).
    pub fn edge_maps(&self) -> [PathBuf; 6] {
        [
            self.redirect_exact_map(),
            self.redirect_prefix_map(),
            self.canonical_map(),
            self.basic_auth_map(),
            self.headers_map(),
            self.php_limits_map(),
        ]
    }

    /// Each WordPress site's request body limit and server timeout:
    /// `<domain>` → `<bytes>/<ms>` ([`crate::php::Effective::map_value`]),
    /// kept by confd like the redirect maps.
    pub fn php_limits_map(&self) -> PathBuf {
        self.runtime_haproxy().join("php-limits.map")
    }

    /// ACME's files (mode 0700): the account and obtained certificates.
    /// Outside `runtime/haproxy`, which the HAProxy container mounts: the
    /// Internet-facing proxy has no use for the account's key. confd's unit
    /// lets it write here (`ReadWritePaths=`); the certificate thread copies
    /// a certificate it accepts into HAProxy's directory.
    pub fn acme_dir(&self) -> PathBuf {
        self.runtime_dir().join("acme")
    }

    /// The ACME account (its private key, 0600): made once, kept across
    /// restarts so renewals use the same account.
    pub fn acme_account(&self) -> PathBuf {
        self.acme_dir().join("account.json")
    }

    /// The certificates obtained by ACME, and in a fleet those other
    /// servers published (0700).
    pub fn acme_certs_dir(&self) -> PathBuf {
        self.acme_dir().join("certs")
    }

    /// `hostyard tls renew`'s requests, one file per domain.
    pub fn acme_renew_dir(&self) -> PathBuf {
        self.acme_dir().join("renew")
    }

    /// `hostyard tls renew D`'s request that confd's next ACME pass order
    /// a new key and certificate for `domain`; removed once ordered.
    pub fn acme_renew_request(&self, domain: &Domain) -> PathBuf {
        self.acme_renew_dir().join(domain.as_str())
    }

    /// A certificate obtained by ACME for `domain`, chain and key (0600);
    /// served when the site has no imported certificate. In a fleet, also
    /// where a certificate another server published lands.
    pub fn acme_cert(&self, domain: &Domain) -> PathBuf {
        self.acme_certs_dir().join(format!("{domain}.pem"))
    }

    /// Inverse of [`Layout::acme_cert`]'s file name: the domain of a file
    /// in [`Layout::acme_certs_dir`], `None` for anything else (a write's
    /// temporary file).
    pub fn acme_cert_domain(file_name: &str) -> Option<Domain> {
        Domain::parse(file_name.strip_suffix(".pem")?).ok()
    }

    /// The certificate thread's view: each site's certificate source,
    /// expiry and last refusal, as JSON; read by `hostyard status`.
    pub fn tls_state(&self) -> PathBuf {
        self.runtime_haproxy().join("tls-state.json")
    }

    /// confd's view of every site and any held change, as JSON; read by
    /// `hostyard status`.
    pub fn confd_state(&self) -> PathBuf {
        self.runtime_haproxy().join("confd-state.json")
    }

    pub fn runtime_postfix(&self) -> PathBuf {
        self.runtime_dir().join("postfix")
    }

    /// One forward file per hosted mail domain, named after the domain.
    pub fn postfix_forwards_dir(&self) -> PathBuf {
        self.runtime_postfix().join("forwards")
    }

    /// The forward file of `domain`.
    pub fn postfix_forwards(&self, domain: &Domain) -> PathBuf {
        self.postfix_forwards_dir().join(domain.as_str())
    }

    /// postfix's config directory (`postfix -c`), generated; mounted
    /// read-only at the same path in the container.
    pub fn postfix_config_dir(&self) -> PathBuf {
        self.runtime_postfix().join("etc")
    }

    /// postfix's queue, mounted as the container's `/var/spool/postfix`.
    pub fn postfix_queue_dir(&self) -> PathBuf {
        self.runtime_postfix().join("queue")
    }

    /// The directory of a site's mail submission socket, inside postfix's
    /// queue (postfix makes its `public/` sockets there). The site
    /// container mounts this directory, not the socket: postfix makes the
    /// socket anew when it restarts, and a file mount would keep the old one.
    pub fn mail_socket_dir(&self, domain: &Domain) -> PathBuf {
        self.postfix_queue_dir()
            .join("public")
            .join(crate::mail::SITE_SOCKETS)
            .join(domain.as_str())
    }

    /// The DKIM keys of every signing domain, mounted read-write at the
    /// same path in postfix's container (its start makes missing keys).
    pub fn dkim_dir(&self) -> PathBuf {
        self.runtime_postfix().join("dkim")
    }

    /// One domain's DKIM keys and its `selector` file.
    pub fn dkim_domain_dir(&self, domain: &Domain) -> PathBuf {
        self.dkim_dir().join(domain.as_str())
    }
}

/// The original system's migration layout, inside an import folder (or an
/// unpacked import tarball): what `/data/import/<domain>/` holds.
///
/// ```text
/// TLS/<domain>.pem          the site's certificate and key
/// static/www-content/       a static site's content
/// static-git/GITURL         a static-git site's repository URL (`url[#branch]`)
/// mysql/dump.sql            a WordPress database dump
/// mysql/.env                the old database's names (passwords are never reused)
/// wordpress/wp-content/     WordPress's uploads, themes and plugins
/// wordpress/.htaccess
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImportLayout {
    root: PathBuf,
}

impl ImportLayout {
    pub fn new(root: &Path) -> ImportLayout {
        ImportLayout {
            root: root.to_path_buf(),
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn tls_pem(&self, domain: &Domain) -> PathBuf {
        self.root.join("TLS").join(format!("{domain}.pem"))
    }

    pub fn www_content(&self) -> PathBuf {
        self.root.join("static").join("www-content")
    }

    pub fn git_url(&self) -> PathBuf {
        self.root.join("static-git").join("GITURL")
    }

    pub fn mysql_dump(&self) -> PathBuf {
        self.root.join("mysql").join("dump.sql")
    }

    pub fn mysql_env(&self) -> PathBuf {
        self.root.join("mysql").join(".env")
    }

    pub fn wp_content(&self) -> PathBuf {
        self.root.join("wordpress").join("wp-content")
    }

    pub fn htaccess(&self) -> PathBuf {
        self.root.join("wordpress").join(".htaccess")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn used_imports_round_trip_and_expire_by_their_name() {
        let layout = Layout::new(Path::new("/data"));
        let d = Domain::parse("blog.example.org").unwrap();
        for suffix in ["", ".tar", ".tar.gz", ".tgz"] {
            let entry = layout.import_done_entry(&d, 1_700_000_000, suffix);
            let name = entry.file_name().unwrap().to_str().unwrap();
            assert_eq!(
                Layout::parse_import_done_entry(name),
                Some((d.clone(), 1_700_000_000)),
                "{name}"
            );
        }
        for other in [
            "notes.txt",
            "blog.example.org",
            "blog.example.org-",
            "blog.example.org-12a",
            "-12",
            ".hidden-12",
        ] {
            assert_eq!(Layout::parse_import_done_entry(other), None, "{other}");
        }
        let names = [
            "a.example-100",
            "b.example-150.tar.gz",
            "c.example-199",
            "keep-me",
            "d.example-10x",
        ];
        assert_eq!(
            Layout::expired_import_done(names, 200, 50),
            ["a.example-100"]
        );
        assert_eq!(
            Layout::expired_import_done(names, 1000, 50),
            ["a.example-100", "b.example-150.tar.gz", "c.example-199"]
        );
        // A clock behind the entries expires nothing.
        assert!(Layout::expired_import_done(names, 0, 50).is_empty());
    }

    #[test]
    fn paths_stay_under_the_root() {
        let l = Layout::new(Path::new("/data"));
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(l.domain_dir(&d), Path::new("/data/domains/example.com"));
        assert_eq!(l.import_dir(&d), Path::new("/data/import/example.com"));
        assert_eq!(l.runtime_haproxy(), Path::new("/data/runtime/haproxy"));
    }

    #[test]
    fn acme_cert_names_round_trip() {
        let l = Layout::new(Path::new("/data"));
        let domain = Domain::parse("example.com").unwrap();
        let path = l.acme_cert(&domain);
        assert_eq!(path.parent().unwrap(), l.acme_certs_dir());
        let name = path.file_name().unwrap().to_str().unwrap();
        assert_eq!(Layout::acme_cert_domain(name), Some(domain));
        assert_eq!(Layout::acme_cert_domain(".example.com.pem.tmp"), None);
        assert_eq!(Layout::acme_cert_domain("example.com"), None);
    }

    #[test]
    fn the_acme_account_is_outside_what_the_haproxy_container_mounts() {
        let l = Layout::new(Path::new("/data"));
        assert!(!l.acme_account().starts_with(l.runtime_haproxy()));
        assert!(!l
            .acme_cert(&Domain::parse("example.com").unwrap())
            .starts_with(l.runtime_haproxy()));
    }

    #[test]
    fn base_dirs_come_parents_first() {
        let l = Layout::new(Path::new("/data"));
        let dirs = l.base_dirs().map(|(_, d)| d);
        assert_eq!(dirs[0], Path::new("/data"));
        for (i, dir) in dirs.iter().enumerate() {
            assert!(dir.starts_with(l.root()), "{}", dir.display());
            if let Some(parent) = dir.parent().filter(|_| i > 0) {
                assert!(dirs[..i].iter().any(|d| d == parent), "{}", dir.display());
            }
        }
    }

    #[test]
    fn current_link_target_names_the_tree_dir() {
        let l = Layout::new(Path::new("/data"));
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(
            l.public_dir(&d).join(Layout::current_link_target("abc")),
            l.tree_dir(&d, "abc")
        );
    }

    #[test]
    fn staging_names_round_trip_and_stay_per_domain() {
        let l = Layout::new(Path::new("/data"));
        let d = Domain::parse("example.com").unwrap();
        let other = Domain::parse("ample.com").unwrap();
        let longer = Domain::parse("example.com.au").unwrap();
        let staging = l.staging_dir(&d, 42);
        assert_eq!(staging.parent(), Some(l.domains_dir().as_path()));
        let name = staging.file_name().unwrap().to_str().unwrap();
        assert!(Layout::is_staging_name(&d, name));
        assert!(!Layout::is_staging_name(&other, name));
        let longer_name = l.staging_dir(&longer, 7);
        let longer_name = longer_name.file_name().unwrap().to_str().unwrap();
        assert!(!Layout::is_staging_name(&d, longer_name));
        assert!(!Layout::is_staging_name(&d, "example.com"));
        assert!(!Layout::is_staging_name(&d, ".staging-example.com-"));
        // Staged sites sit where the final rename expects them.
        let staged = Layout::new(&staging).domain_dir(&d);
        assert_eq!(staged.parent().unwrap().parent(), Some(staging.as_path()));
    }
}
