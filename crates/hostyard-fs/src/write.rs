//! Writing a whole file so that a reader never sees half of it.
//!
//! The content goes to a temporary file in the target's directory (same
//! filesystem, so the rename is atomic), which gets its final mode before
//! the rename: a file meant to be private (mode 0600, tempfile's own) is
//! never readable by others, not even briefly, and a world-readable one
//! (0644) is never seen with the wrong mode. systemd, HAProxy and the
//! containers read the old file or the new one, never a mix.

use std::fs;
use std::io::{BufWriter, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use anyhow::{Context, Result};

use crate::durable::sync_dir;
#[cfg(doc)]
use crate::durable::sync_file;

/// How a file is put in place: its mode, whether it is durable when the
/// write returns, and whether it may replace an existing file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AtomicWrite {
    mode: u32,
    synced: bool,
    replace: bool,
}

impl AtomicWrite {
    /// A file with permission bits `mode`, synced to disk before the write
    /// returns, replacing whatever file had the name.
    pub const fn new(mode: u32) -> AtomicWrite {
        AtomicWrite {
            mode,
            synced: true,
            replace: true,
        }
    }

    /// Leaves the fsync to the caller ([`sync_file`] once the change is
    /// live), so a slow disk (tens of ms per fsync) never delays a change
    /// that readers are waiting for.
    pub const fn unsynced(self) -> AtomicWrite {
        AtomicWrite {
            synced: false,
            ..self
        }
    }

    /// Fails when the name exists instead of replacing it: for files made
    /// once, such as a site's secrets.
    pub const fn no_replace(self) -> AtomicWrite {
        AtomicWrite {
            replace: false,
            ..self
        }
    }

    /// Writes `contents` to `path`, creating its directory if missing.
    pub fn write(&self, path: &Path, contents: &[u8]) -> Result<()> {
        self.write_with(path, |w| w.write_all(contents))
    }

    /// Like [`AtomicWrite::write`], streaming the contents through a
    /// buffered writer (no copy of a large file in memory).
    pub fn write_with(
        &self,
        path: &Path,
        fill: impl FnOnce(&mut dyn Write) -> std::io::Result<()>,
    ) -> Result<()> {
        let dir = match path.parent() {
            Some(d) if d.as_os_str().is_empty() => Path::new("."),
            Some(d) => d,
            None => anyhow::bail!("{} has no parent directory", path.display()),
        };
        fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".hostyard-")
            .suffix(".tmp")
            .tempfile_in(dir)
            .with_context(|| format!("cannot create a temporary file in {}", dir.display()))?;
        {
            let mut w = BufWriter::new(tmp.as_file_mut());
            fill(&mut w)
                .and_then(|()| w.flush())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        tmp.as_file()
            .set_permissions(fs::Permissions::from_mode(self.mode))
            .with_context(|| format!("cannot set the mode of {}", path.display()))?;
        if self.synced {
            // The data first: after a crash the name must not point to an
            // empty file.
            tmp.as_file()
                .sync_all()
                .with_context(|| format!("cannot sync {}", path.display()))?;
        }
        if self.replace {
            // `.error` drops the temporary file (which a PersistError keeps
            // alive), so a failure leaves nothing behind.
            tmp.persist(path)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot rename into {}", path.display()))?;
        } else {
            // renameat2(RENAME_NOREPLACE): an existing file stays as it is.
            tmp.persist_noclobber(path)
                .map_err(|e| e.error)
                .with_context(|| format!("cannot create {}", path.display()))?;
        }
        if self.synced {
            sync_dir(dir)?;
        }
        Ok(())
    }
}

/// Makes `dir` and its missing parents with `mode`; an error names `dir`.
pub fn make_dirs(dir: &Path, mode: u32) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .with_context(|| format!("cannot create {}", dir.display()))
}

/// Makes `dir` (and its parents) and leaves it 0700 whatever mode it had:
/// a directory of private keys that only root reads.
pub fn private_dir(dir: &Path) -> Result<()> {
    make_dirs(dir, 0o700)?;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

/// The JSON state file at `path` (`what` it is, for the error), or
/// `None` when its writer has not made it yet.
pub fn read_json_if_exists<T: serde::de::DeserializeOwned>(
    path: &Path,
    what: &str,
) -> anyhow::Result<Option<T>> {
    read_if_exists(path)?
        .map(|raw| serde_json::from_slice(&raw))
        .transpose()
        .with_context(|| format!("{} is not {what}", path.display()))
}

/// The whole file, or `None` when there is none (a state file its writer
/// has not made yet); any other failure names the path.
pub fn read_if_exists(path: &Path) -> anyhow::Result<Option<Vec<u8>>> {
    match std::fs::read(path) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("cannot read {}", path.display())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::durable::sync_file;
    use std::os::unix::fs::MetadataExt;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().mode() & 0o7777
    }

    fn leftovers(dir: &Path) -> Vec<String> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with('.'))
            .collect()
    }

    #[test]
    fn a_write_replaces_the_whole_file_with_the_mode_asked_for() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/file.cfg");
        AtomicWrite::new(0o644).write(&path, b"one\n").unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(mode(&path), 0o644);
        AtomicWrite::new(0o644)
            .unsynced()
            .write_with(&path, |w| w.write_all(b"two\n"))
            .unwrap();
        assert_eq!(fs::read_to_string(&path).unwrap(), "two\n");
        sync_file(&path).unwrap();
        assert!(leftovers(path.parent().unwrap()).is_empty());
    }

    #[test]
    fn a_private_file_is_never_replaced_and_keeps_mode_0600() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("secret");
        let private = AtomicWrite::new(0o600).no_replace();
        private.write(&path, b"s3cret").unwrap();
        assert_eq!(mode(&path), 0o600);
        let err = private.write(&path, b"other").unwrap_err();
        assert!(format!("{err:#}").contains("cannot create"), "{err:#}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "s3cret");
        assert!(leftovers(dir.path()).is_empty(), "temporary file left");
    }

    #[test]
    fn a_failed_fill_leaves_the_old_file_and_no_temporary() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("map");
        AtomicWrite::new(0o644).write(&path, b"old").unwrap();
        let err = AtomicWrite::new(0o644)
            .write_with(&path, |w| {
                w.write_all(b"half")?;
                Err(std::io::Error::other("disk full"))
            })
            .unwrap_err();
        assert!(format!("{err:#}").contains("disk full"), "{err:#}");
        assert_eq!(fs::read_to_string(&path).unwrap(), "old");
        assert!(leftovers(dir.path()).is_empty(), "temporary file left");
    }
}
