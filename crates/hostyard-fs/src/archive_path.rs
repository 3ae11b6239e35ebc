//! The path checks for unpacking an archive that someone else made.
//!
//! Imports arrive as tarballs and gitpull unpacks `git archive` output, both
//! as root. An entry named `../../etc/cron.d/x` or `/etc/passwd`, or a
//! symlink `www -> /etc` followed by an entry `www/passwd`, would write
//! outside the site. Every entry name and link target goes through these
//! checks first; the unpacker (hostyard-fs's `unpack`) also refuses to
//! write through any symlink.
//!
//! Each link alone is checked lexically ([`check_symlink_target`]), which is
//! not enough: `a/up -> ..` and `b -> a/up/../../x` each stay inside when
//! read alone, yet `b` resolves two levels above the archive. So once the
//! whole tree is in place the unpacker resolves every link through the
//! others with [`resolve_beneath`], as the kernel would.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Why an archive entry is refused. Names are shown lossily (they may not be UTF-8).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ArchivePathError {
    #[error("archive entry has an empty name")]
    Empty,
    #[error("archive entry {0:?} contains a NUL byte")]
    Nul(String),
    #[error("archive entry {0:?} is an absolute path")]
    Absolute(String),
    #[error("archive entry {0:?} contains '..'")]
    ParentDir(String),
    #[error("archive entry {entry:?} is a link to the absolute path {target:?}")]
    LinkAbsolute { entry: String, target: String },
    #[error("archive entry {entry:?} is a link to {target:?}, which points outside the archive")]
    LinkEscapes { entry: String, target: String },
}

fn show(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// Checks an entry name and returns it as a relative path of plain
/// components (`./a//b/` → `a/b`). The result is empty for the archive's
/// root itself (`./`), which callers skip.
pub fn check_entry_path(raw: &[u8]) -> Result<PathBuf, ArchivePathError> {
    if raw.is_empty() {
        return Err(ArchivePathError::Empty);
    }
    if raw.contains(&0) {
        return Err(ArchivePathError::Nul(show(raw)));
    }
    if raw.starts_with(b"/") {
        return Err(ArchivePathError::Absolute(show(raw)));
    }
    let mut out = PathBuf::new();
    for part in raw.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err(ArchivePathError::ParentDir(show(raw))),
            _ => out.push(OsStr::from_bytes(part)),
        }
    }
    Ok(out)
}

/// Checks a symlink's target: relative, and staying inside the archive when
/// resolved from the directory holding `entry` (a path from
/// [`check_entry_path`]).
pub fn check_symlink_target(entry: &Path, target: &[u8]) -> Result<(), ArchivePathError> {
    let err_entry = || entry.to_string_lossy().into_owned();
    if target.is_empty() {
        return Err(ArchivePathError::LinkEscapes {
            entry: err_entry(),
            target: String::new(),
        });
    }
    if target.contains(&0) {
        return Err(ArchivePathError::Nul(show(target)));
    }
    if target.starts_with(b"/") {
        return Err(ArchivePathError::LinkAbsolute {
            entry: err_entry(),
            target: show(target),
        });
    }
    // Depth below the archive root of the directory the link lives in.
    let mut depth: usize = entry
        .parent()
        .map(|p| {
            p.components()
                .filter(|c| matches!(c, Component::Normal(_)))
                .count()
        })
        .unwrap_or(0);
    for part in target.split(|b| *b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                depth = depth
                    .checked_sub(1)
                    .ok_or_else(|| ArchivePathError::LinkEscapes {
                        entry: err_entry(),
                        target: show(target),
                    })?;
            }
            _ => depth += 1,
        }
    }
    Ok(())
}

/// The most links one resolution follows: the kernel's limit (40), after
/// which it answers `ELOOP`.
pub const MAX_LINK_HOPS: usize = 40;

