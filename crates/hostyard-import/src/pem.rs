//! Checking that an imported TLS file is PEM before HAProxy is given it.
//!
//! HAProxy refuses to start on a bad certificate file, which would take every
//! site on the server down; an import refuses it instead, naming the file.

use anyhow::{anyhow, bail, Result};
use rustls_pki_types::pem::{PemObject, SectionKind};

/// Largest certificate bundle accepted (a chain and a key are a few KiB).
pub const MAX_PEM_LEN: usize = 1024 * 1024;

/// Checks that `bytes` is PEM text with at least one certificate, every
/// block closed and decodable (rustls' PEM reader; text between blocks, as
/// openssl's "Bag Attributes", is allowed). Whether the certificate can
/// serve the site is checked when it is served.
pub fn check_pem(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_PEM_LEN {
        bail!(
            "it is {} bytes long; a PEM bundle is at most {MAX_PEM_LEN}",
            bytes.len()
        );
    }
    if std::str::from_utf8(bytes).is_err() {
        bail!(
            "it is not text (a DER or binary file?); convert it with `openssl x509 -outform PEM`"
        );
    }
    let mut certificates = 0;
    for section in <(SectionKind, Vec<u8>)>::pem_slice_iter(bytes) {
        let (kind, der) = section.map_err(|e| anyhow!("it is not valid PEM: {e}"))?;
        if der.is_empty() {
            bail!("its {kind:?} block is empty");
        }
        if kind == SectionKind::Certificate {
            certificates += 1;
        }
    }
    if certificates == 0 {
        bail!("it holds no -----BEGIN CERTIFICATE----- block");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CERT: &str =
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAAA\n-----END CERTIFICATE-----\n";
    const KEY: &str =
        "-----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49\n-----END PRIVATE KEY-----\n";

    #[test]
    fn accepts_a_certificate_with_its_key() {
        check_pem(format!("{CERT}{KEY}").as_bytes()).unwrap();
        check_pem(format!("Bag Attributes\n{KEY}\n{CERT}").as_bytes()).unwrap();
    }

    #[test]
    fn refuses_what_is_not_pem() {
        for bad in [
            &b"\x30\x82\x01\xb3\x30\x82\x01\x59\xa0\x03\xff\xfe"[..],
            b"hello",
            b"",
            KEY.as_bytes(),
            b"-----BEGIN CERTIFICATE-----\nAAAA\n",
            b"-----BEGIN CERTIFICATE-----\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAA AA;\n-----END CERTIFICATE-----\n",
            b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END KEY-----\n",
        ] {
            assert!(
                check_pem(bad).is_err(),
                "{:?}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    proptest::proptest! {
        /// Any bytes get an answer, never a panic; what is accepted holds
        /// a certificate block.
        #[test]
        fn any_input_is_answered(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
            if check_pem(&bytes).is_ok() {
                proptest::prop_assert!(String::from_utf8_lossy(&bytes).contains("-----BEGIN CERTIFICATE-----"));
            }
        }

        /// Text around the blocks (openssl's attributes, comments) is kept
        /// out of the check.
        #[test]
        fn text_between_blocks_is_allowed(before in "[a-zA-Z :]{0,40}", between in "[a-zA-Z :]{0,40}") {
            let bundle = format!("{before}\n{CERT}{between}\n{KEY}");
            proptest::prop_assert!(check_pem(bundle.as_bytes()).is_ok(), "{}", bundle);
        }
    }
}
