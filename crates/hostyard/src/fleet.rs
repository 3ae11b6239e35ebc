//! The fleet as the jump box sees it: the inventory file (servers, sites and
//! where each site lives) and the etcd administration `deploy/` needs, done
//! with the fleet's root identity (users, roles, members).
//!
//! The inventory is YAML, parsed and checked here so that `deploy/`'s
//! scripts only ask questions (`hostyard fleet servers`, `sites`) and never
//! parse it in shell.

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use etcd_client::{Client, MemberAddOptions, Permission, PermissionType, UserAddOptions};
use hostyard_config::{is_server_name, EtcdTlsPem};
use hostyard_core::etcd::prefix_end;
use hostyard_core::{Domain, SiteKind};
use serde::{Deserialize, Serialize};

/// The role of a server in the fleet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Runs an etcd member (3, or 5, per fleet) besides its sites.
    Member,
    /// Runs sites only and uses the members' etcd over TLS.
    Client,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Client => "client",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Server {
    /// A short name (letters, digits, `-`): the server's `node_name` and
    /// its etcd member's name.
    pub name: String,
    /// Where ssh reaches it, `[user@]host`; its host key must be in the
    /// pinned known_hosts next to the inventory.
    pub ssh: String,
    /// Its address on the fleet's private network: etcd's peer and client
    /// traffic.
    pub private: IpAddr,
    pub role: Role,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Site {
    pub domain: String,
    pub kind: String,
    /// The name of the server it lives on.
    pub server: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    pub servers: Vec<Server>,
    #[serde(default)]
    pub sites: Vec<Site>,
}

/// `[user@]host`: no option, no space, nothing ssh would read as a flag.
fn is_ssh_destination(ssh: &str) -> bool {
    !ssh.is_empty()
        && !ssh.starts_with('-')
        && ssh
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "@.-_:[]".contains(c))
}

impl Inventory {
    pub fn load(path: &Path) -> Result<Inventory> {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("cannot read {}", path.display()))?;
        Inventory::parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Inventory> {
        let inv: Inventory = yaml_serde::from_str(text)?;
        let mut names = BTreeSet::new();
        let mut addresses = BTreeSet::new();
        for s in &inv.servers {
            if !is_server_name(&s.name) {
                bail!(
                    "servers: {:?} is not a server name; use lower-case letters, digits and -",
                    s.name
                );
            }
            if !is_ssh_destination(&s.ssh) {
                bail!(
                    "servers: {}: ssh {:?} is not an ssh destination like root@203.0.113.10",
                    s.name,
                    s.ssh
                );
            }
            if !names.insert(s.name.as_str()) {
                bail!("servers: {} is listed twice", s.name);
            }
            if !addresses.insert(s.private) {
                bail!(
                    "servers: {}: private address {} is another server's too",
                    s.name,
                    s.private
                );
            }
        }
        if !inv.servers.iter().any(|s| s.role == Role::Member) {
            bail!("servers: no server has role member; etcd needs 3 (or 5) members, 1 for a test");
        }
        let mut domains = BTreeSet::new();
        for site in &inv.sites {
            let domain = Domain::parse_instance(&site.domain)
                .map_err(|e| anyhow!("sites: {:?}: {e}", site.domain))?;
            site.kind
                .parse::<SiteKind>()
                .map_err(|e| anyhow!("sites: {domain}: {e}"))?;
            if !names.contains(site.server.as_str()) {
                bail!(
                    "sites: {domain}: server {:?} is not in servers; add it there first",
                    site.server
                );
            }
            if !domains.insert(domain) {
                bail!(
                    "sites: {} is listed twice; a site lives on one server",
                    site.domain
                );
            }
        }
        Ok(inv)
    }

    pub fn server(&self, name: &str) -> Result<&Server> {
        self.servers
            .iter()
            .find(|s| s.name == name)
            .ok_or_else(|| anyhow!("server {name:?} is not in the inventory"))
    }

    pub fn members(&self) -> impl Iterator<Item = &Server> {
        self.servers.iter().filter(|s| s.role == Role::Member)
    }

