//! hostyard-import run as a real process on a temp data root: every source,
//! existing data, hostile input, a kill -9 in the middle, and secrets.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use hostyard_core::{Domain, ImportLayout, Layout};
use hostyard_testsupport::{snapshot, wait_until, GitDaemon};

const BIN: &str = env!("CARGO_BIN_EXE_hostyard-import");

const CERT: &str = "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIUZm9v\nYmFy\n-----END CERTIFICATE-----\n\
                    -----BEGIN PRIVATE KEY-----\nMIGHAgEAMBMGByqGSM49AgEG\n-----END PRIVATE KEY-----\n";

struct Server {
    tmp: tempfile::TempDir,
    root: PathBuf,
    config: PathBuf,
}

impl Server {
    fn new() -> Server {
        Server::with_config("")
    }

    /// A server whose node config has `extra` after its `data_root`.
    fn with_config(extra: &str) -> Server {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("data");
        fs::create_dir_all(&root).unwrap();
        let config = tmp.path().join("hostyard.yaml");
        fs::write(&config, format!("data_root: {}\n{extra}", root.display())).unwrap();
        Server { tmp, root, config }
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    fn command(&self, kind: &str, domain: &str) -> Command {
        let mut cmd = Command::new(BIN);
        cmd.arg("--config")
            .arg(&self.config)
            .arg(kind)
            .arg(domain)
            .env_remove("HOSTYARD_CONFIG");
        cmd
    }

    fn import(&self, kind: &str, domain: &str) -> Output {
        self.command(kind, domain).output().unwrap()
    }

    fn import_ok(&self, kind: &str, domain: &Domain) -> String {
        let out = self.import(kind, domain.as_str());
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert!(out.status.success(), "import failed: {stderr}");
        stderr
    }

    /// The import folder in the original layout.
    fn import_folder(&self, domain: &Domain) -> ImportLayout {
        let dir = self.layout().import_dir(domain);
        fs::create_dir_all(&dir).unwrap();
        ImportLayout::new(&dir)
    }
}

fn write(path: &Path, content: &[u8]) {
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, content).unwrap();
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// Nothing of the site exists and no staging dir is left.
fn assert_no_site(server: &Server, domain: &Domain) {
    let layout = server.layout();
    assert!(
        !layout.domain_dir(domain).exists(),
        "{} exists",
        layout.domain_dir(domain).display()
    );
    if let Ok(entries) = fs::read_dir(layout.domains_dir()) {
        for e in entries {
            let name = e.unwrap().file_name().to_string_lossy().into_owned();
            assert!(
                !Layout::is_staging_name(domain, &name),
                "staging dir {name} left behind"
            );
        }
    }
}

/// Case `name`: the import of `name.example.com` as `kind`, its folder
/// made by `setup`, is refused naming `want`, makes no site and leaves
/// the import folder as it was.
fn assert_folder_refused(
    s: &Server,
    name: &str,
    kind: &str,
    setup: impl Fn(&ImportLayout, &Domain),
    want: &str,
) {
    let d = Domain::parse(&format!("{name}.example.com")).unwrap();
    let imp = s.import_folder(&d);
    setup(&imp, &d);
    let before = snapshot(imp.root());
    let out = s.import(kind, d.as_str());
    assert_refused(&out, want);
    assert_no_site(s, &d);
    assert_eq!(
        snapshot(imp.root()),
        before,
        "{name}: the import folder was changed"
    );
}

fn assert_refused(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("import refused, nothing changed"),
        "{stderr}"
    );
    assert!(stderr.contains(want), "wanted {want:?} in: {stderr}");
}

#[test]
fn fresh_static_site_gets_a_placeholder_page() {
    let s = Server::new();
    let d = Domain::parse("fresh.example.com").unwrap();
    s.import_ok("static", &d);
    let page = fs::read_to_string(s.layout().www_dir(&d).join("index.html")).unwrap();
    assert!(page.contains("fresh.example.com"));
    assert_no_site_staging_only(&s, &d);
}

fn assert_no_site_staging_only(s: &Server, d: &Domain) {
    for e in fs::read_dir(s.layout().domains_dir()).unwrap() {
        let name = e.unwrap().file_name().to_string_lossy().into_owned();
        assert!(
            !Layout::is_staging_name(d, &name),
            "staging dir {name} left behind"
        );
    }
}

#[test]
fn a_new_wordpress_administrator_gets_the_node_configs_email() {
    let s = Server::new();
    let mut config = fs::read_to_string(&s.config).unwrap();
    config.push_str("wordpress:\n  admin_email: ops@hoster.example\n");
    fs::write(&s.config, config).unwrap();
    let d = Domain::parse("blog.example.com").unwrap();
    s.import_ok("wordpress", &d);
    let admin = fs::read_to_string(s.layout().wp_admin_file(&d)).unwrap();
    assert!(
        admin.contains("WP_ADMIN_EMAIL=ops@hoster.example\n"),
        "{admin}"
    );

    // An address that is not one stops the import before anything exists.
    fs::write(
        &s.config,
        format!(
            "data_root: {}\nwordpress:\n  admin_email: not-an-address\n",
            s.root.display()
        ),
    )
    .unwrap();
    let other = Domain::parse("other.example.com").unwrap();
    let out = s.import("wordpress", other.as_str());
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("not-an-address"), "{stderr}");
    assert!(!s.layout().domain_dir(&other).exists());
}

