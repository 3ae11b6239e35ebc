//! Writing someone else's files into a site without ever leaving it.
//!
//! Both hostyard-gitpull (a `git archive` of the site's repository) and
//! hostyard-import (an import tarball or folder) run as root and place files
//! that a site owner or an old server made. This module is the one place that
//! does it:
//!
//! - every name and link target is checked by
//!   [`crate::archive_path`] (no `..`, no absolute paths, no links
//!   pointing out);
//! - once the tree is complete, every link is resolved through the others
//!   (as the kernel would) and must stay inside: `a/up -> ..` plus
//!   `b -> a/up/../../x` is refused although each passes alone;
//! - nothing is written through a symlink: each parent directory of an entry
//!   is checked to be a real directory, and files are created with
//!   `O_EXCL` (a name that already exists is an error, not an overwrite);
//! - device files, fifos and sockets are refused;
//! - the tree is capped in bytes, entries and depth ([`UnpackLimits`], the
//!   node config's `limits.unpack`), so a gzip or git bomb stops at the cap
//!   in the caller's staging dir;
//! - a tree on disk is read by [`crate::beneath`], beneath its root's
//!   descriptor, so its owner cannot redirect the copy by a swap;
//! - modes are normalised (0755 for directories and executables, 0644 for
//!   other files): an archive cannot make a setuid or world-writable file.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use crate::archive_path::{check_entry_path, check_symlink_target, resolve_beneath};
use anyhow::{bail, Context, Result};
use hostyard_config::limits::{UnpackCap, UnpackLimits};

use crate::beneath::{self, Entry};

/// What was written, for the log line.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Counts {
    pub files: u64,
    pub dirs: u64,
    pub symlinks: u64,
    pub bytes: u64,
}

/// Places entries under one existing root directory.
struct Writer {
    root: PathBuf,
    /// Directories (relative) known to be real directories under the root.
    known_dirs: HashSet<PathBuf>,
    /// Every link written, relative, with its target.
    links: HashMap<PathBuf, PathBuf>,
    counts: Counts,
    limits: Option<UnpackLimits>,
}

impl Writer {
    fn new(root: &Path, limits: Option<&UnpackLimits>) -> Result<Writer> {
        let meta = fs::symlink_metadata(root)
            .with_context(|| format!("cannot read {}", root.display()))?;
        if !meta.is_dir() {
            bail!("{} is not a directory", root.display());
        }
        let mut known_dirs = HashSet::new();
        known_dirs.insert(PathBuf::new());
        Ok(Writer {
            root: root.to_path_buf(),
            known_dirs,
            links: HashMap::new(),
            counts: Counts::default(),
            limits: limits.copied(),
        })
    }

    /// Refuses `rel` when it is deeper than the cap or when the tree
    /// already holds as many entries as it may.
    fn admit(&self, rel: &Path) -> Result<()> {
        let Some(limits) = &self.limits else {
            return Ok(());
        };
        if rel.components().count() as u64 > u64::from(limits.max_depth.get()) {
            return Err(over(limits, UnpackCap::Depth, rel));
        }
        let entries = self.counts.files + self.counts.dirs + self.counts.symlinks;
        if entries >= limits.max_files.get() {
            return Err(over(limits, UnpackCap::Files, rel));
        }
        Ok(())
    }

    /// Makes sure every ancestor of `rel` is a real directory under the
    /// root, creating missing ones; refuses to go through a symlink or file.
    fn ensure_parent(&mut self, rel: &Path) -> Result<()> {
        let Some(parent) = rel.parent() else {
            return Ok(());
        };
        self.ensure_dir(parent)
    }

    fn ensure_dir(&mut self, rel: &Path) -> Result<()> {
        if self.known_dirs.contains(rel) {
            return Ok(());
        }
        if let Some(parent) = rel.parent() {
            self.ensure_dir(parent)?;
        }
        let full = self.root.join(rel);
        match fs::symlink_metadata(&full) {
            Ok(m) if m.is_dir() => {}
            Ok(_) => bail!(
                "{} would be written through {}, which is not a directory (a symlink or file)",
                self.root.display(),
                rel.display()
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                fs::DirBuilder::new()
                    .mode(0o755)
                    .create(&full)
                    .with_context(|| format!("cannot create {}", full.display()))?;
                self.counts.dirs += 1;
            }
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", full.display())),
        }
        self.known_dirs.insert(rel.to_path_buf());
        Ok(())
    }

