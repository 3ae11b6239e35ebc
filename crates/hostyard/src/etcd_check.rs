//! `hostyard etcd placement` and `hostyard etcd check`: where a server's
//! etcd is, and whether a cluster elsewhere answers, for `scripts/setup.sh`.
//!
//! setup.sh used to parse the endpoint URLs and etcd's `/health` JSON in
//! bash. The endpoints come from the node config's parser here, and a
//! member counts as healthy when it answers a linearizable read through
//! the same etcd client the services use: that needs a leader and a
//! quorum, what `/health` reports, and it is exactly what confd and
//! discovery will ask of it.

use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use hostyard_config::EtcdConfig;

/// Where this server's etcd member is, as `hostyard etcd placement` says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Placement {
    /// Every endpoint is on this server's loopback: it runs its own member.
    Local,
    /// Some endpoint is elsewhere: it joins that cluster and runs none.
    Cluster,
}

impl Placement {
    pub fn of(endpoints: &[String]) -> Placement {
        if endpoints.iter().all(|e| is_loopback(e)) {
            Placement::Local
        } else {
            Placement::Cluster
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Placement::Local => "local",
            Placement::Cluster => "cluster",
        }
    }
}

/// Whether an endpoint URL (`http://127.0.0.1:2379`, `https://[::1]:2379`,
/// `http://user@localhost`) names this server's loopback. Anything that
/// does not parse is taken as elsewhere: setup then checks that it answers.
pub fn is_loopback(url: &str) -> bool {
    let Some((_, rest)) = url.split_once("://") else {
        return false;
    };
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match host_port.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((host, _)) => host,
            None => return false,
        },
        None => host_port.split(':').next().unwrap_or_default(),
    };
    host.eq_ignore_ascii_case("localhost")
        || host.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// How long one probe of one endpoint may take.
const PROBE_TIMEOUT: Duration = Duration::from_secs(3);

/// Pause between rounds while no endpoint answers.
const ROUND_PAUSE: Duration = Duration::from_secs(1);

/// What a check found: the endpoints that answered and, for each that did
/// not, why.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Health {
    pub healthy: Vec<String>,
    pub failed: Vec<(String, String)>,
}

