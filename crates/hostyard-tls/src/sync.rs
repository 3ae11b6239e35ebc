//! The certificate loop confd runs beside its routing: it looks at every
//! site's certificate file (`domains/<domain>/tls/<domain>.pem`, what an
//! import brings or an operator puts there), checks a changed one, and
//! puts a good one into HAProxy without a reload: the PEM and the crt-list
//! on disk first (a restart or reload loads the same), then the runtime
//! API (`new`/`set`/`commit ssl cert`, `add ssl crt-list`). A bad file is
//! refused with one line and changes nothing; a removed one stops being
//! served. It runs on a thread of its own, so a slow file or HAProxy
//! answer never delays a routing change.
//!
//! Each pass is a [`scan`] that only reads, a [`plan`] that decides (pure,
//! unit tested there), and the steps carried out here on the files and
//! HAProxy's runtime API.

pub mod plan;
pub mod scan;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use hostyard_config::TlsConfig;
use hostyard_core::{Domain, Layout};
use hostyard_haproxy::{CliError, MapApi, Session, SslApi};
use hostyard_log::log;

use crate::acme::AcmeStatus;
use crate::check::not_after;
use crate::files::{crt_list_line, parse_crt_list, render_crt_list, KEY_FILE};
use crate::trust::Trust;
use crate::wake::Wake;
use plan::{Action, Held, Keeps, Memory, Observed, Step};

pub struct CertSync {
    layout: Layout,
    tls: TlsConfig,
    /// What the thread remembers between passes.
    memory: Memory,
    /// ACME's record of each site, written with the state.
    acme: Option<AcmeStatus>,
    /// Whether this server is part of a fleet (confd changes it on
    /// SIGHUP): then the other servers' sites are served too.
    in_fleet: Arc<AtomicBool>,
    /// The roots other servers' certificates are verified against, loaded
    /// when the first one is judged.
    trust: Option<Trust>,
    /// Makes the next pass come now (ACME wrote a file) rather than after
    /// `tls.scan_secs`.
    wake: Arc<Wake>,
}

impl CertSync {
    /// Starts from what the crt-list file says is served.
    pub fn new(layout: Layout, tls: TlsConfig) -> CertSync {
        let listed = std::fs::read_to_string(layout.haproxy_crt_list())
            .map(|t| parse_crt_list(&layout, &t))
            .unwrap_or_default();
        let expiry = listed
            .keys()
            .filter_map(|d| {
                let pem = std::fs::read(layout.haproxy_cert(d)).ok()?;
                Some((d.clone(), not_after(&pem)?))
            })
            .collect();
        CertSync {
            memory: Memory::new(listed, expiry),
            layout,
            tls,
            acme: None,
            in_fleet: Arc::new(AtomicBool::new(false)),
            trust: None,
            wake: Arc::default(),
        }
    }

    /// Passes come at once when `wake` is woken, besides every
    /// `tls.scan_secs`.
    pub fn with_wake(mut self, wake: Arc<Wake>) -> CertSync {
        self.wake = wake;
        self
    }

    /// Serves, while `in_fleet` is set, the certificates other servers
    /// published for their sites ([`crate::fleet::Receiver`] writes them).
    pub fn with_fleet(mut self, in_fleet: Arc<AtomicBool>) -> CertSync {
        self.in_fleet = in_fleet;
        self
    }

    /// Reports ACME's record of each site in the state file too.
    pub fn with_acme(mut self, status: AcmeStatus) -> CertSync {
        self.acme = Some(status);
        self
    }

    /// The sites served with their own certificate.
    pub fn served(&self) -> &BTreeMap<Domain, Vec<String>> {
        &self.memory.listed
    }

    /// The last refusal of each site whose file was refused.
    pub fn refused(&self) -> &BTreeMap<Domain, String> {
        &self.memory.refused
    }

    /// Runs passes every `tls.scan_secs` and whenever woken, for ever
    /// (confd's thread). A wake during a pass brings the next one at once.
    pub fn run(mut self) {
        let every = Duration::from_secs(self.tls.scan_secs);
        loop {
            if let Err(e) = self.pass() {
                log!(Err, "certificates: {e:#}");
            }
            self.wake.wait_blocking(every);
        }
    }

    /// One look at every site's certificate file; changes go to the files,
    /// then to HAProxy.
    pub fn pass(&mut self) -> anyhow::Result<()> {
        let observed = self.scan()?;
        let actions = plan::plan(&mut self.memory, &observed, &self.tls);
        for action in &actions {
            if let Err(e) = self.perform(action) {
                self.memory.failed(action);
                return Err(e);
            }
            self.memory.done(action);
        }
        if self.memory.runtime_due() {
            match self.apply_runtime() {
                Ok(()) => {}
                // Not running: it loads the files when it starts.
                Err(CliError::Absent { .. }) => self.memory.haproxy_absent(),
                Err(e) => log!(
                    Err,
                    "certificates are on disk but HAProxy did not take them (tried again in {} s): {e}",
                    self.tls.scan_secs
                ),
            }
        }
        Ok(())
    }

