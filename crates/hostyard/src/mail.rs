//! `hostyard mail`: postfix's config, rendered from the forward files.
//!
//! The operator edits one file per domain in `runtime/postfix/forwards/`
//! (format and validation: [`hostyard_core::mail`]); this renders postfix's
//! `main.cf`, `master.cf` and its two lookup tables into
//! `runtime/postfix/etc/`. postfix.service runs it before postfix starts and
//! on `systemctl reload postfix`. An invalid forward file is reported with
//! its name and line and skipped: one typo must not keep postfix from
//! starting for every other domain (at the next boot, say). Its domain stays
//! an accepted destination whose mail is deferred (451), so senders retry
//! until the file is fixed instead of getting a bounce.
//!
//! postfix offers STARTTLS with the server name's certificate: the one
//! HAProxy serves for that name (confd's crt-list: imported or ACME, already
//! checked), else HAProxy's self-signed default. A copy goes into the config
//! dir as [`TLS_PEM`] (0600, root: smtpd reads it before it drops
//! privileges), so the container sees one key, not every site's.
//! postfix-tls.path re-runs the comparison when the certificate directory
//! changes and reloads postfix only when the copy is out of date.

use std::fs;
use std::io::{self, BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use askama::Template;
use hostyard_config::NodeConfig;
use hostyard_core::mail::{ForwardMap, Rotation, Selector};
use hostyard_core::{Domain, Layout};

use crate::units::{file, UnitFile};

/// The generated files, by name in the config dir.
pub const MAIN_CF: &str = "main.cf";
pub const MASTER_CF: &str = "master.cf";
pub const VIRTUAL_DOMAINS: &str = "virtual_domains";
pub const VIRTUAL: &str = "virtual";
pub const DEFERRED_DOMAINS: &str = "deferred_domains";
/// postfix's certificate and key (HAProxy's order: certificate, chain, key).
pub const TLS_PEM: &str = "tls.pem";
pub const OPENDKIM_CONF: &str = "opendkim.conf";
pub const DKIM_KEY_TABLE: &str = "dkim_key_table";
pub const DKIM_SIGNING_TABLE: &str = "dkim_signing_table";
/// `domain selector dir` per line: the keys the container's start makes
/// when they are missing.
pub const DKIM_KEYS: &str = "dkim_keys";
/// opendkim's milter socket, inside postfix's container (a tmpfs).
pub const MILTER_SOCKET: &str = "/var/lib/postfix/opendkim/opendkim.sock";
/// postfix's queue inside its container (main.cf's queue_directory).
pub const SPOOL: &str = "/var/spool/postfix";
/// The user the sites' pipe transports run msmtp as: made by postfix's
/// image, whose group alone reaches the capped services' sockets; neither
/// root nor postfix, nor in postdrop (pipe refuses those).
pub const PIPE_USER: &str = "hostyard-send";

/// A site that sends mail: its domain, its DKIM key's selector, and the
/// next one while a key rotation is under way (its key is made, but does
/// not sign).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailSite {
    pub domain: Domain,
    pub selector: Selector,
    pub pending: Option<Selector>,
    /// The domains its mail may be sent as, its own first
    /// ([`hostyard_core::mail::sender_domains`]).
    pub senders: Vec<Domain>,
}

struct MailSiteView {
    domain: String,
    service: String,
    transport: String,
    capped: String,
}

struct DkimKeyView {
    domain: String,
    /// The From: domains signed with this key (d= the site's domain).
    senders: Vec<String>,
    selector: String,
    dir: String,
}

#[derive(Template)]
#[template(path = "postfix/senders", escape = "none")]
struct Senders {
    domain: String,
    senders: Vec<String>,
}

#[derive(Template)]
#[template(path = "postfix/from", escape = "none")]
struct FromChecks {
    domain: String,
    pattern: String,
}

