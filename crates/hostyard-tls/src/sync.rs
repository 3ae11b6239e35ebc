//! The certificate loop confd runs beside its routing: it looks at every
//! site's certificate file (`domains/<domain>/tls/<domain>.pem`, what an
//! import brings or an operator puts there), checks a changed one, and
//! puts a good one into HAProxy without a reload: the PEM and the crt-list
//! on disk first (a restart or reload loads the same), then the runtime
//! API (`new`/`set`/`commit ssl cert`, `add ssl crt-list`). A bad file is
//! refused with one line and changes nothing; a removed one stops being
//! served. It runs on a thread of its own, so a slow file or HAProxy
//! answer never delays a routing change.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use anyhow::Context;
use hostyard_core::config::TlsConfig;
use hostyard_core::{log, Domain, Layout};
use hostyard_haproxy::{CliError, Entry, MapApi, Session, SslApi};

use crate::acme::AcmeStatus;
use crate::check::{check_bundle, not_after, MAX_BUNDLE_LEN};
use crate::files::{crt_list_line, parse_crt_list, render_crt_list, KEY_FILE};
use crate::state::{AcmeSite, SiteTls, TlsState};
use crate::trust::Trust;

/// What identifies a version of a source file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Fingerprint {
    len: u64,
    mtime_ns: i128,
    ino: u64,
    /// From `runtime/acme/certs/<domain>.pem` (ACME, or in a fleet another
    /// server's), not imported.
    acme: bool,
    /// A site hosted elsewhere in the fleet, served with the certificate
    /// its server published.
    fleet: bool,
}