#[test]
fn fresh_wordpress_gets_private_random_secrets_that_are_never_printed() {
    let s = Server::new();
    let d = Domain::parse("blog.example.com").unwrap();
    let out = s.import("wordpress", d.as_str());
    assert!(out.status.success(), "{out:?}");
    let l = s.layout();
    assert!(l.wp_content_dir(&d).is_dir());
    assert!(l.mysql_dir(&d).is_dir());
    assert_eq!(mode(&l.secrets_dir(&d)), 0o700);
    assert_eq!(mode(&l.db_env_file(&d)), 0o600);
    assert_eq!(mode(&l.wp_salts_file(&d)), 0o600);

    let env = fs::read_to_string(l.db_env_file(&d)).unwrap();
    let value = |key: &str| -> String {
        env.lines()
            .find_map(|line| line.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("{key} missing from db.env"))
            .to_string()
    };
    let password = value("MARIADB_PASSWORD");
    assert_eq!(password.len(), 64);
    assert_eq!(value("WORDPRESS_DB_PASSWORD"), password);
    assert_ne!(value("MARIADB_ROOT_PASSWORD"), password);
    assert_eq!(value("MARIADB_DATABASE"), value("WORDPRESS_DB_NAME"));
    let salts = fs::read_to_string(l.wp_salts_file(&d)).unwrap();
    assert_eq!(salts.matches("define('").count(), 8);
    // WordPress gets its own user's password only: root's stays with MariaDB.
    assert_eq!(mode(&l.wp_env_file(&d)), 0o600);
    let wp_env = fs::read_to_string(l.wp_env_file(&d)).unwrap();
    assert!(
        wp_env.contains(&format!("WORDPRESS_DB_PASSWORD={password}\n")),
        "{wp_env}"
    );
    assert!(!wp_env.contains("ROOT") && !wp_env.contains(&value("MARIADB_ROOT_PASSWORD")));
    assert!(!wp_env.contains("MARIADB_"), "{wp_env}");

    // No secret reaches stdout or stderr (the journal).
    let printed = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!printed.contains(&password));
    assert!(!printed.contains(&value("MARIADB_ROOT_PASSWORD")));
    for line in salts.lines().filter(|l| l.starts_with("define(")) {
        let salt = line.split('\'').nth(3).unwrap();
        assert!(!printed.contains(salt));
    }

    // The administrator it is installed with: generated, private, unprinted.
    assert_eq!(mode(&l.wp_admin_file(&d)), 0o600);
    let admin = fs::read_to_string(l.wp_admin_file(&d)).unwrap();
    let admin_password = admin
        .lines()
        .find_map(|line| line.strip_prefix("WP_ADMIN_PASSWORD="))
        .unwrap();
    assert_eq!(admin_password.len(), 64);
    assert!(admin.contains("WP_ADMIN_USER=admin\n"), "{admin}");
    assert!(
        admin.contains("WP_ADMIN_EMAIL=admin@blog.example.com\n"),
        "{admin}"
    );
    assert!(!printed.contains(admin_password));
    // WordPress's rewrite rules, for pretty permalinks from the start.
    let htaccess = fs::read_to_string(l.htaccess_file(&d)).unwrap();
    assert!(htaccess.starts_with("# BEGIN WordPress\n"), "{htaccess}");
    assert!(
        htaccess.contains("RewriteRule . /index.php [L]\n"),
        "{htaccess}"
    );

    // A second site gets different secrets.
    let d2 = Domain::parse("blog2.example.com").unwrap();
    s.import_ok("wordpress", &d2);
    let env2 = fs::read_to_string(l.db_env_file(&d2)).unwrap();
    assert!(!env2.contains(&password));
}

/// Sites imported before WordPress got a file of its own have one db.env
/// for both containers, root's password in it: the next start (the importer
/// runs before every start) gives WordPress its own file without it.
#[test]
fn an_existing_site_gets_a_wordpress_env_without_the_root_password() {
    let s = Server::new();
    let d = Domain::parse("old.example.com").unwrap();
    s.import_ok("wordpress", &d);
    let l = s.layout();
    let db_env = fs::read_to_string(l.db_env_file(&d)).unwrap();
    fs::remove_file(l.wp_env_file(&d)).unwrap();
    let out = s.import_ok("wordpress", &d);
    assert!(out.contains("already imported"), "{out}");
    assert_eq!(mode(&l.wp_env_file(&d)), 0o600);
    let wp_env = fs::read_to_string(l.wp_env_file(&d)).unwrap();
    let want: String = db_env
        .lines()
        .filter(|l| l.starts_with("WORDPRESS_"))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_eq!(wp_env, want);
    assert_eq!(fs::read_to_string(l.db_env_file(&d)).unwrap(), db_env);
    // The files this version mounts come too: the default .htaccess and,
    // for a site whose database never started, a generated administrator;
    // once its database holds data, the site keeps its own administrators.
    fs::remove_file(l.htaccess_file(&d)).unwrap();
    fs::remove_file(l.wp_admin_file(&d)).unwrap();
    let out = s.import_ok("wordpress", &d);
    assert!(out.contains("wrote .htaccess"), "{out}");
    assert!(fs::read_to_string(l.htaccess_file(&d))
        .unwrap()
        .contains("RewriteRule . /index.php [L]"));
    assert!(fs::read_to_string(l.wp_admin_file(&d))
        .unwrap()
        .contains("WP_ADMIN_PASSWORD="));
    fs::remove_file(l.wp_admin_file(&d)).unwrap();
    write(&l.mysql_dir(&d).join("ibdata1"), b"database pages");
    s.import_ok("wordpress", &d);
    let admin = fs::read_to_string(l.wp_admin_file(&d)).unwrap();
    assert!(!admin.contains("WP_ADMIN_PASSWORD"), "{admin}");
    assert_eq!(mode(&l.wp_admin_file(&d)), 0o600);
    // And it is never rewritten once there.
    let before = fs::metadata(l.wp_env_file(&d)).unwrap().modified().unwrap();
    s.import_ok("wordpress", &d);
    assert_eq!(
        fs::metadata(l.wp_env_file(&d)).unwrap().modified().unwrap(),
        before
    );
}

