//! `hostyard move`: a site's move between servers, one step per
//! subcommand on the server it concerns; `deploy/site.sh move` sequences
//! them from the jump box and copies the staged export between them.

use std::io::Read;

use clap::{Subcommand, ValueEnum};
use hostyard_config::NodeConfig;
use hostyard_core::moving::{Phase, Side, Step, Want};
use hostyard_core::{Domain, SiteKind};

use super::{runtime, usage, Failure};

#[derive(Subcommand)]
pub enum MoveAction {
    /// On the target: print the move's next step (begin, prepare,
    /// hand-over, prepare-stopped, switched, finish, undo; `done WHY`;
    /// `refuse WHY`, exit 1) from the phase the jump box recorded and what
    /// this server has.
    Next {
        domain: String,
        #[arg(long)]
        kind: String,
        /// The recorded phase (precopy, prepared, stopped, switched);
        /// none: no move under way.
        #[arg(long)]
        phase: Option<String>,
        /// The site ran on the source when the move began.
        #[arg(long)]
        was_active: bool,
        #[arg(long, value_enum, default_value = "move")]
        want: Wanted,
    },
    /// On the target: refuse a new move when this server has the site's
    /// data or import already.
    CanReceive { domain: String },
    /// On the source: refuse a new move to server TO when this server has
    /// no data for the site or a third server owns it; print `active` or
    /// `stopped` (a site that does not run moves stopped).
    CanSend {
        domain: String,
        #[arg(long)]
        to: String,
        #[arg(long)]
        take_over: bool,
    },
    /// On the source: export the site, fresh, into its move stage (the
    /// path `hostyard names site` calls move_stage).
    Export { domain: String },
    /// Print the manifest of this server's move stage (every path's type
    /// and mode, every file's sha256).
    Manifest { domain: String },
    /// On the target: build (first time) or refresh the site's stopped copy
    /// from the staged export; a WordPress site's MariaDB runs.
    Prepare {
        domain: String,
        #[arg(long)]
        kind: String,
    },
    /// On the target, inside the gap: check the staged export against the
    /// source's manifest (on stdin), apply it, hand the owner over from
    /// server FROM to this one in one etcd transaction, and start the site
    /// until its HAProxy answers it (--start), or leave it stopped. Prints
    /// the laps.
    HandOver {
        domain: String,
        #[arg(long)]
        kind: String,
        #[arg(long)]
        from: String,
        #[arg(long)]
        start: bool,
        #[arg(long)]
        take_over: bool,
    },
    /// Exit 0 when the site runs here and this server's HAProxy answers it
    /// with the site's own answer.
    Serves {
        domain: String,
        #[arg(long)]
        kind: String,
    },
    /// Remove the site's copy from this server: `target` (a move undone:
    /// its data and import) or `source` (a move finished: its data); its
    /// units stop, its staged exports and database network go.
    Remove {
        domain: String,
        #[arg(long)]
        kind: String,
        #[arg(long, value_enum)]
        side: Sided,
    },
    /// Remove the move's staged exports on this server.
    Clean { domain: String },
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Wanted {
    Move,
    Prepare,
    Cancel,
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Sided {
    Target,
    Source,
}

pub fn run(config: &NodeConfig, action: MoveAction) -> Result<u8, Failure> {
    use hostyard::moving as m;
    match action {
        MoveAction::Next {
            domain,
            kind,
            phase,
            was_active,
            want,
        } => {
            let domain = parse_domain(&domain)?;
            let kind = parse_kind(&kind)?;
            let phase = match phase.as_deref() {
                None | Some("") => None,
                Some(p) => Some(Phase::parse(p).ok_or_else(|| {
                    usage(anyhow::anyhow!(
                        "no move phase {p}: one of precopy, prepared, stopped, switched"
                    ))
                })?),
            };
            let want = match want {
                Wanted::Move => Want::Move,
                Wanted::Prepare => Want::Prepare,
                Wanted::Cancel => Want::Cancel,
            };
            let step = m::next(config, &domain, kind, phase, was_active, want);
            println!("{}", step.line());
            Ok(u8::from(matches!(step, Step::Refuse(_))))
        }
        MoveAction::CanReceive { domain } => {
            m::can_receive(config, &parse_domain(&domain)?).map_err(runtime)?;
            Ok(0)
        }
        MoveAction::CanSend {
            domain,
            to,
            take_over,
        } => {
            let active =
                m::can_send(config, &parse_domain(&domain)?, &to, take_over).map_err(runtime)?;
            println!("{}", if active { "active" } else { "stopped" });
            Ok(0)
        }
        MoveAction::Export { domain } => {
            m::export(config, &parse_domain(&domain)?).map_err(runtime)?;
            Ok(0)
        }
        MoveAction::Manifest { domain } => {
            print!(
                "{}",
                m::stage_manifest(config, &parse_domain(&domain)?).map_err(runtime)?
            );
            Ok(0)
        }
        MoveAction::Prepare { domain, kind } => {
            m::prepare(config, &parse_domain(&domain)?, parse_kind(&kind)?).map_err(runtime)?;
            Ok(0)
        }
        MoveAction::HandOver {
            domain,
            kind,
            from,
            start,
            take_over,
        } => {
            let domain = parse_domain(&domain)?;
            let kind = parse_kind(&kind)?;
            let mut expected = String::new();
            std::io::stdin()
                .read_to_string(&mut expected)
                .map_err(|e| runtime(anyhow::anyhow!("cannot read the manifest on stdin: {e}")))?;
            let laps = m::hand_over(config, &domain, kind, &from, &expected, start, take_over)
                .map_err(runtime)?;
            println!("{laps}");
            Ok(0)
        }
        MoveAction::Serves { domain, kind } => Ok(u8::from(!m::serves(
            config,
            &parse_domain(&domain)?,
            parse_kind(&kind)?,
        ))),
        MoveAction::Remove { domain, kind, side } => {
            let side = match side {
                Sided::Target => Side::Target,
                Sided::Source => Side::Source,
            };
            m::remove(config, &parse_domain(&domain)?, parse_kind(&kind)?, side)
                .map_err(runtime)?;
            Ok(0)
        }
        MoveAction::Clean { domain } => {
            m::clean(config, &parse_domain(&domain)?).map_err(runtime)?;
            Ok(0)
        }
    }
}

fn parse_domain(domain: &str) -> Result<Domain, Failure> {
    Domain::parse_instance(domain).map_err(usage)
}

fn parse_kind(kind: &str) -> Result<SiteKind, Failure> {
    kind.parse::<SiteKind>().map_err(usage)
}
