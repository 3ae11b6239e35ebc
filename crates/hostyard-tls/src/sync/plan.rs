//! The certificate thread's decisions, apart from the files and HAProxy:
//! each function takes what the thread remembers ([`Memory`]) and what a
//! scan saw ([`Observed`]) or what HAProxy holds ([`Held`]), reads no
//! clock, touches no file or socket, and returns the steps to take. The
//! thread ([`super::CertSync`]) scans, performs the steps in order and
//! records each one done ([`Memory::done`]); a step that fails stops the
//! pass, and what it left undone is planned again at the next one.
//!
//! Which file serves a site is [`crate::decide::source`]'s rule; the scan asks it.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use hostyard_config::TlsConfig;
use hostyard_core::Domain;

use crate::check::Checked;
use crate::decide::Source;
use crate::state::{AcmeSite, SiteTls, TlsState};

/// What identifies a version of a certificate file without reading it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Version {
    pub len: u64,
    pub mtime_ns: i128,
    pub ino: u64,
}

/// A site's file that serves it here, by [`crate::decide::source`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub source: Source,
    pub version: Version,
}

/// What the check of a new version of a site's file said.
#[derive(Debug, Clone)]
pub enum Judged {
    /// Good to serve; `on_disk`: HAProxy's copy already holds these bytes.
    Good { checked: Checked, on_disk: bool },
    /// Refused (unreadable, or the check's reason).
    Bad(String),
}

/// What one scan saw.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// Every site with a file to serve it here.
    pub sources: BTreeMap<Domain, Found>,
    /// The declared aliases of each site (`www.` aside).
    pub aliases: BTreeMap<Domain, Vec<String>>,
    /// The sites whose file the scan read and checked: those
    /// [`Memory::to_judge`] named.
    pub judged: BTreeMap<Domain, Judged>,
    /// The HTTPS policy map file as it is (`None`: unreadable or absent).
    pub policy_file: Option<String>,
    /// ACME's record of each site, for the state file.
    pub acme: BTreeMap<Domain, AcmeSite>,
}

/// What the thread remembers between passes.
#[derive(Debug, Clone, Default)]
pub struct Memory {
    /// What the crt-list file holds: the sites served with their own
    /// certificate, and their SNI names.
    pub listed: BTreeMap<Domain, Vec<String>>,
    /// Where each listed site's served certificate came from.
    pub served_from: BTreeMap<Domain, Source>,
    /// End of validity of each served certificate, Unix time.
    pub expiry: BTreeMap<Domain, i64>,
    /// Source files already judged, by version.
    pub seen: HashMap<Domain, Found>,
    /// The last refusal per site, for `hostyard status`.
    pub refused: BTreeMap<Domain, String>,
    /// The declared aliases as last read.
    pub aliases: BTreeMap<Domain, Vec<String>>,
    /// The crt-list file is behind `listed`.
    pub crt_list_stale: bool,
    /// Listed sites whose certificate HAProxy's memory does not hold yet.
    pub pending: BTreeSet<Domain>,
    /// Listed sites whose names changed: HAProxy's crt-list line is
    /// replaced, not only the certificate.
    pub relist: BTreeSet<Domain>,
    /// Sites no longer listed that HAProxy's memory may still serve.
    pub pending_removal: BTreeSet<Domain>,
    /// HAProxy's policy map may differ from the file.
    pub policy_pending: bool,
    /// What the state file holds.
    pub written: Option<TlsState>,
}

/// Why a refused site keeps what it keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keeps {
    Current,
    Default,
}

