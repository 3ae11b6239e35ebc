//! `hostyard status`: every site with its kind, address and state (routed /
//! down / conflict / invalid / held), from etcd, HAProxy's runtime map and
//! confd's state file.
//!
//! The work is in `hostyard_routing::status`, next to the routing rules, so
//! the verdicts shown are computed by the same function confd applies.

use hostyard_core::NodeConfig;

/// Prints the server's status as a table or JSON; returns 0 when all is
/// well, 1 when something needs attention (a held change, a rejected
/// config, skipped keys, conflicts, etcd unreachable).
pub fn run(config: &NodeConfig, json: bool) -> anyhow::Result<i32> {
    let routing = hostyard_routing::status::run(config, json)?;
    // JSON consumers get one document: routing's. The backups' table is
    // for the text report (and its exit status for both).
    let backups = backups(config, !json)?;
    Ok(routing.max(backups))
}

/// The last good backup of every site with data here, when backups are
/// configured: a site whose last good backup is older than twice
/// `backup.schedule`'s interval, or that has none, needs attention (1).
fn backups(config: &NodeConfig, print: bool) -> anyhow::Result<i32> {
    use hostyard_backup::state::{now, report, Verdict};
    if !config.backup.enabled() {
        return Ok(0);
    }
    let interval = config.backup.schedule.interval_secs();
    let now = now();
    let sites = report(&config.layout(), now, interval)?;
    if print {
        println!();
        println!(
            "{:<40} {:<8} {:<22} SNAPSHOT",
            "BACKUP OF", "STATE", "LAST GOOD (UTC)"
        );
        for (domain, verdict) in &sites {
            let (state, last) = match verdict {
                Verdict::Fresh(l) => ("ok", Some(l)),
                Verdict::Stale(l) => ("STALE", Some(l)),
                Verdict::Never => ("NEVER", None),
            };
            println!(
                "{:<40} {:<8} {:<22} {}",
                domain.as_str(),
                state,
                last.map_or("-".to_string(), |l| utc(l.time)),
                last.map_or("-", |l| &l.snapshot[..l.snapshot.len().min(8)])
            );
        }
    }
    Ok(i32::from(sites.iter().any(|(_, v)| v.needs_attention())))
}

/// `2026-12-01 13:05:00` for a Unix time.
fn utc(secs: u64) -> String {
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
    #[test]
    fn utc_formats_unix_times() {
        assert_eq!(super::utc(0), "1970-01-01 00:00:00");
        assert_eq!(super::utc(1_795_000_000), "2026-11-18 11:06:40");
        assert_eq!(super::utc(951_782_400), "2000-02-29 00:00:00");
    }
}