#[test]
fn static_git_without_a_url_says_where_to_put_it_and_changes_nothing() {
    let s = Server::new();
    let d = Domain::parse("nourl.example.com").unwrap();
    let out = s.import("static-git", d.as_str());
    let want = ImportLayout::new(&s.layout().import_dir(&d)).git_url();
    assert_refused(&out, &want.display().to_string());
    assert_no_site(&s, &d);
}

#[test]
fn folder_import_of_a_static_site_is_copied_and_moved_aside() {
    let s = Server::new();
    let d = Domain::parse("folder.example.com").unwrap();
    let imp = s.import_folder(&d);
    write(&imp.www_content().join("index.html"), b"imported");
    write(&imp.www_content().join("css/site.css"), b"body{}");
    std::os::unix::fs::symlink("index.html", imp.www_content().join("home.html")).unwrap();
    write(&imp.tls_pem(&d), CERT.as_bytes());
    let before = snapshot(imp.root());

    s.import_ok("static", &d);
    let l = s.layout();
    assert_eq!(
        fs::read_to_string(l.www_dir(&d).join("index.html")).unwrap(),
        "imported"
    );
    assert_eq!(
        fs::read_to_string(l.www_dir(&d).join("css/site.css")).unwrap(),
        "body{}"
    );
    assert_eq!(
        fs::read_link(l.www_dir(&d).join("home.html")).unwrap(),
        Path::new("index.html")
    );
    assert_eq!(fs::read_to_string(l.tls_pem(&d)).unwrap(), CERT);
    assert_eq!(mode(&l.tls_pem(&d)), 0o600);

    // The import is kept, unchanged, under .done.
    assert!(!l.import_dir(&d).exists());
    let done: Vec<PathBuf> = fs::read_dir(l.import_done_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(done.len(), 1);
    assert!(done[0]
        .file_name()
        .unwrap()
        .to_string_lossy()
        .starts_with("folder.example.com-"));
    assert_eq!(snapshot(&done[0]), before);
}

#[test]
fn folder_import_of_a_wordpress_site_keeps_content_dump_and_db_names() {
    let s = Server::new();
    let d = Domain::parse("wp.example.com").unwrap();
    let imp = s.import_folder(&d);
    write(&imp.wp_content().join("uploads/2020/a.jpg"), b"jpeg");
    write(&imp.htaccess(), b"RewriteEngine On\n");
    write(&imp.mysql_dump(), &wp_dump("blog_"));
    write(
        &imp.mysql_env(),
        b"MYSQL_DATABASE=oldblog\nMYSQL_USER=olduser\nMYSQL_PASSWORD=12345\n",
    );
    s.import_ok("wordpress", &d);
    let l = s.layout();
    assert_eq!(
        fs::read(l.wp_content_dir(&d).join("uploads/2020/a.jpg")).unwrap(),
        b"jpeg"
    );
    assert_eq!(
        fs::read(l.htaccess_file(&d)).unwrap(),
        b"RewriteEngine On\n"
    );
    assert_eq!(fs::read(l.mysql_init_dump(&d)).unwrap(), wp_dump("blog_"));
    assert_eq!(mode(&l.mysql_init_dump(&d)), 0o600);
    // The dump's table prefix reaches WordPress's config.
    let wp_env = fs::read_to_string(l.wp_env_file(&d)).unwrap();
    assert!(
        wp_env.contains("WORDPRESS_TABLE_PREFIX=blog_\n"),
        "{wp_env}"
    );
    // An imported site keeps its administrators: no generated password.
    let admin = fs::read_to_string(l.wp_admin_file(&d)).unwrap();
    assert!(!admin.contains("WP_ADMIN_PASSWORD"), "{admin}");
    assert_eq!(mode(&l.wp_admin_file(&d)), 0o600);
    let env = fs::read_to_string(l.db_env_file(&d)).unwrap();
    assert!(env.contains("MARIADB_DATABASE=oldblog\n"), "{env}");
    assert!(env.contains("MARIADB_USER=olduser\n"), "{env}");
    assert!(
        !env.contains("=12345\n"),
        "the old $RANDOM password must not be reused"
    );
}

/// A dump as mariadb-dump writes it, of a WordPress with this prefix.
fn wp_dump(prefix: &str) -> Vec<u8> {
    let mut s = String::from("-- MariaDB dump 10.19  Distrib 11.8.3-MariaDB\n");
    for t in ["options", "posts", "postmeta", "users", "usermeta"] {
        s.push_str(&format!(
            "DROP TABLE IF EXISTS `{prefix}{t}`;\nCREATE TABLE `{prefix}{t}` (\n  `id` int\n);\n\
             INSERT INTO `{prefix}{t}` VALUES (1);\n"
        ));
    }
    s.push_str("\n-- Dump completed on 2026-12-01 13:00:00\n");
    s.into_bytes()
}

/// A dump cut short (a full disk, a dropped connection while it was
/// made or copied) would load in part: it is refused with the reason, the
/// site is not created and the import stays where it was.
#[test]
fn a_truncated_dump_is_refused_and_nothing_is_imported() {
    let s = Server::new();
    let d = Domain::parse("cut.example.com").unwrap();
    let imp = s.import_folder(&d);
    let full = wp_dump("wp_");
    write(&imp.mysql_dump(), &full[..full.len() * 2 / 3]);
    write(&imp.wp_content().join("uploads/a.jpg"), b"jpeg");
    let before = snapshot(imp.root());
    let out = s.import("wordpress", d.as_str());
    assert_refused(&out, "is incomplete: it does not end with the dump tool's");
    assert_no_site(&s, &d);
    assert_eq!(snapshot(imp.root()), before);
}

use hostyard_testsupport::RawTarEntry;

/// A tar of raw entries (name, type, content or link target), names
/// unchecked, as a hostile tool would write them.
fn tar_bytes(entries: &[RawTarEntry]) -> Vec<u8> {
    hostyard_testsupport::raw_tar(entries)
}

fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

#[test]
fn tarball_imports_with_and_without_a_wrapper_dir() {
    let s = Server::new();
    let l = s.layout();
    fs::create_dir_all(l.imports_dir()).unwrap();
    let file = tar::EntryType::file();

    let d1 = Domain::parse("tar.example.com").unwrap();
    let t = tar_bytes(&[("static/www-content/index.html", file, b"from tar")]);
    fs::write(&l.import_tarballs(&d1)[0], t).unwrap();
    s.import_ok("static", &d1);
    assert_eq!(
        fs::read_to_string(l.www_dir(&d1).join("index.html")).unwrap(),
        "from tar"
    );
    assert!(!l.import_tarballs(&d1)[0].exists());

    let d2 = Domain::parse("tgz.example.com").unwrap();
    let t = tar_bytes(&[
        (
            "tgz.example.com/wordpress/wp-content/themes/x/style.css",
            file,
            b"css",
        ),
        (
            "tgz.example.com/TLS/tgz.example.com.pem",
            file,
            CERT.as_bytes(),
        ),
    ]);
    fs::write(&l.import_tarballs(&d2)[1], gzip(&t)).unwrap();
    s.import_ok("wordpress", &d2);
    assert_eq!(
        fs::read(l.wp_content_dir(&d2).join("themes/x/style.css")).unwrap(),
        b"css"
    );
    assert_eq!(fs::read_to_string(l.tls_pem(&d2)).unwrap(), CERT);
    let done: Vec<String> = fs::read_dir(l.import_done_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        done.iter()
            .any(|n| n.starts_with("tgz.example.com-") && n.ends_with(".tar.gz")),
        "{done:?}"
    );
    assert!(
        done.iter()
            .any(|n| n.starts_with("tar.example.com-") && n.ends_with(".tar")),
        "{done:?}"
    );
}

#[test]
fn static_git_import_clones_and_publishes_a_tree() {
    let s = Server::new();
    let base = s.tmp.path().join("served");
    let work = base.join("site");
    fs::create_dir_all(&work).unwrap();
    let git = |args: &[&str]| hostyard_testsupport::git(&work, args);
    git(&["init", "-q"]);
    fs::write(work.join("index.html"), "from git").unwrap();
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "one"]);
    let commit = git(&["rev-parse", "HEAD"]);
    let daemon = GitDaemon::start(&base).unwrap();

    let d = Domain::parse("git.example.com").unwrap();
    let imp = s.import_folder(&d);
    write(
        &imp.git_url(),
        format!("{}\n", daemon.url("site")).as_bytes(),
    );
    s.import_ok("static-git", &d);
    let l = s.layout();
    assert_eq!(
        fs::read_link(l.current_link(&d)).unwrap(),
        Layout::current_link_target(&commit)
    );
    assert_eq!(
        fs::read_to_string(l.current_link(&d).join("index.html")).unwrap(),
        "from git"
    );
    assert!(l.git_repo_dir(&d).join("HEAD").is_file());
    assert!(!l.current_link(&d).join(".git").exists());
    assert_eq!(
        fs::read_to_string(l.git_url_file(&d)).unwrap().trim(),
        daemon.url("site")
    );
    assert_eq!(mode(&l.git_url_file(&d)), 0o600);

    // An unreachable repository: refused, nothing left.
    let d2 = Domain::parse("git2.example.com").unwrap();
    let imp = s.import_folder(&d2);
    write(
        &imp.git_url(),
        format!("{}\n", daemon.url("missing")).as_bytes(),
    );
    assert_refused(&s.import("static-git", d2.as_str()), "cannot fetch");
    assert_no_site(&s, &d2);
    assert!(imp.git_url().exists());
}

