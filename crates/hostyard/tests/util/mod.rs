//! Shared pieces of hostyard's integration tests: temp dirs, running the
//! real binary with a clean environment, reading trees, golden files.

#![allow(dead_code)]

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The `hostyard` binary cargo built for this test run.
pub fn hostyard_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_hostyard"))
}

/// Where goldens live: `tests/golden/` at the top of the workspace.
pub fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/golden")
}

/// `HOSTYARD_BLESS=1 cargo test -p hostyard --test generate` rewrites the
/// goldens from what the code renders now.
pub fn blessing() -> bool {
    std::env::var_os("HOSTYARD_BLESS").is_some_and(|v| v == "1")
}

/// Runs `hostyard` with `args`; `HOSTYARD_CONFIG` from the caller's
/// environment is removed so a developer's setting cannot leak in.
pub fn hostyard(args: &[&str]) -> Output {
    Command::new(hostyard_bin())
        .args(args)
        .env_remove("HOSTYARD_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .output()
        .expect("hostyard runs")
}

/// [`hostyard`] with `input` on its stdin.
pub fn hostyard_with_stdin(args: &[&str], input: &str) -> Output {
    use std::io::Write;
    let mut child = Command::new(hostyard_bin())
        .args(args)
        .env_remove("HOSTYARD_CONFIG")
        .env_remove("RUST_BACKTRACE")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("hostyard runs");
    let mut stdin = child.stdin.take().expect("stdin");
    stdin.write_all(input.as_bytes()).expect("writes stdin");
    drop(stdin);
    child.wait_with_output().expect("hostyard runs")
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Asserts that `o`'s stderr contains `says`, showing all of it if not.
pub fn assert_stderr_has(o: &Output, says: &str) {
    let err = stderr(o);
    assert!(err.contains(says), "{says:?} not in:\n{err}");
}

/// Asserts that `o`'s stdout contains `says`, showing all of it if not.
pub fn assert_stdout_has(o: &Output, says: &str) {
    let out = stdout(o);
    assert!(out.contains(says), "{says:?} not in:\n{out}");
}

/// Asserts that `o` exited with `code` and its stderr contains `says`.
pub fn assert_exit_saying(o: &Output, code: i32, says: &str) {
    assert_eq!(o.status.code(), Some(code), "{}", stderr(o));
    assert_stderr_has(o, says);
}

/// Writes `yaml` to `dir`'s hostyard.yaml; the file's path.
pub fn write_config(dir: &TempDir, yaml: &str) -> String {
    let config = dir.str("hostyard.yaml");
    fs::write(&config, yaml).expect("config");
    config
}

/// A new temp dir whose hostyard.yaml holds `yaml`; the file's path.
pub fn dir_with_config(yaml: &str) -> (TempDir, String) {
    let dir = TempDir::new();
    let config = write_config(&dir, yaml);
    (dir, config)
}

/// A temp dir removed on drop (kept, with its path printed, if the test
/// panics, so the failure can be looked at).
pub struct TempDir(Option<tempfile::TempDir>);

impl TempDir {
    pub fn new() -> TempDir {
        TempDir(Some(
            tempfile::Builder::new()
                .prefix("hostyard-test-")
                .tempdir()
                .expect("temp dir"),
        ))
    }

    pub fn path(&self) -> &Path {
        self.0.as_ref().expect("present until drop").path()
    }

    pub fn join(&self, p: &str) -> PathBuf {
        self.path().join(p)
    }

    pub fn str(&self, p: &str) -> String {
        self.join(p).to_str().expect("utf-8 temp path").to_string()
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(d) = self.0.take() {
                eprintln!("kept {} for inspection", d.keep().display());
            }
        }
    }
}

/// Every regular file under `dir` (relative name → contents).
pub fn read_tree(dir: &Path) -> BTreeMap<String, String> {
    let mut tree = BTreeMap::new();
    walk(dir, dir, &mut tree);
    tree
}

fn walk(root: &Path, dir: &Path, tree: &mut BTreeMap<String, String>) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            walk(root, &path, tree);
        } else {
            let name = path
                .strip_prefix(root)
                .expect("under root")
                .to_string_lossy()
                .into_owned();
            let contents = fs::read_to_string(&path).expect("utf-8 file");
            tree.insert(name, contents);
        }
    }
}

/// Compares `actual` with the golden tree `golden` (a dir under
/// [`golden_dir`]) file by file, extra and missing files included; with
/// `HOSTYARD_BLESS=1`, replaces the golden tree instead.
pub fn assert_golden_tree(golden: &str, actual: &BTreeMap<String, String>) {
    let dir = golden_dir().join(golden);
    if blessing() {
        let _ = fs::remove_dir_all(&dir);
        for (name, contents) in actual {
            let path = dir.join(name);
            fs::create_dir_all(path.parent().expect("has parent")).expect("golden dir");
            fs::write(&path, contents).expect("write golden");
        }
        return;
    }
    let expected = read_tree(&dir);
    let mut problems = Vec::new();
    for name in expected.keys() {
        if !actual.contains_key(name) {
            problems.push(format!("{name}: in the goldens but no longer rendered"));
        }
    }
    for (name, contents) in actual {
        match expected.get(name) {
            None => problems.push(format!("{name}: rendered but has no golden")),
            Some(e) if e != contents => problems.push(format!(
                "{name}: differs\n{}",
                first_difference(e, contents)
            )),
            Some(_) => {}
        }
    }
    assert!(
        problems.is_empty(),
        "golden tree {} does not match:\n{}\nIf the change is intended, refresh with: \
         HOSTYARD_BLESS=1 cargo test -p hostyard --test generate",
        dir.display(),
        problems.join("\n")
    );
}

fn first_difference(expected: &str, actual: &str) -> String {
    let mut e = expected.lines();
    let mut a = actual.lines();
    let mut n = 1;
    loop {
        match (e.next(), a.next()) {
            (None, None) => return "  (only line endings differ)".to_string(),
            (el, al) if el == al => n += 1,
            (el, al) => {
                return format!(
                    "  line {n}:\n  golden:   {}\n  rendered: {}",
                    el.unwrap_or("<end>"),
                    al.unwrap_or("<end>")
                )
            }
        }
    }
}

/// The first `program` on `PATH`.
pub fn search_path(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}