    fn dir(&mut self, rel: &Path) -> Result<()> {
        if rel.as_os_str().is_empty() {
            return Ok(());
        }
        self.admit(rel)?;
        self.ensure_dir(rel)
    }

    fn file(&mut self, rel: &Path, executable: bool, content: &mut dyn Read) -> Result<()> {
        if rel.as_os_str().is_empty() {
            bail!("a file entry names the archive root");
        }
        self.admit(rel)?;
        self.ensure_parent(rel)?;
        let full = self.root.join(rel);
        let mut out = OpenOptions::new()
            .write(true)
            .create_new(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .mode(if executable { 0o755 } else { 0o644 })
            .open(&full)
            .with_context(|| format!("cannot create {} (a duplicate entry?)", rel.display()))?;
        // Room left under the byte cap; one byte more is read to tell a
        // file that fills it exactly from one that goes past.
        let room = self
            .limits
            .map(|l| l.max_bytes.bytes().saturating_sub(self.counts.bytes));
        let n = io::copy(
            &mut Read::take(content, room.map_or(u64::MAX, |r| r.saturating_add(1))),
            &mut out,
        )
        .with_context(|| format!("cannot write {}", full.display()))?;
        if let (Some(limits), Some(room)) = (&self.limits, room) {
            if n > room {
                return Err(over(limits, UnpackCap::Bytes, rel));
            }
        }
        self.counts.files += 1;
        self.counts.bytes += n;
        Ok(())
    }

    fn symlink(&mut self, rel: &Path, target: &[u8]) -> Result<()> {
        check_symlink_target(rel, target)?;
        self.admit(rel)?;
        self.ensure_parent(rel)?;
        let full = self.root.join(rel);
        let target = Path::new(OsStr::from_bytes(target));
        std::os::unix::fs::symlink(target, &full).with_context(|| {
            format!(
                "cannot create symlink {} (a duplicate entry?)",
                rel.display()
            )
        })?;
        self.links.insert(rel.to_path_buf(), target.to_path_buf());
        self.counts.symlinks += 1;
        Ok(())
    }

    /// Resolves every link of the finished tree through the others: a link
    /// may be written before the link it goes through, so only the whole
    /// tree can tell.
    fn finish(self) -> Result<Counts> {
        let mut links: Vec<_> = self.links.iter().collect();
        links.sort();
        for (rel, target) in links {
            let from = rel.parent().unwrap_or(Path::new("")).join(target);
            resolve_beneath(&from, |p| self.links.get(p).cloned())
                .with_context(|| format!("link {} -> {}", rel.display(), target.display()))?;
        }
        Ok(self.counts)
    }

    /// A tar hard link names an earlier entry; its content is copied, so
    /// the new file never shares an inode with anything outside the tree.
    fn hard_link(&mut self, rel: &Path, target: &[u8]) -> Result<()> {
        let target_rel = check_entry_path(target)?;
        if let Some(parent) = target_rel.parent() {
            if !self.known_dirs.contains(parent) {
                bail!(
                    "hard link {} points to {}, which is not an earlier file of the archive",
                    rel.display(),
                    target_rel.display()
                );
            }
        }
        let source = self.root.join(&target_rel);
        let mut input = OpenOptions::new()
            .read(true)
            .custom_flags(nix::libc::O_NOFOLLOW)
            .open(&source)
            .with_context(|| {
                format!(
                    "hard link {} points to {}, which is not an earlier file of the archive",
                    rel.display(),
                    target_rel.display()
                )
            })?;
        let meta = input.metadata()?;
        if !meta.is_file() {
            bail!(
                "hard link {} points to {}, which is not a regular file",
                rel.display(),
                target_rel.display()
            );
        }
        let executable = meta.permissions().mode() & 0o111 != 0;
        self.file(rel, executable, &mut input)
    }
}

/// The refusal when `rel` takes the tree past `cap`.
fn over(limits: &UnpackLimits, cap: UnpackCap, rel: &Path) -> anyhow::Error {
    anyhow::anyhow!(
        "{}",
        limits.refusal(cap, &format!("the tree (at {})", rel.display()))
    )
}

/// Unpacks a tar stream into `dest`, an existing (normally empty)
/// directory, within `limits` (`None`: no cap). Stops at the first refused
/// entry; the caller discards `dest`.
pub fn unpack_tar(input: impl Read, dest: &Path, limits: Option<&UnpackLimits>) -> Result<Counts> {
    let mut writer = Writer::new(dest, limits)?;
    let mut archive = tar::Archive::new(input);
    for entry in archive.entries().context("cannot read the tar stream")? {
        let mut entry = entry.context("cannot read the tar stream")?;
        let raw = entry.path_bytes().into_owned();
        let rel = check_entry_path(&raw)?;
        let kind = entry.header().entry_type();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        if kind.is_dir() {
            writer.dir(&rel)?;
        } else if kind.is_file() || kind.is_contiguous() {
            let mode = entry.header().mode().unwrap_or(0o644);
            writer.file(&rel, mode & 0o111 != 0, &mut entry)?;
        } else if kind.is_symlink() {
            writer.symlink(&rel, &link_target(&entry, "symlink", &shown)?)?;
        } else if kind.is_hard_link() {
            writer.hard_link(&rel, &link_target(&entry, "hard link", &shown)?)?;
        } else if kind.is_character_special() || kind.is_block_special() {
            bail!("archive entry {shown:?} is a device file; refusing the archive");
        } else if kind.is_fifo() {
            bail!("archive entry {shown:?} is a fifo; refusing the archive");
        } else if kind.is_pax_global_extensions() || kind.is_pax_local_extensions() {
            // Metadata the tar crate has already applied to the next entry.
        } else {
            bail!(
                "archive entry {shown:?} has an unsupported type ({:?}); refusing the archive",
                kind
            );
        }
    }
    writer.finish()
}

/// Copies the tree at `src` into `dest` (an existing directory) with the
/// same checks as [`unpack_tar`], within `limits` (`None`: no cap, for an
/// export, which copies what is already on disk). `src` is read beneath its
/// descriptor ([`crate::beneath`]): a swap of a directory for a symlink
/// during the copy is refused, never followed. Symlinks are copied as links
/// and must point inside `src`; devices, fifos and sockets are refused.
pub fn copy_tree(src: &Path, dest: &Path, limits: Option<&UnpackLimits>) -> Result<Counts> {
    copy_tree_watched(src, dest, limits, &mut |_| {})
}

/// [`copy_tree`], calling `between` with each entry's path (relative to
/// `src`) once its type is known and before it is opened: the moment a
/// tenant's code could swap it. Tests swap entries there.
pub fn copy_tree_watched(
    src: &Path,
    dest: &Path,
    limits: Option<&UnpackLimits>,
    between: &mut dyn FnMut(&Path),
) -> Result<Counts> {
    let mut writer = Writer::new(dest, limits)?;
    beneath::walk_watched(src, between, &mut |rel, entry| match entry {
        Entry::Dir => writer.dir(rel),
        Entry::File(mut input) => {
            let executable = input.metadata()?.permissions().mode() & 0o111 != 0;
            writer.file(rel, executable, &mut input)
        }
        Entry::Symlink(target) => writer
            .symlink(rel, target.as_os_str().as_bytes())
            .with_context(|| format!("in {}", src.display())),
        Entry::Other(what) => bail!("{} is {what}; refusing to copy it", src.join(rel).display()),
    })?;
    writer.finish()
}

/// Refuses `path` (below `root`) when any part of it below `root` is a
/// symlink; a part that does not exist ends the check. An import's layout
/// directories (`wordpress/`, `mysql/`, `static/www-content/`, ...) are
/// read as root: a link there (`wordpress -> /data/domains/other`) would
/// read another site's files, however the link is made.
pub fn check_no_symlink_below(root: &Path, path: &Path) -> Result<()> {
    let rel = path
        .strip_prefix(root)
        .with_context(|| format!("{} is not below {}", path.display(), root.display()))?;
    let mut at = root.to_path_buf();
    for part in rel.components() {
        at.push(part);
        match fs::symlink_metadata(&at) {
            Ok(m) if m.file_type().is_symlink() => bail!(
                "{} is a symlink; the import's layout directories and files must be real \
                 ones (copy the files in instead of linking them)",
                at.display()
            ),
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", at.display())),
        }
    }
    Ok(())
}

/// The target a link entry names (`what`: symlink or hard link).
fn link_target<R: Read>(entry: &tar::Entry<R>, what: &str, shown: &str) -> Result<Vec<u8>> {
    Ok(entry
        .link_name_bytes()
        .with_context(|| format!("{what} {shown:?} has no target"))?
        .into_owned())
}

/// Opens a file that must be a regular file, never following a symlink:
/// an import's `GITURL` or `.pem` linked to `/etc/shadow` must not be read.
pub fn open_regular(path: &Path) -> Result<File> {
    let file = OpenOptions::new()
        .read(true)
        .custom_flags(nix::libc::O_NOFOLLOW | nix::libc::O_NONBLOCK)
        .open(path)
        .with_context(|| {
            format!(
                "cannot open {} (it must be a regular file, not a symlink)",
                path.display()
            )
        })?;
    beneath::checked_regular(file, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tar_with(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let raw: Vec<_> = entries
            .iter()
            .map(|(name, kind, data)| (*name, *kind, data.as_bytes()))
            .collect();
        hostyard_testsupport::raw_tar(&raw)
    }

    /// `entries` unpacked into a new directory, and what the unpack said.
    fn unpacked(entries: &[(&str, tar::EntryType, &str)]) -> (tempfile::TempDir, Result<Counts>) {
        let dir = tempfile::tempdir().unwrap();
        let result = unpack_tar(&tar_with(entries)[..], dir.path(), None);
        (dir, result)
    }

    #[test]
    fn unpacks_files_dirs_and_inside_links() {
        let (dir, counts) = unpacked(&[
            ("a/", tar::EntryType::dir(), ""),
            ("a/b.txt", tar::EntryType::file(), "hello"),
            ("c/d/e.txt", tar::EntryType::file(), "deep"),
            ("a/link", tar::EntryType::symlink(), "b.txt"),
            ("a/hard", tar::EntryType::hard_link(), "a/b.txt"),
        ]);
        assert_eq!(counts.unwrap().files, 3);
        assert_eq!(
            fs::read_to_string(dir.path().join("a/link")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("a/hard")).unwrap(),
            "hello"
        );
        assert_eq!(
            fs::read_to_string(dir.path().join("c/d/e.txt")).unwrap(),
            "deep"
        );
    }

    #[test]
    fn refuses_writing_through_a_symlink_even_when_it_points_inside() {
        let (dir, result) = unpacked(&[
            ("x/", tar::EntryType::dir(), ""),
            ("l", tar::EntryType::symlink(), "x"),
            ("l/f", tar::EntryType::file(), "through"),
        ]);
        let err = format!("{:#}", result.unwrap_err());
        assert!(err.contains("not a directory"), "{err}");
        assert!(!dir.path().join("x/f").exists());
    }

    #[test]
    fn refuses_duplicates_instead_of_overwriting() {
        let (dir, result) = unpacked(&[
            ("f", tar::EntryType::file(), "one"),
            ("f", tar::EntryType::file(), "two"),
        ]);
        assert!(result.is_err());
        assert_eq!(fs::read_to_string(dir.path().join("f")).unwrap(), "one");
    }

    fn raw_tar(entries: &[(String, u8, String)]) -> Vec<u8> {
        let mut b = tar::Builder::new(Vec::new());
        for (name, kind, data) in entries {
            let kind = tar::EntryType::new(*kind);
            let mut h = tar::Header::new_gnu();
            h.set_entry_type(kind);
            h.set_mode(0o4777);
            let raw = name.as_bytes();
            h.as_old_mut().name[..raw.len()].copy_from_slice(raw);
            if kind.is_symlink() || kind.is_hard_link() {
                h.set_link_name_literal(data).unwrap();
                h.set_size(0);
                h.set_cksum();
                b.append(&h, io::empty()).unwrap();
            } else {
                h.set_size(data.len() as u64);
                h.set_cksum();
                b.append(&h, data.as_bytes()).unwrap();
            }
        }
        b.into_inner().unwrap()
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig::with_cases(200))]

        /// Whatever the archive holds, nothing outside `dest` is created or
        /// changed, and no setuid or world-writable file appears.
        #[test]
        fn random_archives_never_write_outside(
            entries in proptest::collection::vec(
                (
                    "(\\.\\.|\\.|a|b|/){1,6}",
                    proptest::sample::select(vec![b'0', b'5', b'2', b'1', b'3', b'6']),
                    "(\\.\\.|\\.|a|b|/|x){0,6}",
                ),
                1..8,
            )
        ) {
            let outer = tempfile::tempdir().unwrap();
            let dest = outer.path().join("p/q/dest");
            fs::create_dir_all(&dest).unwrap();
            fs::write(outer.path().join("p/sentinel"), "s").unwrap();
            let t = raw_tar(&entries);
            let _ = unpack_tar(&t[..], &dest, None);
            let mut outside = Vec::new();
            for e in walkdir::WalkDir::new(outer.path()) {
                let e = e.unwrap();
                if !e.path().starts_with(&dest) {
                    outside.push(e.path().strip_prefix(outer.path()).unwrap().to_path_buf());
                } else {
                    let m = e.path().symlink_metadata().unwrap();
                    if !m.file_type().is_symlink() {
                        proptest::prop_assert_eq!(m.permissions().mode() & 0o7022, 0, "{:?}", e.path());
                    }
                }
            }
            outside.sort();
            let want: Vec<PathBuf> = ["", "p", "p/q", "p/sentinel"].iter().map(PathBuf::from).collect();
            proptest::prop_assert_eq!(outside, want);
            proptest::prop_assert_eq!(fs::read_to_string(outer.path().join("p/sentinel")).unwrap(), "s");
        }
    }

