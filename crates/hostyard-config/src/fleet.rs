//! The `fleet:` section: the other servers, for forwarding.

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::etcd::private_key_mode;

/// The other servers of a fleet, for forwarding: a request for a site
/// another server registered goes to that server's peer frontend, on its
/// private address, with the PROXY protocol. Written by `deploy/` from the
/// inventory (`hostyard fleet node-config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct FleetConfig {
    /// This server's private address: the peer frontend listens there
    /// only. `None`: a single server, no peer frontend.
    pub private_address: Option<IpAddr>,
    /// The peer frontend's port, the same on every server.
    pub peer_port: u16,
    /// The other servers, by node name. Only these are forwarded to, and
    /// only their addresses may send the peer frontend anything.
    pub peers: Vec<FleetPeer>,
    /// The fleet CA's certificate (PEM): a peer's certificate, in either
    /// direction, must be signed by it. Needed with `private_address`.
    pub ca_file: PathBuf,
    /// This server's certificate from the fleet CA (PEM), for serverAuth
    /// and clientAuth, named `hostyard-<node_name>-<hex>` as `deploy/ca.sh`
    /// issues it: presented to the peers it forwards to and to those that
    /// forward to it.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM); refused unless only its owner
    /// may read it (mode 0600 or stricter).
    pub key_file: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FleetPeer {
    pub name: String,
    pub address: IpAddr,
}

impl Default for FleetConfig {
    fn default() -> Self {
        FleetConfig {
            private_address: None,
            peer_port: 8405,
            peers: Vec::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

/// What HAProxy's peer frontend and peers backend need, as HAProxy reads
/// it: this server's certificate with its key in one PEM, and the fleet CA.
pub struct PeerTlsPem {
    pub cert_and_key: Vec<u8>,
    pub ca: Vec<u8>,
}

impl FleetConfig {
    /// The common names of the peers' certificates, as one regular
    /// expression (HAProxy's `-m reg`): `deploy/ca.sh issue` names a
    /// server's certificate `hostyard-<name>-<hex>` (its etcd user too), the
    /// hex new at each issue. `None` when there are no peers.
    pub fn peer_cn_regex(&self) -> Option<String> {
        if self.peers.is_empty() {
            return None;
        }
        // Names are letters, digits and `-` (validated): nothing to escape;
        // the hex has no `-`, so one name never matches another's.
        let names: Vec<&str> = self.peers.iter().map(|p| p.name.as_str()).collect();
        Some(format!("^hostyard-({})-[0-9a-f]+$", names.join("|")))
    }

    /// Reads the fleet TLS files; `None` for a single server (no
    /// `private_address`). The key is refused when others may read it.
    pub fn tls_pem(&self) -> Result<Option<PeerTlsPem>, String> {
        if self.private_address.is_none() {
            return Ok(None);
        }
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("fleet.{field} {}: {e}", path.display()))
        };
        private_key_mode("fleet.key_file", &self.key_file)?;
        let mut cert_and_key = read("cert_file", &self.cert_file)?;
        if !cert_and_key.ends_with(b"\n") {
            cert_and_key.push(b'\n');
        }
        cert_and_key.extend(read("key_file", &self.key_file)?);
        Ok(Some(PeerTlsPem {
            cert_and_key,
            ca: read("ca_file", &self.ca_file)?,
        }))
    }
}
