//! hostyard: the unit generator and the admin CLI.
//!
//! The generator is split the way it is tested: [`units`] is a pure function
//! from the node config to unit files, [`write`] is the thin layer that puts
//! them on disk atomically, and the binary only parses flags and runs one
//! module per subcommand (`src/cmd/`). [`config_get`]
//! answers `hostyard config get KEY` for scripts; [`mail`] renders postfix's
//! config from the forward files; [`site`] forgets a site's declaration.

pub mod config_get;
pub mod escape;
pub mod etcd_check;
pub mod fleet;
pub mod hook;
pub mod image_id;
pub mod mail;
pub mod moving;
pub mod names;
pub mod owner;
pub mod php;
pub mod site;
pub mod status;
pub mod tls;
pub mod units;
pub mod wordpress;
pub mod write;
