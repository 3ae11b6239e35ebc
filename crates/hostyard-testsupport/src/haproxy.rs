//! A real HAProxy 3.0 (as on Debian 13: see [`crate::haproxy_binary`]) in
//! master-worker mode, with its runtime API.
//!
//! hostyard-confd drives HAProxy through the admin socket (maps, server
//! addresses) and reloads through the master CLI; tests need both sockets.

use std::io::{Read, Write};
use std::net::Shutdown;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use tempfile::TempDir;

use crate::poll::wait_until;
use crate::process::{failure_with_log, Service};
use crate::tools::haproxy_binary;

const READY_TIMEOUT: Duration = Duration::from_secs(30);
const SOCKET_TIMEOUT: Duration = Duration::from_secs(10);

/// A short temp dir under /tmp for HAProxy's unix sockets.
///
/// Unix socket paths are limited to 108 bytes, and `TMPDIR` or a cargo
/// target dir can be long, so this always uses `/tmp/hyXXXXXX`.
pub struct SocketDir {
    dir: TempDir,
}

impl SocketDir {
    pub fn new() -> anyhow::Result<SocketDir> {
        let dir = tempfile::Builder::new()
            .prefix("hy")
            .tempdir_in("/tmp")
            .context("creating socket dir under /tmp")?;
        Ok(SocketDir { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Where a config's `stats socket <path> level admin` should point.
    pub fn admin_socket_path(&self) -> PathBuf {
        self.dir.path().join("admin.sock")
    }

    /// Where [`Haproxy::start`] puts the master CLI socket.
    pub fn master_socket_path(&self) -> PathBuf {
        self.dir.path().join("master.sock")
    }
}

/// Runs `haproxy -c -f cfg`; `Err` carries HAProxy's output (or why the
/// right HAProxy is not there).
pub fn haproxy_check(cfg: &Path) -> Result<(), String> {
    let bin = haproxy_binary().map_err(|e| format!("{e:#}"))?;
    let out = Command::new(&bin)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .map_err(|e| format!("running {} -c: {e}", bin.display()))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(String::from_utf8_lossy(&out.stdout).into_owned()
            + &String::from_utf8_lossy(&out.stderr))
    }
}

/// A running `haproxy -W -S <dir>/master.sock -f <cfg>`; the master and its
/// workers are killed on drop.
pub struct Haproxy {
    service: Service,
    admin: PathBuf,
    master: PathBuf,
    cfg: PathBuf,
    // Holds the master socket and the log unless the caller gave a dir.
    _dir: TempDir,
}

impl Haproxy {
    /// Starts HAProxy on a config file the test wrote. The config must
    /// declare `stats socket <path> level admin` itself (see
    /// [`SocketDir::admin_socket_path`]); that path is read from the config.
    /// Returns once the worker answers `show info` on the admin socket.
    pub fn start(cfg: &Path) -> anyhow::Result<Haproxy> {
        let bin = haproxy_binary()?;
        let text = std::fs::read_to_string(cfg)
            .with_context(|| format!("reading HAProxy config {}", cfg.display()))?;
        let admin = admin_socket_of(&text).ok_or_else(|| {
            anyhow!(
                "{} has no `stats socket <path> level admin` line; the harness needs it",
                cfg.display()
            )
        })?;
        let dir = tempfile::Builder::new()
            .prefix("hy")
            .tempdir_in("/tmp")
            .context("creating HAProxy temp dir")?;
        let master = dir.path().join("master.sock");
        let log = dir.path().join("haproxy.log");
        if let Err(e) = haproxy_check(cfg) {
            bail!("HAProxy rejects {}:\n{e}", cfg.display());
        }
        let mut cmd = Command::new(&bin);
        cmd.arg("-W")
            .arg("-S")
            .arg(&master)
            .arg("-f")
            .arg(cfg)
            .current_dir(dir.path());
        let mut service = Service::spawn("haproxy", cmd, &log)?;
        let ready = wait_until("HAProxy master and worker to answer", READY_TIMEOUT, || {
            if let Err(e) = service.check_alive() {
                return Some(Err(e));
            }
            // The worker can answer before the master listens on its CLI
            // socket: wait for both.
            let workers = master_command(&master, "show proc").ok()?;
            current_worker_pid(&workers)?;
            socket_command(&admin, "show info")
                .ok()
                .filter(|out| out.contains("Pid:"))
                .map(|_| Ok(()))
        })
        .and_then(|r| r);
        if let Err(e) = ready {
            return Err(service.give_up(dir, format!("did not become ready: {e:#}")));
        }
        Ok(Haproxy {
            service,
            admin,
            master,
            cfg: cfg.to_owned(),
            _dir: dir,
        })
    }

    /// Sends one command to the admin (stats) socket and returns the answer.
    pub fn runtime(&self, cmd: &str) -> anyhow::Result<String> {
        socket_command(&self.admin, cmd).map_err(|e| {
            self.service
                .failure(format!("runtime command {cmd:?}: {e:#}"))
        })
    }

    /// Sends one command to the master CLI and returns the answer.
    pub fn master(&self, cmd: &str) -> anyhow::Result<String> {
        master_command(&self.master, cmd).map_err(|e| {
            self.service
                .failure(format!("master command {cmd:?}: {e:#}"))
        })
    }

    /// Reloads through the master CLI and waits until a new worker, reading
    /// the config file again, answers on the admin socket.
    pub fn reload(&self) -> anyhow::Result<()> {
        let before = self.worker_pid()?;
        // HAProxy 3.0's master answers once the new worker has loaded:
        // `Success=1`, or `Success=0` and the startup messages saying why.
        // (2.6 closed the connection without an answer.) Either way success
        // shows as a new worker pid, which is what is waited for.
        let answer = master_command(&self.master, "reload").unwrap_or_default();
        if answer.starts_with("Success=0") {
            return Err(failure_with_log(
                "haproxy",
                format!(
                    "reload of {} failed, the old worker keeps serving: {}",
                    self.cfg.display(),
                    answer.trim()
                ),
                self.service.log_path(),
            ));
        }
        wait_until("a new HAProxy worker after reload", READY_TIMEOUT, || {
            let pid = self.worker_pid().ok()?;
            if pid == before {
                return None;
            }
            // The new worker must also own the admin socket.
            let info = socket_command(&self.admin, "show info").ok()?;
            info.contains(&format!("Pid: {pid}\n")).then_some(())
        })
        .map_err(|e| {
            failure_with_log(
                "haproxy",
                format!("reload of {}: {e:#}", self.cfg.display()),
                self.service.log_path(),
            )
        })
    }

    /// The pid of the current worker, from the master's `show proc`.
    pub fn worker_pid(&self) -> anyhow::Result<u32> {
        let out = self.master("show proc")?;
        current_worker_pid(&out).ok_or_else(|| anyhow!("no current worker in show proc:\n{out}"))
    }

    /// The master's pid.
    pub fn pid(&self) -> u32 {
        self.service.pid()
    }

    pub fn admin_socket(&self) -> &Path {
        &self.admin
    }

    pub fn master_socket(&self) -> &Path {
        &self.master
    }

    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }
}

/// The first `stats socket <path>` of a config.
fn admin_socket_of(cfg: &str) -> Option<PathBuf> {
    cfg.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        match (words.next(), words.next(), words.next()) {
            (Some("stats"), Some("socket"), Some(path)) if path.starts_with('/') => {
                Some(PathBuf::from(path))
            }
            _ => None,
        }
    })
}

