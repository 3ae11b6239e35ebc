//! What an export of a site would hold, without exporting it: a SHA-256
//! over the status of every file the export copies, so that a backup of an
//! unchanged site stores nothing and runs no restic.
//!
//! Each entry contributes its path, type and `lstat`: inode, size, mode,
//! owner, mtime and ctime (with nanoseconds). The ctime is what makes it
//! safe against the site's own code: a tenant can set a file's mtime back
//! (`touch -d`) after rewriting it with the same size, but not its ctime,
//! which the kernel sets on every write, chmod, rename and utime, and only a
//! clock change could set back. A file rewritten in place therefore always
//! changes the fingerprint. (A tenant who wants a backup to miss a change
//! cannot gain by it: the backup only ever held what they put there.)
//!
//! A kind with a database has no fingerprint and is always backed up: its
//! data changes without any file's status changing in a way that is cheap
//! to read (MariaDB's `information_schema.TABLES.UPDATE_TIME` is kept in
//! memory for InnoDB and lost on its restart, `CHECKSUM TABLE` reads every
//! row, nearly what the dump costs), and WordPress's cron writes its
//! options every few minutes anyway.
//!
//! The hostyard version is part of it: a new release may export more, so
//! the first backup after an upgrade takes a snapshot.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use anyhow::Result;
use hostyard_config::BackupConfig;
use hostyard_core::spec::Part;
use hostyard_core::{Domain, Layout, SiteKind};
use hostyard_fs::beneath::{walk, Entry};
use ring::digest;

/// Changes when what the fingerprint covers changes: old records then
/// compare unequal and take a snapshot.
const FORMAT: &str = "hostyard-backup-fingerprint 1";

struct Hasher(digest::Context);

impl Hasher {
    fn new() -> Hasher {
        let mut h = Hasher(digest::Context::new(&digest::SHA256));
        h.field(FORMAT.as_bytes());
        h.field(env!("CARGO_PKG_VERSION").as_bytes());
        h
    }

    /// One length-prefixed field: no two lists of fields hash alike.
    fn field(&mut self, bytes: &[u8]) {
        self.0.update(&(bytes.len() as u64).to_le_bytes());
        self.0.update(bytes);
    }

    fn status(&mut self, meta: &fs::Metadata) {
        for n in [
            meta.dev(),
            meta.ino(),
            meta.size(),
            u64::from(meta.mode()),
            u64::from(meta.uid()),
            u64::from(meta.gid()),
            meta.mtime() as u64,
            meta.mtime_nsec() as u64,
            meta.ctime() as u64,
            meta.ctime_nsec() as u64,
        ] {
            self.0.update(&n.to_le_bytes());
        }
    }

