//! `scripts/bench.sh tls`: HTTPS through hostyard's HAProxy config against
//! a plain HAProxy with the same certificates, and the certificate path of
//! hostyard-tls with 1,000 certificates loaded. Prints its figures, then
//! one summary line:
//! `tls: handshake_ratio=.. keepalive_ratio=.. add_cert_p50_ms=..
//! start_1000_certs_s=.. mem_per_cert_kb=.. start_to_https_ms=.. reloads=..`
//!
//! - handshakes: wrk with `Connection: close` (a full TLS handshake per
//!   request, wrk resumes no session), keep-alive: wrk on 8 connections;
//!   medians of alternating short runs, hostyard / plain;
//! - adding a certificate: one pass of `hostyard_tls::CertSync` (what
//!   confd's certificate thread runs every `tls.scan_secs`) after one new
//!   site certificate file, with 1,000 served: the check, the files and the
//!   runtime API (`new ssl cert`, `set`/`commit`, `add ssl crt-list`);
//!   reloads counts HAProxy worker changes meanwhile;
//! - start and memory: `haproxy -db` on hostyard's config with the
//!   1,000-line crt-list and with an empty one: spawn to the first answer
//!   on the admin socket, and the worker's VmRSS difference / 1,000.
//!
//! - start to HTTPS: with pebble on loopback as the ACME CA (validating
//!   HTTP-01 against the router's HAProxy), a site's start (its data dir
//!   and its registration, what `systemctl start static@D` makes) to the
//!   first HTTPS answer that verifies against pebble's root; median of
//!   [`ACME_SITES`] sites started one after another.
//!
//! Certificates (a CA and one per site, ECDSA P-256, rcgen) are cached in
//! `$HOSTYARD_TEST_CACHE/tls-bench` (default /var/cache/hostyard-test).
//! About three minutes on 2 cores.

#[allow(dead_code, reason = "each bench uses a part of it")]
mod common;
#[path = "../tests/util.rs"]
#[allow(dead_code)]
mod util;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{fast_backend, median};
use hostyard_config::AcmeConfig;
use hostyard_core::SiteKind;
use hostyard_testsupport::{free_port, wait_until, Etcd, Haproxy, Pebble, SocketDir};
use hostyard_tls::CertSync;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use util::{d, Router};

const CERTS: usize = 1_000;
/// Certificates added one at a time, timed.
const ADDS: usize = 21;
/// Alternating runs per comparison, and seconds per run.
const RUNS: usize = 3;
const RUN_SECS: u64 = 4;
/// Fresh HAProxy starts per variant (1,000 certificates, none).
const STARTS: usize = 3;
const SITE: &str = "bench.example.com";
/// Sites started one after another for start to HTTPS.
const ACME_SITES: usize = 3;

