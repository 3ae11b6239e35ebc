//! `hostyard export D DIR`: a site's data in the original migration layout.
//!
//! What each kind writes (its spec's `parts`, beside `TLS/<domain>.pem` when
//! the site has one):
//!
//! ```text
//! static       static/www-content/          the served files
//! static-git   static-git/GITURL            the repository URL (may hold credentials: 0600)
//! wordpress    wordpress/wp-content/, wordpress/.htaccess
//!              mysql/dump.sql               mariadb-dump --single-transaction
//!              mysql/.env                   the database's names (no passwords)
//! all          hostyard/KIND                the site's kind, so a restore knows its unit
//! ```
//!
//! A WordPress export dumps the database first, then copies `wp-content/`:
//! the dump is one consistent moment, and a file uploaded between the dump
//! and the copy is in the export without its post (harmless: an orphan
//! upload), while a post made in that window is not in the dump. The window
//! is the time the copy takes.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::spec::Part;
use hostyard_core::{Domain, ImportLayout, Layout, SiteKind};
use hostyard_fs::unpack::{copy_tree_watched, open_regular};

use crate::db::{self, DbAccess};

/// Where an export records its kind, relative to its root. The importer
/// ignores it; `hostyard restore` reads it.
pub const KIND_FILE: &str = "hostyard/KIND";

pub use hostyard_fs::kind::site_kind;

/// Writes `domain`'s export into `dest`, a directory that must not exist
/// yet (made with mode 0700: it may hold a key, a dump and credentials).
/// On failure `dest` is removed again.
///
/// The site's tree (`www/`, `wp-content/`) is written by the site's own
/// code, also while it is copied: it is read beneath its root's descriptor
/// ([`hostyard_fs::beneath`]), so a directory swapped for a symlink is
/// refused, naming its path, and nothing outside the tree is copied.
pub fn export(config: &NodeConfig, domain: &Domain, dest: &Path) -> Result<SiteKind> {
    export_watched(config, domain, dest, &mut |_| {})
}

/// [`export`], calling `between` with each entry of the site's tree
/// (relative to `www/` or `wp-content/`) once its type is known and before
/// it is opened: the moment the site's code could swap it. Tests swap
/// entries there.
pub fn export_watched(
    config: &NodeConfig,
    domain: &Domain,
    dest: &Path,
    between: &mut dyn FnMut(&Path),
) -> Result<SiteKind> {
    let layout = config.layout();
    let kind = site_kind(&layout, domain)?.with_context(|| {
        format!(
            "{domain} has no data on this server ({} does not exist)",
            layout.domain_dir(domain).display()
        )
    })?;
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dest)
        .with_context(|| format!("cannot create {} (it must not exist yet)", dest.display()))?;
    let written = write_export(config, &layout, kind, domain, dest, between);
    if let Err(e) = written {
        let _ = fs::remove_dir_all(dest);
        return Err(e);
    }
    Ok(kind)
}

fn write_export(
    config: &NodeConfig,
    layout: &Layout,
    kind: SiteKind,
    domain: &Domain,
    dest: &Path,
    between: &mut dyn FnMut(&Path),
) -> Result<()> {
    let out = ImportLayout::new(dest);
    write_private(&dest.join(KIND_FILE), format!("{kind}\n").as_bytes())?;
    let pem = layout.tls_pem(domain);
    if fs::symlink_metadata(&pem).is_ok() {
        copy_private(&pem, &out.tls_pem(domain))?;
    }
    // The parts in the kind's order: a database is dumped first (see the
    // module's note on the window).
    for part in kind.spec().parts {
        match *part {
            Part::Database => {
                let names = DbAccess::of(layout, domain)?;
                dump_database(config, domain, &names, &out.mysql_dump())?;
                write_private(
                    &out.mysql_env(),
                    format!(
                        "MARIADB_DATABASE={}\nMARIADB_USER={}\n",
                        names.database, names.user
                    )
                    .as_bytes(),
                )?;
            }
            Part::Tree { data, export, .. } => {
                copy_dir(&data(layout, domain), &export(&out), between)?;
            }
            Part::OptionalFile { data, export, .. } => {
                let file = data(layout, domain);
                if fs::symlink_metadata(&file).is_ok() {
                    copy_private(&file, &export(&out))?;
                }
            }
            Part::Source { data, export } => copy_private(&data(layout, domain), &export(&out))?,
        }
    }
    Ok(())
}

fn create_private(path: &Path) -> Result<fs::File> {
    if let Some(parent) = path.parent() {
        hostyard_fs::make_dirs(parent, 0o700)?;
    }
    fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    create_private(path)?
        .write_all(content)
        .with_context(|| format!("cannot write {}", path.display()))
}

fn copy_private(src: &Path, dest: &Path) -> Result<()> {
    let mut input = open_regular(src)?;
    let mut output = create_private(dest)?;
    std::io::copy(&mut input, &mut output)
        .with_context(|| format!("cannot copy {} to {}", src.display(), dest.display()))?;
    Ok(())
}

/// No cap: an export copies what is already on disk.
fn copy_dir(src: &Path, dest: &Path, between: &mut dyn FnMut(&Path)) -> Result<()> {
    hostyard_fs::make_dirs(dest, 0o700)?;
    copy_tree_watched(src, dest, None, between)
        .with_context(|| format!("cannot copy {}", src.display()))?;
    Ok(())
}

/// `mariadb-dump --single-transaction` of the site's database, from its own
/// MariaDB, by the throwaway client of [`crate::db`].
fn dump_database(config: &NodeConfig, domain: &Domain, db: &DbAccess, dest: &Path) -> Result<()> {
    let output = create_private(dest)?;
    let mut cmd = db::client(config, domain, "mariadb-dump", &[]);
    cmd.args(["--single-transaction", "--quick", "--no-tablespaces"])
        .arg("--")
        .arg(&db.database)
        .stdout(output);
    let out = db::run(cmd, db, &config.docker.binary)?;
    if !out.status.success() {
        bail!(
            "cannot dump {domain}'s database ({}): {} (is mysql@{domain} running?)",
            out.status,
            db::last_error(&out)
        );
    }
    let size = fs::metadata(dest).map(|m| m.len()).unwrap_or(0);
    if size == 0 {
        bail!("the dump of {domain}'s database is empty");
    }
    Ok(())
}