#[test]
fn existing_site_data_is_left_byte_for_byte() {
    let s = Server::new();
    let d = Domain::parse("keep.example.com").unwrap();
    s.import_ok("wordpress", &d);
    // The site lives on: the database writes files, someone uploads.
    write(&s.layout().mysql_dir(&d).join("ibdata1"), b"database pages");
    write(
        &s.layout().wp_content_dir(&d).join("uploads/new.png"),
        b"png",
    );
    let before = snapshot(&s.layout().domain_dir(&d));

    // A stale import arrives for the same domain.
    let imp = s.import_folder(&d);
    write(&imp.wp_content().join("uploads/new.png"), b"OLD");
    write(&imp.mysql_dump(), b"DROP DATABASE wordpress;");
    let import_before = snapshot(imp.root());
    let stderr = s.import_ok("wordpress", &d);
    assert!(stderr.contains("already imported"), "{stderr}");
    assert_eq!(snapshot(&s.layout().domain_dir(&d)), before);
    // The import folder is not touched either.
    assert_eq!(snapshot(imp.root()), import_before);
}

#[test]
fn every_import_records_its_kind_and_another_kind_is_refused_on_its_data() {
    let s = Server::new();
    for kind in ["static", "wordpress"] {
        let d = Domain::parse(&format!("{kind}.kinds.example")).unwrap();
        s.import_ok(kind, &d);
        let recorded = fs::read_to_string(s.layout().kind_file(&d)).unwrap();
        assert_eq!(recorded, format!("{kind}\n"));
        let before = snapshot(&s.layout().domain_dir(&d));
        for other in ["static", "static-git", "wordpress"] {
            if other == kind {
                continue;
            }
            let out = s.import(other, d.as_str());
            assert_eq!(out.status.code(), Some(1), "{other} on {kind}: {out:?}");
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(
                stderr.contains(&format!("holds a {kind} site, not a {other} one"))
                    && stderr.contains(&format!("start {kind}@{d}.service")),
                "{stderr}"
            );
            assert_eq!(snapshot(&s.layout().domain_dir(&d)), before, "{other}");
        }
    }
}

