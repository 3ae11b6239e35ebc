//! hostyard-core: the model every hostyard binary shares.
//!
//! Each name and format has one home here: [`Domain`] for site names,
//! [`SiteKind`] for kinds and every unit/container name derived from them,
//! [`etcd::Schema`] for keys and values in etcd, and [`Layout`] for paths
//! under the data root. The node config is in hostyard-config.

pub mod aliases;
pub mod backup;
pub mod domain;
pub mod edge;
pub mod envfile;
pub mod etcd;
pub mod kind;
pub mod layout;
pub mod mail;
pub mod moving;
pub mod owner;
pub mod php;
pub mod secret;
pub mod spec;
pub mod text;

pub use domain::{Domain, DomainError};

/// The path a static-git site's deploy hook answers on, under the site's
/// own name: HAProxy sends it to hostyard-hook, not to the site.
pub const HOOK_PATH: &str = "/.well-known/hostyard/deploy";
pub use kind::{SiteKind, UnitRole};
pub use layout::{ImportLayout, Layout};
pub use spec::KindSpec;
