//! Making writes and renames durable, and renames that never replace.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use nix::fcntl::{renameat2, RenameFlags, AT_FDCWD};

/// Flushes a file's data, then the directory entry that names it (the
/// rename that put it there).
pub fn sync_file(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("syncing {}", path.display()))?;
    if let Some(dir) = path.parent() {
        sync_dir(dir)?;
    }
    Ok(())
}

/// Makes a rename in `dir` durable.
pub fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .with_context(|| format!("cannot sync {}", dir.display()))
}

/// Flushes the filesystem holding `path`: one call instead of an fsync per
/// file of a large tree.
pub fn sync_filesystem(path: &Path) -> Result<()> {
    let f = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    nix::unistd::syncfs(&f).with_context(|| format!("cannot sync {}", path.display()))
}

/// Renames `from` to `to`, failing (`EEXIST`) when `to` exists: what was
/// there is never lost, even to a concurrent writer (`renameat2` with
/// `RENAME_NOREPLACE` decides in the kernel, with no window between a check
/// and the rename). The caller names the paths in its error.
pub fn rename_no_replace(from: &Path, to: &Path) -> std::io::Result<()> {
    renameat2(AT_FDCWD, from, AT_FDCWD, to, RenameFlags::RENAME_NOREPLACE)
        .map_err(std::io::Error::from)
}

/// Swaps `a` and `b` (both must exist) in one step (`renameat2` with
/// `RENAME_EXCHANGE`): a reader sees the one or the other, never neither.
pub fn exchange(a: &Path, b: &Path) -> std::io::Result<()> {
    renameat2(AT_FDCWD, a, AT_FDCWD, b, RenameFlags::RENAME_EXCHANGE).map_err(std::io::Error::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rename_no_replace_keeps_an_existing_target() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (dir.path().join("a"), dir.path().join("b"));
        std::fs::write(&a, "new").unwrap();
        std::fs::write(&b, "old").unwrap();
        let err = rename_no_replace(&a, &b).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::AlreadyExists);
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "old");
        std::fs::remove_file(&b).unwrap();
        rename_no_replace(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "new");
        assert!(!a.exists());
        std::fs::write(&a, "other").unwrap();
        exchange(&a, &b).unwrap();
        assert_eq!(std::fs::read_to_string(&a).unwrap(), "new");
        assert_eq!(std::fs::read_to_string(&b).unwrap(), "other");
        sync_file(&b).unwrap();
        sync_filesystem(dir.path()).unwrap();
    }
}
