//! A WordPress site's database, reached the one way that works in a nested
//! server too: a throwaway container of the site's MariaDB image on the
//! site's database network (`docker exec` into the running server fails
//! there: setns into a process that switched users). The credentials reach
//! the client as an option file on its stdin, never on a command line or in
//! the environment.

use std::fs;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::envfile::EnvFile;
use hostyard_core::kind::{db_network_name, mysql_container_name};
use hostyard_core::{Domain, Layout};

/// The database's name, user and password, from the site's `secrets/db.env`.
pub struct DbAccess {
    pub database: String,
    pub user: String,
    password: String,
}

impl DbAccess {
    pub fn of(layout: &Layout, domain: &Domain) -> Result<DbAccess> {
        let path = layout.db_env_file(domain);
        let text =
            fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let env = EnvFile::parse(&text);
        let get = |key: &str| {
            env.get(key)
                .map(str::to_string)
                .with_context(|| format!("{} has no {key}", path.display()))
        };
        Ok(DbAccess {
            database: get("MARIADB_DATABASE")?,
            user: get("MARIADB_USER")?,
            password: get("MARIADB_PASSWORD")?,
        })
    }

    /// The `[client]` option file the client reads from its stdin.
    fn option_file(&self) -> String {
        format!(
            "[client]\nuser={}\npassword={}\n",
            option_value(&self.user),
            option_value(&self.password)
        )
    }
}

/// A value in a MariaDB option file, quoted (the passwords are hex, the
/// names `[A-Za-z0-9_]`; quoting keeps anything else literal).
fn option_value(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

/// `program` (`mariadb`, `mariadb-dump`) of the site's MariaDB image,
/// connected to the site's server; `mounts` are (host path, container
/// path) pairs, read-only. The caller adds the program's own arguments and
/// runs it with [`run`].
pub fn client(
    config: &NodeConfig,
    domain: &Domain,
    program: &str,
    mounts: &[(&Path, &str)],
) -> Command {
    let mut cmd = Command::new(&config.docker.binary);
    cmd.args(["run", "--rm", "-i", "--pull", "never", "--network"])
        .arg(db_network_name(domain))
        .args(["--entrypoint", program, "--cap-drop", "ALL"])
        .args(["--security-opt", "no-new-privileges"]);
    for (host, inside) in mounts {
        cmd.arg("--volume")
            .arg(format!("{}:{inside}:ro", host.display()));
    }
    cmd.arg(&config.images.mysql)
        .arg("--defaults-extra-file=/dev/stdin")
        .arg(format!("--host={}", mysql_container_name(domain)));
    cmd
}

/// Runs a [`client`] command with `db`'s option file on its stdin; its
/// stdout goes where the caller set it (captured when it did not).
pub fn run(mut cmd: Command, db: &DbAccess, docker: &Path) -> Result<Output> {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("cannot run {}", docker.display()))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A failed write shows as the client's own error.
        let _ = stdin.write_all(db.option_file().as_bytes());
    }
    child
        .wait_with_output()
        .context("the MariaDB client did not finish")
}

/// The last non-empty line a client wrote to stderr: its error.
pub fn last_error(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr)
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .to_string()
}

/// Whether a failed client could not reach the server (yet): the client's
/// connection errors (2002 no socket, 2003 no answer, 2005 unknown host,
/// 2013 lost during the handshake) or a database network that is not made
/// yet. Anything else is an answer, and retrying does not change it.
pub fn not_reachable(error: &str) -> bool {
    ["ERROR 2002", "ERROR 2003", "ERROR 2005", "ERROR 2013"]
        .iter()
        .any(|code| error.contains(code))
        || (error.contains("network") && error.contains("not found"))
}

/// A database name as a quoted SQL identifier; refuses what the importer
/// never writes, so nothing can end the quoting.
pub fn quoted_name(name: &str) -> Result<String> {
    if name.is_empty()
        || name.len() > 64
        || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    {
        bail!("the database name {name:?} is not one hostyard writes ([A-Za-z0-9_], at most 64)");
    }
    Ok(format!("`{name}`"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn option_values_stay_literal() {
        assert_eq!(option_value(r#"a"b\c"#), r#""a\"b\\c""#);
    }

    #[test]
    fn only_connection_failures_are_retried() {
        assert!(not_reachable(
            "ERROR 2005 (HY000): Unknown server host 'mysql_example.com' (-2)"
        ));
        assert!(not_reachable(
            "ERROR 2003 (HY000): Can't connect to server on 'mysql_example.com' (115)"
        ));
        assert!(not_reachable(
            "docker: Error response from daemon: network hostyard-db-example.com not found."
        ));
        assert!(!not_reachable(
            "ERROR 1045 (28000): Access denied for user 'wp'@'172.18.0.3' (using password: YES)"
        ));
        assert!(!not_reachable(
            "ERROR 1064 (42000) at line 12: You have an error in your SQL syntax"
        ));
    }

    #[test]
    fn database_names_are_quoted_only_when_plain() {
        assert_eq!(quoted_name("wp_example").unwrap(), "`wp_example`");
        for bad in ["", "a`b", "a b", "a;drop", &"x".repeat(65)] {
            assert!(quoted_name(bad).is_err(), "{bad:?}");
        }
    }
}