    /// Reads what the plan needs: the files serving each site, and those
    /// of a new version read and checked.
    fn scan(&mut self) -> anyhow::Result<Observed> {
        let sources = scan::sources(&self.layout, self.in_fleet.load(Ordering::Relaxed))?;
        let aliases = scan::declared_aliases(&self.layout);
        let now = SystemTime::now();
        let mut judged = BTreeMap::new();
        for domain in self.memory.to_judge(&sources, &aliases) {
            let verdict = scan::judge(
                &self.layout,
                &domain,
                &sources[&domain],
                &mut self.trust,
                &self.tls.acme.ca_file,
                now,
            );
            judged.insert(domain, verdict);
        }
        Ok(Observed {
            sources,
            aliases,
            judged,
            policy_file: std::fs::read_to_string(self.layout.https_map()).ok(),
            acme: match &self.acme {
                Some(status) => crate::lock(status).clone(),
                None => BTreeMap::new(),
            },
        })
    }

    /// Carries out one step on the files, with its log line.
    fn perform(&self, action: &Action) -> anyhow::Result<()> {
        match action {
            Action::Refuse {
                domain,
                source,
                why,
                keeps,
            } => {
                let keeps = match keeps {
                    Keeps::Current => "keeps its current certificate",
                    Keeps::Default => "keeps the default certificate",
                };
                let src = scan::source_path(&self.layout, domain, *source);
                log!(
                    Warning,
                    "{}: refused: {why}; {domain} {keeps}",
                    src.display()
                );
            }
            Action::Install {
                domain,
                source,
                pem,
                names,
                not_after,
                before,
            } => {
                KEY_FILE.write(&self.layout.haproxy_cert(domain), pem.as_bytes())?;
                log!(
                    Notice,
                    "{domain}: certificate {} from {} for {} (valid until Unix time {not_after})",
                    if before.is_some() {
                        "replaced"
                    } else {
                        "installed"
                    },
                    scan::source_path(&self.layout, domain, *source).display(),
                    names.join(", "),
                );
            }
            Action::WriteCrtList => KEY_FILE.write(
                &self.layout.haproxy_crt_list(),
                render_crt_list(&self.layout, &self.memory.listed).as_bytes(),
            )?,
            Action::DeletePem { domain } => {
                let cert = self.layout.haproxy_cert(domain);
                if let Err(e) = std::fs::remove_file(&cert) {
                    if e.kind() != std::io::ErrorKind::NotFound {
                        log!(Warning, "cannot remove {}: {e}", cert.display());
                    }
                }
                log!(
                    Notice,
                    "{domain}: its certificate file is gone; HTTPS answers with the default certificate"
                );
            }
            Action::WritePolicy { text } => {
                hostyard_haproxy::FILE.write(&self.layout.https_map(), text.as_bytes())?
            }
            Action::WriteState(state) => {
                let text = serde_json::to_vec_pretty(state)?;
                hostyard_haproxy::FILE.write(&self.layout.tls_state(), &text)?;
            }
        }
        Ok(())
    }

    /// Brings HAProxy's memory to the files: each removed certificate
    /// unlisted and freed, each pending one stored (new or replaced) and
    /// listed, and the policy map equal to the file. A step that fails
    /// stops here; what is left is tried at the next pass.
    fn apply_runtime(&mut self) -> Result<(), CliError> {
        let mut session = Session::connect(&self.layout.haproxy_admin_socket())?;
        let crt_list = self.layout.haproxy_crt_list();
        let mut ssl = SslApi::new(&mut session);
        let held = Held {
            loaded: ssl.loaded()?.into_iter().collect(),
            in_list: ssl.listed(&crt_list)?.into_iter().collect(),
        };
        let layout = &self.layout;
        let path = |d: &Domain| layout.haproxy_cert(d).display().to_string();
        let steps = plan::runtime(&self.memory, &held, path);
        self.memory.carry_out(steps, |step| match step {
            Step::Remove(domain) => ssl.remove(&crt_list, &layout.haproxy_cert(domain)),
            Step::Serve {
                domain,
                unlist_first,
                new,
                list_with,
            } => {
                let cert = layout.haproxy_cert(domain);
                let pem = std::fs::read_to_string(&cert).map_err(|source| CliError::Io {
                    path: cert.clone(),
                    source,
                })?;
                if *unlist_first {
                    ssl.remove(&crt_list, &cert)?;
                }
                ssl.store(&cert, &pem, *new)?;
                match list_with {
                    Some(names) => {
                        ssl.add_to_list(&crt_list, &crt_list_line(layout, domain, names))
                    }
                    None => Ok(()),
                }
            }
            Step::SetPolicy { .. } | Step::RemovePolicy { .. } => Ok(()),
        })?;
        let policy = plan::policy_map(&self.memory.listed, &self.tls);
        let mut map = MapApi::new(&mut session, &self.layout.https_map());
        let now: BTreeMap<String, String> = map.show_values()?.into_iter().collect();
        for step in plan::policy_steps(&now, &policy) {
            match &step {
                Step::SetPolicy { host, value } => map.upsert_value(host, value)?,
                Step::RemovePolicy { host } => map.remove(host)?,
                Step::Remove(_) | Step::Serve { .. } => {}
            }
        }
        self.memory.policy_pending = false;
        Ok(())
    }
}
