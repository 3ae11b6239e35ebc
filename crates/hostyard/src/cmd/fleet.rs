//! `hostyard fleet`: the inventory's answers and the etcd administration
//! `deploy/` needs, from the jump box.

use std::path::Path;

use clap::Subcommand;

use super::{note, runtime, usage, Failure};

#[derive(Subcommand)]
pub enum FleetAction {
    /// Check the inventory; print how many servers, members and sites.
    Check,
    /// Print `NAME SSH PRIVATE ROLE`, one server a line.
    Servers,
    /// Print `DOMAIN KIND SERVER`, one site a line.
    Sites {
        /// Only the sites of this server.
        #[arg(long)]
        server: Option<String>,
    },
    /// Print the node config of server NAME (its etcd endpoints and TLS files).
    NodeConfig { name: String },
    /// Make the inventory say that site DOMAIN lives on SERVER (deploy/site.sh move does, once it serves there).
    SetServer { domain: String, server: String },
    /// Print the etcd settings of member NAME; CLUSTER as `member-add` printed it, none for the first.
    MemberEnv {
        name: String,
        #[arg(long, default_value = "")]
        cluster: String,
    },
    /// Administer the cluster at ENDPOINT with the fleet's root identity (ca/root.pem).
    Etcd {
        /// A member's client URL, e.g. https://127.0.0.1:2379 through ssh -L.
        #[arg(long)]
        endpoint: String,
        #[command(subcommand)]
        action: FleetEtcdAction,
    },
}

#[derive(Subcommand)]
pub enum FleetEtcdAction {
    /// Create the root user and turn authentication on (once).
    EnableAuth,
    /// Create USER (a server certificate's common name) with a role that may use `PREFIX/` only.
    Grant {
        user: String,
        #[arg(long, default_value = "")]
        prefix: String,
    },
    /// Delete USER and its role: its certificate is refused from then on.
    Revoke { user: String },
    /// Print `NAME PEER-URL`, one member a line.
    Members,
    /// Print etcd's users, one a line.
    Users,
    /// Add server NAME as a member (unless it is one); print ETCD_INITIAL_CLUSTER for its first start.
    MemberAdd { name: String },
    /// Promote the learner NAME to a voting member once it has caught up (exit 1 until then).
    MemberPromote { name: String },
    /// Remove server NAME's member, if there is one.
    MemberRemove { name: String },
}

pub fn run(path: &Path, action: FleetAction) -> Result<u8, Failure> {
    use hostyard::fleet::{self, Admin, Inventory, RootIdentity};
    let inv = Inventory::load(path).map_err(usage)?;
    match action {
        FleetAction::Check => println!(
            "{} servers ({} members), {} sites",
            inv.servers.len(),
            inv.members().count(),
            inv.sites.len()
        ),
        FleetAction::Servers => {
            for s in &inv.servers {
                println!("{} {} {} {}", s.name, s.ssh, s.private, s.role.as_str());
            }
        }
        FleetAction::Sites { server } => {
            if let Some(name) = &server {
                inv.server(name).map_err(usage)?;
            }
            for s in inv
                .sites
                .iter()
                .filter(|s| server.as_ref().is_none_or(|n| *n == s.server))
            {
                println!("{} {} {}", s.domain, s.kind, s.server);
            }
        }
        FleetAction::NodeConfig { name } => {
            print!("{}", fleet::node_config(&inv, &name).map_err(usage)?);
        }
        FleetAction::SetServer { domain, server } => {
            match fleet::set_site_server(path, &domain, &server).map_err(usage)? {
                fleet::SiteServer::Unchanged => {
                    println!(
                        "{domain} is on {server} in {} already; nothing changed",
                        path.display()
                    )
                }
                fleet::SiteServer::Moved { from } => {
                    println!("{domain}: server {from} -> {server} in {}", path.display())
                }
            }
        }
        FleetAction::MemberEnv { name, cluster } => {
            print!(
                "{}",
                fleet::member_env(&inv, &name, &cluster).map_err(usage)?
            );
        }
        FleetAction::Etcd { endpoint, action } => {
            let dir = path.parent().unwrap_or(Path::new("."));
            let mut admin =
                Admin::connect(&RootIdentity::in_fleet(dir), &endpoint).map_err(runtime)?;
            let said = |changed: bool, done: &str, already: &str| {
                println!("{}", if changed { done } else { already });
            };
            match action {
                FleetEtcdAction::EnableAuth => said(
                    admin.enable_auth().map_err(runtime)?,
                    "authentication enabled",
                    "authentication was enabled already; nothing changed",
                ),
                FleetEtcdAction::Grant { user, prefix } => said(
                    admin.grant(&user, &prefix).map_err(runtime)?,
                    &format!("granted {user} {prefix}/"),
                    &format!("{user} exists; nothing changed"),
                ),
                FleetEtcdAction::Revoke { user } => said(
                    admin.revoke(&user).map_err(runtime)?,
                    &format!("revoked {user}"),
                    &format!("{user} does not exist; nothing changed"),
                ),
                FleetEtcdAction::Users => {
                    for user in admin.users().map_err(runtime)? {
                        println!("{user}");
                    }
                }
                FleetEtcdAction::Members => {
                    for (_, name, urls) in admin.members().map_err(runtime)? {
                        println!(
                            "{} {}",
                            if name.is_empty() { "-" } else { &name },
                            urls.join(",")
                        );
                    }
                }
                FleetEtcdAction::MemberAdd { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    let (added, cluster) = admin
                        .member_add(&name, &fleet::peer_url(server))
                        .map_err(runtime)?;
                    note(format_args!(
                        "{name} {}",
                        if added {
                            "added as a member"
                        } else {
                            "is a member already; nothing changed"
                        }
                    ));
                    println!("{cluster}");
                }
                FleetEtcdAction::MemberPromote { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    said(
                        admin
                            .promote(&name, &fleet::peer_url(server))
                            .map_err(runtime)?,
                        &format!("promoted {name} to a voting member"),
                        &format!("{name} votes already; nothing changed"),
                    );
                }
                FleetEtcdAction::MemberRemove { name } => {
                    let server = inv.server(&name).map_err(usage)?;
                    said(
                        admin
                            .member_remove(&name, &fleet::peer_url(server))
                            .map_err(runtime)?,
                        &format!("removed member {name}"),
                        &format!("{name} is no member; nothing changed"),
                    );
                }
            }
        }
    }
    Ok(0)
}
