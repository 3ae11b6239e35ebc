//! Certificates from an ACME CA (RFC 8555, HTTP-01) for the sites that
//! have no imported certificate, through the instant-acme crate.
//!
//! - The account key is made once and kept in `runtime/acme/account.json` (0600),
//!   so renewals use the same account; it is never logged.
//! - A challenge's answer goes to etcd (`{prefix}/acme/challenges/<token>`,
//!   on the order's lease): every confd puts what is there into HAProxy's
//!   `acme.map`, so whichever server the CA's validation request reaches
//!   answers it ([`crate::challenges`]).
//! - One order per domain at a time, across processes and servers: the
//!   order holds `{prefix}/acme/locks/<domain>`, created in a transaction
//!   only when absent, on a lease that outlives the bounded order (a
//!   crashed orderer's lock disappears by itself).
//! - The certificate (chain and a new key) goes to `runtime/acme/certs/<domain>.pem`;
//!   the certificate thread ([`crate::sync`]) checks it and puts it into
//!   HAProxy like an imported one. A failed order writes nothing, so a
//!   good certificate stays until a renewal succeeds.
//! - In a fleet, before ordering a site that has no certificate here yet,
//!   a good certificate another server published to etcd
//!   (`{prefix}/tls/certs/<domain>`, [`crate::fleet`]), verified
//!   ([`crate::trust`]) and not due yet, is taken instead: one order per
//!   fleet, even for a site that just moved here before the certificate
//!   reached this disk. One of its own, due, is renewed, never replaced
//!   by etcd's.
//! - The certificate names the domain, the aliases of its declaration
//!   (`{prefix}/sites/<domain>`) and `www.<domain>`, those the CA can
//!   validate ([`order_names`], [`left_out`]): an order that failed for
//!   some of them (a name without a DNS record yet, or pointing
//!   elsewhere) is made again at once without them, so a site like
//!   `blog.example.com` gets HTTPS and an alias added before its DNS
//!   moved costs nothing but that name. The CA's own check decides rather
//!   than one from this server: the CA's resolver and network are what
//!   count, and a check from here is fooled by split-horizon DNS or a
//!   router without hairpin NAT. What was left out is logged with the
//!   command that adds it once it resolves.
//! - `hostyard tls renew D` leaves a request ([`request_renewal`]); the
//!   next pass orders a new key and certificate for D at once, whatever
//!   the current one's age, backoff and the fleet's copy.
//! - Renewal at two thirds of the lifetime; after a failure the domain
//!   waits `tls.acme.retry_secs`, doubled per further failure (at most a
//!   day), persisted in `tls-state.json` so a restart does not retry at once.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::Context;
use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp};
use hostyard_config::AcmeConfig;
use hostyard_core::etcd::{Schema, SiteDecl};
use hostyard_core::{Domain, Layout};
use hostyard_log::log;
use instant_acme::{
    Account, AccountCredentials, AuthorizationStatus, ChallengeType, Identifier, NewAccount,
    NewOrder, OrderStatus, RetryPolicy,
};
use serde::{Deserialize, Serialize};

use crate::check::{not_after, not_before};
use crate::files::KEY_FILE;
use crate::state::{AcmeSite, TlsState};
use crate::trust::Trust;

/// An order's lock and challenges live on a lease this long; an attempt
/// gives up well before (two orders of at most [`ORDER_TIMEOUT`] each, the
/// second without `www.`), so the lock never expires under a running order.
const LEASE_SECS: i64 = 300;
/// The longest one order may take, all steps together (an attempt makes
/// at most two).
pub const ORDER_TIMEOUT: Duration = Duration::from_secs(120);
/// The longest wait after a failure.
const MAX_BACKOFF_SECS: u64 = 24 * 3600;
/// How long an order waits for this server's HAProxy to hold a challenge's
/// answer before telling the CA to validate.
const CHALLENGE_VISIBLE: Duration = Duration::from_secs(10);

/// The ACME status of each site, shared with the certificate thread,
/// which writes it to `tls-state.json`.
pub type AcmeStatus = Arc<Mutex<BTreeMap<Domain, AcmeSite>>>;

/// What an attempt for one domain came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A certificate was written.
    Obtained,
    /// Another process or server holds the domain's lock.
    Busy,
    /// The certificate on disk is still good (another orderer renewed it).
    NotDue,
    /// The order failed; the domain backs off.
    Failed(String),
}

