//! `hostyard tls renew D`: a new key and certificate for a site at once,
//! e.g. after its key leaked or once its `www.` name points at the fleet.
//!
//! The command only leaves a request beside ACME's files
//! ([`hostyard_tls::acme::request_renewal`]); haproxy-confd, which owns
//! ACME's account, lock and backoff, orders at its next pass (every
//! `tls.scan_secs`), whatever the age of the current certificate, its
//! backoff or the fleet's copy, and serves the new one without a reload.

use std::path::PathBuf;

use anyhow::{bail, Result};
use hostyard_config::NodeConfig;
use hostyard_core::Domain;

use crate::units::CONFD_UNIT;

/// A renewal request left for haproxy-confd.
#[derive(Debug)]
pub struct Requested {
    pub path: PathBuf,
}

/// Leaves the request, after checking that this server orders `domain`'s
/// certificate: ACME is on, the site is hosted here, and it has no
/// imported certificate (which ACME never replaces).
pub fn renew(config: &NodeConfig, domain: &Domain) -> Result<Requested> {
    let layout = config.layout();
    if !config.tls.acme.enabled() {
        bail!(
            "tls.acme is not set in the node config, so this server orders no certificates: set tls.acme.directory, email and terms_accepted, then systemctl restart {CONFD_UNIT}"
        );
    }
    let dir = layout.domain_dir(domain);
    if !dir.is_dir() {
        bail!(
            "{domain} is not hosted on this server (no {}): run this on the server that hosts it",
            dir.display()
        );
    }
    let imported = layout.tls_pem(domain);
    if !hostyard_tls::acme::orders(&layout, domain) {
        bail!(
            "{domain} serves its imported certificate {}, which ACME does not replace: put a new one there, or remove it to have ACME order one",
            imported.display()
        );
    }
    let path = hostyard_tls::acme::request_renewal(&layout, domain)?;
    Ok(Requested { path })
}

/// What the operator is told: what happens next and where to watch it.
pub fn next_steps(config: &NodeConfig, domain: &Domain) -> String {
    format!(
        "{domain}: {CONFD_UNIT} orders a new key and certificate from {} within {} s; \
         HTTPS serves the current certificate until the new one replaces it (no reload). \
         Watch: journalctl -u {CONFD_UNIT} -f; hostyard status shows an ACME error if the order fails.",
        config.tls.acme.directory, config.tls.scan_secs
    )
}
