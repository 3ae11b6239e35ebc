//! The master CLI (`master.sock`): HAProxy's hitless reload, for the rare
//! change of the config's structure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::CliError;

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
