//! `hostyard site`: a site's records in etcd (its declaration, its owner).

use clap::Subcommand;
use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use super::{runtime, usage, Failure};

#[derive(Subcommand)]
pub enum SiteAction {
    /// Print the server that owns the site (only its discovery registers
    /// it); nothing when no server does.
    Owner {
        /// The site's domain (example.com).
        domain: String,
    },
    /// Make this server the site's owner. Refused while another server
    /// owns it and serves it, unless --take-over.
    Claim {
        /// The site's domain (example.com).
        domain: String,
        /// Take it from the server that serves it now: that server's
        /// discovery stops registering it and its unit fails.
        #[arg(long)]
        take_over: bool,
    },
    /// Hand the site from server FROM to server TO in one transaction (a
    /// move's switch). Refused when a third server owns it and serves it,
    /// unless --take-over.
    Transfer {
        /// The site's domain (example.com).
        domain: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        to: String,
        /// Take it from a third server that serves it now.
        #[arg(long)]
        take_over: bool,
    },
    /// Remove the site's declaration (its kind and aliases) from etcd, e.g.
    /// before it comes back as another kind. Refused while the declared site
    /// runs; its data is left as it is.
    Forget {
        /// The site's domain, as in its unit name (example.com).
        domain: String,
    },
}

pub fn run(config: &NodeConfig, action: SiteAction) -> Result<u8, Failure> {
    match action {
        SiteAction::Forget { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            match hostyard::site::forget(config, &domain).map_err(runtime)? {
                hostyard::site::Forgot::Nothing => {
                    println!("{domain} has no declaration; nothing changed");
                }
                hostyard::site::Forgot::Declaration(kind) => {
                    let kind = kind.map_or("malformed".to_string(), |k| format!("a {k}"));
                    println!(
                        "forgot {domain} (declared as {kind} site); its data in {} is left as it is",
                        config.layout().domain_dir(&domain).display()
                    );
                }
            }
        }
        SiteAction::Owner { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            if let Some(owner) = hostyard::owner::owner(config, &domain).map_err(runtime)? {
                println!("{owner}");
            }
        }
        SiteAction::Claim { domain, take_over } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            let again = format!("hostyard site claim {domain} --take-over");
            let changed = hostyard::owner::claim(config, &domain, take_over, false, &again)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &config.node_name()));
        }
        SiteAction::Transfer {
            domain,
            from,
            to,
            take_over,
        } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            for name in [&from, &to] {
                hostyard_core::etcd::parse_owner(name.as_bytes())
                    .map_err(|e| usage(anyhow::anyhow!("server name {name:?}: {}", e.reason)))?;
            }
            let changed = hostyard::owner::transfer(config, &domain, &from, &to, take_over)
                .map_err(runtime)?;
            println!("{}", changed.describe(&domain, &to));
        }
    }
    Ok(0)
}
