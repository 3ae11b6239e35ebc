//! `scripts/bench.sh confd`: hostyard-confd against real etcd, HAProxy and
//! loopback backends. For each fleet size it prints its figures and one
//! summary line (medians over the runs, lowest-highest in brackets):
//! `confd sites=N: runs=.. route_p50_ms=.. route_p99_ms=.. floor_p50_ms=..
//! route_vs_floor=.. sync_s=.. rss_mb=.. peak_mb=.. status_s=.. burst=..
//! burst_acked_s=.. burst_s=.. burst_applies=.. haproxy_map_mb=.. load_s=..`;
//! then the load on 40 sites: `confd: failed=.. quiet_failed=.. reloads=..
//! proxy_ratio=..`.
//!
//! Settings (environment): `HOSTYARD_BENCH_SIZES` the fleet sizes
//! (default 40,10000,100000), `HOSTYARD_BENCH_RUNS` the rounds of route
//! latency and `hostyard status` per size (default 3), `HOSTYARD_BIN` the
//! `hostyard` binary whose `status` is timed (unset: not timed),
//! `HOSTYARD_BENCH_LOAD=0` the fleet sizes only (no load, no proxy cost).
//!
//! Bounded: about six minutes on 2 cores with the defaults, most of it
//! the 100,000 sites.

#[allow(dead_code, reason = "each bench uses a part of it")]
mod common;
#[path = "../tests/util.rs"]
#[allow(dead_code)]
mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{fast_backend, percentile, WrkResult};
use hostyard_core::etcd::{Schema, ServiceValue, SiteDecl};
use hostyard_core::SiteKind;
use hostyard_testsupport::{free_port, wait_until, Etcd, Haproxy, SocketDir};
use util::{d, Router};

const LOAD_SECS: u64 = 30;
const RATIO_SECS: u64 = 4;
/// Timed registrations per run of the route latency (and as many `add
/// map`s by hand for its floor).
const ADDS: usize = 60;
/// Pause before each timed registration: four times confd's default
/// coalescing window, so the registration is a change after a quiet period.
const QUIET: Duration = Duration::from_millis(20);
/// At most this many changes sent at once in a burst (a tenth of the
/// sites below 100,000).
const BURST_MAX: usize = 10_000;
/// Puts of a burst in flight together: etcd refuses more than 5,000
/// proposals waiting to be applied ("too many requests").
const BURST_IN_FLIGHT: usize = 1_000;
/// Sites per transaction when the fleet is written: two puts each, and
/// etcd takes at most 128 operations in one transaction (--max-txn-ops).
const TXN_SITES: usize = 64;
/// Transactions in flight together while the fleet is written.
const TXN_IN_FLIGHT: usize = 8;

fn main() {
    // etcd's data dir on tmpfs: a put is acknowledged after etcd's WAL
    // fsync, which on this shared disk alone takes 10-40 ms and is not
    // confd's to measure. Set before any thread starts.
    if Path::new("/dev/shm").is_dir() && std::env::var_os("HOSTYARD_BENCH_DISK").is_none() {
        std::env::set_var("TMPDIR", "/dev/shm");
    }
    if let Err(e) = run() {
        eprintln!("bench failed: {e:#}");
        std::process::exit(1);
    }
}

/// One request on a fresh connection; (status, body).
fn raw_get(port: u16, host: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    s.set_nodelay(true).ok()?;
    // One write: `write!` on a socket sends each formatted piece as its own
    // segment, and Nagle plus the peer's delayed ACK add 40 ms.
    let request = format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).ok()?;
    let mut buf = String::new();
    s.read_to_string(&mut buf).ok()?;
    let status = buf.get(9..12)?.parse().ok()?;
    let body = buf.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    Some((status, body))
}

