//! Reading a tree that its owner may change while root reads it, without
//! ever leaving it.
//!
//! A site's `wp-content/` or `www/` is writable by the site's own code, and
//! an export, a refresh or an import reads it as root. A walk by path
//! (walkdir, `fs::read_dir(path)`, `open(path)`) resolves every component
//! again at each open, and `O_NOFOLLOW` guards only the last one: a
//! directory swapped for a symlink between the listing and the open is
//! followed, and root copies whatever the link points at (another site's
//! secrets, a TLS key) into the tenant's export.
//!
//! Here every directory is opened relative to its parent's descriptor, by
//! one name (a listing never holds a `/`, and `.`/`..` are skipped), with
//! `O_NOFOLLOW | O_DIRECTORY`, and listed from that descriptor; a file is
//! opened the same way with `O_NOFOLLOW` and checked with `fstat` before a
//! byte is read. No open can resolve anything outside the directory held,
//! whatever the tree's owner renames or links meanwhile. An entry whose type
//! changed between the listing and the open (the swap) is refused with its
//! path; one that disappeared is skipped, as a later listing would not show
//! it. (One name at a time needs no `openat2`, so it works on every kernel
//! and under any seccomp profile.)

use std::ffi::{CStr, CString, OsStr};
use std::fs::File;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use anyhow::{bail, Context, Result};
use nix::dir::Dir;
use nix::errno::Errno;
use nix::fcntl::{openat, readlinkat, AtFlags, OFlag};
use nix::sys::stat::{fstatat, Mode, SFlag};

/// One entry of the tree, as the walk found it.
pub enum Entry {
    /// A directory; its entries follow.
    Dir,
    /// A regular file, opened beneath the root and checked to be one.
    File(File),
    /// A symlink (never followed) and its target.
    Symlink(PathBuf),
    /// Something that is neither: "a fifo", "a socket", "a device file".
    /// Not opened.
    Other(&'static str),
}

/// Calls `visit` with every entry below `root` (relative path, entry), a
/// directory before its entries, names in byte order. `root` itself must
/// be a directory and not a symlink; its ancestors are trusted (they are
/// root's). Stops at the first error of the walk or of `visit`.
pub fn walk(root: &Path, visit: &mut dyn FnMut(&Path, Entry) -> Result<()>) -> Result<()> {
    walk_watched(root, &mut |_| {}, visit)
}

/// [`walk`], calling `between` with each entry's relative path once its
/// type is known and before it is opened: the moment the tree's owner could
/// swap it. Tests swap entries there.
pub fn walk_watched(
    root: &Path,
    between: &mut dyn FnMut(&Path),
    visit: &mut dyn FnMut(&Path, Entry) -> Result<()>,
) -> Result<()> {
    let fd = nix::fcntl::open(root, dir_flags(), Mode::empty()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {} ({e}; it must be a directory, not a symlink)",
            root.display()
        )
    })?;
    let mut walker = Walker {
        root,
        between,
        visit,
    };
    walker.dir(fd, Path::new(""))
}

/// Opens the regular file `rel` below `root`, one component at a time
/// beneath `root`'s descriptor: no symlink is followed anywhere on the way.
pub fn open_file_beneath(root: &Path, rel: &Path) -> Result<File> {
    let shown = root.join(rel);
    let mut dir = nix::fcntl::open(root, dir_flags(), Mode::empty())
        .map_err(|e| anyhow::anyhow!("cannot open {} ({e})", root.display()))?;
    let parts: Vec<&OsStr> = rel
        .components()
        .map(|c| match c {
            Component::Normal(name) => Ok(name),
            _ => Err(anyhow::anyhow!(
                "{} is not a plain relative path below {}",
                rel.display(),
                root.display()
            )),
        })
        .collect::<Result<_>>()?;
    let Some((last, parents)) = parts.split_last() else {
        bail!("{} names no file below {}", rel.display(), root.display());
    };
    for part in parents {
        dir = openat(&dir, *part, dir_flags(), Mode::empty()).map_err(|e| {
            anyhow::anyhow!(
                "cannot open {} ({e}; every directory on the way must be a real one, not a symlink)",
                shown.display()
            )
        })?;
    }
    let fd = openat(&dir, *last, file_flags(), Mode::empty()).map_err(|e| {
        anyhow::anyhow!(
            "cannot open {} ({e}; it must be a regular file, not a symlink)",
            shown.display()
        )
    })?;
    checked_regular(File::from(fd), &shown)
}

/// `file`, opened as `shown` without following a link, once `fstat` says
/// it is a regular file (not a directory, a fifo or a device).
pub(crate) fn checked_regular(file: File, shown: &Path) -> Result<File> {
    let meta = file
        .metadata()
        .with_context(|| format!("cannot read {}", shown.display()))?;
    if !meta.is_file() {
        bail!("{} is not a regular file", shown.display());
    }
    Ok(file)
}

fn dir_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC
}

/// `O_NONBLOCK`: a fifo swapped in opens without waiting for a writer (and
/// is then refused by the `fstat` check); `O_NOCTTY`: a terminal swapped in
/// never becomes ours.
fn file_flags() -> OFlag {
    OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_NONBLOCK | OFlag::O_NOCTTY | OFlag::O_CLOEXEC
}

struct Walker<'a> {
    root: &'a Path,
    between: &'a mut dyn FnMut(&Path),
    visit: &'a mut dyn FnMut(&Path, Entry) -> Result<()>,
}

