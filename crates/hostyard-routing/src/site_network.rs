//! Where sites live, read from the server itself: the subnet and gateway of
//! the Docker network every site container joins (`docker.network`), and the
//! server's own addresses. confd and `hostyard status` build the same
//! [`AllowedNetworks`] from them, so both judge a registration alike.

use std::io::Read;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hostyard_core::NodeConfig;
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
        bail!("docker network inspect {name}: {}", err.trim());
    }
    parse_ipam(&out).map(Some)
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
    let mut server = own_addresses();
    let (subnets, trouble) = match docker_network(config) {
        Ok(Some(net)) => {
            server.extend(net.gateways);
            (net.subnets, None)
        }
        Ok(None) => (
            Vec::new(),
            Some(format!(
                "docker network {} does not exist yet (the first site start creates it)",
                config.docker.network
            )),
        ),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let trouble = trouble.filter(|_| config.confd.allowed_networks.is_empty());
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
    (allowed, trouble)
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
    fn own_addresses_include_loopback() {
        assert!(own_addresses().contains(&"127.0.0.1".parse().unwrap()));
    }
}
