//! Bounded waiting and port picking, shared by every service guard.

use std::net::TcpListener;
use std::thread;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Context};

/// How often [`wait_until`] asks again: short enough that tests measuring
/// "within a second" are not dominated by the poll itself.
const POLL_INTERVAL: Duration = Duration::from_millis(10);

/// A TCP port on 127.0.0.1 that was free a moment ago.
///
/// The kernel picks it (bind to port 0); the listener is dropped before
/// returning, so another process could take it in between. Services started
/// by this crate retry with new ports when that race is lost.
pub fn free_port() -> u16 {
    try_free_port().unwrap_or_else(|e| panic!("no free port on 127.0.0.1: {e:#}"))
}

pub(crate) fn try_free_port() -> anyhow::Result<u16> {
    let listener = TcpListener::bind(("127.0.0.1", 0)).context("bind 127.0.0.1:0")?;
    Ok(listener.local_addr().context("local_addr")?.port())
}

/// Calls `f` every ~10 ms until it returns `Some`, for at most `timeout`.
///
/// `f` is always called at least once, and once more after the deadline has
/// passed, so a slow first call cannot make the wait fail without a last look.
pub fn wait_until<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> anyhow::Result<T> {
    let start = Instant::now();
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() >= timeout {
            // One last look: the condition may have become true while we slept.
            if let Some(v) = f() {
                return Ok(v);
            }
            return Err(anyhow!(
                "timed out after {:.1}s waiting for {what}",
                timeout.as_secs_f64()
            ));
        }
        thread::sleep(POLL_INTERVAL);
    }
}

/// Like [`wait_until`] for a fallible check: retries while `f` fails, and
/// on timeout the error also carries the last failure, which usually says
/// why ("connection refused", "got 503").
pub fn wait_until_ok<T>(
    what: &str,
    timeout: Duration,
    mut f: impl FnMut() -> anyhow::Result<T>,
) -> anyhow::Result<T> {
    let mut last = None;
    wait_until(what, timeout, || match f() {
        Ok(v) => Some(v),
        Err(e) => {
            last = Some(e);
            None
        }
    })
    .map_err(|e| match last.take() {
        // "timed out ... waiting for X: <why the last attempt failed>"
        Some(last) => last.context(e.to_string()),
        None => e,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_until_returns_the_first_some() {
        let mut n = 0;
        let got = wait_until("n to reach 3", Duration::from_secs(5), || {
            n += 1;
            (n >= 3).then_some(n)
        })
        .expect("reaches 3");
        assert_eq!(got, 3);
    }

    #[test]
    fn wait_until_names_what_it_waited_for_on_timeout() {
        let err =
            wait_until("godot", Duration::from_millis(200), || None::<()>).expect_err("never true");
        assert_eq!(err.to_string(), "timed out after 0.2s waiting for godot");
    }

    #[test]
    fn wait_until_ok_reports_the_last_failure() {
        let mut n = 0;
        let err = wait_until_ok(
            "success",
            Duration::from_millis(100),
            || -> anyhow::Result<()> {
                n += 1;
                Err(anyhow!("attempt {n} refused"))
            },
        )
        .expect_err("never succeeds");
        let msg = format!("{err:#}");
        assert!(
            msg.starts_with("timed out after 0.1s waiting for success: attempt "),
            "{msg}"
        );
        assert!(msg.ends_with(" refused"), "{msg}");
    }

    #[test]
    fn free_port_can_be_bound() {
        let port = free_port();
        assert_ne!(port, 0);
        TcpListener::bind(("127.0.0.1", port)).expect("port is free");
    }
}
