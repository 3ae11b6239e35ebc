//! The move of a site from one server (the source) to another (the
//! target), as pure decisions: which step comes next from what is seen on
//! both sides, what a failure leaves behind, and what each server removes
//! when the move is undone or finished.
//!
//! A move copies the site's export while it serves (the pre-copy) and
//! builds a stopped copy on the target from it (prepared); then, inside
//! the gap, the source stops, only the difference is copied and checked,
//! the owner record changes hands and the target starts (switched); last
//! the source's copy goes (finished). The progress is recorded after each
//! step as a [`Phase`], so that a move cut short at any point is resumed
//! by running it again, or dropped while the site still serves on the
//! source. The `hostyard move` subcommands carry the steps out on each
//! server; the jump box only sequences them.

use std::fmt;
use std::path::PathBuf;

use crate::kind::db_network_name;
use crate::{Domain, Layout, SiteKind};

/// How far a move got: recorded after each step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// The pre-copy began: the site serves on the source; the target may
    /// hold part of a copy.
    Precopy,
    /// The target holds a stopped copy; the site serves on the source.
    Prepared,
    /// The source stopped (the gap began): from here on a failure undoes
    /// the move, or a run again finishes it.
    Stopped,
    /// The target owns and serves the site; only the source's copy is left
    /// to remove.
    Switched,
}

impl Phase {
    pub const ALL: [Phase; 4] = [
        Phase::Precopy,
        Phase::Prepared,
        Phase::Stopped,
        Phase::Switched,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Phase::Precopy => "precopy",
            Phase::Prepared => "prepared",
            Phase::Stopped => "stopped",
            Phase::Switched => "switched",
        }
    }

    pub fn parse(s: &str) -> Option<Phase> {
        Phase::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl fmt::Display for Phase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the operator asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The whole move.
    Move,
    /// Only up to a prepared copy: the site serves on as before, and a
    /// later move is a short one.
    Prepare,
    /// Drop a move that has not stopped the site yet.
    Cancel,
}

/// What is seen before a step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Seen {
    /// The recorded progress; `None`: no move under way.
    pub phase: Option<Phase>,
    /// The site ran on the source when the move began (recorded with the
    /// phase): a site that did not run moves stopped.
    pub was_active: bool,
    /// The target has the site's data (its prepared copy).
    pub target_has_data: bool,
    /// The site's unit is active on the target and its HAProxy answers it
    /// with the site's own answer.
    pub target_serves: bool,
}

/// The next step of a move.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// The checks of a new move (the target has no copy of the site, the
    /// source has its data, no third server owns it), then the pre-copy.
    Begin,
    /// Export on the source while it serves, copy it over, build or
    /// refresh the target's stopped copy (`precopy` → `prepared`).
    Prepare,
    /// The gap: stop the source, export and copy the difference, check it,
    /// refresh the target's copy, hand the owner over, start the target
    /// (`prepared` → `stopped` → `switched`).
    HandOver,
    /// The source stopped but the target's copy was undone: the copy is
    /// made anew with the site still stopped, then [`Step::HandOver`].
    PrepareStopped,
    /// The target serves: record it, then [`Step::Finish`].
    Switched,
    /// Enable the site on the target, name the target in the inventory,
    /// remove the source's copy and the staged exports.
    Finish,
    /// Remove the target's copy and the staged exports (a cancel).
    Undo,
    /// Nothing more to do; the line says why.
    Done(String),
    /// Not this request's to do; the line says what to run instead.
    Refuse(String),
}

impl Step {
    /// The word `hostyard move next` prints for the jump box: the first
    /// word of the line, the reason after it.
    pub fn line(&self) -> String {
        match self {
            Step::Begin => "begin".into(),
            Step::Prepare => "prepare".into(),
            Step::HandOver => "hand-over".into(),
            Step::PrepareStopped => "prepare-stopped".into(),
            Step::Switched => "switched".into(),
            Step::Finish => "finish".into(),
            Step::Undo => "undo".into(),
            Step::Done(why) => format!("done {why}"),
            Step::Refuse(why) => format!("refuse {why}"),
        }
    }
}

