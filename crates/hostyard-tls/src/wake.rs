//! A wake-up for a thread that otherwise looks every `tls.scan_secs`: the
//! ACME thread when a site's registration appears in etcd, the certificate
//! thread when ACME wrote a file. The periodic look stays (renewals, a
//! file an operator put there, a wake that came from nowhere); a wake
//! only makes the next look come now.
//!
//! A wake is never lost: one that arrives while the thread is busy (in a
//! pass) is kept until its next wait, which returns at once. Many wakes
//! before that wait fold into one, with every domain they named: a burst
//! of new sites is served by one pass.

use std::collections::BTreeSet;
use std::sync::{Condvar, Mutex};
use std::time::Duration;

use hostyard_core::Domain;

#[derive(Default)]
pub struct Wake {
    /// `Some`: a wake since the last wait took it, with the domains named.
    pending: Mutex<Option<BTreeSet<Domain>>>,
    /// For a thread that waits blocking (the certificate thread).
    blocking: Condvar,
    /// For a task that waits on a tokio runtime (the ACME thread); it keeps
    /// one permit when nobody waits, and [`Wake::pending`] is the truth.
    tasks: tokio::sync::Notify,
}

impl Wake {
    /// Asks for a look now at `domains` (none named: a look at all).
    pub fn wake(&self, domains: impl IntoIterator<Item = Domain>) {
        crate::lock(&self.pending)
            .get_or_insert_with(BTreeSet::new)
            .extend(domains);
        self.blocking.notify_all();
        self.tasks.notify_one();
    }

    /// What was asked since the last wait, if anything; clears it.
    pub fn take(&self) -> Option<BTreeSet<Domain>> {
        crate::lock(&self.pending).take()
    }

    /// Blocks until a wake or `timeout`; returns the wake's domains, or
    /// `None` when the time ran out without one.
    pub fn wait_blocking(&self, timeout: Duration) -> Option<BTreeSet<Domain>> {
        let guard = crate::lock(&self.pending);
        let (mut guard, _) = self
            .blocking
            .wait_timeout_while(guard, timeout, |p| p.is_none())
            .unwrap_or_else(|e| e.into_inner());
        guard.take()
    }

    /// [`Wake::wait_blocking`] for a task.
    pub async fn wait(&self, timeout: Duration) -> Option<BTreeSet<Domain>> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            // Made before looking, so a wake between the look and the
            // await still wakes it.
            let notified = self.tasks.notified();
            if let Some(domains) = self.take() {
                return Some(domains);
            }
            tokio::select! {
                _ = notified => {}
                _ = tokio::time::sleep_until(deadline) => return self.take(),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn d(name: &str) -> Domain {
        Domain::parse(name).unwrap()
    }

    fn set(names: &[&str]) -> Option<BTreeSet<Domain>> {
        Some(names.iter().map(|n| d(n)).collect())
    }

    #[test]
    fn a_wake_while_the_thread_is_busy_is_kept_for_its_next_wait() {
        let wake = Wake::default();
        // Nothing asked: a wait of no time finds nothing.
        assert_eq!(wake.wait_blocking(Duration::ZERO), None);
        // The thread is in a pass (not waiting) when these arrive.
        wake.wake([d("a.example")]);
        wake.wake([d("b.example")]);
        // Its next wait returns at once with both, folded into one.
        assert_eq!(
            wake.wait_blocking(Duration::ZERO),
            set(&["a.example", "b.example"])
        );
        assert_eq!(wake.wait_blocking(Duration::ZERO), None);
        // A wake naming nothing still counts.
        wake.wake([]);
        assert_eq!(wake.wait_blocking(Duration::ZERO), set(&[]));
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_woken_during_its_pass_runs_another_pass_before_the_period() {
        // Paused time: a lost wake would show as the hour-long wait
        // running out (`None`), never as a hang.
        let wake = Arc::new(Wake::default());
        let started = tokio::time::Instant::now();
        let mut passes = Vec::new();
        for pass in 0..3 {
            // The pass: the first one is woken while it runs.
            if pass == 0 {
                wake.wake([d("new.example")]);
            }
            let woken = wake.wait(Duration::from_secs(3600)).await;
            passes.push((woken, started.elapsed()));
        }
        assert_eq!(passes[0], (set(&["new.example"]), Duration::ZERO));
        // Without a wake, the periodic look comes after its period.
        assert_eq!(passes[1], (None, Duration::from_secs(3600)));
        assert_eq!(passes[2], (None, Duration::from_secs(7200)));
    }

    #[tokio::test(start_paused = true)]
    async fn a_waiting_task_is_woken_from_another_task() {
        let wake = Arc::new(Wake::default());
        let waiter = tokio::spawn({
            let wake = wake.clone();
            async move { wake.wait(Duration::from_secs(3600)).await }
        });
        tokio::task::yield_now().await;
        wake.wake([d("new.example")]);
        assert_eq!(waiter.await.unwrap(), set(&["new.example"]));
    }

    #[test]
    fn a_blocked_thread_is_woken_from_another() {
        let wake = Arc::new(Wake::default());
        let waiter = std::thread::spawn({
            let wake = wake.clone();
            move || wake.wait_blocking(Duration::from_secs(3600))
        });
        wake.wake([d("new.example")]);
        assert_eq!(waiter.join().unwrap(), set(&["new.example"]));
    }
}
