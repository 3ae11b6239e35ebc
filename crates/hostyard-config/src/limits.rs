//! Resource limits of the containers (memory, CPU and processes), and of
//! the trees written into a site from outside (bytes, files and depth).
//!
//! Without them one leaking WordPress or a fork bomb in one site takes the
//! whole server with it: etcd, HAProxy and every other site. Each kind of
//! container gets defaults in the node config (`limits:`); a site can get
//! other values through a systemd drop-in (docs/sites.md, "Resource limits"), because the
//! site units pass them to `docker run` as `${HOSTYARD_MEMORY}` and friends
//! from `Environment=`.
//!
//! The values are parsed once, here, into types that can only hold what
//! docker accepts, so a unit never carries a limit docker would refuse at
//! the next start.

use std::fmt;
use std::num::{NonZeroU32, NonZeroU64};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A memory size in bytes, written as docker writes it (`512m`, `1g`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct MemorySize(u64);

/// docker refuses less than 6 MiB for `--memory`.
pub const MIN_MEMORY: u64 = 6 * 1024 * 1024;

/// `512m`, `1G`, `7000k`, `6291456`: a count of bytes with an optional
/// binary unit (docker's notation); `None` when it is not one.
fn parse_size(s: &str) -> Option<u64> {
    let t = s.trim();
    let (digits, unit) = match t.find(|c: char| !c.is_ascii_digit()) {
        Some(i) => t.split_at(i),
        None => (t, ""),
    };
    let shift = match unit.to_ascii_lowercase().as_str() {
        "" | "b" => 0,
        "k" | "kb" | "kib" => 10,
        "m" | "mb" | "mib" => 20,
        "g" | "gb" | "gib" => 30,
        _ => return None,
    };
    let n: u64 = digits.parse().ok()?;
    n.checked_mul(1 << shift)
}

/// The largest unit that divides `bytes`, lower case, as docker takes it.
fn show_size(bytes: u64, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    for (shift, unit) in [(30, "g"), (20, "m"), (10, "k")] {
        if bytes % (1 << shift) == 0 {
            return write!(f, "{}{unit}", bytes >> shift);
        }
    }
    write!(f, "{bytes}b")
}

/// What a size type shares: `bytes()`, parsing docker's notation with a
/// lower bound (`$what` says what is expected), showing it, and serde
/// through a string.
macro_rules! size_type {
    ($name:ident, at_least = $min:expr, $what:literal) => {
        impl $name {
            pub fn bytes(self) -> u64 {
                self.0
            }
        }

        impl FromStr for $name {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match parse_size(s) {
                    Some(bytes) if bytes >= $min => Ok($name(bytes)),
                    _ => Err(format!("{s:?} is not {}", $what)),
                }
            }
        }

        impl TryFrom<String> for $name {
            type Error = String;
            fn try_from(s: String) -> Result<Self, String> {
                s.parse()
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                show_size(self.0, f)
            }
        }

        impl From<$name> for String {
            fn from(size: $name) -> String {
                size.to_string()
            }
        }
    };
}

size_type!(
    MemorySize,
    at_least = MIN_MEMORY,
    "a memory size like 512M or 1G (at least 6M)"
);

/// A CPU share in hundredths of a CPU (`--cpus 0.5` is 50); 0 means no
/// limit (docker's `--cpus 0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "f64", into = "f64")]
pub struct Cpus(u32);

impl Cpus {
    pub fn is_unlimited(self) -> bool {
        self.0 == 0
    }
}

impl TryFrom<f64> for Cpus {
    type Error = String;
    fn try_from(v: f64) -> Result<Self, String> {
        let hundredths = (v * 100.0).round();
        if !v.is_finite()
            || !(0.0..=25_600.0).contains(&hundredths)
            || (hundredths - v * 100.0).abs() > 1e-6
        {
            return Err(format!(
                "{v} is not a CPU count like 0.5 or 2 (hundredths at most; 0 for no limit)"
            ));
        }
        Ok(Cpus(hundredths as u32))
    }
}

