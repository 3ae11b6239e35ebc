//! Export, backup and restore with the real binaries and Debian's restic:
//! an export is what the importer reads, a restore goes through the
//! importer, and a repository that is missing, locked, damaged or has
//! another password gives one line and changes no site.

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hostyard_config::NodeConfig;
use hostyard_core::etcd::Schema;
use hostyard_core::{Domain, ImportLayout, Layout, SiteKind};
use hostyard_testsupport::{wait_until, Etcd};
use nix::sys::signal::Signal;

const HOSTYARD: &str = env!("CARGO_BIN_EXE_hostyard");

/// hostyard-import, built beside hostyard (`cargo test --workspace` builds it).
fn importer() -> PathBuf {
    let bin = Path::new(HOSTYARD).with_file_name("hostyard-import");
    assert!(
        bin.is_file(),
        "{} is missing: cargo build --workspace first (scripts/test.sh does)",
        bin.display()
    );
    bin
}

fn restic() -> PathBuf {
    std::env::var_os("PATH")
        .into_iter()
        .flat_map(|p| std::env::split_paths(&p).collect::<Vec<_>>())
        .map(|d| d.join("restic"))
        .find(|p| p.is_file())
        .expect("restic is missing: apt-get install restic (scripts/test.sh does)")
}

struct Server {
    _tmp: tempfile::TempDir,
    dir: PathBuf,
    root: PathBuf,
    config: PathBuf,
    repo: PathBuf,
}

impl Server {
    /// A data root and a config whose backups go to `repo` (made by the
    /// test), with the password in `dir/restic-password`.
    fn new(repo: Option<&Path>) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().to_path_buf();
        let root = dir.join("data");
        fs::create_dir_all(&root).unwrap();
        let repo = repo.map_or_else(|| dir.join("repo"), Path::to_path_buf);
        let config = dir.join("hostyard.yaml");
        fs::write(
            &config,
            format!(
                "data_root: {}\nbackup:\n  repository: {}\n  password_file: {}\n  restic_binary: {}\n",
                root.display(),
                repo.display(),
                dir.join("restic-password").display(),
                restic().display()
            ),
        )
        .unwrap();
        Server {
            _tmp: tmp,
            dir,
            root,
            config,
            repo,
        }
    }

    /// This server is NAME in the fleet whose etcd is `etcd` (a restore
    /// records which server owns the site there).
    /// Another server `name` of this one's fleet, backing up to the same
    /// repository (its password file copied).
    fn another_in_fleet(&self, etcd: &Etcd, name: &str) -> Server {
        let other = Server::new(Some(&self.repo)).in_fleet(etcd, name);
        let password = other.dir.join("restic-password");
        fs::copy(self.dir.join("restic-password"), &password).unwrap();
        fs::set_permissions(&password, fs::Permissions::from_mode(0o600)).unwrap();
        other
    }

    fn in_fleet(self, etcd: &Etcd, name: &str) -> Server {
        let mut config = fs::read_to_string(&self.config).unwrap();
        config.push_str(&format!(
            "node_name: {name}\netcd:\n  endpoints: [\"{}\"]\n",
            etcd.endpoint()
        ));
        fs::write(&self.config, config).unwrap();
        self
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    fn hostyard(&self, args: &[&str]) -> Output {
        Command::new(HOSTYARD)
            .arg("--config")
            .arg(&self.config)
            .args(args)
            .env_remove("HOSTYARD_CONFIG")
            .env("RESTIC_CACHE_DIR", self.dir.join("cache"))
            .output()
            .unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.hostyard(args);
        assert!(
            out.status.success(),
            "hostyard {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Imports the static site `domain` from the export at `export`
    /// (moved into this server's import folder).
    fn import_from(&self, export: &Path, domain: &Domain) {
        fs::create_dir_all(self.layout().imports_dir()).unwrap();
        fs::rename(export, self.layout().import_dir(domain)).unwrap();
        self.import("static", domain);
    }

    fn import(&self, kind: &str, domain: &Domain) {
        hostyard_testsupport::output_ok(
            Command::new(importer())
                .arg("--config")
                .arg(&self.config)
                .arg(kind)
                .arg(domain.as_str())
                .env_remove("HOSTYARD_CONFIG"),
        );
    }

    /// A static site with a few files (one binary, one in a subdir) and a
    /// certificate, made by the importer.
    fn static_site(&self, domain: &Domain) {
        let import = ImportLayout::new(&self.layout().import_dir(domain));
        write(
            &import.www_content().join("index.html"),
            b"<h1>hello</h1>\n",
        );
        write(
            &import.www_content().join("img/logo.bin"),
            &(0..=255u8).cycle().take(70_000).collect::<Vec<_>>(),
        );
        write(&import.tls_pem(domain), CERT.as_bytes());
        self.import("static", domain);
    }
}

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZm9v\nYmFy\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END PRIVATE KEY-----\n";

fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

/// Every file below `dir` with its bytes (links as their targets).
fn tree(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let ft = e.file_type().unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().to_path_buf();
            if ft.is_dir() {
                stack.push(e.path());
            } else if ft.is_symlink() {
                out.insert(
                    rel,
                    fs::read_link(e.path())
                        .unwrap()
                        .into_os_string()
                        .into_encoded_bytes(),
                );
            } else {
                out.insert(rel, fs::read(e.path()).unwrap());
            }
        }
    }
    out
}