    /// The index of `domain`'s entry under `sites:` (compared as canonical
    /// names, so `Example.com` finds `example.com`).
    fn site_index(&self, domain: &str) -> Result<usize> {
        let wanted = Domain::parse_instance(&domain.to_ascii_lowercase())
            .map_err(|e| anyhow!("{domain:?}: {e}"))?;
        self.sites
            .iter()
            .position(|s| Domain::parse_instance(&s.domain).is_ok_and(|d| d == wanted))
            .ok_or_else(|| {
                anyhow!("site {domain} is not in the inventory; add it under sites: first")
            })
    }
}

/// What [`set_site_server`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum SiteServer {
    /// The inventory named that server already; nothing was written.
    Unchanged,
    /// The site's entry now names the new server; it named `from`.
    Moved { from: String },
}

/// Makes the inventory at `path` say that `domain` lives on `server`, as
/// `deploy/site.sh move` does once the site serves there. The inventory is
/// the operator's file, so it is edited through a lossless YAML syntax tree
/// (`yaml-edit`): only that entry's `server:` value changes, and comments,
/// order and style stay. The result is parsed again and must equal the old
/// inventory with that one change; otherwise (a layout the editor cannot
/// change in place, say an alias) the whole inventory is rendered from the
/// typed [`Inventory`] instead, checked the same way. The file is replaced
/// atomically with its mode kept; on any error nothing is written.
pub fn set_site_server(path: &Path, domain: &str, server: &str) -> Result<SiteServer> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    let inv = Inventory::parse(&text).map_err(|e| anyhow!("{}: {e:#}", path.display()))?;
    let index = inv.site_index(domain)?;
    inv.server(server)
        .map_err(|e| anyhow!("{e}; add it under servers: first"))?;
    let from = inv.sites[index].server.clone();
    if from == server {
        return Ok(SiteServer::Unchanged);
    }
    let mut wanted = inv.clone();
    wanted.sites[index].server = server.to_string();
    let is_wanted = |t: &str| Inventory::parse(t).is_ok_and(|i| i == wanted);
    let new_text = match edit_site_server(&text, index, server) {
        Some(edited) if is_wanted(&edited) => edited,
        _ => {
            let plain = format!(
                "# Written by `hostyard fleet set-server`, which could not change this site's\n\
                 # entry in place (comments were not kept).\n{}",
                yaml_serde::to_string(&wanted).context("cannot write the inventory as YAML")?
            );
            if !is_wanted(&plain) {
                bail!(
                    "cannot rewrite {} so that it stays valid; nothing was written",
                    path.display()
                );
            }
            plain
        }
    };
    let mode = std::fs::metadata(path)
        .with_context(|| format!("cannot read {}", path.display()))?
        .permissions()
        .mode()
        & 0o7777;
    hostyard_fs::AtomicWrite::new(mode)
        .write(path, new_text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(SiteServer::Moved { from })
}

/// `text` with the `server:` of the `index`th entry under `sites:` set to
/// `server`, through a lossless syntax tree; `None` when the editor cannot
/// find that entry.
fn edit_site_server(text: &str, index: usize, server: &str) -> Option<String> {
    use std::str::FromStr;
    let doc = yaml_edit::Document::from_str(text).ok()?;
    let sites = doc.as_mapping()?.get_sequence("sites")?;
    let site = sites.get(index)?;
    site.as_mapping()?.set("server", server);
    Some(doc.to_string())
}

/// Where a server keeps its etcd TLS files (written by `deploy/`).
pub const TLS_DIR: &str = "/etc/hostyard/etcd";

/// The DNS name that only members' certificates carry (`deploy/ca.sh`
/// issue NAME IP member adds it, as its MEMBER_NAME): a member takes a peer
/// only with it, so a client's certificate, of the same CA, is refused on
/// the peer port. The dot keeps it from being any server's name.
pub const MEMBER_PEER_NAME: &str = "member.hostyard-fleet";

