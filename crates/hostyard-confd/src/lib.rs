//! hostyard-confd: keeps HAProxy's routing equal to what etcd holds.
//!
//! The pure parts (the desired routing and its bad-data rules, the hold
//! rule, the rendered config) are separate from the I/O (etcd, HAProxy's
//! sockets, files), so they are unit-tested without either, and so
//! `hostyard status` computes exactly the verdicts confd does.

pub mod daemon;
pub mod etcd_feed;
pub mod haproxy;
pub mod routing;
pub mod state;
pub mod status;