/// wrk against 127.0.0.1:`port`, its requests spread over `hosts` (a Lua
/// script in `dir` sets each request's Host).
fn wrk(
    port: u16,
    hosts: &[String],
    secs: u64,
    conns: u32,
    dir: &Path,
) -> anyhow::Result<WrkResult> {
    let script = dir.join(format!("hosts-{port}-{}.lua", hosts.len()));
    let list: Vec<String> = hosts.iter().map(|h| format!("\"{h}\"")).collect();
    std::fs::write(
        &script,
        format!(
            "local hosts = {{{}}}\nlocal i = 0\nrequest = function()\n  i = i + 1\n  \
             return wrk.format(\"GET\", \"/\", {{Host = hosts[(i % #hosts) + 1]}})\nend\n",
            list.join(", ")
        ),
    )?;
    let mut cmd = Command::new("wrk");
    cmd.arg("-s")
        .arg(&script)
        .arg(format!("http://127.0.0.1:{port}/"));
    common::wrk(&mut cmd, conns, secs)
}

fn run() -> anyhow::Result<()> {
    let sizes = sizes()?;
    let runs = env_number("HOSTYARD_BENCH_RUNS", 3)?.max(1);
    let etcd = Etcd::start()?;
    let a = fast_backend("a")?;
    let b = fast_backend("b")?;
    let fresh = fast_backend("fresh")?;

    // 1. Each fleet size: its sync, memory, `hostyard status`, route
    // latency against the floor of the same run, and a burst.
    let mut lines = Vec::new();
    for &n in &sizes {
        let f = fleet(&etcd, n, runs, Ports { a, b, fresh })?;
        lines.push(f.summary());
    }
    if std::env::var("HOSTYARD_BENCH_LOAD").as_deref() == Ok("0") {
        for line in &lines {
            println!("{line}");
        }
        return Ok(());
    }

    // 2. Keep-alive load on 40 sites while 100 sites change and 10
    // structural reloads run.
    let mut r = Router::new(&etcd);
    let stable: Vec<String> = (0..20).map(|i| format!("stable{i}.example.com")).collect();
    let moving: Vec<String> = (0..20).map(|i| format!("moving{i}.example.com")).collect();
    for h in &stable {
        r.register(&etcd, SiteKind::Static, h, a);
    }
    for h in &moving {
        r.register(&etcd, SiteKind::Static, h, b);
    }
    r.start();
    r.wait_for("moving19.example.com", 200, "b");
    let load_hosts: Vec<String> = stable.iter().chain(moving.iter()).cloned().collect();
    let spawn_churn = |stop: Arc<AtomicBool>, with_reloads: bool, secs: u64, tag: &'static str| {
        let endpoint = etcd.endpoint();
        let schema = Schema::new(&r.config.etcd.prefix);
        let moving = moving.clone();
        let (pa, pb) = (a, b);
        let mut config = r.config.clone();
        let config_path = r.config_path.clone();
        let confd_pid = r.confd.as_ref().map(|c| c.child.id()).unwrap_or_default();
        std::thread::spawn(move || -> anyhow::Result<(usize, usize)> {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let mut client = rt.block_on(etcd_client::Client::connect([endpoint], None))?;
            let mut changes = 0;
            let mut reloads = 0;
            let step = Duration::from_millis(secs * 1000 * 8 / 10 / 100);
            let started = Instant::now();
            for i in 0..100 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                let sv = |port: u16| format!(r#"{{"ip":"127.0.0.1","port":"{port}"}}"#);
                let churned = d(&format!("{tag}{i}.example.com"));
                let op = i % 3;
                let res = rt.block_on(async {
                    match op {
                        0 => client
                            .put(schema.service_key(SiteKind::Static, &churned), sv(pa), None)
                            .await
                            .map(drop),
                        1 => {
                            let m = d(&moving[i % moving.len()]);
                            let port = if (i / 3) % 2 == 0 { pa } else { pb };
                            client
                                .put(schema.service_key(SiteKind::Static, &m), sv(port), None)
                                .await
                                .map(drop)
                        }
                        _ => {
                            let gone = d(&format!("{tag}{}.example.com", i - 2));
                            client
                                .delete(schema.service_key(SiteKind::Static, &gone), None)
                                .await
                                .map(drop)
                        }
                    }
                });
                res?;
                changes += 1;
                if with_reloads && i % 10 == 5 {
                    config.haproxy.frontend_rules =
                        vec![format!("http-request set-header X-Hostyard-Generation {i}")];
                    std::fs::write(&config_path, yaml_serde::to_string(&config)?)?;
                    nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(confd_pid as i32),
                        nix::sys::signal::Signal::SIGHUP,
                    )?;
                    reloads += 1;
                }
                let next = started + step * (i as u32 + 1);
                std::thread::sleep(next.saturating_duration_since(Instant::now()));
            }
            Ok((changes, reloads))
        })
    };
    // First routing changes alone, then the specified run with reloads too.
    let stop = Arc::new(AtomicBool::new(false));
    let quiet_churn = spawn_churn(Arc::clone(&stop), false, 10, "quiet");
    let quiet = wrk(r.port, &load_hosts, 10, 32, r.dir.path())?;
    stop.store(true, Ordering::SeqCst);
    let (quiet_changes, _) = quiet_churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    println!(
        "load without reloads: 10 s keep-alive wrk (32 conns), {quiet_changes} site changes: \
         {:.0} req/s, {} failed",
        quiet.rps, quiet.failed
    );
    let stop = Arc::new(AtomicBool::new(false));
    let churn = spawn_churn(Arc::clone(&stop), true, LOAD_SECS, "churn");
    let reloads_before = r.haproxy().master("show proc")?;
    let load = wrk(r.port, &load_hosts, LOAD_SECS, 32, r.dir.path())?;
    stop.store(true, Ordering::SeqCst);
    let (changes, reloads) = churn
        .join()
        .map_err(|_| anyhow::anyhow!("churn thread panicked"))??;
    let reloads_after = r.haproxy().master("show proc")?;
    println!(
        "load: {LOAD_SECS} s keep-alive wrk (32 conns) on {} hosts, {changes} site changes, \
         {reloads} structural reloads requested: {:.0} req/s, {} failed",
        load_hosts.len(),
        load.rps,
        load.failed
    );
    let master_line = |s: &str| {
        s.lines()
            .find(|l| l.contains("master"))
            .unwrap_or_default()
            .split_whitespace()
            .nth(2)
            .unwrap_or_default()
            .to_string()
    };
    println!(
        "HAProxy master reload counter: {} -> {}",
        master_line(&reloads_before),
        master_line(&reloads_after)
    );

    // 3. proxy_ratio: hostyard routing vs one plain static backend, same
    // HAProxy binary and settings, same backend, same load.
    let sockets = SocketDir::new()?;
    let plain_port = free_port();
    let plain_cfg = sockets.path().join("plain.cfg");
    // The same global and defaults sections as hostyard's config (logging,
    // timeouts, forwardfor), so the difference is the routing alone.
    let head = common::plain_head(&r, &sockets.admin_socket_path())?;
    std::fs::write(
        &plain_cfg,
        format!(
            "{head}\nfrontend http\n    bind 127.0.0.1:{plain_port}\n    default_backend one\n\
             backend one\n    server one 127.0.0.1:{}\n",
            a
        ),
    )?;
    let _plain = Haproxy::start(&plain_cfg)?;
    let one_host = vec!["stable0.example.com".to_string()];
    // Alternating short runs, medians: on 2 shared cores one long run of
    // each would mostly measure what else the machine did meanwhile.
    let mut routed = Vec::new();
    let mut plain = Vec::new();
    for _ in 0..3 {
        routed.push(wrk(r.port, &one_host, RATIO_SECS, 8, r.dir.path())?.rps);
        plain.push(wrk(plain_port, &one_host, RATIO_SECS, 8, r.dir.path())?.rps);
    }
    let direct = wrk(a, &one_host, RATIO_SECS, 8, r.dir.path())?.rps;
    routed.sort_by(f64::total_cmp);
    plain.sort_by(f64::total_cmp);
    let (routed_rps, plain_rps) = (routed[1], plain[1]);
    let ratio = routed_rps / plain_rps;
    println!(
        "throughput (8 conns, medians of 3 alternating {RATIO_SECS} s runs): routed {routed_rps:.0} req/s, plain \
         {plain_rps:.0} req/s, direct to backend {direct:.0} req/s; routed/plain {ratio:.3}, \
         routed/direct {:.3}",
        routed_rps / direct
    );

    for line in &lines {
        println!("{line}");
    }
    println!(
        "confd: failed={} quiet_failed={} reloads={reloads} proxy_ratio={ratio:.2}",
        load.failed, quiet.failed
    );
    Ok(())
}

