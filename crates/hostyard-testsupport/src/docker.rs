//! The real Docker engine for tests that run site containers.
//!
//! No registry is reachable from these machines, so the one image tests
//! need is built locally from the host's static busybox.

use std::fs::File;
use std::net::IpAddr;

use std::process::{Command, Output};
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::{bail, Context};
use nix::fcntl::{Flock, FlockArg};

/// The test image: `busybox httpd` serving `/www/index.html`. Bump the tag
/// when the image's contents change, so machines with the old one rebuild.
pub const BUSYBOX_HTTP_IMAGE: &str = "hostyard-test-httpd:1";
/// What the test image's `/index.html` contains.
pub const BUSYBOX_HTTP_BODY: &str = "hostyard test httpd\n";

const BUSYBOX: &str = "/bin/busybox";
/// Serialises the image build across concurrently running test binaries.
const BUILD_LOCK: &str = "/tmp/hostyard-test-httpd.lock";

/// Whether `docker info` succeeds (an engine is running and reachable).
pub fn docker_available() -> bool {
    Command::new("docker")
        .args(["info", "--format", "{{.ServerVersion}}"])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Panics with the fix unless a Docker engine answers.
pub fn require_docker() {
    if !docker_available() {
        panic!("docker engine not running: run scripts/test.sh, which starts it");
    }
}

/// Runs `docker <args>`; `Err` carries the command and its stderr.
pub fn docker(args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("docker")
        .args(args)
        .output()
        .context("running docker (apt-get install docker.io, or run scripts/test.sh)")?;
    check(args, out)
}

fn check(args: &[&str], out: Output) -> anyhow::Result<String> {
    if !out.status.success() {
        bail!(
            "docker {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

fn image_exists(name: &str) -> bool {
    Command::new("docker")
        .args(["image", "inspect", "--format", "{{.Id}}", name])
        .output()
        .is_ok_and(|o| o.status.success())
}

/// Builds (once per machine) and returns a tiny HTTP image: `FROM scratch`
/// plus the host's static busybox running `httpd -f -p 80 -h /www`.
pub fn busybox_http_image() -> anyhow::Result<String> {
    if image_exists(BUSYBOX_HTTP_IMAGE) {
        return Ok(BUSYBOX_HTTP_IMAGE.to_owned());
    }
    let lock_file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(BUILD_LOCK)
        .with_context(|| format!("opening {BUILD_LOCK}"))?;
    let _lock = Flock::lock(lock_file, FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .with_context(|| format!("locking {BUILD_LOCK}"))?;
    // Another test process may have built it while we waited for the lock.
    if image_exists(BUSYBOX_HTTP_IMAGE) {
        return Ok(BUSYBOX_HTTP_IMAGE.to_owned());
    }
    require_static_busybox()?;
    let ctx = tempfile::Builder::new()
        .prefix("hostyard-httpd-image-")
        .tempdir()
        .context("creating build context")?;
    std::fs::copy(BUSYBOX, ctx.path().join("busybox")).context("copying busybox")?;
    std::fs::create_dir(ctx.path().join("www")).context("creating www")?;
    std::fs::write(ctx.path().join("www/index.html"), BUSYBOX_HTTP_BODY)
        .context("writing index.html")?;
    std::fs::write(
        ctx.path().join("Dockerfile"),
        "FROM scratch\n\
         COPY busybox /bin/busybox\n\
         COPY www /www\n\
         EXPOSE 80\n\
         ENTRYPOINT [\"/bin/busybox\", \"httpd\", \"-f\", \"-p\", \"80\", \"-h\", \"/www\"]\n",
    )
    .context("writing Dockerfile")?;
    let ctx_path = ctx.path().to_string_lossy().into_owned();
    docker(&["build", "-q", "-t", BUSYBOX_HTTP_IMAGE, &ctx_path])
        .context("building the busybox httpd test image")?;
    Ok(BUSYBOX_HTTP_IMAGE.to_owned())
}

/// A `FROM scratch` image has no libc: busybox must be statically linked,
/// i.e. its ELF file has no PT_INTERP program header.
fn require_static_busybox() -> anyhow::Result<()> {
    let elf = match std::fs::read(BUSYBOX) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            bail!("{BUSYBOX} not found: apt-get install busybox-static, or run scripts/test.sh")
        }
        Err(e) => return Err(e).with_context(|| format!("reading {BUSYBOX}")),
    };
    if has_interpreter(&elf).context("parsing busybox's ELF header")? {
        bail!(
            "{BUSYBOX} is dynamically linked: apt-get install busybox-static (it replaces busybox)"
        );
    }
    Ok(())
}

fn has_interpreter(elf: &[u8]) -> anyhow::Result<bool> {
    const PT_INTERP: u32 = 3;
    let u16_at =
        |o: usize| -> Option<u16> { Some(u16::from_le_bytes(elf.get(o..o + 2)?.try_into().ok()?)) };
    let u32_at =
        |o: usize| -> Option<u32> { Some(u32::from_le_bytes(elf.get(o..o + 4)?.try_into().ok()?)) };
    let u64_at =
        |o: usize| -> Option<u64> { Some(u64::from_le_bytes(elf.get(o..o + 8)?.try_into().ok()?)) };
    // Only 64-bit little-endian ELF, which is what Debian amd64/arm64 ship.
    if elf.get(..6) != Some(&[0x7f, b'E', b'L', b'F', 2, 1][..]) {
        bail!("not a 64-bit little-endian ELF file");
    }
    let parse = || -> Option<bool> {
        let phoff = usize::try_from(u64_at(0x20)?).ok()?;
        let phentsize = usize::from(u16_at(0x36)?);
        let phnum = usize::from(u16_at(0x38)?);
        let mut found = false;
        for i in 0..phnum {
            found |= u32_at(phoff + i * phentsize)? == PT_INTERP;
        }
        Some(found)
    };
    parse().context("truncated ELF program headers")
}

/// A unique container or network name for this test process: `prefix`,
/// the pid and a counter, so parallel tests and runs never collide.
pub fn unique_name(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    )
}

/// A container removed (`docker rm -f -v`) on drop.
pub struct Container {
    id: String,
}

impl Container {
    /// `docker run -d <args>`; the guard owns the new container.
    pub fn run(args: &[&str]) -> anyhow::Result<Container> {
        let mut full = vec!["run", "-d"];
        full.extend_from_slice(args);
        let id = docker(&full)?;
        Ok(Container { id })
    }

    /// Takes ownership of an existing container by id or name.
    pub fn adopt(id_or_name: &str) -> Container {
        Container {
            id: id_or_name.to_owned(),
        }
    }

    pub fn id(&self) -> &str {
        &self.id
    }

    /// The container's address on its (first) network.
    pub fn ip(&self) -> anyhow::Result<IpAddr> {
        let out = docker(&[
            "inspect",
            "--format",
            "{{range .NetworkSettings.Networks}}{{.IPAddress}} {{end}}",
            &self.id,
        ])?;
        let first = out.split_whitespace().next().unwrap_or_default();
        first
            .parse()
            .with_context(|| format!("container {} has no IP address (got {out:?})", self.id))
    }

    /// `docker logs` of the container (stdout and stderr), for messages.
    pub fn logs(&self) -> String {
        match Command::new("docker").args(["logs", &self.id]).output() {
            Ok(o) => {
                String::from_utf8_lossy(&o.stdout).into_owned()
                    + &String::from_utf8_lossy(&o.stderr)
            }
            Err(e) => format!("(docker logs failed: {e})"),
        }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("docker")
            .args(["rm", "-f", "-v", &self.id])
            .output();
    }
}

/// A docker network of its own (`PREFIX-PID-N`), removed on drop.
pub struct Network {
    pub name: String,
}

impl Network {
    pub fn create(prefix: &str) -> anyhow::Result<Network> {
        let name = unique_name(prefix);
        docker(&["network", "create", &name])?;
        Ok(Network { name })
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // A container still attached (its guard dropped after this one, or
        // never, after a panic) makes `network rm` fail and the network
        // leak; enough leaked networks exhaust docker's address pools and
        // every later test that makes one fails.
        if let Ok(ids) = docker(&[
            "network",
            "inspect",
            "--format",
            "{{range $id, $c := .Containers}}{{$id}} {{end}}",
            &self.name,
        ]) {
            for id in ids.split_whitespace() {
                let _ = docker(&["rm", "-f", "-v", id]);
            }
        }
        let _ = docker(&["network", "rm", &self.name]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_test_binary_is_recognised_as_dynamically_linked() {
        let me = std::fs::read("/proc/self/exe").expect("read own binary");
        // Rust test binaries link glibc dynamically on Debian.
        assert!(has_interpreter(&me).expect("parse"));
    }

    #[test]
    fn unique_names_differ() {
        assert_ne!(unique_name("t"), unique_name("t"));
    }

    #[test]
    fn busybox_check_rejects_non_elf_input() {
        assert!(has_interpreter(b"#!/bin/sh\n").is_err());
    }
}