    /// The file at `path` (not followed if a link), or its absence.
    fn file(&mut self, label: &str, path: &Path) -> Result<()> {
        self.field(label.as_bytes());
        match fs::symlink_metadata(path) {
            Ok(meta) => {
                self.field(b"present");
                self.status(&meta);
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => self.field(b"absent"),
            Err(e) => anyhow::bail!("cannot read {}: {e}", path.display()),
        }
        Ok(())
    }

    /// Every entry below `root`, read beneath it as the export reads it (a
    /// directory swapped for a link is refused, never followed).
    fn tree(&mut self, label: &str, root: &Path) -> Result<()> {
        self.field(label.as_bytes());
        self.file("root", root)?;
        walk(root, &mut |rel, entry| {
            self.field(rel.as_os_str().as_encoded_bytes());
            match entry {
                Entry::Dir => self.field(b"dir"),
                Entry::File(file) => {
                    self.field(b"file");
                    self.status(&file.metadata()?);
                }
                Entry::Symlink(target) => {
                    self.field(b"link");
                    self.field(target.as_os_str().as_encoded_bytes());
                }
                Entry::Other(what) => self.field(what.as_bytes()),
            }
            Ok(())
        })
    }

    fn finish(self) -> String {
        hex(self.0.finish().as_ref())
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fingerprint of `domain`'s export, `None` for a kind that is always
/// backed up (see the module's note).
pub fn site(layout: &Layout, domain: &Domain, kind: SiteKind) -> Result<Option<String>> {
    let parts = kind.spec().parts;
    if parts.iter().any(|p| matches!(p, Part::Database)) {
        return Ok(None);
    }
    let mut h = Hasher::new();
    h.field(kind.as_str().as_bytes());
    h.file("tls", &layout.tls_pem(domain))?;
    for part in parts {
        match *part {
            Part::Tree { data, label, .. } => h.tree(label, &data(layout, domain))?,
            Part::OptionalFile { data, label, .. } => h.file(label, &data(layout, domain))?,
            Part::Source { data, .. } => h.file("source", &data(layout, domain))?,
            Part::Database => unreachable!("returned above"),
        }
    }
    Ok(Some(h.finish()))
}

/// The repository's fingerprint: its address and its password file's
/// status (a new password file may open another repository at the same
/// address, or none). The password itself is never read here.
pub fn repository(config: &BackupConfig) -> Result<String> {
    let mut h = Hasher::new();
    h.field(config.repository.as_bytes());
    h.file("password", &config.password_file)?;
    Ok(h.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    fn site_with(files: &[(&str, &[u8])]) -> (tempfile::TempDir, Layout, Domain) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let d = Domain::parse("example.com").unwrap();
        for (name, content) in files {
            let path = layout.www_dir(&d).join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, content).unwrap();
        }
        (tmp, layout, d)
    }

    fn fp(layout: &Layout, d: &Domain) -> String {
        site(layout, d, SiteKind::Static).unwrap().unwrap()
    }

    #[test]
    fn an_unchanged_tree_has_the_same_fingerprint_and_any_change_another() {
        let (_tmp, layout, d) = site_with(&[("index.html", b"a"), ("img/x.bin", b"xyz")]);
        let first = fp(&layout, &d);
        assert_eq!(fp(&layout, &d), first, "nothing changed");
        assert_eq!(first.len(), 64);

        let www = layout.www_dir(&d);
        // A mode.
        fs::set_permissions(www.join("index.html"), fs::Permissions::from_mode(0o600)).unwrap();
        let chmod = fp(&layout, &d);
        assert_ne!(chmod, first);
        // A new empty directory.
        fs::create_dir(www.join("empty")).unwrap();
        let dir = fp(&layout, &d);
        assert_ne!(dir, chmod);
        // A rename keeps size, mtime and inode: the path differs.
        fs::rename(www.join("img/x.bin"), www.join("img/y.bin")).unwrap();
        let renamed = fp(&layout, &d);
        assert_ne!(renamed, dir);
        // A certificate appears.
        fs::create_dir_all(layout.tls_pem(&d).parent().unwrap()).unwrap();
        fs::write(layout.tls_pem(&d), b"pem").unwrap();
        assert_ne!(fp(&layout, &d), renamed);
    }

    #[test]
    fn a_same_size_rewrite_with_its_old_mtime_still_changes_it() {
        let (_tmp, layout, d) = site_with(&[("index.html", b"aaaa")]);
        let file = layout.www_dir(&d).join("index.html");
        let mtime = fs::metadata(&file).unwrap().modified().unwrap();
        let first = fp(&layout, &d);
        // The ctime has a clock tick's resolution: wait for it to move.
        let before = fs::metadata(&file).unwrap().ctime_nsec();
        let before_s = fs::metadata(&file).unwrap().ctime();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        loop {
            fs::write(&file, b"bbbb").unwrap();
            fs::File::options()
                .write(true)
                .open(&file)
                .unwrap()
                .set_modified(mtime)
                .unwrap();
            let m = fs::metadata(&file).unwrap();
            if (m.ctime(), m.ctime_nsec()) != (before_s, before) {
                break;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the ctime never moved"
            );
        }
        let m = fs::metadata(&file).unwrap();
        assert_eq!(
            (m.len(), m.modified().unwrap()),
            (4, mtime),
            "size and mtime kept"
        );
        assert_ne!(fp(&layout, &d), first);
    }

    #[test]
    fn a_kind_with_a_database_has_none() {
        let (_tmp, layout, d) = site_with(&[]);
        assert_eq!(site(&layout, &d, SiteKind::Wordpress).unwrap(), None);
    }

    #[test]
    fn the_repository_fingerprint_follows_its_address_and_password_file() {
        let tmp = tempfile::tempdir().unwrap();
        let mut config = BackupConfig {
            repository: "/srv/restic".into(),
            password_file: tmp.path().join("pw"),
            ..BackupConfig::default()
        };
        fs::write(&config.password_file, b"one\n").unwrap();
        let first = repository(&config).unwrap();
        assert_eq!(repository(&config).unwrap(), first);
        // Another file in its place (as an editor or a copy makes it).
        fs::write(tmp.path().join("pw.new"), b"two\n").unwrap();
        fs::rename(tmp.path().join("pw.new"), &config.password_file).unwrap();
        let second = repository(&config).unwrap();
        assert_ne!(second, first);
        config.repository = "/srv/other".into();
        assert_ne!(repository(&config).unwrap(), second);
    }
}