/// The fleet sizes measured: `HOSTYARD_BENCH_SIZES`, comma-separated
/// (default 40,10000,100000).
fn sizes() -> anyhow::Result<Vec<usize>> {
    let Ok(text) = std::env::var("HOSTYARD_BENCH_SIZES") else {
        return Ok(vec![40, 10_000, 100_000]);
    };
    text.split(',')
        .map(|s| {
            s.trim()
                .parse::<usize>()
                .ok()
                .filter(|&n| n > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!(
                        "HOSTYARD_BENCH_SIZES={text:?}: give site counts above 0, \
                         comma-separated (e.g. 40,10000)"
                    )
                })
        })
        .collect()
}

/// A whole number from the environment, `default` when unset.
fn env_number(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Err(_) => Ok(default),
        Ok(v) => v
            .trim()
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?}: give a whole number")),
    }
}

/// The loopback backends: `a` serves the fleet, the burst moves sites to
/// `b`, and every timed registration points at `fresh`.
#[derive(Clone, Copy)]
struct Ports {
    a: u16,
    b: u16,
    fresh: u16,
}

/// One run of the route latency with its floor, both in ms, sorted.
struct LatencyRun {
    route: Vec<f64>,
    /// etcd's acknowledgement of each timed put.
    acked: Vec<f64>,
    /// An `add map` sent by hand to its first answer.
    by_hand: Vec<f64>,
}

