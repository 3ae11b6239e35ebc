//! Checking a certificate bundle before HAProxy is given it: a bad one is
//! refused with one line naming the problem and the fix, and the site keeps
//! the certificate it has.

use std::time::{SystemTime, UNIX_EPOCH};

use hostyard_core::Domain;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::X509Certificate;

/// A PEM bundle is at most this long (a certificate, a few intermediates
/// and a key are a few kB).
pub const MAX_BUNDLE_LEN: usize = 1024 * 1024;

/// Why a bundle cannot serve its domain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadCert {
    #[error("it is not PEM text; convert it with `openssl x509 -outform PEM` and append the key")]
    NotPem,
    #[error("it holds no certificate; put the site's certificate first, then its chain and key")]
    NoCertificate,
    #[error("it holds no private key; HAProxy needs the key in the same file: append it")]
    NoKey,
    #[error("cannot parse its certificate ({0})")]
    Unparsable(String),
    #[error(
        "its private key does not belong to its certificate; put the matching key in the file"
    )]
    KeyMismatch,
    #[error(
        "its private key is of a kind HAProxy's clients cannot use ({0}); use an RSA or ECDSA key"
    )]
    UnsupportedKey(String),
    #[error("it expired at {0} (Unix time); put a renewed certificate in place")]
    Expired(i64),
    #[error("it is not valid before {0} (Unix time); check the server's clock or the certificate")]
    NotYetValid(i64),
    #[error("it covers {names} but not {domain}; get one that names {domain}")]
    WrongName { domain: String, names: String },
    #[error("it lacks its chain: the issuer ({0}) is not in the file; append the intermediate certificates after the site's")]
    NoChain(String),
    #[error("no CA this server trusts (the system's roots, tls.acme.ca_file) signed it ({0}); a self-signed certificate is served only from an import on the site's own server")]
    Untrusted(String),
}

/// A bundle that can serve its domain, as HAProxy gets it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    /// The PEM blocks only (no empty lines, no text between blocks, `\n`
    /// line ends): an empty line would end a runtime API payload.
    pub pem: String,
    /// The names HAProxy serves it for: the domain, and `www.<domain>` when
    /// the certificate covers it too.
    pub names: Vec<String>,
    /// Its end of validity, Unix time.
    pub not_after: i64,
    /// Every DNS name the certificate covers (wildcards as written).
    pub dns_names: Vec<String>,
}

impl Checked {
    /// Whether the certificate covers `host` (exactly or by a wildcard).
    pub fn covers(&self, host: &str) -> bool {
        self.dns_names.iter().any(|n| covers(n, host))
    }
}

/// Checks that `bytes` can serve `domain` now: PEM with a certificate
/// first and a private key that belongs to it, valid at `now`, naming
/// `domain` (exactly or by a wildcard), and with its issuer in the file
/// unless it is self-signed.
pub fn check_bundle(bytes: &[u8], domain: &Domain, now: SystemTime) -> Result<Checked, BadCert> {
    if bytes.len() > MAX_BUNDLE_LEN {
        return Err(BadCert::NotPem);
    }
    let text = std::str::from_utf8(bytes).map_err(|_| BadCert::NotPem)?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(bytes)
        .collect::<Result<_, _>>()
        .map_err(|_| BadCert::NotPem)?;
    let leaf_der = certs.first().ok_or(BadCert::NoCertificate)?;
    let key = PrivateKeyDer::from_pem_slice(bytes).map_err(|_| BadCert::NoKey)?;
    let parsed: Vec<X509Certificate<'_>> = certs
        .iter()
        .map(|c| {
            x509_parser::parse_x509_certificate(c.as_ref())
                .map(|(_, c)| c)
                .map_err(|e| BadCert::Unparsable(e.to_string()))
        })
        .collect::<Result<_, _>>()?;
    let leaf = &parsed[0];

    let signing = rustls::crypto::ring::sign::any_supported_type(&key)
        .map_err(|e| BadCert::UnsupportedKey(e.to_string()))?;
    let certified = rustls::sign::CertifiedKey::new(vec![leaf_der.clone()], signing);
    certified.keys_match().map_err(|_| BadCert::KeyMismatch)?;

    let now = now
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0);
    let not_after = leaf.validity().not_after.timestamp();
    if not_after < now {
        return Err(BadCert::Expired(not_after));
    }
    let not_before = leaf.validity().not_before.timestamp();
    if not_before > now {
        return Err(BadCert::NotYetValid(not_before));
    }

    let names = dns_names(leaf);
    if !names.iter().any(|n| covers(n, domain.as_str())) {
        return Err(BadCert::WrongName {
            domain: domain.to_string(),
            names: if names.is_empty() {
                "no DNS name".to_string()
            } else {
                names.join(", ")
            },
        });
    }
    let self_signed = leaf.issuer().as_raw() == leaf.subject().as_raw();
    if !self_signed
        && !parsed[1..]
            .iter()
            .any(|c| c.subject().as_raw() == leaf.issuer().as_raw())
    {
        return Err(BadCert::NoChain(leaf.issuer().to_string()));
    }

    let www = format!("www.{domain}");
    let mut served = vec![domain.to_string()];
    if names.iter().any(|n| covers(n, &www)) {
        served.push(www);
    }
    Ok(Checked {
        pem: pem_blocks(text),
        names: served,
        not_after,
        dns_names: names,
    })
}

