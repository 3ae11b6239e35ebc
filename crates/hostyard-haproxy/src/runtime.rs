//! The runtime API (admin socket): routing changes to a running HAProxy
//! without a reload, and what it routes now.
//!
//! Every runtime command's answer is checked: HAProxy's CLI reports most
//! failures as text with a successful write, so an unread answer is an
//! unnoticed failure.

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::map::{parse_map, Entry, HostMap, GENERATION_KEY};

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
    /// Received and not yet taken as an answer.
    buf: Vec<u8>,
    /// `prompt` was sent and its answer not read yet.
    prompt_pending: bool,
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
            prompt_pending: true,
        };
        // Not awaited here: its answer is read before the first command's,
        // so a routing change costs one round trip to HAProxy, not two.
        s.stream.write_all(b"prompt\n").map_err(io)?;
        Ok(s)
    }

    fn io(&self, source: std::io::Error) -> CliError {
        CliError::Io {
            path: self.path.clone(),
            source,
        }
    }

    /// The next answer, without its prompt. Each answer ends with the
    /// prompt, `\n> `; a payload command's answer also holds `+ `
    /// continuation prompts, which the caller removes.
    fn next_answer(&mut self) -> Result<String, CliError> {
        loop {
            if self.prompt_pending {
                // `prompt` itself answers with an empty line and the prompt.
                let taken = [&b"\n> "[..], b"> "]
                    .iter()
                    .find(|p| self.buf.starts_with(p))
                    .map(|p| p.len());
                if let Some(n) = taken {
                    self.buf.drain(..n);
                    self.prompt_pending = false;
                    continue;
                }
                if !(b"\n> ".starts_with(&self.buf) || b"> ".starts_with(&self.buf)) {
                    return Err(self.io(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!(
                            "unexpected answer to `prompt`: {:?}",
                            String::from_utf8_lossy(&self.buf)
                        ),
                    )));
                }
            } else if let Some(end) = find(&self.buf, b"\n> ") {
                let answer = String::from_utf8_lossy(&self.buf[..end + 1]).into_owned();
                self.buf.drain(..end + 3);
                return Ok(answer);
            }
            self.read_more()?;
        }
    }

    /// Appends what HAProxy sent next to the buffer; the connection closing
    /// before the awaited prompt is an error.
    fn read_more(&mut self) -> Result<(), CliError> {
        let mut chunk = [0u8; 65536];
        let n = self.stream.read(&mut chunk).map_err(|e| self.io(e))?;
        if n == 0 {
            return Err(self.io(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "connection closed before the prompt",
            )));
        }
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
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
        self.next_answer()
    }

    /// Sends `commands` in one write and returns their answers in order:
    /// one round trip for them all, where each is otherwise a wait for
    /// HAProxy's CLI task. For commands without a payload whose answers
    /// hold no line starting with `> ` (map changes, `get map`).
    pub fn pipeline(&mut self, commands: &[String]) -> Result<Vec<String>, CliError> {
        let mut text = String::new();
        for c in commands {
            debug_assert!(!c.contains('\n') && !c.contains("<<"), "{c}");
            text.push_str(c);
            text.push('\n');
        }
        self.stream
            .write_all(text.as_bytes())
            .map_err(|e| self.io(e))?;
        commands.iter().map(|_| self.next_answer()).collect()
    }

    /// Sends payload commands (each `... <<` with its lines and the empty
    /// line that ends it) in one write and returns their answers in order.
    /// Their answers are a few bytes each, so HAProxy never waits for this
    /// side to read while it writes.
    fn pipeline_payloads(&mut self, commands: &[String]) -> Result<Vec<String>, CliError> {
        let text: String = commands.concat();
        self.stream
            .write_all(text.as_bytes())
            .map_err(|e| self.io(e))?;
        commands.iter().map(|_| self.next_answer()).collect()
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

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
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

/// Payloads per pipelined write of [`MapApi::replace_all`] (128 kB).
const PAYLOAD_PIPELINE: usize = 16;

/// Commands per pipelined write of [`MapApi::apply_known`].
const PIPELINE_BATCH: usize = 256;

impl<'a> MapApi<'a> {
    pub fn new(session: &'a mut Session, map: &Path) -> MapApi<'a> {
        MapApi {
            session,
            map: map.display().to_string(),
        }
    }

    /// Applies `changes` to a runtime map known to hold `held` (what confd
    /// applied last) and then the `generation`, in one round trip: each
    /// host gets `set map` when the map has it, `add map` when not, `del
    /// map` when it goes. Any answer but silence is an error: the map is
    /// then unknown, and the caller replaces it whole ([`Self::replace_all`]).
    pub fn apply_known(
        &mut self,
        held: &HostMap,
        changes: &[(String, Option<&Entry>)],
        generation: u64,
    ) -> Result<(), CliError> {
        let map = &self.map;
        let mut commands: Vec<String> = changes
            .iter()
            .map(|(host, entry)| match entry {
                Some(e) if held.contains_key(host) => {
                    format!("set map {map} {host} {}", e.map_value())
                }
                Some(e) => format!("add map {map} {host} {}", e.map_value()),
                None => format!("del map {map} {host}"),
            })
            .collect();
        // Last: the generation counts the changes before it.
        commands.push(format!("set map {map} {GENERATION_KEY} {generation}"));
        // Lines stay far below HAProxy's CLI buffer; a few hundred
        // commands per write.
        for batch in commands.chunks(PIPELINE_BATCH) {
            let answers = self.session.pipeline(batch)?;
            for (command, answer) in batch.iter().zip(answers) {
                if !answer.trim().is_empty() {
                    return Err(CliError::Refused {
                        command: command.clone(),
                        answer: answer.trim().to_string(),
                    });
                }
            }
        }
        Ok(())
    }

    /// The generation of the routing HAProxy holds: `None` when its map
    /// has none (loaded from a file written before there was one).
    pub fn generation(&mut self) -> Result<Option<u64>, CliError> {
        let get = format!("get map {} {GENERATION_KEY}", self.map);
        let answer = self.session.command(&get)?;
        // `type=str, case=sensitive, found=yes, idx=tree, key="K", value="V", type="str"`
        // or `..., found=no`.
        if answer.contains("found=no") {
            return Ok(None);
        }
        answer
            .split(", ")
            .find_map(|field| field.strip_prefix("value=\""))
            .and_then(|v| v.strip_suffix('"'))
            .and_then(|v| v.parse().ok())
            .map(Some)
            .ok_or_else(|| CliError::Refused {
                command: get,
                answer: answer.trim().to_string(),
            })
    }

    /// Upsert: `set map` fails on a missing key ("entry not found"), and
    /// `add map` on an existing key would add a duplicate, so `set` first
    /// and `add` only when HAProxy says the key is missing. For maps whose
    /// runtime content is not tracked (the HTTPS policy map).
    pub fn upsert_value(&mut self, host: &str, value: &str) -> Result<(), CliError> {
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
    /// `generation` goes with it ([`GENERATION_KEY`]).
    pub fn replace_all(&mut self, map: &HostMap, generation: u64) -> Result<(), CliError> {
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
        let mut payload = format!("{GENERATION_KEY} {generation}\n");
        let mut batch = Vec::new();
        for (host, entry) in map {
            payload.push_str(host);
            payload.push(' ');
            payload.push_str(&entry.map_value());
            payload.push('\n');
            if payload.len() >= PAYLOAD_CHUNK {
                batch.push(self.payload_command(version, &payload));
                payload.clear();
                if batch.len() == PAYLOAD_PIPELINE {
                    self.send_payloads(&batch)?;
                    batch.clear();
                }
            }
        }
        if !payload.is_empty() {
            batch.push(self.payload_command(version, &payload));
        }
        self.send_payloads(&batch)?;
        self.session
            .expect_silent(&format!("commit map @{version} {}", self.map))
    }

    /// `add map @version` with `payload` (its lines), ended by the empty
    /// line that ends a payload.
    fn payload_command(&self, version: u64, payload: &str) -> String {
        format!("add map @{version} {} <<\n{payload}\n", self.map)
    }

    /// Sends payload commands in one write, then reads their answers: with
    /// 100,000 sites a full map is a thousand payloads, and one round trip
    /// each would double its time. Each answer must be silence.
    fn send_payloads(&mut self, commands: &[String]) -> Result<(), CliError> {
        let answers = self.session.pipeline_payloads(commands)?;
        for (command, answer) in commands.iter().zip(answers) {
            let rest = answer.replace("+ ", "");
            if !rest.trim().is_empty() {
                return Err(CliError::Refused {
                    command: short(command),
                    answer: rest.trim().to_string(),
                });
            }
        }
        Ok(())
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
        Ok(parse_map(&answer))
    }
}

impl<'a> MapApi<'a> {
    /// Every key and value, for maps other than the host map.
    pub fn show_values(&mut self) -> Result<Vec<(String, String)>, CliError> {
        let command = format!("show map {}", self.map);
        let answer = self.session.command(&command)?;
        if answer.starts_with("Unknown map") {
            return Err(CliError::Refused {
                command,
                answer: answer.trim().to_string(),
            });
        }
        // Each line is "<entry id> <key> <value>".
        Ok(answer
            .lines()
            .filter_map(|l| {
                let mut parts = l.split_whitespace();
                let _id = parts.next()?;
                Some((parts.next()?.to_string(), parts.next()?.to_string()))
            })
            .collect())
    }
}

/// The runtime API for certificates (HAProxy 2.2+): a certificate is
/// loaded or replaced in a transaction (`new ssl cert`, `set ssl cert`,
/// `commit ssl cert`) and served once its crt-list line is added, all
/// without a reload. HAProxy names a certificate by its file path, so the
/// file must be written first: a restart then loads the same.
pub struct SslApi<'a> {
    session: &'a mut Session,
}

impl<'a> SslApi<'a> {
    pub fn new(session: &'a mut Session) -> SslApi<'a> {
        SslApi { session }
    }

    /// The certificate files HAProxy holds in memory (`show ssl cert`).
    pub fn loaded(&mut self) -> Result<Vec<String>, CliError> {
        let answer = self.session.command("show ssl cert")?;
        Ok(answer
            .lines()
            .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
            .map(|l| l.trim().trim_start_matches('*').to_string())
            .collect())
    }

    /// The certificate files a crt-list serves (`show ssl crt-list`).
    pub fn listed(&mut self, crt_list: &Path) -> Result<Vec<String>, CliError> {
        let command = format!("show ssl crt-list {}", crt_list.display());
        let answer = self.session.command(&command)?;
        let mut lines = answer.lines();
        // The first line names the list, "# <path>"; anything else is an error.
        match lines.next() {
            Some(l) if l.starts_with('#') => {}
            _ => {
                return Err(CliError::Refused {
                    command,
                    answer: answer.trim().to_string(),
                })
            }
        }
        Ok(lines
            .filter_map(|l| l.split_whitespace().next())
            .map(str::to_string)
            .collect())
    }

    /// Puts `pem` (certificate, chain and key, without empty lines: an
    /// empty line ends a payload) in place of what HAProxy holds for
    /// `cert`, or loads it as a new certificate when `new` is true, and
    /// commits it. Connections already open keep the old one.
    pub fn store(&mut self, cert: &Path, pem: &str, new: bool) -> Result<(), CliError> {
        let path = cert.display().to_string();
        if new {
            let command = format!("new ssl cert {path}");
            let answer = self.session.command(&command)?;
            // "New empty certificate store '<path>'!"
            if !answer.contains("New empty certificate store") {
                return Err(CliError::Refused {
                    command,
                    answer: answer.trim().to_string(),
                });
            }
        }
        // The payload ends at the first empty line.
        let set = format!("set ssl cert {path} <<\n{}\n\n", pem.trim_end());
        let answer = self.session.command(&set)?;
        // "Transaction created for certificate <path>!" or "Transaction
        // updated for certificate <path>!"
        if !answer.contains("Transaction") || answer.contains("rror") {
            let _ = self.session.command(&format!("abort ssl cert {path}"));
            return Err(CliError::Refused {
                command: format!("set ssl cert {path}"),
                answer: answer.replace("+ ", "").trim().to_string(),
            });
        }
        let commit = format!("commit ssl cert {path}");
        let answer = self.session.command(&commit)?;
        if !answer.contains("Success!") {
            let _ = self.session.command(&format!("abort ssl cert {path}"));
            return Err(CliError::Refused {
                command: commit,
                answer: answer.trim().to_string(),
            });
        }
        Ok(())
    }

    /// Adds `line` (a crt-list line: the certificate's path and its SNI
    /// names) to the crt-list, so HAProxy serves the certificate.
    pub fn add_to_list(&mut self, crt_list: &Path, line: &str) -> Result<(), CliError> {
        let command = format!("add ssl crt-list {} <<\n{line}\n\n", crt_list.display());
        let answer = self.session.command(&command)?;
        if !answer.contains("Success!") {
            return Err(CliError::Refused {
                command: short(&command),
                answer: answer.replace("+ ", "").trim().to_string(),
            });
        }
        Ok(())
    }

    /// Stops serving `cert` and frees it: its crt-list lines go first (a
    /// certificate still in use cannot be deleted).
    pub fn remove(&mut self, crt_list: &Path, cert: &Path) -> Result<(), CliError> {
        let path = cert.display().to_string();
        let command = format!("del ssl crt-list {} {path}", crt_list.display());
        let answer = self.session.command(&command)?;
        // "Entry '<path>' deleted in crtlist '<list>'!"; a missing entry
        // ("certificate '<path>' does not exist!") is fine.
        if !answer.contains("deleted") && !answer.contains("does not exist") {
            return Err(CliError::Refused {
                command,
                answer: answer.trim().to_string(),
            });
        }
        let command = format!("del ssl cert {path}");
        let answer = self.session.command(&command)?;
        if !answer.contains("deleted") && !answer.contains("doesn't exist") {
            return Err(CliError::Refused {
                command,
                answer: answer.trim().to_string(),
            });
        }
        Ok(())
    }
}
