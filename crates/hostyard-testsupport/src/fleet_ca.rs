//! A throwaway fleet CA and the certificates `deploy/ca.sh` issues with
//! one, for tests of the peers' mutual TLS: a server's (serverAuth and
//! clientAuth, named `hostyard-<name>-<hex>`, its address in the SANs) and
//! the jump box's root identity (clientAuth only, named `root`).

use std::net::IpAddr;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};

/// A CA whose files live in a directory of the caller's.
pub struct FleetCa {
    dir: PathBuf,
    cert: rcgen::Certificate,
    key: KeyPair,
}

/// A certificate and key issued by a [`FleetCa`], as files: the key
/// 0600, as a server keeps it.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert_file: PathBuf,
    pub key_file: PathBuf,
    pub cert_pem: String,
    pub key_pem: String,
}

impl FleetCa {
    /// A new CA; its certificate is written to `dir/<label>-ca.pem`.
    pub fn new(dir: &Path, label: &str) -> anyhow::Result<FleetCa> {
        let key = KeyPair::generate().context("CA key")?;
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params
            .distinguished_name
            .push(DnType::CommonName, format!("{label} CA"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let cert = params.self_signed(&key).context("CA certificate")?;
        std::fs::create_dir_all(dir)?;
        let ca = FleetCa {
            dir: dir.join(label),
            cert,
            key,
        };
        std::fs::create_dir_all(&ca.dir)?;
        std::fs::write(ca.ca_file(), ca.cert.pem())?;
        Ok(ca)
    }

    /// The CA's certificate (PEM file).
    pub fn ca_file(&self) -> PathBuf {
        self.dir.join("ca.pem")
    }

    pub fn ca_pem(&self) -> String {
        self.cert.pem()
    }

    /// A server's certificate, as `deploy/ca.sh issue NAME IP` makes it.
    pub fn issue_server(&self, name: &str, address: IpAddr) -> anyhow::Result<Issued> {
        let cn = format!("hostyard-{name}-{:08x}", rand_u32());
        let mut params = CertificateParams::new(vec![name.to_string(), "localhost".to_string()])?;
        params.subject_alt_names.push(SanType::IpAddress(address));
        params
            .subject_alt_names
            .push(SanType::IpAddress("127.0.0.1".parse()?));
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        self.issue(name, &cn, params)
    }

    /// The jump box's root identity, as `deploy/ca.sh init` makes it.
    pub fn issue_root(&self) -> anyhow::Result<Issued> {
        let mut params = CertificateParams::new(Vec::<String>::new())?;
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        self.issue("root", "root", params)
    }

    fn issue(&self, file: &str, cn: &str, mut params: CertificateParams) -> anyhow::Result<Issued> {
        params.distinguished_name.push(DnType::CommonName, cn);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        let key = KeyPair::generate().context("key")?;
        let cert = params
            .signed_by(&key, &Issuer::from_ca_cert_der(self.cert.der(), &self.key)?)
            .context("signing")?;
        // Files of their own: a certificate issued later (another test's,
        // on another thread) never replaces one in use.
        static ISSUED: AtomicU64 = AtomicU64::new(0);
        let n = ISSUED.fetch_add(1, Ordering::Relaxed);
        let issued = Issued {
            cert_file: self.dir.join(format!("{file}-{n}.pem")),
            key_file: self.dir.join(format!("{file}-{n}.key")),
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        };
        std::fs::write(&issued.cert_file, &issued.cert_pem)?;
        std::fs::write(&issued.key_file, &issued.key_pem)?;
        std::fs::set_permissions(&issued.key_file, std::fs::Permissions::from_mode(0o600))?;
        Ok(issued)
    }
}

/// A few random bits for a certificate's name (as ca.sh's `openssl rand`).
fn rand_u32() -> u32 {
    let mut b = [0u8; 4];
    if let Ok(mut f) = std::fs::File::open("/dev/urandom") {
        use std::io::Read;
        let _ = f.read_exact(&mut b);
    }
    u32::from_le_bytes(b)
}