impl LatencyRun {
    fn p50(&self) -> f64 {
        percentile(&self.route, 0.5)
    }

    fn p99(&self) -> f64 {
        percentile(&self.route, 0.99)
    }

    /// etcd's part plus HAProxy's part, without confd.
    fn floor(&self) -> f64 {
        percentile(&self.acked, 0.5) + percentile(&self.by_hand, 0.5)
    }

    fn ratio(&self) -> f64 {
        self.p50() / self.floor()
    }
}

/// What one fleet size measured.
struct Figures {
    sites: usize,
    runs: Vec<LatencyRun>,
    load_s: f64,
    sync_s: f64,
    rss_mb: f64,
    peak_mb: f64,
    /// HAProxy worker's RSS with the map loaded minus before, MB.
    haproxy_map_mb: f64,
    /// Median of the runs; `None` without `HOSTYARD_BIN`.
    status_s: Option<f64>,
    burst: usize,
    burst_acked_s: f64,
    burst_s: f64,
    burst_applies: usize,
}

/// Median, lowest and highest of `f` over the runs.
fn spread(runs: &[LatencyRun], f: impl Fn(&LatencyRun) -> f64) -> (f64, f64, f64) {
    let mut v: Vec<f64> = runs.iter().map(f).collect();
    v.sort_by(f64::total_cmp);
    (percentile(&v, 0.5), v[0], v[v.len() - 1])
}