/// One step of a pass, on the files (HAProxy's memory follows in
/// [`runtime`]).
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// One log line: the file stays unserved, or the site keeps what it
    /// had.
    Refuse {
        domain: Domain,
        source: Source,
        why: String,
        keeps: Keeps,
    },
    /// Writes the checked PEM where HAProxy reads it; then the site is
    /// listed with `names` (`before`: its names until now, if listed).
    Install {
        domain: Domain,
        source: Source,
        pem: String,
        names: Vec<String>,
        not_after: i64,
        before: Option<Vec<String>>,
    },
    /// Writes the crt-list file from the listed sites.
    WriteCrtList,
    /// Deletes HAProxy's copy of an unlisted site's certificate.
    DeletePem { domain: Domain },
    /// Writes the HTTPS policy map file.
    WritePolicy { text: String },
    /// Writes the state file for `hostyard status`.
    WriteState(TlsState),
}

impl Memory {
    /// Starts from what the crt-list file says is served, and the end of
    /// validity of each copy (`None` when unreadable).
    pub fn new(listed: BTreeMap<Domain, Vec<String>>, expiry: BTreeMap<Domain, i64>) -> Memory {
        Memory {
            listed,
            expiry,
            // HAProxy may hold another policy than the file (written while
            // it was not answering): compared once.
            policy_pending: true,
            ..Memory::default()
        }
    }

    /// The sites whose file the scan reads and checks: a new version, a
    /// new source, or new declared aliases (the names its certificate is
    /// served for may change).
    pub fn to_judge(
        &self,
        sources: &BTreeMap<Domain, Found>,
        aliases: &BTreeMap<Domain, Vec<String>>,
    ) -> Vec<Domain> {
        sources
            .iter()
            .filter(|(d, found)| {
                self.seen.get(*d) != Some(*found) || aliases.get(*d) != self.aliases.get(*d)
            })
            .map(|(d, _)| d.clone())
            .collect()
    }

    /// Whether HAProxy's memory is to be brought to the files.
    pub fn runtime_due(&self) -> bool {
        !self.pending.is_empty() || !self.pending_removal.is_empty() || self.policy_pending
    }

    /// Records an action done.
    pub fn done(&mut self, action: &Action) {
        match action {
            Action::Refuse { .. } | Action::Install { .. } | Action::DeletePem { .. } => {}
            Action::WriteCrtList => self.crt_list_stale = false,
            Action::WritePolicy { .. } => self.policy_pending = true,
            Action::WriteState(state) => self.written = Some(state.clone()),
        }
    }

    /// Records an action that failed: an install is undone here and its
    /// file judged again at the next pass.
    pub fn failed(&mut self, action: &Action) {
        if let Action::Install { domain, before, .. } = action {
            self.seen.remove(domain);
            match before {
                Some(names) => {
                    self.listed.insert(domain.clone(), names.clone());
                }
                None => {
                    self.listed.remove(domain);
                    self.served_from.remove(domain);
                    self.expiry.remove(domain);
                    self.pending.remove(domain);
                }
            }
            self.relist.remove(domain);
        }
    }

    /// HAProxy does not run: it loads the files when it starts.
    pub fn haproxy_absent(&mut self) {
        self.pending.clear();
        self.relist.clear();
        self.pending_removal.clear();
        self.policy_pending = false;
    }

    /// Performs `steps` in order, each recorded once `perform` did it; the
    /// first failure stops there and leaves it and the rest pending, for
    /// the next pass.
    pub fn carry_out<E>(
        &mut self,
        steps: Vec<Step>,
        mut perform: impl FnMut(&Step) -> Result<(), E>,
    ) -> Result<(), E> {
        for step in steps {
            perform(&step)?;
            self.runtime_done(&step);
        }
        Ok(())
    }

    /// Records a runtime step done.
    pub fn runtime_done(&mut self, step: &Step) {
        match step {
            Step::Remove(domain) => {
                self.pending_removal.remove(domain);
            }
            Step::Serve { domain, .. } => {
                self.pending.remove(domain);
                self.relist.remove(domain);
            }
            Step::SetPolicy { .. } | Step::RemovePolicy { .. } => {}
        }
    }
}

