//! `scripts/bench.sh redirects`: the throughput cost of a site's 1,000 path
//! redirects (the most `hostyard site set` allows: 500 exact, 500 prefix)
//! for the requests no rule takes, through hostyard's HAProxy config with
//! confd, against the same HAProxy without rules, in one run: wrk on
//! keep-alive connections to a routed site, medians of alternating short
//! runs, the rules put into and taken out of the site's declaration
//! between runs (applied by confd through the runtime API). Prints its
//! figures, then one summary line:
//! `redirects: rules=1000 rps_without=.. rps_with=.. ratio=.. failed=..`
//!
//! `HOSTYARD_BENCH_EDGE=1`: the site with rules also has a preview
//! password (every request carries the right `Authorization` header, so
//! HAProxy hashes it each time) and the strict headers preset: the cost of
//! all of a site's edge rules at once (`edge=1` in the summary).

#[allow(dead_code, reason = "each bench uses a part of it")]
mod common;
#[path = "../tests/util.rs"]
#[allow(dead_code)]
mod util;

use std::process::Command;

use common::{fast_backend, median};
use hostyard_core::edge::PathRedirect;
use hostyard_core::etcd::SiteDecl;
use hostyard_core::SiteKind;
use hostyard_testsupport::{http_get_with_headers, wait_until, Etcd};
use util::{d, Router, T};

const SITE: &str = "bench.example.com";
const RULES: usize = 1_000;
/// Alternating runs per variant, and seconds per run.
const RUNS: usize = 3;
const RUN_SECS: u64 = 4;

fn main() -> anyhow::Result<()> {
    let etcd = Etcd::start()?;
    let mut r = Router::new(&etcd);
    r.start();
    let port = fast_backend("bench")?;
    r.register(&etcd, SiteKind::Static, SITE, port);
    r.wait_for(SITE, 200, "bench");
    let key = r.schema.site_key(&d(SITE));
    let plain = SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![],
        edge: Default::default(),
        php: Default::default(),
    };
    let mut ruled = plain.clone();
    for i in 0..RULES / 2 {
        ruled.edge.redirects.push(
            PathRedirect::parse(&format!("/old/page-{i}.html=/new/page-{i}"), false)
                .map_err(anyhow::Error::msg)?,
        );
        ruled.edge.redirects.push(
            PathRedirect::parse(
                &format!("308:/section-{i}/=https://archive.example.org/{i}/"),
                true,
            )
            .map_err(anyhow::Error::msg)?,
        );
    }
    let edge = std::env::var_os("HOSTYARD_BENCH_EDGE").is_some_and(|v| v == "1");
    let password = "a long preview password";
    if edge {
        ruled.edge.basic_auth = Some(
            hostyard_core::edge::BasicAuth::new("bench", password, [9; 16])
                .map_err(anyhow::Error::msg)?,
        );
        ruled.edge.headers = hostyard_core::edge::HeadersPreset::Strict;
    }
    let authorization = hostyard_core::edge::authorization("bench", password);
    // As `hostyard site set` would store it: checked, sorted.
    ruled.edge.redirects = hostyard_core::edge::decide_redirects(&[], &ruled.edge.redirects, &[])
        .map_err(|p| anyhow::anyhow!(p.join("; ")))?;
    let probe = |want: u16| -> anyhow::Result<()> {
        wait_until(&format!("/old/page-7.html -> {want}"), T, || {
            http_get_with_headers(r.port, SITE, "/old/page-7.html", &[])
                .ok()
                .filter(|a| a.status == want)
                .map(|_| ())
        })
    };
    let (mut without, mut with, mut failed) = (Vec::new(), Vec::new(), 0);
    for _ in 0..RUNS {
        for (decl, want, out) in [(&plain, 200, &mut without), (&ruled, 301, &mut with)] {
            etcd.put(&key, &decl.to_json())?;
            probe(want)?;
            let mut cmd = Command::new("wrk");
            cmd.args(["-H", &format!("Host: {SITE}")]);
            // The same request to both: the header costs the site without
            // a password only its bytes.
            cmd.args(["-H", &format!("Authorization: {authorization}")]);
            cmd.arg(format!(
                "http://127.0.0.1:{}/articles/2024/hello.html?x=1",
                r.port
            ));
            let w = common::wrk(&mut cmd, 8, RUN_SECS)?;
            println!(
                "{} rules: {:.0} requests/s, {} failed",
                if want == 301 { RULES } else { 0 },
                w.rps,
                w.failed
            );
            out.push(w.rps);
            failed += w.failed;
        }
    }
    let (a, b) = (median(without), median(with));
    println!(
        "redirects: rules={RULES} edge={} rps_without={a:.0} rps_with={b:.0} ratio={:.3} failed={failed}",
        u8::from(edge),
        b / a
    );
    Ok(())
}
