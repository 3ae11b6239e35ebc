//! `hostyard status`: every site with its kind, address and state (routed /
//! down / conflict / invalid / held), from etcd, HAProxy's runtime map and
//! confd's state file.
//!
//! The work is in `hostyard_routing::status`, next to the routing rules, so
//! the verdicts shown are computed by the same function confd applies; the
//! certificate column comes from hostyard-tls's state here, so routing does
//! not depend on TLS.

use hostyard_config::NodeConfig;
use serde::Serialize;

/// Prints the server's status as a table or JSON; returns 0 when all is
/// well, 1 when something needs attention (a held change, a rejected
/// config, skipped keys, conflicts, etcd unreachable, a backup that is
/// stale or missing, an etcd certificate near its end).
pub fn run(config: &NodeConfig, json: bool) -> anyhow::Result<i32> {
    let backups = backups(config)?;
    let unprotected = unprotected(config)?;
    let etcd_cert = crate::etcd_check::cert_warning_now(config);
    let mail_dns = mail_dns_warnings(config);
    let backups_code = backups
        .as_ref()
        .map_or(0, |rows| i32::from(rows.iter().any(|r| r.stale)))
        .max(i32::from(unprotected.is_some()))
        .max(i32::from(etcd_cert.is_some()));
    if json {
        // One document: routing's report, plus `backups` when they are
        // configured, or `backups_missing` when sites have none, and
        // `etcd_certificate` when this server's nears its end.
        let report = hostyard_routing::status::report(config, &certificates(config))?;
        let mut doc = serde_json::to_value(&report)?;
        if let Some(map) = doc.as_object_mut() {
            if let Some(rows) = &backups {
                map.insert("backups".into(), serde_json::to_value(rows)?);
            }
            if let Some(warning) = &unprotected {
                map.insert("backups_missing".into(), warning.clone().into());
            }
            if let Some(warning) = &etcd_cert {
                map.insert("etcd_certificate".into(), warning.clone().into());
            }
            if !mail_dns.is_empty() {
                map.insert("mail_dns".into(), serde_json::to_value(&mail_dns)?);
            }
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(i32::from(report.needs_attention()).max(backups_code));
    }
    let routing = hostyard_routing::status::run(config, false, &certificates(config))?;
    if let Some(rows) = &backups {
        print_backups(rows);
    }
    for warning in [&unprotected, &etcd_cert].into_iter().flatten() {
        println!();
        println!("WARNING: {warning}");
    }
    if !mail_dns.is_empty() {
        println!();
        for warning in &mail_dns {
            println!("WARNING: mail DNS: {warning}");
        }
    }
    Ok(routing.max(backups_code))
}

/// The mail records of this server's sites that DNS lacks or holds
/// otherwise than `hostyard mail dns` prints (bounded in time; a warning
/// of its own when DNS cannot be asked). Informative: the exit status
/// stays, since a domain's DNS is often its owner's to change.
fn mail_dns_warnings(config: &NodeConfig) -> Vec<String> {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let Ok(hostname) = crate::mail::mail_hostname(config, kernel.trim()) else {
        return Vec::new();
    };
    crate::mail::dns_warnings(&config.layout(), &hostname)
}

/// Each site's certificate column from the TLS state confd keeps:
/// "imported, expires <Unix time>", "acme, expires <Unix time>", or
/// "default" (none of its own), with the certificate's warning.
fn certificates(config: &NodeConfig) -> impl Fn(&str) -> (String, Option<String>) {
    let tls = hostyard_tls::TlsState::load(&config.layout().tls_state())
        .ok()
        .flatten()
        .unwrap_or_default();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    move |domain: &str| match tls.sites.get(domain) {
        Some(t) => (
            match t.not_after {
                Some(at) => format!("{}, expires {at}", t.source),
                None => t.source.clone(),
            },
            t.warning(now),
        ),
        None => hostyard_routing::status::no_certificates(domain),
    }
}

/// A warning when this server holds sites' data and no backup repository
/// is set: their loss would be final, and nothing else says so.
fn unprotected(config: &NodeConfig) -> anyhow::Result<Option<String>> {
    if config.backup.enabled() {
        return Ok(None);
    }
    let sites = hostyard_backup::state::report(&config.layout(), 0, 1)?.len();
    Ok(unprotected_warning(sites))
}

fn unprotected_warning(sites: usize) -> Option<String> {
    (sites > 0).then(|| {
        format!(
            "{sites} site{} on this server and no backups: set backup.repository in \
             /etc/hostyard/hostyard.yaml, then run hostyard backup init (docs/backups.md)",
            if sites == 1 {
                " has data"
            } else {
                "s have data"
            }
        )
    })
}

/// One site's backups, as `hostyard status` shows them (a row of the text
/// table, an element of the JSON's `backups`).
#[derive(Debug, Serialize)]
struct BackupRow {
    domain: String,
    /// "ok", "STALE" (the last good backup is older than twice
    /// `backup.schedule`'s interval) or "NEVER" (none recorded here).
    state: &'static str,
    /// Unix time the last good backup finished; null when there is none.
    last_good: Option<u64>,
    /// Its snapshot's ID; null when there is none.
    snapshot: Option<String>,
    /// STALE or NEVER: the site needs an operator (exit status 1).
    stale: bool,
}

/// The last good backup of every site with data here, when backups are
/// configured (`None` otherwise).
fn backups(config: &NodeConfig) -> anyhow::Result<Option<Vec<BackupRow>>> {
    use hostyard_backup::state::{now, report, Verdict};
    if !config.backup.enabled() {
        return Ok(None);
    }
    let interval = config.backup.schedule.interval_secs();
    let sites = report(&config.layout(), now(), interval)?;
    let rows = sites
        .into_iter()
        .map(|(domain, verdict)| {
            let stale = verdict.needs_attention();
            let (state, last) = match verdict {
                Verdict::Fresh(l) => ("ok", Some(l)),
                Verdict::Stale(l) => ("STALE", Some(l)),
                Verdict::Never => ("NEVER", None),
            };
            BackupRow {
                domain: domain.as_str().to_string(),
                state,
                last_good: last.as_ref().map(|l| l.time),
                snapshot: last.map(|l| l.snapshot),
                stale,
            }
        })
        .collect();
    Ok(Some(rows))
}

fn print_backups(rows: &[BackupRow]) {
    println!();
    println!(
        "{:<40} {:<8} {:<22} SNAPSHOT",
        "BACKUP OF", "STATE", "LAST GOOD (UTC)"
    );
    for r in rows {
        println!(
            "{:<40} {:<8} {:<22} {}",
            r.domain,
            r.state,
            r.last_good.map_or("-".to_string(), utc),
            r.snapshot
                .as_deref()
                .map_or("-", |s| s.get(..8).unwrap_or(s))
        );
    }
}

/// `2026-12-01 13:05:00` for a Unix time.
pub(crate) fn utc(secs: u64) -> String {
    let days = secs / 86_400;
    let rest = secs % 86_400;
    // Days to a civil date (proleptic Gregorian), Howard Hinnant's method.
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_server_with_sites_and_no_backups_is_warned_about() {
        assert_eq!(unprotected_warning(0), None);
        let one = unprotected_warning(1).unwrap();
        assert!(
            one.starts_with("1 site has data on this server and no backups: set backup.repository"),
            "{one}"
        );
        assert!(unprotected_warning(3)
            .unwrap()
            .starts_with("3 sites have data on"));
    }

    #[test]
    fn utc_formats_unix_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}
