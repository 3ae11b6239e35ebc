//! Certificates shared across a fleet: TLS ends on whichever server a
//! request reaches, so every server needs every site's certificate, and
//! one order per fleet is enough.
//!
//! - [`Publisher`]: the hosting server puts each of its sites' served
//!   certificate (ACME or imported, chain and private key) into etcd,
//!   `{prefix}/tls/certs/<domain>`, when it changed; only in a fleet, so a
//!   single server never copies a private key out of its disk.
//! - [`Receiver`]: every server writes what etcd holds for a site it does
//!   not host to `runtime/acme/certs/<domain>.pem` (0600, atomic), after
//!   the same checks the certificate thread makes and a verification
//!   against the CA roots it trusts ([`Trust`]); the certificate thread
//!   ([`crate::sync`]) then serves it like a certificate of its own. A
//!   site it hosts keeps its own certificate whatever etcd holds; only
//!   one with none yet (it just moved here) takes etcd's, so it is not
//!   ordered again ([`decide::receive`]).
//!
//! Only the site's owner (`{prefix}/owners/<domain>`) publishes: each put
//! is a transaction that compares the owner key with this server's node
//! name, so a server holding a stale copy of a site (a restore or a move
//! that another server took over) never replaces the owner's certificate.
//! A site nobody owns yet (not registered since owners were recorded) is
//! published by the server that hosts it, without claiming it: ownership is
//! claimed by what runs the site (its registration, a restore, a move).
//!
//! What the owner serves now wins ([`decide::publish`]): it puts its
//! bundle whenever etcd holds another (a shorter-lived replacement of a
//! leaked key included) and puts it back when etcd's changed or went.
//! A removed site's bundle (neither declared nor owned, as `hostyard site
//! forget` leaves it) is deleted from etcd by the next pass of any
//! server's publisher ([`Publisher::withdraw`]), and every receiver then
//! drops its copy.

use std::collections::{BTreeSet, HashMap};
use std::time::SystemTime;

use anyhow::Context;
use etcd_client::Client;
use etcd_client::{Compare, CompareOp, GetOptions, Txn, TxnOp};
use hostyard_core::etcd::{owner_or_raw, Schema};
use hostyard_core::owner::may_write;
use hostyard_core::{Domain, Layout};
use hostyard_log::log;

use crate::check::check_bundle;
use crate::decide::{self, Held, Owner, Receive};
use crate::files::KEY_FILE;
use crate::sync::plan::Version;
use crate::sync::scan;
use crate::trust::Trust;

/// Puts the hosted sites' certificates into etcd when they change.
pub struct Publisher {
    layout: Layout,
    schema: Schema,
    /// This server's node name, compared with each site's owner.
    node: String,
    /// The source file of each site, as last published (or found equal
    /// to etcd's, or refused): looked at again only when it changes.
    done: HashMap<Domain, Version>,
    /// An etcd failure is logged when it starts.
    failing: bool,
}

impl Publisher {
    pub fn new(layout: Layout, schema: Schema, node: String) -> Publisher {
        Publisher {
            layout,
            schema,
            node,
            done: HashMap::new(),
            failing: false,
        }
    }

    /// Forgets what was published: after the server left a fleet and
    /// joined one again, everything is compared with etcd once more.
    pub fn reset(&mut self) {
        self.done.clear();
    }

    /// Compares `domain` with etcd again at the next pass: etcd changed to
    /// something other than what this server serves for a site it hosts
    /// (a refused or older bundle, or none), which the next pass replaces.
    pub fn recheck(&mut self, domain: &Domain) {
        self.done.remove(domain);
    }

