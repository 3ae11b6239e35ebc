//! A real single-member etcd on loopback, with a small synchronous client.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;
use std::time::Duration;

use anyhow::Context;
use etcd_client::{
    Certificate, Client, ConnectOptions, DeleteOptions, GetOptions, Identity, PutOptions,
    TlsOptions,
};
use nix::sys::signal::Signal;
use tempfile::TempDir;
use tokio::runtime::Runtime;

use crate::poll::{try_free_port, wait_until};
use crate::process::Service;
use crate::tools::etcd_binary;

/// etcd on an idle machine answers /health well under a second; parallel
/// test binaries on two cores can make it much slower.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How often start() picks new ports after losing the free-port race.
const PORT_ATTEMPTS: usize = 3;

/// A running etcd (3.5, as on Debian 13: see [`crate::etcd_binary`]) with
/// its own data dir and ports.
pub struct Etcd {
    bin: PathBuf,
    dir: TempDir,
    client_port: u16,
    peer_port: u16,
    service: Option<Service>,
    rt: Runtime,
    client: Mutex<Option<Client>>,
    tls: Option<EtcdTls>,
    /// `ETCD_*` settings from the environment, as an EnvironmentFile= gives
    /// them to a fleet member's etcd.
    env: Vec<(String, String)>,
}

/// The files of a member that speaks TLS only and authenticates clients by
/// their certificate (`--client-cert-auth`), and the identity the harness's
/// own client uses (etcd's `root`, to set up users and roles).
#[derive(Debug, Clone)]
pub struct EtcdTls {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

impl Etcd {
    /// Starts etcd on free ports with a fresh data dir and waits until it is
    /// healthy.
    pub fn start() -> anyhow::Result<Etcd> {
        Etcd::start_with(None, Vec::new())
    }

    /// Starts a member whose client URL is https:// and that takes the user
    /// from each client's certificate; health is read from a plain http
    /// metrics listener on loopback, which serves no keys.
    pub fn start_tls(tls: EtcdTls) -> anyhow::Result<Etcd> {
        Etcd::start_with(Some(tls), Vec::new())
    }

    /// [`Etcd::start_tls`] with more settings in etcd's environment
    /// (`ETCD_PEER_CERT_ALLOWED_HOSTNAME=...`, as a member.env sets them).
    pub fn start_tls_env(tls: EtcdTls, env: Vec<(String, String)>) -> anyhow::Result<Etcd> {
        Etcd::start_with(Some(tls), env)
    }

    fn start_with(tls: Option<EtcdTls>, env: Vec<(String, String)>) -> anyhow::Result<Etcd> {
        let bin = etcd_binary()?;
        let dir = tempfile::Builder::new()
            .prefix("hostyard-etcd-")
            .tempdir()
            .context("creating etcd temp dir")?;
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .context("building tokio runtime for the etcd client")?;
        let log = dir.path().join("etcd.log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let (client_port, peer_port) = (try_free_port()?, try_free_port()?);
            match launch(&bin, dir.path(), client_port, peer_port, tls.as_ref(), &env) {
                Ok(service) => {
                    return Ok(Etcd {
                        bin,
                        dir,
                        client_port,
                        peer_port,
                        service: Some(service),
                        rt,
                        client: Mutex::new(None),
                        tls,
                        env,
                    })
                }
                Err(e) => {
                    let lost_race = std::fs::read_to_string(&log)
                        .map(|text| text.contains("address already in use"))
                        .unwrap_or(false);
                    if !lost_race || attempt >= PORT_ATTEMPTS {
                        // Keep the dir so the log named in the error survives.
                        let _kept = dir.keep();
                        return Err(e);
                    }
                    // Another process took a port: try new ones on clean data.
                    let _ = std::fs::remove_dir_all(dir.path().join("data"));
                }
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for `--endpoints` or a node config.
    pub fn endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.client_port)
    }

    /// The peer URL, `https://127.0.0.1:PORT` with TLS.
    pub fn peer_endpoint(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://127.0.0.1:{}", self.peer_port)
    }

    /// The temp dir holding `data/` and `etcd.log`.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("etcd.log")
    }

    /// Stops etcd gracefully (SIGTERM, then waits). The data dir and ports
    /// are kept for [`Etcd::start_again`]. Clients see connection errors.
    pub fn stop(&mut self) {
        if let Some(mut s) = self.service.take() {
            s.stop(Signal::SIGTERM, Duration::from_secs(10));
        }
        self.reset_client();
    }

    /// Starts etcd again on the same ports and data: an "etcd restart".
    pub fn start_again(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.launch()
    }

