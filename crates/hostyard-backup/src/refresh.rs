//! `hostyard refresh D DIR`: a stopped site's data brought up to a newer
//! export of the same site. It is the second copy of a move
//! (`deploy/site.sh move`): the target imported the pre-copy and started
//! its MariaDB while the site still served on the source; in the gap only
//! the final export is applied here, so no database is initialised then.
//!
//! What changes, by kind (its spec's `parts`):
//!
//! ```text
//! static       www/ replaced by the export's static/www-content/
//! static-git   nothing (the URL must be the same; the puller fetches)
//! wordpress    wp-content/ and .htaccess replaced; the database dropped
//!              and loaded again from mysql/dump.sql, in its running MariaDB
//! all          tls/<domain>.pem replaced when the export has one
//! ```
//!
//! A directory is copied beside the one it replaces and swapped with it in
//! one rename, so the site's dir always holds a whole tree. The secrets stay
//! the site's own: the database keeps this server's passwords. A refresh
//! that fails part way (the dump does not load, say) leaves the parts it
//! did; it is meant to be run again, and a move undoes the copy instead.

use std::fs;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, PermissionsExt};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::spec::Part;
use hostyard_core::{Domain, ImportLayout, Layout, SiteKind};
use hostyard_fs::beneath::open_file_beneath;
use hostyard_fs::unpack::{check_no_symlink_below, copy_tree, open_regular};
use hostyard_fs::AtomicWrite;

use crate::db::{self, DbAccess};
use crate::export::{site_kind, KIND_FILE};

/// Where the dump is mounted in the client's container.
const DUMP_INSIDE: &str = "/run/hostyard-refresh/dump.sql";
/// A replacement dir is built under this prefix, beside what it replaces.
const NEW_PREFIX: &str = ".refresh-";
/// The replaced dir under this prefix, until it is removed.
const OLD_PREFIX: &str = ".refreshed-";

/// What a refresh did, for its one line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refreshed {
    pub kind: SiteKind,
    /// What was replaced, in order ("www/", "database", ...).
    pub parts: Vec<&'static str>,
}

/// Applies the export at `dir` to `domain`'s data. The caller makes sure
/// the site does not run (its unit is stopped); a WordPress site's MariaDB
/// must run, and is waited for up to `db_wait` (it may still initialise).
pub fn refresh(
    config: &NodeConfig,
    domain: &Domain,
    dir: &Path,
    db_wait: Duration,
) -> Result<Refreshed> {
    let layout = config.layout();
    let kind = site_kind(&layout, domain)?.with_context(|| {
        format!(
            "{domain} has no data on this server ({} does not exist): a refresh updates a site; \
             to make one, put the export in its import dir and start it",
            layout.domain_dir(domain).display()
        )
    })?;
    let dir = fs::canonicalize(dir)
        .with_context(|| format!("cannot read the export {}", dir.display()))?;
    let export = ImportLayout::new(&dir);
    let exported = export_kind(&dir)?;
    if exported != kind {
        bail!(
            "{} is the export of a {exported} site; {domain} here is a {kind} site",
            dir.display()
        );
    }
    let spec = kind.spec();
    let database = spec.parts.iter().any(|p| matches!(p, Part::Database));
    let dump = export.mysql_dump();
    if database {
        // Nothing is replaced for an export whose dump cannot be loaded.
        check_no_symlink_below(&dir, &dump)?;
        open_regular(&dump)?;
    }
    let mut parts = Vec::new();
    for part in spec.parts {
        match *part {
            Part::Tree {
                data,
                export: path,
                label,
            } => {
                replace_dir(config, &dir, &path(&export), &data(&layout, domain))?;
                parts.push(label);
            }
            Part::OptionalFile {
                data,
                export: path,
                label,
            } => {
                if fs::symlink_metadata(path(&export)).is_ok() {
                    let content = read_checked(&dir, &path(&export))?;
                    AtomicWrite::new(0o644).write(&data(&layout, domain), &content)?;
                    parts.push(label);
                }
            }
            Part::Source { data, export: path } => {
                let theirs = read_checked(&dir, &path(&export))?;
                let file = data(&layout, domain);
                let ours =
                    fs::read(&file).with_context(|| format!("cannot read {}", file.display()))?;
                if theirs != ours {
                    bail!(
                        "the export's {} differs from {domain}'s {}: a refresh keeps where a \
                         site's content comes from; import the site anew to change it",
                        path(&export).display(),
                        file.display()
                    );
                }
            }
            // Loaded once every file is in place, below.
            Part::Database => {}
        }
    }
    if database {
        load_dump(config, &layout, domain, &dump, db_wait)?;
        parts.push("database");
    }
    if fs::symlink_metadata(export.tls_pem(domain)).is_ok() {
        let pem = read_checked(&dir, &export.tls_pem(domain))?;
        AtomicWrite::new(0o600).write(&layout.tls_pem(domain), &pem)?;
        parts.push("tls");
    }
    Ok(Refreshed { kind, parts })
}

