//! A router under test: a temp data root, a node config built in code, the
//! real `hostyard-confd` binary as a child (killed on drop), and the real
//! HAProxy on the config confd wrote.

use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use hostyard_config::NodeConfig;
use hostyard_config::{FleetConfig, FleetPeer};
use hostyard_core::etcd::{Schema, ServiceValue, SiteDecl};
use hostyard_core::{Domain, Layout, SiteKind};
use hostyard_testsupport::{free_port, http_get, wait_until, Backend, Etcd, Haproxy};

pub const T: Duration = Duration::from_secs(10);

pub fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

pub struct Router {
    pub dir: tempfile::TempDir,
    pub config: NodeConfig,
    pub config_path: PathBuf,
    pub layout: Layout,
    pub schema: Schema,
    pub port: u16,
    pub confd: Option<Confd>,
    pub haproxy: Option<Haproxy>,
}

impl Router {
    /// A config for `etcd`; HAProxy listens on a free loopback port.
    pub fn new(etcd: &Etcd) -> Router {
        // Under /tmp: HAProxy's socket paths must stay short.
        let dir = tempfile::Builder::new()
            .prefix("hyc")
            .tempdir_in("/tmp")
            .unwrap();
        let port = free_port();
        let mut config = NodeConfig {
            data_root: dir.path().join("data"),
            ..NodeConfig::default()
        };
        config.etcd.endpoints = vec![etcd.endpoint()];
        config.haproxy.bind_address = "127.0.0.1".parse().unwrap();
        config.haproxy.http_port = port;
        config.haproxy.https_port = free_port();
        // confd's `haproxy -c` with the HAProxy the tests run (3.0, as on
        // Debian 13), not the default /usr/sbin/haproxy of the host.
        config.haproxy.check_binary = hostyard_testsupport::haproxy_binary().unwrap();
        // The test backends listen on loopback, which confd refuses unless
        // the very address is listed (a registration may not publish the
        // server itself).
        config.confd.allowed_networks = vec!["127.0.0.1/32".parse().unwrap()];
        let config_path = dir.path().join("hostyard.yaml");
        let layout = Layout::new(&config.data_root);
        let r = Router {
            schema: Schema::new(&config.etcd.prefix),
            dir,
            config,
            config_path,
            layout,
            port,
            confd: None,
            haproxy: None,
        };
        r.write_config();
        r
    }

    pub fn write_config(&self) {
        let text = yaml_serde::to_string(&self.config).unwrap();
        std::fs::write(&self.config_path, text).unwrap();
    }

    /// Starts confd and waits for READY=1 on a notify socket, as systemd would.
    pub fn start_confd(&mut self) {
        self.confd = Some(Confd::start(&self.config_path, self.dir.path()));
    }

    /// Starts HAProxy on the files confd wrote, with its master socket
    /// where confd looks for it.
    pub fn start_haproxy(&mut self) {
        let h = Haproxy::start(&self.layout.haproxy_cfg()).unwrap();
        let link = self.layout.haproxy_master_socket();
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(h.master_socket(), &link).unwrap();
        self.haproxy = Some(h);
    }

    pub fn start(&mut self) {
        self.start_confd();
        self.start_haproxy();
    }

    pub fn haproxy(&self) -> &Haproxy {
        self.haproxy.as_ref().unwrap()
    }

    pub fn get(&self, host: &str) -> (u16, String) {
        http_get(self.port, host, "/").unwrap_or((0, String::new()))
    }

    /// Waits until `host` answers `status` with a body containing `body`.
    pub fn wait_for(&self, host: &str, status: u16, body: &str) {
        let mut last = (0, String::new());
        let r = wait_until(&format!("{host} -> {status} {body:?}"), T, || {
            last = self.get(host);
            (last.0 == status && last.1.contains(body)).then_some(())
        });
        if let Err(e) = r {
            panic!(
                "{e:#}; last answer {last:?}\nconfd log:\n{}",
                self.confd_log()
            );
        }
    }