/// The next step toward what is wanted, from what is seen. `domain` and
/// `to` only name things in the lines for the operator.
pub fn next(seen: &Seen, want: Want, domain: &str, to: &str) -> Step {
    if want == Want::Cancel {
        return match seen.phase {
            None => Step::Done(format!("no move of {domain} is under way; nothing changed")),
            Some(Phase::Precopy | Phase::Prepared) => Step::Undo,
            Some(p @ (Phase::Stopped | Phase::Switched)) => Step::Refuse(format!(
                "the move of {domain} to {to} is past the site's stop ({p}): \
                 run deploy/site.sh move {domain} {to} to finish it"
            )),
        };
    }
    match seen.phase {
        None => Step::Begin,
        Some(Phase::Precopy) => Step::Prepare,
        Some(Phase::Prepared) if want == Want::Prepare => Step::Done(format!(
            "prepared: {domain} runs as before; deploy/site.sh move {domain} {to} switches it \
             (a short gap), deploy/site.sh move {domain} --cancel drops the copy on {to}"
        )),
        Some(Phase::Prepared) => Step::HandOver,
        // Stopped on the source: a target that serves already got past the
        // hand-over (the record was not written); one with its copy only
        // needs the gap's steps; one without (undone after the stop) needs
        // its copy again first. `--prepare` does not hold a stopped site
        // back: the site is down until the move ends.
        Some(Phase::Stopped) if seen.was_active && seen.target_serves => Step::Switched,
        Some(Phase::Stopped) if seen.target_has_data => Step::HandOver,
        Some(Phase::Stopped) => Step::PrepareStopped,
        Some(Phase::Switched) => Step::Finish,
    }
}

/// Whether a new move from `from` to `to` may begin while `owner` owns
/// the site: a third server that owns it (a restore there) is not this
/// move's to overrule without `take_over`. The hand-over checks again, in
/// the transaction that changes the owner.
pub fn may_begin(owner: Option<&str>, from: &str, to: &str, take_over: bool) -> bool {
    take_over || owner.is_none_or(|o| o == from || o == to)
}

/// What a failure of a step leaves to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnFailure {
    /// The site still serves on the source: the move is run again, or
    /// cancelled.
    Keep,
    /// The site is stopped and the target does not serve: the target's copy
    /// goes, the owner goes back to the source, the source starts again.
    Rollback,
    /// The target serves already: the move is run again to finish.
    Resume,
}

/// What a failure during the step that began at `phase` leaves to do.
pub fn on_failure(phase: Option<Phase>) -> OnFailure {
    match phase {
        None | Some(Phase::Precopy | Phase::Prepared) => OnFailure::Keep,
        Some(Phase::Stopped) => OnFailure::Rollback,
        Some(Phase::Switched) => OnFailure::Resume,
    }
}

/// Which of the two servers' copies a removal is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The target of a move undone or cancelled: its copy and its import
    /// (the target had no data for the site before the move began).
    Target,
    /// The source of a finished move: its copy and its staged export.
    Source,
}

/// What one server removes of a site that moves away from it (or whose
/// move to it is undone), in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Removal {
    /// Units stopped and disabled (the site, then its importer and
    /// database): none may hold the data while it goes.
    pub units: Vec<String>,
    /// The unit patterns of every other instance of the site (timers of
    /// its puller, cron) stopped as well.
    pub patterns: Vec<String>,
    /// Paths removed, whole.
    pub paths: Vec<PathBuf>,
    /// The site's database network, removed if it exists (its database
    /// unit makes it and leaves it).
    pub network: Option<String>,
}

/// The removal of `domain` (a `kind` site) on `side`.
pub fn removal(layout: &Layout, domain: &Domain, kind: SiteKind, side: Side) -> Removal {
    let mut paths = vec![layout.domain_dir(domain)];
    paths.extend(match side {
        Side::Target => vec![layout.import_dir(domain)],
        Side::Source => vec![],
    });
    paths.extend(stages(layout, domain));
    Removal {
        units: kind.units_holding_data(domain),
        patterns: vec![format!("*@{domain}.service"), format!("*@{domain}.timer")],
        paths,
        network: kind.has_database().then(|| db_network_name(domain)),
    }
}

/// The move's staged exports on a server: the export itself and the copy
/// of it the target's importer consumes (a first import moves what it
/// imported aside, so it gets a copy and the stage stays for the refresh).
/// They hold the site's TLS key and a WordPress site's password hashes, so
/// every end of a move removes them.
pub fn stages(layout: &Layout, domain: &Domain) -> [PathBuf; 2] {
    let stage = layout.move_stage_dir(domain);
    let mut copy = stage.clone().into_os_string();
    copy.push(".import");
    [stage, PathBuf::from(copy)]
}