/// Server a with the static site example.com, exported to `a.dir/name`.
fn exported_static_site(name: &str) -> (Server, Domain, PathBuf) {
    let a = Server::new(None);
    let d = Domain::parse("example.com").unwrap();
    a.static_site(&d);
    let out = a.dir.join(name);
    a.ok(&["export", "example.com", out.to_str().unwrap()]);
    (a, d, out)
}

fn stderr_line(out: &Output) -> String {
    let text = String::from_utf8_lossy(&out.stderr).into_owned();
    assert_eq!(text.trim_end().lines().count(), 1, "not one line: {text}");
    text
}

#[test]
fn an_export_is_the_migration_layout_and_imports_as_the_same_site() {
    let (a, d, out) = exported_static_site("export");
    let export = ImportLayout::new(&out);
    assert_eq!(
        tree(&export.www_content()),
        tree(&a.layout().www_dir(&d)),
        "static/www-content/ is the served tree"
    );
    assert_eq!(fs::read(export.tls_pem(&d)).unwrap(), CERT.as_bytes());
    assert_eq!(mode(&export.tls_pem(&d)), 0o600, "the key stays private");
    assert_eq!(mode(&out), 0o700);
    assert_eq!(
        fs::read_to_string(out.join("hostyard/KIND")).unwrap(),
        "static\n"
    );

    // A second export into the same dir is refused, the first untouched.
    let again = a.hostyard(&["export", "example.com", out.to_str().unwrap()]);
    assert_eq!(again.status.code(), Some(1));
    assert!(stderr_line(&again).contains("must not exist yet"));
    assert!(export.www_content().join("index.html").is_file());

    // Another server imports the export: the same site.
    let b = Server::new(None);
    b.import_from(&out, &d);
    assert_eq!(tree(&b.layout().www_dir(&d)), tree(&a.layout().www_dir(&d)));
    assert_eq!(fs::read(b.layout().tls_pem(&d)).unwrap(), CERT.as_bytes());
}