fn url(address: IpAddr, port: u16) -> String {
    match address {
        IpAddr::V4(a) => format!("https://{a}:{port}"),
        IpAddr::V6(a) => format!("https://[{a}]:{port}"),
    }
}

/// The fleet's part of a server's node config (`node_name`, `etcd`,
/// `fleet`), the drop-in `hostyard.yaml.d/fleet.yaml` that `deploy/` owns:
/// a member uses its own member on loopback (setup.sh then runs it), a
/// client every member's private address. The server's one certificate of
/// the fleet CA is its etcd identity and its peers' proof alike.
pub fn node_config(inv: &Inventory, name: &str) -> Result<String> {
    let server = inv.server(name)?;
    let endpoints: Vec<String> = match server.role {
        Role::Member => vec!["https://127.0.0.1:2379".to_string()],
        Role::Client => inv.members().map(|m| url(m.private, 2379)).collect(),
    };
    let tls = |file: &str| format!("{TLS_DIR}/{file}");
    let drop_in = DropIn {
        node_name: name,
        etcd: DropInEtcd {
            endpoints,
            ca_file: tls("ca.pem"),
            cert_file: tls("server.pem"),
            key_file: tls("server.key"),
        },
        fleet: DropInFleet {
            private_address: server.private,
            ca_file: tls("ca.pem"),
            cert_file: tls("server.pem"),
            key_file: tls("server.key"),
            // Every other server is a peer: this one forwards requests for
            // their sites to them and takes theirs (docs/fleet.md).
            peers: inv
                .servers
                .iter()
                .filter(|s| s.name != name)
                .map(|s| DropInPeer {
                    name: &s.name,
                    address: s.private,
                })
                .collect(),
        },
    };
    let yaml = yaml_serde::to_string(&drop_in).context("cannot write the drop-in as YAML")?;
    Ok(format!(
        "# Written by deploy/ from the fleet inventory at each `deploy/server.sh add`:\n\
         # edit the inventory, not this file. This server's other settings go in\n\
         # /etc/hostyard/hostyard.yaml, which deploy/ never writes.\n{yaml}"
    ))
}

/// The keys of the node config the fleet's drop-in sets, named as the
/// node config names them.
#[derive(Serialize)]
struct DropIn<'a> {
    node_name: &'a str,
    etcd: DropInEtcd,
    fleet: DropInFleet<'a>,
}

#[derive(Serialize)]
struct DropInEtcd {
    endpoints: Vec<String>,
    ca_file: String,
    cert_file: String,
    key_file: String,
}

#[derive(Serialize)]
struct DropInFleet<'a> {
    private_address: IpAddr,
    ca_file: String,
    cert_file: String,
    key_file: String,
    peers: Vec<DropInPeer<'a>>,
}

#[derive(Serialize)]
struct DropInPeer<'a> {
    name: &'a str,
    address: IpAddr,
}

