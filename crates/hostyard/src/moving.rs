//! `hostyard move ...`: the steps of a site's move, each run on the server
//! it concerns (the source or the target), on [`Layout`] and the kind's
//! names. The jump box (`deploy/site.sh move`) sequences them over ssh and
//! copies the staged export between the servers; the decisions are
//! [`hostyard_core::moving`]'s.

use std::fs;
use std::io::{self, Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{anyhow, bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::moving::{self, Phase, Prepare, Removal, Seen, Side, Step, Want};
use hostyard_core::{Domain, SiteKind, UnitRole};
use ring::digest::{Context as Digest, SHA256};

use crate::owner;
use crate::site::unit_is_active;

/// How long a WordPress site's MariaDB is waited for before a refresh (it
/// may still initialise from the import): as `hostyard refresh`.
pub const DB_WAIT: Duration = Duration::from_secs(120);

/// How long the target's HAProxy gets to answer the served check.
const SERVES_TIMEOUT: Duration = Duration::from_secs(5);

/// What the target shows, for [`moving::next`].
pub fn seen(
    config: &NodeConfig,
    domain: &Domain,
    kind: SiteKind,
    phase: Option<Phase>,
    was_active: bool,
) -> Seen {
    Seen {
        phase,
        was_active,
        target_has_data: config.layout().domain_dir(domain).is_dir(),
        target_serves: serves(config, domain, kind),
    }
}

/// The next step, seen from the target.
pub fn next(
    config: &NodeConfig,
    domain: &Domain,
    kind: SiteKind,
    phase: Option<Phase>,
    was_active: bool,
    want: Want,
) -> Step {
    let seen = seen(config, domain, kind, phase, was_active);
    moving::next(&seen, want, domain.as_str(), &config.node_name())
}

/// The target's check before a new move: no data of the site there yet
/// (its importer would keep that data over the move's).
pub fn can_receive(config: &NodeConfig, domain: &Domain) -> Result<()> {
    let layout = config.layout();
    for dir in [layout.domain_dir(domain), layout.import_dir(domain)] {
        if dir.exists() {
            bail!(
                "{} has {domain}'s data already ({}); move it aside there first",
                config.node_name(),
                dir.display()
            );
        }
    }
    Ok(())
}

/// The source's check before a new move to `to`: it has the site's data,
/// and no third server owns it. Whether the site runs here (a site that
/// does not moves stopped).
pub fn can_send(config: &NodeConfig, domain: &Domain, to: &str, take_over: bool) -> Result<bool> {
    let me = config.node_name();
    let layout = config.layout();
    let kind = hostyard_fs::kind::site_kind(&layout, domain)?.ok_or_else(|| {
        anyhow!(
            "{me} has no data for {domain} ({}); nothing to move",
            layout.domain_dir(domain).display()
        )
    })?;
    let owner = owner::owner(config, domain)?;
    if !moving::may_begin(owner.as_deref(), &me, to, take_over) {
        bail!(
            "{domain} is owned by server {} in etcd (hostyard site owner {domain}), not by {me}: \
             nothing was changed; deploy/site.sh move {domain} {to} --take-over moves it anyway",
            owner.unwrap_or_default()
        );
    }
    Ok(unit_is_active(&kind.site_unit(domain)))
}

/// The site's export, fresh, into its move stage on this server (the
/// source). An export dumps a WordPress site's database, so its database
/// unit starts first (it is not part of the site's unit: a stopped site
/// exports too).
pub fn export(config: &NodeConfig, domain: &Domain) -> Result<()> {
    let layout = config.layout();
    let kind = hostyard_fs::kind::site_kind(&layout, domain)?
        .ok_or_else(|| anyhow!("no data for {domain} here; nothing to export"))?;
    if kind.has_database() {
        systemctl(&["start"], &[hostyard_core::kind::mysql_unit(domain)])?;
    }
    let stage = layout.move_stage_dir(domain);
    remove_all(&stage)?;
    make_private_parent(&stage)?;
    hostyard_backup::export(config, domain, &stage)?;
    Ok(())
}

/// The target's copy of the site, stopped, from the staged export: built
/// by its importer the first time, refreshed from the stage after that; a
/// WordPress site's MariaDB runs. The site's own unit stays stopped.
pub fn prepare(config: &NodeConfig, domain: &Domain, kind: SiteKind) -> Result<()> {
    let layout = config.layout();
    let [stage, copy] = moving::stages(&layout, domain);
    if !stage.is_dir() {
        bail!(
            "{} holds no export of {domain}: copy it there first",
            stage.display()
        );
    }
    let mut since = None;
    if moving::prepare(layout.domain_dir(domain).is_dir()) == Prepare::Import {
        since = Some(unix_now());
        // The importer moves what it imported aside: it gets a copy, and
        // the stage stays for the refresh.
        remove_all(&copy)?;
        let status = Command::new("cp")
            .arg("-a")
            .arg(&stage)
            .arg(&copy)
            .status()
            .context("cannot run cp")?;
        if !status.success() {
            bail!("cannot copy {} to {}", stage.display(), copy.display());
        }
        fs::rename(&copy, layout.import_dir(domain))
            .with_context(|| format!("cannot put {domain}'s import in place"))?;
    }
    let mut units = vec![kind.instance_unit(UnitRole::Importer, domain)];
    if kind.has_database() {
        units.push(hostyard_core::kind::mysql_unit(domain));
    }
    systemctl(&["start"], &units)?;
    if let Some(since) = since {
        // The move's own copy of the stage (with the dump and its password
        // hashes) does not stay in the import-done dir.
        let done = layout.import_done_dir();
        let names: Vec<String> = match fs::read_dir(&done) {
            Ok(entries) => entries
                .filter_map(|e| e.ok()?.file_name().into_string().ok())
                .collect(),
            Err(e) if e.kind() == io::ErrorKind::NotFound => vec![],
            Err(e) => return Err(e).context(format!("cannot read {}", done.display())),
        };
        for name in moving::imported_since(names.iter().map(String::as_str), domain, since) {
            remove_all(&done.join(name))?;
        }
    }
    hostyard_backup::refresh::refresh(config, domain, &stage, DB_WAIT)?;
    Ok(())
}

/// The manifest of this server's move stage: every path with its type
/// and mode, every file's sha256, every link's target, sorted. The same
/// text on both servers means the same tree.
pub fn stage_manifest(config: &NodeConfig, domain: &Domain) -> Result<String> {
    manifest(&config.layout().move_stage_dir(domain))
}

/// The manifest of the tree at `root` (see [`stage_manifest`]).
pub fn manifest(root: &Path) -> Result<String> {
    let mut lines = Vec::new();
    for entry in walkdir::WalkDir::new(root)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
    {
        let entry = entry.with_context(|| format!("cannot read {}", root.display()))?;
        let rel = entry
            .path()
            .strip_prefix(root)?
            .to_string_lossy()
            .to_string();
        let meta = entry.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        let t = meta.file_type();
        let line = if t.is_dir() {
            format!("d {mode:o} {rel}")
        } else if t.is_file() {
            format!("f {mode:o} {} {rel}", sha256_file(entry.path())?)
        } else if t.is_symlink() {
            let target = fs::read_link(entry.path())?;
            format!("l {} -> {}", rel, target.to_string_lossy())
        } else {
            bail!(
                "{} is neither a file, a directory nor a link: an export has none",
                entry.path().display()
            );
        };
        lines.push(line);
    }
    lines.sort();
    Ok(lines.into_iter().map(|l| l + "\n").collect())
}

fn sha256_file(path: &Path) -> Result<String> {
    let mut file =
        fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut digest = Digest::new(&SHA256);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = file.read(&mut buf)?;
        if n == 0 {
            break;
        }
        digest.update(&buf[..n]);
    }
    Ok(hex::encode(digest.finish().as_ref()))
}

/// The laps of the hand-over: each step with the seconds since it began.
#[derive(Debug, Default)]
pub struct Laps(Vec<(&'static str, f64)>);

impl Laps {
    fn lap(&mut self, what: &'static str, t0: Instant) {
        self.0.push((what, t0.elapsed().as_secs_f64()));
    }
}

impl std::fmt::Display for Laps {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self.0.iter().map(|(w, s)| format!("{w} {s:.2}")).collect();
        f.write_str(&parts.join(", "))
    }
}

/// The gap's steps on the target, once the difference is staged: the stage
/// is checked against the source's manifest (`expected`), applied to the
/// stopped copy, the owner record handed from `from` to this server in one
/// transaction, and the site started and served (`start`), or left stopped
/// (a site that did not run moves stopped).
pub fn hand_over(
    config: &NodeConfig,
    domain: &Domain,
    kind: SiteKind,
    from: &str,
    expected: &str,
    start: bool,
    take_over: bool,
) -> Result<Laps> {
    let t0 = Instant::now();
    let mut laps = Laps::default();
    let me = config.node_name();
    let unit = kind.site_unit(domain);
    // A target started by an earlier try (and failed) stops first: a
    // refresh replaces a stopped site's data.
    if unit_is_active(&unit) {
        systemctl(&["stop"], std::slice::from_ref(&unit))?;
    }
    if stage_manifest(config, domain)? != expected {
        bail!(
            "the export on {me} differs from the one made on {from} (sha256 manifest): \
             run the move again"
        );
    }
    laps.lap("checked", t0);
    hostyard_backup::refresh::refresh(
        config,
        domain,
        &config.layout().move_stage_dir(domain),
        DB_WAIT,
    )?;
    laps.lap("refreshed", t0);
    owner::transfer(config, domain, from, &me, take_over)?;
    laps.lap("owned", t0);
    if kind == SiteKind::Wordpress {
        crate::php::write_declared(config, domain)?;
    }
    if start {
        systemctl(&["start"], std::slice::from_ref(&unit))?;
        if !serves(config, domain, kind) {
            bail!("{unit} started on {me}, but its HAProxy does not answer {domain} with the site's own answer");
        }
        laps.lap("started", t0);
    } else {
        systemctl(&["stop"], &[format!("*@{domain}.service")])?;
        laps.lap("stopped", t0);
    }
    Ok(laps)
}

/// Whether `kind@domain` is active here and this server's HAProxy answers
/// the domain with the site's own answer.
pub fn serves(config: &NodeConfig, domain: &Domain, kind: SiteKind) -> bool {
    unit_is_active(&kind.site_unit(domain))
        && http_status(config.haproxy.http_port, domain).is_ok_and(moving::serves_status)
}

/// The status of `GET /` for `domain` from this server's HTTP frontend.
fn http_status(port: u16, domain: &Domain) -> Result<u16> {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let mut conn = TcpStream::connect_timeout(&addr, SERVES_TIMEOUT)?;
    conn.set_read_timeout(Some(SERVES_TIMEOUT))?;
    conn.set_write_timeout(Some(SERVES_TIMEOUT))?;
    write!(
        conn,
        "GET / HTTP/1.1\r\nHost: {domain}\r\nUser-Agent: hostyard-move\r\nConnection: close\r\n\r\n"
    )?;
    let mut head = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        let n = conn.read(&mut head[got..])?;
        if n == 0 {
            break;
        }
        got += n;
    }
    let line = String::from_utf8_lossy(&head[..got]);
    line.split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| anyhow!("no HTTP status from 127.0.0.1:{port}"))
}