/// A move's second copy: a newer export of the same site replaces a stopped
/// copy's files; an export of another kind, a site that is not there, a
/// non-export and a linked layout dir are refused and change nothing.
#[test]
fn a_refresh_brings_a_stopped_copy_up_to_a_newer_export() {
    let (a, d, first) = exported_static_site("first");
    let b = Server::new(None);
    b.import_from(&first, &d);
    let www = b.layout().www_dir(&d);
    fs::set_permissions(&www, fs::Permissions::from_mode(0o751)).unwrap();

    // The site changes on a after the first copy.
    let served = a.layout().www_dir(&d);
    write(&served.join("index.html"), b"<h1>changed</h1>\n");
    fs::remove_file(served.join("img/logo.bin")).unwrap();
    write(&served.join("new/page.html"), b"new\n");
    let second = a.dir.join("second");
    a.ok(&["export", "example.com", second.to_str().unwrap()]);
    let out = b.hostyard(&["refresh", "example.com", second.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("refreshed static site example.com"));
    assert_eq!(tree(&www), tree(&served), "www/ is the newer export's");
    assert_eq!(mode(&www), 0o751, "www/ keeps its mode");
    let names: Vec<String> = fs::read_dir(b.layout().domain_dir(&d))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".refresh"))
        .collect();
    assert!(names.is_empty(), "left behind: {names:?}");
    let before = tree(&b.layout().domain_dir(&d));

    // Refused, one line each, nothing changed.
    let git = a.dir.join("git-export");
    write(&git.join("hostyard/KIND"), b"static-git\n");
    write(
        &git.join("static-git/GITURL"),
        b"https://git.example.org/x.git\n",
    );
    let r = b.hostyard(&["refresh", "example.com", git.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_line(&r).contains("is the export of a static-git site"));
    let r = b.hostyard(&["refresh", "other.example.com", second.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_line(&r).contains("has no data on this server"));
    let plain = a.dir.join("plain");
    write(&plain.join("static/www-content/index.html"), b"x\n");
    let r = b.hostyard(&["refresh", "example.com", plain.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_line(&r).contains("is not a hostyard export"));
    let linked = a.dir.join("linked");
    write(&linked.join("hostyard/KIND"), b"static\n");
    fs::create_dir_all(linked.join("static")).unwrap();
    std::os::unix::fs::symlink(&served, linked.join("static/www-content")).unwrap();
    let r = b.hostyard(&["refresh", "example.com", linked.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_line(&r).contains("is a symlink"));
    assert_eq!(tree(&b.layout().domain_dir(&d)), before);
}

#[test]
fn a_static_git_export_carries_its_url_privately() {
    let a = Server::new(None);
    let d = Domain::parse("git.example.com").unwrap();
    let url = "https://deploy:token@git.example.org/site.git#main\n";
    write(&a.layout().git_url_file(&d), url.as_bytes());
    let out = a.dir.join("export");
    a.ok(&["export", "git.example.com", out.to_str().unwrap()]);
    let git_url = ImportLayout::new(&out).git_url();
    assert_eq!(fs::read_to_string(&git_url).unwrap(), url);
    assert_eq!(mode(&git_url), 0o600);
}

#[test]
fn exporting_a_site_that_does_not_exist_says_so_and_writes_nothing() {
    let a = Server::new(None);
    let out = a.dir.join("export");
    let r = a.hostyard(&["export", "nothing.example.com", out.to_str().unwrap()]);
    assert_eq!(r.status.code(), Some(1));
    assert!(stderr_line(&r).contains("has no data on this server"));
    assert!(!out.exists());
    let bad = a.hostyard(&["export", "a..b", out.to_str().unwrap()]);
    assert_eq!(bad.status.code(), Some(2));
}

#[test]
fn backup_then_restore_brings_a_destroyed_static_site_back_through_the_importer() {
    let etcd = Etcd::start().unwrap();
    let owner_key = Schema::new(&NodeConfig::default().etcd.prefix)
        .owner_key(&Domain::parse("example.com").unwrap());
    let a = Server::new(None).in_fleet(&etcd, "a");
    let d = Domain::parse("example.com").unwrap();
    a.static_site(&d);
    let before = tree(&a.layout().domain_dir(&d));
    a.ok(&["backup", "init"]);
    assert_eq!(mode(&a.dir.join("restic-password")), 0o600);
    let first = a.ok(&["backup", "run", "example.com"]);
    assert!(
        first.contains("backed up static site example.com"),
        "{first}"
    );
    // Nothing changed: skipped; a forced second snapshot adds almost
    // nothing.
    let skipped = a.ok(&["backup", "run", "example.com"]);
    assert!(skipped.contains("is unchanged since snapshot"), "{skipped}");
    let second = a.ok(&["backup", "run", "--force", "example.com"]);
    assert!(
        second.contains("added") && !second.contains("MiB added"),
        "an unchanged site should add almost nothing: {second}"
    );
    let ls = a.ok(&["backup", "ls", "example.com"]);
    assert_eq!(ls.lines().count(), 3, "a header and two snapshots: {ls}");
    assert!(a.layout().backup_state(&d).is_file());
    assert!(
        !a.layout().backup_export_dir(&d).exists(),
        "the export is removed"
    );

    // A restore refuses a site that exists, naming what to do instead.
    let refused = a.hostyard(&["restore", "example.com", "--no-start"]);
    assert_eq!(refused.status.code(), Some(1));
    let line = stderr_line(&refused);
    assert!(line.contains("systemctl stop static@example.com"), "{line}");
    assert!(!a.layout().import_dir(&d).exists());

    // Data lost: the restore puts the export where the importer reads it.
    fs::remove_dir_all(a.layout().domain_dir(&d)).unwrap();
    let first_id = ls
        .lines()
        .nth(1)
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .to_string();
    let restored = a.ok(&[
        "restore",
        "example.com",
        "--snapshot",
        &first_id,
        "--no-start",
    ]);
    assert!(
        restored.contains(&format!("restored snapshot {first_id}")),
        "{restored}"
    );
    assert!(
        restored.contains("systemctl start static@example.com"),
        "{restored}"
    );
    // The restore made this server the site's owner.
    assert!(
        restored.contains("example.com had no owner: server a owns it now"),
        "{restored}"
    );
    assert_eq!(etcd.get(&owner_key).unwrap().as_deref(), Some("a"));
    a.import("static", &d);
    assert_eq!(
        tree(&a.layout().domain_dir(&d)),
        before,
        "the same site, byte for byte"
    );
    let leftovers: Vec<_> = fs::read_dir(a.layout().imports_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .filter(|n| n.to_string_lossy().starts_with(".restore"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // On another server, from the same repository (its password file
    // copied): a does not serve the site (nothing registered), so the
    // owner moves to b without a take-over.
    let b = a.another_in_fleet(&etcd, "b");
    let moved = b.ok(&["restore", "example.com", "--no-start"]);
    assert!(
        moved.contains("example.com moved from server a to server b"),
        "{moved}"
    );
    assert_eq!(etcd.get(&owner_key).unwrap().as_deref(), Some("b"));
    b.import("static", &d);
    assert_eq!(tree(&b.layout().domain_dir(&d)), before);
}

/// A restore on n2 while n1 serves the site (n1 frozen, its registration
/// still live) made two copies that took turns in routing. The restore
/// now refuses, names the owner and the take-over, and restores nothing;
/// `--take-over` restores and moves the owner in one transaction.
#[test]
fn a_restore_refuses_a_site_another_server_serves_until_taken_over() {
    let etcd = Etcd::start().unwrap();
    let d = Domain::parse("example.com").unwrap();
    let schema = Schema::new(&NodeConfig::default().etcd.prefix);
    let a = Server::new(None).in_fleet(&etcd, "n1");
    a.static_site(&d);
    a.ok(&["backup", "init"]);
    a.ok(&["backup", "run", "example.com"]);
    // n1 owns and serves it.
    etcd.put(&schema.owner_key(&d), "n1").unwrap();
    etcd.put_with_lease(
        &schema.service_key(SiteKind::Static, &d),
        r#"{"ip":"172.18.0.5","port":"80","node":"n1"}"#,
        60,
    )
    .unwrap();

    let b = a.another_in_fleet(&etcd, "n2");
    let r = b.hostyard(&["restore", "example.com", "--no-start"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    let line = stderr_line(&r);
    assert!(
        line.contains("owned by server n1, which serves it now")
            && line.contains("hostyard restore example.com --take-over"),
        "{line}"
    );
    assert!(
        !b.layout().import_dir(&d).exists(),
        "a refused restore left an import"
    );
    assert_eq!(
        etcd.get(&schema.owner_key(&d)).unwrap().as_deref(),
        Some("n1")
    );

    let taken = b.ok(&["restore", "example.com", "--no-start", "--take-over"]);
    assert!(
        taken.contains(
            "example.com taken over from server n1, which served it: server n2 owns it now"
        ),
        "{taken}"
    );
    assert!(b.layout().import_dir(&d).is_dir());
    assert_eq!(
        etcd.get(&schema.owner_key(&d)).unwrap().as_deref(),
        Some("n2")
    );
}

/// Whoever can write the repository can make a snapshot that is no honest
/// export: a setuid or world-writable file, a fifo. restic restores owners
/// and modes as they were recorded, and the restore runs as root, so its
/// tree is copied into the import dir as an import is (modes normalised,
/// special files refused, within `limits.unpack`), never renamed as is.
/// The listing and the restore name the server that made the snapshot.
#[test]
fn a_hostile_snapshot_restores_no_setuid_file_and_no_fifo() {
    let etcd = Etcd::start().unwrap();
    let a = Server::new(None).in_fleet(&etcd, "a");
    let d = Domain::parse("example.com").unwrap();
    a.ok(&["backup", "init"]);
    let forged = a.dir.join("forged");
    write(&forged.join("hostyard/KIND"), b"static\n");
    let index = forged.join("static/www-content/index.html");
    write(&index, b"<h1>forged</h1>\n");
    fs::set_permissions(&index, fs::Permissions::from_mode(0o4777)).unwrap();
    let backup = |host: &str| {
        hostyard_testsupport::output_ok(
            Command::new(restic())
                .args(["-r", a.repo.to_str().unwrap(), "--password-file"])
                .arg(a.dir.join("restic-password"))
                .args(["backup", "--host", host, "--tag"])
                .arg("hostyard,site=example.com,kind=static")
                .arg(&forged)
                .env("RESTIC_CACHE_DIR", a.dir.join("cache")),
        );
    };
    backup("elsewhere");
    let ls = a.ok(&["backup", "ls", "example.com"]);
    assert!(ls.lines().nth(1).unwrap().ends_with("elsewhere"), "{ls}");

    let restored = a.ok(&["restore", "example.com", "--no-start"]);
    assert!(restored.contains("made on elsewhere"), "{restored}");
    let placed = ImportLayout::new(&a.layout().import_dir(&d))
        .www_content()
        .join("index.html");
    assert_eq!(fs::read(&placed).unwrap(), b"<h1>forged</h1>\n");
    let m = fs::metadata(&placed).unwrap().permissions().mode() & 0o7777;
    assert_eq!(m & 0o7022, 0, "restored with mode {m:o}");

    // A fifo in a snapshot: the restore refuses it in one line naming it,
    // and nothing waits for the importer.
    fs::remove_dir_all(a.layout().import_dir(&d)).unwrap();
    nix::unistd::mkfifo(
        &forged.join("static/www-content/pipe"),
        nix::sys::stat::Mode::from_bits_truncate(0o644),
    )
    .unwrap();
    backup("elsewhere");
    let refused = a.hostyard(&["restore", "example.com", "--no-start"]);
    assert_eq!(refused.status.code(), Some(1));
    let line = stderr_line(&refused);
    assert!(line.contains("pipe") && line.contains("fifo"), "{line}");
    assert!(!a.layout().import_dir(&d).exists());
    let leftovers: Vec<_> = fs::read_dir(a.layout().imports_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn status_json_has_each_sites_last_good_backup_and_flags_stale_and_missing_ones() {
    let a = Server::new(None);
    // etcd on a closed port: the routing half reports it (exit 1 anyway);
    // the backups are read from this server's own records.
    let mut config = fs::read_to_string(&a.config).unwrap();
    config.push_str("etcd:\n  endpoints: [\"http://127.0.0.1:1\"]\n");
    fs::write(&a.config, config).unwrap();
    let [fresh, old, never] =
        ["fresh.example", "old.example", "never.example"].map(|d| Domain::parse(d).unwrap());
    for d in [&fresh, &old, &never] {
        a.static_site(d);
    }
    a.ok(&["backup", "init"]);
    a.ok(&["backup", "run", "fresh.example"]);
    a.ok(&["backup", "run", "old.example"]);
    // Backed up three days ago (daily schedule: stale after two).
    let state = a.layout().backup_state(&old);
    let mut last: serde_json::Value = serde_json::from_slice(&fs::read(&state).unwrap()).unwrap();
    let three_days_ago = last["time"].as_u64().unwrap() - 3 * 86_400;
    last["time"] = three_days_ago.into();
    fs::write(&state, serde_json::to_vec(&last).unwrap()).unwrap();

    let out = a.hostyard(&["status", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {out:?}"));
    assert!(
        doc["sites"].is_array(),
        "routing's report is still there: {doc}"
    );
    let rows = doc["backups"].as_array().expect("a backups array");
    let row = |d: &Domain| {
        rows.iter()
            .find(|r| r["domain"] == d.as_str())
            .unwrap_or_else(|| panic!("no backup row for {d}: {doc}"))
            .clone()
    };
    let f = row(&fresh);
    assert_eq!(f["state"], "ok", "{f}");
    assert_eq!(f["stale"], false, "{f}");
    assert!(f["last_good"].as_u64().unwrap() + 600 > three_days_ago + 3 * 86_400);
    assert!(f["snapshot"].as_str().unwrap().len() >= 8, "{f}");
    let o = row(&old);
    assert_eq!(
        (&o["state"], &o["stale"]),
        (&"STALE".into(), &true.into()),
        "{o}"
    );
    assert_eq!(o["last_good"], three_days_ago, "{o}");
    let n = row(&never);
    assert_eq!(
        (&n["state"], &n["stale"]),
        (&"NEVER".into(), &true.into()),
        "{n}"
    );
    assert!(n["last_good"].is_null() && n["snapshot"].is_null(), "{n}");
    assert_eq!(rows.len(), 3, "{doc}");

    // The text report has the same verdicts.
    let text = String::from_utf8_lossy(&a.hostyard(&["status"]).stdout).into_owned();
    for (d, state) in [(&fresh, "ok"), (&old, "STALE"), (&never, "NEVER")] {
        assert!(
            text.lines()
                .any(|l| l.split_whitespace().take(2).eq([d.as_str(), state])),
            "{d} {state} in: {text}"
        );
    }
}

/// A backup of an unchanged site runs no restic and stores nothing (restic
/// is a wrapper that logs each call, then runs Debian's); a changed file
/// (same size, its old mtime put back), a snapshot removed by the operator,
/// a snapshot older than backup.unchanged_max_age and --force each store
/// one. A skip counts as a good backup for `hostyard status`.
#[test]
fn an_unchanged_site_is_skipped_until_it_changes_loses_its_snapshot_ages_or_is_forced() {
    let a = Server::new(None);
    let calls = a.dir.join("restic-calls");
    let wrapper = a.dir.join("restic-logged");
    fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho \"$1\" >>'{}'\nexec '{}' \"$@\"\n",
            calls.display(),
            restic().display()
        ),
    )
    .unwrap();
    fs::set_permissions(&wrapper, fs::Permissions::from_mode(0o755)).unwrap();
    let config = fs::read_to_string(&a.config).unwrap().replace(
        &restic().display().to_string(),
        &wrapper.display().to_string(),
    );
    // etcd on a closed port: status reports routing as unreachable, and
    // the backups from this server's records.
    fs::write(
        &a.config,
        format!("{config}etcd:\n  endpoints: [\"http://127.0.0.1:1\"]\n"),
    )
    .unwrap();
    let d = Domain::parse("example.com").unwrap();
    a.static_site(&d);
    a.ok(&["backup", "init"]);
    let snapshots = || -> Vec<String> {
        let out = Command::new(restic())
            .args(["snapshots", "--json", "--tag", "site=example.com"])
            .env("RESTIC_REPOSITORY", &a.repo)
            .env("RESTIC_PASSWORD_FILE", a.dir.join("restic-password"))
            .env("RESTIC_CACHE_DIR", a.dir.join("cache-list"))
            .output()
            .unwrap();
        assert!(out.status.success(), "{out:?}");
        let list: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout).unwrap();
        list.iter()
            .map(|s| s["id"].as_str().unwrap().to_string())
            .collect()
    };
    let calls_now = || {
        fs::read_to_string(&calls)
            .unwrap_or_default()
            .lines()
            .count()
    };
    let record = || -> serde_json::Value {
        serde_json::from_slice(&fs::read(a.layout().backup_state(&d)).unwrap()).unwrap()
    };
    let run = |args: &[&str], expect: &str| {
        let out = a.ok(&[&["backup", "run"][..], args, &["example.com"]].concat());
        assert!(out.contains(expect), "expected {expect:?} in: {out}");
    };

    run(&[], "(no earlier backup recorded)");
    assert_eq!(snapshots().len(), 1);

    // Unchanged: no restic at all, no snapshot, the same one recorded.
    // Made stale for status first: the skip is a good backup now.
    let mut last = record();
    let three_days_ago = last["time"].as_u64().unwrap() - 3 * 86_400;
    last["time"] = three_days_ago.into();
    last["snapshot_time"] = three_days_ago.into();
    fs::write(
        a.layout().backup_state(&d),
        serde_json::to_vec(&last).unwrap(),
    )
    .unwrap();
    let before = calls_now();
    run(&[], "is unchanged since snapshot");
    assert_eq!(calls_now(), before, "restic ran for an unchanged site");
    assert_eq!(snapshots().len(), 1);
    assert!(!a.layout().backup_export_dir(&d).exists());
    let skipped = record();
    assert_eq!(skipped["snapshot"], last["snapshot"]);
    assert_eq!(skipped["snapshot_time"], three_days_ago, "{skipped}");
    assert!(skipped["time"].as_u64().unwrap() > three_days_ago + 2 * 86_400);
    let status = a.hostyard(&["status", "--json"]);
    let doc: serde_json::Value = serde_json::from_slice(&status.stdout)
        .unwrap_or_else(|e| panic!("not one JSON document ({e}): {status:?}"));
    assert_eq!(doc["backups"][0]["state"], "ok", "{doc}");

    // The same size and the old mtime, other content: only the ctime
    // shows it, and that is enough.
    let index = a.layout().www_dir(&d).join("index.html");
    let meta = fs::metadata(&index).unwrap();
    let content = fs::read(&index).unwrap();
    let changed: Vec<u8> = content.iter().map(|b| b.to_ascii_uppercase()).collect();
    assert_ne!(changed, content);
    fs::write(&index, &changed).unwrap();
    fs::File::options()
        .write(true)
        .open(&index)
        .unwrap()
        .set_modified(meta.modified().unwrap())
        .unwrap();
    let now = fs::metadata(&index).unwrap();
    assert_eq!(
        (now.len(), now.modified().unwrap()),
        (meta.len(), meta.modified().unwrap())
    );
    run(&[], "(changed)");
    let list = snapshots();
    assert_eq!(list.len(), 2);
    run(&[], "is unchanged since snapshot");
    assert_eq!(snapshots().len(), 2);

    // The operator forgets the newest snapshot: the next backup stores one.
    let newest = record()["snapshot"].as_str().unwrap().to_string();
    let gone = list.iter().find(|id| id.starts_with(&newest)).unwrap();
    let forget = Command::new(restic())
        .args(["forget", gone])
        .env("RESTIC_REPOSITORY", &a.repo)
        .env("RESTIC_PASSWORD_FILE", a.dir.join("restic-password"))
        .env("RESTIC_CACHE_DIR", a.dir.join("cache-list"))
        .output()
        .unwrap();
    assert!(forget.status.success(), "{forget:?}");
    assert_eq!(snapshots().len(), 1);
    run(&[], "(the last snapshot is gone from the repository)");
    assert_eq!(snapshots().len(), 2);
    run(&[], "is unchanged since snapshot");

    // The snapshot reaches backup.unchanged_max_age (7 days by default).
    let mut last = record();
    last["snapshot_time"] = (last["snapshot_time"].as_u64().unwrap() - 7 * 86_400).into();
    fs::write(
        a.layout().backup_state(&d),
        serde_json::to_vec(&last).unwrap(),
    )
    .unwrap();
    run(&[], "(the last snapshot reached backup.unchanged_max_age)");
    assert_eq!(snapshots().len(), 3);
    run(&[], "is unchanged since snapshot");

    // Forced.
    run(&["--force"], "(forced)");
    assert_eq!(snapshots().len(), 4);
}

#[test]
fn repository_failures_are_one_line_and_change_no_site() {
    let etcd = Etcd::start().unwrap();
    let a = Server::new(None).in_fleet(&etcd, "n1");
    let d = Domain::parse("example.com").unwrap();
    a.static_site(&d);
    let site = tree(&a.layout().domain_dir(&d));
    let check_unchanged = |what: &str| {
        assert_eq!(
            tree(&a.layout().domain_dir(&d)),
            site,
            "{what} changed the site"
        );
        assert!(!a.layout().import_dir(&d).exists(), "{what} left an import");
    };
    write(&a.dir.join("restic-password"), b"secret\n");
    fs::set_permissions(
        a.dir.join("restic-password"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // Missing.
    let r = a.hostyard(&["backup", "run", "example.com"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_line(&r).contains("there is no restic repository at"),
        "{r:?}"
    );
    check_unchanged("a missing repository");
    // A restore of a site that has no data here: the same line, no import.
    let gone = Domain::parse("gone.example").unwrap();
    let r = a.hostyard(&["restore", "gone.example", "--no-start"]);
    assert_eq!(r.status.code(), Some(1));
    assert!(
        stderr_line(&r).contains("there is no restic repository at"),
        "{r:?}"
    );
    assert!(!a.layout().import_dir(&gone).exists(), "{r:?}");
    assert!(!a.layout().domain_dir(&gone).exists(), "{r:?}");

    a.ok(&["backup", "init"]);
    a.ok(&["backup", "run", "example.com"]);

    // A password file readable by others is refused before restic runs.
    fs::set_permissions(
        a.dir.join("restic-password"),
        fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let r = a.hostyard(&["backup", "ls", "example.com"]);
    assert!(stderr_line(&r).contains("chmod 600"), "{r:?}");
    fs::set_permissions(
        a.dir.join("restic-password"),
        fs::Permissions::from_mode(0o600),
    )
    .unwrap();

    // Wrong password.
    fs::write(a.dir.join("restic-password"), b"not the password\n").unwrap();
    for args in [
        &["backup", "run", "example.com"][..],
        &["backup", "ls", "example.com"],
    ] {
        let r = a.hostyard(args);
        assert_eq!(r.status.code(), Some(1));
        assert!(
            stderr_line(&r).contains("does not open the repository"),
            "{r:?}"
        );
    }
    fs::remove_dir_all(a.layout().domain_dir(&d)).unwrap();
    let r = a.hostyard(&["restore", "example.com", "--no-start"]);
    assert!(
        stderr_line(&r).contains("does not open the repository"),
        "{r:?}"
    );
    assert!(!a.layout().domain_dir(&d).exists());
    assert!(!a.layout().import_dir(&d).exists());
    fs::write(a.dir.join("restic-password"), b"secret\n").unwrap();

    // Locked: a restic that holds the repository (a backup reading its
    // stdin) keeps forget --prune out.
    let mut holder = Command::new(restic())
        .args(["backup", "--stdin", "--stdin-filename", "x"])
        .env("RESTIC_REPOSITORY", &a.repo)
        .env("RESTIC_PASSWORD_FILE", a.dir.join("restic-password"))
        .env("RESTIC_CACHE_DIR", a.dir.join("cache2"))
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(fs::File::create(a.dir.join("holder.log")).unwrap())
        .spawn()
        .unwrap();
    // restic reads its stdin only once it holds its lock (and checked
    // that no other lock conflicts): wait until a thread of it sits in
    // read(0, ...).
    wait_reading_stdin(
        "restic to lock the repository and read its stdin",
        holder.id(),
        Duration::from_secs(20),
    );
    let r = a.hostyard(&["backup", "prune"]);
    let holder_ran = holder.try_wait().unwrap().is_none();
    drop(holder.stdin.take());
    let _ = holder.wait();
    assert_eq!(
        r.status.code(),
        Some(1),
        "prune ran beside a restic holding the repository (still running: {holder_ran}; its log: {})",
        fs::read_to_string(a.dir.join("holder.log")).unwrap_or_default()
    );
    assert!(
        stderr_line(&r).contains("is locked by another restic"),
        "{r:?}"
    );

    // Locked exclusively: a restic prune stopped while it holds the lock
    // keeps a backup and a restore out.
    let held = Domain::parse("held.example").unwrap();
    a.static_site(&held);
    let held_site = tree(&a.layout().domain_dir(&held));
    let mut pruner = hold_exclusive_lock(&a);
    let backup = a.hostyard(&["backup", "run", "held.example"]);
    let restore = a.hostyard(&["restore", "gone.example", "--no-start"]);
    let _ = signal(&pruner, Signal::SIGCONT);
    let _ = pruner.wait();
    for (what, r) in [("backup run", &backup), ("restore", &restore)] {
        assert_eq!(r.status.code(), Some(1), "{what}: {r:?}");
        assert!(
            stderr_line(r).contains("is locked by another restic"),
            "{what}: {r:?}"
        );
    }
    assert!(!a.layout().import_dir(&gone).exists());
    assert!(!a.layout().domain_dir(&gone).exists());
    assert_eq!(tree(&a.layout().domain_dir(&held)), held_site);

    // Damaged: every data pack overwritten.
    for pack in walk_files(&a.repo.join("data")) {
        fs::set_permissions(&pack, fs::Permissions::from_mode(0o600)).unwrap();
        fs::write(&pack, b"garbage").unwrap();
    }
    let r = a.hostyard(&["restore", "example.com", "--no-start"]);
    assert_eq!(r.status.code(), Some(1), "{r:?}");
    stderr_line(&r);
    assert!(!a.layout().domain_dir(&d).exists());
    assert!(
        !a.layout().import_dir(&d).exists(),
        "a damaged snapshot left an import"
    );
}

/// A `restic prune` of `a`'s repository, stopped (SIGSTOP) while it holds
/// the exclusive lock: a live process on this host, so no restic takes its
/// lock for stale. prune holds the lock for only a moment on a small
/// repository, so the lock file is watched for and an attempt that missed
/// it is made again (at most 20).
fn hold_exclusive_lock(a: &Server) -> std::process::Child {
    let locks = a.repo.join("locks");
    // The lock files in place: restic writes one as `<id>-tmp-<n>` and
    // renames it to its 64-hex-digit ID, and only that is a lock to
    // another restic.
    let lock_files = || -> Vec<std::ffi::OsString> {
        fs::read_dir(&locks)
            .map(|d| {
                d.filter_map(Result::ok)
                    .map(|e| e.file_name())
                    .filter(|n| {
                        n.to_str().is_some_and(|n| {
                            n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit())
                        })
                    })
                    .collect()
            })
            .unwrap_or_default()
    };
    // Locks of others (none should be left) are not prune's.
    let before = lock_files();
    let prunes_lock = || lock_files().into_iter().find(|n| !before.contains(n));
    for _ in 0..20 {
        let mut prune = Command::new(restic())
            .arg("prune")
            .env("RESTIC_REPOSITORY", &a.repo)
            .env("RESTIC_PASSWORD_FILE", a.dir.join("restic-password"))
            .env("RESTIC_CACHE_DIR", a.dir.join("cache3"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let deadline = Instant::now() + Duration::from_secs(20);
        while prune.try_wait().unwrap().is_none() && Instant::now() < deadline {
            if let Some(seen) = prunes_lock() {
                signal(&prune, Signal::SIGSTOP).unwrap();
                // Stopped with its lock still there (not on its way out).
                if prunes_lock() == Some(seen) {
                    return prune;
                }
                let _ = signal(&prune, Signal::SIGCONT);
                break;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        let _ = prune.wait();
    }
    panic!("restic prune never held the lock long enough to stop it");
}

/// Waits until process `pid` sits in read(0, ...); after `timeout`, fails
/// the test naming `what` and showing the process's syscall file.
fn wait_reading_stdin(what: &str, pid: u32, timeout: Duration) {
    wait_until(what, timeout, || reads_stdin(pid).then_some(())).unwrap_or_else(|e| {
        let syscall = fs::read_to_string(format!("/proc/{pid}/syscall"));
        panic!("{e}; its syscall file: {syscall:?}")
    });
}

/// Whether a thread of process `pid` waits in read(2) on its stdin.
fn reads_stdin(pid: u32) -> bool {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return false;
    };
    tasks
        .filter_map(Result::ok)
        .any(|t| fs::read_to_string(t.path().join("syscall")).is_ok_and(|s| is_read_of_stdin(&s)))
}

/// Whether a line of /proc's `syscall` file (the call's number in decimal,
/// then its arguments in hex) is read(2) of descriptor 0. The number is
/// the target's own: read is 0 on x86_64 and 63 on aarch64.
fn is_read_of_stdin(syscall: &str) -> bool {
    let mut fields = syscall.split_whitespace();
    fields.next() == Some(nix::libc::SYS_read.to_string().as_str()) && fields.next() == Some("0x0")
}

#[test]
fn reads_stdin_sees_a_read_of_stdin_and_nothing_else() {
    let read = nix::libc::SYS_read;
    assert!(is_read_of_stdin(&format!(
        "{read} 0x0 0x7ffd 0x1000 0x0 0x0 0x0 0x7ffc 0x4a1b"
    )));
    assert!(!is_read_of_stdin(&format!(
        "{read} 0x3 0x7ffd 0x1000 0x0 0x0 0x0 0x7ffc 0x4a1b"
    )));
    assert!(!is_read_of_stdin(&format!("{} 0x0 0x7ffd", read + 1)));
    assert!(!is_read_of_stdin("running"));
    assert!(!is_read_of_stdin(""));

    // A real process blocked reading its stdin (a pipe nobody writes), and
    // one that reads nothing: the check tells them apart.
    let mut cat = Command::new("cat")
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let mut sleeper = Command::new("sleep")
        .arg("30")
        .stdin(Stdio::null())
        .spawn()
        .unwrap();
    wait_reading_stdin(
        "cat to block in read(0, ...)",
        cat.id(),
        Duration::from_secs(10),
    );
    let sleeper_reads = reads_stdin(sleeper.id());
    let _ = sleeper.kill();
    let _ = sleeper.wait();
    drop(cat.stdin.take());
    let _ = cat.wait();
    assert!(!sleeper_reads, "sleep is not reading its stdin");
}

fn walk_files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                out.push(p);
            }
        }
    }
    out
}

/// Sends `sig` to a child process: by the system call, as a fresh Debian 12
/// has no `kill` binary (procps is not installed).
fn signal(child: &std::process::Child, sig: Signal) -> nix::Result<()> {
    let pid = i32::try_from(child.id()).expect("a pid fits in i32");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), sig)
}
