//! Whether a bundle from the fleet's store chains to a root this server
//! trusts: the system's (`/etc/ssl/certs`, package `ca-certificates`, or
//! `SSL_CERT_FILE`) plus every certificate in `tls.acme.ca_file`: a
//! private ACME CA's HTTPS root first (the ACME client takes that one),
//! then the roots its certificates chain to when they differ (pebble's).
//!
//! Every etcd writer can put a bundle under `tls/certs/`; one that no
//! trusted CA signed (a self-signed one pinned for years, say) would be
//! served by every server and never renewed. A self-signed certificate is
//! served only from an import on the site's own server, which this check
//! never sees.

use std::path::Path;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use hostyard_core::Domain;
use hostyard_log::log;
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName, UnixTime};

use crate::check::{check_bundle, BadCert, Checked};

/// The roots bundles from etcd are verified against.
#[derive(Clone)]
pub struct Trust {
    /// `None` when no root could be loaded: every bundle is refused.
    verifier: Option<Arc<WebPkiServerVerifier>>,
}

impl Trust {
    /// The system's roots plus the certificates in `ca_file` (none when
    /// empty). A root that cannot be read is logged once, here.
    pub fn load(ca_file: &Path) -> Trust {
        let system = rustls_native_certs::load_native_certs();
        for e in &system.errors {
            log!(Warning, "system CA roots: {e}; install ca-certificates");
        }
        let mut roots = system.certs;
        if !ca_file.as_os_str().is_empty() {
            match CertificateDer::pem_file_iter(ca_file)
                .and_then(|it| it.collect::<Result<Vec<_>, _>>())
            {
                Ok(certs) => roots.extend(certs),
                Err(e) => log!(
                    Warning,
                    "tls.acme.ca_file {}: cannot read its certificates ({e}); certificates from the fleet's store signed by that CA are refused",
                    ca_file.display()
                ),
            }
        }
        Trust::from_roots(roots)
    }

    /// Exactly these roots (tests, and [`Trust::load`]).
    pub fn from_roots(roots: Vec<CertificateDer<'static>>) -> Trust {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(roots);
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider)
            .build()
            .ok();
        if verifier.is_none() {
            log!(
                Warning,
                "no CA root could be loaded; certificates from the fleet's store are all refused: install ca-certificates"
            );
        }
        Trust { verifier }
    }

    /// Whether the bundle's certificate, with the intermediates that follow
    /// it in the file, chains to a trusted root and names `domain`, at `now`.
    pub fn verify(&self, bundle: &[u8], domain: &Domain, now: SystemTime) -> Result<(), BadCert> {
        let verifier = self
            .verifier
            .as_ref()
            .ok_or_else(|| BadCert::Untrusted("this server has no CA roots".to_string()))?;
        let certs: Vec<CertificateDer<'_>> = CertificateDer::pem_slice_iter(bundle)
            .collect::<Result<_, _>>()
            .map_err(|_| BadCert::NotPem)?;
        let (leaf, intermediates) = certs.split_first().ok_or(BadCert::NoCertificate)?;
        let name =
            ServerName::try_from(domain.as_str()).map_err(|e| BadCert::Untrusted(e.to_string()))?;
        let now = UnixTime::since_unix_epoch(now.duration_since(UNIX_EPOCH).unwrap_or_default());
        verifier
            .verify_server_cert(leaf, intermediates, &name, &[], now)
            .map(|_| ())
            .map_err(|e| BadCert::Untrusted(e.to_string()))
    }

    /// [`check_bundle`], then [`Trust::verify`]: what a bundle from etcd
    /// must pass to be served.
    pub fn check(
        &self,
        bundle: &[u8],
        domain: &Domain,
        now: SystemTime,
    ) -> Result<Checked, BadCert> {
        let checked = check_bundle(bundle, domain, now)?;
        self.verify(bundle, domain, now)?;
        Ok(checked)
    }
}
