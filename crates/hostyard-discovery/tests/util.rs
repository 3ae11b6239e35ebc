//! A site under test: real etcd, a real container on its own docker network,
//! and the real `hostyard-discovery` binary as a child (killed on drop).

#![allow(dead_code)]

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::time::{Duration, Instant};

use hostyard_config::NodeConfig;
use hostyard_core::etcd::{Schema, ServiceValue};
use hostyard_core::{Domain, SiteKind};
pub use hostyard_testsupport::Network;
use hostyard_testsupport::{busybox_http_image, unique_name, wait_until, Etcd};

pub const T: Duration = Duration::from_secs(20);
pub const BIN: &str = env!("CARGO_BIN_EXE_hostyard-discovery");

pub fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

/// A name no other test (or test run) uses, usable as a DNS label.
pub fn unique(prefix: &str) -> String {
    unique_name(prefix)
}

/// A node config for tests: short intervals, this etcd, this network.
pub struct Node {
    pub dir: tempfile::TempDir,
    pub config: NodeConfig,
    pub config_path: PathBuf,
    pub schema: Schema,
}

impl Node {
    pub fn new(etcd: &Etcd, network: &str) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("hyd")
            .tempdir_in("/tmp")
            .unwrap();
        let mut config = NodeConfig {
            node_name: "n1".into(),
            ..NodeConfig::default()
        };
        config.etcd.endpoints = vec![etcd.endpoint()];
        config.docker.binary = which_docker();
        config.docker.network = network.to_string();
        config.discovery.ttl = std::time::Duration::from_secs(6);
        config.discovery.interval_secs = 1;
        config.discovery.timeout_secs = 1;
        config.discovery.failures = 3;
        let config_path = dir.path().join("hostyard.yaml");
        let node = Node {
            schema: Schema::new(&config.etcd.prefix),
            dir,
            config,
            config_path,
        };
        node.write_config();
        node
    }

    /// Another server of the same fleet: the same etcd and network, its
    /// own node name (and config file).
    pub fn other(etcd: &Etcd, network: &str, name: &str) -> Node {
        let mut node = Node::new(etcd, network);
        node.config.node_name = name.to_string();
        node.write_config();
        node
    }

    pub fn write_config(&self) {
        std::fs::write(
            &self.config_path,
            yaml_serde::to_string(&self.config).unwrap(),
        )
        .unwrap();
    }

    pub fn run(&self, kind: SiteKind, domain: &Domain) -> Discovery {
        Discovery::start(&self.config_path, self.dir.path(), kind, domain, &[])
    }

    /// As [`Node::run`], with extra environment (NOTIFY_SOCKET, ...).
    pub fn run_with_env(
        &self,
        kind: SiteKind,
        domain: &Domain,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Discovery {
        Discovery::start(&self.config_path, self.dir.path(), kind, domain, env)
    }

    /// Runs the binary to completion with these arguments after `--config`.
    pub fn exec(&self, args: &[&str]) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config_path)
            .args(args)
            .env_remove("HOSTYARD_CONFIG")
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .stdin(Stdio::null())
            .output()
            .unwrap()
    }
}

fn which_docker() -> PathBuf {
    for p in ["/usr/bin/docker", "/usr/local/bin/docker"] {
        if Path::new(p).exists() {
            return PathBuf::from(p);
        }
    }
    panic!("no docker client (apt-get install docker.io, or run scripts/test.sh)");
}

/// A running `hostyard-discovery run`, its stderr in a file.
pub struct Discovery {
    pub child: Child,
    pub log: PathBuf,
}

