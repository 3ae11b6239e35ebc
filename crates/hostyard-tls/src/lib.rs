//! hostyard-tls: a site's HTTPS certificate, from its file to HAProxy.
//!
//! - [`acme`]: certificates ordered from an ACME CA (HTTP-01), renewed,
//!   backed off per domain, one order per domain under an etcd lock;
//! - [`challenges`]: the HTTP-01 answers in etcd kept in HAProxy's
//!   `acme.map` (file and runtime API), on every server;
//! - [`check`]: whether a PEM bundle can serve a domain (key, dates,
//!   names, chain), with one line naming the problem when not;
//! - [`decide`]: which certificate serves a site (the one precedence
//!   rule: imported, ACME's, another server's), which wins across a
//!   fleet, and when a site's leaves etcd (pure decisions);
//! - [`fleet`]: in a fleet, each site's certificate published to etcd by
//!   its hosting server and written out on every other server;
//! - [`files`]: HAProxy's certificate files: the self-signed default, the
//!   crt-list and the HTTPS policy map, written before HAProxy reads them;
//! - [`state`]: what `hostyard status` reads of it;
//! - [`trust`]: bundles from the fleet's store verified against the
//!   system's CA roots plus `tls.acme.ca_file`;
//! - [`sync`]: the loop confd runs beside its routing: every site's
//!   certificate file checked and put into HAProxy through the runtime API
//!   (no reload), files first so a restart comes back the same; a scan
//!   that only reads, a pure plan ([`sync::plan`]) and the steps carried
//!   out;
//! - [`wake`]: how the ACME and certificate threads are woken between
//!   their periodic looks (a new registration, a file ACME wrote).

pub mod acme;
pub mod challenges;
pub mod check;
pub mod decide;
pub mod files;
pub mod fleet;
pub mod state;
pub mod sync;
pub mod trust;
pub mod wake;

pub use check::{check_bundle, BadCert, Checked};
pub use files::ensure_base;
pub use state::{AcmeSite, SiteTls, TlsState};
pub use sync::CertSync;
pub use trust::Trust;

/// Locks a mutex shared between confd's threads; a thread that panicked
/// holding it left data that is still whole (plain maps).
pub(crate) fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}