impl From<Cpus> for f64 {
    fn from(c: Cpus) -> f64 {
        f64::from(c.0) / 100.0
    }
}

impl fmt::Display for Cpus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:02}", self.0 / 100, self.0 % 100)
    }
}

/// The most processes (threads included) a container may run; a fork bomb
/// stops here. At least 16: fewer and the services themselves fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "u32", into = "u32")]
pub struct Pids(u32);

pub const MIN_PIDS: u32 = 16;

impl TryFrom<u32> for Pids {
    type Error = String;
    fn try_from(n: u32) -> Result<Self, String> {
        if n < MIN_PIDS {
            return Err(format!("{n} processes are too few; at least {MIN_PIDS}"));
        }
        Ok(Pids(n))
    }
}

impl From<Pids> for u32 {
    fn from(p: Pids) -> u32 {
        p.0
    }
}

impl fmt::Display for Pids {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

/// One container's limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ContainerLimits {
    pub memory: MemorySize,
    pub cpus: Cpus,
    pub pids: Pids,
}

impl ContainerLimits {
    fn new(memory_mib: u64, cpu_hundredths: u32, pids: u32) -> ContainerLimits {
        ContainerLimits {
            memory: MemorySize(memory_mib << 20),
            cpus: Cpus(cpu_hundredths),
            pids: Pids(pids.max(MIN_PIDS)),
        }
    }

    /// The `docker run` options with the values themselves. Swap is capped
    /// at the memory limit too, so a leak cannot page the server to a halt
    /// instead; `--cpus 0.00` is docker's "no limit".
    pub fn docker_options(&self) -> Vec<String> {
        docker_options(&self.memory, &self.pids, &self.cpus)
    }

    /// The `docker run` options of a site unit, taking the values from the
    /// environment (`${HOSTYARD_MEMORY}` ...) so that a systemd drop-in can
    /// change them for one site; [`ContainerLimits::environment`] gives the
    /// defaults.
    pub fn docker_options_from_environment() -> Vec<String> {
        docker_options(
            &format!("${{{ENV_MEMORY}}}"),
            &format!("${{{ENV_PIDS}}}"),
            &format!("${{{ENV_CPUS}}}"),
        )
    }

    /// `NAME=value` for the unit's `Environment=`.
    pub fn environment(&self) -> Vec<String> {
        vec![
            format!("{ENV_MEMORY}={}", self.memory),
            format!("{ENV_PIDS}={}", self.pids),
            format!("{ENV_CPUS}={}", self.cpus),
        ]
    }
}

/// The variables a site unit's drop-in sets to change its limits.
pub const ENV_MEMORY: &str = "HOSTYARD_MEMORY";
pub const ENV_PIDS: &str = "HOSTYARD_PIDS";
pub const ENV_CPUS: &str = "HOSTYARD_CPUS";

fn docker_options(
    memory: &dyn fmt::Display,
    pids: &dyn fmt::Display,
    cpus: &dyn fmt::Display,
) -> Vec<String> {
    vec![
        format!("--memory {memory}"),
        format!("--memory-swap {memory}"),
        format!("--pids-limit {pids}"),
        format!("--cpus {cpus}"),
    ]
}

/// A size in bytes of at least one byte, written like a [`MemorySize`]
/// (`10g`, `512m`, `1048576`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct ByteSize(u64);

size_type!(
    ByteSize,
    at_least = 1,
    "a size like 10g, 512m or 1048576 (at least 1 byte)"
);

