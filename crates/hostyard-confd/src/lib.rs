//! hostyard-confd: keeps HAProxy's routing equal to what etcd holds.
//!
//! The decisions are made elsewhere, so they are unit-tested without etcd
//! or HAProxy and shared with `hostyard status`: the desired routing, its
//! bad-data rules and the hold rule in `hostyard-routing`, the config, the
//! map format and HAProxy's sockets in `hostyard-haproxy`. Here: the etcd
//! feed ([`etcd_feed`]), confd's own decisions as pure functions of
//! (state, event) ([`decide`]: the hold state machine, what one apply
//! sends, config installs and reloads, when to apply), the thin loop that
//! carries them out ([`daemon`]), and what it leaves to blocking threads
//! ([`background`]: the map's fsync, the state file); ACME's challenges
//! and orders on a thread of their own ([`acme`]); the sites' path
//! redirects on another ([`edge`]), the WordPress sites' PHP limits on a
//! third ([`php`]).

pub mod acme;
pub mod background;
pub mod daemon;
pub mod decide;
pub mod edge;
pub mod etcd_feed;
mod follow;
pub mod php;