/// The worker listed first under `# workers` in `show proc` (layout of 2.6
/// and 3.0: master line, `# workers`, current workers, `# old workers`, ...).
fn current_worker_pid(show_proc: &str) -> Option<u32> {
    let mut in_workers = false;
    for line in show_proc.lines() {
        if line.starts_with('#') {
            in_workers = line.trim() == "# workers";
            continue;
        }
        if in_workers {
            let mut words = line.split_whitespace();
            if let (Some(pid), Some("worker")) = (words.next(), words.next()) {
                return pid.parse().ok();
            }
        }
    }
    None
}

/// One command on the admin socket: the worker answers and closes the
/// connection (non-interactive mode), so the answer is everything up to EOF.
fn socket_command(path: &Path, cmd: &str) -> anyhow::Result<String> {
    cli_command(path, cmd, false)
}

/// One command on the master CLI. Unlike the worker, the master (2.6 and
/// 3.0) keeps the connection open after answering until the client closes
/// its side, so we half-close after the command to get EOF after the answer.
fn master_command(path: &Path, cmd: &str) -> anyhow::Result<String> {
    cli_command(path, cmd, true)
}

fn cli_command(path: &Path, cmd: &str, half_close: bool) -> anyhow::Result<String> {
    let mut s =
        UnixStream::connect(path).with_context(|| format!("connecting to {}", path.display()))?;
    s.set_read_timeout(Some(SOCKET_TIMEOUT))?;
    s.set_write_timeout(Some(SOCKET_TIMEOUT))?;
    s.write_all(format!("{cmd}\n").as_bytes())
        .with_context(|| format!("writing to {}", path.display()))?;
    if half_close {
        s.shutdown(Shutdown::Write)
            .with_context(|| format!("shutting down writes to {}", path.display()))?;
    }
    let mut out = String::new();
    s.read_to_string(&mut out)
        .with_context(|| format!("reading from {}", path.display()))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn admin_socket_is_read_from_the_config() {
        let cfg = "global\n    master-worker\n    stats socket /tmp/hyab/admin.sock mode 600 level admin\n";
        assert_eq!(
            admin_socket_of(cfg),
            Some(PathBuf::from("/tmp/hyab/admin.sock"))
        );
        assert_eq!(admin_socket_of("global\n  stats timeout 2s\n"), None);
    }

    #[test]
    fn current_worker_is_taken_from_the_workers_section() {
        let out = "#<PID>          <type>          <reloads>       <uptime>        <version>\n\
                   100             master          1 [failed: 0]   0d00h00m02s     2.6.12\n\
                   # workers\n\
                   300             worker          0               0d00h00m01s     2.6.12\n\
                   # old workers\n\
                   200             worker          1               0d00h00m02s     2.6.12\n\
                   # programs\n\n";
        assert_eq!(current_worker_pid(out), Some(300));
        // 3.0, as its master answered here (no old worker left).
        let out = "#<PID>          <type>          <reloads>       <uptime>        <version>      \n\
                   28602           master          1 [failed: 0]   0d00h00m03s     3.0.11-1+deb13u4\n\
                   # workers\n\
                   28654           worker          0               0d00h00m02s     3.0.11-1+deb13u4\n\
                   # programs\n\n";
        assert_eq!(current_worker_pid(out), Some(28654));
    }
}
