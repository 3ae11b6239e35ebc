//! When a site enters and leaves routing, decided from probe outcomes alone.
//!
//! The original removed a site on one failed curl. This module is the whole
//! policy, kept free of I/O so it can be tested probe by probe: a site is
//! routed on its first good answer, stays routed through up to `threshold - 1`
//! consecutive failures, leaves on the `threshold`-th, comes back on the next
//! good answer, and is re-announced whenever its address changes.

use std::net::IpAddr;

/// What one health check found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The container answered at this address.
    Healthy(IpAddr),
    /// It did not; the text says why, for the log.
    Failed(String),
}

/// A change the registration must follow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Change {
    /// Not routed before, routed at this address now.
    Register(IpAddr),
    /// Routed before at `from`, answers at `to` now (the container restarted).
    Moved { from: IpAddr, to: IpAddr },
    /// Failed `threshold` times in a row: out of routing.
    Remove,
}

/// The failure counter and the address the site should be routed to.
#[derive(Debug, Clone)]
pub struct Tracker {
    threshold: u32,
    consecutive_failures: u32,
    routed: Option<IpAddr>,
}

impl Tracker {
    /// `threshold` is the number of consecutive failures that removes a site
    /// (the config guarantees at least 1).
    pub fn new(threshold: u32) -> Tracker {
        Tracker {
            threshold: threshold.max(1),
            consecutive_failures: 0,
            routed: None,
        }
    }

    /// Where the site should be routed now, if anywhere.
    pub fn routed(&self) -> Option<IpAddr> {
        self.routed
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.consecutive_failures
    }

    pub fn threshold(&self) -> u32 {
        self.threshold
    }

    /// Takes one probe outcome; returns the change to make, if any.
    pub fn observe(&mut self, outcome: &Outcome) -> Option<Change> {
        match outcome {
            Outcome::Healthy(ip) => {
                self.consecutive_failures = 0;
                match self.routed.replace(*ip) {
                    None => Some(Change::Register(*ip)),
                    Some(from) if from != *ip => Some(Change::Moved { from, to: *ip }),
                    Some(_) => None,
                }
            }
            Outcome::Failed(_) => {
                self.consecutive_failures = self.consecutive_failures.saturating_add(1);
                if self.consecutive_failures >= self.threshold && self.routed.take().is_some() {
                    Some(Change::Remove)
                } else {
                    None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn fail() -> Outcome {
        Outcome::Failed("timed out".into())
    }

    #[test]
    fn first_good_answer_registers() {
        let mut t = Tracker::new(3);
        assert_eq!(t.observe(&fail()), None);
        assert_eq!(
            t.observe(&Outcome::Healthy(ip("172.18.0.5"))),
            Some(Change::Register(ip("172.18.0.5")))
        );
        assert_eq!(t.observe(&Outcome::Healthy(ip("172.18.0.5"))), None);
        assert_eq!(t.routed(), Some(ip("172.18.0.5")));
    }

    #[test]
    fn leaves_on_the_nth_consecutive_failure_and_not_before() {
        let mut t = Tracker::new(3);
        t.observe(&Outcome::Healthy(ip("10.0.0.2")));
        assert_eq!(t.observe(&fail()), None);
        assert_eq!(t.observe(&fail()), None);
        assert_eq!(t.routed(), Some(ip("10.0.0.2")));
        assert_eq!(t.observe(&fail()), Some(Change::Remove));
        assert_eq!(t.routed(), None);
        // Further failures change nothing more.
        assert_eq!(t.observe(&fail()), None);
    }

    #[test]
    fn a_good_answer_resets_the_count() {
        let mut t = Tracker::new(3);
        t.observe(&Outcome::Healthy(ip("10.0.0.2")));
        t.observe(&fail());
        t.observe(&fail());
        assert_eq!(t.observe(&Outcome::Healthy(ip("10.0.0.2"))), None);
        assert_eq!(t.consecutive_failures(), 0);
        t.observe(&fail());
        assert_eq!(t.observe(&fail()), None, "count restarted after recovery");
    }

    #[test]
    fn recovery_registers_again() {
        let mut t = Tracker::new(1);
        t.observe(&Outcome::Healthy(ip("10.0.0.2")));
        assert_eq!(t.observe(&fail()), Some(Change::Remove));
        assert_eq!(
            t.observe(&Outcome::Healthy(ip("10.0.0.2"))),
            Some(Change::Register(ip("10.0.0.2")))
        );
    }

    #[test]
    fn new_address_moves_the_registration_even_mid_failures() {
        let mut t = Tracker::new(3);
        t.observe(&Outcome::Healthy(ip("10.0.0.2")));
        t.observe(&fail());
        assert_eq!(
            t.observe(&Outcome::Healthy(ip("10.0.0.3"))),
            Some(Change::Moved {
                from: ip("10.0.0.2"),
                to: ip("10.0.0.3")
            })
        );
        assert_eq!(t.routed(), Some(ip("10.0.0.3")));
    }

    #[test]
    fn threshold_zero_behaves_as_one() {
        let mut t = Tracker::new(0);
        t.observe(&Outcome::Healthy(ip("10.0.0.2")));
        assert_eq!(t.observe(&fail()), Some(Change::Remove));
    }

    proptest! {
        /// Whatever the sequence, the site is routed exactly when its last
        /// good answer is followed by fewer than `threshold` failures, and
        /// it is routed at that answer's address.
        #[test]
        fn routed_iff_fewer_than_threshold_failures_since_last_success(
            threshold in 1u32..5,
            steps in proptest::collection::vec(proptest::option::of(0u8..3), 0..40),
        ) {
            let mut t = Tracker::new(threshold);
            let mut last_good: Option<IpAddr> = None;
            let mut since = 0u32;
            for step in steps {
                match step {
                    Some(n) => {
                        let a = IpAddr::from([10, 0, 0, n]);
                        t.observe(&Outcome::Healthy(a));
                        last_good = Some(a);
                        since = 0;
                    }
                    None => {
                        t.observe(&fail());
                        since += 1;
                    }
                }
                let expected = last_good.filter(|_| since < threshold);
                prop_assert_eq!(t.routed(), expected);
            }
        }
    }
}
