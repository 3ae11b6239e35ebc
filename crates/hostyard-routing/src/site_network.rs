//! Where sites live, read from the server itself: the subnet and gateway of
//! the Docker network every site container joins (`docker.network`), and the
//! server's own addresses. confd and `hostyard status` build the same
//! [`AllowedNetworks`] from them, so both judge a registration alike.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use ipnet::IpNet;

use crate::AllowedNetworks;

/// Bound of one `docker network inspect`: a hung daemon must not stall
/// confd's loop.
const DOCKER_TIMEOUT: Duration = Duration::from_secs(5);

/// The sites' Docker network as its IPAM config describes it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SiteNetwork {
    pub subnets: Vec<IpNet>,
    pub gateways: Vec<IpAddr>,
}

/// Parses the output of the inspect template below: one `SUBNET GATEWAY`
/// line per IPAM config (the gateway may be missing).
fn parse_ipam(text: &str) -> Result<SiteNetwork> {
    let mut net = SiteNetwork::default();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let mut fields = line.split_whitespace();
        if let Some(subnet) = fields.next() {
            net.subnets.push(
                subnet
                    .parse()
                    .with_context(|| format!("docker gave {subnet:?} as a subnet"))?,
            );
        }
        if let Some(gateway) = fields.next() {
            net.gateways.push(
                gateway
                    .parse()
                    .with_context(|| format!("docker gave {gateway:?} as a gateway"))?,
            );
        }
    }
    Ok(net)
}

/// The subnets and gateways of Docker network `name`; `None` when it does
/// not exist yet (the first site start creates it).
pub fn docker_network(config: &NodeConfig) -> Result<Option<SiteNetwork>> {
    let name = &config.docker.network;
    let mut child = Command::new(&config.docker.binary)
        .args([
            "network",
            "inspect",
            "--format",
            "{{range .IPAM.Config}}{{.Subnet}} {{.Gateway}}{{println}}{{end}}",
            "--",
            name,
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", config.docker.binary.display()))?;
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > DOCKER_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "docker network inspect {name}: no answer within {} s",
                DOCKER_TIMEOUT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let mut out = String::new();
    let mut err = String::new();
    if let Some(mut o) = child.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    if let Some(mut e) = child.stderr.take() {
        e.read_to_string(&mut err)?;
    }
    if !status.success() {
        if err.to_ascii_lowercase().contains("no such network") || err.contains("not found") {
            return Ok(None);
        }
        bail!("{}", inspect_failure(name, &status.to_string(), &err));
    }
    parse_ipam(&out).map(Some)
}

/// Why an inspect failed: how it ended (an exit status, or the signal
/// that ended it, which leaves stderr empty) and what it said.
fn inspect_failure(name: &str, status: &str, stderr: &str) -> String {
    let said = stderr.trim();
    if said.is_empty() {
        format!("docker network inspect {name} ended with {status} and said nothing")
    } else {
        format!("docker network inspect {name} ended with {status}: {said}")
    }
}

/// Every address of this server's interfaces.
pub fn own_addresses() -> Vec<IpAddr> {
    let Ok(addrs) = nix::ifaddrs::getifaddrs() else {
        return Vec::new();
    };
    addrs
        .filter_map(|a| a.address)
        .filter_map(|s| {
            s.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| s.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .collect()
}

/// What confd and `hostyard status` allow: the configured networks, else
/// the sites' Docker network; never the server itself. The second value
/// says why the sites' network is unknown, if it is.
pub fn allowed_networks(config: &NodeConfig) -> (AllowedNetworks, Option<String>) {
    let (net, trouble) = match docker_network(config) {
        Ok(Some(net)) => (Some(net), None),
        Ok(None) => (None, Some(absent(config))),
        Err(e) => (None, Some(format!("{e:#}"))),
    };
    let trouble = trouble.filter(|_| config.confd.allowed_networks.is_empty());
    (allowed_in(config, net.as_ref()), trouble)
}

/// Why the sites' network is unknown when Docker says it does not exist.
pub fn absent(config: &NodeConfig) -> String {
    format!(
        "docker network {} does not exist yet (the first site start creates it)",
        config.docker.network
    )
}

/// What is allowed given the sites' network `net` (`None`: unknown, so
/// only `confd.allowed_networks`); never the server itself.
pub fn allowed_in(config: &NodeConfig, net: Option<&SiteNetwork>) -> AllowedNetworks {
    let mut server = own_addresses();
    let subnets = match net {
        Some(net) => {
            server.extend(net.gateways.iter().copied());
            net.subnets.clone()
        }
        None => Vec::new(),
    };
    let allowed = AllowedNetworks::new(&config.confd.allowed_networks, &subnets, &server);
    let allowed = match config.fleet.private_address {
        Some(_) => allowed.with_fleet(
            &config.node_name(),
            config
                .fleet
                .peers
                .iter()
                .map(|p| {
                    (
                        p.name.clone(),
                        SocketAddr::new(p.address, config.fleet.peer_port),
                    )
                })
                .collect(),
        ),
        None => allowed,
    };
    allowed
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipam_lines_give_subnets_and_gateways() {
        let net = parse_ipam("172.18.0.0/16 172.18.0.1\nfd00::/64 \n\n").unwrap();
        assert_eq!(
            net.subnets,
            [
                "172.18.0.0/16".parse::<IpNet>().unwrap(),
                "fd00::/64".parse().unwrap()
            ]
        );
        assert_eq!(net.gateways, ["172.18.0.1".parse::<IpAddr>().unwrap()]);
        assert!(parse_ipam("172.18.0.0/33 x\n").is_err());
    }

    #[test]
    fn a_failed_inspect_says_how_it_ended_even_when_it_said_nothing() {
        // Killed by a signal sent to the whole unit: no stderr at all.
        assert_eq!(
            inspect_failure("hostyard", "signal: 1 (SIGHUP)", ""),
            "docker network inspect hostyard ended with signal: 1 (SIGHUP) and said nothing"
        );
        assert_eq!(
            inspect_failure(
                "hostyard",
                "exit status: 1",
                "Cannot connect to the Docker daemon\n"
            ),
            "docker network inspect hostyard ended with exit status: 1: \
             Cannot connect to the Docker daemon"
        );
    }

    #[test]
    fn own_addresses_include_loopback() {
        assert!(own_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