/// The settings of a member's etcd (an environment file for Debian's
/// etcd.service): TLS on every listener but the loopback metrics one, the
/// user of a client taken from its certificate, peers checked against the
/// fleet CA and required to name a member ([`MEMBER_PEER_NAME`]). `cluster` is `name=peer-url,...` as `member add` answered, or
/// empty for the first member (a new cluster).
pub fn member_env(inv: &Inventory, name: &str, cluster: &str) -> Result<String> {
    let server = inv.server(name)?;
    if server.role != Role::Member {
        bail!("{name} has role client; only a member runs etcd");
    }
    let peer = url(server.private, 2380);
    let (initial, state) = if cluster.is_empty() {
        (format!("{name}={peer}"), "new")
    } else {
        (cluster.to_string(), "existing")
    };
    let member_dir = "/var/lib/etcd/hostyard-tls";
    Ok(format!(
        "# Written by deploy/ for {name}; setup.sh hands it to etcd.service.\n\
         ETCD_NAME={name}\n\
         ETCD_DATA_DIR=/var/lib/etcd/hostyard\n\
         ETCD_LISTEN_CLIENT_URLS={client},https://127.0.0.1:2379\n\
         ETCD_ADVERTISE_CLIENT_URLS={client}\n\
         ETCD_LISTEN_PEER_URLS={peer}\n\
         ETCD_INITIAL_ADVERTISE_PEER_URLS={peer}\n\
         ETCD_INITIAL_CLUSTER={initial}\n\
         ETCD_INITIAL_CLUSTER_STATE={state}\n\
         ETCD_INITIAL_CLUSTER_TOKEN=hostyard-fleet\n\
         ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381\n\
         ETCD_CLIENT_CERT_AUTH=true\n\
         ETCD_TRUSTED_CA_FILE={TLS_DIR}/ca.pem\n\
         ETCD_CERT_FILE={member_dir}/member.pem\n\
         ETCD_KEY_FILE={member_dir}/member.key\n\
         ETCD_PEER_CLIENT_CERT_AUTH=true\n\
         ETCD_PEER_TRUSTED_CA_FILE={TLS_DIR}/ca.pem\n\
         ETCD_PEER_CERT_FILE={member_dir}/member.pem\n\
         ETCD_PEER_KEY_FILE={member_dir}/member.key\n\
         ETCD_PEER_CERT_ALLOWED_HOSTNAME={MEMBER_PEER_NAME}\n",
        client = url(server.private, 2379),
    ))
}

/// The fleet's root identity on the jump box: `FLEET/ca/`.
pub struct RootIdentity {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl RootIdentity {
    pub fn in_fleet(fleet: &Path) -> RootIdentity {
        let ca = fleet.join("ca");
        RootIdentity {
            ca: ca.join("ca.pem"),
            cert: ca.join("root.pem"),
            key: ca.join("root.key"),
        }
    }
}

/// One administration step against the cluster at `endpoint`, as root.
pub struct Admin {
    rt: tokio::runtime::Runtime,
    client: Client,
}

impl Admin {
    pub fn connect(root: &RootIdentity, endpoint: &str) -> Result<Admin> {
        let read =
            |p: &Path| std::fs::read(p).with_context(|| format!("cannot read {}", p.display()));
        let identity = EtcdTlsPem {
            ca: read(&root.ca)?,
            cert: read(&root.cert)?,
            key: read(&root.key)?,
        };
        let rt = hostyard_etcd::runtime()?;
        let client = rt
            .block_on(hostyard_etcd::connect_as(&[endpoint.to_string()], identity))
            .with_context(|| format!("etcd at {endpoint}"))?;
        Ok(Admin { rt, client })
    }

    fn call<T, F, Fut>(&mut self, what: &str, f: F) -> Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let client = self.client.clone();
        self.rt.block_on(hostyard_etcd::bounded(
            what,
            hostyard_etcd::COMMAND_TIMEOUT,
            f(client),
        ))
    }

    /// Turns on etcd's authentication once: the root user (with the root
    /// role, no password: the jump box's certificate is its only way in)
    /// first, as etcd requires. Returns whether anything changed.
    pub fn enable_auth(&mut self) -> Result<bool> {
        let users = self.call("user list", |mut c| async move { c.user_list().await })?;
        let changed = !users.users().iter().any(|u| u == "root");
        if changed {
            self.call("user add root", |mut c| async move {
                c.user_add("root", "", Some(UserAddOptions::new().with_no_pwd()))
                    .await
            })?;
            self.call("grant root", |mut c| async move {
                c.user_grant_role("root", "root").await
            })?;
        }
        // etcd ignores the request when authentication is on already; a
        // run cut short after the root user is finished here.
        self.call("auth enable", |mut c| async move { c.auth_enable().await })?;
        Ok(changed)
    }

