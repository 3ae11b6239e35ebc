//! `hostyard site set D --php-upload/--php-memory/--php-time/--php-reset`:
//! a WordPress site's PHP limits ([`hostyard_core::php`]). The declaration
//! holds them (confd turns them into HAProxy's body limit and server
//! timeout on every server); here, on the server that hosts the site, they
//! become the site's `php/site.conf`, and the site's Apache restarts
//! gracefully to read it: the requests in flight finish, none is refused.

use std::process::Command;

use anyhow::{Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::etcd::SiteDecl;
use hostyard_core::php::{effective, site_conf, PhpChange, PhpLimits};
use hostyard_core::{Domain, SiteKind};

/// `next.php` after `change`, or why not: a site of another kind, a value
/// over its bound.
pub fn decide(
    config: &NodeConfig,
    domain: &Domain,
    decl: &SiteDecl,
    change: &PhpChange,
    next: &mut SiteDecl,
) -> Result<(), Vec<String>> {
    if change.is_empty() {
        return Ok(());
    }
    if decl.kind != SiteKind::Wordpress {
        return Err(vec![format!(
            "{domain} is a {} site: --php-upload, --php-memory, --php-time and --php-reset are \
             for WordPress sites only",
            decl.kind
        )]);
    }
    next.php = hostyard_core::php::decide(&decl.php, change, &config.wordpress.php_limits)?;
    Ok(())
}

/// What [`apply`] did.
#[derive(Debug, PartialEq, Eq)]
pub enum Applied {
    /// Written, and the site's Apache restarted gracefully.
    Reloaded,
    /// Written; the site does not run here, it reads them when it starts.
    NotRunning,
    /// The site's data is not on this server (nobody hosts it yet).
    NotHere,
}

/// Writes `domain`'s `php/site.conf` and has its running Apache read it.
pub fn apply(config: &NodeConfig, domain: &Domain, limits: &PhpLimits) -> Result<Applied> {
    let layout = config.layout();
    if !layout.domain_dir(domain).is_dir() {
        return Ok(Applied::NotHere);
    }
    let path = write_site_conf(config, domain, limits)?;
    let container = SiteKind::Wordpress.container_name(domain);
    let docker = &config.docker.binary;
    let running = Command::new(docker)
        .args(["container", "inspect", "--format", "{{.State.Running}}"])
        .arg(&container)
        .output()
        .with_context(|| format!("cannot run {}", docker.display()))?;
    if !running.status.success() || running.stdout.trim_ascii() != b"true" {
        return Ok(Applied::NotRunning);
    }
    // SIGUSR1 to Apache (the container's first process): a graceful
    // restart, which reads its configuration again while the requests in
    // flight finish.
    let out = Command::new(docker)
        .args(["kill", "--signal", "USR1"])
        .arg(&container)
        .output()
        .with_context(|| format!("cannot run {}", docker.display()))?;
    if !out.status.success() {
        anyhow::bail!(
            "{} is written, but {container}'s Apache did not get the signal ({}): run \
             `docker kill --signal USR1 {container}` or restart the site",
            path.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(Applied::Reloaded)
}

/// Writes `domain`'s `php/site.conf`; its path.
fn write_site_conf(
    config: &NodeConfig,
    domain: &Domain,
    limits: &PhpLimits,
) -> Result<std::path::PathBuf> {
    let layout = config.layout();
    let dir = layout.php_dir(domain);
    std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let path = layout.php_site_conf(domain);
    let text = site_conf(limits, &config.wordpress.php_limits);
    hostyard_fs::AtomicWrite::new(0o644).write(&path, text.as_bytes())?;
    Ok(path)
}

/// A moved site's `php/site.conf` on its new server, before it starts:
/// the export carries the site's data, its settings are in its
/// declaration.
pub fn write_declared(config: &NodeConfig, domain: &Domain) -> Result<()> {
    let shown = crate::site::show(config, domain)?;
    write_site_conf(config, domain, &shown.php)?;
    Ok(())
}

/// The limits as `hostyard site show` and `set` print them: each with its
/// value, `(default)` when the site does not set it.
pub fn describe(config: &NodeConfig, limits: &PhpLimits) -> String {
    let e = effective(limits, &config.wordpress.php_limits);
    let mark = |set: bool| if set { "" } else { " (default)" };
    format!(
        "php: upload {}{}, memory {}{}, time {}{}",
        e.upload,
        mark(limits.upload.is_some()),
        e.memory,
        mark(limits.memory.is_some()),
        e.time,
        mark(limits.time.is_some()),
    )
}