#[test]
fn data_from_before_kinds_were_recorded_gets_its_kind_at_the_next_start() {
    let s = Server::new();
    let d = Domain::parse("old.example.com").unwrap();
    s.import_ok("static", &d);
    fs::remove_file(s.layout().kind_file(&d)).unwrap();
    // The wrong kind is refused and records nothing.
    let out = s.import("wordpress", d.as_str());
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!s.layout().kind_file(&d).exists());
    let stderr = s.import_ok("static", &d);
    assert!(stderr.contains("recorded its kind (static)"), "{stderr}");
    assert_eq!(
        fs::read_to_string(s.layout().kind_file(&d)).unwrap(),
        "static\n"
    );
}

#[test]
fn hostile_tarballs_are_refused_and_change_nothing() {
    let file = tar::EntryType::file();
    let cases: Vec<(&str, Vec<RawTarEntry>, &str)> = vec![
        (
            "dotdot",
            vec![("static/www-content/../../../../evil", file, b"x")],
            "'..'",
        ),
        (
            "absolute",
            vec![("/tmp/hostyard-evil", file, b"x")],
            "absolute",
        ),
        (
            "symlink-abs",
            vec![("static/www-content/e", tar::EntryType::symlink(), b"/etc")],
            "absolute path",
        ),
        (
            "symlink-out",
            vec![(
                "static/www-content/e",
                tar::EntryType::symlink(),
                b"../../../..",
            )],
            "outside the archive",
        ),
        (
            "symlink-then-write",
            vec![
                ("static/www-content/d", tar::EntryType::symlink(), b"."),
                ("static/www-content/d/x", file, b"x"),
            ],
            "not a directory",
        ),
        (
            "hardlink-out",
            vec![("static/x", tar::EntryType::hard_link(), b"/etc/shadow")],
            "absolute",
        ),
        (
            "hardlink-up",
            vec![("static/x", tar::EntryType::hard_link(), b"../x")],
            "'..'",
        ),
        (
            "chardev",
            vec![(
                "static/www-content/null",
                tar::EntryType::character_special(),
                b"",
            )],
            "device",
        ),
        (
            "blockdev",
            vec![(
                "static/www-content/sda",
                tar::EntryType::block_special(),
                b"",
            )],
            "device",
        ),
        (
            "fifo",
            vec![("static/www-content/p", tar::EntryType::fifo(), b"")],
            "fifo",
        ),
    ];
    let s = Server::new();
    fs::create_dir_all(s.layout().imports_dir()).unwrap();
    for (name, entries, want) in cases {
        let d = Domain::parse(&format!("{name}.example.com")).unwrap();
        let tarball = &s.layout().import_tarballs(&d)[0];
        let bytes = tar_bytes(&entries);
        fs::write(tarball, &bytes).unwrap();
        let out = s.import("static", d.as_str());
        assert_refused(&out, want);
        assert_no_site(&s, &d);
        assert_eq!(
            fs::read(tarball).unwrap(),
            bytes,
            "{name}: the tarball was changed"
        );
    }
    assert!(!Path::new("/tmp/hostyard-evil").exists());
}

/// The attack this pins: `a/up -> ..` and `wordpress -> a/up/../../wp...`
/// each look inside the archive when read alone, but together resolve to
/// another site's data, and the import used to copy that site's
/// `wp-content` (a customer reading another customer's files).
#[test]
fn a_chain_of_links_out_of_the_archive_is_refused_and_reads_nothing() {
    let s = Server::new();
    let victim = Domain::parse("wp.example.org").unwrap();
    let secret = s
        .layout()
        .wp_content_dir(&victim)
        .join("uploads/secret.txt");
    write(&secret, b"victim's upload");
    let evil = Domain::parse("evil.example.org").unwrap();
    fs::create_dir_all(s.layout().imports_dir()).unwrap();
    let tarball = &s.layout().import_tarballs(&evil)[0];
    // The tarball is unpacked in domains/.staging-<domain>-<pid>/unpacked:
    // a/up is that dir, two more `..` reach domains/.
    for (name, entries) in [
        (
            "two links",
            vec![
                ("a/up", tar::EntryType::symlink(), &b".."[..]),
                (
                    "wordpress",
                    tar::EntryType::symlink(),
                    b"a/up/../../wp.example.org",
                ),
            ],
        ),
        (
            "link made after the link through it",
            vec![
                (
                    "wordpress",
                    tar::EntryType::symlink(),
                    &b"a/up/../../wp.example.org"[..],
                ),
                ("a/up", tar::EntryType::symlink(), b".."),
            ],
        ),
        (
            "a chain inside the content",
            vec![
                (
                    "wordpress/wp-content/b/c/up",
                    tar::EntryType::symlink(),
                    &b"../.."[..],
                ),
                (
                    "wordpress/wp-content/leak",
                    tar::EntryType::symlink(),
                    b"b/c/up/../../../..",
                ),
            ],
        ),
    ] {
        let bytes = tar_bytes(&entries);
        fs::write(tarball, &bytes).unwrap();
        let out = s.import("wordpress", evil.as_str());
        assert_refused(&out, "outside the archive");
        assert_no_site(&s, &evil);
        assert_eq!(
            fs::read(tarball).unwrap(),
            bytes,
            "{name}: the tarball was changed"
        );
    }
    assert_eq!(fs::read(&secret).unwrap(), b"victim's upload");
}