impl Figures {
    /// The one line of this size: medians over the runs, each ratio's and
    /// p50's lowest-highest over the runs beside it.
    fn summary(&self) -> String {
        let (p50, p50_lo, p50_hi) = spread(&self.runs, LatencyRun::p50);
        let (p99, _, _) = spread(&self.runs, LatencyRun::p99);
        let (floor, floor_lo, floor_hi) = spread(&self.runs, LatencyRun::floor);
        let (ratio, ratio_lo, ratio_hi) = spread(&self.runs, LatencyRun::ratio);
        let status = self
            .status_s
            .map_or("NA".to_string(), |s| format!("{s:.2}"));
        let burst = if self.burst == 0 {
            "burst=0".to_string()
        } else {
            format!(
                "burst={} burst_acked_s={:.2} burst_s={:.2} burst_applies={}",
                self.burst, self.burst_acked_s, self.burst_s, self.burst_applies
            )
        };
        format!(
            "confd sites={}: runs={} route_p50_ms={p50:.2} ({p50_lo:.2}-{p50_hi:.2}) \
             route_p99_ms={p99:.1} floor_p50_ms={floor:.2} ({floor_lo:.2}-{floor_hi:.2}) \
             route_vs_floor={ratio:.2} ({ratio_lo:.2}-{ratio_hi:.2}) sync_s={:.2} \
             rss_mb={:.1} peak_mb={:.1} status_s={status} {burst} haproxy_map_mb={:.1} \
             load_s={:.1}",
            self.sites,
            self.runs.len(),
            self.sync_s,
            self.rss_mb,
            self.peak_mb,
            self.haproxy_map_mb,
            self.load_s,
        )
    }
}

/// A field of /proc/`pid`/status in MB (`VmRSS:`, `VmHWM:`).
fn proc_mb(pid: u32, field: &str) -> anyhow::Result<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find(|l| l.starts_with(field))
        .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        .map(|kb| kb / 1024.0)
        .ok_or_else(|| anyhow::anyhow!("no {field} in /proc/{pid}/status"))
}

/// The applies confd logged after byte `from` of its log: each one's
/// number of host changes.
fn applies_since(log: &Path, from: usize) -> Vec<usize> {
    let text = std::fs::read(log).unwrap_or_default();
    String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .lines()
        .filter_map(|l| l.strip_prefix("applied ")?.split(' ').next()?.parse().ok())
        .collect()
}

/// Waits (bounded) until confd logged applies of at least `hosts` host
/// changes after byte `from` of its log; their counts.
fn wait_applied(log: &Path, from: usize, hosts: usize, what: &str) -> anyhow::Result<Vec<usize>> {
    let mut applied = Vec::new();
    let started = Instant::now();
    while applied.iter().sum::<usize>() < hosts {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(300),
            "{what}: confd applied {} of {hosts} host changes within 300 s",
            applied.iter().sum::<usize>()
        );
        std::thread::sleep(Duration::from_millis(5));
        applied = applies_since(log, from);
    }
    Ok(applied)
}

/// The routes (`route/` entries) in HAProxy's runtime map, and how many
/// point at `port`.
fn routes_in_haproxy(r: &Router, port: u16) -> anyhow::Result<(usize, usize)> {
    let map = r.layout.hosts_map().display().to_string();
    let shown = r.haproxy().runtime(&format!("show map {map}"))?;
    let at = format!("route/127.0.0.1/{port}");
    let routes = shown.lines().filter(|l| l.contains("route/")).count();
    let moved = shown.lines().filter(|l| l.ends_with(&at)).count();
    Ok((routes, moved))
}

