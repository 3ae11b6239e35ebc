//! An imported WordPress dump (`mysql/dump.sql`): copied into the site's
//! `mysql-init/` and read on the way, so that a dump that would load only
//! in part is refused before anything exists, and the site's table prefix
//! comes from the dump itself.

use std::collections::BTreeSet;
use std::io::{BufRead, Write};

use anyhow::{bail, Result};

/// What the copy learnt about a dump.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DumpFacts {
    /// WordPress's table prefix (`wp_`, or another the old site used).
    pub table_prefix: String,
}

/// The comment mariadb-dump and mysqldump end a complete dump with.
const COMPLETED: &[u8] = b"-- Dump completed";

/// Copies `src` to `dest` line by line and checks it: it must end with
/// the dump tool's `-- Dump completed` line (a dump cut short by a full
/// disk or a dropped connection does not) and create one WordPress's
/// tables (`<prefix>options`, `<prefix>posts`, `<prefix>users`). `name`
/// names the dump in errors.
pub fn copy_and_check(
    src: &mut impl BufRead,
    dest: &mut impl Write,
    name: &str,
) -> Result<DumpFacts> {
    let mut line = Vec::new();
    let mut last = Vec::new();
    let mut tables = BTreeSet::new();
    loop {
        line.clear();
        if src.read_until(b'\n', &mut line)? == 0 {
            break;
        }
        dest.write_all(&line)?;
        if let Some(table) = created_table(&line) {
            tables.insert(table);
        }
        let trimmed = line.trim_ascii();
        if !trimmed.is_empty() {
            last.clear();
            last.extend_from_slice(trimmed);
        }
    }
    dest.flush()?;
    if !last.starts_with(COMPLETED) {
        bail!(
            "{name} is incomplete: it does not end with the dump tool's \"-- Dump completed\" line \
             (cut short while it was made or copied, or made with --compact or --skip-comments); \
             make the dump again with mariadb-dump or mysqldump without those options"
        );
    }
    let prefixes: Vec<&str> = tables
        .iter()
        .filter_map(|t| t.strip_suffix("options"))
        .filter(|p| tables.contains(&format!("{p}posts")) && tables.contains(&format!("{p}users")))
        .collect();
    match prefixes.as_slice() {
        [prefix] if is_prefix(prefix) => Ok(DumpFacts {
            table_prefix: prefix.to_string(),
        }),
        [prefix] => bail!(
            "{name}: the WordPress table prefix {prefix:?} has characters WordPress does not allow \
             (letters, digits and _ only)"
        ),
        [] => bail!(
            "{name} creates no WordPress tables (no CREATE TABLE of <prefix>options, posts and users): \
             dump the site's whole database, its table definitions included"
        ),
        several => bail!(
            "{name} holds the tables of several WordPress sites (prefixes {}): dump one site's tables only",
            several.join(", ")
        ),
    }
}

/// The table a `CREATE TABLE` line creates.
fn created_table(line: &[u8]) -> Option<String> {
    let rest = line.strip_prefix(b"CREATE TABLE ")?;
    let rest = rest.strip_prefix(b"IF NOT EXISTS ").unwrap_or(rest);
    let rest = rest.strip_prefix(b"`")?;
    let end = rest.iter().position(|&b| b == b'`')?;
    String::from_utf8(rest[..end].to_vec()).ok()
}

fn is_prefix(p: &str) -> bool {
    !p.is_empty() && p.len() <= 32 && p.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dump(prefix: &str, end: &str) -> String {
        let mut s = String::from("-- MariaDB dump 10.19\n");
        for t in ["commentmeta", "options", "posts", "users", "usermeta"] {
            s.push_str(&format!(
                "DROP TABLE IF EXISTS `{prefix}{t}`;\nCREATE TABLE `{prefix}{t}` (\n  `id` int\n);\n\
                 INSERT INTO `{prefix}{t}` VALUES (1);\n"
            ));
        }
        s.push_str(end);
        s
    }

    fn check(text: &str) -> Result<DumpFacts> {
        let mut out = Vec::new();
        let facts = copy_and_check(&mut text.as_bytes(), &mut out, "dump.sql");
        assert_eq!(out, text.as_bytes(), "the copy is byte for byte");
        facts
    }

    #[test]
    fn a_complete_dump_gives_its_prefix() {
        let done = "\n-- Dump completed on 2026-12-01 13:00:00\n\n";
        assert_eq!(check(&dump("wp_", done)).unwrap().table_prefix, "wp_");
        assert_eq!(check(&dump("blog7_", done)).unwrap().table_prefix, "blog7_");
    }

    #[test]
    fn a_truncated_dump_is_refused() {
        let full = dump("wp_", "-- Dump completed on 2026-12-01\n");
        let cut = &full[..full.len() / 2];
        let err = check(cut).unwrap_err().to_string();
        assert!(err.contains("dump.sql is incomplete"), "{err}");
        assert!(check("").is_err());
    }

    #[test]
    fn no_or_several_wordpress_sites_are_refused() {
        let done = "-- Dump completed\n";
        let err = check(&format!("CREATE TABLE `t` (x int);\n{done}"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("creates no WordPress tables"), "{err}");
        let two = format!("{}{}", dump("a_", ""), dump("b_", done));
        let err = check(&two).unwrap_err().to_string();
        assert!(err.contains("prefixes a_, b_"), "{err}");
    }
}