fn main() {
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// The bench's certificates: `ca.pem`, and a bundle (leaf for the name and
/// its `www.`, the CA, the key) per site: `site0000.example.com` ... for
/// the 1,000 loaded, `add00.example.com` ... for the ones added.
struct CertSet {
    dir: PathBuf,
}

impl CertSet {
    fn loaded() -> Vec<String> {
        (0..CERTS)
            .map(|i| format!("site{i:04}.example.com"))
            .collect()
    }

    fn added() -> Vec<String> {
        (0..ADDS)
            .map(|i| format!("add{i:02}.example.com"))
            .collect()
    }

    fn open() -> anyhow::Result<CertSet> {
        let cache = std::env::var_os("HOSTYARD_TEST_CACHE")
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("/var/cache/hostyard-test"));
        let dir = cache.join("tls-bench");
        if dir.join("complete").exists() {
            return Ok(CertSet { dir });
        }
        // Made in a sibling and renamed: a killed run leaves no half set.
        let tmp = cache.join(format!("tls-bench.tmp{}", std::process::id()));
        std::fs::create_dir_all(&tmp)?;
        let t0 = Instant::now();
        let ca_key = KeyPair::generate()?;
        let mut p = CertificateParams::new(Vec::<String>::new())?;
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name
            .push(DnType::CommonName, "hostyard bench CA");
        p.not_before = rcgen::date_time_ymd(2020, 1, 1);
        p.not_after = rcgen::date_time_ymd(2090, 1, 1);
        let ca = p.self_signed(&ca_key)?;
        std::fs::write(tmp.join("ca.pem"), ca.pem())?;
        for name in Self::loaded().into_iter().chain(Self::added()) {
            let key = KeyPair::generate()?;
            let mut p = CertificateParams::new(vec![name.clone(), format!("www.{name}")])?;
            p.distinguished_name.push(DnType::CommonName, &name);
            p.not_before = rcgen::date_time_ymd(2020, 1, 1);
            p.not_after = rcgen::date_time_ymd(2090, 1, 1);
            let cert = p.signed_by(&key, &Issuer::from_ca_cert_der(ca.der(), &ca_key)?)?;
            std::fs::write(
                tmp.join(format!("{name}.pem")),
                format!("{}{}{}", cert.pem(), ca.pem(), key.serialize_pem()),
            )?;
        }
        std::fs::write(tmp.join("complete"), "")?;
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&tmp, &dir)?;
        println!(
            "made {} certificates in {:.1} s into {}",
            CERTS + ADDS,
            t0.elapsed().as_secs_f64(),
            dir.display()
        );
        Ok(CertSet { dir })
    }

    /// Puts `name`'s bundle where an import leaves it.
    fn install(&self, r: &Router, name: &str) -> anyhow::Result<()> {
        let dest = r.layout.tls_pem(&d(name));
        std::fs::create_dir_all(dest.parent().expect("a parent"))?;
        std::fs::copy(self.dir.join(format!("{name}.pem")), &dest)?;
        Ok(())
    }
}

/// wrk over HTTPS to 127.0.0.1:`port` for `SITE`: requests per second and
/// requests without a 2xx answer (errors included). `close`: a new
/// connection, so a new TLS handshake, per request.
fn wrk(port: u16, close: bool, conns: u32) -> anyhow::Result<(f64, u64)> {
    let mut cmd = Command::new("wrk");
    cmd.args(["-H", &format!("Host: {SITE}")]);
    if close {
        cmd.args(["-H", "Connection: close"]);
    }
    cmd.arg(format!("https://127.0.0.1:{port}/"));
    let r = common::wrk(&mut cmd, conns, RUN_SECS)?;
    Ok((r.rps, r.failed))
}

