//! hostyard-backup: a site's export in the original migration layout, and
//! its backups in a restic repository.
//!
//! One format for everything that moves a site: `export` writes the layout
//! the importer reads (`TLS/`, `static/www-content/`, `static-git/GITURL`,
//! `mysql/dump.sql`, `wordpress/wp-content/`, ...), a backup is an export
//! stored with restic, and a restore puts a snapshot's export where the
//! importer looks for it (`import/<domain>/`), so a restored site goes
//! through the same staged, atomic, never-overwriting import as any other.
//! A refresh applies a newer export to a stopped site (a move's second copy).

pub mod db;
pub mod export;
pub mod fingerprint;
pub mod refresh;
pub mod restic;
pub mod restore;
pub mod skip;
pub mod state;

pub use export::{export, export_watched, site_kind};