#[derive(Template)]
#[template(path = "postfix/opendkim.conf", escape = "none")]
struct OpendkimConf {
    config_dir: String,
    milter_socket: &'static str,
}

#[derive(Template)]
#[template(path = "postfix/dkim_key_table", escape = "none")]
struct KeyTable<'a> {
    keys: &'a [DkimKeyView],
}

#[derive(Template)]
#[template(path = "postfix/dkim_signing_table", escape = "none")]
struct SigningTable<'a> {
    keys: &'a [DkimKeyView],
}

#[derive(Template)]
#[template(path = "postfix/dkim_keys", escape = "none")]
struct DkimKeys<'a> {
    keys: &'a [DkimKeyView],
}

#[derive(Template)]
#[template(path = "postfix/main.cf")]
struct MainCf {
    forwards_dir: String,
    config_dir: String,
    hostname: String,
    relayhost: String,
    /// Whether a certificate is there to offer STARTTLS with.
    tls: bool,
}

#[derive(Template)]
#[template(path = "postfix/master.cf")]
struct MasterCf {
    config_dir: String,
    milter_socket: &'static str,
    spool: &'static str,
    pipe_user: &'static str,
    hostname: String,
    cap: u32,
    sites: Vec<MailSiteView>,
}

#[derive(Template)]
#[template(path = "postfix/virtual_domains", escape = "none")]
struct VirtualDomains {
    forwards_dir: String,
    domains: Vec<String>,
}

#[derive(Template)]
#[template(path = "postfix/deferred_domains", escape = "none")]
struct DeferredDomains {
    forwards_dir: String,
    domains: Vec<String>,
}

#[derive(Template)]
#[template(path = "postfix/virtual", escape = "none")]
struct Virtual {
    forwards_dir: String,
    entries: Vec<(String, String)>,
}

/// Why the mail config could not be rendered.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    // The source is printed by the caller's error chain.
    #[error("cannot read {path}")]
    Read { path: PathBuf, source: io::Error },
    #[error("{path}: the file name must be the domain it forwards for: {problem}")]
    FileName { path: PathBuf, problem: String },
    #[error("{path}")]
    Forward {
        path: PathBuf,
        source: hostyard_core::mail::ForwardError,
    },
    #[error(
        "the host name {0:?} is not a valid mail host name: set mail.hostname in the node config"
    )]
    Hostname(String),
}

/// The forward files of a server, read and validated.
#[derive(Debug, Default)]
pub struct Forwards {
    /// The valid files, sorted by domain.
    pub maps: Vec<ForwardMap>,
    /// The files that were skipped, each with why.
    pub bad: Vec<BadFile>,
}

/// A forward file that could not be used.
#[derive(Debug)]
pub struct BadFile {
    /// The domain its name gives, when the name is one: its mail is
    /// deferred until the file is fixed.
    pub domain: Option<Domain>,
    pub error: MailError,
}

impl Forwards {
    /// The domains whose forward file is bad, sorted: accepted, then
    /// deferred.
    pub fn deferred(&self) -> Vec<Domain> {
        let mut domains: Vec<Domain> = self.bad.iter().filter_map(|b| b.domain.clone()).collect();
        domains.sort();
        domains.dedup();
        domains
    }
}

