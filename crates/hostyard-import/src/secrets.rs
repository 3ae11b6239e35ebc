//! A WordPress site's secrets: database passwords and WordPress salts.
//!
//! The original made passwords from `$RANDOM` and printed them with
//! `set -x`. Here every secret comes from the OS RNG (getrandom), is written
//! straight into a file created with mode 0600 (never chmod'ed afterwards,
//! so it is never readable by others, not even briefly) in a 0700 directory,
//! and is never printed or logged.

use std::fs;
use std::io::Read;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;

use anyhow::{bail, Context, Result};
use hostyard_core::envfile::{EnvFile, WP_ADMIN_EMAIL, WP_ADMIN_PASSWORD, WP_ADMIN_USER};
use hostyard_core::secret::{new_password, random_bytes};
use hostyard_core::{kind::mysql_container_name, Domain, Layout};
use hostyard_fs::unpack::open_regular;
use hostyard_fs::AtomicWrite;

/// The WordPress keys and salts wp-config.php defines.
const SALT_NAMES: [&str; 8] = [
    "AUTH_KEY",
    "SECURE_AUTH_KEY",
    "LOGGED_IN_KEY",
    "NONCE_KEY",
    "AUTH_SALT",
    "SECURE_AUTH_SALT",
    "LOGGED_IN_SALT",
    "NONCE_SALT",
];

/// Database and user names; the passwords are always new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DbNames {
    pub database: String,
    pub user: String,
}

impl Default for DbNames {
    fn default() -> Self {
        DbNames {
            database: "wordpress".to_string(),
            user: "wordpress".to_string(),
        }
    }
}

impl DbNames {
    /// Reads the names from an old `mysql/.env` (`MYSQL_DATABASE`,
    /// `MYSQL_USER` or their `MARIADB_` forms), so that an imported dump that
    /// names its database still loads. Its passwords are ignored: they came
    /// from `$RANDOM`.
    pub fn from_env_file(path: &Path) -> Result<DbNames> {
        let mut text = String::new();
        open_regular(path)?
            .take(64 * 1024)
            .read_to_string(&mut text)
            .with_context(|| format!("cannot read {} as text", path.display()))?;
        let mut names = DbNames::default();
        for line in text.lines() {
            let line = line.trim();
            let line = line.strip_prefix("export ").unwrap_or(line);
            let Some((key, value)) = line.split_once('=') else {
                continue;
            };
            let value = value.trim().trim_matches(|c| c == '"' || c == '\'');
            let slot = match key.trim() {
                "MYSQL_DATABASE" | "MARIADB_DATABASE" => &mut names.database,
                "MYSQL_USER" | "MARIADB_USER" => &mut names.user,
                _ => continue,
            };
            if !is_sql_name(value) {
                bail!(
                    "{}: {} = {value:?} is not a plain database name (letters, digits, _; at most 64)",
                    path.display(),
                    key.trim()
                );
            }
            *slot = value.to_string();
        }
        Ok(names)
    }
}

fn is_sql_name(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// 384 random bits in 64 characters from `[A-Za-z0-9_-]`: no quote or
/// backslash, so it sits in a PHP string literal as is. 256 is a multiple
/// of 64, so `b & 63` is uniform.
fn new_salt() -> Result<String> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    Ok(random_bytes(64)?
        .iter()
        .map(|b| char::from(ALPHABET[usize::from(b & 63)]))
        .collect())
}

/// Creates a file with mode 0600 from the start, complete and synced when
/// it appears; refuses to replace one.
pub fn write_private(path: &Path, content: &[u8]) -> Result<()> {
    AtomicWrite::new(0o600).no_replace().write(path, content)
}