/// A folder import whose layout directories are links (to another site's
/// data, or anywhere) is refused: nothing is read through them.
#[test]
fn a_folder_import_with_linked_layout_directories_is_refused() {
    let s = Server::new();
    let victim = Domain::parse("wp.example.org").unwrap();
    write(
        &s.layout()
            .wp_content_dir(&victim)
            .join("uploads/secret.txt"),
        b"victim's upload",
    );
    write(
        &s.layout().domain_dir(&victim).join("dump/dump.sql"),
        b"-- victim's database\n",
    );
    let victim_dir = s.layout().domain_dir(&victim);
    type Setup<'a> = Box<dyn Fn(&ImportLayout) + 'a>;
    let cases: Vec<(&str, Setup)> = vec![
        (
            "linked-wordpress",
            Box::new(|imp| {
                std::os::unix::fs::symlink(&victim_dir, imp.wp_content().parent().unwrap()).unwrap()
            }),
        ),
        (
            "linked-wp-content",
            Box::new(|imp| {
                fs::create_dir_all(imp.wp_content().parent().unwrap()).unwrap();
                std::os::unix::fs::symlink(victim_dir.join("wp-content"), imp.wp_content()).unwrap()
            }),
        ),
        (
            "linked-mysql",
            Box::new(|imp| {
                std::os::unix::fs::symlink(
                    victim_dir.join("dump"),
                    imp.mysql_dump().parent().unwrap(),
                )
                .unwrap()
            }),
        ),
    ];
    for (name, setup) in cases {
        assert_folder_refused(&s, name, "wordpress", |imp, _| setup(imp), "symlink");
    }
}

#[test]
fn hostile_folders_are_refused_and_change_nothing() {
    let s = Server::new();
    type Setup = Box<dyn Fn(&ImportLayout, &Domain)>;
    let cases: Vec<(&str, &str, Setup, &str)> = vec![
        (
            "fifo",
            "static",
            Box::new(|imp, _| {
                fs::create_dir_all(imp.www_content()).unwrap();
                nix::unistd::mkfifo(&imp.www_content().join("p"), nix::sys::stat::Mode::S_IRWXU)
                    .unwrap();
            }),
            "fifo",
        ),
        (
            "linkout",
            "static",
            Box::new(|imp, _| {
                fs::create_dir_all(imp.www_content()).unwrap();
                std::os::unix::fs::symlink("/etc/passwd", imp.www_content().join("p")).unwrap();
            }),
            "absolute path",
        ),
        (
            "notpem",
            "static",
            Box::new(|imp, d| write(&imp.tls_pem(d), b"\x30\x82\x01\x0a binary DER")),
            "not a PEM certificate",
        ),
        (
            "pemlink",
            "static",
            Box::new(|imp, d| {
                fs::create_dir_all(imp.tls_pem(d).parent().unwrap()).unwrap();
                std::os::unix::fs::symlink("/etc/shadow", imp.tls_pem(d)).unwrap();
            }),
            "is a symlink",
        ),
        (
            "badenv",
            "wordpress",
            Box::new(|imp, _| write(&imp.mysql_env(), b"MYSQL_DATABASE=x`reboot`\n")),
            "not a plain database name",
        ),
    ];
    for (name, kind, setup, want) in cases {
        assert_folder_refused(&s, name, kind, setup, want);
    }
}

#[test]
fn hostile_git_urls_are_refused_before_git_runs() {
    let s = Server::new();
    let marker = s.root.join("pwned");
    let urls = [
        (
            format!("ext::sh -c touch% {}", marker.display()),
            "whitespace",
        ),
        ("ext::sh".to_string(), "\"ext::\" transport"),
        (
            "file:///srv/git/site.git".to_string(),
            "\"file://\" transport",
        ),
        ("/srv/git/site.git".to_string(), "local path"),
        ("-u/tmp/x".to_string(), "starts with '-'"),
        (
            format!("--upload-pack=touch {}", marker.display()),
            "whitespace",
        ),
        ("--upload-pack=touch".to_string(), "starts with '-'"),
        ("ssh://-oProxyCommand=touch/x".to_string(), "bad host"),
        ("user@-oProxyCommand=x:y".to_string(), "bad host"),
    ];
    for (n, (url, want)) in urls.iter().enumerate() {
        let d = Domain::parse(&format!("url{n}.example.com")).unwrap();
        let imp = s.import_folder(&d);
        write(&imp.git_url(), format!("{url}\n").as_bytes());
        let out = s.import("static-git", d.as_str());
        assert_refused(&out, want);
        assert_no_site(&s, &d);
        assert!(!marker.exists(), "{url} ran a command");
    }
}

/// With `/data` on a volume that mounts late (or not at all), an importer
/// used to create fresh data (a new WordPress, new secrets) on the root
/// disk; the real data would then be hidden under the mount.
#[test]
fn a_missing_data_root_is_an_error_and_nothing_is_created() {
    let s = Server::new();
    fs::remove_dir(&s.root).unwrap();
    for kind in ["static", "wordpress"] {
        let out = s.import(kind, "unmounted.example.com");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{kind}: {stderr}");
        assert!(
            stderr.contains(&format!("{} does not exist", s.root.display()))
                && stderr.contains("mounted"),
            "{kind}: {stderr}"
        );
        assert!(!s.root.exists(), "{kind}: the data root was created");
    }
}

#[test]
fn bad_arguments_exit_2_and_touch_nothing() {
    let s = Server::new();
    for (kind, domain, want) in [
        ("static", "../etc", "contains '/'"),
        ("static", "a b.com", "contains ' '"),
        ("php", "ok.example.com", "unknown site kind"),
        // Another unit name for the same site (a typo'd instance once
        // took the real site out of routing when it stopped).
        ("static", "Example.com", "use \"example.com\""),
        ("wordpress", "example.com.", "use \"example.com\""),
    ] {
        let out = s.import(kind, domain);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        assert!(String::from_utf8_lossy(&out.stderr).contains(want));
    }
    assert_eq!(
        fs::read_dir(&s.root).unwrap().count(),
        0,
        "something was created"
    );
}