impl Health {
    /// `URL (why) URL (why)`, as setup prints them.
    pub fn failed_line(&self) -> String {
        self.failed
            .iter()
            .map(|(url, why)| format!("{url} ({why})"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Probes every endpoint at once, round after round, until at least one
/// answers (the etcd client fails over between them, so one is enough) or
/// `timeout` has passed; returns the last round's result.
pub fn check(etcd: &EtcdConfig, timeout: Duration) -> anyhow::Result<Health> {
    hostyard_etcd::block_on(async {
        let deadline = Instant::now() + timeout;
        loop {
            let health = round(etcd, deadline).await;
            let left = deadline.saturating_duration_since(Instant::now());
            if !health.healthy.is_empty() || left.is_zero() {
                return Ok(health);
            }
            tokio::time::sleep(left.min(ROUND_PAUSE)).await;
        }
    })
}

async fn round(etcd: &EtcdConfig, deadline: Instant) -> Health {
    let endpoints = &etcd.endpoints;
    let left = deadline
        .saturating_duration_since(Instant::now())
        .clamp(Duration::from_millis(500), PROBE_TIMEOUT);
    let probes: Vec<_> = endpoints
        .iter()
        .map(|e| tokio::spawn(probe(etcd.clone(), e.clone(), left)))
        .collect();
    let mut health = Health::default();
    for (endpoint, probe) in endpoints.iter().zip(probes) {
        match probe.await {
            Ok(Ok(())) => health.healthy.push(endpoint.clone()),
            Ok(Err(why)) => health.failed.push((endpoint.clone(), why)),
            Err(e) => health.failed.push((endpoint.clone(), e.to_string())),
        }
    }
    health
}

/// One linearizable read at `endpoint` alone.
async fn probe(etcd: EtcdConfig, endpoint: String, timeout: Duration) -> Result<(), String> {
    let attempt = async {
        let mut client = hostyard_etcd::connect_to(&etcd, std::slice::from_ref(&endpoint)).await?;
        // A count-only read of hostyard's whole range: an answer, not data,
        // and with etcd's RBAC a check of this server's permission too (its
        // role grants exactly that range; a revoked user is refused here).
        let root = hostyard_core::etcd::Schema::new(&etcd.prefix).root_prefix();
        client
            .get(
                root,
                Some(GetOptions::new().with_prefix().with_count_only()),
            )
            .await?;
        Ok::<(), etcd_client::Error>(())
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(error_line(&e)),
        Err(_) => Err(format!("no answer within {} ms", timeout.as_millis())),
    }
}

/// An etcd client error as a short line: a gRPC status's message and the
/// innermost cause (`tcp connect error: Connection refused (os error
/// 111)`), not the status's whole debug form.
fn error_line(error: &etcd_client::Error) -> String {
    let (mut line, mut next): (String, Option<&dyn std::error::Error>) = match error {
        etcd_client::Error::GRpcStatus(status) => (
            status.message().to_string(),
            std::error::Error::source(status),
        ),
        other => (other.to_string(), std::error::Error::source(other)),
    };
    let mut innermost = None;
    while let Some(e) = next {
        innermost = Some(e);
        next = e.source();
    }
    if let Some(cause) = innermost.map(|e| e.to_string()) {
        if !line.contains(&cause) {
            line = format!("{line}: {cause}");
        }
    }
    line.replace('\n', " ")
}

/// How many days before its end this server's etcd certificate is warned
/// about: `deploy/ca.sh` issues a new one from the same day on (its
/// RENEW_DAYS), so the warning names the step that renews it.
pub const CERT_WARN_DAYS: i64 = 30;

/// The warning for the etcd certificate at `path` of server `node`, which
/// ends at `not_after` (Unix time), at `now`; `None` while it lasts longer
/// than [`CERT_WARN_DAYS`].
pub fn cert_warning(path: &Path, node: &str, not_after: i64, now: i64) -> Option<String> {
    let left = not_after - now;
    if left > CERT_WARN_DAYS * 86_400 {
        return None;
    }
    let when = if left > 0 {
        let days = left / 86_400;
        format!(
            "ends in {}, at {} UTC",
            if days == 0 {
                "less than a day".to_string()
            } else if days == 1 {
                "1 day".to_string()
            } else {
                format!("{days} days")
            },
            crate::status::utc(not_after.max(0) as u64)
        )
    } else {
        format!(
            "ended at {} UTC: etcd refuses it",
            crate::status::utc(not_after.max(0) as u64)
        )
    };
    Some(format!(
        "this server's etcd certificate {} {when}; on the jump box run \
         deploy/server.sh add {node}: it issues a new one and rolls it out \
         (docs/fleet.md, \"Renewing the fleet certificates\")",
        path.display()
    ))
}

/// [`cert_warning`] for the node config's `etcd.cert_file` now; `None`
/// without one (etcd on loopback over plain http). A file that cannot be
/// read as a certificate is warned about too: no client can use it.
pub fn cert_warning_now(config: &hostyard_config::NodeConfig) -> Option<String> {
    let path = &config.etcd.cert_file;
    if path.as_os_str().is_empty() {
        return None;
    }
    let not_after = match std::fs::read(path) {
        Ok(pem) => hostyard_tls::check::not_after(&pem),
        Err(e) => {
            return Some(format!(
                "cannot read this server's etcd certificate {}: {e}",
                path.display()
            ))
        }
    };
    let Some(not_after) = not_after else {
        return Some(format!(
            "this server's etcd certificate {} holds no certificate that can be read; \
             on the jump box run deploy/server.sh add {}",
            path.display(),
            config.node_name()
        ));
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    cert_warning(path, &config.node_name(), not_after, now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_certificate_is_warned_about_from_30_days_before_its_end() {
        let path = Path::new("/etc/hostyard/etcd/server.pem");
        let now = 1_800_000_000;
        let day = 86_400;
        assert_eq!(cert_warning(path, "n2", now + 31 * day, now), None);
        assert_eq!(cert_warning(path, "n2", now + 30 * day + 1, now), None);
        let w = cert_warning(path, "n2", now + 30 * day, now).expect("30 days");
        assert!(w.contains("ends in 30 days"), "{w}");
        assert!(w.contains("/etc/hostyard/etcd/server.pem"), "{w}");
        assert!(w.contains("deploy/server.sh add n2"), "{w}");
        let w = cert_warning(path, "n2", now + day + 5, now).expect("1 day");
        assert!(w.contains("ends in 1 day,"), "{w}");
        let w = cert_warning(path, "n2", now + 5, now).expect("hours");
        assert!(w.contains("ends in less than a day"), "{w}");
        let w = cert_warning(path, "n2", now, now).expect("ended");
        assert!(
            w.contains("ended at") && w.contains("etcd refuses it"),
            "{w}"
        );
        assert!(w.contains("deploy/server.sh add n2"), "{w}");
    }

    #[test]
    fn loopback_endpoints() {
        for url in [
            "http://127.0.0.1:2379",
            "http://127.3.4.5:2379/",
            "https://localhost:2379",
            "http://LOCALHOST",
            "http://[::1]:2379",
            "http://user:pw@127.0.0.1:2379",
        ] {
            assert!(is_loopback(url), "{url}");
        }
        for url in [
            "http://10.0.0.5:2379",
            "http://etcd.example:2379",
            "http://[fd00::1]:2379",
            "http://127.0.0.1.example:2379",
            "http://[::1",
            "127.0.0.1:2379",
            "http://localhost@10.0.0.5:2379",
        ] {
            assert!(!is_loopback(url), "{url}");
        }
    }

    #[test]
    fn placement_is_local_only_when_every_endpoint_is() {
        let local = ["http://127.0.0.1:2379".to_string()];
        let mixed = [local[0].clone(), "http://10.0.0.5:2379".to_string()];
        assert_eq!(Placement::of(&local), Placement::Local);
        assert_eq!(Placement::of(&mixed), Placement::Cluster);
    }
}
