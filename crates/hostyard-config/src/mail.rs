//! The `mail:` section.

use serde::{Deserialize, Serialize};

/// postfix, which forwards mail for hosted domains (per-domain forward files
/// under `runtime/postfix/forwards/`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MailConfig {
    /// The name postfix greets with and puts in `Received:`; empty means the
    /// kernel host name.
    pub hostname: String,
    /// Where forwarded mail goes next: empty delivers to each destination's
    /// MX; `[smtp.example.org]:587` sends everything through one relay.
    pub relayhost: String,
}