    /// The user `user` (a server's certificate's common name) with a role
    /// of the same name that may read and write `{prefix}/` and nothing
    /// else. Returns whether anything changed.
    pub fn grant(&mut self, user: &str, prefix: &str) -> Result<bool> {
        let users = self.call("user list", |mut c| async move { c.user_list().await })?;
        let range = format!("{prefix}/");
        if users.users().iter().any(|u| u == user) {
            let u = user.to_string();
            let roles = self.call(&format!("user get {user}"), |mut c| async move {
                c.user_get(u).await
            })?;
            let mut granted = Vec::new();
            for role in roles.roles() {
                let r = role.clone();
                let got = self.call(&format!("role get {role}"), |mut c| async move {
                    c.role_get(r).await
                })?;
                granted.extend(got.permissions().iter().map(|p| Grant {
                    role: role.clone(),
                    read_write: p.get_type() == PermissionType::Readwrite as i32,
                    key: p.key().to_vec(),
                    range_end: p.range_end().to_vec(),
                }));
            }
            return match grant_differs(user, &range, &granted) {
                None => Ok(false),
                Some(why) => bail!(
                    "{user} exists with other rights than read and write on {range} ({why}): \
                     `hostyard fleet etcd revoke {user}`, then grant again"
                ),
            };
        }
        let u = user.to_string();
        self.call(&format!("role add {user}"), |mut c| async move {
            c.role_add(u).await
        })?;
        let u = user.to_string();
        self.call(&format!("grant {range} to {user}"), |mut c| async move {
            c.role_grant_permission(u, Permission::read_write(range).with_prefix())
                .await
        })?;
        let u = user.to_string();
        self.call(&format!("user add {user}"), |mut c| async move {
            c.user_add(u, "", Some(UserAddOptions::new().with_no_pwd()))
                .await
        })?;
        let (u, r) = (user.to_string(), user.to_string());
        self.call(&format!("user grant {user}"), |mut c| async move {
            c.user_grant_role(u, r).await
        })?;
        Ok(true)
    }

    /// Every user etcd knows.
    pub fn users(&mut self) -> Result<Vec<String>> {
        let users = self.call("user list", |mut c| async move { c.user_list().await })?;
        Ok(users.users().to_vec())
    }

    /// Deletes `user` and its role: a certificate naming it is refused from
    /// then on. Returns whether anything changed.
    pub fn revoke(&mut self, user: &str) -> Result<bool> {
        let mut changed = false;
        let users = self.call("user list", |mut c| async move { c.user_list().await })?;
        if users.users().iter().any(|u| u == user) {
            let u = user.to_string();
            self.call(&format!("user delete {user}"), |mut c| async move {
                c.user_delete(u).await
            })?;
            changed = true;
        }
        let roles = self.call("role list", |mut c| async move { c.role_list().await })?;
        if roles.roles().iter().any(|r| r == user) {
            let r = user.to_string();
            self.call(&format!("role delete {user}"), |mut c| async move {
                c.role_delete(r).await
            })?;
            changed = true;
        }
        Ok(changed)
    }

    /// The members as `name peer-url`, one each; a member added but not yet
    /// started has an empty name.
    pub fn members(&mut self) -> Result<Vec<(u64, String, Vec<String>)>> {
        let list = self.call("member list", |mut c| async move { c.member_list().await })?;
        Ok(list
            .members()
            .iter()
            .map(|m| (m.id(), m.name().to_string(), m.peer_urls().to_vec()))
            .collect())
    }

    /// Promotes the learner `name` to a voting member; fails (etcd says
    /// why) until the learner has caught up with the leader's log, so the
    /// caller retries. Returns whether it was a learner.
    pub fn promote(&mut self, name: &str, peer_url: &str) -> Result<bool> {
        let list = self.call("member list", |mut c| async move { c.member_list().await })?;
        let Some(member) = list
            .members()
            .iter()
            .find(|m| m.name() == name || m.peer_urls().iter().any(|u| u == peer_url))
        else {
            bail!("{name} is no member; add it first");
        };
        if !member.is_learner() {
            return Ok(false);
        }
        let id = member.id();
        self.call(&format!("member promote {name}"), |mut c| async move {
            c.member_promote(id).await
        })?;
        Ok(true)
    }

