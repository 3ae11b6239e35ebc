//! Running git as root against a URL someone else chose.
//!
//! Every git call goes through [`Git`], which fixes the environment once:
//! no prompt (`GIT_TERMINAL_PROMPT=0`, ssh in batch mode, stdin closed), only
//! network transports (`GIT_ALLOW_PROTOCOL`, `protocol.file.allow=never`),
//! objects checked on receipt, no inherited `GIT_DIR`-style variables, and a
//! time limit after which the whole process group (git, its remote helper,
//! ssh) is killed. URLs always follow `--`.

use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{ChildStdout, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::Duration;

use crate::GitUrl;
use anyhow::{anyhow, bail, Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;

/// Variables that would point git somewhere other than our repository or
/// inject configuration.
const SCRUBBED_ENV: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_COUNT",
    "GIT_NAMESPACE",
    "GIT_CEILING_DIRECTORIES",
    "GIT_EXEC_PATH",
    "GIT_PROXY_COMMAND",
    "GIT_EXTERNAL_DIFF",
];

/// The credential helper: a shell function that prints the user and
/// password from the environment git passes on (never from its arguments).
const CREDENTIAL_HELPER: &str = "!f() { test \"$1\" = get && printf 'username=%s\\npassword=%s\\n' \"$HOSTYARD_GIT_USERNAME\" \"$HOSTYARD_GIT_PASSWORD\"; }; f";

/// git bound to one bare repository.
pub struct Git {
    git_dir: PathBuf,
    timeout: Duration,
    /// The largest file a fetch may write (the pack it receives).
    file_cap: Option<u64>,
}

impl Git {
    pub fn new(git_dir: &Path, timeout: Duration) -> Git {
        Git {
            git_dir: git_dir.to_path_buf(),
            timeout,
            file_cap: None,
        }
    }

    /// A fetch keeps what it receives as one pack (never loose objects) and
    /// may write no file past `bytes`: util-linux's `prlimit` sets
    /// `RLIMIT_FSIZE` for git and its index-pack, so a push larger than the
    /// node allows is cut off while it arrives instead of filling the disk.
    /// Lowering a limit needs no privilege, and `prlimit64` is in systemd's
    /// `@default` set, which the importer's and puller's filters keep.
    pub fn with_file_cap(mut self, bytes: u64) -> Git {
        self.file_cap = Some(bytes);
        self
    }

    fn command(&self) -> Command {
        let mut cmd = match self.file_cap {
            Some(cap) => {
                let mut cmd = Command::new("prlimit");
                cmd.arg(format!("--fsize={cap}:{cap}"))
                    .arg("--")
                    .arg("git")
                    .arg("-c")
                    .arg("transfer.unpackLimit=1");
                cmd
            }
            None => Command::new("git"),
        };
        for var in SCRUBBED_ENV {
            cmd.env_remove(var);
        }
        cmd.env("GIT_TERMINAL_PROMPT", "0")
            .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh")
            .env("GIT_ASKPASS", "/bin/false")
            .env("SSH_ASKPASS", "/bin/false")
            .env("LC_ALL", "C");
        if std::env::var_os("GIT_SSH_COMMAND").is_none() {
            // Never wait for a password or a host-key question.
            cmd.env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
        }
        cmd.arg("-c")
            .arg("protocol.file.allow=never")
            .arg("-c")
            .arg("transfer.fsckObjects=true")
            .arg("-c")
            .arg("core.hooksPath=/dev/null")
            .arg("--git-dir")
            .arg(&self.git_dir);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0);
        cmd
    }

    /// `git init --bare` without templates (no sample hooks, no description).
    pub fn init_bare(&self) -> Result<()> {
        let mut cmd = self.command();
        cmd.args(["init", "--quiet", "--bare", "--template="]);
        // `init` creates the directory named by --git-dir.
        self.run(cmd, "init", drain)
    }

    /// Fetches `branch` (or the remote's HEAD) into `into`, forced: the
    /// server has no commits of its own, so whatever the remote says is the
    /// truth, force-pushes included.
    ///
    /// Credentials in an http(s) URL never reach a command line (git's or
    /// its remote helper's, both readable by every user): git gets the URL
    /// without them and asks a credential helper, scoped to that server,
    /// that reads them from its environment.
    pub fn fetch(&self, url: &GitUrl, into: &str) -> Result<()> {
        let src = match url.branch() {
            Some(b) => format!("refs/heads/{b}"),
            None => "HEAD".to_string(),
        };
        let mut cmd = self.command();
        let credentials = url.http_credentials();
        let url = match &credentials {
            Some(c) => {
                // Config from the environment (git 2.31+): the first entry
                // drops any helper of the system's config.
                cmd.env("GIT_CONFIG_COUNT", "2")
                    .env("GIT_CONFIG_KEY_0", "credential.helper")
                    .env("GIT_CONFIG_VALUE_0", "")
                    .env(
                        "GIT_CONFIG_KEY_1",
                        format!("credential.{}.helper", c.origin),
                    )
                    .env("GIT_CONFIG_VALUE_1", CREDENTIAL_HELPER)
                    .env("HOSTYARD_GIT_USERNAME", &c.username)
                    .env("HOSTYARD_GIT_PASSWORD", &c.password);
                c.url.as_str()
            }
            None => url.url(),
        };
        cmd.args([
            "fetch",
            "--quiet",
            "--force",
            "--no-tags",
            "--no-write-fetch-head",
            "--no-recurse-submodules",
            "--",
            url,
        ])
        .arg(format!("+{src}:{into}"));
        let fetched = self.run(cmd, "fetch", drain);
        if fetched.is_err() {
            if let Some(cap) = self.file_cap {
                // index-pack's unfinished pack stays behind when it is cut
                // off; it is the evidence, then it goes.
                if self.remove_partial_packs()? >= cap {
                    bail!(
                        "the data fetched passes limits.unpack.max_bytes ({cap} bytes): \
                         nothing of it is kept; make the repository smaller or raise \
                         limits.unpack.max_bytes"
                    );
                }
            }
        }
        fetched
    }

    /// Removes the packs a fetch left unfinished; the size of the largest.
    fn remove_partial_packs(&self) -> Result<u64> {
        let dir = self.git_dir.join("objects/pack");
        let mut largest = 0;
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", dir.display())),
        };
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
            if !entry.file_name().to_string_lossy().starts_with("tmp_") {
                continue;
            }
            let meta = entry.metadata()?;
            largest = largest.max(meta.len());
            std::fs::remove_file(entry.path())
                .with_context(|| format!("cannot remove {}", entry.path().display()))?;
        }
        Ok(largest)
    }

    /// The commit a ref names, as a hex object id.
    pub fn resolve_commit(&self, refname: &str) -> Result<String> {
        let mut cmd = self.command();
        cmd.args(["rev-parse", "--verify", "--quiet", "--end-of-options"])
            .arg(format!("{refname}^{{commit}}"));
        let out = self.run(cmd, "rev-parse", read_all)?;
        let id = String::from_utf8_lossy(&out).trim().to_string();
        if !(id.len() == 40 || id.len() == 64) || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            bail!("git rev-parse printed {id:?}, not a commit id");
        }
        Ok(id.to_ascii_lowercase())
    }

    /// Streams `git archive` of `commit` into `sink`.
    pub fn archive<T>(
        &self,
        commit: &str,
        sink: impl FnOnce(ChildStdout) -> Result<T>,
    ) -> Result<T> {
        let mut cmd = self.command();
        cmd.args(["archive", "--format=tar", "--end-of-options", commit]);
        self.run(cmd, "archive", sink)
    }

    /// Runs `cmd`, feeding its stdout to `sink` on this thread while a
    /// watchdog kills the process group at the time limit.
    fn run<T>(
        &self,
        mut cmd: Command,
        what: &str,
        sink: impl FnOnce(ChildStdout) -> Result<T>,
    ) -> Result<T> {
        let mut child = cmd
            .spawn()
            .context("cannot run git (are the git and util-linux packages installed?)")?;
        let pgid = Pid::from_raw(
            i32::try_from(child.id()).map_err(|_| anyhow!("git's pid does not fit"))?,
        );
        let stdout = child.stdout.take().context("git's stdout is missing")?;
        let mut stderr = child.stderr.take().context("git's stderr is missing")?;
        let stderr_reader = thread::spawn(move || {
            let mut buf = Vec::new();
            let _ = stderr.read_to_end(&mut buf);
            buf
        });

        let finished = Arc::new(AtomicBool::new(false));
        let timed_out = Arc::new(AtomicBool::new(false));
        let (stop, stopped) = mpsc::channel::<()>();
        let watchdog = {
            let finished = finished.clone();
            let timed_out = timed_out.clone();
            let timeout = self.timeout;
            thread::spawn(move || {
                if let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(timeout) {
                    if !finished.load(Ordering::SeqCst) {
                        timed_out.store(true, Ordering::SeqCst);
                        let _ = killpg(pgid, Signal::SIGKILL);
                    }
                }
            })
        };

        let sunk = sink(stdout);
        if sunk.is_err() {
            // The consumer gave up; do not leave git blocked on a full pipe.
            let _ = killpg(pgid, Signal::SIGKILL);
        }
        let status = child.wait();
        finished.store(true, Ordering::SeqCst);
        let _ = stop.send(());
        let _ = watchdog.join();
        let stderr = stderr_reader.join().unwrap_or_default();
        let status = status.context("cannot wait for git")?;

        if timed_out.load(Ordering::SeqCst) {
            bail!(
                "git {what} timed out after {} s and was stopped (is the remote reachable?)",
                self.timeout.as_secs()
            );
        }
        let value = sunk?;
        if !status.success() {
            bail!(
                "git {what} failed ({}): {}",
                describe(status),
                last_line(&stderr)
            );
        }
        Ok(value)
    }
}

/// For commands whose output we do not use; read so git never blocks on a full pipe.
fn drain(mut out: ChildStdout) -> Result<()> {
    std::io::copy(&mut out, &mut std::io::sink())?;
    Ok(())
}

fn read_all(mut out: ChildStdout) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    out.read_to_end(&mut buf)?;
    Ok(buf)
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit status {code}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => status.to_string(),
    }
}

/// git's last meaningful stderr line, shortened: enough to say why.
fn last_line(stderr: &[u8]) -> String {
    let text = String::from_utf8_lossy(stderr);
    let line = text
        .lines()
        .map(str::trim)
        .rfind(|l| !l.is_empty())
        .unwrap_or("no message");
    let mut line: String = line.chars().filter(|c| !c.is_control()).collect();
    hostyard_core::text::shorten(&mut line, 300);
    line
}
