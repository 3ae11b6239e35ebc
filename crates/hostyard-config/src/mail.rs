//! The `mail:` section.

use serde::{Deserialize, Serialize};

/// postfix, which forwards mail for hosted domains (per-domain forward files
/// under `runtime/postfix/forwards/`) and sends the sites' mail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The name postfix greets with and puts in `Received:`; empty means the
    /// kernel host name.
    pub hostname: String,
    /// Where forwarded mail goes next: empty delivers to each destination's
    /// MX; `[smtp.example.org]:587` sends everything through one relay.
    pub relayhost: String,
    /// Messages a site's mail may leave the server with per hour; the rest
    /// waits in postfix's queue (deferred, logged under the site's name)
    /// until the hour allows.
    pub site_hourly_cap: u32,
}

impl Default for MailConfig {
    fn default() -> Self {
        MailConfig {
            hostname: String::new(),
            relayhost: String::new(),
            site_hourly_cap: hostyard_core::mail::SITE_MESSAGES_PER_HOUR,
        }
    }
}
