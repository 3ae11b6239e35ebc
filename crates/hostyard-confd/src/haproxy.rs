//! Everything confd says to HAProxy: the rendered config, `haproxy -c`, the
//! runtime API (admin socket) for routing changes, and the master CLI for
//! the rare structural reload.
//!
//! Every runtime command's answer is checked: HAProxy's CLI reports most
//! failures as text with a successful write, so an unread answer is an
//! unnoticed failure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use askama::Template;
use hostyard_core::{Layout, NodeConfig};
use hostyard_fs::AtomicWrite;

use crate::routing::{Entry, HostMap};

pub const PAGE_404: &str = include_str!("../../../unit-templates/haproxy/404.html");
pub const PAGE_503: &str = include_str!("../../../unit-templates/haproxy/503.html");

#[derive(Template)]
#[template(path = "haproxy.cfg")]
struct HaproxyCfg {
    admin_socket: String,
    hosts_map: String,
    page_404: String,
    page_503: String,
    bind: String,
    frontend_rules: Vec<String>,
}

/// Renders haproxy.cfg from the node config: a pure function, so a change
/// of the file means a change of the structure.
pub fn render_cfg(config: &NodeConfig) -> anyhow::Result<String> {
    let layout = Layout::new(&config.data_root);
    let path = |p: PathBuf| p.display().to_string();
    let hp = &config.haproxy;
    let cfg = HaproxyCfg {
        admin_socket: path(layout.haproxy_admin_socket()),
        hosts_map: path(layout.hosts_map()),
        page_404: path(layout.haproxy_error_page(404)),
        page_503: path(layout.haproxy_error_page(503)),
        // HAProxy splits an IPv6 bind address from its port at the last colon.
        bind: format!("{}:{}", hp.bind_address, hp.http_port),
        frontend_rules: hp.frontend_rules.clone(),
    };
    let mut text = cfg.render().context("rendering haproxy.cfg")?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

/// Runs `haproxy -c -f FILE`; the error carries HAProxy's own explanation.
pub fn check_cfg(binary: &Path, cfg: &Path) -> anyhow::Result<()> {
    let out = std::process::Command::new(binary)
        .arg("-c")
        .arg("-f")
        .arg(cfg)
        .output()
        .with_context(|| {
            format!(
                "cannot run {} (set haproxy.check_binary; is the haproxy package installed?)",
                binary.display()
            )
        })?;
    if !out.status.success() {
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let lines: Vec<&str> = text
            .lines()
            .filter(|l| l.contains("[ALERT]") || l.contains("error"))
            .collect();
        bail!(
            "haproxy -c rejected {}: {}",
            cfg.display(),
            if lines.is_empty() {
                format!("{} {}", out.status, text.trim())
            } else {
                lines.join(" | ")
            }
        );
    }
    Ok(())
}

/// How confd writes HAProxy's files (config, map, error pages) and its
/// state file: atomically, so HAProxy (or a reader) sees the old file or the
/// new one, never half; world-readable, as HAProxy may run as another user
/// in its container (no secrets in them); not synced, so an fsync (tens of
/// ms on a busy disk) never delays routing: [`hostyard_fs::sync_file`]
/// follows once the change is live.
pub const FILE: AtomicWrite = AtomicWrite::new(0o644).unsynced();

/// Why talking to HAProxy failed: `Absent` (not running) is normal before
/// haproxy.service starts and means "files only".
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    #[error("HAProxy is not running ({path}: {source})")]
    Absent {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HAProxy socket {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("HAProxy answered {answer:?} to {command:?}")]
    Refused { command: String, answer: String },
}

/// One interactive session on a CLI socket (`prompt` mode): commands run in
/// order and each answer ends with the `> ` prompt.
pub struct Session {
    stream: UnixStream,
    path: PathBuf,
    buf: Vec<u8>,
}

impl Session {
    pub fn connect(path: &Path) -> Result<Session, CliError> {
        let stream = UnixStream::connect(path).map_err(|source| CliError::Absent {
            path: path.to_path_buf(),
            source,
        })?;
        let io = |source| CliError::Io {
            path: path.to_path_buf(),
            source,
        };
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        stream
            .set_write_timeout(Some(Duration::from_secs(10)))
            .map_err(io)?;
        let mut s = Session {
            stream,
            path: path.to_path_buf(),
            buf: Vec::new(),
        };
        s.stream.write_all(b"prompt\n").map_err(io)?;
        s.read_answer()?;
        Ok(s)
    }

    fn io(&self, source: std::io::Error) -> CliError {
        CliError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn read_answer(&mut self) -> Result<String, CliError> {
        self.buf.clear();
        let mut chunk = [0u8; 65536];
        loop {
            // The prompt follows every answer; a payload command also shows
            // "+ " continuation prompts, which are not part of the answer.
            if self.buf.ends_with(b"\n> ") || self.buf == b"> " {
                let text = String::from_utf8_lossy(&self.buf[..self.buf.len() - 2]).into_owned();
                return Ok(text);
            }
            let n = self.stream.read(&mut chunk).map_err(|e| self.io(e))?;
            if n == 0 {
                return Err(self.io(std::io::Error::new(
                    std::io::ErrorKind::UnexpectedEof,
                    "connection closed before the prompt",
                )));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// Sends one command (which may carry a `<<` payload) and returns its
    /// answer without the prompt.
    pub fn command(&mut self, command: &str) -> Result<String, CliError> {
        let mut line = command.to_string();
        if !line.ends_with('\n') {
            line.push('\n');
        }
        self.stream
            .write_all(line.as_bytes())
            .map_err(|e| self.io(e))?;
        self.read_answer()
    }

    /// A command whose only successful answer is silence.
    pub fn expect_silent(&mut self, command: &str) -> Result<(), CliError> {
        let answer = self.command(command)?;
        let rest = answer.replace("+ ", "");
        if rest.trim().is_empty() {
            Ok(())
        } else {
            Err(CliError::Refused {
                command: short(command),
                answer: rest.trim().to_string(),
            })
        }
    }
}

fn short(command: &str) -> String {
    let first = command.lines().next().unwrap_or_default();
    if first.len() > 120 {
        format!("{}…", &first[..120])
    } else {
        first.to_string()
    }
}

/// The runtime API for one map file.
pub struct MapApi<'a> {
    session: &'a mut Session,
    map: String,
}

/// Payload chunks stay well below HAProxy's CLI buffer (tune.bufsize, 16 kB
/// by default), which one payload must fit in.
const PAYLOAD_CHUNK: usize = 8 * 1024;

impl<'a> MapApi<'a> {
    pub fn new(session: &'a mut Session, map: &Path) -> MapApi<'a> {
        MapApi {
            session,
            map: map.display().to_string(),
        }
    }

    /// Upsert: `set map` fails on a missing key ("entry not found"), and
    /// `add map` on an existing key would add a duplicate, so try `set`
    /// first and `add` only when HAProxy says the key is missing.
    pub fn upsert(&mut self, host: &str, entry: &Entry) -> Result<(), CliError> {
        let value = entry.map_value();
        let set = format!("set map {} {host} {value}", self.map);
        let answer = self.session.command(&set)?;
        match answer.trim() {
            "" => Ok(()),
            a if a.starts_with("entry not found") => self
                .session
                .expect_silent(&format!("add map {} {host} {value}", self.map)),
            a => Err(CliError::Refused {
                command: set,
                answer: a.to_string(),
            }),
        }
    }

    /// Removes a host; a key that is already gone is fine.
    pub fn remove(&mut self, host: &str) -> Result<(), CliError> {
        let del = format!("del map {} {host}", self.map);
        let answer = self.session.command(&del)?;
        match answer.trim() {
            "" => Ok(()),
            a if a.starts_with("Key not found") => Ok(()),
            a => Err(CliError::Refused {
                command: del,
                answer: a.to_string(),
            }),
        }
    }

    /// Replaces the whole map atomically: a new version is filled aside
    /// (`prepare map`, `add map @ver`) and swapped in by `commit map`, so no
    /// request ever sees a half-filled map.
    pub fn replace_all(&mut self, map: &HostMap) -> Result<(), CliError> {
        let prepare = format!("prepare map {}", self.map);
        let answer = self.session.command(&prepare)?;
        let version = answer
            .trim()
            .strip_prefix("New version created:")
            .and_then(|v| v.trim().parse::<u64>().ok())
            .ok_or_else(|| CliError::Refused {
                command: prepare.clone(),
                answer: answer.trim().to_string(),
            })?;
        let mut payload = String::new();
        for (host, entry) in map {
            payload.push_str(host);
            payload.push(' ');
            payload.push_str(&entry.map_value());
            payload.push('\n');
            if payload.len() >= PAYLOAD_CHUNK {
                self.add_payload(version, &payload)?;
                payload.clear();
            }
        }
        if !payload.is_empty() {
            self.add_payload(version, &payload)?;
        }
        self.session
            .expect_silent(&format!("commit map @{version} {}", self.map))
    }

    fn add_payload(&mut self, version: u64, payload: &str) -> Result<(), CliError> {
        // A payload ends at the first empty line.
        self.session
            .expect_silent(&format!("add map @{version} {} <<\n{payload}\n", self.map))
    }

    /// What HAProxy routes now, for `hostyard status` and checks.
    pub fn show(&mut self) -> Result<HostMap, CliError> {
        let answer = self.session.command(&format!("show map {}", self.map))?;
        if answer.starts_with("Unknown map") {
            return Err(CliError::Refused {
                command: format!("show map {}", self.map),
                answer: answer.trim().to_string(),
            });
        }
        Ok(crate::routing::parse_map(&answer))
    }
}

/// The master process's reload and failure counters (`show proc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MasterCounters {
    pub reloads: u64,
    pub failed: u64,
}

fn master_counters(socket: &Path) -> Result<MasterCounters, CliError> {
    // The master CLI's prompt differs ("master> "): use one-shot mode, where
    // the master closes the connection after the answer.
    let io = |source| CliError::Io {
        path: socket.to_path_buf(),
        source,
    };
    let mut stream = UnixStream::connect(socket).map_err(|source| CliError::Absent {
        path: socket.to_path_buf(),
        source,
    })?;
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .map_err(io)?;
    stream.write_all(b"show proc\n").map_err(io)?;
    // Closing our side is what makes the master answer and hang up.
    stream.shutdown(std::net::Shutdown::Write).map_err(io)?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).map_err(io)?;
    let answer = String::from_utf8_lossy(&raw);
    // "<pid> master <reloads> [failed: <n>] <uptime> <version>"
    for line in answer.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        if words.get(1) == Some(&"master") {
            let reloads = words.get(2).and_then(|w| w.parse().ok());
            let failed = words
                .get(4)
                .and_then(|w| w.trim_end_matches(']').parse().ok());
            if let (Some(reloads), Some(failed)) = (reloads, failed) {
                return Ok(MasterCounters { reloads, failed });
            }
        }
    }
    Err(CliError::Refused {
        command: "show proc".into(),
        answer: answer.trim().to_string(),
    })
}

/// Hitless reload through the master CLI: the master re-executes, starts a
/// new worker on the same listening sockets and lets the old one finish
/// its connections. On 2.6 `reload` answers nothing, so success is read
/// from the master's counters afterwards.
pub fn reload(master_socket: &Path) -> anyhow::Result<()> {
    let before = master_counters(master_socket)?;
    {
        let mut stream = UnixStream::connect(master_socket)
            .with_context(|| format!("connecting to {}", master_socket.display()))?;
        stream.write_all(b"reload\n")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        // The master closes the connection when it re-executes.
        let mut sink = Vec::new();
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let _ = stream.read_to_end(&mut sink);
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match master_counters(master_socket) {
            Ok(now) if now.failed > before.failed => {
                bail!("HAProxy's master reports the reload failed; the old worker keeps serving")
            }
            Ok(now) if now.reloads > before.reloads => return Ok(()),
            _ if Instant::now() > deadline => {
                bail!("HAProxy did not confirm the reload within 30 s")
            }
            _ => std::thread::sleep(Duration::from_millis(20)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendered_config_names_every_runtime_path_and_passes_haproxy_check() {
        let dir = tempfile::tempdir().unwrap();
        let config = NodeConfig {
            data_root: dir.path().to_path_buf(),
            ..NodeConfig::default()
        };
        let layout = Layout::new(dir.path());
        let text = render_cfg(&config).unwrap();
        for p in [
            layout.haproxy_admin_socket(),
            layout.hosts_map(),
            layout.haproxy_error_page(404),
        ] {
            assert!(text.contains(&p.display().to_string()), "{p:?}");
        }
        assert!(text.contains("level admin expose-fd listeners"));
        assert!(text.contains("bind 0.0.0.0:80"));
        FILE.write(&layout.hosts_map(), b"").unwrap();
        FILE.write(&layout.haproxy_error_page(404), PAGE_404.as_bytes())
            .unwrap();
        FILE.write(&layout.haproxy_error_page(503), PAGE_503.as_bytes())
            .unwrap();
        FILE.write(&layout.haproxy_cfg(), text.as_bytes()).unwrap();
        // The HAProxy servers run (3.0), not whatever the host has.
        let haproxy = hostyard_testsupport::haproxy_binary().unwrap();
        check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap();
        let bad = NodeConfig {
            haproxy: hostyard_core::config::HaproxyConfig {
                frontend_rules: vec!["http-request no-such-action".into()],
                ..config.haproxy.clone()
            },
            ..config.clone()
        };
        FILE.write(&layout.haproxy_cfg(), render_cfg(&bad).unwrap().as_bytes())
            .unwrap();
        let err = check_cfg(&haproxy, &layout.haproxy_cfg()).unwrap_err();
        assert!(err.to_string().contains("no-such-action"), "{err}");
    }
}
