//! hostyard-tls: a site's HTTPS certificate, from its file to HAProxy.
//!
//! - [`check`]: whether a PEM bundle can serve a domain (key, dates,
//!   names, chain), with one line naming the problem when not;
//! - [`files`]: HAProxy's certificate files: the self-signed default, the
//!   crt-list and the HTTPS policy map, written before HAProxy reads them;
//! - [`state`]: what `hostyard status` reads of it;
//! - [`sync`]: the loop confd runs beside its routing: every site's
//!   certificate file checked and put into HAProxy through the runtime API
//!   (no reload), files first so a restart comes back the same.

pub mod check;
pub mod files;
pub mod state;
pub mod sync;

pub use check::{check_bundle, BadCert, Checked};
pub use files::ensure_base;
pub use state::{SiteTls, TlsState};
pub use sync::CertSync;
