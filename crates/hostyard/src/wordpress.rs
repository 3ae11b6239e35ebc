//! `hostyard wordpress ...`: a WordPress site's administrator password.
//! Debian has no WP-CLI, so the work inside the site is the image's
//! `wp-site.php`, run as the web server's user in the running container;
//! the password reaches it on stdin, never on a command line.

use std::io::Write;
use std::process::{Command, Stdio};

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::envfile::{
    EnvFile, WP_ADMIN_PASSWORD as ADMIN_PASSWORD, WP_ADMIN_USER as ADMIN_USER,
};
use hostyard_core::secret::new_password;
use hostyard_core::{Domain, SiteKind};
use hostyard_fs::AtomicWrite;

/// The image's script for what WP-CLI would do (install, upgrade, cron,
/// password reset); the cron unit runs it too.
use hostyard_core::spec::WORDPRESS_SITE_SCRIPT as SITE_SCRIPT;

/// The administrator in a site's `secrets/wp-admin.env`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Admin {
    pub user: String,
    pub password: String,
}

/// Reads `secrets/wp-admin.env`; `None` when it holds no password (an
/// imported site keeps its own administrators until a reset).
pub fn read_admin(config: &NodeConfig, domain: &Domain) -> Result<Option<Admin>> {
    let path = config.layout().wp_admin_file(domain);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!(
            "cannot read {}: is {domain} a WordPress site of this server?",
            path.display()
        )
    })?;
    let env = EnvFile::parse(&text);
    Ok(match (env.get(ADMIN_USER), env.get(ADMIN_PASSWORD)) {
        (Some(user), Some(password)) if !password.is_empty() => Some(Admin {
            user: user.to_string(),
            password: password.to_string(),
        }),
        _ => None,
    })
}

/// Sets a new generated password for `user` (or, without one, the user of
/// the site's admin file, else its first administrator) in the running
/// site, then stores it in `secrets/wp-admin.env` (0600). Returns the
/// administrator.
pub fn reset_password(config: &NodeConfig, domain: &Domain, user: Option<&str>) -> Result<Admin> {
    let path = config.layout().wp_admin_file(domain);
    if !path.exists() {
        bail!(
            "{} does not exist: {domain} is no WordPress site of this server \
             (or it has not started since this version: systemctl start wordpress@{domain})",
            path.display()
        );
    }
    let user = match user {
        Some(u) => u.to_string(),
        None => read_admin(config, domain)?
            .map(|a| a.user)
            .unwrap_or_default(),
    };
    let password = new_password()?;
    // What the site's script reads on stdin; a user name with a line break
    // is refused here, before anything runs.
    let request = EnvFile::new()
        .set(ADMIN_USER, &user)
        .and_then(|f| f.set(ADMIN_PASSWORD, &password))
        .with_context(|| format!("the user name {user:?}"))?
        .render();
    let container = SiteKind::Wordpress.container_name(domain);
    let mut child = Command::new(&config.docker.binary)
        .args([
            "exec",
            "-i",
            "--user",
            "www-data",
            &container,
            "php",
            SITE_SCRIPT,
        ])
        .arg("reset-password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", config.docker.binary.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(request.as_bytes())
            .context("cannot hand the password to the site's container")?;
    }
    let out = child.wait_with_output()?;
    if !out.status.success() {
        let said = String::from_utf8_lossy(&out.stderr);
        let said = said.trim().lines().last().unwrap_or("").trim();
        bail!(
            "the password was not changed ({said}); is the site running? \
             (systemctl start wordpress@{domain})"
        );
    }
    let login = String::from_utf8_lossy(&out.stdout).trim().to_string();
    let admin = Admin {
        user: login,
        password,
    };
    // The login comes from the site's database: one with a line break
    // would add lines to a file the container's entrypoint reads as root.
    let text = EnvFile::new()
        .comment("The administrator's password, set by hostyard wordpress reset-password.")
        .set(ADMIN_USER, &admin.user)
        .and_then(|f| f.set(ADMIN_PASSWORD, &admin.password))
        .with_context(|| {
            format!(
                "the site's script answered the login {:?}; nothing was stored",
                admin.user
            )
        })?
        .render();
    AtomicWrite::new(0o600)
        .write(&path, text.as_bytes())
        .with_context(|| {
            format!(
                "the site has the new password, but {} could not be written: \
                 run the reset again",
                path.display()
            )
        })?;
    Ok(admin)
}
