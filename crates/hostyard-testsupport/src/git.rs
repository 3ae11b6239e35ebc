//! A real `git daemon` serving repositories from a directory over git://.
//!
//! hostyard-gitpull clones and pulls site repositories; a local daemon on a
//! free port is the real protocol without any network beyond loopback.

use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use anyhow::Context;
use tempfile::TempDir;

use crate::poll::{try_free_port, wait_until};
use crate::process::{require_binary, Service};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// A running `git daemon --export-all --base-path=<base>` on 127.0.0.1.
pub struct GitDaemon {
    port: u16,
    base: PathBuf,
    // Dropped (killed) before the dir holding its log is removed.
    service: Service,
    _dir: TempDir,
}

impl GitDaemon {
    /// Serves every repository under `base` (read-only) on a free port.
    pub fn start(base: &Path) -> anyhow::Result<GitDaemon> {
        require_binary("git", "--version", "git")?;
        let dir = tempfile::Builder::new()
            .prefix("hostyard-gitd-")
            .tempdir()
            .context("creating git daemon temp dir")?;
        let port = try_free_port()?;
        let mut cmd = Command::new("git");
        cmd.arg("daemon")
            .arg("--export-all")
            .arg(format!("--base-path={}", base.display()))
            .arg("--reuseaddr")
            .arg("--listen=127.0.0.1")
            .arg(format!("--port={port}"))
            .arg("--informative-errors")
            .arg("--verbose")
            .arg(base);
        let mut service = Service::spawn("git daemon", cmd, &dir.path().join("git-daemon.log"))?;
        let ready = wait_until("git daemon to accept connections", READY_TIMEOUT, || {
            if let Err(e) = service.check_alive() {
                return Some(Err(e));
            }
            TcpStream::connect(("127.0.0.1", port)).ok().map(|_| Ok(()))
        })
        .and_then(|r| r);
        if let Err(e) = ready {
            return Err(service.give_up(dir, format!("did not start on port {port}: {e:#}")));
        }
        Ok(GitDaemon {
            port,
            base: base.to_owned(),
            service,
            _dir: dir,
        })
    }

    /// `git://127.0.0.1:PORT/<repo>` for a repository under the base path.
    pub fn url(&self, repo: &str) -> String {
        format!(
            "git://127.0.0.1:{}/{}",
            self.port,
            repo.trim_start_matches('/')
        )
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn base(&self) -> &Path {
        &self.base
    }

    pub fn log_path(&self) -> &Path {
        self.service.log_path()
    }
}

/// Runs `git` in `dir` as a test author (fixed name, e-mail and default
/// branch `main`, whatever the machine's git config says), panics with
/// git's stderr on failure, and returns its trimmed stdout.
pub fn git(dir: &Path, args: &[&str]) -> String {
    let out = std::process::Command::new("git")
        .args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@example.com",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .current_dir(dir)
        .output()
        .expect("git runs (apt-get install git)");
    assert!(
        out.status.success(),
        "git {args:?} in {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}
