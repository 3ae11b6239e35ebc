//! A child process in its own process group, logging to a file.
//!
//! etcd and HAProxy (master-worker) start children of their own; killing only
//! the direct child would leave HAProxy workers holding ports. Each service
//! is therefore a process-group leader, and teardown signals the group.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::{ErrorKind, Read, Seek, SeekFrom};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// How many lines of a service log an error message carries.
const LOG_TAIL_LINES: usize = 30;

/// Checks that `bin` runs (`bin <version_arg>`) and returns its first output
/// line. A missing binary is reported with the apt package to install.
pub(crate) fn require_binary(bin: &str, version_arg: &str, apt: &str) -> anyhow::Result<String> {
    version_line(bin.as_ref(), version_arg)?
        .ok_or_else(|| anyhow!("{bin} not found: apt-get install {apt}, or run scripts/test.sh"))
}

/// Runs `bin <version_arg>` and returns the first line of its output
/// (stdout, then stderr), or `None` when there is no such program.
pub(crate) fn version_line(bin: &OsStr, version_arg: &str) -> anyhow::Result<Option<String>> {
    let shown = Path::new(bin).display();
    let out = match Command::new(bin).arg(version_arg).output() {
        Ok(out) => out,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("running {shown} {version_arg}")),
    };
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!(
            "{shown} {version_arg} failed ({}): {}",
            out.status,
            text.trim()
        );
    }
    Ok(Some(text.lines().next().unwrap_or_default().to_owned()))
}

/// The last `n` lines of a log file, or a note saying why there are none.
pub(crate) fn log_tail(path: &Path, n: usize) -> String {
    let mut text = String::new();
    let read = File::open(path).and_then(|mut f| {
        // Logs of a failing service can be long; the end is what matters.
        let len = f.metadata()?.len();
        f.seek(SeekFrom::Start(len.saturating_sub(64 * 1024)))?;
        let mut buf = Vec::new();
        f.read_to_end(&mut buf)?;
        text = String::from_utf8_lossy(&buf).into_owned();
        Ok(())
    });
    if let Err(e) = read {
        return format!("(cannot read {}: {e})", path.display());
    }
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// A running service process; killed with its whole group on drop.
pub(crate) struct Service {
    name: &'static str,
    child: Option<Child>,
    log: PathBuf,
    /// The command line, so a failure message says how to rerun it by hand.
    cmdline: String,
}

impl Service {
    /// Spawns `cmd` as a new process-group leader with stdout and stderr
    /// appended to `log` (appended, so a restarted service keeps its history).
    pub(crate) fn spawn(name: &'static str, mut cmd: Command, log: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .with_context(|| format!("opening log {}", log.display()))?;
        let file2 = file.try_clone().context("dup log file")?;
        let cmdline = std::iter::once(cmd.get_program())
            .chain(cmd.get_args())
            .map(|a| a.to_string_lossy().into_owned())
            .collect::<Vec<_>>()
            .join(" ");
        cmd.stdin(Stdio::null())
            .stdout(file)
            .stderr(file2)
            .process_group(0);
        let child = cmd
            .spawn()
            .with_context(|| format!("spawning {name}: {cmd:?}"))?;
        Ok(Service {
            name,
            child: Some(child),
            log: log.to_owned(),
            cmdline,
        })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    pub(crate) fn log_path(&self) -> &Path {
        &self.log
    }

    /// An error naming the service, its pid, the command, its log file and
    /// the log's last lines.
    pub(crate) fn failure(&self, what: impl std::fmt::Display) -> anyhow::Error {
        failure_with_log(
            self.name,
            format!("{what} (pid {}, command: {})", self.pid(), self.cmdline),
            &self.log,
        )
    }

    /// Gives up on a service that did not become ready: the error naming
    /// `what` and its log, the process stopped, and `dir` (which holds the
    /// log) kept for a look.
    pub(crate) fn give_up(
        self,
        dir: tempfile::TempDir,
        what: impl std::fmt::Display,
    ) -> anyhow::Error {
        let err = self.failure(what);
        drop(self);
        let _kept = dir.keep();
        err
    }

    /// `Err` if the process has already exited (so waits can stop early).
    pub(crate) fn check_alive(&mut self) -> anyhow::Result<()> {
        let Some(child) = self.child.as_mut() else {
            return Err(anyhow!("{} is not running", self.name));
        };
        match child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(self.failure(format!("exited early with {status}"))),
            Err(e) => Err(self.failure(format!("cannot check process: {e}"))),
        }
    }

    /// Sends `sig` to the process group, waits up to `grace` for the leader
    /// to exit, then kills the group outright.
    pub(crate) fn stop(&mut self, sig: Signal, grace: Duration) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pgid = Pid::from_raw(child.id() as i32);
        let _ = killpg(pgid, sig);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // Children of the leader (HAProxy workers) may outlive it.
        let _ = killpg(pgid, Signal::SIGKILL);
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        self.stop(Signal::SIGKILL, Duration::from_secs(5));
    }
}

pub(crate) fn failure_with_log(
    name: &str,
    what: impl std::fmt::Display,
    log: &Path,
) -> anyhow::Error {
    anyhow!(
        "{name}: {what}; log {} ends with:\n{}",
        log.display(),
        log_tail(log, LOG_TAIL_LINES)
    )
}

/// Whether `pid` is a live process (not gone, not a zombie). Zombies count
/// as dead: an orphaned HAProxy worker is reaped by PID 1, which on these
/// machines may not do so promptly.
pub fn process_alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// Runs `cmd` to its end and returns its output; fails the test, naming
/// the program and showing its stderr, unless it exits 0.
pub fn output_ok(cmd: &mut Command) -> Output {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("{program} did not run: {e}"));
    assert!(
        out.status.success(),
        "{program} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn missing_binary_error_names_the_apt_package() {
        let err = require_binary("hostyard-no-such-binary", "--version", "some-package")
            .expect_err("binary is missing");
        assert_eq!(
            err.to_string(),
            "hostyard-no-such-binary not found: apt-get install some-package, or run scripts/test.sh"
        );
    }

    #[test]
    fn log_tail_keeps_only_the_last_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("x.log");
        let text: String = (1..=50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, text).expect("write");
        assert_eq!(log_tail(&log, 2), "line 49\nline 50");
        assert!(log_tail(&dir.path().join("missing"), 2).starts_with("(cannot read"));
    }

    #[test]
    fn process_alive_is_false_for_an_exited_child() {
        let mut child = Command::new("true").spawn().expect("spawn true");
        let pid = child.id();
        child.wait().expect("wait");
        assert!(!process_alive(pid));
        assert!(process_alive(std::process::id()));
    }
}
