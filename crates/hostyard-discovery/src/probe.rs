//! One health check: find the container's address, then ask it over HTTP.
//!
//! Both halves are bounded in time. The original's curl had no timeout, so a
//! container that accepted connections and never answered stalled the whole
//! loop; here `docker inspect` is killed after the check timeout and the HTTP
//! request has a global deadline (connect, send and read together).

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hostyard_core::config::DiscoveryConfig;
use hostyard_core::{Domain, NodeConfig, SiteKind};
use serde::Deserialize;

use crate::health::Outcome;

/// The port every site container serves HTTP on.
pub const SITE_PORT: u16 = 80;

/// Everything one check needs, fixed at start.
#[derive(Clone)]
pub struct Prober {
    docker: PathBuf,
    network: String,
    container: String,
    domain: Domain,
    path: String,
    expect_status: Option<u16>,
    timeout: Duration,
    agent: ureq::Agent,
}

/// The fields of `docker inspect` we read.
#[derive(Deserialize)]
struct Inspected {
    running: bool,
    paused: bool,
    #[serde(default)]
    networks: Option<std::collections::BTreeMap<String, Endpoint>>,
}

#[derive(Deserialize)]
struct Endpoint {
    #[serde(rename = "IPAddress", default)]
    ip_address: String,
}

/// The `docker inspect --format` template: a small JSON object rather than
/// the whole inspect document.
const INSPECT_FORMAT: &str = r#"{"running":{{json .State.Running}},"paused":{{json .State.Paused}},"networks":{{json .NetworkSettings.Networks}}}"#;

impl Prober {
    pub fn new(config: &NodeConfig, kind: SiteKind, domain: &Domain) -> Prober {
        let d: &DiscoveryConfig = &config.discovery;
        let timeout = Duration::from_secs(d.timeout_secs.max(1));
        Prober {
            docker: config.docker.binary.clone(),
            network: config.docker.network.clone(),
            container: kind.container_name(domain),
            domain: domain.clone(),
            path: d.health_path.clone(),
            expect_status: d.expect_status,
            timeout,
            agent: http_agent(timeout),
        }
    }

    pub fn container(&self) -> &str {
        &self.container
    }

    /// Locates the container and checks it answers.
    pub async fn check(&self) -> Outcome {
        let ip = match self.locate().await {
            Ok(ip) => ip,
            Err(why) => return Outcome::Failed(why),
        };
        let this = self.clone();
        // ureq blocks; keep it off the runtime's only thread so that signals
        // and lease keep-alives are served while a check waits.
        let result = tokio::task::spawn_blocking(move || this.ask(ip)).await;
        match result {
            Ok(Ok(())) => Outcome::Healthy(ip),
            Ok(Err(why)) => Outcome::Failed(why),
            Err(e) => Outcome::Failed(format!("check task failed: {e}")),
        }
    }

    /// The container's address on the site network, via `docker inspect`.
    pub async fn locate(&self) -> Result<IpAddr, String> {
        let mut cmd = tokio::process::Command::new(&self.docker);
        cmd.args(["inspect", "--type", "container", "--format", INSPECT_FORMAT])
            .arg("--")
            .arg(&self.container)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let output = match tokio::time::timeout(self.timeout * 2, cmd.output()).await {
            Err(_) => return Err(format!("{} inspect timed out", self.docker.display())),
            Ok(Err(e)) => {
                return Err(format!(
                    "cannot run {}: {e} (is docker installed? see docker.binary in the config)",
                    self.docker.display()
                ))
            }
            Ok(Ok(o)) => o,
        };
        if !output.status.success() {
            let stderr = String::from_utf8_lossy(&output.stderr);
            let line = stderr.lines().next().unwrap_or("").trim();
            if line.contains("No such") {
                return Err(format!("container {} does not exist", self.container));
            }
            return Err(format!("docker inspect {}: {line}", self.container));
        }
        parse_inspect(&output.stdout, &self.container, &self.network)
    }