/// One pass over what the scan saw: `memory` records the decisions, and
/// the returned actions carry them out on the files, in order (each
/// certificate written before the crt-list names it, deleted after it no
/// longer does).
pub fn plan(memory: &mut Memory, observed: &Observed, tls: &TlsConfig) -> Vec<Action> {
    let mut actions = Vec::new();
    memory.aliases = observed.aliases.clone();
    for (domain, judged) in &observed.judged {
        let Some(found) = observed.sources.get(domain) else {
            continue;
        };
        memory.seen.insert(domain.clone(), *found);
        let (checked, names) = match judged {
            Judged::Bad(why) => {
                // Another server's refused copy is unlisted below.
                let keeps = if memory.listed.contains_key(domain) && found.source.own() {
                    Keeps::Current
                } else {
                    Keeps::Default
                };
                memory.refused.insert(domain.clone(), why.clone());
                actions.push(Action::Refuse {
                    domain: domain.clone(),
                    source: found.source,
                    why: why.clone(),
                    keeps,
                });
                continue;
            }
            Judged::Good { checked, on_disk } => {
                memory.refused.remove(domain);
                memory.served_from.insert(domain.clone(), found.source);
                let names = served_names(checked, observed.aliases.get(domain));
                if *on_disk && memory.listed.get(domain) == Some(&names) {
                    continue;
                }
                (checked, names)
            }
        };
        let before = memory.listed.insert(domain.clone(), names.clone());
        if before.as_ref().is_some_and(|b| *b != names) {
            memory.relist.insert(domain.clone());
        }
        memory.expiry.insert(domain.clone(), checked.not_after);
        memory.pending.insert(domain.clone());
        memory.crt_list_stale = true;
        actions.push(Action::Install {
            domain: domain.clone(),
            source: found.source,
            pem: checked.pem.clone(),
            names,
            not_after: checked.not_after,
            before,
        });
    }
    let sources = &observed.sources;
    memory.seen.retain(|d, _| sources.contains_key(d));
    memory.refused.retain(|d, _| sources.contains_key(d));
    memory.served_from.retain(|d, _| sources.contains_key(d));
    // Another server's certificate that fails its checks is not served at
    // all (no older copy either: it was not verified).
    let removed: Vec<Domain> = memory
        .listed
        .keys()
        .filter(|d| match sources.get(*d) {
            None => true,
            Some(found) => !found.source.own() && memory.refused.contains_key(*d),
        })
        .cloned()
        .collect();
    for domain in &removed {
        memory.listed.remove(domain);
        memory.expiry.remove(domain);
        memory.served_from.remove(domain);
        memory.pending.remove(domain);
        memory.relist.remove(domain);
        memory.pending_removal.insert(domain.clone());
        memory.crt_list_stale = true;
    }
    if memory.crt_list_stale {
        actions.push(Action::WriteCrtList);
    }
    actions.extend(
        removed
            .into_iter()
            .map(|domain| Action::DeletePem { domain }),
    );
    let text = policy_text(&policy_map(&memory.listed, tls));
    if observed.policy_file.as_deref() != Some(&text) {
        actions.push(Action::WritePolicy { text });
    }
    let state = state(memory, observed);
    if memory.written.as_ref() != Some(&state) {
        actions.push(Action::WriteState(state));
    }
    actions
}

/// The names a certificate is served for: its own (the domain, `www.`
/// when covered) and the declared aliases it covers.
fn served_names(checked: &Checked, aliases: Option<&Vec<String>>) -> Vec<String> {
    let mut names = checked.names.clone();
    for alias in aliases.into_iter().flatten() {
        if checked.covers(alias) && !names.contains(alias) {
            names.push(alias.clone());
        }
    }
    names
}