/// Removes the site's copy from this server: a move undone on its target,
/// or finished on its source. Its units stop first; its data, import (on a
/// target), staged exports and database network go.
pub fn remove(config: &NodeConfig, domain: &Domain, kind: SiteKind, side: Side) -> Result<Removal> {
    let removal = moving::removal(&config.layout(), domain, kind, side);
    // disable --now may fail for a unit never enabled: the stop after it
    // is what must hold.
    let _ = systemctl(&["disable", "--now", "-q"], &removal.units[..1]);
    let mut stop = removal.units.clone();
    stop.extend(removal.patterns.iter().cloned());
    systemctl(&["stop"], &stop)?;
    for path in &removal.paths {
        remove_all(path)?;
    }
    if let Some(network) = &removal.network {
        let exists = Command::new("docker")
            .args(["network", "inspect", network])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if exists {
            let status = Command::new("docker")
                .args(["network", "rm", network])
                .stdout(std::process::Stdio::null())
                .status()
                .context("cannot run docker")?;
            if !status.success() {
                bail!("cannot remove the docker network {network}");
            }
        }
    }
    Ok(removal)
}

/// Removes the move's staged exports on this server (they hold the site's
/// TLS key and a WordPress site's password hashes).
pub fn clean(config: &NodeConfig, domain: &Domain) -> Result<()> {
    for path in moving::stages(&config.layout(), domain) {
        remove_all(&path)?;
    }
    Ok(())
}