impl Discovery {
    fn start(
        config: &Path,
        dir: &Path,
        kind: SiteKind,
        domain: &Domain,
        env: &[(&str, &std::ffi::OsStr)],
    ) -> Discovery {
        let log = dir.join(format!("discovery-{}.log", unique("")));
        let err = std::fs::File::create(&log).unwrap();
        let child = Command::new(BIN)
            .arg("--config")
            .arg(config)
            .args(["run", kind.as_str(), domain.as_str()])
            .env_remove("NOTIFY_SOCKET")
            .env_remove("WATCHDOG_USEC")
            .env_remove("WATCHDOG_PID")
            .env_remove("HOSTYARD_CONFIG")
            .envs(env.iter().copied())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(err)
            .spawn()
            .unwrap();
        Discovery { child, log }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Waits until the log has a line containing `needle`.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        wait_until(&format!("discovery to log {needle:?}"), timeout, || {
            self.log_text().contains(needle).then_some(())
        })
        .unwrap_or_else(|e| panic!("{e}; log so far:\n{}", self.log_text()));
    }

    pub fn signal(&self, sig: nix::sys::signal::Signal) {
        let pid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        nix::sys::signal::kill(pid, sig).unwrap();
    }

    pub fn wait_exit(&mut self, timeout: Duration) -> ExitStatus {
        let start = Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                start.elapsed() < timeout,
                "discovery did not exit within {timeout:?}; log:\n{}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Discovery {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One change of a key as etcd's history has it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Put { value: String, lease: i64 },
    Delete,
}

impl Change {
    /// The server named in a put's registration value.
    pub fn node(&self) -> Option<String> {
        match self {
            Change::Put { value, .. } => ServiceValue::parse(value.as_bytes()).ok()?.node,
            Change::Delete => None,
        }
    }
}

/// Every change of `key` from revision `from` to now, read back with a
/// watch from that revision: what any watcher (confd) saw, in order.
pub fn history(etcd: &Etcd, key: &str, from: i64) -> Vec<Change> {
    let upto = etcd.revision().unwrap();
    etcd.with_client("watch history", |mut c| async move {
        let options = etcd_client::WatchOptions::new().with_start_revision(from);
        let mut stream = c.watch(key, Some(options)).await?;
        let mut out = Vec::new();
        // History comes at once; a second of quiet means it is all here
        // (the bound also ends a watch that never answers).
        'read: while let Ok(Ok(Some(resp))) =
            tokio::time::timeout(Duration::from_secs(1), stream.message()).await
        {
            for event in resp.events() {
                let Some(kv) = event.kv() else { continue };
                if kv.mod_revision() > upto {
                    break 'read;
                }
                out.push(match event.event_type() {
                    etcd_client::EventType::Put => Change::Put {
                        value: String::from_utf8_lossy(kv.value()).into_owned(),
                        lease: kv.lease(),
                    },
                    etcd_client::EventType::Delete => Change::Delete,
                });
            }
        }
        Ok(out)
    })
    .unwrap()
}

/// Waits for the process to end; `None` if it still runs after `timeout`.
pub fn exited_within(d: &mut Discovery, timeout: Duration) -> Option<ExitStatus> {
    wait_until("discovery to exit", timeout, || d.child.try_wait().unwrap()).ok()
}

/// The registration as etcd holds it now.
pub fn registration(etcd: &Etcd, key: &str) -> Option<ServiceValue> {
    etcd.get(key)
        .unwrap()
        .map(|v| ServiceValue::parse(v.as_bytes()).unwrap())
}

pub fn wait_registered_at(etcd: &Etcd, key: &str, ip: IpAddr, d: &Discovery) -> ServiceValue {
    wait_until(&format!("{key} to point at {ip}"), T, || {
        registration(etcd, key).filter(|v| v.ip == ip)
    })
    .unwrap_or_else(|e| panic!("{e}; discovery log:\n{}", d.log_text()))
}

pub fn wait_gone(etcd: &Etcd, key: &str, timeout: Duration, d: &Discovery) {
    wait_until(&format!("{key} to be removed"), timeout, || {
        etcd.get(key).unwrap().is_none().then_some(())
    })
    .unwrap_or_else(|e| panic!("{e}; discovery log:\n{}", d.log_text()))
}

// --- docker -------------------------------------------------------------

pub fn docker_ok(args: &[&str]) -> String {
    hostyard_testsupport::docker(args).unwrap_or_else(|e| panic!("{e:#}"))
}

/// A busybox httpd container on a test network (the harness's guard
/// removes it on drop).
pub struct Container {
    pub name: String,
    _guard: hostyard_testsupport::Container,
}

impl Container {
    /// The site container for (kind, domain), serving HTTP on port 80.
    pub fn site(kind: SiteKind, domain: &Domain, network: &Network) -> Container {
        Self::run(&kind.container_name(domain), network)
    }

