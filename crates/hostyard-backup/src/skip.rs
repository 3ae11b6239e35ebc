//! Whether a backup takes a snapshot or finds the site unchanged, apart
//! from the effects: a function of the last backup's record and what this
//! backup sees, reading no clock, file or repository, unit-tested here.
//!
//! A site is skipped only when all of these hold: the record has a
//! fingerprint and it equals the site's now (nothing the export would hold
//! changed), the repository is the same one (address and password file),
//! the snapshot is younger than `backup.unchanged_max_age` (so retention
//! always finds a recent one), and no `--force`. Then, and only then, the
//! caller asks the repository whether the snapshot is still there (an
//! operator's `restic forget` may have removed it): [`confirm`].

use crate::state::LastBackup;

/// Why a snapshot is taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// `hostyard backup run --force`.
    Forced,
    /// No record, or one written before backups were skipped.
    NoRecord,
    /// The site's kind is always backed up (its database cannot be
    /// fingerprinted cheaply), or its fingerprint could not be taken.
    NoFingerprint,
    /// Something the export holds changed.
    Changed,
    /// The repository or its password file is not the one of the record.
    OtherRepository,
    /// The last snapshot is `backup.unchanged_max_age` old, or the clock
    /// is before it.
    MaxAge,
    /// The recorded snapshot is no longer in the repository.
    Gone,
}

impl Reason {
    /// Why, for the backup's line.
    pub fn describe(self) -> &'static str {
        match self {
            Reason::Forced => "forced",
            Reason::NoRecord => "no earlier backup recorded",
            Reason::NoFingerprint => "always backed up",
            Reason::Changed => "changed",
            Reason::OtherRepository => "another repository",
            Reason::MaxAge => "the last snapshot reached backup.unchanged_max_age",
            Reason::Gone => "the last snapshot is gone from the repository",
        }
    }
}

/// What this backup sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Now<'a> {
    pub force: bool,
    /// The site's fingerprint, `None` when it has none.
    pub fingerprint: Option<&'a str>,
    /// The repository's fingerprint.
    pub repository: &'a str,
    /// Unix time.
    pub time: u64,
    /// `backup.unchanged_max_age` in seconds.
    pub max_age_secs: u64,
}

/// The decision before the repository is asked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    Snapshot(Reason),
    /// Unchanged: skip, if the repository still has this snapshot.
    SkipIfPresent(String),
}

pub fn decide(last: Option<&LastBackup>, now: &Now) -> Decision {
    if now.force {
        return Decision::Snapshot(Reason::Forced);
    }
    let Some(last) = last else {
        return Decision::Snapshot(Reason::NoRecord);
    };
    let (Some(recorded), Some(taken)) = (last.fingerprint.as_deref(), last.snapshot_time) else {
        return Decision::Snapshot(if last.snapshot_time.is_none() {
            Reason::NoRecord
        } else {
            Reason::NoFingerprint
        });
    };
    let Some(fingerprint) = now.fingerprint else {
        return Decision::Snapshot(Reason::NoFingerprint);
    };
    if recorded != fingerprint {
        return Decision::Snapshot(Reason::Changed);
    }
    if last.repository.as_deref() != Some(now.repository) {
        return Decision::Snapshot(Reason::OtherRepository);
    }
    // A clock before the snapshot cannot say how old it is: take one.
    if now.time < taken || now.time - taken >= now.max_age_secs {
        return Decision::Snapshot(Reason::MaxAge);
    }
    Decision::SkipIfPresent(last.snapshot.clone())
}

/// The final word once the repository was asked whether the snapshot of
/// [`Decision::SkipIfPresent`] is there: `None` skips.
pub fn confirm(present: bool) -> Option<Reason> {
    (!present).then_some(Reason::Gone)
}

/// The record of a skipped backup: the last one's, with this backup's time
/// as the last good one (the repository holds the site as it is now).
pub fn skipped(last: &LastBackup, time: u64) -> LastBackup {
    LastBackup {
        time,
        ..last.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DAY: u64 = 86_400;

    fn record() -> LastBackup {
        LastBackup {
            time: 10 * DAY,
            snapshot: "0123abcd".into(),
            snapshot_time: Some(10 * DAY),
            fingerprint: Some("f1".into()),
            repository: Some("r1".into()),
        }
    }

    fn now() -> Now<'static> {
        Now {
            force: false,
            fingerprint: Some("f1"),
            repository: "r1",
            time: 11 * DAY,
            max_age_secs: 7 * DAY,
        }
    }

    #[test]
    fn an_unchanged_site_in_the_same_repository_is_skipped_if_its_snapshot_is_there() {
        let skip = Decision::SkipIfPresent("0123abcd".into());
        assert_eq!(decide(Some(&record()), &now()), skip);
        assert_eq!(confirm(true), None);
        assert_eq!(confirm(false), Some(Reason::Gone));
    }

    #[test]
    fn force_a_missing_or_old_record_and_a_database_take_a_snapshot() {
        let forced = Now {
            force: true,
            ..now()
        };
        assert_eq!(
            decide(Some(&record()), &forced),
            Decision::Snapshot(Reason::Forced)
        );
        assert_eq!(decide(None, &now()), Decision::Snapshot(Reason::NoRecord));
        let old = LastBackup {
            snapshot_time: None,
            fingerprint: None,
            repository: None,
            ..record()
        };
        assert_eq!(
            decide(Some(&old), &now()),
            Decision::Snapshot(Reason::NoRecord)
        );
        let database = Now {
            fingerprint: None,
            ..now()
        };
        assert_eq!(
            decide(Some(&record()), &database),
            Decision::Snapshot(Reason::NoFingerprint)
        );
        let recorded_without = LastBackup {
            fingerprint: None,
            ..record()
        };
        assert_eq!(
            decide(Some(&recorded_without), &now()),
            Decision::Snapshot(Reason::NoFingerprint)
        );
    }

    #[test]
    fn a_change_or_another_repository_takes_a_snapshot() {
        let changed = Now {
            fingerprint: Some("f2"),
            ..now()
        };
        assert_eq!(
            decide(Some(&record()), &changed),
            Decision::Snapshot(Reason::Changed)
        );
        let moved = Now {
            repository: "r2",
            ..now()
        };
        assert_eq!(
            decide(Some(&record()), &moved),
            Decision::Snapshot(Reason::OtherRepository)
        );
        let unrecorded = LastBackup {
            repository: None,
            ..record()
        };
        assert_eq!(
            decide(Some(&unrecorded), &now()),
            Decision::Snapshot(Reason::OtherRepository)
        );
    }

    #[test]
    fn the_max_age_counts_from_the_snapshot_not_from_the_last_skip() {
        // Skipped every day since: the record's time moved, the snapshot's
        // did not.
        let mut last = record();
        last = skipped(&last, 16 * DAY);
        assert_eq!(last.time, 16 * DAY);
        assert_eq!(last.snapshot_time, Some(10 * DAY));
        let just_before = Now {
            time: 17 * DAY - 1,
            ..now()
        };
        assert!(matches!(
            decide(Some(&last), &just_before),
            Decision::SkipIfPresent(_)
        ));
        let at = Now {
            time: 17 * DAY,
            ..now()
        };
        assert_eq!(decide(Some(&last), &at), Decision::Snapshot(Reason::MaxAge));
        // A clock set back before the snapshot.
        let back = Now {
            time: 9 * DAY,
            ..now()
        };
        assert_eq!(
            decide(Some(&last), &back),
            Decision::Snapshot(Reason::MaxAge)
        );
    }
}
