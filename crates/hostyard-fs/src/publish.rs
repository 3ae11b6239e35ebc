//! Publishing by rename: a directory or a symlink is made under a
//! temporary name beside its final one and renamed into place, so a reader
//! (nginx serving `current`) sees the old one or the new one. A writer that
//! was killed leaves only dot-named temporaries, which the next one removes.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

use crate::durable::sync_dir;

/// `dir/.name.tmp-<pid>` next to `path`: on the same filesystem, so the
/// final rename is atomic, and dot-named, so it is never a published name.
pub fn temporary_sibling(path: &Path) -> Result<PathBuf> {
    let name = path
        .file_name()
        .with_context(|| format!("{} has no file name", path.display()))?;
    let parent = path
        .parent()
        .with_context(|| format!("{} has no parent", path.display()))?;
    Ok(parent.join(format!(
        ".{}.tmp-{}",
        name.to_string_lossy(),
        std::process::id()
    )))
}

/// Removes what a killed writer left in `dir` (names made by
/// [`temporary_sibling`]); the caller holds the lock that excludes a live
/// writer. A missing `dir` has nothing to remove.
pub fn remove_stale_temporaries(dir: &Path) -> Result<()> {
    let entries = match fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
    };
    for entry in entries {
        let entry = entry?;
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            let removed = if entry.file_type()?.is_dir() {
                fs::remove_dir_all(&path)
            } else {
                fs::remove_file(&path)
            };
            removed.with_context(|| format!("cannot remove stale {}", path.display()))?;
        }
    }
    Ok(())
}

/// Atomically points `link` at `target`: a new symlink renamed over the
/// old, then the rename made durable.
pub fn switch_link(link: &Path, target: &Path) -> Result<()> {
    let tmp = temporary_sibling(link)?;
    let _ = fs::remove_file(&tmp);
    std::os::unix::fs::symlink(target, &tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    fs::rename(&tmp, link).with_context(|| format!("cannot switch {}", link.display()))?;
    if let Some(parent) = link.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_link_is_switched_and_stale_temporaries_are_removed() {
        let dir = tempfile::tempdir().unwrap();
        let link = dir.path().join("current");
        switch_link(&link, Path::new("trees/a")).unwrap();
        switch_link(&link, Path::new("trees/b")).unwrap();
        assert_eq!(fs::read_link(&link).unwrap(), Path::new("trees/b"));

        let stale = temporary_sibling(&dir.path().join("tree")).unwrap();
        fs::create_dir(&stale).unwrap();
        fs::write(stale.join("f"), "x").unwrap();
        fs::write(dir.path().join(".keep"), "").unwrap();
        remove_stale_temporaries(dir.path()).unwrap();
        assert!(!stale.exists());
        assert!(dir.path().join(".keep").exists());
        assert!(fs::symlink_metadata(&link)
            .unwrap()
            .file_type()
            .is_symlink());
        remove_stale_temporaries(&dir.path().join("missing")).unwrap();
    }
}