    pub fn run(name: &str, network: &Network) -> Container {
        let image = busybox_http_image().unwrap_or_else(|e| panic!("{e:#}"));
        let guard = hostyard_testsupport::Container::run(&[
            "--name",
            name,
            "--network",
            &network.name,
            &image,
        ])
        .unwrap_or_else(|e| panic!("{e:#}"));
        Container {
            name: name.to_string(),
            _guard: guard,
        }
    }

    /// The address on `network` (the one discovery must find).
    pub fn ip(&self, network: &Network) -> IpAddr {
        let format = format!(
            "{{{{(index .NetworkSettings.Networks \"{}\").IPAddress}}}}",
            network.name
        );
        docker_ok(&["inspect", "--format", &format, &self.name])
            .parse()
            .unwrap()
    }

    /// The container's main process as the host sees it.
    fn host_pid(&self) -> nix::unistd::Pid {
        let pid: i32 = docker_ok(&["inspect", "--format", "{{.State.Pid}}", &self.name])
            .parse()
            .unwrap();
        nix::unistd::Pid::from_raw(pid)
    }

    /// Freezes the web server with SIGSTOP from the host: the kernel still
    /// accepts connections on its socket, but nothing ever answers.
    pub fn hang(&self) {
        nix::sys::signal::kill(self.host_pid(), nix::sys::signal::Signal::SIGSTOP).unwrap();
    }

    pub fn resume(&self) {
        nix::sys::signal::kill(self.host_pid(), nix::sys::signal::Signal::SIGCONT).unwrap();
    }

    /// Removes the container now (as dropping does).
    pub fn remove(self) {}
}

/// A unix socket that accepts connections and never answers, standing in
/// for a hung docker engine. Counts the connections; stops on drop.
pub struct HungEngine {
    pub path: PathBuf,
    accepted: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HungEngine {
    pub fn start(path: &Path) -> HungEngine {
        use std::sync::atomic::Ordering;
        let listener = std::os::unix::net::UnixListener::bind(path).unwrap();
        // Non-blocking, so that the thread sees `stop` between accepts.
        listener.set_nonblocking(true).unwrap();
        let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let thread = {
            let (accepted, stop) = (accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut held = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            held.push(stream);
                            accepted.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(_) => std::thread::sleep(Duration::from_millis(10)),
                    }
                }
            })
        };
        HungEngine {
            path: path.to_path_buf(),
            accepted,
            stop,
            thread: Some(thread),
        }
    }

    pub fn connections(&self) -> usize {
        self.accepted.load(std::sync::atomic::Ordering::Relaxed)
    }
}

impl Drop for HungEngine {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Whether a TCP connection from this network namespace to `to` is
/// established: with the site frozen, that is a check in flight. Read from
/// `/proc/net/tcp`, whose addresses are the raw network-order words
/// printed as native integers (so `to_ne_bytes` gives the bytes back on
/// any architecture).
pub fn connected_to(to: std::net::SocketAddr) -> bool {
    let std::net::SocketAddr::V4(to) = to else {
        panic!("{to}: only IPv4 sites here");
    };
    let table = std::fs::read_to_string("/proc/net/tcp").unwrap();
    table.lines().skip(1).any(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let (Some(remote), Some(state)) = (fields.get(2), fields.get(3)) else {
            return false;
        };
        let Some((ip, port)) = remote.split_once(':') else {
            return false;
        };
        let (Ok(ip), Ok(port)) = (u32::from_str_radix(ip, 16), u16::from_str_radix(port, 16))
        else {
            return false;
        };
        // 01: TCP_ESTABLISHED.
        *state == "01"
            && std::net::Ipv4Addr::from(ip.to_ne_bytes()) == *to.ip()
            && port == to.port()
    })
}
