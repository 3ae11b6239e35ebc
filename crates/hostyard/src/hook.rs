//! `hostyard site hook D`: a static-git site's deploy hook, the URL a
//! forge calls and the secret it signs with. The secret is made once (256
//! random bits, `secrets/hook.secret`, 0600 in a 0700 dir), kept across
//! runs so the forge's copy stays valid, and replaced only on `--rotate`.

use std::path::PathBuf;

use anyhow::{bail, Result};
use hostyard_config::NodeConfig;
use hostyard_core::{Domain, HOOK_PATH};

/// A site's hook.
#[derive(Debug)]
pub struct Hook {
    pub url: String,
    pub secret_file: PathBuf,
    /// Made (or replaced) by this call: the forge needs the new one.
    pub new: bool,
}

/// The site's hook, its secret made when it has none or `rotate`.
pub fn ensure(config: &NodeConfig, domain: &Domain, rotate: bool) -> Result<Hook> {
    let layout = config.layout();
    if !layout.git_repo_dir(domain).is_dir() {
        bail!(
            "{domain} is no static-git site hosted on this server (no {}): run this on the server \
             that owns it",
            layout.git_repo_dir(domain).display()
        );
    }
    let secret_file = layout.hook_secret(domain);
    let new = rotate || !secret_file.exists();
    if new {
        hostyard_fs::private_dir(&layout.secrets_dir(domain))?;
        let secret = hostyard_core::secret::new_password()?;
        hostyard_fs::AtomicWrite::new(0o600)
            .write(&secret_file, format!("{secret}\n").as_bytes())?;
    }
    Ok(Hook {
        url: format!("https://{domain}{HOOK_PATH}"),
        secret_file,
        new,
    })
}

/// The secret, for `--print`.
pub fn secret(hook: &Hook) -> Result<String> {
    Ok(std::fs::read_to_string(&hook.secret_file)?
        .trim()
        .to_string())
}
