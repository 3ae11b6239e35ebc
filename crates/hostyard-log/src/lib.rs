//! hostyard-log: log lines an operator can filter: every line a hostyard program writes
//! to stderr carries a syslog priority when stderr is the journal.
//!
//! journald reads a `<N>` prefix on a line as its priority (sd-daemon(3)),
//! so `journalctl -p warning -u haproxy-confd` shows problems only. The
//! prefix is written only when stderr really is the journal: systemd sets
//! `JOURNAL_STREAM` to the device and inode of the stream it connected
//! (systemd.exec(5)), and a program run by hand, a test or a pipe gets the
//! plain line. No timestamp of our own: the journal has one.

use std::fmt::Display;
use std::sync::OnceLock;

/// A syslog priority (RFC 5424), the ones hostyard uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Priority {
    /// A failure: something did not happen that should have.
    Err = 3,
    /// Something needs attention, the work goes on (a skipped file, a held
    /// change, etcd unreachable).
    Warning = 4,
    /// A change worth a line: a site registered, a tree published.
    Notice = 5,
    /// Routine progress.
    Info = 6,
    Debug = 7,
}

/// Whether stderr is the journal stream systemd connected.
fn stderr_is_journal() -> bool {
    static IS: OnceLock<bool> = OnceLock::new();
    *IS.get_or_init(|| {
        let Some(stream) = std::env::var_os("JOURNAL_STREAM") else {
            return false;
        };
        let Ok(meta) = nix::sys::stat::fstat(std::io::stderr()) else {
            return false;
        };
        journal_stream_matches(&stream.to_string_lossy(), meta.st_dev, meta.st_ino)
    })
}

/// `JOURNAL_STREAM` is `DEVICE:INODE`, both decimal.
fn journal_stream_matches(value: &str, dev: u64, ino: u64) -> bool {
    value
        .split_once(':')
        .and_then(|(d, i)| Some((d.parse::<u64>().ok()?, i.parse::<u64>().ok()?)))
        .is_some_and(|(d, i)| d == dev && i == ino)
}

/// The line as written: with the `<N>` prefix for the journal.
fn format(priority: Priority, journal: bool, message: &dyn Display) -> String {
    if journal {
        format!("<{}>{message}", priority as u8)
    } else {
        message.to_string()
    }
}

/// `log!(Warning, "format", args...)`: one line at that [`Priority`].
#[macro_export]
macro_rules! log {
    ($priority:ident, $($arg:tt)*) => {
        $crate::line($crate::Priority::$priority, format_args!($($arg)*))
    };
}

/// Writes one line to stderr with its priority.
pub fn line(priority: Priority, message: impl Display) {
    eprintln!("{}", format(priority, stderr_is_journal(), &message));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_prefix_is_for_the_journal_only() {
        assert_eq!(format(Priority::Warning, true, &"held"), "<4>held");
        assert_eq!(format(Priority::Err, true, &"x: y"), "<3>x: y");
        assert_eq!(format(Priority::Warning, false, &"held"), "held");
    }

    #[test]
    fn journal_stream_names_device_and_inode() {
        assert!(journal_stream_matches("8:12345", 8, 12345));
        assert!(!journal_stream_matches("8:12345", 8, 1));
        assert!(!journal_stream_matches("8", 8, 12345));
        assert!(!journal_stream_matches("x:y", 8, 12345));
    }
}