/// Writes `files` files of `size` random-ish bytes as a static import folder.
fn big_import(s: &Server, d: &Domain, files: usize, size: usize) -> u64 {
    let imp = s.import_folder(d);
    let dir = imp.www_content();
    fs::create_dir_all(&dir).unwrap();
    let mut block = vec![0u8; size];
    let mut x: u64 = 0x9e3779b97f4a7c15;
    for (i, b) in block.iter_mut().enumerate() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = (x >> (i % 8)) as u8;
    }
    for n in 0..files {
        block[..8].copy_from_slice(&(n as u64).to_le_bytes());
        fs::write(dir.join(format!("f{n:05}.bin")), &block).unwrap();
    }
    (files * size) as u64
}

#[test]
fn kill_9_during_an_import_leaves_no_half_site_and_the_next_run_succeeds() {
    let s = Server::new();
    let d = Domain::parse("crash.example.com").unwrap();
    let files = 400;
    let total = big_import(&s, &d, files, 256 * 1024);
    let import_before = snapshot(s.layout().import_dir(&d).as_path());

    // Kill at several points of the staging: as soon as it starts, and later.
    let mut killed = 0;
    let mut finished = false;
    for delay_ms in [0u64, 30, 100, 250] {
        let mut child = s
            .command("static", d.as_str())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let staging_seen = wait_until(
            "the import to start staging",
            Duration::from_secs(30),
            || {
                if let Ok(Some(_)) = child.try_wait() {
                    return Some(false);
                }
                let started = fs::read_dir(s.layout().domains_dir()).ok()?.any(|e| {
                    e.map(|e| Layout::is_staging_name(&d, &e.file_name().to_string_lossy()))
                        .unwrap_or(false)
                });
                started.then_some(true)
            },
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        let _ = child.kill(); // SIGKILL
        let status = child.wait().unwrap();
        if staging_seen && status.code().is_none() {
            killed += 1;
            // Nothing, never half: no site dir at all.
            assert!(
                !s.layout().domain_dir(&d).exists(),
                "half site after kill at +{delay_ms} ms"
            );
        } else {
            // It finished first: then the whole site must be there.
            finished = true;
            break;
        }
        assert_eq!(snapshot(s.layout().import_dir(&d).as_path()), import_before);
    }
    assert!(
        killed >= 1,
        "the import was never caught in the middle; make it bigger"
    );

    // The next run cleans up and imports everything.
    let start = Instant::now();
    if !finished {
        let stderr = s.import_ok("static", &d);
        assert!(stderr.contains("interrupted import"), "{stderr}");
    }
    let took = start.elapsed();
    assert_no_site_staging_only(&s, &d);
    let www = s.layout().www_dir(&d);
    let copied: u64 = fs::read_dir(&www)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    assert_eq!(copied, total);
    assert_eq!(fs::read_dir(&www).unwrap().count(), files);
    eprintln!(
        "measured: kill -9 test caught the import {killed} times; full import of {} MiB in {:?}",
        total / (1024 * 1024),
        took
    );
}

#[test]
fn used_imports_older_than_keep_done_are_removed_by_the_next_import() {
    let s = Server::new();
    fs::write(
        &s.config,
        format!(
            "data_root: {}\nimport:\n  keep_done: 1h\n",
            s.root.display()
        ),
    )
    .unwrap();
    let l = s.layout();
    let done = l.import_done_dir();
    fs::create_dir_all(&done).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let old = Domain::parse("old.example.com").unwrap();
    let recent = Domain::parse("recent.example.com").unwrap();
    // An old import of another site, as a folder with a key and as a tarball.
    let old_dir = l.import_done_entry(&old, now - 7200, "");
    write(&old_dir.join("TLS/old.example.com.pem"), CERT.as_bytes());
    let old_tar = l.import_done_entry(&old, now - 3700, ".tar.gz");
    write(&old_tar, b"gz");
    // A link is removed, never followed.
    let outside = s.tmp.path().join("outside");
    write(&outside.join("keep"), b"not the importer's");
    let old_link = l.import_done_entry(&old, now - 9000, "");
    std::os::unix::fs::symlink(&outside, &old_link).unwrap();
    let recent_dir = l.import_done_entry(&recent, now - 60, "");
    write(&recent_dir.join("x"), b"recent");
    let foreign = done.join("notes.txt");
    write(&foreign, b"the operator's");

    let d = Domain::parse("new.example.com").unwrap();
    write(
        &s.import_folder(&d).www_content().join("index.html"),
        b"new",
    );
    let log = s.import_ok("static", &d);

    assert!(!old_dir.exists(), "{log}");
    assert!(!old_tar.exists(), "{log}");
    assert!(fs::symlink_metadata(&old_link).is_err(), "{log}");
    assert_eq!(
        fs::read(outside.join("keep")).unwrap(),
        b"not the importer's"
    );
    assert!(recent_dir.join("x").exists());
    assert!(foreign.exists());
    assert!(log.contains("older than import.keep_done"), "{log}");
    // The import just used is kept.
    assert!(fs::read_dir(&done).unwrap().any(|e| e
        .unwrap()
        .file_name()
        .to_string_lossy()
        .starts_with("new.example.com-")));
}

/// The data dir of every site, without the importers' lock files (an
/// import takes its lock before it looks at anything).
fn data_snapshot(s: &Server) -> BTreeMap<PathBuf, (u32, Vec<u8>)> {
    let mut map = snapshot(&s.layout().domains_dir());
    map.retain(|p, _| {
        let name = p.to_string_lossy();
        !(name.starts_with(".import-") && name.ends_with(".lock"))
    });
    map
}

/// Test-sized caps: 1 MiB, 50 entries, 8 levels.
const SMALL_UNPACK_CAPS: &str =
    "limits:\n  unpack:\n    max_bytes: 1m\n    max_files: 50\n    max_depth: 8\n";

/// Bombs: archives and folders far smaller than what they would write are
/// refused at the node's `limits.unpack` caps, with one line naming the
/// cap and the key to raise; the data dir (another site included) is byte
/// for byte as it was, and the import stays where it was for a second look.
#[test]
fn a_gzip_bomb_and_other_trees_past_the_caps_are_refused_and_change_nothing() {
    let s = Server::with_config(SMALL_UNPACK_CAPS);
    let l = s.layout();
    let neighbour = Domain::parse("neighbour.example.com").unwrap();
    s.import_ok("static", &neighbour);
    fs::create_dir_all(l.imports_dir()).unwrap();
    let file = tar::EntryType::file();

    let zeros = vec![0u8; 64 << 20];
    let many: Vec<String> = (0..60)
        .map(|i| format!("static/www-content/f{i}"))
        .collect();
    let deep = format!("static/www-content/{}x.html", "d/".repeat(10));
    let cases: Vec<(&str, Vec<RawTarEntry>)> = vec![
        (
            "limits.unpack.max_bytes",
            vec![("static/www-content/zeros.bin", file, &zeros[..])],
        ),
        (
            "limits.unpack.max_files",
            many.iter().map(|n| (n.as_str(), file, &b""[..])).collect(),
        ),
        (
            "limits.unpack.max_depth",
            vec![(deep.as_str(), file, &b"x"[..])],
        ),
    ];
    for (i, (key, entries)) in cases.iter().enumerate() {
        let d = Domain::parse(&format!("bomb{i}.example.com")).unwrap();
        let bomb = gzip(&tar_bytes(entries));
        assert!(
            bomb.len() < 1 << 20,
            "{key}: the bomb is {} bytes",
            bomb.len()
        );
        let tarball = &l.import_tarballs(&d)[1];
        fs::write(tarball, &bomb).unwrap();
        let before = data_snapshot(&s);
        let out = s.import("static", d.as_str());
        assert_refused(&out, key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
        assert!(stderr.contains(&format!("raise {key}")), "{stderr}");
        assert_no_site(&s, &d);
        assert!(data_snapshot(&s) == before, "{key}: the data dir changed");
        assert_eq!(fs::read(tarball).unwrap(), bomb, "{key}: the import moved");
    }

    // The same caps hold for a folder import.
    let d = Domain::parse("folder-bomb.example.com").unwrap();
    let imp = s.import_folder(&d);
    write(&imp.www_content().join("zeros.bin"), &zeros[..2 << 20]);
    let before = data_snapshot(&s);
    assert_refused(&s.import("static", d.as_str()), "limits.unpack.max_bytes");
    assert_no_site(&s, &d);
    assert!(data_snapshot(&s) == before, "the data dir changed");
}

/// A git bomb given as a new static-git site's repository: its checkout is
/// past the caps, so the import is refused and no site is made.
#[test]
fn a_static_git_import_whose_checkout_is_past_the_caps_is_refused() {
    let s = Server::with_config(SMALL_UNPACK_CAPS);
    s.import_ok("static", &Domain::parse("neighbour.example.com").unwrap());
    let base = s.tmp.path().join("served");
    let work = base.join("bomb");
    fs::create_dir_all(&work).unwrap();
    let git = |args: &[&str]| hostyard_testsupport::git(&work, args);
    git(&["init", "-q"]);
    for i in 0..60 {
        fs::write(work.join(format!("page{i}.html")), "x").unwrap();
    }
    git(&["add", "-A"]);
    git(&["commit", "-q", "-m", "many"]);
    let daemon = GitDaemon::start(&base).unwrap();

    let d = Domain::parse("gitbomb.example.com").unwrap();
    let imp = s.import_folder(&d);
    write(
        &imp.git_url(),
        format!("{}\n", daemon.url("bomb")).as_bytes(),
    );
    let before = data_snapshot(&s);
    let out = s.import("static-git", d.as_str());
    assert_refused(&out, "limits.unpack.max_files");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(stderr.trim_end().lines().count(), 1, "{stderr}");
    assert_no_site(&s, &d);
    assert!(data_snapshot(&s) == before, "the data dir changed");
}

/// The node config's PHP defaults reach a WordPress site's Apache as
/// `php/defaults.conf`: written at the import, and again at a start once
/// `wordpress.php_limits` changed (the importer runs before every start).
#[test]
fn wordpress_gets_the_node_configs_php_defaults_at_every_start() {
    let s = Server::new();
    let d = Domain::parse("blog.example.com").unwrap();
    s.import_ok("wordpress", &d);
    let l = s.layout();
    let conf = fs::read_to_string(l.php_defaults_conf(&d)).unwrap();
    assert!(
        conf.contains("php_admin_value upload_max_filesize 64M\n"),
        "{conf}"
    );
    let out = s.import_ok("wordpress", &d);
    assert!(!out.contains("php/defaults.conf"), "{out}");
    let mut config = fs::read_to_string(&s.config).unwrap();
    config
        .push_str("wordpress:\n  php_limits:\n    upload:\n      default: 16M\n      max: 512M\n");
    fs::write(&s.config, config).unwrap();
    let out = s.import_ok("wordpress", &d);
    assert!(out.contains("wrote php/defaults.conf"), "{out}");
    let conf = fs::read_to_string(l.php_defaults_conf(&d)).unwrap();
    assert!(
        conf.contains("php_admin_value upload_max_filesize 16M\n"),
        "{conf}"
    );
}