    /// One HTTP request to the container, blocking, bounded by the timeout.
    fn ask(&self, ip: IpAddr) -> Result<(), String> {
        let url = format!("http://{}{}", SocketAddr::new(ip, SITE_PORT), self.path);
        let response = self
            .agent
            .get(&url)
            .header("Host", self.domain.as_str())
            .call();
        match response {
            Ok(r) => {
                let status = r.status().as_u16();
                if status_is_healthy(status, self.expect_status) {
                    Ok(())
                } else {
                    Err(format!("{url} answered {status}"))
                }
            }
            Err(ureq::Error::Timeout(_)) => Err(format!(
                "{url} did not answer within {}s",
                self.timeout.as_secs()
            )),
            Err(e) => Err(format!("{url}: {e}")),
        }
    }
}

/// An HTTP client with one deadline for the whole exchange, no redirects
/// (a 3xx is an answer), no proxy from the environment and no pooled
/// connections (each check opens a fresh one, as a new visitor would).
pub fn http_agent(timeout: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .timeout_connect(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(0)
        .max_idle_connections_per_host(0)
        .user_agent("hostyard-discovery")
        .build()
        .into()
}

/// 200..=399 unless a specific status is configured.
pub fn status_is_healthy(status: u16, expect: Option<u16>) -> bool {
    match expect {
        Some(want) => status == want,
        None => (200..=399).contains(&status),
    }
}

fn parse_inspect(stdout: &[u8], container: &str, network: &str) -> Result<IpAddr, String> {
    let inspected: Inspected = serde_json::from_slice(stdout).map_err(|e| {
        format!(
            "docker inspect {container} printed something unexpected ({e}): {:?}",
            String::from_utf8_lossy(stdout)
                .chars()
                .take(120)
                .collect::<String>()
        )
    })?;
    if !inspected.running {
        return Err(format!("container {container} is not running"));
    }
    if inspected.paused {
        return Err(format!("container {container} is paused"));
    }
    let endpoint = inspected
        .networks
        .as_ref()
        .and_then(|n| n.get(network))
        .ok_or_else(|| format!("container {container} is not on the docker network {network}"))?;
    endpoint.ip_address.parse().map_err(|_| {
        format!(
            "container {container} has no address on the docker network {network} ({:?})",
            endpoint.ip_address
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn healthy_statuses() {
        for (status, expect, ok) in [
            (200, None, true),
            (301, None, true),
            (399, None, true),
            (199, None, false),
            (404, None, false),
            (500, None, false),
            (503, None, false),
            (204, Some(204), true),
            (200, Some(204), false),
            (418, Some(418), true),
        ] {
            assert_eq!(status_is_healthy(status, expect), ok, "{status} {expect:?}");
        }
    }

    #[test]
    fn reads_the_address_on_the_site_network() {
        let out = br#"{"running":true,"paused":false,"networks":{"bridge":{"IPAddress":"172.17.0.2"},"hostyard":{"IPAddress":"172.18.0.5"}}}"#;
        assert_eq!(
            parse_inspect(out, "static_example.com", "hostyard").unwrap(),
            "172.18.0.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn inspect_problems_are_explained() {
        for (out, needle) in [
            (
                &br#"{"running":false,"paused":false,"networks":{}}"#[..],
                "not running",
            ),
            (
                br#"{"running":true,"paused":true,"networks":{"hostyard":{"IPAddress":"172.18.0.5"}}}"#,
                "paused",
            ),
            (
                br#"{"running":true,"paused":false,"networks":{"bridge":{"IPAddress":"172.17.0.2"}}}"#,
                "not on the docker network hostyard",
            ),
            (
                br#"{"running":true,"paused":false,"networks":null}"#,
                "not on the docker network",
            ),
            (
                br#"{"running":true,"paused":false,"networks":{"hostyard":{"IPAddress":""}}}"#,
                "no address",
            ),
            (b"garbage", "unexpected"),
        ] {
            let err = parse_inspect(out, "static_example.com", "hostyard").unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }
}