    fn launch(&mut self) -> anyhow::Result<()> {
        self.service = Some(launch(
            &self.bin,
            self.dir.path(),
            self.client_port,
            self.peer_port,
            self.tls.as_ref(),
            &self.env,
        )?);
        Ok(())
    }

    fn reset_client(&self) {
        if let Ok(mut c) = self.client.lock() {
            *c = None;
        }
    }

    /// Runs `f` with the harness's client (etcd's root for a TLS member):
    /// for what the helpers below do not cover, such as users and roles.
    pub fn with_client<T, F, Fut>(&self, what: &str, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        self.call(what, f)
    }

    /// Runs one async client call on the private runtime.
    fn call<T, F, Fut>(&self, what: &str, f: F) -> anyhow::Result<T>
    where
        F: FnOnce(Client) -> Fut,
        Fut: std::future::Future<Output = Result<T, etcd_client::Error>>,
    {
        let endpoint = self.endpoint();
        let cached = self.client.lock().ok().and_then(|c| c.clone());
        let client = match cached {
            Some(c) => c,
            None => {
                let opts = ConnectOptions::new()
                    .with_connect_timeout(Duration::from_secs(5))
                    .with_timeout(Duration::from_secs(10));
                let opts = match &self.tls {
                    None => opts,
                    Some(tls) => {
                        let read = |p: &PathBuf| {
                            std::fs::read(p).with_context(|| format!("reading {}", p.display()))
                        };
                        opts.with_tls(
                            TlsOptions::new()
                                .ca_certificate(Certificate::from_pem(read(&tls.ca)?))
                                .identity(Identity::from_pem(
                                    read(&tls.client_cert)?,
                                    read(&tls.client_key)?,
                                )),
                        )
                    }
                };
                let c = self
                    .rt
                    .block_on(Client::connect([endpoint.as_str()], Some(opts)))
                    .with_context(|| format!("connecting to etcd at {endpoint}"))?;
                if let Ok(mut slot) = self.client.lock() {
                    *slot = Some(c.clone());
                }
                c
            }
        };
        self.rt
            .block_on(f(client))
            .with_context(|| format!("etcd {what} at {endpoint}"))
    }

    pub fn put(&self, key: &str, value: &str) -> anyhow::Result<()> {
        self.call(&format!("put {key}"), |mut c| async move {
            c.put(key, value, None).await.map(drop)
        })
    }

    /// Puts `key` attached to a new lease of `ttl_secs` (never kept alive),
    /// and returns the lease id. etcd rounds short TTLs up to its minimum
    /// (about 2 s with default timings).
    pub fn put_with_lease(&self, key: &str, value: &str, ttl_secs: i64) -> anyhow::Result<i64> {
        self.call(&format!("put {key} with lease"), |mut c| async move {
            let lease = c.lease_grant(ttl_secs, None).await?.id();
            c.put(key, value, Some(PutOptions::new().with_lease(lease)))
                .await?;
            Ok(lease)
        })
    }

    pub fn get(&self, key: &str) -> anyhow::Result<Option<String>> {
        let kvs = self.call(&format!("get {key}"), |mut c| async move {
            let resp = c.get(key, None).await?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| kv.value().to_vec())
                .collect::<Vec<_>>())
        })?;
        kvs.into_iter()
            .next()
            .map(|v| String::from_utf8(v).with_context(|| format!("value of {key} is not UTF-8")))
            .transpose()
    }

    /// Every key under `prefix` with its value, sorted by key.
    pub fn get_prefix(&self, prefix: &str) -> anyhow::Result<Vec<(String, String)>> {
        let kvs = self.call(&format!("get prefix {prefix}"), |mut c| async move {
            let resp = c.get(prefix, Some(GetOptions::new().with_prefix())).await?;
            Ok(resp
                .kvs()
                .iter()
                .map(|kv| (kv.key().to_vec(), kv.value().to_vec()))
                .collect::<Vec<_>>())
        })?;
        kvs.into_iter()
            .map(|(k, v)| {
                let k = String::from_utf8(k).context("etcd key is not UTF-8")?;
                let v =
                    String::from_utf8(v).with_context(|| format!("value of {k} is not UTF-8"))?;
                Ok((k, v))
            })
            .collect()
    }

    pub fn delete(&self, key: &str) -> anyhow::Result<()> {
        self.call(&format!("delete {key}"), |mut c| async move {
            c.delete(key, None).await.map(drop)
        })
    }

    pub fn delete_prefix(&self, prefix: &str) -> anyhow::Result<()> {
        self.call(&format!("delete prefix {prefix}"), |mut c| async move {
            c.delete(prefix, Some(DeleteOptions::new().with_prefix()))
                .await
                .map(drop)
        })
    }

    /// The lease `key` is attached to; `None` if the key is missing or has
    /// no lease.
    pub fn lease_of(&self, key: &str) -> anyhow::Result<Option<i64>> {
        self.call(&format!("get {key}"), |mut c| async move {
            let resp = c.get(key, None).await?;
            Ok(resp.kvs().first().map(|kv| kv.lease()).filter(|&l| l != 0))
        })
    }

    /// Compacts history at the current revision, so watchers resuming from
    /// an older revision get "required revision has been compacted".
    pub fn compact(&self) -> anyhow::Result<()> {
        self.call("compact", |mut c| async move {
            let resp = c.get("\0", None).await?;
            let rev = resp.header().map(|h| h.revision()).unwrap_or(0);
            c.compact(rev, None).await.map(drop)
        })
    }

    /// The current store revision.
    pub fn revision(&self) -> anyhow::Result<i64> {
        self.call("get revision", |mut c| async move {
            let resp = c.get("\0", None).await?;
            Ok(resp.header().map(|h| h.revision()).unwrap_or(0))
        })
    }

    /// The etcd process id (0 while stopped).
    pub fn pid(&self) -> u32 {
        self.service.as_ref().map(Service::pid).unwrap_or(0)
    }
}

