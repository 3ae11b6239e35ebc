//! hostyard-hook: one deploy hook request, on the connection systemd hands
//! over as stdin and stdout (`hostyard-hook.socket`, `Accept=yes`: a
//! process per request, none at rest). HAProxy sends it
//! `POST /.well-known/hostyard/deploy` of a site routed to this server, so
//! in a fleet the request reaches the site's owner whichever server the
//! forge called. A push verified with the site's secret is answered at
//! once, then starts the site's puller, which publishes atomically as on
//! its timer (after the run under way, if one is: see `Pull`); anything
//! else is answered and logged, one line a request, never with the secret.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};

use clap::Parser;
use hostyard_cli as cli;
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};
use hostyard_core::{Domain, SiteKind, UnitRole, HOOK_PATH};
use hostyard_hook::request::{self, Request};
use hostyard_hook::{pull_for_push, verify, Event, Pull};
use hostyard_log::{line, Priority};

const PROGRAM: &str = "hostyard-hook";

#[derive(Parser)]
#[command(
    version,
    about = "Answer one deploy hook request on stdin/stdout (hostyard-hook.socket's connection)"
)]
struct Cli {
    /// The node config.
    #[arg(long, env = "HOSTYARD_CONFIG", default_value = DEFAULT_CONFIG_PATH)]
    config: PathBuf,
}

fn main() -> ExitCode {
    let args: Cli = cli::parse_or_exit(PROGRAM);
    let (status, text, puller) = match NodeConfig::load(&args.config) {
        Ok(config) => handle(&config, &mut std::io::stdin().lock()),
        Err(e) => (500, format!("the node config: {e}"), None),
    };
    let priority = if status < 300 {
        Priority::Notice
    } else {
        Priority::Warning
    };
    line(priority, format_args!("{PROGRAM}: {status} {text}"));
    let reason = match status {
        200 => "OK",
        202 => "Accepted",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        411 => "Length Required",
        413 => "Content Too Large",
        431 => "Request Header Fields Too Large",
        _ => "Internal Server Error",
    };
    let answer = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n\
         Content-Length: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n{text}\n",
        text.len() + 1
    );
    let mut out = std::io::stdout().lock();
    if out
        .write_all(answer.as_bytes())
        .and_then(|()| out.flush())
        .is_err()
    {
        return ExitCode::FAILURE;
    }
    drop(out);
    if let Some(unit) = puller {
        if let Err(e) = pull(&unit) {
            line(
                Priority::Warning,
                format_args!("{PROGRAM}: {unit} not started: {e:#}; its timer pulls later"),
            );
            return ExitCode::FAILURE;
        }
    }
    ExitCode::SUCCESS
}

/// Starts the puller `unit` for a push the forge has had its answer for,
/// after the run under way if there is one (`Pull`). The blocking start
/// joins that run's job and returns when it ends, whatever its result;
/// the unit's TimeoutStartSec bounds it, and this unit's RuntimeMaxSec is
/// longer.
fn pull(unit: &str) -> anyhow::Result<()> {
    let state = Command::new("systemctl")
        .args(["show", "-P", "ActiveState", "--", unit])
        .output()?;
    if pull_for_push(&String::from_utf8_lossy(&state.stdout)) == Pull::AfterTheRunningOne {
        Command::new("systemctl")
            .args(["start", "--", unit])
            .status()?;
    }
    let status = Command::new("systemctl")
        .args(["start", "--no-block", "--", unit])
        .status()?;
    anyhow::ensure!(
        status.success(),
        "systemctl start --no-block {unit}: {status}"
    );
    Ok(())
}

/// The status and the one line that answers the request on `input`, and
/// the puller to start once it is answered.
fn handle(config: &NodeConfig, input: &mut impl Read) -> (u16, String, Option<String>) {
    let req: Request = match request::read(input) {
        Ok(r) => r,
        Err(e) => return (e.status, e.why, None),
    };
    if req.path != HOOK_PATH {
        return (
            404,
            format!("{}: no hook at {:?}", req.host, req.path),
            None,
        );
    }
    if req.method != "POST" {
        return (405, format!("{}: a deploy hook is a POST", req.host), None);
    }
    let Ok(domain) = Domain::parse_instance(&req.host) else {
        return (404, format!("{:?} names no site", req.host), None);
    };
    let layout = config.layout();
    if !layout.git_repo_dir(&domain).is_dir() {
        return (
            404,
            format!("{domain} is no static-git site hosted here"),
            None,
        );
    }
    let secret = match read_secret(&layout.hook_secret(&domain)) {
        Ok(Some(s)) => s,
        Ok(None) => {
            return (
                403,
                format!("{domain} has no hook secret: `hostyard site hook {domain}` makes one"),
                None,
            )
        }
        Err(e) => return (500, format!("{domain}: {e:#}"), None),
    };
    let verified = match verify(&req.headers, &req.body, secret.as_bytes()) {
        Ok(v) => v,
        Err(refusal) => return (403, format!("{domain}: refused: {refusal}"), None),
    };
    let from = format!("{:?}", verified.forge);
    match verified.event {
        Event::Push => {
            let unit = SiteKind::StaticGit.instance_unit(UnitRole::Puller, &domain);
            (
                202,
                format!("{domain}: a push from {from}: starting {unit}"),
                Some(unit),
            )
        }
        Event::Ping => (200, format!("{domain}: {from}'s ping answered"), None),
        Event::Other(event) => (
            202,
            format!("{domain}: {from}'s event {event:?} needs nothing (only a push pulls)"),
            None,
        ),
    }
}

/// The secret's one line, `None` when there is no file.
fn read_secret(path: &Path) -> anyhow::Result<Option<String>> {
    if !path.exists() {
        return Ok(None);
    }
    let mut text = String::new();
    hostyard_fs::unpack::open_regular(path)?.read_to_string(&mut text)?;
    Ok(Some(text.trim().to_string()))
}
