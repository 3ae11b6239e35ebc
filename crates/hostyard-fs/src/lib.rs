//! hostyard's one home for putting files on disk.
//!
//! Every binary that writes something a reader may see at any moment (a
//! unit for systemd, a map for HAProxy, a site's secrets, a published tree)
//! goes through here, so the rules are written and tested once:
//!
//! - [`AtomicWrite`]: a temporary file in the same directory, renamed into
//!   place, so a reader sees the old file or the new one, never half;
//! - [`sync_file`], [`sync_dir`], [`sync_filesystem`]: making a write or a
//!   rename durable, at the moment the caller chooses;
//! - [`read_if_exists`]: a file that may not be written yet;
//! - [`rename_no_replace`]: a rename that fails instead of replacing;
//! - [`temporary_sibling`], [`switch_link`], [`remove_stale_temporaries`]:
//!   publishing a directory or a symlink by rename, and cleaning up after
//!   a writer that was killed half-way;
//! - [`unpack`]: placing someone else's files (a tarball, a folder, a `git
//!   archive`) under a root without ever leaving it, within caps;
//! - [`kind`]: the site's kind its importer recorded;
//! - [`beneath`]: reading a tree its owner may change meanwhile (a live
//!   site's `wp-content/`) without ever leaving it.

pub mod archive_path;
pub mod beneath;
mod durable;
pub mod kind;
mod publish;
pub mod unpack;
mod write;

pub use durable::{exchange, rename_no_replace, sync_dir, sync_file, sync_filesystem};
pub use publish::{remove_stale_temporaries, switch_link, temporary_sibling};
pub use write::{make_dirs, private_dir, read_if_exists, read_json_if_exists, AtomicWrite};
