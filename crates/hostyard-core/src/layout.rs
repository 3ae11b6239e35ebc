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
//!     secrets/                    mode 0700; db.env and wp-salts.php, mode 0600
//!     tls/<domain>.pem            the site's certificate, if imported
//! <root>/import/<domain>/         data dropped for import (or <domain>.tar[.gz])
//! <root>/import/.done/            imports that were used, kept for reference
//! <root>/runtime/haproxy/         generated HAProxy config, host map, pages/,
//!                                 sockets, confd-state.json
//! <root>/runtime/postfix/         generated postfix config and maps
//! ```

use std::path::{Path, PathBuf};

use crate::domain::Domain;

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

    pub fn trees_dir(&self, domain: &Domain) -> PathBuf {
        self.public_dir(domain).join("trees")
    }

    pub fn wp_content_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("wp-content")
    }

    pub fn htaccess_file(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join(".htaccess")
    }

    pub fn mysql_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("mysql")
    }

    /// Mode 0700; every file in it mode 0600.
    pub fn secrets_dir(&self, domain: &Domain) -> PathBuf {
        self.domain_dir(domain).join("secrets")
    }

    /// Database name, user and password as `KEY=value` lines (docker --env-file).
    pub fn db_env_file(&self, domain: &Domain) -> PathBuf {
        self.secrets_dir(domain).join("db.env")
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

    /// Where used imports are moved (never deleted).
    pub fn import_done_dir(&self) -> PathBuf {
        self.imports_dir().join(".done")
    }

    pub fn runtime_haproxy(&self) -> PathBuf {
        self.root.join("runtime").join("haproxy")
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

    /// confd's view of every site and any held change, as JSON; read by
    /// `hostyard status`.
    pub fn confd_state(&self) -> PathBuf {
        self.runtime_haproxy().join("confd-state.json")
    }

    pub fn runtime_postfix(&self) -> PathBuf {
        self.root.join("runtime").join("postfix")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_under_the_root() {
        let l = Layout::new(Path::new("/data"));
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(l.domain_dir(&d), Path::new("/data/domains/example.com"));
        assert_eq!(l.import_dir(&d), Path::new("/data/import/example.com"));
        assert_eq!(l.runtime_haproxy(), Path::new("/data/runtime/haproxy"));
    }
}