impl Walker<'_> {
    fn dir(&mut self, fd: OwnedFd, rel: &Path) -> Result<()> {
        let shown = || self.root.join(rel);
        let mut dir = Dir::from_fd(fd)
            .map_err(|e| anyhow::anyhow!("cannot read {} ({e})", shown().display()))?;
        let mut names: Vec<CString> = Vec::new();
        for entry in dir.iter() {
            let entry =
                entry.map_err(|e| anyhow::anyhow!("cannot read {} ({e})", shown().display()))?;
            let name = entry.file_name();
            if name != c"." && name != c".." {
                names.push(name.to_owned());
            }
        }
        names.sort();
        for name in names {
            let child = rel.join(OsStr::from_bytes(name.to_bytes()));
            self.entry(&dir, &name, &child)?;
        }
        Ok(())
    }

    /// One entry of the directory held by `dir`; one that disappeared
    /// since the listing is skipped.
    fn entry(&mut self, dir: &Dir, name: &CStr, rel: &Path) -> Result<()> {
        let shown = self.root.join(rel);
        let stat = match fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW) {
            Ok(s) => s,
            Err(Errno::ENOENT) => return Ok(()),
            Err(e) => bail!("cannot read {} ({e})", shown.display()),
        };
        let kind = SFlag::from_bits_truncate(stat.st_mode) & SFlag::S_IFMT;
        (self.between)(rel);
        let changed = |e: Errno, was: &str| {
            anyhow::anyhow!(
                "{} changed while it was read (it was {was}; now: {e}); refused, nothing \
                 of it was read (a symlink swapped in by the site's own code?)",
                shown.display()
            )
        };
        if kind == SFlag::S_IFDIR {
            let fd = match openat(dir, name, dir_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(changed(e, "a directory")),
            };
            (self.visit)(rel, Entry::Dir)?;
            self.dir(fd, rel)
        } else if kind == SFlag::S_IFREG {
            let fd = match openat(dir, name, file_flags(), Mode::empty()) {
                Ok(fd) => fd,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(changed(e, "a regular file")),
            };
            let file = File::from(fd);
            let meta = file
                .metadata()
                .with_context(|| format!("cannot read {}", shown.display()))?;
            if !meta.is_file() {
                return Err(changed(Errno::EINVAL, "a regular file"));
            }
            (self.visit)(rel, Entry::File(file))
        } else if kind == SFlag::S_IFLNK {
            let target = match readlinkat(dir, name) {
                Ok(t) => t,
                Err(Errno::ENOENT) => return Ok(()),
                Err(e) => return Err(changed(e, "a symlink")),
            };
            (self.visit)(rel, Entry::Symlink(PathBuf::from(target)))
        } else if kind == SFlag::S_IFIFO {
            (self.visit)(rel, Entry::Other("a fifo"))
        } else if kind == SFlag::S_IFSOCK {
            (self.visit)(rel, Entry::Other("a socket"))
        } else {
            (self.visit)(rel, Entry::Other("a device file"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Read;

    /// `tmp/<root>` holding `file` (a relative path, its text) and a
    /// symlink `<link>` to `tmp/outside`, which holds the file `<secret>`:
    /// what a walk or an open must never reach.
    fn root_linked_outside(
        tmp: &Path,
        root: &str,
        file: (&str, &str),
        link: &str,
        secret: &str,
    ) -> PathBuf {
        let root = tmp.join(root);
        let (rel, text) = file;
        fs::create_dir_all(root.join(rel).parent().unwrap()).unwrap();
        fs::write(root.join(rel), text).unwrap();
        fs::create_dir_all(tmp.join("outside")).unwrap();
        fs::write(tmp.join("outside").join(secret), "SECRET").unwrap();
        std::os::unix::fs::symlink(tmp.join("outside"), root.join(link)).unwrap();
        root
    }

    #[test]
    fn a_file_is_opened_beneath_its_root_and_never_through_a_link() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_linked_outside(
            tmp.path(),
            "export",
            ("mysql/dump.sql", "dump"),
            "TLS",
            "key.pem",
        );
        std::os::unix::fs::symlink("dump.sql", root.join("mysql/link.sql")).unwrap();

        let mut text = String::new();
        open_file_beneath(&root, Path::new("mysql/dump.sql"))
            .unwrap()
            .read_to_string(&mut text)
            .unwrap();
        assert_eq!(text, "dump");
        for (rel, want) in [
            ("TLS/key.pem", "every directory on the way"),
            ("mysql/link.sql", "not a symlink"),
            ("mysql/../../outside/key.pem", "not a plain relative path"),
            ("mysql", "not a regular file"),
            ("", "names no file"),
        ] {
            let err = format!(
                "{:#}",
                open_file_beneath(&root, Path::new(rel)).unwrap_err()
            );
            assert!(err.contains(want), "{rel}: {err}");
        }
    }

    #[test]
    fn a_walk_lists_every_entry_once_directories_first_and_follows_no_link() {
        let tmp = tempfile::tempdir().unwrap();
        let root = root_linked_outside(tmp.path(), "www", ("a/b/f", "f"), "l", "secret");
        let mut seen = Vec::new();
        walk(&root, &mut |rel, entry| {
            let what = match entry {
                Entry::Dir => "dir".to_string(),
                Entry::File(mut f) => {
                    let mut s = String::new();
                    f.read_to_string(&mut s)?;
                    format!("file {s}")
                }
                Entry::Symlink(t) => format!("link {}", t.display()),
                Entry::Other(what) => what.to_string(),
            };
            seen.push(format!("{} {what}", rel.display()));
            Ok(())
        })
        .unwrap();
        let outside = tmp.path().join("outside");
        assert_eq!(
            seen,
            [
                "a dir".to_string(),
                "a/b dir".to_string(),
                "a/b/f file f".to_string(),
                format!("l link {}", outside.display()),
            ]
        );
        // The root itself must not be a link.
        let err = walk(&root.join("l"), &mut |_, _| Ok(())).unwrap_err();
        assert!(format!("{err:#}").contains("not a symlink"), "{err:#}");
    }
}
