//! What the certificate thread reports to `hostyard status`: per site, where
//! its certificate comes from, when it expires, and the last refusal.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

/// A certificate this close to its end is a warning in `hostyard status`.
pub const EXPIRY_WARNING_SECS: i64 = 14 * 24 * 3600;

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TlsState {
    pub sites: BTreeMap<String, SiteTls>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteTls {
    /// "imported" (the site's tls/<domain>.pem), "acme" (ordered here),
    /// "fleet" (a site hosted elsewhere in the fleet, with the certificate
    /// its server published) or "default".
    pub source: String,
    /// End of validity of the served certificate, Unix time.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_after: Option<i64>,
    /// Why the site's certificate file was last refused.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
    /// ACME's record for the site, when ACME is on and has tried it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acme: Option<AcmeSite>,
}

/// ACME's record of one site: kept across restarts so a failing site
/// does not get an order at once after each start.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AcmeSite {
    /// Failed orders in a row.
    #[serde(default)]
    pub failures: u32,
    /// No order before this Unix time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_try: Option<i64>,
    /// Why the last order failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl SiteTls {
    /// Why an operator must act, if they must: a refused file, or a served
    /// certificate within [`EXPIRY_WARNING_SECS`] of its end at `now`.
    pub fn warning(&self, now: i64) -> Option<String> {
        if let Some(why) = &self.refused {
            return Some(format!("certificate file refused: {why}"));
        }
        if let Some(why) = self.acme.as_ref().and_then(|a| a.error.as_ref()) {
            return Some(format!("ACME: {why}"));
        }
        match self.not_after {
            Some(t) if t - now < EXPIRY_WARNING_SECS => Some(format!(
                "certificate expires in {} days; put a renewed one in place",
                (t - now).max(0) / 86400
            )),
            _ => None,
        }
    }
}

impl TlsState {
    /// The state file, or `None` when confd has not written one yet.
    pub fn load(path: &Path) -> anyhow::Result<Option<TlsState>> {
        hostyard_fs::read_json_if_exists(path, "a TLS state file")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn warnings_are_refusals_and_the_last_14_days() {
        let now = 1_000_000_000;
        let site = |not_after, refused: Option<&str>| SiteTls {
            source: "imported".into(),
            not_after,
            refused: refused.map(str::to_string),
            acme: None,
        };
        assert_eq!(site(Some(now + 30 * 86400), None).warning(now), None);
        let w = site(Some(now + 3 * 86400), None).warning(now).unwrap();
        assert!(w.contains("expires in 3 days"), "{w}");
        let w = site(Some(now + 90 * 86400), Some("it expired")).warning(now);
        assert!(w.unwrap().contains("refused: it expired"));
        assert_eq!(site(None, None).warning(now), None);
        let mut failing = site(Some(now + 90 * 86400), None);
        failing.acme = Some(AcmeSite {
            failures: 2,
            next_try: Some(now + 600),
            error: Some("validation failed: connection refused".into()),
        });
        let w = failing.warning(now).unwrap();
        assert!(w.contains("ACME: validation failed"), "{w}");
    }
}
