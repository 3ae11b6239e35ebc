//! The `images:` section: one image per container.

use hostyard_core::SiteKind;
use serde::{Deserialize, Serialize};

/// Image name per container; tags are part of the name (`hostyard/static:1`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Images {
    #[serde(rename = "static")]
    pub static_: String,
    pub static_git: String,
    pub wordpress: String,
    pub mysql: String,
    pub haproxy: String,
    pub postfix: String,
}

impl Default for Images {
    fn default() -> Self {
        Images {
            static_: "hostyard/static".to_string(),
            static_git: "hostyard/static-git".to_string(),
            wordpress: "hostyard/wordpress".to_string(),
            mysql: "hostyard/mysql".to_string(),
            haproxy: "hostyard/haproxy".to_string(),
            postfix: "hostyard/postfix".to_string(),
        }
    }
}

/// The images of the server-wide containers, named like site kinds.
pub const MYSQL_IMAGE_KIND: &str = "mysql";
pub const HAPROXY_IMAGE_KIND: &str = "haproxy";
pub const POSTFIX_IMAGE_KIND: &str = "postfix";

impl Images {
    pub fn for_kind(&self, kind: SiteKind) -> &str {
        match kind {
            SiteKind::Static => &self.static_,
            SiteKind::StaticGit => &self.static_git,
            SiteKind::Wordpress => &self.wordpress,
        }
    }

    /// Every image as (kind, name): the kind is the image's slug (a site
    /// kind's, or `mysql`, `haproxy`, `postfix`), which names its
    /// Dockerfile, its tarball (`<kind>.tar`) and its config key
    /// ([`Images::config_key`]). The one list scripts get from
    /// `hostyard names images` and validation walks.
    pub fn all(&self) -> [(&'static str, &str); 6] {
        [
            (SiteKind::Static.as_str(), &self.static_),
            (SiteKind::StaticGit.as_str(), &self.static_git),
            (SiteKind::Wordpress.as_str(), &self.wordpress),
            (MYSQL_IMAGE_KIND, &self.mysql),
            (HAPROXY_IMAGE_KIND, &self.haproxy),
            (POSTFIX_IMAGE_KIND, &self.postfix),
        ]
    }

    /// The node config's key of an image kind: `images.static_git` for
    /// `static-git` (YAML keys use `_`, kinds `-`).
    pub fn config_key(kind: &str) -> String {
        format!("images.{}", kind.replace('-', "_"))
    }
}