    /// One look at every hosted site; returns the domains published.
    pub async fn pass(&mut self, etcd: &mut Client) -> Vec<Domain> {
        let mut out = Vec::new();
        // A server hosting no site still withdraws removed sites' bundles.
        let entries = std::fs::read_dir(self.layout.domains_dir())
            .into_iter()
            .flatten();
        let mut domains: Vec<Domain> = entries
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
            .filter_map(|n| Domain::parse(&n).ok())
            .collect();
        domains.sort();
        let hosted: BTreeSet<&Domain> = domains.iter().collect();
        self.done.retain(|d, _| hosted.contains(d));
        for domain in &domains {
            match self.publish(etcd, domain).await {
                Ok(true) => out.push(domain.clone()),
                Ok(false) => {}
                Err(e) => {
                    if !self.failing {
                        log!(
                            Warning,
                            "{domain}: cannot publish its certificate to the fleet (tried again at each pass): {e:#}"
                        );
                    }
                    self.failing = true;
                    return out;
                }
            }
        }
        if let Err(e) = self.withdraw(etcd).await {
            if !self.failing {
                log!(
                    Warning,
                    "cannot withdraw removed sites' certificates from the fleet (tried again at each pass): {e:#}"
                );
            }
            self.failing = true;
            return out;
        }
        self.failing = false;
        out
    }

    async fn publish(&mut self, etcd: &mut Client, domain: &Domain) -> anyhow::Result<bool> {
        let Some((src, fp)) = scan::own(&self.layout, domain) else {
            return Ok(false);
        };
        if self.done.get(domain) == Some(&fp) {
            return Ok(false);
        }
        let Ok(bytes) = scan::read_limited(&src) else {
            return Ok(false);
        };
        // A bundle this server refuses to serve is not offered to others
        // (the certificate thread says why).
        let Ok(ours) = check_bundle(&bytes, domain, SystemTime::now()) else {
            self.done.insert(domain.clone(), fp);
            return Ok(false);
        };
        let key = self.schema.tls_cert_key(domain);
        let owner_key = self.schema.owner_key(domain);
        let site_key = self.schema.site_key(domain);
        let got = etcd
            .get(owner_key.as_str(), None)
            .await
            .with_context(|| format!("reading {owner_key}"))?;
        let owner = got.kvs().first().map(|kv| owner_or_raw(kv.value()));
        if let Err(owner) = may_write(&self.node, owner.as_deref()) {
            // Looked at again when the file changes (a take-over or a move
            // here brings a new certificate or a restart).
            self.done.insert(domain.clone(), fp);
            log!(
                Info,
                "{domain}: server {owner} owns it ({owner_key}); its certificate is that server's to publish"
            );
            return Ok(false);
        }
        let declared = !etcd
            .get(site_key.as_str(), None)
            .await
            .with_context(|| format!("reading {site_key}"))?
            .kvs()
            .is_empty();
        if !declared {
            // Not declared yet (its discovery declares it when it first
            // runs), or forgotten: looked at again at the next pass.
            return Ok(false);
        }
        let got = etcd
            .get(key.as_str(), None)
            .await
            .with_context(|| format!("reading {key}"))?;
        let (held, revision) = match got.kvs().first() {
            None => (Held::Nothing, None),
            Some(kv) if kv.value() == bytes.as_slice() => (Held::Same, Some(kv.mod_revision())),
            Some(kv) => match check_bundle(kv.value(), domain, SystemTime::now()) {
                Ok(_) => (Held::Usable, Some(kv.mod_revision())),
                Err(_) => (Held::Refused, Some(kv.mod_revision())),
            },
        };
        let who = match &owner {
            None => Owner::Nobody,
            Some(_) => Owner::Me,
        };
        if !decide::publish(declared, who, held) {
            self.done.insert(domain.clone(), fp);
            return Ok(false);
        }
        // The put holds only if the owner, the declaration and the key are
        // still what was read.
        let owner_holds = match &owner {
            None => Compare::version(owner_key.as_str(), CompareOp::Equal, 0),
            Some(me) => Compare::value(owner_key.as_str(), CompareOp::Equal, me.as_str()),
        };
        let key_holds = match revision {
            None => Compare::version(key.as_str(), CompareOp::Equal, 0),
            Some(r) => Compare::mod_revision(key.as_str(), CompareOp::Equal, r),
        };
        let txn = Txn::new()
            .when([
                owner_holds,
                key_holds,
                Compare::version(site_key.as_str(), CompareOp::Greater, 0),
            ])
            .and_then([TxnOp::put(key.as_str(), bytes, None)]);
        let put = etcd
            .txn(txn)
            .await
            .with_context(|| format!("writing {key}"))?;
        if !put.succeeded() {
            // Something changed meanwhile: decided again at the next pass.
            return Ok(false);
        }
        self.done.insert(domain.clone(), fp);
        log!(
            Notice,
            "{domain}: certificate published to the fleet ({key}, valid until Unix time {})",
            ours.not_after
        );
        Ok(true)
    }

