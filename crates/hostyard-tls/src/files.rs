//! HAProxy's certificate files. haproxy.cfg names the default certificate,
//! the crt-list and the HTTPS policy map: HAProxy refuses to start (and
//! `haproxy -c` fails) while one is missing, so confd makes them before it
//! writes the config.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::Context;
use hostyard_core::{Domain, Layout};
use hostyard_fs::AtomicWrite;

/// Certificates hold private keys: readable by root (HAProxy's master
/// reads them before anything else) and nobody else.
pub const KEY_FILE: AtomicWrite = AtomicWrite::new(0o600);

/// The name the default certificate is made for; `.invalid` can never be a
/// real site (RFC 6761), so a client sees at once that it reached a name
/// this server has no certificate for.
pub const DEFAULT_CERT_NAME: &str = "hostyard-default.invalid";

/// The domains of the certificate files in [`Layout::acme_certs_dir`];
/// none when the directory is missing. Other files (a write's temporary
/// one) are skipped.
pub fn acme_cert_domains(layout: &Layout) -> Vec<Domain> {
    let Ok(entries) = std::fs::read_dir(layout.acme_certs_dir()) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|e| e.file_name().to_str().and_then(Layout::acme_cert_domain))
        .collect()
}

/// Makes what haproxy.cfg names when it is missing: the certificate
/// directory (0700), a self-signed default certificate, an empty crt-list,
/// an empty HTTPS policy map and an empty ACME challenge map. Existing files are left as they are.
pub fn ensure_base(layout: &Layout) -> anyhow::Result<()> {
    let dir = layout.haproxy_certs_dir();
    hostyard_fs::private_dir(&dir)?;
    let default = layout.haproxy_default_cert();
    if !default.exists() {
        KEY_FILE.write(&default, default_cert()?.as_bytes())?;
        hostyard_log::log!(
            Notice,
            "made the self-signed default certificate {}",
            default.display()
        );
    }
    if !layout.haproxy_crt_list().exists() {
        KEY_FILE.write(&layout.haproxy_crt_list(), b"")?;
    }
    if !layout.https_map().exists() {
        hostyard_haproxy::FILE.write(&layout.https_map(), b"")?;
    }
    if !layout.acme_map().exists() {
        hostyard_haproxy::FILE.write(&layout.acme_map(), b"")?;
    }
    // haproxy.cfg names them: HAProxy does not start without them.
    for map in [
        layout.redirect_exact_map(),
        layout.redirect_prefix_map(),
        layout.php_limits_map(),
    ] {
        if !map.exists() {
            hostyard_haproxy::FILE.write(&map, b"")?;
        }
    }
    Ok(())
}

/// A self-signed certificate and its new ECDSA P-256 key, as one PEM.
fn default_cert() -> anyhow::Result<String> {
    let key = rcgen::KeyPair::generate().context("generating the default key")?;
    let mut params = rcgen::CertificateParams::new(vec![DEFAULT_CERT_NAME.to_string()])
        .context("default certificate parameters")?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, DEFAULT_CERT_NAME);
    // Ten years: it is never trusted, only there so HAProxy can answer.
    params.not_after = rcgen::date_time_ymd(2036, 1, 1);
    let cert = params
        .self_signed(&key)
        .context("signing the default certificate")?;
    Ok(format!("{}{}", cert.pem(), key.serialize_pem()))
}

/// One crt-list line: the certificate file and the SNI names it serves.
pub fn crt_list_line(layout: &Layout, domain: &Domain, names: &[String]) -> String {
    format!(
        "{} {}",
        layout.haproxy_cert(domain).display(),
        names.join(" ")
    )
}

/// The crt-list for these sites, one line each, sorted by domain.
pub fn render_crt_list(layout: &Layout, sites: &BTreeMap<Domain, Vec<String>>) -> String {
    sites
        .iter()
        .map(|(d, names)| crt_list_line(layout, d, names) + "\n")
        .collect()
}

/// The sites a crt-list written by [`render_crt_list`] names, with their
/// names; lines for other files are ignored.
pub fn parse_crt_list(layout: &Layout, text: &str) -> BTreeMap<Domain, Vec<String>> {
    let dir = layout.haproxy_certs_dir();
    let mut out = BTreeMap::new();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let Some(path) = parts.next() else { continue };
        let path = Path::new(path);
        if path.parent() != Some(dir.as_path()) {
            continue;
        }
        let Some(domain) = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".pem"))
            .and_then(|n| Domain::parse(n).ok())
        else {
            continue;
        };
        out.insert(domain, parts.map(str::to_string).collect());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn crt_list_round_trips() {
        let layout = Layout::new(Path::new("/data"));
        let mut sites = BTreeMap::new();
        let d = Domain::parse("example.com").unwrap();
        sites.insert(
            d.clone(),
            vec!["example.com".into(), "www.example.com".into()],
        );
        sites.insert(
            Domain::parse("b.example").unwrap(),
            vec!["b.example".into()],
        );
        let text = render_crt_list(&layout, &sites);
        assert!(text
            .contains("/data/runtime/haproxy/certs/example.com.pem example.com www.example.com\n"));
        assert_eq!(parse_crt_list(&layout, &text), sites);
        assert!(parse_crt_list(&layout, "/elsewhere/x.pem x\n").is_empty());
    }

    #[test]
    fn base_files_are_made_once_with_private_modes() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        ensure_base(&layout).unwrap();
        let default = std::fs::read(layout.haproxy_default_cert()).unwrap();
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&layout.haproxy_certs_dir()), 0o700);
        assert_eq!(mode(&layout.haproxy_default_cert()), 0o600);
        let text = String::from_utf8(default.clone()).unwrap();
        assert!(text.contains("BEGIN CERTIFICATE") && text.contains("PRIVATE KEY"));
        ensure_base(&layout).unwrap();
        assert_eq!(
            std::fs::read(layout.haproxy_default_cert()).unwrap(),
            default
        );
    }
}