/// `limits.unpack`: the most a tree written into a site from outside may
/// hold: an import (folder or tarball), a refresh from an export, or a
/// static-git publication (`git archive` of a commit). A gzip or git bomb
/// is small on the way in and huge once written; it is refused at the cap,
/// in its staging dir, and `/data` stays as it was.
///
/// The defaults are far above any small website and far below a full
/// disk: 10 GiB (a WordPress with years of uploads is a few GiB; more is a
/// migration to plan, with a raised cap), a million entries (such a site's
/// uploads with every thumbnail size are a few hundred thousand files;
/// inodes run out before bytes on a tree of empty files) and 64 levels
/// (WordPress plugins' vendor trees reach about 20; far deeper trees only
/// come from a bomb, and break `rm -r` and backups).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnpackLimits {
    /// Bytes of file content, in total.
    pub max_bytes: ByteSize,
    /// Entries: files, directories and links together.
    pub max_files: NonZeroU64,
    /// Levels below the tree's root (`a/b/index.html` is 3 deep).
    pub max_depth: NonZeroU32,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits {
            max_bytes: ByteSize(10 << 30),
            max_files: NonZeroU64::new(1_000_000).unwrap_or(NonZeroU64::MIN),
            max_depth: NonZeroU32::new(64).unwrap_or(NonZeroU32::MIN),
        }
    }
}

/// One cap of [`UnpackLimits`], for the refusal's message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnpackCap {
    Bytes,
    Files,
    Depth,
}

impl UnpackLimits {
    /// The node config key of `cap`.
    pub fn key(cap: UnpackCap) -> &'static str {
        match cap {
            UnpackCap::Bytes => "limits.unpack.max_bytes",
            UnpackCap::Files => "limits.unpack.max_files",
            UnpackCap::Depth => "limits.unpack.max_depth",
        }
    }

    /// The refusal when a tree goes past `cap` (at `what`, a path or "the
    /// tree"): the cap, its value and the key to raise, in one line.
    pub fn refusal(&self, cap: UnpackCap, what: &str) -> String {
        let value = match cap {
            UnpackCap::Bytes => format!("{} of content", self.max_bytes),
            UnpackCap::Files => format!("{} files, directories and links", self.max_files),
            UnpackCap::Depth => format!("{} levels of directories", self.max_depth),
        };
        let key = Self::key(cap);
        format!(
            "{what} goes past {key} ({value}); refused, nothing of it is kept (raise {key} \
             in the node config if a tree this big is meant)"
        )
    }
}

/// `limits:` of the node config: per kind of container, and what a tree
/// written into a site may hold.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    #[serde(rename = "static")]
    pub static_: ContainerLimits,
    pub static_git: ContainerLimits,
    pub wordpress: ContainerLimits,
    pub mysql: ContainerLimits,
    pub haproxy: ContainerLimits,
    pub postfix: ContainerLimits,
    pub unpack: UnpackLimits,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // nginx with one worker needs a few MB; room for big files in
            // the page cache is the kernel's, not the container's.
            static_: ContainerLimits::new(128, 50, 64),
            static_git: ContainerLimits::new(128, 50, 64),
            // Apache prefork with up to 16 PHP workers at WP_MEMORY_LIMIT.
            wordpress: ContainerLimits::new(768, 100, 128),
            // MariaDB runs a thread per connection; threads count as pids.
            mysql: ContainerLimits::new(512, 100, 256),
            // Every site goes through it: generous, never CPU-capped.
            haproxy: ContainerLimits::new(1024, 0, 1024),
            postfix: ContainerLimits::new(256, 50, 256),
            unpack: UnpackLimits::default(),
        }
    }
}

