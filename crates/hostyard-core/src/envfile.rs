//! The format of a site's secrets files (`secrets/db.env`, `wp.env`,
//! `wp-admin.env`): `KEY=value` lines as `docker run --env-file` reads
//! them, with `#` comment lines. No quoting and no escapes: a value runs to
//! the end of its line, so one with a line break cannot be written.
//! Every reader and writer of those files goes through here.

use std::fmt::Write as _;

/// `secrets/wp-admin.env`: the administrator a WordPress site is installed
/// with (and `hostyard wordpress reset-password` sets).
pub const WP_ADMIN_USER: &str = "WP_ADMIN_USER";
pub const WP_ADMIN_EMAIL: &str = "WP_ADMIN_EMAIL";
pub const WP_ADMIN_PASSWORD: &str = "WP_ADMIN_PASSWORD";

/// Why a line cannot be written.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvFileError {
    #[error("{key:?} is not a variable name (letters, digits and _, not first a digit)")]
    BadKey { key: String },
    #[error("the value of {key} has a line break or a NUL, which an env file cannot hold")]
    BadValue { key: String },
}

/// An env file's contents, in order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EnvFile {
    lines: Vec<Line>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    Comment(String),
    Pair(String, String),
}

fn valid_key(key: &str) -> bool {
    let mut bytes = key.bytes();
    bytes
        .next()
        .is_some_and(|b| b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

impl EnvFile {
    pub fn new() -> EnvFile {
        EnvFile::default()
    }

    /// Reads `text` as docker does: blank lines and `#` lines are skipped,
    /// a line without `=` is ignored (docker would take it from its own
    /// environment, which hostyard never means).
    pub fn parse(text: &str) -> EnvFile {
        let lines = text
            .lines()
            .filter(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| Line::Pair(k.to_string(), v.to_string()))
            .collect();
        EnvFile { lines }
    }

    /// The value of the first line for `key`.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs().find(|(k, _)| *k == key).map(|(_, v)| v)
    }

    /// Every `(key, value)`, in order.
    pub fn pairs(&self) -> impl Iterator<Item = (&str, &str)> {
        self.lines.iter().filter_map(|l| match l {
            Line::Pair(k, v) => Some((k.as_str(), v.as_str())),
            Line::Comment(_) => None,
        })
    }

    /// Adds a `# text` line (one per line of `text`).
    pub fn comment(mut self, text: &str) -> EnvFile {
        for line in text.lines() {
            self.lines.push(Line::Comment(line.to_string()));
        }
        self
    }

    /// Adds `key=value`, refusing what the format cannot hold.
    pub fn set(mut self, key: &str, value: &str) -> Result<EnvFile, EnvFileError> {
        if !valid_key(key) {
            return Err(EnvFileError::BadKey {
                key: key.to_string(),
            });
        }
        if value.contains(['\n', '\r', '\0']) {
            return Err(EnvFileError::BadValue {
                key: key.to_string(),
            });
        }
        self.lines
            .push(Line::Pair(key.to_string(), value.to_string()));
        Ok(self)
    }

    /// The lines whose key starts with `prefix`, as a file of their own.
    pub fn with_prefix(&self, prefix: &str) -> EnvFile {
        let lines = self
            .lines
            .iter()
            .filter(|l| matches!(l, Line::Pair(k, _) if k.starts_with(prefix)))
            .cloned()
            .collect();
        EnvFile { lines }
    }

    /// The file's text, every line ended by a newline.
    pub fn render(&self) -> String {
        let mut out = String::new();
        for line in &self.lines {
            let _ = match line {
                Line::Comment(c) => writeln!(out, "# {c}"),
                Line::Pair(k, v) => writeln!(out, "{k}={v}"),
            };
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_file_reads_back_as_written() {
        let file = EnvFile::new()
            .comment("The administrator.")
            .set("WP_ADMIN_USER", "admin")
            .unwrap()
            .set("WP_ADMIN_PASSWORD", "a=b c'd\"e")
            .unwrap();
        let text = file.render();
        assert_eq!(
            text,
            "# The administrator.\nWP_ADMIN_USER=admin\nWP_ADMIN_PASSWORD=a=b c'd\"e\n"
        );
        let read = EnvFile::parse(&text);
        assert_eq!(read.get("WP_ADMIN_USER"), Some("admin"));
        assert_eq!(read.get("WP_ADMIN_PASSWORD"), Some("a=b c'd\"e"));
        assert_eq!(read.get("WP_ADMIN_EMAIL"), None);
    }

    #[test]
    fn what_the_format_cannot_hold_is_refused() {
        assert_eq!(
            EnvFile::new().set("USER", "a\nINJECTED=1"),
            Err(EnvFileError::BadValue { key: "USER".into() })
        );
        for key in ["", "1A", "A-B", "A=B", "A B"] {
            assert!(
                matches!(
                    EnvFile::new().set(key, "x"),
                    Err(EnvFileError::BadKey { .. })
                ),
                "{key:?}"
            );
        }
    }

    #[test]
    fn a_prefix_keeps_only_its_lines_in_order() {
        let file =
            EnvFile::parse("MARIADB_USER=u\nWORDPRESS_DB_USER=u\n# x\nWORDPRESS_DB_NAME=n\n");
        assert_eq!(
            file.with_prefix("WORDPRESS_").render(),
            "WORDPRESS_DB_USER=u\nWORDPRESS_DB_NAME=n\n"
        );
    }

    proptest! {
        /// Whatever value `set` takes reads back unchanged, and no value
        /// adds a line of its own.
        #[test]
        fn any_value_set_reads_back(value in "\\PC*", key in "[A-Z_][A-Z0-9_]{0,20}") {
            if let Ok(file) = EnvFile::new().set(&key, &value) {
                let parsed = EnvFile::parse(&file.render());
                prop_assert_eq!(parsed.pairs().count(), 1);
                prop_assert_eq!(parsed.get(&key), Some(value.as_str()));
            }
        }

        /// Parsing never panics on any text.
        #[test]
        fn any_text_parses(text in "\\PC*(\n\\PC*){0,5}") {
            let _ = EnvFile::parse(&text).render();
        }
    }
}