/// Reads and validates every forward file in `dir`. A missing directory
/// means no mail domains. Names starting with `.` or ending in `~` (editor
/// temp files) are skipped. A bad file is kept in [`Forwards::bad`]; only a
/// directory that cannot be listed is an error.
pub fn read_forwards(dir: &Path) -> Result<Forwards, MailError> {
    let read_error = |path: &Path, source| MailError::Read {
        path: path.to_path_buf(),
        source,
    };
    let entries = match fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Forwards::default()),
        Err(e) => return Err(read_error(dir, e)),
    };
    let mut forwards = Forwards::default();
    for entry in entries {
        let entry = entry.map_err(|e| read_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name.ends_with('~') {
            continue;
        }
        let domain = match Domain::parse(&name) {
            Ok(d) => d,
            Err(e) => {
                forwards.bad.push(BadFile {
                    domain: None,
                    error: MailError::FileName {
                        path,
                        problem: e.to_string(),
                    },
                });
                continue;
            }
        };
        let parsed = fs::read_to_string(&path)
            .map_err(|e| read_error(&path, e))
            .and_then(|text| {
                ForwardMap::parse(&domain, &text).map_err(|source| MailError::Forward {
                    path: path.clone(),
                    source,
                })
            });
        match parsed {
            Ok(map) => forwards.maps.push(map),
            Err(error) => forwards.bad.push(BadFile {
                domain: Some(domain),
                error,
            }),
        }
    }
    forwards.maps.sort_by(|a, b| a.domain.cmp(&b.domain));
    forwards.bad.sort_by_key(|b| b.error.to_string());
    Ok(forwards)
}

/// The sites on this server whose kind sends mail (their data's `KIND`),
/// sorted, each with its DKIM selector (`dkim/<domain>/selector`, else the
/// first). A site whose kind or selector cannot be read is reported in
/// `bad` and left out: the others keep sending.
pub fn mail_sites(layout: &Layout) -> Result<(Vec<MailSite>, Vec<String>), MailError> {
    let dir = layout.domains_dir();
    let entries = match fs::read_dir(&dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), Vec::new())),
        Err(source) => return Err(MailError::Read { path: dir, source }),
    };
    let mut sites = Vec::new();
    let mut bad = Vec::new();
    // Import staging dirs and locks start with a dot: not domains.
    let domains: Vec<Domain> = entries
        .flatten()
        .filter_map(|e| Domain::parse(&e.file_name().to_string_lossy()).ok())
        .collect();
    for domain in domains.iter().cloned() {
        match hostyard_fs::kind::site_kind(layout, &domain) {
            Ok(Some(kind)) if kind.spec().sends_mail => {}
            Ok(_) => continue,
            Err(e) => {
                bad.push(format!("{domain}: {e:#}"));
                continue;
            }
        }
        match read_rotation(layout, &domain) {
            Ok(rotation) => sites.push(MailSite {
                senders: hostyard_core::mail::sender_domains(&domain, &domains),
                domain,
                selector: rotation.signing,
                pending: rotation.pending,
            }),
            Err(e) => bad.push(format!("{domain}: {e}")),
        }
    }
    sites.sort_by(|a, b| a.domain.cmp(&b.domain));
    bad.sort();
    Ok((sites, bad))
}

/// The file naming a domain's DKIM selector in use.
pub fn selector_file(layout: &Layout, domain: &Domain) -> PathBuf {
    layout.dkim_domain_dir(domain).join("selector")
}

/// The file naming the selector a rotation under way moves to.
pub fn pending_file(layout: &Layout, domain: &Domain) -> PathBuf {
    layout.dkim_domain_dir(domain).join("next")
}

/// The DNS record file opendkim-genkey writes beside a selector's key.
pub fn record_file(layout: &Layout, domain: &Domain, selector: &Selector) -> PathBuf {
    layout
        .dkim_domain_dir(domain)
        .join(format!("{selector}.txt"))
}

/// A domain's selector in use: its `selector` file, else the first.
pub fn read_selector(layout: &Layout, domain: &Domain) -> Result<Selector, String> {
    Ok(read_selector_file(&selector_file(layout, domain))?.unwrap_or_else(Selector::first))
}

fn read_selector_file(path: &Path) -> Result<Option<Selector>, String> {
    match fs::read_to_string(path) {
        Ok(text) => Selector::parse(&text)
            .map(Some)
            .map_err(|e| format!("{}: {e}", path.display())),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("cannot read {}: {e}", path.display())),
    }
}

