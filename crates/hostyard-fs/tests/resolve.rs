//! The link resolver the unpacker trusts, fuzzed against the kernel: random
//! trees of directories and link chains are made on disk, and for every
//! link, what `resolve_beneath` decides is compared with what `openat2(2)`
//! with `RESOLVE_BENEATH` does with the same path. Where the kernel says the
//! path leaves the root (EXDEV) or loops (ELOOP), the resolver must refuse
//! it; where the kernel opens it, the resolver must reach the same file.

use std::collections::HashMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use hostyard_fs::archive_path::resolve_beneath;
use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::fstat;
use proptest::prelude::*;

/// Directories every generated tree has; links live in them and point
/// through them.
const DIRS: [&str; 3] = ["d", "d/e", "f"];
const LINK_DIRS: [&str; 4] = ["", "d", "d/e", "f"];
const NAMES: [&str; 3] = ["l0", "l1", "l2"];
const PARTS: [&str; 8] = ["..", "..", ".", "d", "e", "f", "l0", "l1"];

fn link_strategy() -> impl Strategy<Value = (usize, usize, Vec<usize>)> {
    (
        0..LINK_DIRS.len(),
        0..NAMES.len(),
        proptest::collection::vec(0..PARTS.len(), 1..6),
    )
}

/// `openat2` answers EAGAIN when a rename or mount anywhere on the machine
/// raced with a `..` it resolved beneath the root (openat2(2): "the caller
/// may choose to retry"); on a busy machine that happens, so retry, bounded.
fn openat2_retrying(
    root: &fs::File,
    rel: &Path,
    how: OpenHow,
) -> nix::Result<std::os::fd::OwnedFd> {
    let mut tries = 0;
    loop {
        match openat2(root, rel, how) {
            Err(Errno::EAGAIN) if tries < 1000 => tries += 1,
            other => return other,
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn resolver_agrees_with_the_kernel(links in proptest::collection::vec(link_strategy(), 1..7)) {
        let outer = tempfile::tempdir().unwrap();
        let root = outer.path().join("root");
        for d in DIRS {
            fs::create_dir_all(root.join(d)).unwrap();
        }
        let mut made: HashMap<PathBuf, PathBuf> = HashMap::new();
        for (dir, name, parts) in links {
            let rel = Path::new(LINK_DIRS[dir]).join(NAMES[name]);
            if made.contains_key(&rel) {
                continue;
            }
            let target: PathBuf = parts.iter().map(|&p| PARTS[p]).collect();
            std::os::unix::fs::symlink(&target, root.join(&rel)).unwrap();
            made.insert(rel, target);
        }
        let root_fd = fs::File::open(&root).unwrap();
        for (rel, target) in &made {
            let ours = resolve_beneath(
                &rel.parent().unwrap_or(Path::new("")).join(target),
                |p| made.get(p).cloned(),
            );
            let how = OpenHow::new()
                .flags(OFlag::O_PATH | OFlag::O_CLOEXEC)
                .resolve(ResolveFlag::RESOLVE_BENEATH);
            match openat2_retrying(&root_fd, rel, how) {
                Ok(fd) => {
                    let reached = ours.unwrap_or_else(|e| {
                        panic!("{rel:?} -> {target:?}: the kernel opens it, the resolver says {e}; links {made:?}")
                    });
                    let kernel = fstat(&fd).unwrap();
                    let meta = fs::metadata(root.join(&reached)).unwrap();
                    prop_assert_eq!(
                        (kernel.st_dev, kernel.st_ino),
                        (meta.dev(), meta.ino()),
                        "{:?} -> {:?}: resolver reached {:?}; links {:?}", rel, target, reached, made
                    );
                }
                Err(Errno::EXDEV) | Err(Errno::ELOOP) => {
                    prop_assert!(
                        ours.is_err(),
                        "{:?} -> {:?}: the kernel refuses it, the resolver reached {:?}; links {:?}",
                        rel, target, ours, made
                    );
                }
                Err(Errno::ENOSYS) => panic!("this kernel has no openat2(2) (Linux 5.6+ needed)"),
                // A name that does not exist (or is not a directory): the
                // kernel stops before it can tell; the resolver's lexical
                // answer cannot be compared.
                Err(Errno::ENOENT) | Err(Errno::ENOTDIR) => {}
                Err(e) => panic!("{rel:?}: openat2: {e}"),
            }
        }
    }
}
