//! `scripts/bench.sh confd`: hostyard-confd against real etcd, HAProxy and
//! loopback backends. Prints medians, then one summary line:
//! `confd: route_p50_ms=.. route_p99_ms=.. route_10k_p50_ms=.. route_10k_p99_ms=..
//! floor_10k_p50_ms=.. route_10k_vs_floor=.. burst_applies=.. failed=.. sync_10k_s=.. rss_mb=.. proxy_ratio=..`
//!
//! Bounded: about two minutes on 2 cores.

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
const SITES_10K: usize = 10_000;
/// Pause before each timed registration: four times confd's default
/// coalescing window, so the registration is a change after a quiet period.
const QUIET: Duration = Duration::from_millis(20);
/// Changes sent at once in the burst measurement.
const BURST: usize = 1_000;

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
    let etcd = Etcd::start()?;
    let mut r = Router::new(&etcd);
    let a = fast_backend("a")?;
    let b = fast_backend("b")?;
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

    // 1. Route latency: put → first answer from the new backend.
    let fresh = fast_backend("fresh")?;
    let (lat, acked) = route_latency(&etcd, &r, fresh, "lat", 60)?;
    let (p50, p99) = (percentile(&lat, 0.5), percentile(&lat, 0.99));
    println!(
        "etcd put acknowledged: p50 {:.2} ms (part of the route latency below)",
        percentile(&acked, 0.5)
    );
    println!(
        "route latency over {} adds ({} sites): p50 {p50:.2} ms, p99 {p99:.2} ms, max {:.2} ms",
        lat.len(),
        stable.len() + moving.len(),
        lat[lat.len() - 1]
    );

    // 2. Keep-alive load while 100 sites change and 10 structural reloads run.
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

    // 4. 10,000 sites: confd start to all routed, and its memory.
    let mut big = Router::new(&etcd);
    big.config.etcd.prefix = "/big".to_string();
    big.schema = Schema::new("/big");
    big.write_config();
    // The config and empty map first, so HAProxy runs before confd starts.
    let out = Command::new(env!("CARGO_BIN_EXE_hostyard-confd"))
        .arg("--config")
        .arg(&big.config_path)
        .arg("--once")
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    big.start_haproxy();
    populate(&etcd.endpoint(), &big.schema, SITES_10K, a)?;
    let t0 = Instant::now();
    big.start_confd();
    let map = big.layout.hosts_map().display().to_string();
    let last = format!("big{}.example.com", SITES_10K - 1);
    wait_until("10k sites routed", Duration::from_secs(60), || {
        let shown = big.haproxy().runtime(&format!("show map {map}")).ok()?;
        let n = shown.lines().filter(|l| l.contains("route/")).count();
        (n == SITES_10K).then_some(())
    })?;
    let sync = t0.elapsed().as_secs_f64();
    let (status, _) = raw_get(big.port, &last).unwrap_or_default();
    anyhow::ensure!(status == 200, "{last} answered {status}");
    let pid = big.confd.as_ref().map(|c| c.child.id()).unwrap_or_default();
    let proc_status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |field: &str| -> f64 {
        proc_status
            .lines()
            .find(|l| l.starts_with(field))
            .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    let (rss, hwm) = (kb("VmRSS:") / 1024.0, kb("VmHWM:") / 1024.0);
    println!(
        "10k sites: confd start to all {SITES_10K} routed in HAProxy {sync:.2} s; confd RSS \
         {rss:.1} MB (peak {hwm:.1} MB)"
    );

    // 5. Route latency with 10,000 sites routed: what a change costs when
    // confd's view and HAProxy's map are big.
    let log_path = big.dir.path().join("confd.log");
    let log_before = std::fs::read_to_string(&log_path)?.len();
    let lat_big = route_latency(&etcd, &big, fresh, "lat10k", 60)?;
    let (lat_big, acked_big) = lat_big;
    let (p50_10k, p99_10k) = (percentile(&lat_big, 0.5), percentile(&lat_big, 0.99));
    // The floor in the same run: etcd's acknowledgement of the put plus
    // HAProxy taking one `add map` straight from this process and serving
    // it, with confd not involved.
    let direct = floor(&big, &map, fresh, 60)?;
    let floor_p50 = percentile(&acked_big, 0.5) + percentile(&direct, 0.5);
    println!(
        "floor with {SITES_10K} sites: etcd put acknowledged p50 {:.2} ms + `add map` by hand to \
         first answer p50 {:.2} ms = {floor_p50:.2} ms; hostyard's route p50 is {:.1}x that",
        percentile(&acked_big, 0.5),
        percentile(&direct, 0.5),
        p50_10k / floor_p50
    );
    println!(
        "route latency over {} adds ({SITES_10K} sites): p50 {p50_10k:.2} ms, p99 {p99_10k:.2} \
         ms, max {:.2} ms",
        lat_big.len(),
        lat_big[lat_big.len() - 1]
    );
    // confd's own share: its log's "applied N host change(s) through the
    // ... in T ms" (the runtime API; whole ms).
    let log = std::fs::read_to_string(&log_path)?;
    let mut took: Vec<f64> = log[log_before..]
        .lines()
        .filter(|l| l.starts_with("applied "))
        .filter_map(|l| l.rsplit(" in ").next()?.strip_suffix(" ms")?.parse().ok())
        .collect();
    took.sort_by(f64::total_cmp);
    println!(
        "  of which confd's apply (runtime API; the map file follows off the loop), per its log: p50 {:.0} ms, \
         max {:.0} ms over {} applies",
        percentile(&took, 0.5),
        took.last().copied().unwrap_or(f64::NAN),
        took.len()
    );

    // 6. A burst: 1,000 sites move at once (as after a reboot, every
    // discovery registering together), sent concurrently. How many applies
    // confd makes of it, counted from its log, and how long until HAProxy
    // routes all of them.
    let log_before = std::fs::read_to_string(&log_path)?.len();
    let t0 = Instant::now();
    burst(&etcd.endpoint(), &big.schema, BURST, b)?;
    let moved = format!("route/127.0.0.1/{}", b);
    wait_until("the burst routed", Duration::from_secs(60), || {
        let shown = big.haproxy().runtime(&format!("show map {map}")).ok()?;
        let n = shown.lines().filter(|l| l.contains(&moved)).count();
        (n == BURST).then_some(())
    })?;
    let burst_ms = t0.elapsed().as_secs_f64() * 1000.0;
    let log = std::fs::read_to_string(&log_path)?;
    let applied: Vec<usize> = log[log_before..]
        .lines()
        .filter_map(|l| l.strip_prefix("applied ")?.split(' ').next()?.parse().ok())
        .collect();
    println!(
        "burst of {BURST} concurrent changes ({SITES_10K} sites): all routed after \
         {burst_ms:.0} ms in {} applies of {:?} host changes",
        applied.len(),
        applied
    );

    println!(
        "confd: route_p50_ms={p50:.1} route_p99_ms={p99:.1} route_10k_p50_ms={p50_10k:.1} \
         route_10k_p99_ms={p99_10k:.1} floor_10k_p50_ms={floor_p50:.1} \
         route_10k_vs_floor={:.2} burst_applies={} \
         failed={} sync_10k_s={sync:.2} rss_mb={rss:.1} proxy_ratio={ratio:.2}",
        p50_10k / floor_p50,
        applied.len(),
        load.failed
    );
    Ok(())
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
fn floor(r: &Router, map: &str, port: u16, n: usize) -> anyhow::Result<Vec<f64>> {
    let mut lat = Vec::new();
    for i in 0..n {
        let host = format!("floor{i}.example.com");
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

/// Moves sites big0..big`n` to `port` with `n` puts in flight together.
fn burst(endpoint: &str, schema: &Schema, n: usize, port: u16) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let client = etcd_client::Client::connect([endpoint], None).await?;
        let value = format!(r#"{{"ip":"127.0.0.1","port":"{port}"}}"#);
        let mut puts = tokio::task::JoinSet::new();
        for i in 0..n {
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

/// Writes `n` declared and registered sites, 64 sites (128 puts) per txn.
fn populate(endpoint: &str, schema: &Schema, n: usize, port: u16) -> anyhow::Result<()> {
    use etcd_client::{Txn, TxnOp};
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut client = etcd_client::Client::connect([endpoint], None).await?;
        let decl = SiteDecl {
            kind: SiteKind::Static,
            aliases: vec![],
            edge: Default::default(),
        }
        .to_json();
        let value = format!(r#"{{"ip":"127.0.0.1","port":"{port}"}}"#);
        for chunk in (0..n).collect::<Vec<_>>().chunks(64) {
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
            client.txn(Txn::new().and_then(ops)).await?;
        }
        anyhow::Ok(())
    })
}