/// The account file: the credentials and the directory they belong to.
#[derive(Serialize, Deserialize)]
struct StoredAccount {
    directory: String,
    credentials: AccountCredentials,
}

pub struct Acme {
    layout: Layout,
    schema: Schema,
    config: AcmeConfig,
    node: String,
    account: Option<Account>,
    status: AcmeStatus,
    /// The roots the fleet's certificates are verified against, loaded
    /// when the first one is looked at.
    trust: Option<Trust>,
}

/// The names one order asks for, the domain first: the domain, the
/// aliases of its declaration and `www.<domain>`, each once.
pub fn order_names(domain: &Domain, aliases: &[Domain]) -> Vec<String> {
    let mut names = vec![domain.to_string()];
    for name in aliases.iter().chain(domain.www().iter()) {
        let name = name.to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// The names to order again after an order of `names` failed validation
/// for `failed`: the others, when the domain itself is not among the
/// failed (without it there is no certificate for the site) and something
/// is left out (nothing failed by name when the CA was unreachable, and
/// the same order would fail again).
pub fn left_out(domain: &Domain, names: &[String], failed: &[String]) -> Option<Vec<String>> {
    if failed.iter().any(|f| f == domain.as_str()) {
        return None;
    }
    let kept: Vec<String> = names
        .iter()
        .filter(|n| !failed.contains(n))
        .cloned()
        .collect();
    (kept.len() < names.len()).then_some(kept)
}

/// Whether this server orders `domain`'s certificate: hosted here and
/// not served with an imported one ([`crate::decide::acme_orders`]).
pub fn orders(layout: &Layout, domain: &Domain) -> bool {
    crate::sync::scan::acme_orders(layout, domain)
}

/// Asks confd's next ACME pass (within `tls.scan_secs`) to order a new
/// key and certificate for `domain`; returns the request's file.
pub fn request_renewal(layout: &Layout, domain: &Domain) -> anyhow::Result<std::path::PathBuf> {
    let path = layout.acme_renew_request(domain);
    ensure_private_dir(path.parent().context("acme renew dir")?)?;
    // The time makes each request distinct: one made while an order runs
    // is not taken for the one that order answers.
    let stamp = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    KEY_FILE.write(&path, format!("{stamp}\n").as_bytes())?;
    Ok(path)
}

/// Why an order did not end in a certificate.
struct OrderError {
    /// The names whose validation failed (empty: the failure was not a
    /// validation, e.g. the CA was unreachable).
    failed: Vec<String>,
    error: anyhow::Error,
}

impl From<anyhow::Error> for OrderError {
    fn from(error: anyhow::Error) -> OrderError {
        OrderError {
            failed: Vec::new(),
            error,
        }
    }
}

/// When a certificate valid from `not_before` to `not_after` is renewed.
pub fn renew_at(not_before: i64, not_after: i64) -> i64 {
    not_before + (not_after - not_before) * 2 / 3
}

/// The wait after the `failures`-th failure in a row (1 = the first).
pub fn backoff_secs(retry_secs: u64, failures: u32) -> u64 {
    let doublings = failures.saturating_sub(1).min(20);
    retry_secs
        .saturating_mul(1u64 << doublings)
        .min(MAX_BACKOFF_SECS)
}

/// What a pass does for one site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Due {
    /// `hostyard tls renew` asked: a new key and certificate now.
    Renew,
    /// No certificate yet, or one past two thirds of its life.
    Order,
    /// Nothing: the certificate is good, or the site backs off after a
    /// failure (however often it is looked at: the CA's rate limits).
    Not,
}

/// The one rule of every pass, periodic or woken by a registration:
/// an operator's request first, else an order when one is needed and the
/// site does not back off.
pub fn due(renewal_requested: bool, needs_certificate: bool, backing_off: bool) -> Due {
    if renewal_requested {
        Due::Renew
    } else if needs_certificate && !backing_off {
        Due::Order
    } else {
        Due::Not
    }
}

/// ACME's record of each site as the last run left it in
/// `tls-state.json`: a restart keeps every backoff.
pub fn load_status(layout: &Layout) -> AcmeStatus {
    let mut map = BTreeMap::new();
    match TlsState::load(&layout.tls_state()) {
        Ok(Some(state)) => {
            for (name, site) in state.sites {
                if let (Ok(domain), Some(acme)) = (Domain::parse(&name), site.acme) {
                    map.insert(domain, acme);
                }
            }
        }
        Ok(None) => {}
        Err(e) => log!(Warning, "ACME starts without its last backoffs: {e:#}"),
    }
    Arc::new(Mutex::new(map))
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or_default()
}

impl Acme {
    /// `status`: from [`load_status`] in confd (the backoffs of the last run).
    pub fn new(
        layout: Layout,
        schema: Schema,
        config: AcmeConfig,
        node: String,
        status: AcmeStatus,
    ) -> Acme {
        Acme {
            layout,
            schema,
            config,
            node,
            account: None,
            status,
            trust: None,
        }
    }

    /// The sites hosted here without an imported certificate.
    fn sites(&self) -> Vec<Domain> {
        let Ok(entries) = std::fs::read_dir(self.layout.domains_dir()) else {
            return Vec::new();
        };
        let mut out: Vec<Domain> = entries
            .filter_map(|e| e.ok()?.file_name().to_str().map(str::to_string))
            .filter_map(|n| Domain::parse(&n).ok())
            .filter(|d| orders(&self.layout, d))
            .collect();
        out.sort();
        out
    }

    /// Whether `domain` needs a certificate now: none yet, or past two
    /// thirds of the current one's lifetime.
    pub fn needs_certificate(&self, domain: &Domain, now: i64) -> bool {
        let Ok(pem) = std::fs::read(self.layout.acme_cert(domain)) else {
            return true;
        };
        match (not_before(&pem), not_after(&pem)) {
            (Some(nb), Some(na)) => now >= renew_at(nb, na),
            _ => true,
        }
    }

    fn backing_off(&self, domain: &Domain, now: i64) -> bool {
        crate::lock(&self.status)
            .get(domain)
            .and_then(|s| s.next_try)
            .is_some_and(|t| now < t)
    }

    /// One look at every site: those that need a certificate and are not
    /// backing off are ordered, one after the other.
    pub async fn pass(&mut self, etcd: &mut Client) -> Vec<(Domain, Outcome)> {
        let sites = self.sites();
        // A site that left (or got an imported certificate) has no record.
        crate::lock(&self.status).retain(|d, _| sites.contains(d));
        self.drop_stale_requests(&sites);
        self.pass_over(etcd, sites).await
    }

    /// One look at `domains` alone (their registration just appeared):
    /// those this server orders, that need a certificate and are not
    /// backing off are ordered, by the same rule as [`Acme::pass`], so a
    /// site that comes and goes is ordered no more often than its backoff
    /// allows. A burst of new sites is one call.
    pub async fn pass_for(
        &mut self,
        etcd: &mut Client,
        domains: &BTreeSet<Domain>,
    ) -> Vec<(Domain, Outcome)> {
        let sites = domains
            .iter()
            .filter(|d| orders(&self.layout, d))
            .cloned()
            .collect();
        self.pass_over(etcd, sites).await
    }

    async fn pass_over(&mut self, etcd: &mut Client, sites: Vec<Domain>) -> Vec<(Domain, Outcome)> {
        let now = unix_now();
        let mut out = Vec::new();
        for domain in sites {
            let request = self.renewal_requested(&domain);
            let outcome = match due(
                request.is_some(),
                self.needs_certificate(&domain, now),
                self.backing_off(&domain, now),
            ) {
                Due::Renew => {
                    log!(
                        Notice,
                        "{domain}: a new key and certificate are ordered (hostyard tls renew)"
                    );
                    self.renew(etcd, &domain).await
                }
                Due::Order => self.obtain(etcd, &domain).await,
                Due::Not => continue,
            };
            // Done with, unless another order held the domain (tried at the
            // next pass); a failure is in the log and the status, and is
            // not retried at every pass.
            if let Some(request) = request.filter(|_| outcome != Outcome::Busy) {
                self.renewal_done(&domain, &request);
            }
            out.push((domain, outcome));
        }
        out
    }

    /// Removes the renewal requests of domains this server does not order
    /// (the site left, or got an imported certificate, after the request).
    fn drop_stale_requests(&self, sites: &[Domain]) {
        let Ok(entries) = std::fs::read_dir(self.layout.acme_renew_dir()) else {
            return;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if Domain::parse(&name).is_ok_and(|d| sites.contains(&d)) {
                continue;
            }
            if std::fs::remove_file(entry.path()).is_ok() {
                log!(
                    Warning,
                    "{name}: renewal request dropped: this server orders no certificate for it (not hosted here, or it has an imported one)"
                );
            }
        }
    }

    /// The content of `domain`'s renewal request, when there is one.
    fn renewal_requested(&self, domain: &Domain) -> Option<Vec<u8>> {
        match hostyard_fs::read_if_exists(&self.layout.acme_renew_request(domain)) {
            Ok(found) => found,
            Err(e) => {
                log!(Warning, "{domain}: {e:#}");
                None
            }
        }
    }

    /// Removes the request unless a new one replaced it meanwhile.
    fn renewal_done(&self, domain: &Domain, seen: &[u8]) {
        let path = self.layout.acme_renew_request(domain);
        if self.renewal_requested(domain).as_deref() != Some(seen) {
            return;
        }
        if let Err(e) = std::fs::remove_file(&path) {
            log!(
                Warning,
                "{domain}: cannot remove {} (the renewal is ordered again): {e}",
                path.display()
            );
        }
    }

    /// Orders a certificate for `domain` now, due or not (a pass, or a
    /// forced renewal), under the domain's lock.
    pub async fn obtain(&mut self, etcd: &mut Client, domain: &Domain) -> Outcome {
        self.obtain_inner(etcd, domain, true).await
    }

    /// Orders a certificate for `domain` even when the one on disk is
    /// still good: a forced renewal.
    pub async fn renew(&mut self, etcd: &mut Client, domain: &Domain) -> Outcome {
        self.obtain_inner(etcd, domain, false).await
    }

    async fn obtain_inner(&mut self, etcd: &mut Client, domain: &Domain, if_due: bool) -> Outcome {
        if !self.config.terms_accepted {
            let why = format!(
                "not ordered: the CA's terms are not accepted; read them ({}) and set tls.acme.terms_accepted: true",
                self.config.directory
            );
            return self.failed(domain, why, false);
        }
        let lock_key = self.schema.acme_lock_key(domain);
        let lease = match try_lock(etcd, &lock_key, &self.node).await {
            Ok(Some(lease)) => lease,
            Ok(None) => return Outcome::Busy,
            Err(e) => {
                // etcd is confd's to report; the order waits for it.
                log!(Warning, "{domain}: ACME order waits for etcd: {e:#}");
                return Outcome::Busy;
            }
        };
        // Another orderer may have finished while this one waited, or, in
        // a fleet, another server obtained one this server has not written
        // out yet (the site just moved here).
        let outcome = if if_due
            && (!self.needs_certificate(domain, unix_now())
                || self.take_published(etcd, domain).await)
        {
            Outcome::NotDue
        } else {
            match self.order_with_fallback(etcd, lease, domain).await {
                Ok(pem) => match self.install(domain, &pem) {
                    Ok(()) => Outcome::Obtained,
                    Err(e) => self.failed(domain, format!("{e:#}"), true),
                },
                Err(e) => self.failed(domain, format!("{e:#}"), true),
            }
        };
        // The lock and the challenges go with the lease.
        if let Err(e) = etcd.lease_revoke(lease).await {
            log!(
                Warning,
                "{domain}: cannot release the ACME lock (it expires within {LEASE_SECS} s): {e}"
            );
        }
        outcome
    }

    /// An order for the names of the domain's declaration and
    /// `www.<domain>`, then, while some of them failed and not the domain,
    /// one without those ([`left_out`]). Each round leaves one name out at
    /// least, so there are at most as many as names; more than one when a
    /// CA stops the order at its first invalid name while others are still
    /// being validated.
    async fn order_with_fallback(
        &mut self,
        etcd: &mut Client,
        lease: i64,
        domain: &Domain,
    ) -> anyhow::Result<String> {
        let aliases = self.declared_aliases(etcd, domain).await?;
        let mut names = order_names(domain, &aliases);
        loop {
            let e = match bounded(self.order(etcd, lease, domain, names.clone())).await {
                Ok(pem) => return Ok(pem),
                Err(e) => e,
            };
            let Some(kept) = left_out(domain, &names, &e.failed) else {
                return Err(e.error);
            };
            let out: Vec<&str> = names
                .iter()
                .filter(|n| !kept.contains(n))
                .map(String::as_str)
                .collect();
            let them = if out.len() == 1 { "it" } else { "them" };
            log!(
                Warning,
                "{domain}: {} left out of the certificate: the CA could not validate {them} ({:#}); once the DNS points at this fleet, `hostyard tls renew {domain}` adds {them}",
                out.join(", "),
                e.error,
            );
            names = kept;
        }
    }

    /// The aliases `{prefix}/sites/<domain>` declares (none without a
    /// declaration).
    async fn declared_aliases(
        &self,
        etcd: &mut Client,
        domain: &Domain,
    ) -> anyhow::Result<Vec<Domain>> {
        let key = self.schema.site_key(domain);
        let got = etcd
            .get(key.as_str(), None)
            .await
            .with_context(|| format!("reading {key}"))?;
        match got.kvs().first() {
            None => Ok(Vec::new()),
            Some(kv) => SiteDecl::parse(kv.value())
                .map(|decl| decl.aliases)
                .with_context(|| format!("not ordered: {key} holds no usable declaration")),
        }
    }

    /// Writes out the fleet's certificate for `domain` when etcd holds one
    /// that is good, verified and not yet due for renewal, and this server
    /// has no certificate of its own for it ([`crate::decide::receive`]:
    /// the site just moved here); returns whether it did.
    async fn take_published(&mut self, etcd: &mut Client, domain: &Domain) -> bool {
        let own = crate::sync::scan::own(&self.layout, domain).is_some();
        let key = self.schema.tls_cert_key(domain);
        let Ok(got) = etcd.get(key.as_str(), None).await else {
            return false;
        };
        let Some(kv) = got.kvs().first() else {
            return false;
        };
        let ca_file = &self.config.ca_file;
        let trust = self.trust.get_or_insert_with(|| Trust::load(ca_file));
        let checked = match trust.check(kv.value(), domain, SystemTime::now()) {
            Ok(c) => c,
            Err(why) => {
                log!(
                    Warning,
                    "{domain}: refused the certificate the fleet's store holds: {why}; ordering one"
                );
                return false;
            }
        };
        if crate::decide::receive(true, own, crate::decide::Held::Usable)
            != crate::decide::Receive::Adopt
        {
            return false;
        }
        let Some(nb) = not_before(kv.value()) else {
            return false;
        };
        if unix_now() >= renew_at(nb, checked.not_after) {
            return false;
        }
        let dest = self.layout.acme_cert(domain);
        let written = dest
            .parent()
            .context("acme cert dir")
            .and_then(ensure_private_dir)
            .and_then(|()| KEY_FILE.write(&dest, kv.value()));
        if let Err(e) = written {
            log!(Warning, "{domain}: {e:#}");
            return false;
        }
        crate::lock(&self.status).insert(domain.clone(), AcmeSite::default());
        log!(
            Notice,
            "{domain}: not ordered: the fleet's store ({key}) holds a certificate valid until Unix time {}; using it",
            checked.not_after
        );
        true
    }

    /// Records a failure: one log line, the backoff, the status.
    fn failed(&mut self, domain: &Domain, why: String, count: bool) -> Outcome {
        let now = unix_now();
        let mut status = crate::lock(&self.status);
        let site = status.entry(domain.clone()).or_default();
        let repeated = site.error.as_deref() == Some(why.as_str());
        if count {
            site.failures = site.failures.saturating_add(1);
            let wait = backoff_secs(self.config.retry_secs, site.failures);
            site.next_try = Some(now + wait as i64);
            log!(
                Warning,
                "{domain}: no ACME certificate from {}: {why}; HTTP keeps serving, {}; tried again in {wait} s",
                self.config.directory,
                if self.layout.acme_cert(domain).exists() {
                    "the current certificate stays"
                } else {
                    "HTTPS answers with the default certificate"
                }
            );
        } else {
            // Not the CA's doing: no backoff, but say it once.
            site.next_try = Some(now + self.config.retry_secs as i64);
            if !repeated {
                log!(Warning, "{domain}: {why}");
            }
        }
        site.error = Some(why.clone());
        Outcome::Failed(why)
    }

    fn install(&mut self, domain: &Domain, pem: &str) -> anyhow::Result<()> {
        let check = crate::check_bundle(pem.as_bytes(), domain, SystemTime::now())
            .map_err(|e| anyhow::anyhow!("the CA's certificate is unusable: {e}"))?;
        let dest = self.layout.acme_cert(domain);
        ensure_private_dir(dest.parent().context("acme cert dir")?)?;
        KEY_FILE.write(&dest, pem.as_bytes())?;
        let mut status = crate::lock(&self.status);
        status.insert(domain.clone(), AcmeSite::default());
        log!(
            Notice,
            "{domain}: ACME certificate obtained from {} for {} (valid until Unix time {})",
            self.config.directory,
            check.names.join(", "),
            check.not_after
        );
        Ok(())
    }

    /// The account: the stored one for this directory, or a new one (its
    /// key stored 0600 before it is used).
    async fn account(&mut self) -> anyhow::Result<Account> {
        if let Some(a) = &self.account {
            return Ok(a.clone());
        }
        let dir = &self.config.directory;
        let builder = || -> anyhow::Result<instant_acme::AccountBuilder> {
            Ok(if self.config.ca_file.as_os_str().is_empty() {
                Account::builder().context("setting up the HTTPS client")?
            } else {
                Account::builder_with_root(&self.config.ca_file).with_context(|| {
                    format!("reading tls.acme.ca_file {}", self.config.ca_file.display())
                })?
            })
        };
        let path = self.layout.acme_account();
        let stored: Option<StoredAccount> =
            hostyard_fs::read_json_if_exists(&path, "an ACME account file")?;
        let account = match stored {
            Some(s) if &s.directory == dir => builder()?
                .from_credentials(s.credentials)
                .await
                .with_context(|| format!("the ACME server {dir} is unreachable or refused"))?,
            _ => {
                let contact = format!("mailto:{}", self.config.email);
                let (account, credentials) = builder()?
                    .create(
                        &NewAccount {
                            contact: &[&contact],
                            terms_of_service_agreed: true,
                            only_return_existing: false,
                        },
                        dir.clone(),
                        None,
                    )
                    .await
                    .with_context(|| {
                        format!("the ACME server {dir} is unreachable or refused the account")
                    })?;
                ensure_private_dir(&self.layout.acme_dir())?;
                let text = serde_json::to_vec(&StoredAccount {
                    directory: dir.clone(),
                    credentials,
                })?;
                KEY_FILE.write(&path, &text)?;
                log!(
                    Notice,
                    "made an ACME account with {dir} (contact {}); its key is in {}",
                    self.config.email,
                    path.display()
                );
                account
            }
        };
        self.account = Some(account.clone());
        Ok(account)
    }

    /// One order: `names` in one certificate, with a new key.
    async fn order(
        &mut self,
        etcd: &mut Client,
        lease: i64,
        domain: &Domain,
        names: Vec<String>,
    ) -> Result<String, OrderError> {
        let account = self.account().await?;
        log!(
            Info,
            "{domain}: ordering a certificate for {}",
            names.join(", ")
        );
        let ids: Vec<Identifier> = names.iter().map(|n| Identifier::Dns(n.clone())).collect();
        let mut order = account
            .new_order(&NewOrder::new(&ids))
            .await
            .context("the CA refused the order")?;
        // Validations that failed while being answered: each name is
        // answered all the same, so the failures are known by name.
        let mut failed = Vec::new();
        let mut first_error = None;
        let mut auths = order.authorizations();
        while let Some(auth) = auths.next().await {
            let mut auth = auth.context("reading an authorization")?;
            let name = auth.identifier().to_string();
            match auth.status {
                AuthorizationStatus::Pending => {}
                AuthorizationStatus::Valid => continue,
                other => {
                    return Err(OrderError {
                        failed: vec![name.clone()],
                        error: anyhow::anyhow!("the authorization of {name} is {other:?}"),
                    })
                }
            }
            let mut challenge = auth
                .challenge(ChallengeType::Http01)
                .context("the CA offers no HTTP-01 challenge")?;
            let token = challenge.token.clone();
            if !is_token(&token) {
                return Err(anyhow::anyhow!("the CA sent a malformed challenge token").into());
            }
            let key_auth = challenge.key_authorization();
            etcd.put(
                self.schema.acme_challenge_key(&token),
                key_auth.as_str(),
                Some(PutOptions::new().with_lease(lease)),
            )
            .await
            .context("writing the challenge to etcd")?;
            wait_until_served(&self.layout, &token).await;
            // A fast CA may already have validated (and failed) in its
            // answer to this request.
            if let Err(e) = challenge.set_ready().await {
                first_error.get_or_insert_with(|| anyhow::anyhow!("validation failed: {e}"));
                failed.push(name);
            }
        }
        if let Some(error) = first_error {
            return Err(OrderError { failed, error });
        }
        let retry = RetryPolicy::new()
            .initial_delay(Duration::from_millis(250))
            .timeout(Duration::from_secs(60));
        // The CA's problem document says why (e.g. the connection it
        // tried); the authorizations say for which names.
        let status = order.poll_ready(&retry).await;
        if !matches!(status, Ok(OrderStatus::Ready)) {
            let mut why = match &status {
                Ok(s) => format!("the order is {s:?}"),
                Err(e) => format!("validation failed: {e}"),
            };
            let mut auths = order.authorizations();
            while let Some(Ok(auth)) = auths.next().await {
                if auth.status == AuthorizationStatus::Invalid {
                    failed.push(auth.identifier().to_string());
                }
                for c in &auth.challenges {
                    if let Some(e) = &c.error {
                        why = format!("validation failed: {e}");
                    }
                }
            }
            return Err(OrderError {
                failed,
                error: anyhow::anyhow!(why),
            });
        }
        let key = rcgen::KeyPair::generate().context("generating the certificate key")?;
        let mut params =
            rcgen::CertificateParams::new(names).context("certificate request parameters")?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        let csr = params
            .serialize_request(&key)
            .context("making the certificate request")?;
        order
            .finalize_csr(csr.der())
            .await
            .context("the CA refused the certificate request")?;
        let chain = order
            .poll_certificate(&retry)
            .await
            .context("waiting for the certificate")?;
        let mut pem = chain;
        if !pem.ends_with('\n') {
            pem.push('\n');
        }
        pem.push_str(&key.serialize_pem());
        Ok(pem)
    }
}

/// One order, given up after [`ORDER_TIMEOUT`].
async fn bounded(
    order: impl std::future::Future<Output = Result<String, OrderError>>,
) -> Result<String, OrderError> {
    match tokio::time::timeout(ORDER_TIMEOUT, order).await {
        Ok(result) => result,
        Err(_) => {
            Err(anyhow::anyhow!("the order took longer than {} s", ORDER_TIMEOUT.as_secs()).into())
        }
    }
}

/// A token as RFC 8555 makes them: base64url, so it is safe as a map key
/// and an etcd key segment.
pub fn is_token(token: &str) -> bool {
    !token.is_empty()
        && token.len() <= 256
        && token
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Takes the domain's lock when nobody holds it: the lease's id, or `None`.
async fn try_lock(etcd: &mut Client, key: &str, node: &str) -> anyhow::Result<Option<i64>> {
    let lease = etcd
        .lease_grant(LEASE_SECS, None)
        .await
        .context("granting a lease")?
        .id();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([TxnOp::put(
            key,
            node,
            Some(PutOptions::new().with_lease(lease)),
        )]);
    let resp = etcd.txn(txn).await.context("taking the lock")?;
    if resp.succeeded() {
        return Ok(Some(lease));
    }
    let _ = etcd.lease_revoke(lease).await;
    Ok(None)
}

/// Waits (bounded) until this server's HAProxy answers the token, so the
/// CA's first try finds it; without a running HAProxy it does not wait.
async fn wait_until_served(layout: &Layout, token: &str) {
    let deadline = tokio::time::Instant::now() + CHALLENGE_VISIBLE;
    loop {
        let served = match hostyard_haproxy::Session::connect(&layout.haproxy_admin_socket()) {
            Ok(mut s) => hostyard_haproxy::MapApi::new(&mut s, &layout.acme_map())
                .show_values()
                .map(|v| v.iter().any(|(k, _)| k == token))
                .unwrap_or(false),
            Err(_) => return,
        };
        if served || tokio::time::Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

pub(crate) fn ensure_private_dir(dir: &Path) -> anyhow::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    hostyard_fs::make_dirs(dir, 0o700)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
        .with_context(|| format!("cannot set the mode of {}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_site_backing_off_is_not_ordered_however_often_it_is_looked_at() {
        // A site that flaps wakes a pass at each registration: the backoff
        // decides, as in the periodic pass.
        for _ in 0..100 {
            assert_eq!(due(false, true, true), Due::Not);
        }
        assert_eq!(due(false, true, false), Due::Order);
        // A good certificate: nothing, backing off or not.
        assert_eq!(due(false, false, false), Due::Not);
        assert_eq!(due(false, false, true), Due::Not);
        // The operator's request goes past both.
        assert_eq!(due(true, false, true), Due::Renew);
    }

    #[test]
    fn renewal_is_at_two_thirds_of_the_lifetime() {
        assert_eq!(renew_at(0, 90 * 86400), 60 * 86400);
        assert_eq!(renew_at(1000, 1300), 1200);
    }

    #[test]
    fn backoff_doubles_up_to_a_day_and_stays_under_five_an_hour() {
        assert_eq!(backoff_secs(300, 1), 300);
        assert_eq!(backoff_secs(300, 2), 600);
        assert_eq!(backoff_secs(300, 3), 1200);
        assert_eq!(backoff_secs(300, 40), 86400);
        // Attempts within the first hour with the default: at 0, 5, 15, 35 min.
        let mut t = 0;
        let mut tries = 1;
        for f in 1.. {
            t += backoff_secs(300, f);
            if t >= 3600 {
                break;
            }
            tries += 1;
        }
        assert!(tries < 5, "{tries}");
    }

    fn names(domain: &str, aliases: &[&str]) -> Vec<String> {
        let aliases: Vec<Domain> = aliases.iter().map(|a| Domain::parse(a).unwrap()).collect();
        order_names(&Domain::parse(domain).unwrap(), &aliases)
    }

    #[test]
    fn an_order_names_the_domain_its_aliases_and_www() {
        assert_eq!(
            names("example.com", &[]),
            ["example.com", "www.example.com"]
        );
        assert_eq!(
            names("blog.example.org", &["blog.example.net"]),
            [
                "blog.example.org",
                "blog.example.net",
                "www.blog.example.org"
            ]
        );
        // No name twice, the domain not as an alias.
        assert_eq!(
            names("example.com", &["www.example.com", "example.com"]),
            ["example.com", "www.example.com"]
        );
        // A www. site has no www.www.
        assert_eq!(names("www.example.com", &[]), ["www.example.com"]);
    }

    #[test]
    fn a_failed_name_is_left_out_unless_it_is_the_domain() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let blog = Domain::parse("blog.example.com").unwrap();
        let all = s(&[
            "blog.example.com",
            "old.example.net",
            "www.blog.example.com",
        ]);
        assert_eq!(
            left_out(&blog, &all, &s(&["www.blog.example.com"])),
            Some(s(&["blog.example.com", "old.example.net"]))
        );
        assert_eq!(
            left_out(
                &blog,
                &all,
                &s(&["old.example.net", "www.blog.example.com"])
            ),
            Some(s(&["blog.example.com"]))
        );
        // Nothing failed by name (the CA was unreachable), or the domain
        // failed too: the same order without the others would fail as well.
        assert_eq!(left_out(&blog, &all, &[]), None);
        assert_eq!(
            left_out(
                &blog,
                &all,
                &s(&["www.blog.example.com", "blog.example.com"])
            ),
            None
        );
        // A name the order did not hold changes nothing.
        assert_eq!(left_out(&blog, &all, &s(&["other.example.org"])), None);
    }

    #[test]
    fn a_request_for_a_site_not_ordered_here_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let here = Domain::parse("here.example.com").unwrap();
        let gone = Domain::parse("gone.example.com").unwrap();
        let kept = request_renewal(&layout, &here).unwrap();
        let stale = request_renewal(&layout, &gone).unwrap();
        let acme = Acme::new(
            layout,
            Schema::new(""),
            AcmeConfig::default(),
            "n1".into(),
            Arc::default(),
        );
        acme.drop_stale_requests(std::slice::from_ref(&here));
        assert!(kept.exists());
        assert!(!stale.exists());
        assert!(acme.renewal_requested(&here).is_some());
    }

    #[test]
    fn tokens_are_base64url() {
        assert!(is_token("LoqXcYV8q5ONbJQxbmR7SCTNo3tiAXDfowyjxAjEuX0"));
        assert!(!is_token(""));
        assert!(!is_token("a b"));
        assert!(!is_token("../x"));
    }
}