/// The end of validity (Unix time) of the first certificate in `pem`.
pub fn not_after(pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_after.timestamp())
}

/// Start of validity of the first certificate in `pem`, Unix time.
pub fn not_before(pem: &[u8]) -> Option<i64> {
    let der = CertificateDer::pem_slice_iter(pem).next()?.ok()?;
    let (_, cert) = x509_parser::parse_x509_certificate(der.as_ref()).ok()?;
    Some(cert.validity().not_before.timestamp())
}

/// The certificate's DNS names: its subjectAltName entries (browsers
/// ignore the subject's CN since 2017).
fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    match cert.subject_alternative_name() {
        Ok(Some(san)) => san
            .value
            .general_names
            .iter()
            .filter_map(|n| match n {
                GeneralName::DNSName(s) => Some(s.to_ascii_lowercase()),
                _ => None,
            })
            .collect(),
        _ => Vec::new(),
    }
}

/// Whether certificate name `pattern` covers `host`: equal, or a wildcard
/// `*.rest` for exactly one more label (RFC 6125 §6.4.3).
fn covers(pattern: &str, host: &str) -> bool {
    let pattern = pattern.trim_end_matches('.');
    if pattern == host {
        return true;
    }
    match (pattern.strip_prefix("*."), host.split_once('.')) {
        (Some(rest), Some((label, host_rest))) => !label.is_empty() && rest == host_rest,
        _ => false,
    }
}

/// The PEM blocks of `text`, one line each, without empty lines or text
/// between blocks (`Bag Attributes` from a PKCS#12 export).
fn pem_blocks(text: &str) -> String {
    let mut out = String::new();
    let mut inside = false;
    for line in text.lines() {
        let line = line.trim_end_matches('\r').trim();
        if line.starts_with("-----BEGIN ") {
            inside = true;
        }
        if inside && !line.is_empty() {
            out.push_str(line);
            out.push('\n');
        }
        if line.starts_with("-----END ") {
            inside = false;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_cover_exactly_or_by_one_wildcard_label() {
        for (pattern, host, want) in [
            ("example.com", "example.com", true),
            ("*.example.com", "www.example.com", true),
            ("*.example.com", "example.com", false),
            ("*.example.com", "a.b.example.com", false),
            ("www.example.com", "example.com", false),
            ("example.com.", "example.com", true),
        ] {
            assert_eq!(covers(pattern, host), want, "{pattern} {host}");
        }
    }

    #[test]
    fn pem_blocks_drop_empty_lines_and_text_between_blocks() {
        let text = "Bag Attributes\r\n-----BEGIN X-----\r\nAAAA\r\n\r\n-----END X-----\r\n\r\nnoise\n-----BEGIN Y-----\nBB\n-----END Y-----\n";
        assert_eq!(
            pem_blocks(text),
            "-----BEGIN X-----\nAAAA\n-----END X-----\n-----BEGIN Y-----\nBB\n-----END Y-----\n"
        );
    }
}