/// Host → HTTPS policy for every name served with a site certificate.
pub fn policy_map(
    listed: &BTreeMap<Domain, Vec<String>>,
    tls: &TlsConfig,
) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for (domain, names) in listed {
        let mut value = if tls.http_sites.contains(domain) {
            "stay".to_string()
        } else {
            "redirect".to_string()
        };
        if tls.hsts_sites.contains(domain) {
            value.push_str(",hsts");
        }
        for name in names {
            out.insert(name.clone(), value.clone());
        }
    }
    out
}

/// The policy map file's text.
pub fn policy_text(policy: &BTreeMap<String, String>) -> String {
    policy.iter().map(|(h, v)| format!("{h} {v}\n")).collect()
}

/// What `hostyard status` is told of each site.
fn state(memory: &Memory, observed: &Observed) -> TlsState {
    let mut state = TlsState::default();
    let sites = observed
        .sources
        .keys()
        .chain(memory.listed.keys())
        .chain(observed.acme.keys());
    for domain in sites {
        let served = memory.listed.contains_key(domain);
        let source = match memory.served_from.get(domain) {
            Some(source) if served => source.as_str(),
            // Listed before a start and not judged since: its own.
            None if served => Source::Imported.as_str(),
            _ => "default",
        };
        state.sites.insert(
            domain.to_string(),
            SiteTls {
                source: source.to_string(),
                not_after: memory.expiry.get(domain).copied().filter(|_| served),
                refused: memory.refused.get(domain).cloned(),
                acme: observed
                    .acme
                    .get(domain)
                    .filter(|a| **a != AcmeSite::default())
                    .cloned(),
            },
        );
    }
    state
}

/// What HAProxy's memory holds, as asked before the runtime steps.
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// Certificate files loaded (`show ssl cert`).
    pub loaded: BTreeSet<String>,
    /// Certificate files the crt-list serves (`show ssl crt-list`).
    pub in_list: BTreeSet<String>,
}

/// One runtime API step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// Unlists and frees a site's certificate.
    Remove(Domain),
    /// Stores the certificate file's contents (`new`: as a new
    /// certificate), after unlisting it when its names changed (HAProxy
    /// takes a crt-list line whole), then lists it with `list_with` when
    /// it is not listed.
    Serve {
        domain: Domain,
        unlist_first: bool,
        new: bool,
        list_with: Option<Vec<String>>,
    },
    /// Sets a host's value in the policy map.
    SetPolicy { host: String, value: String },
    /// Removes a host from the policy map.
    RemovePolicy { host: String },
}

/// The certificate steps that bring HAProxy's memory to the files:
/// removals first, then each pending site stored and listed. `path` names
/// HAProxy's copy of a site's certificate.
pub fn runtime(memory: &Memory, held: &Held, path: impl Fn(&Domain) -> String) -> Vec<Step> {
    let mut out: Vec<Step> = memory
        .pending_removal
        .iter()
        .map(|d| Step::Remove(d.clone()))
        .collect();
    for domain in &memory.pending {
        let Some(names) = memory.listed.get(domain) else {
            continue;
        };
        let path = path(domain);
        let listed = held.in_list.contains(&path);
        let relist = listed && memory.relist.contains(domain);
        out.push(Step::Serve {
            domain: domain.clone(),
            unlist_first: relist,
            // Unlisting frees it too.
            new: relist || !held.loaded.contains(&path),
            list_with: (relist || !listed).then(|| names.clone()),
        });
    }
    out
}