    pub fn confd_log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("confd.log")).unwrap_or_default()
    }

    /// Whether HTTPS for `host` through this router's HAProxy verifies
    /// against `ca` (curl: any answer).
    #[allow(dead_code, reason = "for acme.rs and the tls bench, not confd.rs")]
    pub fn https_verifies(&self, host: &str, ca: &Path) -> bool {
        let port = self.config.haproxy.https_port;
        Command::new("curl")
            .args(["-s", "-o", "/dev/null", "--max-time", "5", "--cacert"])
            .arg(ca)
            .arg("--resolve")
            .arg(format!("{host}:{port}:127.0.0.1"))
            .arg(format!("https://{host}:{port}/"))
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    }

    /// Writes the config and has the running confd read it (SIGHUP).
    pub fn apply_config(&self) {
        self.write_config();
        self.confd.as_ref().unwrap().signal("HUP");
    }

    /// Waits until HAProxy's worker is another than `old` (a reload).
    pub fn wait_new_worker(&self, what: &str, old: u32) {
        wait_until(what, T, || {
            (self.haproxy().worker_pid().ok()? != old).then_some(())
        })
        .unwrap();
    }

    /// A router, started.
    pub fn started(etcd: &Etcd) -> Router {
        let mut r = Router::new(etcd);
        r.start();
        r
    }

    /// A started router with one static site, `domain`, registered after
    /// the start (routed from a watch event) to a new backend answering
    /// `body`.
    pub fn routed(etcd: &Etcd, domain: &str, body: &str) -> (Router, Backend) {
        Router::routed_site(etcd, domain, body, false)
    }

    /// As [`Router::routed`], the site registered before the start (routed
    /// from confd's first full read).
    pub fn routed_from_start(etcd: &Etcd, domain: &str, body: &str) -> (Router, Backend) {
        Router::routed_site(etcd, domain, body, true)
    }

    fn routed_site(etcd: &Etcd, domain: &str, body: &str, before: bool) -> (Router, Backend) {
        let mut r = Router::new(etcd);
        let backend = Backend::start(body);
        if !before {
            r.start();
        }
        r.register(etcd, SiteKind::Static, domain, backend.port());
        if before {
            r.start();
        }
        r.wait_for(domain, 200, body);
        (r, backend)
    }

    /// Waits until the state file's `key` passes `test` (e.g.
    /// `Value::is_null`: not there).
    pub fn wait_state(&self, what: &str, key: &str, test: fn(&serde_json::Value) -> bool) {
        wait_until(what, T, || test(&self.state()[key]).then_some(())).unwrap();
    }

    pub fn state(&self) -> serde_json::Value {
        let raw = std::fs::read(self.layout.confd_state()).unwrap();
        serde_json::from_slice(&raw).unwrap()
    }

    pub fn register(&self, etcd: &Etcd, kind: SiteKind, domain: &str, port: u16) {
        let domain = d(domain);
        let decl = SiteDecl {
            kind,
            aliases: vec![],
            edge: Default::default(),
            php: Default::default(),
        };
        etcd.put(&self.schema.site_key(&domain), &decl.to_json())
            .unwrap();
        self.put_service(etcd, kind, &domain, port);
    }

    pub fn put_service(&self, etcd: &Etcd, kind: SiteKind, domain: &Domain, port: u16) {
        let v = ServiceValue {
            ip: "127.0.0.1".parse().unwrap(),
            port,
            node: None,
        };
        etcd.put(&self.schema.service_key(kind, domain), &v.to_json())
            .unwrap();
    }
}

pub struct Confd {
    pub child: Child,
    notify: UnixDatagram,
}

impl Confd {
    pub fn start(config: &Path, dir: &Path) -> Confd {
        Confd::start_with_env(config, dir, &[])
    }