/// Where a domain's key rotation stands, from its files: `selector`,
/// `next` (a rotation under way) and whether the next key's record exists.
pub fn read_rotation(layout: &Layout, domain: &Domain) -> Result<Rotation, String> {
    let signing = read_selector(layout, domain)?;
    let pending = read_selector_file(&pending_file(layout, domain))?;
    let pending_key_made = pending
        .as_ref()
        .is_some_and(|next| record_file(layout, domain, next).is_file());
    Ok(Rotation {
        signing,
        pending,
        pending_key_made,
    })
}

/// The records `hostyard mail dns` prints for `domain`, as (name, TXT
/// value): SPF, each published DKIM key (the signing one, and during a
/// rotation the next one ahead of the switch), DMARC.
pub fn expected_records(
    layout: &Layout,
    hostname: &str,
    domain: &Domain,
) -> Result<Vec<(String, String)>, String> {
    let rotation = read_rotation(layout, domain)?;
    let (mut head, mut dkim, mut tail) = (None, Vec::new(), None);
    for selector in hostyard_core::mail::published_selectors(&rotation) {
        let txt = record_file(layout, domain, &selector);
        let text = fs::read_to_string(&txt).map_err(|e| {
            format!(
                "cannot read {}: {e} (postfix makes the key when it starts or reloads: systemctl reload postfix)",
                txt.display()
            )
        })?;
        let value = hostyard_core::mail::dkim_txt_value(&text)
            .map_err(|e| format!("{}: {e}", txt.display()))?;
        let mut records =
            hostyard_core::mail::dns_records(domain, hostname, &selector, &value).into_iter();
        head = records.next();
        dkim.extend(records.next());
        tail = records.next();
    }
    Ok(head.into_iter().chain(dkim).chain(tail).collect())
}

/// How long `hostyard status` waits for DNS, for all its mail lookups
/// together (they run in parallel).
pub const DNS_CHECK_BOUND: Duration = Duration::from_secs(4);

/// At most this many lookups at once.
const DNS_LOOKUPS_AT_ONCE: usize = 16;

/// The published TXT records at `name` (`dig +short`: the machine's
/// resolver, 2 s, one try), or why DNS could not be asked.
fn lookup_txt(name: &str) -> Result<Vec<String>, String> {
    let out = std::process::Command::new("dig")
        .args(["+short", "+time=2", "+tries=1", "TXT", name])
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                "dig is not installed (apt-get install bind9-dnsutils)".to_string()
            } else {
                format!("cannot run dig: {e}")
            }
        })?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() || text.starts_with(";;") {
        let why = text
            .lines()
            .next()
            .unwrap_or_default()
            .trim_start_matches(';')
            .trim();
        return Err(format!("no DNS answer ({why})"));
    }
    Ok(hostyard_core::mail::txt_records(&text))
}

/// `hostyard status`'s warnings about the mail records of this server's
/// sites: each one missing or different from what `hostyard mail dns`
/// prints, or one line when DNS cannot be asked at all. Bounded by
/// [`DNS_CHECK_BOUND`] whatever the number of sites.
pub fn dns_warnings(layout: &Layout, hostname: &str) -> Vec<String> {
    dns_warnings_with(layout, hostname, DNS_CHECK_BOUND, lookup_txt)
}

