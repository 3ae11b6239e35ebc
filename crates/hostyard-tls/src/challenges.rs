//! ACME's HTTP-01 answers in HAProxy: etcd's `{prefix}/acme/challenges/`
//! keys (token → key authorization) kept equal to `acme.map`, the file
//! first (a reload or restart loads the same), then HAProxy's memory
//! through the runtime API, without a reload. haproxy.cfg answers
//! `/.well-known/acme-challenge/<token>` from that map for any host, so
//! every server whose confd watches etcd answers a validation, whichever
//! server ordered.

use std::collections::BTreeMap;

use hostyard_core::Layout;
use hostyard_haproxy::{CliError, MapApi, Session};
use hostyard_log::log;

use crate::acme::is_token;

pub struct ChallengeMap {
    layout: Layout,
    /// What etcd holds, checked.
    wanted: BTreeMap<String, String>,
    /// What the file holds.
    written: Option<BTreeMap<String, String>>,
    /// Whether HAProxy's copy may differ from the file.
    runtime_pending: bool,
}

/// A key authorization is `<token>.<thumbprint>`, both base64url.
fn is_key_authorization(value: &str) -> bool {
    value
        .split_once('.')
        .is_some_and(|(t, p)| is_token(t) && is_token(p))
}

impl ChallengeMap {
    pub fn new(layout: Layout) -> ChallengeMap {
        ChallengeMap {
            layout,
            wanted: BTreeMap::new(),
            written: None,
            runtime_pending: true,
        }
    }

    /// Replaces everything with a full read of the prefix (token → value).
    pub fn replace(&mut self, all: impl IntoIterator<Item = (String, Vec<u8>)>) {
        self.wanted.clear();
        for (token, value) in all {
            self.set(&token, Some(&value));
        }
    }

    /// One changed key (`None`: deleted or expired).
    pub fn set(&mut self, token: &str, value: Option<&[u8]>) {
        match value {
            None => {
                self.wanted.remove(token);
            }
            Some(raw) => match std::str::from_utf8(raw) {
                Ok(v) if is_token(token) && is_key_authorization(v) => {
                    self.wanted.insert(token.to_string(), v.to_string());
                }
                _ => {
                    log!(
                        Warning,
                        "ignoring ACME challenge {token:?}: not a token and key authorization as an ACME client writes them"
                    );
                    self.wanted.remove(token);
                }
            },
        }
    }

    /// Brings the file and HAProxy to what etcd holds. A HAProxy that does
    /// not run loads the file when it starts; other runtime errors are
    /// returned and tried again at the next call.
    pub fn flush(&mut self) -> anyhow::Result<()> {
        if self.written.as_ref() != Some(&self.wanted) {
            let text: String = self
                .wanted
                .iter()
                .map(|(k, v)| format!("{k} {v}\n"))
                .collect();
            hostyard_haproxy::FILE.write(&self.layout.acme_map(), text.as_bytes())?;
            self.written = Some(self.wanted.clone());
            self.runtime_pending = true;
        }
        if !self.runtime_pending {
            return Ok(());
        }
        match self.apply_runtime() {
            Ok(()) | Err(CliError::Absent { .. }) => {
                self.runtime_pending = false;
                Ok(())
            }
            Err(e) => Err(anyhow::anyhow!(
                "ACME challenges are on disk but HAProxy did not take them: {e}"
            )),
        }
    }

    fn apply_runtime(&mut self) -> Result<(), CliError> {
        let mut session = Session::connect(&self.layout.haproxy_admin_socket())?;
        let mut map = MapApi::new(&mut session, &self.layout.acme_map());
        let now: BTreeMap<String, String> = map.show_values()?.into_iter().collect();
        for (token, value) in &self.wanted {
            if now.get(token) != Some(value) {
                map.upsert_value(token, value)?;
            }
        }
        for token in now.keys() {
            if !self.wanted.contains_key(token) {
                map.remove(token)?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_answers_reach_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        std::fs::create_dir_all(layout.runtime_haproxy()).unwrap();
        let mut m = ChallengeMap::new(layout.clone());
        m.replace([
            ("tok1".to_string(), b"tok1.thumb".to_vec()),
            ("bad token".to_string(), b"x.y".to_vec()),
            ("tok2".to_string(), b"has space.x".to_vec()),
        ]);
        m.flush().unwrap();
        let text = std::fs::read_to_string(layout.acme_map()).unwrap();
        assert_eq!(text, "tok1 tok1.thumb\n");
        m.set("tok1", None);
        m.flush().unwrap();
        assert_eq!(std::fs::read_to_string(layout.acme_map()).unwrap(), "");
    }
}
