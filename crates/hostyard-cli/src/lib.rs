//! hostyard-cli: the edge every hostyard binary shares, argv parsing and
//! failure reports. Only the programs depend on it, so no library compiles
//! clap; the journal line format itself is `hostyard_log`, which the
//! libraries write too.
//!
//! Units call these programs with `%i` as an argument, and operators read
//! their failures in the journal, so all of them behave alike: a usage or
//! validation error is one line `program: problem` and exit 2, a runtime
//! failure is one line `program: error: cause: ...` and exit 1, and
//! `--help`/`--version` print and exit 0.

use std::fmt::Display;
use std::process::ExitCode;

/// Exit status for bad arguments, a bad domain or kind, a bad config.
pub const EXIT_USAGE: u8 = 2;
/// Exit status for a failure while doing the work.
pub const EXIT_FAILURE: u8 = 1;
/// Exit status of a site's discovery on a server that does not own the
/// site: its unit fails and is not restarted (`RestartPreventExitStatus=`),
/// as a restart cannot change the owner.
pub const EXIT_NOT_OWNER: u8 = 3;

/// Parses argv, or ends the process: 0 after `--help`/`--version`, 2 after
/// a usage error reported on one line. Nothing has run yet at this point,
/// so there is nothing to clean up on exit.
pub fn parse_or_exit<P: clap::Parser>(program: &str) -> P {
    match P::try_parse() {
        Ok(parsed) => parsed,
        Err(e) if !e.use_stderr() => {
            let _ = e.print();
            std::process::exit(0)
        }
        Err(e) => {
            hostyard_log::line(
                hostyard_log::Priority::Err,
                format_args!("{program}: {}", usage_line(&e.to_string())),
            );
            std::process::exit(i32::from(EXIT_USAGE))
        }
    }
}

/// The value of an argument or the config, or ends the process with a
/// usage error: `program: problem` and exit 2, as [`fail`] reports it. Like
/// [`parse_or_exit`], for the checks made before any work starts.
pub fn valid_or_exit<T>(program: &str, checked: Result<T, impl Display>) -> T {
    match checked {
        Ok(value) => value,
        Err(e) => {
            fail(program, EXIT_USAGE, e);
            std::process::exit(i32::from(EXIT_USAGE))
        }
    }
}

/// The first line of clap's message without its `error: ` lead: clap adds
/// a usage block and a `--help` hint that do not belong in a journal line.
pub fn usage_line(text: &str) -> &str {
    text.lines()
        .next()
        .unwrap_or_default()
        .trim_start_matches("error: ")
}

/// Reports `program: error` (for an `anyhow::Error`, pass it formatted
/// with `{:#}` to get the whole chain) and returns `code`. An error of
/// several lines (a config's problems) is written a line each, each with
/// the program and the priority, so the journal shows every one.
pub fn fail(program: &str, code: u8, error: impl Display) -> ExitCode {
    for line in error.to_string().split('\n') {
        hostyard_log::line(
            hostyard_log::Priority::Err,
            format_args!("{program}: {line}"),
        );
    }
    ExitCode::from(code)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_line_keeps_only_the_problem() {
        let clap_text = "error: unexpected argument '--x' found\n\nUsage: prog <KIND>\n\nFor more information, try '--help'.\n";
        assert_eq!(usage_line(clap_text), "unexpected argument '--x' found");
        assert_eq!(usage_line(""), "");
    }
}

/// A site kind argument: `--help` lists every kind with its spec's line,
/// and an unknown one is a usage error that names them on its one line.
#[derive(Debug, Clone, Copy)]
pub struct KindParser;

impl clap::builder::TypedValueParser for KindParser {
    type Value = hostyard_core::SiteKind;

    fn parse_ref(
        &self,
        cmd: &clap::Command,
        arg: Option<&clap::Arg>,
        value: &std::ffi::OsStr,
    ) -> Result<Self::Value, clap::Error> {
        let text = value.to_string_lossy();
        text.parse().map_err(|e: hostyard_core::kind::UnknownKind| {
            let name = arg.map(|a| a.get_id().to_string()).unwrap_or_default();
            clap::Error::raw(
                clap::error::ErrorKind::InvalidValue,
                format!("invalid {name}: {e}\n"),
            )
            .with_cmd(cmd)
        })
    }

    fn possible_values(
        &self,
    ) -> Option<Box<dyn Iterator<Item = clap::builder::PossibleValue> + '_>> {
        Some(Box::new(hostyard_core::SiteKind::ALL.into_iter().map(
            |k| clap::builder::PossibleValue::new(k.as_str()).help(k.spec().about),
        )))
    }
}