    /// Deletes from etcd the certificate of every removed site (neither
    /// declared nor owned, [`decide::withdraw`]); every server's receiver
    /// then drops its copy. Each delete holds only while both keys are
    /// still absent. Returns the domains withdrawn.
    pub async fn withdraw(&mut self, etcd: &mut Client) -> anyhow::Result<Vec<Domain>> {
        let certs = etcd_keys(etcd, &self.schema.tls_certs_prefix()).await?;
        if certs.is_empty() {
            return Ok(Vec::new());
        }
        let sites = etcd_keys(etcd, &self.schema.sites_prefix()).await?;
        let owners = etcd_keys(etcd, &self.schema.owners_prefix()).await?;
        let declared: BTreeSet<Domain> = sites
            .iter()
            .filter_map(|k| self.schema.parse_site_key(k).ok())
            .collect();
        let owned: BTreeSet<Domain> = owners
            .iter()
            .filter_map(|k| self.schema.parse_owner_key(k).ok())
            .collect();
        let mut out = Vec::new();
        for key in certs {
            let Ok(domain) = self.schema.parse_tls_cert_key(&key) else {
                continue;
            };
            if !decide::withdraw(declared.contains(&domain), owned.contains(&domain)) {
                continue;
            }
            let site_key = self.schema.site_key(&domain);
            let owner_key = self.schema.owner_key(&domain);
            let txn = Txn::new()
                .when([
                    Compare::version(site_key.as_str(), CompareOp::Equal, 0),
                    Compare::version(owner_key.as_str(), CompareOp::Equal, 0),
                ])
                .and_then([TxnOp::delete(key.as_str(), None)]);
            let done = etcd
                .txn(txn)
                .await
                .with_context(|| format!("deleting {key}"))?;
            if done.succeeded() {
                log!(
                    Notice,
                    "{domain}: its certificate left the fleet's store ({key}): the site is neither declared ({site_key}) nor owned ({owner_key}) any more"
                );
                out.push(domain);
            }
        }
        Ok(out)
    }
}

/// The keys under `prefix`, without their values.
async fn etcd_keys(etcd: &mut Client, prefix: &str) -> anyhow::Result<Vec<String>> {
    let got = etcd
        .get(
            prefix,
            Some(GetOptions::new().with_prefix().with_keys_only()),
        )
        .await
        .with_context(|| format!("reading {prefix}"))?;
    Ok(got
        .kvs()
        .iter()
        .map(|kv| String::from_utf8_lossy(kv.key()).into_owned())
        .collect())
}

/// What the receiver did with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Received {
    /// Written where the certificate thread serves it from.
    Stored,
    /// Removed (etcd no longer holds it and the site is not hosted here).
    Removed,
    /// Nothing to do (the same bundle, or nothing here to remove).
    Unchanged,
    /// This server hosts the site and keeps its own certificate, whatever
    /// etcd holds (another bundle, or none).
    OwnKept,
    /// Refused: the reason, logged once.
    Refused(String),
}

/// Writes the certificates etcd holds for other servers' sites where the
/// certificate thread serves them, once verified ([`Trust`]).
pub struct Receiver {
    layout: Layout,
    trust: Trust,
}

impl Receiver {
    pub fn new(layout: Layout, trust: Trust) -> Receiver {
        Receiver { layout, trust }
    }