    pub fn start_with_env(config: &Path, dir: &Path, env: &[(&str, &str)]) -> Confd {
        let sock = dir.join("notify.sock");
        let _ = std::fs::remove_file(&sock);
        let notify = UnixDatagram::bind(&sock).unwrap();
        notify
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("confd.log"))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
            .envs(env.iter().copied())
            .arg("--config")
            .arg(config)
            .env("NOTIFY_SOCKET", &sock)
            .env_remove("HOSTYARD_CONFIG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut c = Confd { child, notify };
        let deadline = Instant::now() + T;
        let mut buf = [0u8; 512];
        loop {
            if let Ok(n) = c.notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains("READY=1") {
                    return c;
                }
            }
            if let Ok(Some(status)) = c.child.try_wait() {
                let text = std::fs::read_to_string(dir.join("confd.log")).unwrap_or_default();
                panic!("confd exited with {status} before READY=1:\n{text}");
            }
            if Instant::now() > deadline {
                let text = std::fs::read_to_string(dir.join("confd.log")).unwrap_or_default();
                panic!("confd not READY within {T:?}:\n{text}");
            }
        }
    }

    /// Waits (bounded) for a notify message containing `what`.
    pub fn wait_notify(&self, what: &str) -> bool {
        let deadline = Instant::now() + T;
        let mut buf = [0u8; 512];
        while Instant::now() < deadline {
            if let Ok(n) = self.notify.recv(&mut buf) {
                if String::from_utf8_lossy(&buf[..n]).contains(what) {
                    return true;
                }
            }
        }
        false
    }

    /// Sends a signal by name (`"TERM"`, `"HUP"`, ...). Done with kill(2)
    /// rather than the `kill` program, which a minimal machine lacks.
    pub fn signal(&self, sig: &str) {
        let sig: nix::sys::signal::Signal = format!("SIG{sig}").parse().unwrap();
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        nix::sys::signal::kill(pid, sig).unwrap_or_else(|e| panic!("kill -s {sig}: {e}"));
    }

    /// SIGTERM and wait (bounded) for the exit status.
    pub fn stop(mut self) -> ExitStatus {
        self.signal("TERM");
        let deadline = Instant::now() + T;
        loop {
            if let Some(s) = self.child.try_wait().unwrap() {
                return s;
            }
            assert!(Instant::now() < deadline, "confd ignored SIGTERM");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Confd {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// The fleet settings of server `name` among `servers` (name, private
/// address): every other one is its peer, all on `peer_port`.
#[allow(
    dead_code,
    reason = "for the fleet tests; util is in every test binary"
)]
pub fn fleet_among(servers: &[(&str, &str)], name: &str, peer_port: u16) -> FleetConfig {
    let address = |a: &str| a.parse().expect("a test address");
    let own = servers
        .iter()
        .find(|(n, _)| *n == name)
        .expect("name is one of servers");
    FleetConfig {
        private_address: Some(address(own.1)),
        peer_port,
        peers: servers
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, a)| FleetPeer {
                name: n.to_string(),
                address: address(a),
            })
            .collect(),
        ..fleet_tls(name, own.1)
    }
}

/// A fleet config with only the TLS files set: server `name`'s certificate
/// (for `address`) of one fleet CA that every test of this binary shares.
#[allow(
    dead_code,
    reason = "for the fleet tests; util is in every test binary"
)]
pub fn fleet_tls(name: &str, address: &str) -> FleetConfig {
    static CA: std::sync::OnceLock<hostyard_testsupport::FleetCa> = std::sync::OnceLock::new();
    let ca = CA.get_or_init(|| {
        // In the build's dir for test files (a few small files a run): the
        // running servers read them until the last test ends.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("fleet-ca-{}", std::process::id()));
        hostyard_testsupport::FleetCa::new(&dir, "fleet").expect("a test CA")
    });
    let issued = ca
        .issue_server(name, address.parse().expect("a test address"))
        .expect("a test certificate");
    FleetConfig {
        ca_file: ca.ca_file(),
        cert_file: issued.cert_file,
        key_file: issued.key_file,
        ..FleetConfig::default()
    }
}