/// Why a path does not resolve beneath the archive's root.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResolveError {
    #[error("{path:?} resolves outside the archive (through the link {via:?})")]
    Escapes { path: String, via: String },
    #[error("{path:?} resolves through the link {via:?} to an absolute path")]
    Absolute { path: String, via: String },
    #[error("{path:?} goes through more than {MAX_LINK_HOPS} links (a loop?)")]
    TooManyLinks { path: String },
}

/// Resolves `path` (relative to the archive's root; it may contain `..`)
/// the way the kernel would, following the archive's own links, which
/// `link_target` gives for a relative path of plain components (`None`
/// for anything that is not a link). Returns the path it reaches, as plain
/// components, or why it leaves the root. A name that does not exist
/// resolves as a directory would (the lexical rule), so a dangling link is
/// judged by what it names.
pub fn resolve_beneath(
    path: &Path,
    link_target: impl Fn(&Path) -> Option<PathBuf>,
) -> Result<PathBuf, ResolveError> {
    use std::collections::VecDeque;
    let shown = || path.to_string_lossy().into_owned();
    let mut todo: VecDeque<std::ffi::OsString> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some("..".into()),
            _ => None,
        })
        .collect();
    if path.is_absolute() {
        return Err(ResolveError::Absolute {
            path: shown(),
            via: shown(),
        });
    }
    let mut at = PathBuf::new();
    let mut hops = 0;
    let mut via = PathBuf::new();
    while let Some(part) = todo.pop_front() {
        if part == ".." {
            if !at.pop() {
                return Err(ResolveError::Escapes {
                    path: shown(),
                    via: via.to_string_lossy().into_owned(),
                });
            }
            continue;
        }
        let next = at.join(&part);
        match link_target(&next) {
            None => at = next,
            Some(target) => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(ResolveError::TooManyLinks { path: shown() });
                }
                if target.is_absolute() {
                    return Err(ResolveError::Absolute {
                        path: shown(),
                        via: next.to_string_lossy().into_owned(),
                    });
                }
                // The target replaces the link's name, relative to the
                // directory the link is in (`at`).
                for c in target.components().rev() {
                    match c {
                        Component::Normal(n) => todo.push_front(n.to_os_string()),
                        Component::ParentDir => todo.push_front("..".into()),
                        _ => {}
                    }
                }
                via = next;
            }
        }
    }
    Ok(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn links<'a>(pairs: &'a [(&'a str, &'a str)]) -> impl Fn(&Path) -> Option<PathBuf> + 'a {
        move |p| {
            pairs
                .iter()
                .find(|(l, _)| Path::new(l) == p)
                .map(|(_, t)| PathBuf::from(t))
        }
    }

    #[test]
    fn resolves_through_links_as_the_kernel_does() {
        let tree = [
            ("a/up", ".."),
            ("b", "a/up/../../x"),
            ("c", "a/up/a"),
            ("loop", "loop"),
        ];
        let ok = |p: &str| resolve_beneath(Path::new(p), links(&tree));
        assert_eq!(ok("a/x").unwrap(), Path::new("a/x"));
        assert_eq!(ok("a/up/a/up").unwrap(), Path::new(""));
        assert_eq!(ok("c/../a").unwrap(), Path::new("a"));
        assert_eq!(ok("missing/../a").unwrap(), Path::new("a"));
        // Each link alone looks fine; together they leave the root.
        assert!(check_symlink_target(Path::new("b"), b"a/up/../../x").is_ok());
        assert_eq!(
            ok("b"),
            Err(ResolveError::Escapes {
                path: "b".into(),
                via: "a/up".into()
            })
        );
        assert!(matches!(ok("loop"), Err(ResolveError::TooManyLinks { .. })));
        assert!(matches!(ok(".."), Err(ResolveError::Escapes { .. })));
        let abs = [("etc", "/etc")];
        assert!(matches!(
            resolve_beneath(Path::new("etc/passwd"), links(&abs)),
            Err(ResolveError::Absolute { .. })
        ));
    }

    #[test]
    fn normalises_plain_names() {
        for (raw, want) in [
            ("a", "a"),
            ("./a/b", "a/b"),
            ("a//b/", "a/b"),
            ("./", ""),
            (
                "static/www-content/index.html",
                "static/www-content/index.html",
            ),
            ("a/.../b", "a/.../b"),
            ("..a/b..", "..a/b.."),
        ] {
            assert_eq!(
                check_entry_path(raw.as_bytes()).unwrap(),
                Path::new(want),
                "{raw}"
            );
        }
    }

    #[test]
    fn refuses_escaping_names() {
        for (raw, want) in [
            ("", "empty"),
            ("/etc/passwd", "absolute"),
            ("//etc", "absolute"),
            ("..", "'..'"),
            ("../x", "'..'"),
            ("a/../../x", "'..'"),
            ("a/..", "'..'"),
            ("a\0b", "NUL"),
        ] {
            let err = check_entry_path(raw.as_bytes()).unwrap_err().to_string();
            assert!(err.contains(want), "{raw:?}: {err}");
        }
    }

    #[test]
    fn symlink_targets_must_stay_inside() {
        let inside: [(&str, &str); 4] = [
            ("a", "b"),
            ("a/b", "../c"),
            ("a/b/c", "../../d"),
            ("a", "./b/../c"),
        ];
        let escaping: [(&str, &str); 6] = [
            ("a", "/etc"),
            ("a", ".."),
            ("a", "../x"),
            ("a/b", "../../x"),
            ("a", "b/../../x"),
            ("a", ""),
        ];
        for (ok, cases) in [(true, &inside[..]), (false, &escaping[..])] {
            for (entry, target) in cases {
                assert_eq!(
                    check_symlink_target(Path::new(entry), target.as_bytes()).is_ok(),
                    ok,
                    "{entry} -> {target}"
                );
            }
        }
    }

    /// Lexical resolution of `base/rel` that must stay under the root.
    fn stays_inside(rel: &Path) -> bool {
        let mut depth: i64 = 0;
        for c in rel.components() {
            match c {
                Component::Normal(_) => depth += 1,
                Component::ParentDir => depth -= 1,
                Component::CurDir => {}
                Component::RootDir | Component::Prefix(_) => return false,
            }
            if depth < 0 {
                return false;
            }
        }
        true
    }

    proptest! {
        #[test]
        fn accepted_names_are_plain_relative_paths(raw in proptest::collection::vec(
            prop::sample::select(vec![b'a', b'.', b'/', b'\\', b'-', 0u8, 0xff]), 0..24)) {
            if let Ok(p) = check_entry_path(&raw) {
                prop_assert!(p.components().all(|c| matches!(c, Component::Normal(_))));
                prop_assert!(!p.is_absolute());
            }
        }

        #[test]
        fn accepted_names_from_path_like_strings(raw in "(\\.\\.|\\.|/|[a-z]{1,3}){0,8}") {
            if let Ok(p) = check_entry_path(raw.as_bytes()) {
                prop_assert!(stays_inside(&p));
                prop_assert!(!raw.starts_with('/'));
                prop_assert!(!raw.split('/').any(|c| c == ".."));
            }
        }

        #[test]
        fn accepted_symlinks_resolve_inside(
            entry in "[a-z]{1,2}(/[a-z]{1,2}){0,3}",
            target in "(\\.\\.|\\.|/|[a-z]{1,2}){0,8}",
        ) {
            let entry = PathBuf::from(entry);
            if check_symlink_target(&entry, target.as_bytes()).is_ok() {
                let joined = entry.parent().unwrap_or(Path::new("")).join(&target);
                prop_assert!(!target.starts_with('/'));
                prop_assert!(stays_inside(&joined), "{:?}", joined);
            }
        }
    }
}