impl Drop for Etcd {
    fn drop(&mut self) {
        // The client's connection tasks live on our runtime; drop it first.
        self.reset_client();
        self.service = None;
    }
}

/// Spawns etcd `bin` in `dir` on the given ports and waits until it is
/// healthy.
fn launch(
    bin: &Path,
    dir: &Path,
    client_port: u16,
    peer_port: u16,
    tls: Option<&EtcdTls>,
    env: &[(String, String)],
) -> anyhow::Result<Service> {
    let scheme = if tls.is_some() { "https" } else { "http" };
    let client = format!("{scheme}://127.0.0.1:{client_port}");
    let peer = format!("{scheme}://127.0.0.1:{peer_port}");
    let mut cmd = Command::new(bin);
    cmd.envs(env.iter().map(|(k, v)| (k, v)));
    // With --client-cert-auth, /health on the client URL wants a client
    // certificate; the metrics listener answers it over plain http on
    // loopback, and serves no keys.
    let mut health = format!("{client}/health");
    if let Some(tls) = tls {
        let metrics = try_free_port()?;
        health = format!("http://127.0.0.1:{metrics}/health");
        cmd.arg(format!("--listen-metrics-urls=http://127.0.0.1:{metrics}"))
            .arg(format!("--trusted-ca-file={}", tls.ca.display()))
            .arg(format!("--cert-file={}", tls.cert.display()))
            .arg(format!("--key-file={}", tls.key.display()))
            .arg("--client-cert-auth")
            .arg(format!("--peer-trusted-ca-file={}", tls.ca.display()))
            .arg(format!("--peer-cert-file={}", tls.cert.display()))
            .arg(format!("--peer-key-file={}", tls.key.display()))
            .arg("--peer-client-cert-auth");
    }
    cmd.arg("--name=hostyard-test")
        .arg(format!("--data-dir={}", dir.join("data").display()))
        .arg(format!("--listen-client-urls={client}"))
        .arg(format!("--advertise-client-urls={client}"))
        .arg(format!("--listen-peer-urls={peer}"))
        .arg(format!("--initial-advertise-peer-urls={peer}"))
        .arg(format!("--initial-cluster=hostyard-test={peer}"))
        .arg("--initial-cluster-state=new")
        .arg("--logger=zap")
        .arg("--log-outputs=stderr");
    let mut service = Service::spawn("etcd", cmd, &dir.join("etcd.log"))?;
    let ready = wait_until("etcd /health", READY_TIMEOUT, || {
        if let Err(e) = service.check_alive() {
            return Some(Err(e));
        }
        healthy(&health).then_some(Ok(()))
    })
    .and_then(|r| r)
    .map_err(|e| service.failure(format!("did not become ready at {client}: {e:#}")));
    ready.map(|()| service)
}

fn healthy(url: &str) -> bool {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(1)))
        .http_status_as_error(false)
        .build()
        .into();
    match agent.get(url).call() {
        Ok(mut resp) if resp.status() == 200 => resp
            .body_mut()
            .read_to_string()
            .map(|b| b.contains("\"health\":\"true\""))
            .unwrap_or(false),
        _ => false,
    }
}