/// `hostyard status` on `r`'s config: seconds to its exit, its output
/// read and dropped.
fn time_status(bin: &Path, r: &Router, sites: usize) -> anyhow::Result<f64> {
    let t0 = Instant::now();
    let out = Command::new(bin)
        .arg("--config")
        .arg(&r.config_path)
        .arg("status")
        .stdin(std::process::Stdio::null())
        .output()?;
    let took = t0.elapsed().as_secs_f64();
    // 1 is "needs attention", still a full report.
    anyhow::ensure!(
        matches!(out.status.code(), Some(0 | 1)),
        "hostyard status exited {}: {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| l.contains(".example.com"))
        .count();
    anyhow::ensure!(
        rows >= sites,
        "hostyard status showed {rows} sites of {sites}"
    );
    Ok(took)
}

/// `n` sites declared and registered under a prefix of their own, then
/// confd started on them with HAProxy running (the map file empty): the
/// sync, memories, `hostyard status`, `runs` rounds of the route latency
/// and its floor, and a burst moving a tenth of the sites (at most
/// [`BURST_MAX`]). Everything it started is stopped and its keys deleted.
fn fleet(etcd: &Etcd, n: usize, runs: usize, ports: Ports) -> anyhow::Result<Figures> {
    println!("--- {n} sites");
    let prefix = format!("/s{n}");
    let mut r = Router::new(etcd);
    r.config.etcd.prefix = prefix.clone();
    r.schema = Schema::new(&prefix);
    r.write_config();
    // The config and an empty map first, so HAProxy runs before confd.
    let out = Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
        .arg("--config")
        .arg(&r.config_path)
        .arg("--once")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    r.start_haproxy();
    let worker = r.haproxy().worker_pid()?;
    let haproxy_before = proc_mb(worker, "VmRSS:")?;
    let t0 = Instant::now();
    populate(&etcd.endpoint(), &r.schema, n, ports.a)?;
    let load_s = t0.elapsed().as_secs_f64();
    println!(
        "{n} sites written to etcd in {load_s:.1} s ({} keys, transactions of {TXN_SITES} sites)",
        2 * n
    );

    // Sync: confd's start to its full apply (every domain and its www
    // name) in HAProxy's runtime map, per confd's log.
    let log = r.dir.path().join("confd.log");
    let t0 = Instant::now();
    r.start_confd();
    let applied = wait_applied(&log, 0, 2 * n, "the full sync")?;
    let sync_s = t0.elapsed().as_secs_f64();
    let (routes, _) = routes_in_haproxy(&r, ports.a)?;
    anyhow::ensure!(
        routes == n,
        "HAProxy routes {routes} hosts of {n} after the sync"
    );
    let haproxy_map_mb = proc_mb(worker, "VmRSS:")? - haproxy_before;
    println!(
        "sync: confd start to all {n} routed in HAProxy {sync_s:.2} s ({} applies); \
         HAProxy worker RSS {haproxy_before:.1} MB before, +{haproxy_map_mb:.1} MB with the map \
         ({:.0} bytes a site)",
        applied.len(),
        haproxy_map_mb * 1024.0 * 1024.0 / n as f64
    );

    let status_s = match std::env::var_os("HOSTYARD_BIN") {
        None => {
            println!("hostyard status: not timed (HOSTYARD_BIN unset; scripts/bench.sh sets it)");
            None
        }
        Some(bin) => {
            let mut took = Vec::new();
            for _ in 0..runs {
                took.push(time_status(Path::new(&bin), &r, n)?);
            }
            let s = common::median(took.clone());
            println!("hostyard status: {s:.2} s median ({took:.2?})");
            Some(s)
        }
    };

    let map = r.layout.hosts_map().display().to_string();
    let mut latency = Vec::new();
    for run in 0..runs {
        let log_before = std::fs::read(&log)?.len();
        let (route, acked) = route_latency(etcd, &r, ports.fresh, &format!("lat{run}-"), ADDS)?;
        let took = applies_ms_since(&log, log_before);
        let by_hand = floor(&r, &map, ports.fresh, &format!("floor{run}-"), ADDS)?;
        let l = LatencyRun {
            route,
            acked,
            by_hand,
        };
        println!(
            "run {}: route p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {ADDS} adds; floor {:.2} ms \
             (etcd put acknowledged {:.2} + `add map` by hand to first answer {:.2}): {:.2}x; \
             confd's apply per its log p50 {:.0} ms, max {:.0} ms",
            run + 1,
            l.p50(),
            l.p99(),
            l.route[l.route.len() - 1],
            l.floor(),
            percentile(&l.acked, 0.5),
            percentile(&l.by_hand, 0.5),
            l.ratio(),
            percentile(&took, 0.5),
            took.last().copied().unwrap_or(f64::NAN),
        );
        latency.push(l);
    }

    // A burst: a tenth of the sites move at once (as after a reboot, every
    // discovery registering together), sent concurrently.
    let burst_n = (n / 10).min(BURST_MAX);
    let (mut burst_acked_s, mut burst_s, mut burst_applies) = (0.0, 0.0, 0);
    if burst_n > 0 {
        let log_before = std::fs::read(&log)?.len();
        let t0 = Instant::now();
        burst(&etcd.endpoint(), &r.schema, burst_n, ports.b)?;
        burst_acked_s = t0.elapsed().as_secs_f64();
        let applied = wait_applied(&log, log_before, burst_n, "the burst")?;
        burst_s = t0.elapsed().as_secs_f64();
        burst_applies = applied.len();
        let (_, moved) = routes_in_haproxy(&r, ports.b)?;
        anyhow::ensure!(
            moved == burst_n,
            "HAProxy routes {moved} of the burst's {burst_n}"
        );
        println!(
            "burst of {burst_n} concurrent changes: etcd acknowledged all after {burst_acked_s:.2} s, \
             all routed after {burst_s:.2} s in {} applies of {:?} host changes",
            applied.len(),
            applied
        );
    }

    let pid = r.confd.as_ref().map(|c| c.child.id()).unwrap_or_default();
    let (rss_mb, peak_mb) = (proc_mb(pid, "VmRSS:")?, proc_mb(pid, "VmHWM:")?);
    println!("confd RSS {rss_mb:.1} MB, peak {peak_mb:.1} MB");
    drop(r);
    etcd.delete_prefix(&format!("{prefix}/"))?;
    Ok(Figures {
        sites: n,
        runs: latency,
        load_s,
        sync_s,
        rss_mb,
        peak_mb,
        haproxy_map_mb,
        status_s,
        burst: burst_n,
        burst_acked_s,
        burst_s,
        burst_applies,
    })
}

/// ms of each apply confd logged after byte `from` ("applied N host
/// change(s) through the ... in T ms"; whole ms), sorted.
fn applies_ms_since(log: &Path, from: usize) -> Vec<f64> {
    let text = std::fs::read(log).unwrap_or_default();
    let mut took: Vec<f64> = String::from_utf8_lossy(text.get(from..).unwrap_or_default())
        .lines()
        .filter(|l| l.starts_with("applied "))
        .filter_map(|l| l.rsplit(" in ").next()?.strip_suffix(" ms")?.parse().ok())
        .collect();
    took.sort_by(f64::total_cmp);
    took
}

/// Adds `n` sites one after another, each pointing at `port` (a backend
/// answering "fresh"), each after a quiet period: for each,
/// ms from the put of its registration to its first answer from that
/// backend through HAProxy, and ms until etcd acknowledged the put. Sorted.
fn route_latency(
    etcd: &Etcd,
    r: &Router,
    port: u16,
    tag: &str,
    n: usize,
) -> anyhow::Result<(Vec<f64>, Vec<f64>)> {
    let mut lat = Vec::new();
    let mut acked = Vec::new();
    for i in 0..n {
        let dom = d(&format!("{tag}{i}.example.com"));
        let decl = SiteDecl {
            kind: SiteKind::Static,
            aliases: vec![],
            edge: Default::default(),
            php: Default::default(),
        };
        etcd.put(&r.schema.site_key(&dom), &decl.to_json())?;
        // Not measured: the declaration's own apply (a 503 entry) must not
        // overlap the registration's.
        wait_until("the declaration applied", Duration::from_secs(10), || {
            let (status, _) = raw_get(r.port, dom.as_str())?;
            (status == 503).then_some(())
        })?;
        // The registration is timed as a change after a quiet period: sent
        // within confd's coalescing window (`confd.debounce_ms`) of the
        // declaration's apply, it would rightly wait for the window's end
        // and go with whatever else came meanwhile.
        std::thread::sleep(QUIET);
        let v = ServiceValue {
            ip: "127.0.0.1".parse()?,
            port,
            node: None,
        };
        let key = r.schema.service_key(SiteKind::Static, &dom);
        let t0 = Instant::now();
        etcd.put(&key, &v.to_json())?;
        acked.push(t0.elapsed().as_secs_f64() * 1000.0);
        loop {
            if let Some((200, body)) = raw_get(r.port, dom.as_str()) {
                if body == "fresh" {
                    break;
                }
            }
            anyhow::ensure!(t0.elapsed() < Duration::from_secs(10), "{dom} never routed");
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    acked.sort_by(f64::total_cmp);
    Ok((lat, acked))
}

/// ms from an `add map` sent straight to HAProxy's runtime API to the
/// first answer from `port`'s backend through HAProxy, for `n` new hosts.
/// Sorted.
fn floor(r: &Router, map: &str, port: u16, tag: &str, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::new();
    for i in 0..n {
        let host = format!("{tag}{i}.example.com");
        std::thread::sleep(QUIET);
        let t0 = Instant::now();
        let answer = r
            .haproxy()
            .runtime(&format!("add map {map} {host} route/127.0.0.1/{port}"))?;
        anyhow::ensure!(answer.trim().is_empty(), "add map {host}: {answer}");
        loop {
            if let Some((200, body)) = raw_get(r.port, &host) {
                if body == "fresh" {
                    break;
                }
            }
            anyhow::ensure!(
                t0.elapsed() < Duration::from_secs(10),
                "{host} never routed"
            );
            std::thread::sleep(Duration::from_micros(200));
        }
        lat.push(t0.elapsed().as_secs_f64() * 1000.0);
    }
    lat.sort_by(f64::total_cmp);
    Ok(lat)
}

/// Moves sites big0..big`n` to `port`, [`BURST_IN_FLIGHT`] puts in flight
/// at a time.
fn burst(endpoint: &str, schema: &Schema, n: usize, port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = etcd_client::Client::connect([endpoint], None).await?;
        let value = format!(r#"{{"ip":"127.0.0.1","port":"{port}"}}"#);
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..n {
            if puts.len() >= BURST_IN_FLIGHT {
                if let Some(done) = puts.join_next().await {
                    done??;
                }
            }
            let mut kv = client.kv_client();
            let key = schema.service_key(SiteKind::Static, &d(&format!("big{i}.example.com")));
            let value = value.clone();
            puts.spawn(async move { kv.put(key, value, None).await.map(drop) });
        }
        while let Some(done) = puts.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
}

/// Writes `n` declared and registered sites, [`TXN_SITES`] sites a
/// transaction, [`TXN_IN_FLIGHT`] transactions at a time.
fn populate(endpoint: &str, schema: &Schema, n: usize, port: u16) -> anyhow::Result<()> {
    use etcd_client::{Txn, TxnOp};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = etcd_client::Client::connect([endpoint], None).await?;
        let decl = SiteDecl {
            kind: SiteKind::Static,
            aliases: vec![],
            edge: Default::default(),
            php: Default::default(),
        }
        .to_json();
        let value = format!(r#"{{"ip":"127.0.0.1","port":"{port}"}}"#);
        let mut txns = tokio::task::JoinSet::new();
        for chunk in (0..n).collect::<Vec<_>>().chunks(TXN_SITES) {
            let mut ops = Vec::new();
            for i in chunk {
                let dom = d(&format!("big{i}.example.com"));
                ops.push(TxnOp::put(schema.site_key(&dom), decl.clone(), None));
                ops.push(TxnOp::put(
                    schema.service_key(SiteKind::Static, &dom),
                    value.clone(),
                    None,
                ));
            }
            if txns.len() >= TXN_IN_FLIGHT {
                if let Some(done) = txns.join_next().await {
                    done??;
                }
            }
            let mut kv = client.kv_client();
            txns.spawn(async move { kv.txn(Txn::new().and_then(ops)).await.map(drop) });
        }
        while let Some(done) = txns.join_next().await {
            done??;
        }
        anyhow::Ok(())
    })
}
