//! The `wordpress:` section.

use hostyard_core::Domain;
use serde::{Deserialize, Serialize};

/// WordPress sites.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WordpressConfig {
    /// The e-mail address a new site's administrator is installed with
    /// (WordPress sends it update and password notices); `None` means
    /// `admin@<the site's domain>`. An imported site keeps its own.
    pub admin_email: Option<hostyard_core::mail::MailAddress>,
    /// Each PHP limit's default and the most `hostyard site set D
    /// --php-...` may give a site: upload, memory, time.
    pub php_limits: hostyard_core::php::PhpBounds,
}

impl WordpressConfig {
    /// The address a new WordPress site `domain` is installed with.
    pub fn admin_email_for(&self, domain: &Domain) -> String {
        match &self.admin_email {
            Some(address) => address.to_string(),
            None => format!("admin@{domain}"),
        }
    }
}