/// How the target's copy is brought up to the staged export.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Prepare {
    /// No copy yet: a copy of the stage goes to the site's import dir and
    /// its importer builds the site (a WordPress database initialises from
    /// the dump), then the stage is applied over it.
    Import,
    /// A copy exists (a move run again, or the gap's refresh): the stage is
    /// applied over it.
    Refresh,
}

pub fn prepare(target_has_data: bool) -> Prepare {
    if target_has_data {
        Prepare::Refresh
    } else {
        Prepare::Import
    }
}

/// Of the names in the import-done dir, those of `domain` that its
/// importer moved aside at or after `since` (unix seconds): the move's own
/// copy of the stage, which holds the dump with its password hashes, so it
/// does not stay behind. Older entries (an import before the move) and
/// names no importer made stay.
pub fn imported_since<'a>(
    names: impl IntoIterator<Item = &'a str>,
    domain: &Domain,
    since: u64,
) -> Vec<&'a str> {
    names
        .into_iter()
        .filter(|name| {
            Layout::parse_import_done_entry(name).is_some_and(|(d, t)| &d == domain && t >= since)
        })
        .collect()
}

/// Whether an HTTP status is the site's own answer through HAProxy: below
/// 500 (not the 503 page of a site without a server) and not 404 (the page
/// of a name HAProxy does not route).
pub fn serves_status(code: u16) -> bool {
    code < 500 && code != 404
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    const D: &str = "example.com";
    const TO: &str = "web2";

    fn seen(phase: Option<Phase>) -> Seen {
        Seen {
            phase,
            was_active: true,
            target_has_data: false,
            target_serves: false,
        }
    }

    #[test]
    fn phases_round_trip() {
        for p in Phase::ALL {
            assert_eq!(Phase::parse(p.as_str()), Some(p));
        }
        assert_eq!(Phase::parse(""), None);
        assert_eq!(Phase::parse("Prepared"), None);
    }

    #[test]
    fn a_new_move_begins_with_its_checks() {
        assert_eq!(next(&seen(None), Want::Move, D, TO), Step::Begin);
        assert_eq!(next(&seen(None), Want::Prepare, D, TO), Step::Begin);
    }

    #[test]
    fn an_interrupted_precopy_is_prepared_again() {
        let mut s = seen(Some(Phase::Precopy));
        assert_eq!(next(&s, Want::Move, D, TO), Step::Prepare);
        s.target_has_data = true;
        assert_eq!(next(&s, Want::Prepare, D, TO), Step::Prepare);
    }

    #[test]
    fn a_prepared_move_hands_over_unless_only_prepared_was_asked() {
        let s = seen(Some(Phase::Prepared));
        assert_eq!(next(&s, Want::Move, D, TO), Step::HandOver);
        match next(&s, Want::Prepare, D, TO) {
            Step::Done(why) => assert!(why.contains("--cancel"), "{why}"),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_move_cut_short_in_the_gap_resumes_from_what_the_target_has() {
        let mut s = seen(Some(Phase::Stopped));
        s.target_has_data = true;
        assert_eq!(next(&s, Want::Move, D, TO), Step::HandOver);
        // --prepare does not hold a stopped site back.
        assert_eq!(next(&s, Want::Prepare, D, TO), Step::HandOver);
        s.target_serves = true;
        assert_eq!(next(&s, Want::Move, D, TO), Step::Switched);
        // Undone on the target after the stop: a copy again first.
        let s = seen(Some(Phase::Stopped));
        assert_eq!(next(&s, Want::Move, D, TO), Step::PrepareStopped);
    }

    #[test]
    fn a_site_moved_stopped_is_never_taken_for_served() {
        // It was not running: the target's unit is never started, so an
        // answer there is not this move's doing; the gap's steps run again.
        let s = Seen {
            phase: Some(Phase::Stopped),
            was_active: false,
            target_has_data: true,
            target_serves: true,
        };
        assert_eq!(next(&s, Want::Move, D, TO), Step::HandOver);
    }

    #[test]
    fn a_switched_move_finishes() {
        assert_eq!(
            next(&seen(Some(Phase::Switched)), Want::Move, D, TO),
            Step::Finish
        );
    }

    #[test]
    fn cancel_drops_only_a_move_that_did_not_stop_the_site() {
        assert!(matches!(
            next(&seen(None), Want::Cancel, D, TO),
            Step::Done(_)
        ));
        for p in [Phase::Precopy, Phase::Prepared] {
            assert_eq!(next(&seen(Some(p)), Want::Cancel, D, TO), Step::Undo);
        }
        for p in [Phase::Stopped, Phase::Switched] {
            match next(&seen(Some(p)), Want::Cancel, D, TO) {
                Step::Refuse(why) => {
                    assert!(
                        why.contains("deploy/site.sh move example.com web2"),
                        "{why}"
                    )
                }
                other => panic!("{p}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_third_owner_holds_a_new_move_back_unless_taken_over() {
        assert!(may_begin(None, "web1", TO, false));
        assert!(may_begin(Some("web1"), "web1", TO, false));
        assert!(may_begin(Some(TO), "web1", TO, false));
        assert!(!may_begin(Some("web3"), "web1", TO, false));
        assert!(may_begin(Some("web3"), "web1", TO, true));
    }

    #[test]
    fn only_a_failure_inside_the_gap_rolls_back() {
        assert_eq!(on_failure(None), OnFailure::Keep);
        assert_eq!(on_failure(Some(Phase::Precopy)), OnFailure::Keep);
        assert_eq!(on_failure(Some(Phase::Prepared)), OnFailure::Keep);
        assert_eq!(on_failure(Some(Phase::Stopped)), OnFailure::Rollback);
        assert_eq!(on_failure(Some(Phase::Switched)), OnFailure::Resume);
    }

    /// A whole move, step by step, the way the jump box runs it: each step
    /// records the phase it reached, and every phase resumes.
    #[test]
    fn every_step_brings_the_move_closer_to_its_end() {
        let mut s = seen(None);
        let mut steps = Vec::new();
        loop {
            let step = next(&s, Want::Move, D, TO);
            steps.push(step.line());
            s.phase = match step {
                Step::Begin => Some(Phase::Precopy),
                Step::Prepare => {
                    s.target_has_data = true;
                    Some(Phase::Prepared)
                }
                Step::HandOver => {
                    s.target_serves = true;
                    Some(Phase::Switched)
                }
                Step::Finish => None,
                other => panic!("{other:?}"),
            };
            if s.phase.is_none() {
                break;
            }
        }
        assert_eq!(steps, ["begin", "prepare", "hand-over", "finish"]);
    }

    #[test]
    fn a_target_undo_removes_its_copy_import_and_stages() {
        let layout = Layout::new(Path::new("/srv/hostyard"));
        let d = Domain::parse(D).unwrap();
        let r = removal(&layout, &d, SiteKind::Wordpress, Side::Target);
        assert_eq!(
            r.units,
            [
                "wordpress@example.com.service",
                "wordpress-importer@example.com.service",
                "mysql@example.com.service"
            ]
        );
        assert_eq!(
            r.paths,
            [
                layout.domain_dir(&d),
                layout.import_dir(&d),
                layout.move_stage_dir(&d),
                layout.imports_dir().join(".move/example.com.import"),
            ]
        );
        assert_eq!(r.network, Some(db_network_name(&d)));
        assert!(r.patterns.contains(&"*@example.com.timer".to_string()));
    }

    #[test]
    fn a_source_keeps_its_import_dir_and_a_static_site_has_no_network() {
        let layout = Layout::new(Path::new("/srv/hostyard"));
        let d = Domain::parse(D).unwrap();
        let r = removal(&layout, &d, SiteKind::Static, Side::Source);
        assert!(!r.paths.contains(&layout.import_dir(&d)));
        assert!(r.paths.contains(&layout.domain_dir(&d)));
        assert_eq!(r.network, None);
    }

    #[test]
    fn the_first_preparation_imports_and_later_ones_refresh() {
        assert_eq!(prepare(false), Prepare::Import);
        assert_eq!(prepare(true), Prepare::Refresh);
    }

    #[test]
    fn only_the_moves_own_imports_are_removed() {
        let d = Domain::parse(D).unwrap();
        let names = [
            "example.com-100",
            "example.com-200",
            "example.com-300.tar.gz",
            "other.org-300",
            "example.com-notatime",
            "notes.txt",
        ];
        assert_eq!(
            imported_since(names, &d, 200),
            ["example.com-200", "example.com-300.tar.gz"]
        );
    }

    #[test]
    fn only_the_sites_own_answer_counts_as_served() {
        assert!(serves_status(200));
        assert!(serves_status(302));
        assert!(serves_status(403));
        assert!(!serves_status(404));
        assert!(!serves_status(503));
    }
}