/// [`dns_warnings`] with the lookup and the bound given (tests).
fn dns_warnings_with(
    layout: &Layout,
    hostname: &str,
    bound: Duration,
    lookup: fn(&str) -> Result<Vec<String>, String>,
) -> Vec<String> {
    use hostyard_core::mail::{compare_record, RecordCheck};
    let Ok((sites, _)) = mail_sites(layout) else {
        return Vec::new();
    };
    let mut warnings = Vec::new();
    let mut checks = Vec::new();
    for site in &sites {
        // No key yet (Err): `hostyard mail dns` says so; nothing to check.
        if let Ok(records) = expected_records(layout, hostname, &site.domain) {
            checks.extend(records.into_iter().map(|r| (site.domain.clone(), r)));
        }
    }
    if checks.is_empty() {
        return warnings;
    }
    let deadline = Instant::now() + bound;
    let (send, receive) = std::sync::mpsc::channel();
    let names: Vec<String> = checks.iter().map(|(_, (name, _))| name.clone()).collect();
    let queue = std::sync::Arc::new(std::sync::Mutex::new(names.into_iter().enumerate()));
    for _ in 0..DNS_LOOKUPS_AT_ONCE.min(checks.len()) {
        let (send, queue) = (send.clone(), queue.clone());
        // Detached: a lookup still running at the deadline is left to dig's
        // own timeout, and never holds status up.
        std::thread::spawn(move || loop {
            let next = queue.lock().ok().and_then(|mut q| q.next());
            let Some((i, name)) = next else { break };
            if Instant::now() >= deadline || send.send((i, lookup(&name))).is_err() {
                break;
            }
        });
    }
    drop(send);
    let mut answers: Vec<Option<Result<Vec<String>, String>>> = vec![None; checks.len()];
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match receive.recv_timeout(left) {
            Ok((i, answer)) => answers[i] = Some(answer),
            Err(_) => break,
        }
    }
    let failures: Vec<&String> = answers
        .iter()
        .filter_map(|a| match a {
            Some(Err(e)) => Some(e),
            _ => None,
        })
        .collect();
    if answers.iter().all(|a| !matches!(a, Some(Ok(_)))) {
        let why = failures
            .first()
            .map_or_else(|| format!("no answer within {bound:?}"), |e| e.to_string());
        warnings.push(format!(
            "DNS cannot be asked here ({why}): the sites' mail records (hostyard mail dns D) are not checked"
        ));
        return warnings;
    }
    // Lookups the bound cut off: one line, however many sites there are.
    let late = answers.iter().filter(|a| a.is_none()).count();
    if late > 0 {
        warnings.push(format!(
            "{late} of {} mail records not checked: no answer within {bound:?}",
            checks.len(),
        ));
    }
    for ((domain, (name, expected)), answer) in checks.iter().zip(answers) {
        let verdict = match answer {
            Some(Ok(published)) => compare_record(expected, &published),
            Some(Err(e)) => RecordCheck::Differs(format!("not checked: {e}")),
            None => continue,
        };
        match verdict {
            RecordCheck::Matches => {}
            RecordCheck::Missing => warnings.push(format!(
                "{domain}: {name} TXT is not published (hostyard mail dns {domain})"
            )),
            RecordCheck::Differs(how) => warnings.push(format!(
                "{domain}: {name} TXT: {how} (hostyard mail dns {domain})"
            )),
        }
    }
    warnings
}

/// A TXT value as zone file text: quoted strings of at most 255 bytes
/// (DNS's limit per string), a DKIM key being longer.
pub fn zone_txt(value: &str) -> String {
    value
        .as_bytes()
        .chunks(255)
        .map(|c| format!("\"{}\"", String::from_utf8_lossy(c)))
        .collect::<Vec<_>>()
        .join(" ")
}

/// The name postfix uses for itself: `mail.hostname`, or `kernel_hostname`
/// (with `.localdomain` added to a single label).
pub fn mail_hostname(config: &NodeConfig, kernel_hostname: &str) -> Result<String, MailError> {
    if !config.mail.hostname.is_empty() {
        // Validated with the config.
        return Ok(config.mail.hostname.clone());
    }
    // Most servers have a one-label host name; postfix itself would make
    // that `<name>.localdomain`, so say it here where it can be seen.
    let name = if kernel_hostname.contains('.') {
        kernel_hostname.to_string()
    } else {
        format!("{kernel_hostname}.localdomain")
    };
    Domain::parse(&name)
        .map(|d| d.as_str().to_string())
        .map_err(|_| MailError::Hostname(kernel_hostname.to_string()))
}

/// The certificate postfix offers, and the file it was copied from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MailCert {
    pub source: PathBuf,
    pub pem: Vec<u8>,
}