/// One command on a HAProxy stats socket, or None while it does not answer.
fn socket_command(path: &Path, cmd: &str) -> Option<String> {
    let mut s = UnixStream::connect(path).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    s.write_all(format!("{cmd}\n").as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    Some(out)
}

/// `haproxy -db -f cfg` from spawn to its first `show info` answer on
/// `admin`: (seconds, the answering process's VmRSS in KiB). Stopped after.
fn timed_start(cfg: &Path, admin: &Path) -> anyhow::Result<(f64, u64)> {
    let _ = std::fs::remove_file(admin);
    let t0 = Instant::now();
    let mut child = Command::new(hostyard_testsupport::haproxy_binary()?)
        .arg("-db")
        .arg("-f")
        .arg(cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own group: a master-worker config forks a worker, and the
        // whole group is stopped at the end.
        .process_group(0)
        .spawn()?;
    let pgid = nix::unistd::Pid::from_raw(child.id() as i32);
    let answered = wait_until(
        "HAProxy to answer show info",
        Duration::from_secs(60),
        || {
            let info = socket_command(admin, "show info")?;
            let pid = info
                .lines()
                .find_map(|l| l.strip_prefix("Pid: "))?
                .trim()
                .to_string();
            Some(pid)
        },
    );
    let secs = t0.elapsed().as_secs_f64();
    let rss = answered.as_ref().ok().and_then(|pid| {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
    let _ = child.wait();
    answered?;
    Ok((secs, rss.ok_or_else(|| anyhow::anyhow!("no VmRSS"))?))
}

fn run() -> anyhow::Result<()> {
    let certs = CertSet::open()?;
    let etcd = Etcd::start()?;
    let mut r = Router::new(&etcd);
    // The handshake figure compares the routing's cost with a plain
    // HAProxy's, not haproxy.max_ssl_rate's cap.
    r.config.haproxy.max_ssl_rate = 1_000_000;
    r.write_config();
    let backend = fast_backend("ok\n")?;
    r.register(&etcd, SiteKind::Static, SITE, backend);
    r.start();
    r.wait_for(SITE, 200, "ok");
    // confd wrote the config and the routes; from here on the bench's own
    // CertSync is the only writer of certificates (confd's thread would
    // race it for the same files).
    if let Some(confd) = r.confd.take() {
        confd.stop();
    }
    let haproxy_worker = r.haproxy().worker_pid()?;

    // 1,000 site certificates through the sync code into the running
    // HAProxy (as after an import of 1,000 sites).
    for name in CertSet::loaded() {
        certs.install(&r, &name)?;
    }
    let mut sync = CertSync::new(r.layout.clone(), r.config.tls.clone());
    let t0 = Instant::now();
    sync.pass()?;
    let bulk_s = t0.elapsed().as_secs_f64();
    anyhow::ensure!(
        sync.served().len() == CERTS,
        "{} of {CERTS} certificates served",
        sync.served().len()
    );
    println!("{CERTS} certificates checked, written and loaded through the runtime API in one pass: {bulk_s:.1} s");

    // Adding one more, with 1,000 loaded.
    let mut add_ms = Vec::new();
    for name in CertSet::added() {
        certs.install(&r, &name)?;
        let t0 = Instant::now();
        sync.pass()?;
        add_ms.push(t0.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(sync.served().contains_key(&d(&name)), "{name} not served");
    }
    let reloads = u32::from(r.haproxy().worker_pid()? != haproxy_worker);
    let https_port = r.config.haproxy.https_port;
    let last = CertSet::added().pop().expect("one added");
    let verified = Command::new("curl")
        .args([
            "-sS",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "5",
        ])
        .arg("--cacert")
        .arg(certs.dir.join("ca.pem"))
        .arg("--resolve")
        .arg(format!("{last}:{https_port}:127.0.0.1"))
        .arg(format!("https://{last}:{https_port}/"))
        .output()?;
    let code = String::from_utf8_lossy(&verified.stdout).into_owned();
    println!(
        "adding one certificate with {CERTS} loaded ({ADDS} times, one CertSync pass each): p50 {:.1} ms, max {:.1} ms; \
         HAProxy worker changes: {reloads}; https://{last} verifies against the bench CA: {} (HTTP {code})",
        median(add_ms.clone()),
        add_ms.iter().copied().fold(0.0, f64::max),
        code != "000"
    );

    // Throughput: hostyard's config vs a plain HAProxy, same binary, same
    // global and defaults sections, same certificates, same backend.
    let sockets = SocketDir::new()?;
    let plain_port = free_port();
    let plain_cfg = sockets.path().join("plain.cfg");
    let head = common::plain_head(&r, &sockets.admin_socket_path())?;
    std::fs::write(
        &plain_cfg,
        format!(
            "{head}\nfrontend https\n    bind 127.0.0.1:{plain_port} ssl crt {} crt-list {}\n    \
             default_backend one\nbackend one\n    server one 127.0.0.1:{backend}\n",
            r.layout.haproxy_default_cert().display(),
            r.layout.haproxy_crt_list().display()
        ),
    )?;
    let plain = Haproxy::start(&plain_cfg)?;
    let mut failed = 0;
    let (mut hs_ours, mut hs_plain, mut ka_ours, mut ka_plain) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..RUNS {
        for (port, out) in [(https_port, &mut hs_ours), (plain_port, &mut hs_plain)] {
            let (rps, f) = wrk(port, true, 8)?;
            out.push(rps);
            failed += f;
        }
        for (port, out) in [(https_port, &mut ka_ours), (plain_port, &mut ka_plain)] {
            let (rps, f) = wrk(port, false, 8)?;
            out.push(rps);
            failed += f;
        }
    }
    drop(plain);
    let (hs_ours, hs_plain) = (median(hs_ours), median(hs_plain));
    let (ka_ours, ka_plain) = (median(ka_ours), median(ka_plain));
    let handshake_ratio = hs_ours / hs_plain;
    let keepalive_ratio = ka_ours / ka_plain;
    println!(
        "new TLS handshakes (Connection: close, 8 conns, medians of {RUNS} alternating {RUN_SECS} s runs): \
         hostyard {hs_ours:.0}/s, plain {hs_plain:.0}/s, ratio {handshake_ratio:.3}"
    );
    println!(
        "keep-alive HTTPS (8 conns, same runs): hostyard {ka_ours:.0} req/s, plain {ka_plain:.0} req/s, \
         ratio {keepalive_ratio:.3}; requests without a 2xx answer: {failed}"
    );
    let reloads = reloads + u32::from(r.haproxy().worker_pid()? != haproxy_worker);

    // Start and memory: hostyard's config, alone on its ports.
    drop(r.haproxy.take());
    let cfg = r.layout.haproxy_cfg();
    let admin = r.layout.haproxy_admin_socket();
    let list = r.layout.haproxy_crt_list();
    let empty_list = list.with_file_name("empty.list");
    let empty_cfg = cfg.with_file_name("haproxy-no-certs.cfg");
    std::fs::write(&empty_list, "")?;
    let ours = std::fs::read_to_string(&cfg)?;
    std::fs::write(
        &empty_cfg,
        ours.replace(
            &format!("crt-list {}", list.display()),
            &format!("crt-list {}", empty_list.display()),
        ),
    )?;
    let (mut start_full, mut start_empty, mut rss_full, mut rss_empty) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..STARTS {
        let (s, rss) = timed_start(&cfg, &admin)?;
        start_full.push(s);
        rss_full.push(rss as f64);
        let (s, rss) = timed_start(&empty_cfg, &admin)?;
        start_empty.push(s);
        rss_empty.push(rss as f64);
    }
    let start_full = median(start_full);
    let (rss_full, rss_empty) = (median(rss_full), median(rss_empty));
    let served = CERTS + ADDS;
    let per_cert_kb = (rss_full - rss_empty) / served as f64;
    println!(
        "HAProxy start (spawn to the first answer on the admin socket, median of {STARTS}): with {served} \
         certificates {start_full:.2} s, with none {:.2} s; worker VmRSS {rss_full:.0} KiB vs {rss_empty:.0} KiB: \
         {per_cert_kb:.1} KiB per certificate",
        median(start_empty)
    );

    drop(r);
    let start_to_https = format!("{:.0}", start_to_https(&etcd, backend)?);
    println!(
        "tls: handshake_ratio={handshake_ratio:.2} keepalive_ratio={keepalive_ratio:.2} \
         add_cert_p50_ms={:.0} start_1000_certs_s={start_full:.2} mem_per_cert_kb={per_cert_kb:.0} \
         start_to_https_ms={start_to_https} reloads={reloads}",
        median(add_ms)
    );
    Ok(())
}

/// Site start to its first HTTPS answer verified against pebble's root,
/// ms, median of [`ACME_SITES`].
fn start_to_https(etcd: &Etcd, backend: u16) -> anyhow::Result<f64> {
    let mut r = Router::new(etcd);
    r.config.etcd.prefix = "/acme-bench".to_string();
    r.schema = hostyard_core::etcd::Schema::new(&r.config.etcd.prefix);
    let pebble = Pebble::start(r.port)?;
    r.config.tls.acme = AcmeConfig {
        directory: pebble.directory_url(),
        email: "ops@example.org".into(),
        terms_accepted: true,
        ca_file: pebble.server_ca(),
        retry_secs: 1,
    };
    r.write_config();
    r.start();
    let root = pebble.root_file();
    let verifies = |host: &str| r.https_verifies(host, &root);
    let mut took = Vec::new();
    for i in 0..ACME_SITES {
        let host = format!("acme{i}.example.com");
        let t0 = Instant::now();
        std::fs::create_dir_all(r.layout.domain_dir(&d(&host)))?;
        r.register(etcd, SiteKind::Static, &host, backend);
        wait_until(
            &format!("HTTPS for {host} from pebble's CA"),
            Duration::from_secs(90),
            || verifies(&host).then_some(()),
        )
        .map_err(|e| anyhow::anyhow!("{e:#}\nconfd log:\n{}", r.confd_log()))?;
        took.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    println!(
        "site start (data dir and registration) to HTTPS verified against pebble's root, {ACME_SITES} sites one \
         after another: {:?} ms",
        took.iter().map(|t| t.round()).collect::<Vec<_>>()
    );
    Ok(median(took))
}
