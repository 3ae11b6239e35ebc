//! Putting rendered units on disk.
//!
//! Each file is written by [`hostyard_fs::AtomicWrite`] (a temp file in the
//! same directory renamed over the old one), so systemd never reads half a
//! unit. A file whose
//! content is already right is not touched at all: its mtime stays, and a
//! `daemon-reload` is needed only when something was written.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::Context;
use hostyard_fs::AtomicWrite;

use crate::units::UnitFile;

/// What happened to one file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Created(PathBuf),
    Updated(PathBuf),
}

impl Change {
    pub fn path(&self) -> &Path {
        match self {
            Change::Created(p) | Change::Updated(p) => p,
        }
    }
}

/// How a file in the output directory compares with what would be written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Difference {
    Missing(PathBuf),
    Differs(PathBuf),
}

/// The line `generate` and `mail` print for a file: `created PATH`.
impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Change::Created(p) => write!(f, "created {}", p.display()),
            Change::Updated(p) => write!(f, "updated {}", p.display()),
        }
    }
}

/// The line `--check` prints for a file: `missing PATH`, `differs PATH`.
impl std::fmt::Display for Difference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Difference::Missing(p) => write!(f, "missing {}", p.display()),
            Difference::Differs(p) => write!(f, "differs {}", p.display()),
        }
    }
}

/// Writes `files` into `dir` (created if missing); returns the files that
/// were created or changed, in order.
pub fn write_units(dir: &Path, files: &[UnitFile]) -> anyhow::Result<Vec<Change>> {
    fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut changes = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        let change = match hostyard_fs::read_if_exists(&path)? {
            Some(old) if old == f.contents.as_bytes() => continue,
            Some(_) => Change::Updated(path.clone()),
            None => Change::Created(path.clone()),
        };
        // Units are world-readable like the ones systemd ships.
        AtomicWrite::new(0o644)
            .write(&path, f.contents.as_bytes())
            .with_context(|| format!("cannot write {}", path.display()))?;
        changes.push(change);
    }
    Ok(changes)
}

/// Compares `files` with what `dir` holds; writes nothing.
pub fn check_units(dir: &Path, files: &[UnitFile]) -> anyhow::Result<Vec<Difference>> {
    let mut differences = Vec::new();
    for f in files {
        let path = dir.join(&f.name);
        match hostyard_fs::read_if_exists(&path)? {
            Some(old) if old == f.contents.as_bytes() => {}
            Some(_) => differences.push(Difference::Differs(path)),
            None => differences.push(Difference::Missing(path)),
        }
    }
    Ok(differences)
}
