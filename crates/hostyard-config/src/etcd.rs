//! The `etcd:` section: where the cluster is and how this server proves who it is.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct EtcdConfig {
    /// Client URLs of the etcd cluster.
    pub endpoints: Vec<String>,
    /// Prefix in front of `/services/...` and `/sites/...`; empty for the
    /// original layout.
    pub prefix: String,
    /// The fleet CA's certificate (PEM) the members' certificates are
    /// checked against; empty for plain http (a member on loopback only).
    pub ca_file: PathBuf,
    /// This server's client certificate (PEM); its common name is the etcd
    /// user whose role says what the server may touch.
    pub cert_file: PathBuf,
    /// The certificate's private key (PEM); refused unless only its owner
    /// may read it (mode 0600 or stricter).
    pub key_file: PathBuf,
}

impl Default for EtcdConfig {
    fn default() -> Self {
        EtcdConfig {
            endpoints: vec!["http://127.0.0.1:2379".to_string()],
            prefix: String::new(),
            ca_file: PathBuf::new(),
            cert_file: PathBuf::new(),
            key_file: PathBuf::new(),
        }
    }
}

/// The PEM texts of the etcd TLS files, read for one connection.
pub struct EtcdTlsPem {
    pub ca: Vec<u8>,
    pub cert: Vec<u8>,
    pub key: Vec<u8>,
}

impl EtcdConfig {
    /// Reads the TLS files named by the config; `None` for plain http. The
    /// key must be readable by its owner alone: a key others could read is
    /// refused rather than used, since it is this server's whole identity.
    pub fn tls_pem(&self) -> Result<Option<EtcdTlsPem>, String> {
        if self.ca_file.as_os_str().is_empty() {
            return Ok(None);
        }
        let read = |field: &str, path: &Path| {
            std::fs::read(path).map_err(|e| format!("etcd.{field} {}: {e}", path.display()))
        };
        private_key_mode("etcd.key_file", &self.key_file)?;
        Ok(Some(EtcdTlsPem {
            ca: read("ca_file", &self.ca_file)?,
            cert: read("cert_file", &self.cert_file)?,
            key: read("key_file", &self.key_file)?,
        }))
    }
}

/// Refuses a private key that others than its owner may read: it is this
/// server's whole identity.
pub(crate) fn private_key_mode(field: &str, path: &Path) -> Result<(), String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path)
        .map_err(|e| format!("{field} {}: {e}", path.display()))?
        .permissions()
        .mode();
    if mode & 0o077 != 0 {
        return Err(format!(
            "{field} {} may be read by others (mode {:o}); chmod 600 it",
            path.display(),
            mode & 0o777
        ));
    }
    Ok(())
}
