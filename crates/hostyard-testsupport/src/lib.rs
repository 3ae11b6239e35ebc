//! Real services for hostyard's tests.
//!
//! hostyard's parts talk to etcd, HAProxy, git and Docker; mocking any of them
//! would test our idea of those programs instead of the programs. This crate
//! starts the real binaries on free loopback ports, each in its own temp dir
//! holding its log, waits for readiness with bounded polls (never a fixed
//! sleep), and kills the whole process group and removes the dir on drop, so
//! tests can run in parallel and leave nothing behind.
//!
//! The API is synchronous: tests are plain `#[test]` functions. Where a client
//! library is async (etcd), a private current-thread runtime drives it.
//!
//! etcd and HAProxy are the versions a Debian 13 server runs (3.5 and 3.0),
//! taken from `PATH` and checked before the first start ([`etcd_binary`],
//! [`haproxy_binary`]); `PATH="$(scripts/test-tools.sh):$PATH"` provides them
//! on any machine.
//!
//! ```no_run
//! use std::time::Duration;
//! use hostyard_testsupport::{free_port, http_get, wait_until, Backend, Etcd, Haproxy, SocketDir};
//!
//! let etcd = Etcd::start()?;
//! etcd.put("/hostyard/sites/example.org", "{}")?;
//!
//! let sockets = SocketDir::new()?;
//! let backend = Backend::start("example.org");
//! let port = free_port();
//! let cfg = sockets.path().join("haproxy.cfg");
//! std::fs::write(&cfg, format!(
//!     "global\n  stats socket {} level admin\n\
//!      defaults\n  mode http\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\n\
//!      frontend web\n  bind 127.0.0.1:{port}\n  default_backend b\n\
//!      backend b\n  server s1 {}\n",
//!     sockets.admin_socket_path().display(), backend.addr()))?;
//! let haproxy = Haproxy::start(&cfg)?;
//! let (status, body) = wait_until("example.org to answer", Duration::from_secs(5), || {
//!     http_get(port, "example.org", "/").ok()
//! })?;
//! assert_eq!((status, body.as_str()), (200, "example.org"));
//! haproxy.reload()?;
//! # Ok::<(), anyhow::Error>(())
//! ```

mod backend;
pub mod client;
mod docker;
mod etcd;
mod fleet_ca;
mod git;
mod haproxy;
mod http;
mod pebble;
mod poll;
mod process;
mod rawtar;
mod site_ca;
mod tools;
mod tree;

pub use backend::Backend;
pub use docker::{
    busybox_http_image, docker, docker_available, require_docker, unique_name, Container, Network,
    BUSYBOX_HTTP_BODY, BUSYBOX_HTTP_IMAGE,
};
pub use etcd::{Etcd, EtcdTls};
pub use fleet_ca::{FleetCa, Issued};
pub use git::{git, GitDaemon};
pub use haproxy::{haproxy_check, Haproxy, SocketDir};
pub use http::{http_get, http_get_addr, http_get_with_headers, HttpResponse};
pub use pebble::Pebble;
pub use poll::{free_port, wait_until, wait_until_ok};
pub use process::{output_ok, process_alive};
pub use rawtar::{raw_tar, RawTarEntry};
pub use site_ca::SiteCa;
pub use tools::{etcd_binary, haproxy_binary};
pub use tree::snapshot;