pub struct CertSync {
    layout: Layout,
    tls: TlsConfig,
    /// What the crt-list file holds: the sites served with their own
    /// certificate, and their SNI names.
    listed: BTreeMap<Domain, Vec<String>>,
    /// Source files already judged, by version.
    seen: HashMap<Domain, Fingerprint>,
    /// The last refusal per site, for `hostyard status`.
    refused: BTreeMap<Domain, String>,
    /// Sites whose runtime change failed: tried again at the next pass.
    pending: BTreeSet<Domain>,
    /// Sites removed from the files whose runtime removal failed.
    pending_removal: BTreeSet<Domain>,
    /// The policy map file changed and HAProxy's copy has not yet.
    policy_pending: bool,
    /// End of validity of each served certificate, Unix time.
    expiry: BTreeMap<Domain, i64>,
    /// What the state file holds.
    written: Option<TlsState>,
    /// ACME's record of each site, written with the state.
    acme: Option<AcmeStatus>,
    /// Sites served with a certificate from ACME.
    from_acme: BTreeSet<Domain>,
    /// Whether this server is part of a fleet (confd changes it on
    /// SIGHUP): then the other servers' sites are served too.
    in_fleet: Arc<AtomicBool>,
    /// Sites hosted elsewhere, served with their server's certificate.
    from_fleet: BTreeSet<Domain>,
    /// The roots their certificates are verified against, loaded when
    /// the first one is judged.
    trust: Option<Trust>,
    /// The declared aliases of each site (`hosts.map`'s redirects to it,
    /// `www.` aside), as last read: those its certificate covers are
    /// served with it.
    aliases: BTreeMap<Domain, Vec<String>>,
    /// Listed sites whose names changed: HAProxy's crt-list line is
    /// replaced, not only the certificate.
    relist: BTreeSet<Domain>,
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
            expiry,
            written: None,
            layout,
            tls,
            listed,
            seen: HashMap::new(),
            refused: BTreeMap::new(),
            // After a start, HAProxy may hold older versions of the files
            // (written while it was not answering): check them once.
            pending: BTreeSet::new(),
            pending_removal: BTreeSet::new(),
            policy_pending: true,
            acme: None,
            from_acme: BTreeSet::new(),
            in_fleet: Arc::new(AtomicBool::new(false)),
            from_fleet: BTreeSet::new(),
            trust: None,
            aliases: BTreeMap::new(),
            relist: BTreeSet::new(),
        }
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
        &self.listed
    }

    /// The last refusal of each site whose file was refused.
    pub fn refused(&self) -> &BTreeMap<Domain, String> {
        &self.refused
    }

    /// Runs passes every `tls.scan_secs`, for ever (confd's thread).
    pub fn run(mut self) {
        let every = Duration::from_secs(self.tls.scan_secs);
        loop {
            if let Err(e) = self.pass() {
                log!(Err, "certificates: {e:#}");
            }
            std::thread::sleep(every);
        }
    }

    /// One look at every site's certificate file; changes go to the files,
    /// then to HAProxy.
    pub fn pass(&mut self) -> anyhow::Result<()> {
        let sources = self.sources()?;
        // A site whose declared aliases changed is judged again: the
        // names its certificate is served for may have.
        let aliases = declared_aliases(&self.layout);
        for domain in sources.keys() {
            if aliases.get(domain) != self.aliases.get(domain) {
                self.seen.remove(domain);
            }
        }
        self.aliases = aliases;
        let mut changed: Vec<Domain> = Vec::new();
        let mut removed: Vec<Domain> = Vec::new();
        for (domain, fp) in &sources {
            if self.seen.get(domain) == Some(fp) {
                continue;
            }
            self.seen.insert(domain.clone(), *fp);
            if self.judge(domain, fp.acme, fp.fleet)? {
                changed.push(domain.clone());
            }
        }
        self.seen.retain(|d, _| sources.contains_key(d));
        self.refused.retain(|d, _| sources.contains_key(d));
        self.from_acme.retain(|d| sources.contains_key(d));
        self.from_fleet = sources
            .iter()
            .filter(|(_, fp)| fp.fleet)
            .map(|(d, _)| d.clone())
            .collect();
        for domain in self.listed.keys() {
            // Another server's certificate that fails its checks is not
            // served at all (no older copy either: it was not verified).
            let refused_copy =
                self.from_fleet.contains(domain) && self.refused.contains_key(domain);
            if !sources.contains_key(domain) || refused_copy {
                removed.push(domain.clone());
            }
        }
        for domain in &removed {
            self.listed.remove(domain);
            self.expiry.remove(domain);
        }
        if !changed.is_empty() || !removed.is_empty() {
            KEY_FILE.write(
                &self.layout.haproxy_crt_list(),
                render_crt_list(&self.layout, &self.listed).as_bytes(),
            )?;
            for domain in &removed {
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
        }
        self.pending.extend(changed);
        self.pending.retain(|d| self.listed.contains_key(d));
        self.relist.retain(|d| self.listed.contains_key(d));
        self.pending_removal.extend(removed);
        let policy = self.policy_map();
        let map_text: String = policy.iter().map(|(h, v)| format!("{h} {v}\n")).collect();
        if std::fs::read_to_string(self.layout.https_map())
            .ok()
            .as_deref()
            != Some(&map_text)
        {
            hostyard_haproxy::FILE.write(&self.layout.https_map(), map_text.as_bytes())?;
            self.policy_pending = true;
        }
        self.write_state(&sources)?;
        if !self.pending.is_empty() || !self.pending_removal.is_empty() || self.policy_pending {
            match self.apply_runtime(&policy) {
                Ok(()) => {}
                // Not running: it loads the files when it starts.
                Err(CliError::Absent { .. }) => {
                    self.pending.clear();
                    self.relist.clear();
                    self.pending_removal.clear();
                    self.policy_pending = false;
                }
                Err(e) => log!(
                    Err,
                    "certificates are on disk but HAProxy did not take them (tried again in {} s): {e}",
                    self.tls.scan_secs
                ),
            }
        }
        Ok(())
    }

    /// Every site with a certificate file, and that file's version.
    fn sources(&self) -> anyhow::Result<BTreeMap<Domain, Fingerprint>> {
        let mut out = BTreeMap::new();
        let dir = self.layout.domains_dir();
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => Some(e),
            // No site here yet; in a fleet, other servers' sites may be.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
        };
        for entry in entries.into_iter().flatten() {
            let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
            let Some(domain) = entry
                .file_name()
                .to_str()
                .and_then(|n| Domain::parse(n).ok())
            else {
                continue;
            };
            // An imported certificate wins over one from ACME.
            let file = |path: &Path| std::fs::symlink_metadata(path).ok().filter(|m| m.is_file());
            let (meta, acme) = match file(&self.layout.tls_pem(&domain)) {
                Some(m) => (m, false),
                None => match file(&self.layout.acme_cert(&domain)) {
                    Some(m) => (m, true),
                    None => continue,
                },
            };
            out.insert(domain, Fingerprint::of(&meta, acme, false));
        }
        if self.in_fleet.load(Ordering::Relaxed) {
            self.fleet_sources(&mut out);
        }
        Ok(out)
    }

    /// The certificates of sites hosted elsewhere in the fleet.
    fn fleet_sources(&self, out: &mut BTreeMap<Domain, Fingerprint>) {
        for (domain, path) in self.layout.acme_cert_files() {
            if out.contains_key(&domain) || self.layout.domain_dir(&domain).exists() {
                continue;
            }
            if let Ok(meta) = std::fs::symlink_metadata(path) {
                if meta.is_file() {
                    out.insert(domain, Fingerprint::of(&meta, true, true));
                }
            }
        }
    }

    /// Checks a changed source file; a good one is written where HAProxy
    /// reads it. Returns whether HAProxy must be told.
    fn judge(&mut self, domain: &Domain, acme: bool, fleet: bool) -> anyhow::Result<bool> {
        let src = if acme {
            self.layout.acme_cert(domain)
        } else {
            self.layout.tls_pem(domain)
        };
        let bytes = match read_limited(&src) {
            Ok(b) => b,
            Err(e) => {
                self.refuse(domain, &src, &format!("cannot be read: {e}"));
                return Ok(false);
            }
        };
        let now = SystemTime::now();
        let checked = if fleet {
            let ca_file = &self.tls.acme.ca_file;
            let trust = self.trust.get_or_insert_with(|| Trust::load(ca_file));
            trust.check(&bytes, domain, now)
        } else {
            check_bundle(&bytes, domain, now)
        };
        let checked = match checked {
            Ok(c) => c,
            Err(why) => {
                self.refuse(domain, &src, &why.to_string());
                return Ok(false);
            }
        };
        self.refused.remove(domain);
        if acme {
            self.from_acme.insert(domain.clone());
        } else {
            self.from_acme.remove(domain);
        }
        let mut names = checked.names.clone();
        for alias in self.aliases.get(domain).into_iter().flatten() {
            if checked.covers(alias) && !names.contains(alias) {
                names.push(alias.clone());
            }
        }
        let dest = self.layout.haproxy_cert(domain);
        let same_file = std::fs::read(&dest).ok().as_deref() == Some(checked.pem.as_bytes());
        if same_file && self.listed.get(domain) == Some(&names) {
            return Ok(false);
        }
        KEY_FILE.write(&dest, checked.pem.as_bytes())?;
        let renewed = self.listed.contains_key(domain);
        if self.listed.get(domain).is_some_and(|n| *n != names) {
            self.relist.insert(domain.clone());
        }
        self.listed.insert(domain.clone(), names.clone());
        self.expiry.insert(domain.clone(), checked.not_after);
        log!(
            Notice,
            "{domain}: certificate {} from {} for {} (valid until Unix time {})",
            if renewed { "replaced" } else { "installed" },
            src.display(),
            names.join(", "),
            checked.not_after
        );
        Ok(true)
    }

    /// Writes the state file for `hostyard status` when it changed.
    fn write_state(&mut self, sources: &BTreeMap<Domain, Fingerprint>) -> anyhow::Result<()> {
        let mut state = TlsState::default();
        let acme: BTreeMap<Domain, AcmeSite> = match &self.acme {
            Some(status) => crate::lock(status).clone(),
            None => BTreeMap::new(),
        };
        for domain in sources.keys().chain(self.listed.keys()).chain(acme.keys()) {
            let served = self.listed.contains_key(domain);
            let source = match (served, self.from_acme.contains(domain)) {
                (true, _) if self.from_fleet.contains(domain) => "fleet",
                (true, true) => "acme",
                (true, false) => "imported",
                (false, _) => "default",
            };
            state.sites.insert(
                domain.to_string(),
                SiteTls {
                    source: source.to_string(),
                    not_after: self.expiry.get(domain).copied().filter(|_| served),
                    refused: self.refused.get(domain).cloned(),
                    acme: acme
                        .get(domain)
                        .filter(|a| **a != AcmeSite::default())
                        .cloned(),
                },
            );
        }
        if self.written.as_ref() != Some(&state) {
            let text = serde_json::to_vec_pretty(&state)?;
            hostyard_haproxy::FILE.write(&self.layout.tls_state(), &text)?;
            self.written = Some(state);
        }
        Ok(())
    }

    fn refuse(&mut self, domain: &Domain, src: &Path, why: &str) {
        // Another server's refused certificate is unlisted (see `pass`).
        let keeps = if self.listed.contains_key(domain) && !self.from_fleet.contains(domain) {
            "keeps its current certificate"
        } else {
            "keeps the default certificate"
        };
        log!(
            Warning,
            "{}: refused: {why}; {domain} {keeps}",
            src.display()
        );
        self.refused.insert(domain.clone(), why.to_string());
    }

    /// Host → HTTPS policy for every name served with a site certificate.
    fn policy_map(&self) -> BTreeMap<String, String> {
        let mut out = BTreeMap::new();
        for (domain, names) in &self.listed {
            let mut value = if self.tls.http_sites.contains(domain) {
                "stay".to_string()
            } else {
                "redirect".to_string()
            };
            if self.tls.hsts_sites.contains(domain) {
                value.push_str(",hsts");
            }
            for name in names {
                out.insert(name.clone(), value.clone());
            }
        }
        out
    }

    /// Brings HAProxy's memory to the files: each pending certificate
    /// stored (new or replaced) and listed, each removed one unlisted and
    /// freed, and the policy map equal to the file.
    fn apply_runtime(&mut self, policy: &BTreeMap<String, String>) -> Result<(), CliError> {
        let mut session = Session::connect(&self.layout.haproxy_admin_socket())?;
        let crt_list = self.layout.haproxy_crt_list();
        let mut ssl = SslApi::new(&mut session);
        let loaded: BTreeSet<String> = ssl.loaded()?.into_iter().collect();
        let in_list: BTreeSet<String> = ssl.listed(&crt_list)?.into_iter().collect();
        for domain in std::mem::take(&mut self.pending_removal) {
            let cert = self.layout.haproxy_cert(&domain);
            if let Err(e) = ssl.remove(&crt_list, &cert) {
                self.pending_removal.insert(domain);
                return Err(e);
            }
        }
        let pending: Vec<Domain> = self.pending.iter().cloned().collect();
        for domain in pending {
            let Some(names) = self.listed.get(&domain) else {
                continue;
            };
            let cert = self.layout.haproxy_cert(&domain);
            let path = cert.display().to_string();
            let pem = std::fs::read_to_string(&cert).map_err(|source| CliError::Io {
                path: cert.clone(),
                source,
            })?;
            let mut listed = in_list.contains(&path);
            let mut new = !loaded.contains(&path);
            if listed && self.relist.contains(&domain) {
                // Its names changed: HAProxy takes a crt-list line whole,
                // so the certificate leaves the list (and memory) and comes
                // back with the new line.
                ssl.remove(&crt_list, &cert)?;
                (listed, new) = (false, true);
            }
            ssl.store(&cert, &pem, new)?;
            if !listed {
                ssl.add_to_list(&crt_list, &crt_list_line(&self.layout, &domain, names))?;
            }
            self.relist.remove(&domain);
            self.pending.remove(&domain);
        }
        let mut map = MapApi::new(&mut session, &self.layout.https_map());
        let now: BTreeMap<String, String> = map.show_values()?.into_iter().collect();
        for (host, value) in policy {
            if now.get(host) != Some(value) {
                map.upsert_value(host, value)?;
            }
        }
        for host in now.keys() {
            if !policy.contains_key(host) {
                map.remove(host)?;
            }
        }
        self.policy_pending = false;
        Ok(())
    }
}

impl Fingerprint {
    fn of(meta: &std::fs::Metadata, acme: bool, fleet: bool) -> Fingerprint {
        Fingerprint {
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
            acme,
            fleet,
        }
    }
}

/// The declared aliases of each site, from the host map confd keeps
/// (`<alias> redirect/<domain>`), `www.<domain>` aside (served when the
/// certificate covers it, declared or not). Empty while confd has not
/// written it.
fn declared_aliases(layout: &Layout) -> BTreeMap<Domain, Vec<String>> {
    let text = std::fs::read_to_string(layout.hosts_map()).unwrap_or_default();
    let mut out: BTreeMap<Domain, Vec<String>> = BTreeMap::new();
    for (host, entry) in hostyard_haproxy::parse_map(&text) {
        if let Entry::Redirect(to) = entry {
            if to.www().is_some_and(|w| w.as_str() == host) {
                continue;
            }
            out.entry(to).or_default().push(host);
        }
    }
    out
}

/// The file, or its first [`MAX_BUNDLE_LEN`] + 1 bytes (too long for a
/// bundle, which the check then says).
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(MAX_BUNDLE_LEN as u64 + 1).read_to_end(&mut out)?;
    Ok(out)
}