/// Writes `secrets/db.env`, `secrets/wp.env` and `secrets/wp-salts.php`
/// for a new site.
/// `table_prefix`: an imported dump's, when it is not WordPress's default.
pub fn write_site_secrets(
    layout: &Layout,
    domain: &Domain,
    names: &DbNames,
    table_prefix: Option<&str>,
) -> Result<()> {
    let dir = layout.secrets_dir(domain);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&dir)
        .with_context(|| format!("cannot create {}", dir.display()))?;

    let password = new_password()?;
    let root_password = new_password()?;
    let db_host = mysql_container_name(domain);
    let DbNames { database, user } = names;
    // Read by `docker run --env-file`: the MariaDB image creates the
    // database and user on first start; WordPress connects with them and
    // gets a file of its own without root's password (`docker inspect`
    // shows a container's environment).
    let mut wordpress = EnvFile::new()
        .set("WORDPRESS_DB_HOST", &db_host)?
        .set("WORDPRESS_DB_NAME", database)?
        .set("WORDPRESS_DB_USER", user)?
        .set("WORDPRESS_DB_PASSWORD", &password)?;
    if let Some(prefix) = table_prefix {
        wordpress = wordpress.set("WORDPRESS_TABLE_PREFIX", prefix)?;
    }
    let mut env = EnvFile::new()
        .set("MARIADB_DATABASE", database)?
        .set("MARIADB_USER", user)?
        .set("MARIADB_PASSWORD", &password)?
        .set("MARIADB_ROOT_PASSWORD", &root_password)?;
    for (key, value) in wordpress.pairs() {
        env = env.set(key, value)?;
    }
    let (env, wordpress) = (env.render(), wordpress.render());
    write_private(&layout.db_env_file(domain), env.as_bytes())?;
    write_private(&layout.wp_env_file(domain), wordpress.as_bytes())?;

    let mut php =
        String::from("<?php\n// Generated by hostyard-import for this site only; never shared.\n");
    for name in SALT_NAMES {
        php.push_str(&format!("define('{name}', '{}');\n", new_salt()?));
    }
    write_private(&layout.wp_salts_file(domain), php.as_bytes())
}

/// The administrator a new site is installed with: `secrets/wp-admin.env`,
/// 0600, read by the WordPress container's entrypoint (root) and handed to
/// PHP on stdin. `new_admin`: the e-mail address of a new site's
/// administrator, who gets a new password; `None` writes a file that says
/// the site keeps its own administrators (an import), which `hostyard
/// wordpress reset-password` fills in.
pub fn write_admin_file(layout: &Layout, domain: &Domain, new_admin: Option<&str>) -> Result<()> {
    let text = match new_admin {
        Some(email) => EnvFile::new()
            .comment("The administrator hostyard installed this site with.")
            .set(WP_ADMIN_USER, "admin")?
            .set(WP_ADMIN_EMAIL, email)?
            .set(WP_ADMIN_PASSWORD, &new_password()?)?,
        None => EnvFile::new().comment(
            "An imported site keeps its administrators and their passwords;\n\
             `hostyard wordpress reset-password` sets a new one here.",
        ),
    }
    .render();
    write_private(&layout.wp_admin_file(domain), text.as_bytes())
}

/// For a site imported before WordPress had an env file of its own: writes
/// `wp.env` from the `WORDPRESS_` lines of `db.env`. Nothing happens when it
/// exists or the site has no `db.env` (not WordPress). Returns whether it
/// wrote the file.
pub fn split_wordpress_env(layout: &Layout, domain: &Domain) -> Result<bool> {
    let wp_env = layout.wp_env_file(domain);
    let db_env = layout.db_env_file(domain);
    if fs::symlink_metadata(&wp_env).is_ok() || fs::symlink_metadata(&db_env).is_err() {
        return Ok(false);
    }
    let mut text = String::new();
    open_regular(&db_env)?
        .take(64 * 1024)
        .read_to_string(&mut text)
        .with_context(|| format!("cannot read {} as text", db_env.display()))?;
    let wordpress = EnvFile::parse(&text).with_prefix("WORDPRESS_").render();
    write_private(&wp_env, wordpress.as_bytes())?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn salts_are_plain() {
        // Passwords are hostyard_core::secret's, tested there.
        let s = new_salt().unwrap();
        assert_eq!(s.len(), 64);
        assert!(s
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_'));
    }

    #[test]
    fn env_names_are_read_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(".env");
        fs::write(
            &p,
            "MYSQL_ROOT_PASSWORD=1234\nMYSQL_DATABASE=\"blog_db\"\nexport MYSQL_USER=blog\n",
        )
        .unwrap();
        assert_eq!(
            DbNames::from_env_file(&p).unwrap(),
            DbNames {
                database: "blog_db".into(),
                user: "blog".into()
            }
        );
        fs::write(&p, "MYSQL_DATABASE=x; DROP TABLE y\n").unwrap();
        assert!(DbNames::from_env_file(&p).is_err());
    }
}