/// The certificate for `hostname`: the file HAProxy serves for that name
/// (the crt-list line that names it: confd checked it before listing it),
/// else HAProxy's self-signed default; `None` while neither exists (confd
/// has not run yet: postfix then offers no STARTTLS until it has).
pub fn mail_certificate(layout: &Layout, hostname: &str) -> Result<Option<MailCert>, MailError> {
    let read = |path: PathBuf| -> Result<Option<MailCert>, MailError> {
        match fs::read(&path) {
            Ok(pem) => Ok(Some(MailCert { source: path, pem })),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(MailError::Read { path, source }),
        }
    };
    let list = layout.haproxy_crt_list();
    if let Some(text) = read(list)? {
        let text = String::from_utf8_lossy(&text.pem);
        let listed = hostyard_tls::files::parse_crt_list(layout, &text);
        let own = listed
            .iter()
            .find(|(_, names)| names.iter().any(|n| n.eq_ignore_ascii_case(hostname)));
        if let Some((domain, _)) = own {
            // Between confd's write of the list and of the file the file
            // may be missing for a moment: the default serves until the
            // next change of the directory.
            if let Some(cert) = read(layout.haproxy_cert(domain))? {
                return Ok(Some(cert));
            }
        }
    }
    read(layout.haproxy_default_cert())
}

/// Renders postfix's config dir: pure, so it is golden-tested. `cap`: the
/// messages a site's mail leaves with per hour. `tls`: a certificate is
/// copied beside it as [`TLS_PEM`].
#[allow(
    clippy::too_many_arguments,
    reason = "one pure render of postfix's whole config, each input named"
)]
pub fn render_mail(
    layout: &Layout,
    hostname: &str,
    relayhost: &str,
    maps: &[ForwardMap],
    deferred: &[Domain],
    sites: &[MailSite],
    cap: u32,
    tls: bool,
) -> askama::Result<Vec<UnitFile>> {
    let forwards_dir = path_str(&layout.postfix_forwards_dir());
    let config_dir = path_str(&layout.postfix_config_dir());
    let main = MainCf {
        forwards_dir: forwards_dir.clone(),
        config_dir,
        hostname: hostname.to_string(),
        relayhost: relayhost.to_string(),
        tls,
    };
    let mut accepted: Vec<String> = maps
        .iter()
        .map(|m| &m.domain)
        .chain(deferred)
        .map(|d| d.as_str().to_string())
        .collect();
    accepted.sort();
    accepted.dedup();
    let domains = VirtualDomains {
        forwards_dir: forwards_dir.clone(),
        domains: accepted,
    };
    let deferred = DeferredDomains {
        forwards_dir: forwards_dir.clone(),
        domains: deferred.iter().map(|d| d.as_str().to_string()).collect(),
    };
    let table = Virtual {
        forwards_dir,
        entries: maps.iter().flat_map(ForwardMap::virtual_entries).collect(),
    };
    let config_dir = path_str(&layout.postfix_config_dir());
    // A domain with forwards is someone's here too: no other site sends
    // as it (see sender_domains).
    let senders = |s: &MailSite| -> Vec<String> {
        s.senders
            .iter()
            .filter(|d| *d == &s.domain || !maps.iter().any(|m| &m.domain == *d))
            .map(|d| d.to_string())
            .collect()
    };
    let key = |s: &MailSite, selector: &Selector| DkimKeyView {
        domain: s.domain.to_string(),
        senders: senders(s),
        selector: selector.to_string(),
        dir: path_str(&layout.dkim_domain_dir(&s.domain)),
    };
    let keys: Vec<DkimKeyView> = sites.iter().map(|s| key(s, &s.selector)).collect();
    // The keys to make: those that sign, and the next ones of rotations
    // under way (made now, published, and signing only once finished).
    let made: Vec<DkimKeyView> = sites
        .iter()
        .flat_map(|s| {
            std::iter::once(&s.selector)
                .chain(&s.pending)
                .map(|k| key(s, k))
        })
        .collect();
    let master = MasterCf {
        config_dir: config_dir.clone(),
        milter_socket: MILTER_SOCKET,
        spool: SPOOL,
        pipe_user: PIPE_USER,
        hostname: hostname.to_string(),
        cap,
        sites: sites
            .iter()
            .map(|s| MailSiteView {
                domain: s.domain.to_string(),
                service: hostyard_core::mail::site_service(&s.domain),
                transport: hostyard_core::mail::site_transport(&s.domain),
                capped: hostyard_core::mail::capped_service(&s.domain),
            })
            .collect(),
    };
    let mut per_site = Vec::new();
    for site in sites {
        let domain = site.domain.to_string();
        per_site.push(file(
            &format!("senders.{domain}"),
            Senders {
                domain: domain.clone(),
                senders: senders(site),
            }
            .render()?,
        ));
        per_site.push(file(
            &format!("from.{domain}"),
            FromChecks {
                // A domain is letters, digits, `-` and `.`: only the dot
                // means something in a regular expression.
                pattern: format!(
                    "({})",
                    senders(site)
                        .iter()
                        .map(|d| d.replace('.', "\\."))
                        .collect::<Vec<_>>()
                        .join("|")
                ),
                domain,
            }
            .render()?,
        ));
    }
    let opendkim = OpendkimConf {
        config_dir,
        milter_socket: MILTER_SOCKET,
    };
    Ok(vec![
        file(MAIN_CF, main.render()?),
        file(MASTER_CF, master.render()?),
        file(OPENDKIM_CONF, opendkim.render()?),
        file(DKIM_KEY_TABLE, KeyTable { keys: &keys }.render()?),
        file(DKIM_SIGNING_TABLE, SigningTable { keys: &keys }.render()?),
        file(DKIM_KEYS, DkimKeys { keys: &made }.render()?),
        file(VIRTUAL, table.render()?),
        file(VIRTUAL_DOMAINS, domains.render()?),
        file(DEFERRED_DOMAINS, deferred.render()?),
    ]
    .into_iter()
    .chain(per_site)
    .collect())
}

