//! Which `haproxy` and `etcd` the tests run: the ones on `PATH`, and only
//! in the versions a Debian 13 server runs.
//!
//! A test against another version proves little about a server: HAProxy
//! 2.6 accepts configs that 3.0 warns about and lacks what 3.0 offers for
//! hitless reloads; etcd 3.4 and 3.5 differ in flags and defaults. So the
//! version is checked before the first start, once per test process, and
//! any other one fails with the fix: `scripts/test-tools.sh` provides
//! Debian 13's binaries on any machine and prints the directory that holds
//! them.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use crate::process::version_line;

/// How a test puts the right binaries first; said by every error.
const FIX: &str = "put the directory scripts/test-tools.sh prints first on PATH, \
                   PATH=\"$(scripts/test-tools.sh):$PATH\" (scripts/test.sh does that)";

/// A program the tests run as a Debian 13 server does.
#[derive(Debug)]
pub(crate) struct Tool {
    /// The command name looked up on PATH.
    name: &'static str,
    /// Prints the version on the first line of its output.
    version_arg: &'static str,
    /// How the product calls itself in that line.
    product: &'static str,
    /// The wanted major.minor: Debian 13's.
    want: (u32, u32),
}

pub(crate) const HAPROXY: Tool = Tool {
    name: "haproxy",
    // -vv rather than -v: it also makes HAProxy load and list its
    // libraries (OpenSSL, Lua, PCRE2), so a broken install fails here.
    version_arg: "-vv",
    product: "HAProxy",
    want: (3, 0),
};

pub(crate) const ETCD: Tool = Tool {
    name: "etcd",
    version_arg: "--version",
    product: "etcd",
    want: (3, 5),
};

/// The absolute path of the `haproxy` on PATH, once it proved to be
/// HAProxy 3.0 (e.g. for a node config's `haproxy.check_binary`).
pub fn haproxy_binary() -> anyhow::Result<PathBuf> {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    checked(&HAPROXY, &CHECKED)
}

/// The absolute path of the `etcd` on PATH, once it proved to be etcd 3.5.
pub fn etcd_binary() -> anyhow::Result<PathBuf> {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    checked(&ETCD, &CHECKED)
}

/// The verdict of [`require_version`] for `tool`, computed once per process:
/// tests start these services hundreds of times.
fn checked(tool: &Tool, cell: &OnceLock<Result<PathBuf, String>>) -> anyhow::Result<PathBuf> {
    cell.get_or_init(|| require_version(tool).map_err(|e| format!("{e:#}")))
        .clone()
        .map_err(anyhow::Error::msg)
}

/// Finds `tool` on PATH, runs it for its version and checks the version.
fn require_version(tool: &Tool) -> anyhow::Result<PathBuf> {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let Some(bin) = find_in_path(tool.name, &path_var) else {
        anyhow::bail!(
            "{} not found on PATH: tests need {} {}.x as on Debian 13; {FIX}",
            tool.name,
            tool.product,
            want(tool)
        );
    };
    let line = version_line(bin.as_os_str(), tool.version_arg)?
        .ok_or_else(|| anyhow::anyhow!("{} is gone from {}; {FIX}", tool.name, bin.display()))?;
    check_version(tool, &bin, &line).map_err(anyhow::Error::msg)?;
    Ok(bin)
}

/// The first executable file named `name` in the directories of `path_var`
/// (a `PATH` value), as the shell would pick it. Empty entries mean the
/// current directory, as in POSIX.
fn find_in_path(name: &str, path_var: &OsStr) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::split_paths(path_var).find_map(|dir| {
        let dir = if dir.as_os_str().is_empty() {
            std::env::current_dir().ok()?
        } else {
            dir
        };
        let candidate = dir.join(name);
        let meta = std::fs::metadata(&candidate).ok()?;
        (meta.is_file() && meta.permissions().mode() & 0o111 != 0).then_some(candidate)
    })
}

/// Checks the version line `tool` printed (`bin` is where it was found, for
/// the message). `Ok` carries the full version, `Err` a one-line error.
fn check_version(tool: &Tool, bin: &Path, line: &str) -> Result<String, String> {
    let Some((full, major, minor)) = parse_version(tool, line) else {
        return Err(format!(
            "{} at {} printed no {} version for `{} {}`: {:?}; tests need {} {}.x as on \
             Debian 13; {FIX}",
            tool.name,
            bin.display(),
            tool.product,
            tool.name,
            tool.version_arg,
            line.trim(),
            tool.product,
            want(tool)
        ));
    };
    if (major, minor) != tool.want {
        return Err(format!(
            "{} at {} is {} {full}, tests need {} {}.x as on Debian 13; {FIX}",
            tool.name,
            bin.display(),
            tool.product,
            tool.product,
            want(tool)
        ));
    }
    Ok(full.to_owned())
}

/// The version in a first line like `HAProxy version 3.0.11-1+deb13u4
/// 2026/10/15 - https://haproxy.org/` or `etcd Version: 3.5.16`: the word
/// after the product's "version", with its major and minor number.
fn parse_version<'a>(tool: &Tool, line: &'a str) -> Option<(&'a str, u32, u32)> {
    let mut words = line.split_whitespace();
    if words.next()? != tool.product {
        return None;
    }
    if !words
        .next()?
        .trim_end_matches(':')
        .eq_ignore_ascii_case("version")
    {
        return None;
    }
    let full = words.next()?;
    let mut numbers = full.split(['.', '-', '+', '~']);
    let major = numbers.next()?.parse().ok()?;
    let minor = numbers.next()?.parse().ok()?;
    Some((full, major, minor))
}