impl Limits {
    pub fn for_kind(&self, kind: hostyard_core::SiteKind) -> &ContainerLimits {
        match kind {
            hostyard_core::SiteKind::Static => &self.static_,
            hostyard_core::SiteKind::StaticGit => &self.static_git,
            hostyard_core::SiteKind::Wordpress => &self.wordpress,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_sizes_parse_and_print_as_docker_takes_them() {
        for (input, bytes, shown) in [
            ("512M", 512u64 << 20, "512m"),
            ("1g", 1 << 30, "1g"),
            ("1536MiB", 1536 << 20, "1536m"),
            ("6291456", 6 << 20, "6m"),
            ("7000k", 7000 << 10, "7000k"),
        ] {
            let m: MemorySize = input.parse().unwrap();
            assert_eq!(
                (m.bytes(), m.to_string().as_str()),
                (bytes, shown),
                "{input}"
            );
            assert_eq!(m.to_string().parse::<MemorySize>().unwrap(), m);
        }
        for bad in [
            "",
            "1",
            "5m",
            "12x",
            "-1g",
            "1.5g",
            "99999999999999999999g",
            "1 g",
        ] {
            let err = bad.parse::<MemorySize>().unwrap_err();
            assert!(err.contains("not a memory size"), "{bad}: {err}");
        }
    }

    #[test]
    fn unpack_caps_default_to_10g_a_million_files_and_64_levels() {
        let u = UnpackLimits::default();
        assert_eq!(
            (u.max_bytes.bytes(), u.max_files.get(), u.max_depth.get()),
            (10 << 30, 1_000_000, 64)
        );
        assert_eq!(u.max_bytes.to_string(), "10g");
        assert_eq!("1m".parse::<ByteSize>().unwrap().bytes(), 1 << 20);
        for bad in ["0", "", "1x", "-1"] {
            let err = bad.parse::<ByteSize>().unwrap_err();
            assert!(err.contains("not a size"), "{bad}: {err}");
        }
        let l: Limits = yaml_serde::from_str("unpack:\n  max_bytes: 1m\n").unwrap();
        assert_eq!(l.unpack.max_bytes.bytes(), 1 << 20);
        assert_eq!(l.unpack.max_files, u.max_files);
        for bad in [
            "unpack:\n  max_files: 0\n",
            "unpack:\n  max_depth: 0\n",
            "unpack:\n  max_bytes: 0\n",
            "unpack:\n  max_size: 1g\n",
        ] {
            assert!(yaml_serde::from_str::<Limits>(bad).is_err(), "{bad}");
        }
        let line = u.refusal(UnpackCap::Bytes, "the archive");
        assert_eq!(line.lines().count(), 1);
        for says in [
            "limits.unpack.max_bytes (10g of content)",
            "raise limits.unpack.max_bytes",
        ] {
            assert!(line.contains(says), "{line}");
        }
    }

    #[test]
    fn cpus_are_hundredths_and_zero_is_no_limit() {
        assert_eq!(Cpus::try_from(0.5).unwrap().to_string(), "0.50");
        assert_eq!(Cpus::try_from(2.0).unwrap().to_string(), "2.00");
        assert!(Cpus::try_from(0.0).unwrap().is_unlimited());
        for bad in [-1.0, 0.005, f64::NAN, f64::INFINITY, 1e9] {
            assert!(Cpus::try_from(bad).is_err(), "{bad}");
        }
        assert!(Pids::try_from(15).is_err());
    }

    #[test]
    fn docker_options_cap_swap_and_come_from_the_environment_for_sites() {
        let l = Limits::default();
        assert_eq!(
            l.static_.docker_options(),
            [
                "--memory 128m",
                "--memory-swap 128m",
                "--pids-limit 64",
                "--cpus 0.50"
            ]
        );
        assert!(l
            .haproxy
            .docker_options()
            .contains(&"--cpus 0.00".to_string()));
        assert_eq!(
            ContainerLimits::docker_options_from_environment(),
            [
                "--memory ${HOSTYARD_MEMORY}",
                "--memory-swap ${HOSTYARD_MEMORY}",
                "--pids-limit ${HOSTYARD_PIDS}",
                "--cpus ${HOSTYARD_CPUS}"
            ]
        );
        assert_eq!(
            l.wordpress.environment(),
            [
                "HOSTYARD_MEMORY=768m",
                "HOSTYARD_PIDS=128",
                "HOSTYARD_CPUS=1.00"
            ]
        );
    }
}
