//! One health check: find the container's address, then ask it over HTTP.
//!
//! Both halves are bounded in time. The original's curl had no timeout, so a
//! container that accepted connections and never answered stalled the whole
//! loop; here the docker engine's answer and the HTTP request each have the
//! check timeout as a deadline (connect, send and read together).
//!
//! The address comes from the docker engine's API over its unix socket
//! (bollard), not from a `docker inspect` process per check: twenty sites
//! starting at once made twenty CLI processes a second compete for two cores,
//! and the checks timed out.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bollard::errors::Error as DockerError;
use bollard::models::ContainerInspectResponse;
use bollard::Docker;
use hostyard_config::DiscoveryConfig;
use hostyard_config::NodeConfig;
use hostyard_core::{Domain, SiteKind};
use tokio::sync::OnceCell;

use crate::health::Outcome;

/// The port every site container serves HTTP on.
pub const SITE_PORT: u16 = 80;

/// Where the docker engine listens unless `DOCKER_HOST` says otherwise
/// (Debian's docker.socket; /var/run is a link to /run).
pub const DEFAULT_DOCKER_SOCKET: &str = "/run/docker.sock";

/// Everything one check needs, fixed at start.
#[derive(Clone)]
pub struct Prober {
    docker: Arc<Engine>,
    network: String,
    container: String,
    domain: Domain,
    path: String,
    expect_status: Option<u16>,
    timeout: Duration,
    agent: ureq::Agent,
}

/// The docker engine's API, connected on first use: the engine may start
/// after discovery, and a failed first contact is retried by the next check.
struct Engine {
    socket: PathBuf,
    client: OnceCell<Docker>,
}

impl Engine {
    /// The client, made on first use. bollard 0.21 sends its requests over
    /// a unix socket without the `/v1.xx` prefix (checked with strace), so
    /// the engine answers in its own current API version and no version
    /// negotiation is needed: the fields read here (State.Running,
    /// State.Paused, NetworkSettings.Networks.*.IPAddress) are the same in
    /// every version from Docker 1.12 to 29. The discovery tests would catch
    /// a bollard that starts asking for a version the engine refuses.
    async fn client(&self, timeout: Duration) -> Result<&Docker, String> {
        self.client
            .get_or_try_init(|| async {
                let socket = self.socket.to_str().ok_or_else(|| {
                    format!("the docker socket path {:?} is not UTF-8", self.socket)
                })?;
                // bollard's own deadline (whole seconds) a second later
                // than ours, so that ours is the one that ends a request.
                Docker::connect_with_unix(
                    socket,
                    timeout.as_secs() + 1,
                    bollard::API_DEFAULT_VERSION,
                )
                .map_err(|e| self.explain(&e, "connect to"))
            })
            .await
    }

    /// One line naming what went wrong and where to look.
    fn explain(&self, e: &DockerError, doing: &str) -> String {
        let socket = self.socket.display();
        match e {
            DockerError::SocketNotFoundError(_) => {
                format!("no docker engine at {socket} (is docker running? DOCKER_HOST=unix:///path names another socket)")
            }
            DockerError::RequestTimeoutError => {
                format!("the docker engine at {socket} did not answer in time")
            }
            DockerError::DockerResponseServerError {
                status_code,
                message,
            } => format!("docker engine at {socket}: {message} ({status_code})"),
            other => format!(
                "cannot {doing} the docker engine at {socket}: {}",
                chain(other)
            ),
        }
    }
}

/// An error and its causes on one line ("client error (Connect): Permission
/// denied (os error 13)"): bollard's own message alone hides the cause.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// The engine's socket: `DOCKER_HOST` when it names a unix socket (as the
/// docker CLI reads it), else [`DEFAULT_DOCKER_SOCKET`].
pub fn docker_socket(docker_host: Option<&str>) -> Result<PathBuf, String> {
    match docker_host.filter(|h| !h.is_empty()) {
        None => Ok(PathBuf::from(DEFAULT_DOCKER_SOCKET)),
        Some(host) => match host.strip_prefix("unix://") {
            Some(path) if Path::new(path).is_absolute() => Ok(PathBuf::from(path)),
            _ => Err(format!(
                "DOCKER_HOST={host:?} is not unix:///absolute/path (discovery reads the docker engine over its unix socket; unset DOCKER_HOST for {DEFAULT_DOCKER_SOCKET})"
            )),
        },
    }
}

