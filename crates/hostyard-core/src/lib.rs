//! hostyard-core: the model every hostyard binary shares.
//!
//! Each name and format has one home here: [`Domain`] for site names,
//! [`SiteKind`] for kinds and every unit/container name derived from them,
//! [`NodeConfig`] for `/etc/hostyard/hostyard.yaml`, [`etcd::Schema`] for
//! keys and values in etcd, and [`Layout`] for paths under the data root.

pub mod backup;
pub mod config;
pub mod config_layers;
pub mod domain;
pub mod etcd;
pub mod kind;
pub mod layout;
pub mod limits;
pub mod log;
pub mod mail;
pub mod owner;
pub mod secret;
pub mod spec;

pub use config::{NodeConfig, DEFAULT_CONFIG_PATH};
pub use domain::{Domain, DomainError};
pub use kind::{SiteKind, UnitRole};
pub use layout::{ImportLayout, Layout};
pub use spec::KindSpec;