/// The kind an export records (`hostyard/KIND`).
fn export_kind(dir: &Path) -> Result<SiteKind> {
    let path = dir.join(KIND_FILE);
    let text = read_checked(dir, &path)
        .with_context(|| format!("{} is not a hostyard export", dir.display()))?;
    let kind = String::from_utf8_lossy(&text).trim().parse::<SiteKind>();
    kind.with_context(|| format!("in {}", path.display()))
}

/// A regular file of the export, opened beneath `root`: never through a
/// symlink, whatever changes in the export meanwhile.
fn read_checked(root: &Path, path: &Path) -> Result<Vec<u8>> {
    let rel = path
        .strip_prefix(root)
        .with_context(|| format!("{} is not below {}", path.display(), root.display()))?;
    let mut f = open_file_beneath(root, rel)?;
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut f, &mut out)
        .with_context(|| format!("cannot read {}", path.display()))?;
    Ok(out)
}

/// Replaces the directory `dest` by a copy of `src` (below the export
/// `root`), keeping `dest`'s owner and mode: copied beside it (within
/// `limits.unpack`), swapped in one rename, the old tree removed. A
/// leftover of a refresh cut short is removed first.
fn replace_dir(config: &NodeConfig, root: &Path, src: &Path, dest: &Path) -> Result<()> {
    check_no_symlink_below(root, src)?;
    let parent = dest
        .parent()
        .with_context(|| format!("{} has no parent", dest.display()))?;
    let name = dest
        .file_name()
        .with_context(|| format!("{} has no name", dest.display()))?
        .to_string_lossy();
    let new = parent.join(format!("{NEW_PREFIX}{name}"));
    let old = parent.join(format!("{OLD_PREFIX}{name}"));
    for leftover in [&new, &old] {
        remove_if_there(leftover)?;
    }
    let was =
        fs::symlink_metadata(dest).with_context(|| format!("cannot read {}", dest.display()))?;
    if !was.is_dir() {
        bail!("{} is not a directory", dest.display());
    }
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&new)
        .with_context(|| format!("cannot create {}", new.display()))?;
    let copied = if fs::symlink_metadata(src).is_ok() {
        copy_tree(src, &new, Some(&config.limits.unpack)).map(|_| ())
    } else {
        // The export has none: the site's becomes empty, as the importer
        // would make it.
        Ok(())
    };
    if let Err(e) = copied {
        let _ = fs::remove_dir_all(&new);
        return Err(e.context(format!("cannot copy {}", src.display())));
    }
    std::os::unix::fs::chown(&new, Some(was.uid()), Some(was.gid()))
        .with_context(|| format!("cannot set the owner of {}", new.display()))?;
    fs::set_permissions(&new, fs::Permissions::from_mode(was.mode() & 0o7777))
        .with_context(|| format!("cannot set the mode of {}", new.display()))?;
    hostyard_fs::exchange(&new, dest)
        .with_context(|| format!("cannot swap {} with {}", new.display(), dest.display()))?;
    fs::rename(&new, &old).with_context(|| format!("cannot rename {}", new.display()))?;
    remove_if_there(&old)
}

fn remove_if_there(path: &Path) -> Result<()> {
    match fs::remove_dir_all(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(e).with_context(|| format!("cannot remove {}", path.display()))
        }
        _ => Ok(()),
    }
}

/// The site's database dropped, made again and loaded from `dump`, in one
/// client run (a run cut short is simply run again). Waits up to `wait`
/// for a MariaDB that is not reachable yet.
fn load_dump(
    config: &NodeConfig,
    layout: &Layout,
    domain: &Domain,
    dump: &Path,
    wait: Duration,
) -> Result<()> {
    let db = DbAccess::of(layout, domain)?;
    let name = db::quoted_name(&db.database)?;
    let script = format!(
        "DROP DATABASE IF EXISTS {name}; CREATE DATABASE {name}; USE {name}; SOURCE {DUMP_INSIDE};"
    );
    let deadline = Instant::now() + wait;
    loop {
        let mut cmd = db::client(config, domain, "mariadb", &[(dump, DUMP_INSIDE)]);
        cmd.args(["--batch", "--execute", &script]);
        let out = db::run(cmd, &db, &config.docker.binary)?;
        if out.status.success() {
            return Ok(());
        }
        let error = db::last_error(&out);
        if !db::not_reachable(&error) || Instant::now() >= deadline {
            bail!(
                "cannot load the dump into {domain}'s database ({}): {error} (is mysql@{domain} \
                 running?)",
                out.status
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
}