    /// Adds `name` at `peer_url` unless a member has that peer URL, and
    /// returns the `ETCD_INITIAL_CLUSTER` value its first start needs: every
    /// member's `name=peer-url`, itself included. It joins as a learner: a
    /// member added but not yet started would count against the quorum
    /// (two of two after the first), a learner does not until promoted.
    pub fn member_add(&mut self, name: &str, peer_url: &str) -> Result<(bool, String)> {
        let mut members = self.members()?;
        let known = members
            .iter()
            .any(|(_, _, urls)| urls.iter().any(|u| u == peer_url));
        if !known {
            let urls = vec![peer_url.to_string()];
            let added = self.call(&format!("member add {name}"), |mut c| async move {
                c.member_add(urls, Some(MemberAddOptions::new().with_is_learner()))
                    .await
            })?;
            members = added
                .member_list()
                .iter()
                .map(|m| (m.id(), m.name().to_string(), m.peer_urls().to_vec()))
                .collect();
        }
        let cluster: Vec<String> = members
            .iter()
            .filter_map(|(_, n, urls)| {
                let n = if n.is_empty() { name } else { n.as_str() };
                urls.first().map(|u| format!("{n}={u}"))
            })
            .collect();
        Ok((!known, cluster.join(",")))
    }

    /// Removes the member named `name` (or with `peer_url`); returns
    /// whether there was one.
    pub fn member_remove(&mut self, name: &str, peer_url: &str) -> Result<bool> {
        let members = self.members()?;
        let Some((id, _, _)) = members
            .iter()
            .find(|(_, n, urls)| n == name || urls.iter().any(|u| u == peer_url))
        else {
            return Ok(false);
        };
        let id = *id;
        self.call(&format!("member remove {name}"), |mut c| async move {
            c.member_remove(id).await
        })?;
        Ok(true)
    }
}

/// The peer URL of a member.
pub fn peer_url(server: &Server) -> String {
    url(server.private, 2380)
}

/// One permission an etcd user holds, through one of its roles.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    pub role: String,
    pub read_write: bool,
    pub key: Vec<u8>,
    pub range_end: Vec<u8>,
}

/// Why the rights `user` holds differ from what [`Admin::grant`] gives (its
/// own role, read and write on the keys under `range`, nothing else);
/// `None` when they are the same.
pub fn grant_differs(user: &str, range: &str, granted: &[Grant]) -> Option<String> {
    let wanted = Grant {
        role: user.to_string(),
        read_write: true,
        key: range.as_bytes().to_vec(),
        range_end: prefix_end(range),
    };
    match granted {
        [only] if *only == wanted => None,
        [] => Some("no permission at all".to_string()),
        _ => Some(
            granted
                .iter()
                .map(|g| {
                    format!(
                        "role {} {} {}..{}",
                        g.role,
                        if g.read_write {
                            "readwrite"
                        } else {
                            "read or write"
                        },
                        String::from_utf8_lossy(&g.key),
                        String::from_utf8_lossy(&g.range_end)
                    )
                })
                .collect::<Vec<_>>()
                .join(", "),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant(role: &str, key: &str, end: &str) -> Grant {
        Grant {
            role: role.into(),
            read_write: true,
            key: key.into(),
            range_end: end.into(),
        }
    }

    #[test]
    fn only_the_users_own_role_on_exactly_its_prefix_matches() {
        let user = "hostyard-n1-ab";
        assert_eq!(
            grant_differs(
                user,
                "/hostyard/",
                &[grant(user, "/hostyard/", "/hostyard0")]
            ),
            None
        );
        for granted in [
            vec![],
            vec![grant(user, "/other/", "/other0")],
            vec![grant(user, "/", "0")],
            vec![grant("root", "/hostyard/", "/hostyard0")],
            vec![
                grant(user, "/hostyard/", "/hostyard0"),
                grant(user, "/other/", "/other0"),
            ],
            vec![Grant {
                read_write: false,
                ..grant(user, "/hostyard/", "/hostyard0")
            }],
        ] {
            assert!(
                grant_differs(user, "/hostyard/", &granted).is_some(),
                "{granted:?}"
            );
        }
    }
}
