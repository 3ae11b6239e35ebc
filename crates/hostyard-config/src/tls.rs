//! The `tls:` section: HTTPS and ACME.

use std::path::PathBuf;

use hostyard_core::Domain;
use serde::{Deserialize, Serialize};

use crate::Problem;

/// HTTPS: which sites redirect and send HSTS, and how often confd looks
/// for changed certificates.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TlsConfig {
    /// Sites that keep answering plain HTTP although they have a valid
    /// certificate (every other such site redirects HTTP to HTTPS).
    pub http_sites: Vec<Domain>,
    /// Sites whose HTTPS answers carry `Strict-Transport-Security` (opt-in:
    /// browsers remember it for a year, so a site must mean it).
    pub hsts_sites: Vec<Domain>,
    /// Seconds between two looks at the sites' certificate files.
    pub scan_secs: u64,
    /// Certificates from an ACME CA (HTTP-01) for sites without an
    /// imported one; an empty directory URL turns it off.
    pub acme: AcmeConfig,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AcmeConfig {
    /// The CA's ACME directory URL (https://); empty: no ACME.
    pub directory: String,
    /// Contact e-mail given to the CA with the account (expiry notices).
    pub email: String,
    /// Whether the operator accepted the CA's terms of service; nothing is
    /// ordered until they did (the CA requires the agreement).
    pub terms_accepted: bool,
    /// A PEM file with the root the ACME server's own HTTPS certificate
    /// chains to, for a private or test CA (pebble); empty: the system's roots.
    /// Roots that follow it (the one a private CA signs certificates with)
    /// are trusted, beside the system's, for the fleet's certificates.
    pub ca_file: PathBuf,
    /// Seconds before the first retry after a failed order; each further
    /// failure doubles it (at most a day). 300 keeps a name under the CAs'
    /// limit of 5 failed validations an hour.
    pub retry_secs: u64,
}

impl Default for AcmeConfig {
    fn default() -> Self {
        AcmeConfig {
            directory: String::new(),
            email: String::new(),
            terms_accepted: false,
            ca_file: PathBuf::new(),
            retry_secs: 300,
        }
    }
}

impl AcmeConfig {
    /// Whether ACME is configured at all.
    pub fn enabled(&self) -> bool {
        !self.directory.is_empty()
    }

    /// Every field that is wrong, with what is wrong and the fix.
    pub(crate) fn problems(&self) -> Vec<Problem> {
        let mut problems = Vec::new();
        if self.retry_secs == 0 {
            problems.push(Problem::new(
                "tls.acme.retry_secs",
                "must be at least 1".to_string(),
            ));
        }
        if !self.enabled() {
            return problems;
        }
        if !self.directory.starts_with("https://") || self.directory.len() <= "https://".len() {
            problems.push(Problem::new(
                "tls.acme.directory",
                format!(
                    "{:?} must be an https:// URL, like https://acme-v02.api.letsencrypt.org/directory",
                    self.directory
                ),
            ));
        }
        let email_ok = self
            .email
            .split_once('@')
            .is_some_and(|(user, host)| !user.is_empty() && host.contains('.'))
            && !self.email.contains(char::is_whitespace);
        if !email_ok {
            problems.push(Problem::new(
                "tls.acme.email",
                format!(
                    "{:?} must be an e-mail address the CA can write to, like admin@example.org",
                    self.email
                ),
            ));
        }
        if !self.ca_file.as_os_str().is_empty() && !self.ca_file.is_absolute() {
            problems.push(Problem::new(
                "tls.acme.ca_file",
                format!(
                    "{} must be an absolute path or empty",
                    self.ca_file.display()
                ),
            ));
        }
        problems
    }
}

impl Default for TlsConfig {
    fn default() -> Self {
        TlsConfig {
            http_sites: Vec::new(),
            hsts_sites: Vec::new(),
            scan_secs: 2,
            acme: AcmeConfig::default(),
        }
    }
}