fn want(tool: &Tool) -> String {
    format!("{}.{}", tool.want.0, tool.want.1)
}

#[cfg(test)]
mod tests {
    use super::*;

    const HAPROXY_30: &str = "HAProxy version 3.0.11-1+deb13u4 2026/10/15 - https://haproxy.org/";
    const HAPROXY_26: &str = "HAProxy version 2.6.12-1+deb12u2 2025/04/14 - https://haproxy.org/";

    #[test]
    fn versions_are_read_from_the_first_line_of_each_program() {
        assert_eq!(
            parse_version(&HAPROXY, HAPROXY_30),
            Some(("3.0.11-1+deb13u4", 3, 0))
        );
        assert_eq!(
            parse_version(&HAPROXY, HAPROXY_26),
            Some(("2.6.12-1+deb12u2", 2, 6))
        );
        assert_eq!(
            parse_version(&ETCD, "etcd Version: 3.5.16"),
            Some(("3.5.16", 3, 5))
        );
        assert_eq!(
            parse_version(&ETCD, "etcd Version: 3.4.23"),
            Some(("3.4.23", 3, 4))
        );
        // Upstream HAProxy dev builds and a bare "3.0" parse too.
        assert_eq!(
            parse_version(&HAPROXY, "HAProxy version 3.0 2024/05/29"),
            Some(("3.0", 3, 0))
        );
    }

    #[test]
    fn other_programs_and_garbage_have_no_version() {
        for line in [
            "",
            "etcd Version: 3.5.16",
            "HAProxy",
            "HAProxy version",
            "HAProxy version three",
            "HAProxy version 3",
            "HA-Proxy version 1.8.19 2019/02/11",
            "haproxy: command not found",
        ] {
            assert_eq!(parse_version(&HAPROXY, line), None, "{line:?}");
        }
        assert_eq!(parse_version(&ETCD, HAPROXY_30), None);
        assert_eq!(parse_version(&ETCD, "etcdctl version: 3.5.16"), None);
    }

    #[test]
    fn the_wanted_version_passes_with_its_full_name() {
        let bin = Path::new("/opt/tools/bin/haproxy");
        assert_eq!(
            check_version(&HAPROXY, bin, HAPROXY_30),
            Ok("3.0.11-1+deb13u4".to_owned())
        );
        assert_eq!(
            check_version(&ETCD, Path::new("/x/etcd"), "etcd Version: 3.5.16"),
            Ok("3.5.16".to_owned())
        );
    }

    #[test]
    fn another_version_fails_naming_what_where_and_the_fix() {
        let err = check_version(&HAPROXY, Path::new("/usr/sbin/haproxy"), HAPROXY_26)
            .expect_err("2.6 is not 3.0");
        assert_eq!(
            err,
            "haproxy at /usr/sbin/haproxy is HAProxy 2.6.12-1+deb12u2, tests need HAProxy 3.0.x \
             as on Debian 13; put the directory scripts/test-tools.sh prints first on PATH, \
             PATH=\"$(scripts/test-tools.sh):$PATH\" (scripts/test.sh does that)"
        );
        assert!(!err.contains('\n'));
        let err = check_version(&ETCD, Path::new("/usr/bin/etcd"), "etcd Version: 3.4.23")
            .expect_err("3.4 is not 3.5");
        assert!(
            err.starts_with("etcd at /usr/bin/etcd is etcd 3.4.23, tests need etcd 3.5.x"),
            "{err}"
        );
        // A newer minor is another version too: servers do not run it.
        assert!(check_version(&ETCD, Path::new("/e"), "etcd Version: 3.6.0").is_err());
    }

    #[test]
    fn unreadable_output_fails_quoting_it() {
        let err = check_version(&ETCD, Path::new("/bin/etcd"), "Usage: etcd [flags]\n")
            .expect_err("no version");
        assert!(
            err.starts_with(
                "etcd at /bin/etcd printed no etcd version for `etcd --version`: \
                 \"Usage: etcd [flags]\"; tests need etcd 3.5.x"
            ),
            "{err}"
        );
    }

    #[test]
    fn path_lookup_takes_the_first_executable_file() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let (first, second, plain) = (
            dir.path().join("first"),
            dir.path().join("second"),
            dir.path().join("plain"),
        );
        for d in [&first, &second, &plain] {
            std::fs::create_dir(d).expect("mkdir");
        }
        let exe = |p: &Path| {
            std::fs::write(p, "#!/bin/sh\n").expect("write");
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        };
        exe(&second.join("haproxy"));
        exe(&first.join("haproxy"));
        // Not executable, and a directory of that name: both skipped.
        std::fs::write(plain.join("etcd"), "").expect("write");
        std::fs::create_dir(first.join("etcd")).expect("mkdir");
        exe(&second.join("etcd"));
        let path_var = std::env::join_paths([&plain, &first, &second]).expect("join");
        assert_eq!(
            find_in_path("haproxy", &path_var),
            Some(first.join("haproxy"))
        );
        assert_eq!(find_in_path("etcd", &path_var), Some(second.join("etcd")));
        assert_eq!(find_in_path("git-none", &path_var), None);
    }

    #[test]
    fn a_tool_missing_from_path_fails_with_the_fix() {
        let tool = Tool {
            name: "hostyard-no-such-tool",
            ..HAPROXY
        };
        let err = require_version(&tool).expect_err("not on PATH");
        assert_eq!(
            err.to_string(),
            "hostyard-no-such-tool not found on PATH: tests need HAProxy 3.0.x as on Debian 13; \
             put the directory scripts/test-tools.sh prints first on PATH, \
             PATH=\"$(scripts/test-tools.sh):$PATH\" (scripts/test.sh does that)"
        );
    }
}