impl Prober {
    pub fn new(config: &NodeConfig, kind: SiteKind, domain: &Domain, socket: PathBuf) -> Prober {
        let d: &DiscoveryConfig = &config.discovery;
        let timeout = Duration::from_secs(d.timeout_secs.max(1));
        Prober {
            docker: Arc::new(Engine {
                socket,
                client: OnceCell::new(),
            }),
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

    pub fn socket(&self) -> &Path {
        &self.docker.socket
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

    /// The container's address on the site network, from the engine's
    /// container inspect, within the check timeout (a hung engine must not
    /// hold the checks up for longer; bollard's own timeout is per request
    /// and in whole seconds).
    pub async fn locate(&self) -> Result<IpAddr, String> {
        let inspect = async {
            let docker = self.docker.client(self.timeout).await?;
            match docker.inspect_container(&self.container, None).await {
                Ok(inspected) => Ok(inspected),
                Err(DockerError::DockerResponseServerError {
                    status_code: 404, ..
                }) => Err(format!("container {} does not exist", self.container)),
                Err(e) => Err(self.docker.explain(&e, "inspect the container through")),
            }
        };
        match tokio::time::timeout(self.timeout, inspect).await {
            Ok(inspected) => address_on(&inspected?, &self.container, &self.network),
            Err(_) => Err(format!(
                "the docker engine at {} did not answer within {}s",
                self.docker.socket.display(),
                self.timeout.as_secs()
            )),
        }
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
        // Any answer below 500 means the server is up: a static site
        // without an index.html answers 404 at `/`, and must be routed.
        None => (200..=499).contains(&status),
    }
}

/// The address on `network` of a running, unpaused container.
fn address_on(
    inspected: &ContainerInspectResponse,
    container: &str,
    network: &str,
) -> Result<IpAddr, String> {
    let state = inspected.state.as_ref();
    if !state.and_then(|s| s.running).unwrap_or(false) {
        return Err(format!("container {container} is not running"));
    }
    if state.and_then(|s| s.paused).unwrap_or(false) {
        return Err(format!("container {container} is paused"));
    }
    let endpoint = inspected
        .network_settings
        .as_ref()
        .and_then(|n| n.networks.as_ref())
        .and_then(|n| n.get(network))
        .ok_or_else(|| format!("container {container} is not on the docker network {network}"))?;
    let ip = endpoint.ip_address.as_deref().unwrap_or("");
    ip.parse().map_err(|_| {
        format!("container {container} has no address on the docker network {network} ({ip:?})")
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
            (404, None, true),
            (499, None, true),
            (500, None, false),
            (503, None, false),
            (204, Some(204), true),
            (200, Some(204), false),
            (418, Some(418), true),
        ] {
            assert_eq!(status_is_healthy(status, expect), ok, "{status} {expect:?}");
        }
    }

    /// A container inspect as the engine sends it (the fields we read).
    fn inspected(json: &str) -> ContainerInspectResponse {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn reads_the_address_on_the_site_network() {
        let out = inspected(
            r#"{"State":{"Status":"running","Running":true,"Paused":false},
                "NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2"},"hostyard":{"IPAddress":"172.18.0.5"}}}}"#,
        );
        assert_eq!(
            address_on(&out, "static_example.com", "hostyard").unwrap(),
            "172.18.0.5".parse::<IpAddr>().unwrap()
        );
    }

    #[test]
    fn inspect_problems_are_explained() {
        for (out, needle) in [
            (
                r#"{"State":{"Running":false,"Paused":false},"NetworkSettings":{"Networks":{}}}"#,
                "not running",
            ),
            (r#"{}"#, "not running"),
            (
                r#"{"State":{"Running":true,"Paused":true},"NetworkSettings":{"Networks":{"hostyard":{"IPAddress":"172.18.0.5"}}}}"#,
                "paused",
            ),
            (
                r#"{"State":{"Running":true,"Paused":false},"NetworkSettings":{"Networks":{"bridge":{"IPAddress":"172.17.0.2"}}}}"#,
                "not on the docker network hostyard",
            ),
            (
                r#"{"State":{"Running":true,"Paused":false},"NetworkSettings":{"Networks":null}}"#,
                "not on the docker network",
            ),
            (
                r#"{"State":{"Running":true,"Paused":false},"NetworkSettings":{"Networks":{"hostyard":{"IPAddress":""}}}}"#,
                "no address",
            ),
        ] {
            let err = address_on(&inspected(out), "static_example.com", "hostyard").unwrap_err();
            assert!(err.contains(needle), "{err}");
        }
    }

    #[test]
    fn the_socket_comes_from_docker_host_or_the_default() {
        assert_eq!(
            docker_socket(None).unwrap(),
            PathBuf::from(DEFAULT_DOCKER_SOCKET)
        );
        assert_eq!(
            docker_socket(Some("")).unwrap(),
            PathBuf::from(DEFAULT_DOCKER_SOCKET)
        );
        assert_eq!(
            docker_socket(Some("unix:///var/run/other.sock")).unwrap(),
            PathBuf::from("/var/run/other.sock")
        );
        for bad in [
            "tcp://127.0.0.1:2375",
            "unix://relative.sock",
            "/run/docker.sock",
        ] {
            let err = docker_socket(Some(bad)).unwrap_err();
            assert!(err.contains("DOCKER_HOST") && err.contains(bad), "{err}");
        }
    }
}