    /// A full read of `tls/certs/`: each bundle taken, and the stored
    /// copies of sites not hosted here that etcd no longer holds removed.
    /// Returns what it did with each.
    pub fn replace(
        &self,
        bundles: impl IntoIterator<Item = (Domain, Vec<u8>)>,
    ) -> Vec<(Domain, Received)> {
        let mut out = Vec::new();
        let mut held = BTreeSet::new();
        for (domain, bundle) in bundles {
            out.push((domain.clone(), self.set(&domain, Some(&bundle))));
            held.insert(domain);
        }
        for domain in crate::files::acme_cert_domains(&self.layout) {
            if !held.contains(&domain) {
                let done = self.set(&domain, None);
                out.push((domain, done));
            }
        }
        out
    }

    /// Whether this server hosts `domain`.
    pub fn hosts(&self, domain: &Domain) -> bool {
        scan::hosted(&self.layout, domain)
    }

    /// One key's change: `None` when it was deleted.
    pub fn set(&self, domain: &Domain, bundle: Option<&[u8]>) -> Received {
        let path = self.layout.acme_cert(domain);
        let hosted = scan::hosted(&self.layout, domain);
        let own = scan::own(&self.layout, domain).is_some();
        let current = std::fs::read(&path).ok();
        let mut checked = None;
        let held = match bundle {
            None => Held::Nothing,
            Some(b) if current.as_deref() == Some(b) => Held::Same,
            Some(b) => match self.trust.check(b, domain, SystemTime::now()) {
                Ok(c) => {
                    checked = Some(c);
                    Held::Usable
                }
                Err(why) => {
                    let keeps = if hosted && own {
                        "keeps its own certificate"
                    } else if path.exists() {
                        "keeps its current certificate"
                    } else {
                        "keeps the default certificate"
                    };
                    log!(
                        Warning,
                        "{domain}: refused the certificate the fleet's store holds: {why}; {domain} {keeps} here"
                    );
                    return Received::Refused(why.to_string());
                }
            },
        };
        match decide::receive(hosted, own, held) {
            Receive::Leave => Received::Unchanged,
            Receive::KeepOwn if held == Held::Same => Received::Unchanged,
            Receive::KeepOwn => Received::OwnKept,
            Receive::Remove => match std::fs::remove_file(&path) {
                Ok(()) => {
                    log!(
                        Notice,
                        "{domain}: its certificate left the fleet's store; HTTPS answers with the default certificate here"
                    );
                    Received::Removed
                }
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Received::Unchanged,
                Err(e) => {
                    log!(Warning, "cannot remove {}: {e}", path.display());
                    Received::Unchanged
                }
            },
            Receive::Adopt => {
                let (Some(bundle), Some(checked)) = (bundle, checked) else {
                    return Received::Unchanged;
                };
                let stored = crate::acme::ensure_private_dir(&self.layout.acme_certs_dir())
                    .and_then(|()| KEY_FILE.write(&path, bundle));
                match stored {
                    Ok(()) => {
                        log!(
                            Info,
                            "{domain}: certificate from the fleet's store written to {} (valid until Unix time {})",
                            path.display(),
                            checked.not_after
                        );
                        Received::Stored
                    }
                    Err(e) => {
                        log!(Warning, "{domain}: {e:#}");
                        Received::Unchanged
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hostyard_testsupport::SiteCa;
    use rcgen::{CertificateParams, KeyPair};
    use std::os::unix::fs::PermissionsExt;
    use std::sync::OnceLock;

    /// One CA for every test, and the trust in it.
    fn ca() -> &'static (SiteCa, Trust) {
        static CA: OnceLock<(SiteCa, Trust)> = OnceLock::new();
        CA.get_or_init(|| {
            let ca = SiteCa::new("fleet test CA");
            let trust = Trust::from_roots(vec![ca.der().clone()]);
            (ca, trust)
        })
    }

    /// A bundle for `example.com` from the test CA, valid until the year given.
    fn bundle(until: i32) -> Vec<u8> {
        ca().0.bundle(&["example.com"], (2020, until)).into_bytes()
    }

    fn setup() -> (tempfile::TempDir, Layout, Domain, Receiver) {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let r = Receiver::new(layout.clone(), ca().1.clone());
        (dir, layout, Domain::parse("example.com").unwrap(), r)
    }

    #[test]
    fn another_servers_site_follows_etcd_and_a_bad_bundle_changes_nothing() {
        let (_dir, layout, domain, r) = setup();
        let path = layout.acme_cert(&domain);
        let (long, short) = (bundle(2090), bundle(2080));
        assert_eq!(r.set(&domain, Some(&long)), Received::Stored);
        assert_eq!(std::fs::read(&path).unwrap(), long);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(r.set(&domain, Some(&long)), Received::Unchanged);
        // Not hosted here: etcd decides, even for a shorter one.
        assert_eq!(r.set(&domain, Some(&short)), Received::Stored);
        let refused = r.set(&domain, Some(b"-----BEGIN CERTIFICATE-----\n"));
        assert!(matches!(refused, Received::Refused(_)), "{refused:?}");
        assert_eq!(std::fs::read(&path).unwrap(), short);
        assert_eq!(r.set(&domain, None), Received::Removed);
        assert!(!path.exists());
        assert_eq!(r.set(&domain, None), Received::Unchanged);
    }

    #[test]
    fn a_hosted_site_keeps_its_own_whatever_etcd_holds() {
        let (_dir, layout, domain, r) = setup();
        std::fs::create_dir_all(layout.domain_dir(&domain)).unwrap();
        let path = layout.acme_cert(&domain);
        let (long, longer) = (bundle(2080), bundle(2090));
        // None of its own yet (it just moved here): etcd's.
        assert_eq!(r.set(&domain, Some(&long)), Received::Stored);
        // Then its own, even against one that lasts longer.
        assert_eq!(r.set(&domain, Some(&longer)), Received::OwnKept);
        assert_eq!(r.set(&domain, None), Received::OwnKept);
        assert_eq!(std::fs::read(&path).unwrap(), long);
        assert!(r.hosts(&domain));
        // An imported certificate is never replaced from etcd.
        std::fs::remove_file(&path).unwrap();
        std::fs::create_dir_all(layout.tls_pem(&domain).parent().unwrap()).unwrap();
        std::fs::write(layout.tls_pem(&domain), &long).unwrap();
        assert_eq!(r.set(&domain, Some(&bundle(2095))), Received::OwnKept);
        assert!(!path.exists());
    }

    #[test]
    fn a_bundle_no_trusted_ca_signed_is_refused() {
        let (_dir, layout, domain, r) = setup();
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["example.com".to_string()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let pinned = format!("{}{}", cert.pem(), key.serialize_pem());
        match r.set(&domain, Some(pinned.as_bytes())) {
            Received::Refused(why) => assert!(why.contains("no CA this server trusts"), "{why}"),
            other => panic!("{other:?}"),
        }
        assert!(!layout.acme_cert(&domain).exists());
    }

    #[test]
    fn a_full_read_removes_only_copies_of_other_servers_sites_etcd_lost() {
        let (_dir, layout, domain, r) = setup();
        let hosted = Domain::parse("hosted.example").unwrap();
        std::fs::create_dir_all(layout.domain_dir(&hosted)).unwrap();
        r.set(&domain, Some(&bundle(2090)));
        std::fs::write(layout.acme_cert(&hosted), bundle(2090)).unwrap();
        std::fs::write(layout.acme_certs_dir().join(".hostyard-x.tmp"), "x").unwrap();
        let done = r.replace(Vec::new());
        assert!(!layout.acme_cert(&domain).exists());
        assert!(layout.acme_cert(&hosted).exists());
        assert!(done.contains(&(domain, Received::Removed)), "{done:?}");
        assert!(done.contains(&(hosted, Received::OwnKept)), "{done:?}");
    }
}