fn systemctl(verb: &[&str], units: &[String]) -> Result<()> {
    let status = Command::new("systemctl")
        .args(verb)
        .arg("--")
        .args(units)
        .status()
        .context("cannot run systemctl")?;
    if !status.success() {
        bail!("systemctl {} {} failed", verb.join(" "), units.join(" "));
    }
    Ok(())
}

/// Removes a file or a tree; nothing there is fine.
fn remove_all(path: &Path) -> Result<()> {
    let result = match path.symlink_metadata() {
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => Err(e),
        Ok(m) if m.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
    };
    result.with_context(|| format!("cannot remove {}", path.display()))
}

/// The stage's parent, made readable by root only (an export holds
/// secrets).
fn make_private_parent(path: &Path) -> Result<()> {
    let Some(parent) = path.parent() else {
        return Ok(());
    };
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(parent)
        .with_context(|| format!("cannot make {}", parent.display()))
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn the_manifest_names_types_modes_contents_and_links() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("www")).unwrap();
        fs::set_permissions(root.join("www"), fs::Permissions::from_mode(0o755)).unwrap();
        fs::write(root.join("www/index.html"), "hi\n").unwrap();
        fs::set_permissions(
            root.join("www/index.html"),
            fs::Permissions::from_mode(0o640),
        )
        .unwrap();
        symlink("index.html", root.join("www/home.html")).unwrap();
        let text = manifest(root).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "d 755 www",
                // sha256("hi\n")
                "f 640 98ea6e4f216f2fb4b69fff9b3a44842c38686ca685f3f55dc48c5d3fb1107be4 www/index.html",
                "l www/home.html -> index.html",
            ]
        );
    }

    #[test]
    fn the_manifest_changes_with_a_byte_or_a_mode() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("a");
        fs::write(&f, "one").unwrap();
        let before = manifest(dir.path()).unwrap();
        fs::write(&f, "onE").unwrap();
        let edited = manifest(dir.path()).unwrap();
        assert_ne!(before, edited);
        fs::set_permissions(&f, fs::Permissions::from_mode(0o600)).unwrap();
        assert_ne!(edited, manifest(dir.path()).unwrap());
    }

    #[test]
    fn removing_what_is_not_there_is_fine() {
        let dir = tempfile::tempdir().unwrap();
        remove_all(&dir.path().join("nothing")).unwrap();
        fs::create_dir_all(dir.path().join("t/u")).unwrap();
        remove_all(&dir.path().join("t")).unwrap();
        assert!(!dir.path().join("t").exists());
    }
}
