//! One module per `hostyard` subcommand: each parses what its flags name
//! (a domain, a path), calls the library, and prints. They share one error
//! path ([`Failure`]: the exit code and one line) and one way to log
//! ([`note`], [`warn`]: a line on stderr with its journal priority).

use std::fmt::Display;

use hostyard_config::ConfigError;
use hostyard_log::{line, Priority};

pub mod backup;
pub mod config;
pub mod etcd;
pub mod export;
pub mod fleet;
pub mod generate;
pub mod mail;
pub mod moving;
pub mod site;
pub mod tls;
pub mod wordpress;

pub const PROGRAM: &str = "hostyard";

/// A failure and the exit code it gets: 2 for bad input (flags, config), 1
/// for everything that went wrong while doing the work.
pub struct Failure {
    pub code: u8,
    pub error: anyhow::Error,
}

pub fn usage(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: hostyard_cli::EXIT_USAGE,
        error: error.into(),
    }
}

pub fn runtime(error: impl Into<anyhow::Error>) -> Failure {
    Failure {
        code: hostyard_cli::EXIT_FAILURE,
        error: error.into(),
    }
}

impl Failure {
    /// Reports the failure on one line, whatever its sources contain (a
    /// config's problems one line each, with their keys), and gives its
    /// exit code.
    pub fn report(self) -> u8 {
        let message = match self.error.downcast_ref::<ConfigError>() {
            Some(e) => e.to_string(),
            None => format!("{:#}", self.error).replace('\n', " "),
        };
        hostyard_cli::fail(PROGRAM, self.code, message);
        self.code
    }
}

/// A line of progress on stderr (stdout is the command's answer).
pub fn note(message: impl Display) {
    line(Priority::Notice, format_args!("{PROGRAM}: {message}"));
}

/// Something needs attention and the work goes on (`journalctl -p warning`).
pub fn warn(message: impl Display) {
    line(Priority::Warning, format_args!("{PROGRAM}: {message}"));
}

/// An error and its sources on one line, `outer: inner: innermost`.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut line = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        line.push_str(": ");
        line.push_str(&e.to_string());
        source = e.source();
    }
    line.replace('\n', " ")
}
