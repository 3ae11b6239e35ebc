//! What the confd and tls benches share: a backend that answers at once,
//! wrk's figures, medians, and a plain HAProxy config with hostyard's own
//! global and defaults sections (the peer each ratio is measured against).

use std::io::{Read, Write};
use std::path::Path;
use std::process::Command;

use crate::util::Router;

/// A keep-alive HTTP backend on 127.0.0.1 that answers each request with
/// one write and TCP_NODELAY: the test harness's backend writes head and
/// body apart, which Nagle plus delayed ACKs turn into 40 ms per answer,
/// and that would be measured instead of the proxy. Returns its port.
pub fn fast_backend(body: &str) -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let port = listener.local_addr()?.port();
    let response = format!(
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let response: &'static [u8] = Box::leak(response.into_bytes().into_boxed_slice());
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut conn) = conn else { continue };
            std::thread::spawn(move || {
                let _ = conn.set_nodelay(true);
                let mut buf = [0u8; 8192];
                let mut have = 0;
                loop {
                    match conn.read(&mut buf[have..]) {
                        Ok(0) | Err(_) => return,
                        Ok(n) => have += n,
                    }
                    // Answer every complete request head in the buffer.
                    while let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
                        if conn.write_all(response).is_err() {
                            return;
                        }
                        buf.copy_within(end + 4..have, 0);
                        have -= end + 4;
                    }
                    if have == buf.len() {
                        return;
                    }
                }
            });
        }
    });
    Ok(port)
}

/// The value at `p` (0..=1) of sorted figures; NaN when there are none.
pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

pub fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(&v, 0.5)
}

/// What one wrk run measured.
pub struct WrkResult {
    pub rps: f64,
    /// Requests without a 2xx/3xx answer: wrk's non-2xx/3xx responses plus
    /// its socket errors (connect, read, write, timeout). wrk never retries
    /// a request, so one sent on a connection HAProxy closes counts here; a
    /// response with `Connection: close` (an old worker after a reload) is
    /// an answer, and wrk opens a new connection for the next request.
    pub failed: u64,
}

/// Runs wrk as `cmd` says (its target and options) with 2 threads, `conns`
/// connections for `secs` seconds, and reads its figures.
pub fn wrk(cmd: &mut Command, conns: u32, secs: u64) -> anyhow::Result<WrkResult> {
    let out = cmd
        .args([
            "-t",
            "2",
            "-c",
            &conns.to_string(),
            "-d",
            &format!("{secs}s"),
        ])
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    anyhow::ensure!(out.status.success(), "wrk failed: {text}");
    let mut rps = 0.0;
    let mut failed = 0;
    for line in text.lines().map(str::trim) {
        if let Some(v) = line.strip_prefix("Requests/sec:") {
            rps = v.trim().parse().unwrap_or(0.0);
        }
        if let Some(v) = line.strip_prefix("Non-2xx or 3xx responses:") {
            failed += v.trim().parse::<u64>().unwrap_or(0);
        }
        if let Some(v) = line.strip_prefix("Socket errors:") {
            // "connect 0, read 0, write 0, timeout 0"
            failed += v
                .split(',')
                .filter_map(|part| part.split_whitespace().last()?.parse::<u64>().ok())
                .sum::<u64>();
        }
    }
    anyhow::ensure!(rps > 0.0, "wrk measured nothing: {text}");
    Ok(WrkResult { rps, failed })
}

/// hostyard's HAProxy config up to its first frontend (global and
/// defaults: logging, timeouts, TLS settings), with the admin socket moved
/// to `admin`: a plain HAProxy given this head differs from hostyard's only
/// by what follows, which is what a ratio should measure.
pub fn plain_head(r: &Router, admin: &Path) -> anyhow::Result<String> {
    let ours = std::fs::read_to_string(r.layout.haproxy_cfg())?;
    Ok(ours
        .split("\nfrontend ")
        .next()
        .unwrap_or_default()
        .replace(
            &r.layout.haproxy_admin_socket().display().to_string(),
            &admin.display().to_string(),
        ))
}
