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

mod backend;
mod docker;
mod etcd;
mod git;
mod haproxy;
mod http;
mod poll;
mod process;

pub use backend::Backend;
pub use docker::{
    busybox_http_image, docker, docker_available, require_docker, unique_name, Container,
    BUSYBOX_HTTP_BODY, BUSYBOX_HTTP_IMAGE,
};
pub use etcd::Etcd;
pub use git::GitDaemon;
pub use haproxy::{haproxy_check, Haproxy, SocketDir};
pub use http::{http_get, http_get_addr, http_get_with_headers, HttpResponse};
pub use poll::{free_port, wait_until, wait_until_ok};
pub use process::process_alive;
