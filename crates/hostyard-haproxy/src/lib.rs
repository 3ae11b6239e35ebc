//! hostyard-haproxy: everything hostyard says to HAProxy, in one place.
//!
//! - [`config`]: haproxy.cfg rendered from the node config, `haproxy -c`,
//!   the error pages, and how HAProxy's files are written;
//! - [`map`]: the host map's format (`hosts.map` and `show map`);
//! - [`runtime`]: the runtime API on the admin socket (maps, certificates);
//! - [`master`]: the master CLI's hitless reload.
//!
//! confd drives HAProxy with it; `hostyard status` reads HAProxy's view
//! through it.

pub mod config;
pub mod map;
pub mod master;
pub mod runtime;

pub use config::{check_cfg, render_cfg, write_peer_tls, FILE, PAGE_404, PAGE_503, SECRET_FILE};
pub use map::{parse_generation, parse_map, render_map, write_map, Entry, HostMap, GENERATION_KEY};
pub use master::reload;
pub use runtime::{CliError, MapApi, Session, SslApi};
