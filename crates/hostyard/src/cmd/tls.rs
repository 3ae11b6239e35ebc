//! `hostyard tls`: the sites' certificates from ACME.

use clap::Subcommand;
use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use super::{runtime, usage, Failure};

#[derive(Subcommand)]
pub enum TlsAction {
    /// Have haproxy-confd order a new key and certificate for the site now
    /// (a leaked key, a name that now resolves), whatever the current
    /// one's age; it is served without a reload once the CA issues it.
    Renew {
        /// The site's domain (example.com), hosted on this server.
        domain: String,
    },
}

pub fn run(config: &NodeConfig, action: TlsAction) -> Result<u8, Failure> {
    match action {
        TlsAction::Renew { domain } => {
            let domain = Domain::parse_instance(&domain).map_err(usage)?;
            hostyard::tls::renew(config, &domain).map_err(runtime)?;
            println!("{}", hostyard::tls::next_steps(config, &domain));
            Ok(0)
        }
    }
}
