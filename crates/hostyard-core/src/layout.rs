//! The data layout on a server: every path under the data root is built
//! here.
//!
//! ```text
//! <root>/domains/<domain>/        a site's persistent data
//! <root>/import/<domain>/         data dropped for import (or <domain>.tar[.gz])
//! <root>/import/.done/            imports that were used, kept for reference
//! <root>/runtime/haproxy/         generated HAProxy config, host map, pages
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