    /// A tenant's code swaps a directory of its tree for a symlink to a
    /// directory outside (another site's secrets) during the copy: after
    /// the copy listed one of its files (named like the secret), or after
    /// it saw the directory itself and before it opened it. Nothing from
    /// outside is copied; a swap the copy meets is refused, naming the path.
    #[test]
    fn a_directory_swapped_for_a_symlink_mid_copy_copies_nothing_from_outside() {
        for swap_at in ["uploads/wp.env", "uploads"] {
            let tmp = tempfile::tempdir().unwrap();
            let src = tmp.path().join("wp-content");
            let secrets = tmp.path().join("other-site/secrets");
            fs::create_dir_all(src.join("uploads")).unwrap();
            fs::write(src.join("index.php"), "<?php").unwrap();
            fs::write(src.join("uploads/wp.env"), "the tenant's own").unwrap();
            fs::create_dir_all(&secrets).unwrap();
            fs::write(secrets.join("wp.env"), "DB_PASSWORD=SECRET").unwrap();
            let dest = tmp.path().join("export");
            fs::create_dir(&dest).unwrap();

            let mut swapped = false;
            let result = copy_tree_watched(&src, &dest, None, &mut |rel| {
                if rel == Path::new(swap_at) && !swapped {
                    fs::rename(src.join("uploads"), tmp.path().join("moved")).unwrap();
                    std::os::unix::fs::symlink(&secrets, src.join("uploads")).unwrap();
                    swapped = true;
                }
            });
            assert!(swapped, "{swap_at}: the copy never reached it");
            let copied: Vec<String> = walkdir::WalkDir::new(&dest)
                .into_iter()
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_file())
                .map(|e| fs::read_to_string(e.path()).unwrap_or_default())
                .collect();
            assert!(
                !copied.iter().any(|c| c.contains("SECRET")),
                "{swap_at}: the secret was copied: {copied:?}"
            );
            if let Err(e) = result {
                let err = format!("{e:#}");
                assert!(err.contains("uploads"), "{swap_at}: {err}");
                assert_eq!(err.lines().count(), 1, "{swap_at}: {err}");
            } else {
                assert_eq!(
                    swap_at, "uploads/wp.env",
                    "the swapped directory was copied"
                );
            }
        }
    }

    #[test]
    fn refuses_escapes_devices_and_fifos() {
        for entries in [
            vec![("../evil", tar::EntryType::file(), "x")],
            vec![("/abs", tar::EntryType::file(), "x")],
            vec![("l", tar::EntryType::symlink(), "/etc")],
            vec![("l", tar::EntryType::symlink(), "../..")],
            vec![("h", tar::EntryType::hard_link(), "/etc/shadow")],
            vec![("h", tar::EntryType::hard_link(), "../x")],
            vec![("h", tar::EntryType::hard_link(), "missing")],
            vec![("d", tar::EntryType::character_special(), "")],
            vec![("d", tar::EntryType::block_special(), "")],
            vec![("p", tar::EntryType::fifo(), "")],
        ] {
            assert!(unpacked(&entries).1.is_err(), "{entries:?}");
        }
    }
}