/// The policy map steps from what HAProxy holds (`now`) to `policy`.
pub fn policy_steps(
    now: &BTreeMap<String, String>,
    policy: &BTreeMap<String, String>,
) -> Vec<Step> {
    let set = policy
        .iter()
        .filter(|(host, value)| now.get(*host) != Some(*value))
        .map(|(host, value)| Step::SetPolicy {
            host: host.clone(),
            value: value.clone(),
        });
    let remove = now
        .keys()
        .filter(|host| !policy.contains_key(*host))
        .map(|host| Step::RemovePolicy { host: host.clone() });
    set.chain(remove).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide;

    fn d(name: &str) -> Domain {
        Domain::parse(name).unwrap()
    }

    fn version(n: u64) -> Version {
        Version {
            len: n,
            mtime_ns: n as i128,
            ino: n,
        }
    }

    fn found(source: Source, n: u64) -> Found {
        Found {
            source,
            version: version(n),
        }
    }

    fn good(domain: &str, pem: &str, not_after: i64) -> Judged {
        Judged::Good {
            checked: Checked {
                pem: pem.to_string(),
                names: vec![domain.to_string()],
                not_after,
                dns_names: vec![domain.to_string(), format!("*.{domain}")],
            },
            on_disk: false,
        }
    }

    /// A scan seeing `sources`, having judged those `memory` asks for with
    /// `judge`.
    fn scan(
        memory: &Memory,
        sources: &[(&str, Found)],
        judge: impl Fn(&Domain) -> Judged,
    ) -> Observed {
        let sources: BTreeMap<Domain, Found> = sources.iter().map(|(n, f)| (d(n), *f)).collect();
        let judged = memory
            .to_judge(&sources, &BTreeMap::new())
            .into_iter()
            .map(|dom| {
                let j = judge(&dom);
                (dom, j)
            })
            .collect();
        Observed {
            sources,
            judged,
            ..Observed::default()
        }
    }

    /// A pass whose every action succeeds; returns the actions but the
    /// state file's.
    fn pass(memory: &mut Memory, observed: &Observed) -> Vec<Action> {
        let actions = plan(memory, observed, &TlsConfig::default());
        for a in &actions {
            memory.done(a);
        }
        actions
            .into_iter()
            .filter(|a| !matches!(a, Action::WriteState(_) | Action::WritePolicy { .. }))
            .collect()
    }

    fn installed(actions: &[Action]) -> Vec<(Domain, Source, String)> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Install {
                    domain,
                    source,
                    pem,
                    ..
                } => Some((domain.clone(), *source, pem.clone())),
                _ => None,
            })
            .collect()
    }

    fn status(memory: &Memory, observed: &Observed, domain: &str) -> SiteTls {
        state(memory, observed).sites[domain].clone()
    }

    const PATH: fn(&Domain) -> String = |d| format!("/certs/{d}.pem");

    /// A memory after one pass that took `domain`'s first file from
    /// `source` (certificate `pem`, good until `not_after`), and that
    /// pass's observation.
    fn served(domain: &str, source: Source, pem: &str, not_after: i64) -> (Memory, Observed) {
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        let seen = scan(&m, &[(domain, found(source, 1))], |_| {
            good(domain, pem, not_after)
        });
        pass(&mut m, &seen);
        (m, seen)
    }

    /// The runtime step that serves `domain`.
    fn serve(domain: &str, unlist_first: bool, new: bool, list_with: Option<&[&str]>) -> Step {
        Step::Serve {
            domain: d(domain),
            unlist_first,
            new,
            list_with: list_with.map(|names| names.iter().map(|n| n.to_string()).collect()),
        }
    }

    #[test]
    fn a_new_site_is_written_listed_then_given_to_haproxy() {
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        let seen = scan(&m, &[("a.example", found(Source::Imported, 1))], |_| {
            good("a.example", "A1", 100)
        });
        let actions = pass(&mut m, &seen);
        assert_eq!(
            installed(&actions),
            vec![(d("a.example"), Source::Imported, "A1".into())]
        );
        assert_eq!(actions.last(), Some(&Action::WriteCrtList));
        assert_eq!(m.listed[&d("a.example")], vec!["a.example".to_string()]);
        assert_eq!(status(&m, &seen, "a.example").source, "imported");
        assert_eq!(status(&m, &seen, "a.example").not_after, Some(100));
        let policy = plan(&mut m.clone(), &seen, &TlsConfig::default());
        assert!(policy.contains(&Action::WritePolicy {
            text: "a.example redirect\n".into()
        }));
        // HAProxy holds nothing of it: stored as new, then listed.
        assert_eq!(
            runtime(&m, &Held::default(), PATH),
            vec![serve("a.example", false, true, Some(&["a.example"]))]
        );
        // Nothing changed: the file is not read again, nothing is written.
        let again = scan(&m, &[("a.example", found(Source::Imported, 1))], |_| {
            panic!("read again")
        });
        assert!(pass(&mut m, &again).is_empty());
    }

    #[test]
    fn a_changed_file_replaces_the_certificate_in_place() {
        let (mut m, _) = served("a.example", Source::Imported, "A1", 100);
        m.pending.clear();
        let two = scan(&m, &[("a.example", found(Source::Imported, 2))], |_| {
            good("a.example", "A2", 200)
        });
        let actions = pass(&mut m, &two);
        assert!(matches!(
            &actions[0],
            Action::Install { pem, before: Some(_), .. } if pem == "A2"
        ));
        assert_eq!(m.expiry[&d("a.example")], 200);
        // Loaded and listed with the same names: `set`, not `new`, no relist.
        let held = Held {
            loaded: [PATH(&d("a.example"))].into(),
            in_list: [PATH(&d("a.example"))].into(),
        };
        assert_eq!(
            runtime(&m, &held, PATH),
            vec![serve("a.example", false, false, None)]
        );
    }

    #[test]
    fn a_bad_file_is_refused_and_changes_nothing() {
        let (mut m, _) = served("a.example", Source::Imported, "A1", 100);
        m.pending.clear();
        let listed = m.listed.clone();
        let bad = scan(&m, &[("a.example", found(Source::Imported, 2))], |_| {
            Judged::Bad("it expired".into())
        });
        let actions = pass(&mut m, &bad);
        assert_eq!(
            actions,
            vec![Action::Refuse {
                domain: d("a.example"),
                source: Source::Imported,
                why: "it expired".into(),
                keeps: Keeps::Current
            }]
        );
        assert_eq!(m.listed, listed);
        assert!(m.pending.is_empty() && m.pending_removal.is_empty());
        let st = status(&m, &bad, "a.example");
        assert_eq!(st.refused.as_deref(), Some("it expired"));
        assert_eq!(st.not_after, Some(100), "the served one stays");
        // Refused once: not read again until it changes.
        let same = scan(&m, &[("a.example", found(Source::Imported, 2))], |_| {
            panic!("read again")
        });
        assert!(pass(&mut m, &same).is_empty());
        // A new site's bad file keeps the default certificate.
        let new = scan(&m, &[("b.example", found(Source::Imported, 1))], |_| {
            Judged::Bad("no key".into())
        });
        let actions = plan(&mut m, &new, &TlsConfig::default());
        assert!(actions.contains(&Action::Refuse {
            domain: d("b.example"),
            source: Source::Imported,
            why: "no key".into(),
            keeps: Keeps::Default
        }));
        assert!(!m.listed.contains_key(&d("b.example")));
    }

    #[test]
    fn a_removed_file_stops_being_served() {
        let (mut m, _) = served("a.example", Source::Imported, "A1", 100);
        m.pending.clear();
        let gone = scan(&m, &[], |_| panic!("nothing to read"));
        let actions = pass(&mut m, &gone);
        assert_eq!(
            actions,
            vec![
                Action::WriteCrtList,
                Action::DeletePem {
                    domain: d("a.example")
                }
            ]
        );
        assert!(m.listed.is_empty() && m.expiry.is_empty());
        assert_eq!(
            runtime(&m, &Held::default(), PATH),
            vec![Step::Remove(d("a.example"))]
        );
        assert!(policy_map(&m.listed, &TlsConfig::default()).is_empty());
    }

    #[test]
    fn imported_wins_over_acme_and_acme_takes_over_when_it_goes() {
        // The scan asks the rule which file serves a site.
        let found_for = |imported: bool, n| {
            let source = decide::source(true, imported, true, false).unwrap();
            found(source, n)
        };
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        let one = scan(&m, &[("a.example", found_for(true, 1))], |_| {
            good("a.example", "IMPORTED", 100)
        });
        let actions = pass(&mut m, &one);
        assert_eq!(installed(&actions)[0].1, Source::Imported);
        assert_eq!(status(&m, &one, "a.example").source, "imported");
        // The imported file is removed: ACME's file is judged and served.
        let two = scan(&m, &[("a.example", found_for(false, 1))], |_| {
            good("a.example", "ACME", 200)
        });
        let actions = pass(&mut m, &two);
        assert_eq!(
            installed(&actions),
            vec![(d("a.example"), Source::Acme, "ACME".into())]
        );
        assert_eq!(status(&m, &two, "a.example").source, "acme");
    }

    #[test]
    fn another_servers_refused_copy_is_not_served_at_all() {
        let (mut m, one) = served("f.example", Source::Fleet, "F1", 100);
        assert_eq!(status(&m, &one, "f.example").source, "fleet");
        m.pending.clear();
        let bad = scan(&m, &[("f.example", found(Source::Fleet, 2))], |_| {
            Judged::Bad("signed by no CA this server trusts".into())
        });
        let actions = pass(&mut m, &bad);
        assert!(matches!(
            &actions[0],
            Action::Refuse {
                keeps: Keeps::Default,
                ..
            }
        ));
        assert!(actions.contains(&Action::DeletePem {
            domain: d("f.example")
        }));
        assert!(m.listed.is_empty());
        assert_eq!(status(&m, &bad, "f.example").source, "default");
    }

    #[test]
    fn a_declared_alias_the_certificate_covers_is_served_and_relisted() {
        let (mut m, mut one) = served("a.example", Source::Acme, "A1", 100);
        m.pending.clear();
        // An alias appears: judged again though the file did not change.
        one.aliases = [(
            d("a.example"),
            vec!["shop.a.example".to_string(), "other.example".to_string()],
        )]
        .into();
        assert_eq!(m.to_judge(&one.sources, &one.aliases), vec![d("a.example")]);
        one.judged = [(d("a.example"), good("a.example", "A1", 100))].into();
        if let Some(Judged::Good { on_disk, .. }) = one.judged.get_mut(&d("a.example")) {
            *on_disk = true;
        }
        pass(&mut m, &one);
        assert_eq!(
            m.listed[&d("a.example")],
            vec!["a.example".to_string(), "shop.a.example".to_string()]
        );
        let path = PATH(&d("a.example"));
        let held = Held {
            loaded: [path.clone()].into(),
            in_list: [path].into(),
        };
        assert_eq!(
            runtime(&m, &held, PATH),
            vec![serve(
                "a.example",
                true,
                true,
                Some(&["a.example", "shop.a.example"])
            )]
        );
    }

    #[test]
    fn a_runtime_failure_is_retried_at_the_next_pass() {
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        let seen = scan(
            &m,
            &[
                ("a.example", found(Source::Imported, 1)),
                ("b.example", found(Source::Imported, 1)),
            ],
            |dom| good(dom.as_str(), "X", 100),
        );
        pass(&mut m, &seen);
        let steps = runtime(&m, &Held::default(), PATH);
        assert_eq!(steps.len(), 2);
        // The first is done, the second fails: the pass stops there.
        let failed = m.carry_out(steps, |step| match step {
            Step::Serve { domain, .. } if domain.as_str() == "b.example" => Err("timeout"),
            _ => Ok(()),
        });
        assert_eq!(failed, Err("timeout"));
        assert!(m.runtime_due());
        // The next pass has nothing new to write, and tries b again.
        let next = scan(
            &m,
            &[
                ("a.example", found(Source::Imported, 1)),
                ("b.example", found(Source::Imported, 1)),
            ],
            |_| panic!("read again"),
        );
        assert!(pass(&mut m, &next).is_empty());
        assert_eq!(
            runtime(&m, &Held::default(), PATH),
            vec![serve("b.example", false, true, Some(&["b.example"]))]
        );
        m.carry_out(runtime(&m, &Held::default(), PATH), |_| Ok::<(), ()>(()))
            .unwrap();
        m.policy_pending = false;
        assert!(!m.runtime_due());
    }

    #[test]
    fn a_failed_removal_is_retried_and_does_not_drop_the_others() {
        let mut m = Memory::new(
            [
                (d("a.example"), vec!["a.example".to_string()]),
                (d("b.example"), vec!["b.example".to_string()]),
            ]
            .into(),
            BTreeMap::new(),
        );
        let gone = scan(&m, &[], |_| panic!("nothing to read"));
        pass(&mut m, &gone);
        let steps = runtime(&m, &Held::default(), PATH);
        assert_eq!(
            steps,
            vec![Step::Remove(d("a.example")), Step::Remove(d("b.example"))]
        );
        // The first removal fails: neither is dropped, both are tried again.
        assert!(m.carry_out(steps.clone(), |_| Err(())).is_err());
        assert_eq!(runtime(&m, &Held::default(), PATH), steps);
        // Then the second fails: the first is done, the second is tried again.
        let second = m.carry_out(steps, |step| match step {
            Step::Remove(domain) if domain.as_str() == "b.example" => Err(()),
            _ => Ok(()),
        });
        assert!(second.is_err());
        assert_eq!(
            runtime(&m, &Held::default(), PATH),
            vec![Step::Remove(d("b.example"))]
        );
    }

    #[test]
    fn a_failed_write_is_undone_and_judged_again() {
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        let seen = scan(&m, &[("a.example", found(Source::Imported, 1))], |_| {
            good("a.example", "A1", 100)
        });
        let actions = plan(&mut m, &seen, &TlsConfig::default());
        m.failed(&actions[0]);
        assert!(m.listed.is_empty() && m.pending.is_empty());
        assert_eq!(
            m.to_judge(&seen.sources, &seen.aliases),
            vec![d("a.example")]
        );
    }

    #[test]
    fn haproxy_without_a_process_needs_nothing_at_runtime() {
        let mut m = Memory::new(BTreeMap::new(), BTreeMap::new());
        assert!(
            m.runtime_due(),
            "the policy map is compared once after a start"
        );
        m.pending.insert(d("a.example"));
        m.pending_removal.insert(d("b.example"));
        m.haproxy_absent();
        assert!(!m.runtime_due());
    }

    #[test]
    fn the_policy_map_follows_the_sites_choices() {
        let tls = TlsConfig {
            http_sites: vec![d("h.example")],
            hsts_sites: vec![d("s.example")],
            ..TlsConfig::default()
        };
        let listed: BTreeMap<Domain, Vec<String>> = [
            (d("h.example"), vec!["h.example".to_string()]),
            (
                d("s.example"),
                vec!["s.example".to_string(), "www.s.example".to_string()],
            ),
        ]
        .into();
        let policy = policy_map(&listed, &tls);
        assert_eq!(
            policy_text(&policy),
            "h.example stay\ns.example redirect,hsts\nwww.s.example redirect,hsts\n"
        );
        let now: BTreeMap<String, String> = [
            ("h.example".to_string(), "stay".to_string()),
            ("old.example".to_string(), "redirect".to_string()),
        ]
        .into();
        assert_eq!(
            policy_steps(&now, &policy),
            vec![
                Step::SetPolicy {
                    host: "s.example".into(),
                    value: "redirect,hsts".into()
                },
                Step::SetPolicy {
                    host: "www.s.example".into(),
                    value: "redirect,hsts".into()
                },
                Step::RemovePolicy {
                    host: "old.example".into()
                },
            ]
        );
    }
}
