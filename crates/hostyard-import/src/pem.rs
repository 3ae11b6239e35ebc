//! Checking that an imported TLS file is PEM before HAProxy is given it.
//!
//! HAProxy refuses to start on a bad certificate file, which would take every
//! site on the server down; an import refuses it instead, naming the file.

use anyhow::{bail, Result};

/// Largest certificate bundle accepted (a chain and a key are a few KiB).
pub const MAX_PEM_LEN: usize = 1024 * 1024;

/// Checks that `bytes` is PEM text: at least one CERTIFICATE block, every
/// `-----BEGIN X-----` closed by a matching `-----END X-----`, base64 bodies.
/// Text between blocks (openssl's "Bag Attributes") is allowed.
pub fn check_pem(bytes: &[u8]) -> Result<()> {
    if bytes.len() > MAX_PEM_LEN {
        bail!(
            "it is {} bytes long; a PEM bundle is at most {MAX_PEM_LEN}",
            bytes.len()
        );
    }
    let Ok(text) = std::str::from_utf8(bytes) else {
        bail!(
            "it is not text (a DER or binary file?); convert it with `openssl x509 -outform PEM`"
        );
    };
    let mut open: Option<&str> = None;
    let mut certificates = 0;
    let mut body_lines = 0;
    for (n, line) in text.lines().enumerate() {
        let line = line.trim_end_matches('\r');
        let n = n + 1;
        if let Some(label) = line
            .strip_prefix("-----BEGIN ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            if let Some(prev) = open {
                bail!("line {n}: BEGIN {label} inside the unclosed {prev} block");
            }
            open = Some(label);
            body_lines = 0;
        } else if let Some(label) = line
            .strip_prefix("-----END ")
            .and_then(|l| l.strip_suffix("-----"))
        {
            match open {
                Some(o) if o == label => {
                    if body_lines == 0 {
                        bail!("line {n}: the {label} block is empty");
                    }
                    if label == "CERTIFICATE" {
                        certificates += 1;
                    }
                    open = None;
                }
                _ => bail!("line {n}: END {label} without a matching BEGIN"),
            }
        } else if open.is_some() {
            let body_ok = line.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                || line.contains(": ") // RFC 1421 headers of encrypted keys
                || line.is_empty();
            if !body_ok {
                bail!("line {n} is not base64");
            }
            body_lines += 1;
        }
    }
    if let Some(label) = open {
        bail!("the {label} block is never closed");
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
        "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\nAAAA==\n-----END CERTIFICATE-----\n";
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
}