/// Where postfix.service's readiness is checked: master.cf's `smtp inet`
/// service on every interface, so loopback answers.
pub const SMTP_ADDRESS: &str = "127.0.0.1:25";

/// Waits until an SMTP server at `address` greets with `220`, polling every
/// 100 ms, for at most `timeout`. postfix.service runs this as its
/// `ExecStartPost=`, so `systemctl start postfix` returns only when postfix
/// takes mail, and a reload never finds the container half started.
pub fn wait_for_smtp(address: SocketAddr, timeout: Duration) -> Result<Duration, String> {
    let start = Instant::now();
    loop {
        let last = match greeting(address, Duration::from_secs(2)) {
            Ok(line) if line.starts_with("220") => return Ok(start.elapsed()),
            Ok(line) => format!("greeted with {:?}", line.trim_end()),
            Err(e) => e.to_string(),
        };
        if start.elapsed() >= timeout {
            return Err(format!(
                "no SMTP greeting from {address} within {}s (last: {last}); see journalctl -u postfix",
                timeout.as_secs()
            ));
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The first line an SMTP server sends; says QUIT after it.
fn greeting(address: SocketAddr, timeout: Duration) -> io::Result<String> {
    let stream = TcpStream::connect_timeout(&address, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    let mut line = String::new();
    BufReader::new(&stream).read_line(&mut line)?;
    // Politeness only: postfix logs a lost connection otherwise.
    let _ = (&stream).write_all(b"QUIT\r\n");
    Ok(line)
}

/// A path for postfix's files: data_root is validated to letters, digits and
/// `/ . _ -`, so it needs no quoting there (and must not get systemd's `%%`).
fn path_str(path: &Path) -> String {
    path.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_for_smtp_needs_a_220_greeting() {
        use std::net::TcpListener;
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let address = listener.local_addr().expect("address");
        // A server that refuses (554) first, then greets properly.
        let server = std::thread::spawn(move || {
            for greeting in ["554 not now\r\n", "220 ready\r\n"] {
                let (mut conn, _) = listener.accept().expect("accept");
                conn.write_all(greeting.as_bytes()).expect("greet");
            }
        });
        wait_for_smtp(address, Duration::from_secs(10)).expect("ready");
        server.join().expect("server");
        // Nothing listens there any more: bounded failure naming the address.
        let err = wait_for_smtp(address, Duration::from_millis(300)).unwrap_err();
        assert!(err.contains(&address.to_string()), "{err}");
    }

    /// A data root with two WordPress sites that have keys (hy1 records as
    /// opendkim-genkey writes them).
    fn two_mail_sites() -> (tempfile::TempDir, Layout) {
        let dir = tempfile::tempdir().expect("tempdir");
        let layout = Layout::new(dir.path());
        for site in ["a.example", "b.example"] {
            let domain = Domain::parse(site).expect("domain");
            fs::create_dir_all(layout.domain_dir(&domain)).expect("mkdir");
            fs::write(layout.kind_file(&domain), "wordpress\n").expect("KIND");
            let keys = layout.dkim_domain_dir(&domain);
            fs::create_dir_all(&keys).expect("mkdir");
            fs::write(
                keys.join("hy1.txt"),
                "hy1._domainkey IN TXT ( \"v=DKIM1; k=rsa; \" \"p=KEY\" )\n",
            )
            .expect("record");
        }
        (dir, layout)
    }

    #[test]
    fn dns_check_says_once_when_dns_cannot_be_asked() {
        let (_dir, layout) = two_mail_sites();
        let warnings = dns_warnings_with(&layout, "mx.example.net", Duration::from_secs(2), |_| {
            Err("dig is not installed (apt-get install bind9-dnsutils)".into())
        });
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(
            warnings[0].starts_with("DNS cannot be asked here (dig is not installed"),
            "{warnings:?}"
        );
    }

    #[test]
    fn dns_check_is_bounded_and_names_each_record_that_differs() {
        let (_dir, layout) = two_mail_sites();
        // a.example publishes everything; b.example's DKIM key is not
        // there and its DMARC lookup hangs past the bound.
        let start = Instant::now();
        let warnings = dns_warnings_with(
            &layout,
            "mx.example.net",
            Duration::from_millis(800),
            |name| match name {
                "a.example." | "b.example." => Ok(vec!["v=spf1 a:mx.example.net ~all".into()]),
                "hy1._domainkey.a.example." => Ok(vec!["v=DKIM1; k=rsa; p=KEY".into()]),
                "_dmarc.a.example." => Ok(vec!["v=DMARC1; p=none".into()]),
                "_dmarc.b.example." => {
                    std::thread::sleep(Duration::from_secs(5));
                    Ok(Vec::new())
                }
                _ => Ok(Vec::new()),
            },
        );
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
        assert_eq!(
            warnings,
            vec![
                "1 of 6 mail records not checked: no answer within 800ms".to_string(),
                "b.example: hy1._domainkey.b.example. TXT is not published (hostyard mail dns b.example)".to_string(),
            ]
        );
    }

    #[test]
    fn hostname_comes_from_config_or_kernel() {
        let mut config = NodeConfig::default();
        assert_eq!(
            mail_hostname(&config, "Box.Example.org").unwrap(),
            "box.example.org"
        );
        assert!(matches!(
            mail_hostname(&config, "under_score"),
            Err(MailError::Hostname(_))
        ));
        config.mail.hostname = "mx.example.net".into();
        assert_eq!(
            mail_hostname(&config, "under_score").unwrap(),
            "mx.example.net"
        );
    }
}
