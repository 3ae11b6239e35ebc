//! The `import:` section.

use serde::{Deserialize, Serialize};

use crate::TimeSpan;

/// What the importers keep of the imports they used.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ImportConfig {
    /// How long a used import stays in `import/.done/` (to look at or
    /// import again) before an importer removes it: it holds the site's
    /// TLS key and a WordPress dump with its users' password hashes.
    pub keep_done: TimeSpan,
}

impl Default for ImportConfig {
    fn default() -> Self {
        ImportConfig {
            keep_done: TimeSpan::from_secs(7 * 86400).expect("not zero"),
        }
    }
}
