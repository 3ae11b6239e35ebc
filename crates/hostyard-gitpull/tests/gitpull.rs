//! hostyard-gitpull against real git: a `git daemon` on loopback serving a
//! repository the test commits to, and the real binary run on a temp data root.

use std::fs;
use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use hostyard_core::{Domain, Layout};
use hostyard_testsupport::{git, snapshot, GitDaemon};

const BIN: &str = env!("CARGO_BIN_EXE_hostyard-gitpull");

/// A repository served by git daemon, and a data root with one static-git site.
struct World {
    _tmp: tempfile::TempDir,
    work: PathBuf,
    root: PathBuf,
    config: PathBuf,
    domain: Domain,
    daemon: Option<GitDaemon>,
}

impl World {
    fn new(extra_config: &str) -> World {
        let tmp = tempfile::tempdir().unwrap();
        let base = tmp.path().join("served");
        let work = base.join("site");
        fs::create_dir_all(&work).unwrap();
        git(&work, &["init", "-q"]);
        let root = tmp.path().join("data");
        let config = tmp.path().join("hostyard.yaml");
        fs::write(
            &config,
            format!("data_root: {}\n{extra_config}", root.display()),
        )
        .unwrap();
        let daemon = GitDaemon::start(&base).expect("git daemon");
        let domain = Domain::parse("git-site.example.com").unwrap();
        let world = World {
            _tmp: tmp,
            work,
            root,
            config,
            domain,
            daemon: Some(daemon),
        };
        fs::create_dir_all(world.layout().domain_dir(&world.domain)).unwrap();
        let url = world.daemon.as_ref().unwrap().url("site");
        world.set_url(&url);
        world
    }

    fn layout(&self) -> Layout {
        Layout::new(&self.root)
    }

    fn set_url(&self, url: &str) {
        fs::write(self.layout().git_url_file(&self.domain), format!("{url}\n")).unwrap();
    }

    fn commit(&self, file: &str, content: &str) -> String {
        let path = self.work.join(file);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, content).unwrap();
        git(&self.work, &["add", "-A"]);
        git(&self.work, &["commit", "-q", "-m", content]);
        git(&self.work, &["rev-parse", "HEAD"])
    }

    fn pull(&self) -> Output {
        self.pull_named(self.domain.as_str())
    }

    /// The puller run for the site named `name` (as a timer's unit names it).
    fn pull_named(&self, name: &str) -> Output {
        Command::new(BIN)
            .arg("--config")
            .arg(&self.config)
            .arg(name)
            .env_remove("HOSTYARD_CONFIG")
            .output()
            .unwrap()
    }

    fn pull_ok(&self) {
        let out = self.pull();
        assert!(
            out.status.success(),
            "gitpull failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn current(&self) -> PathBuf {
        fs::read_link(self.layout().current_link(&self.domain)).expect("current link")
    }

    fn served(&self, file: &str) -> String {
        fs::read_to_string(self.layout().current_link(&self.domain).join(file)).unwrap()
    }

    fn trees(&self) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(self.layout().trees_dir(&self.domain))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }
}

fn assert_one_line_failure(out: &Output, want: &str) {
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one clear line expected: {stderr}");
    assert!(lines[0].starts_with("hostyard-gitpull: "), "{stderr}");
    assert!(lines[0].contains("keeping the last good tree"), "{stderr}");
    assert!(lines[0].contains(want), "wanted {want:?} in {stderr}");
}

#[test]
fn new_commit_is_published_and_git_dir_is_never_served() {
    let w = World::new("");
    let a = w.commit("index.html", "first");
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&a));
    assert_eq!(w.served("index.html"), "first");

    let b = w.commit("index.html", "second");
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&b));
    assert_eq!(w.served("index.html"), "second");

    // Nothing new: still exit 0, nothing switched.
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&b));

    let public = w.layout().public_dir(&w.domain);
    for entry in walkdir::WalkDir::new(&public) {
        let entry = entry.unwrap();
        assert_ne!(
            entry.file_name(),
            ".git",
            "{} is served",
            entry.path().display()
        );
    }
    // The clone lives outside public/.
    let repo = w.layout().git_repo_dir(&w.domain);
    assert!(repo.join("HEAD").is_file());
    assert!(!repo.starts_with(&public));
}

#[test]
fn force_push_is_followed_not_merged() {
    let w = World::new("");
    let a = w.commit("index.html", "a");
    w.commit("b.html", "b");
    w.pull_ok();
    assert_eq!(w.served("b.html"), "b");

    // Rewrite history: drop b, commit c on top of a.
    git(&w.work, &["reset", "-q", "--hard", &a]);
    let c = w.commit("c.html", "c");
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&c));
    assert_eq!(w.served("c.html"), "c");
    assert!(!w.layout().current_link(&w.domain).join("b.html").exists());
}

#[test]
fn branch_in_the_url_is_published_instead_of_the_default() {
    let w = World::new("");
    w.commit("index.html", "main");
    git(&w.work, &["checkout", "-q", "-b", "preview"]);
    let p = w.commit("index.html", "preview");
    git(&w.work, &["checkout", "-q", "main"]);
    let url = format!("{}#preview", w.daemon.as_ref().unwrap().url("site"));
    w.set_url(&url);
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&p));
    assert_eq!(w.served("index.html"), "preview");
}

#[test]
fn broken_remote_keeps_the_last_good_tree() {
    let mut w = World::new("");
    let a = w.commit("index.html", "good");
    w.pull_ok();

    // The repository disappears from the server.
    let moved = w.work.with_file_name("gone");
    fs::rename(&w.work, &moved).unwrap();
    let out = w.pull();
    assert_one_line_failure(&out, "cannot fetch");
    assert_eq!(w.current(), Layout::current_link_target(&a));
    assert_eq!(w.served("index.html"), "good");
    fs::rename(&moved, &w.work).unwrap();

    // The server is down.
    w.daemon = None;
    let out = w.pull();
    assert_one_line_failure(&out, "cannot fetch");
    assert_eq!(w.served("index.html"), "good");
}

/// A site pulled once ("good" at index.html), with a git fetch timeout of
/// `timeout_secs`, and a remote on the returned port that accepts
/// connections (the kernel does) but never says anything.
fn served_with_a_silent_remote(timeout_secs: u32) -> (World, TcpListener, u16) {
    let w = World::new(&format!("git:\n  fetch_timeout_secs: {timeout_secs}\n"));
    w.commit("index.html", "good");
    w.pull_ok();
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = silent.local_addr().unwrap().port();
    (w, silent, port)
}

#[test]
fn a_remote_that_never_answers_is_cut_off_at_the_fetch_timeout() {
    let (w, silent, port) = served_with_a_silent_remote(2);
    w.set_url(&format!("git://127.0.0.1:{port}/site"));
    let start = Instant::now();
    let out = w.pull();
    let took = start.elapsed();
    assert_one_line_failure(&out, "timed out after 2 s");
    assert!(took < Duration::from_secs(15), "took {took:?}");
    assert_eq!(w.served("index.html"), "good");
    drop(silent);
}

/// Every command line on the machine, read from /proc (any user can).
fn all_command_lines() -> Vec<String> {
    let Ok(dir) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .bytes()
                .all(|b| b.is_ascii_digit())
        })
        .filter_map(|e| fs::read(e.path().join("cmdline")).ok())
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " "))
        .collect()
}

/// `ps` shows every user every command line: a token in the repository
/// URL used to be one of git's arguments, and so readable by anyone.
#[test]
fn credentials_in_the_url_never_appear_on_a_command_line_or_in_the_log() {
    // Long enough for the first, good pull on a loaded machine (3 s timed
    // it out once, with two CI runs sharing 2 cores), short enough for the
    // silent remote's wait below.
    // git is stuck in its fetch from the silent remote for the whole
    // timeout, long enough to be seen in /proc.
    let (w, silent, port) = served_with_a_silent_remote(8);
    let token = "tok-4f9a1c77e2";
    w.set_url(&format!("http://deploy:{token}@127.0.0.1:{port}/site.git"));
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&w.config)
        .arg(w.domain.as_str())
        .env_remove("HOSTYARD_CONFIG")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut saw_git = false;
    let deadline = Instant::now() + Duration::from_secs(20);
    while child.try_wait().unwrap().is_none() && Instant::now() < deadline {
        for line in all_command_lines() {
            assert!(
                !line.contains(token),
                "the token is on a command line: {line}"
            );
            saw_git |= line.contains("fetch") && line.contains("--no-tags");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    assert!(saw_git, "git's fetch was never seen running");
    assert_one_line_failure(&out, "timed out");
    let log = String::from_utf8_lossy(&out.stderr);
    assert!(!log.contains(token), "the token is in the log: {log}");
    assert_eq!(w.served("index.html"), "good");
    drop(silent);
}

fn base64(data: &[u8]) -> String {
    const ABC: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, &b)| n | (u32::from(b) << (16 - 8 * i)));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ABC[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// The credentials still reach the server they belong to: git asks, gets
/// them from the helper, and sends them when the server says 401.
#[test]
fn credentials_taken_out_of_the_url_are_still_sent_to_its_server() {
    use std::io::{BufRead, BufReader, Write};
    let w = World::new("git:\n  fetch_timeout_secs: 10\n");
    let server = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = server.local_addr().unwrap().port();
    w.set_url(&format!(
        "http://deploy:p%40ss-77@127.0.0.1:{port}/site.git"
    ));
    let seen = std::thread::spawn(move || {
        // Answer at most four requests: 401 without credentials, 404 with.
        for _ in 0..4 {
            let (conn, _) = server.accept().unwrap();
            let mut reader = BufReader::new(conn.try_clone().unwrap());
            let mut auth = None;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap() == 0 || line.trim().is_empty() {
                    break;
                }
                if let Some(v) = line.strip_prefix("Authorization: ") {
                    auth = Some(v.trim().to_string());
                }
            }
            let mut conn = conn;
            match auth {
                Some(a) => {
                    let _ = conn.write_all(
                        b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                    );
                    return Some(a);
                }
                None => {
                    let _ = conn.write_all(b"HTTP/1.1 401 Unauthorized\r\nWWW-Authenticate: Basic realm=\"git\"\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                }
            }
        }
        None
    });
    let out = w.pull();
    assert!(!out.status.success());
    let auth = seen.join().unwrap();
    assert_eq!(auth, Some(format!("Basic {}", base64(b"deploy:p@ss-77"))));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("p@ss-77"));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("p%40ss-77"));
}

#[test]
fn a_commit_with_a_symlink_out_of_the_site_is_refused() {
    let w = World::new("");
    let a = w.commit("index.html", "good");
    w.pull_ok();
    std::os::unix::fs::symlink("/etc/passwd", w.work.join("passwd.html")).unwrap();
    git(&w.work, &["add", "-A"]);
    git(&w.work, &["commit", "-q", "-m", "evil"]);
    let out = w.pull();
    assert_one_line_failure(&out, "/etc/passwd");
    assert_eq!(w.current(), Layout::current_link_target(&a));
    // No half-exported tree is left behind either.
    assert_eq!(w.trees(), vec![a]);
}

#[test]
fn old_trees_are_pruned_and_the_current_one_kept() {
    let w = World::new("git:\n  keep_trees: 2\n");
    let mut commits = Vec::new();
    for n in 0..4 {
        commits.push(w.commit("index.html", &format!("v{n}")));
        w.pull_ok();
    }
    let mut want = vec![commits[2].clone(), commits[3].clone()];
    want.sort();
    assert_eq!(w.trees(), want);
    assert_eq!(w.served("index.html"), "v3");
}

#[test]
fn hostile_stored_url_is_refused_before_git_runs() {
    let w = World::new("");
    let marker = w.root.join("pwned");
    for url in [
        format!("ext::sh -c touch% {}", marker.display()),
        "ext::sh".to_string(),
        format!("file://{}", w.work.display()),
        w.work.display().to_string(),
        "--upload-pack=touch".to_string(),
        "-u/tmp/x".to_string(),
        "ssh://-oProxyCommand=touch/x".to_string(),
    ] {
        w.set_url(&url);
        let out = w.pull();
        assert_eq!(out.status.code(), Some(1), "{url}: {out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains("git-url"), "{url}: {stderr}");
        assert!(!marker.exists());
        assert!(
            !w.layout().git_repo_dir(&w.domain).exists(),
            "{url}: git ran"
        );
    }
}

#[test]
fn bad_domain_and_missing_site_are_clear_errors() {
    let w = World::new("");
    let out = w.pull_named("../etc");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("contains '/'"));
    // A timer of another unit name for the same site must not pull it.
    for name in [w.domain.as_str().to_uppercase(), format!("{}.", w.domain)] {
        let out = w.pull_named(&name);
        assert_eq!(out.status.code(), Some(2), "{name}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!("use \"{}\"", w.domain)),
            "{name}: {stderr}"
        );
    }
    let out = w.pull_named("not-imported.example.com");
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hostyard-import static-git"));
}

/// Writes one bomb's files into the work tree.
type MakeBomb = dyn Fn(&std::path::Path);

/// A git bomb: commits that are small in the repository and huge once
/// written out (a big blob of zeros, many files, a deep tree) are refused
/// at the node's `limits.unpack` caps with one line naming the key to
/// raise, and the served side of the site is byte for byte as it was.
#[test]
fn commits_past_the_unpack_caps_are_refused_and_the_served_tree_is_unchanged() {
    let w =
        World::new("limits:\n  unpack:\n    max_bytes: 1m\n    max_files: 50\n    max_depth: 8\n");
    let a = w.commit("index.html", "good");
    w.pull_ok();
    let public = w.layout().public_dir(&w.domain);
    let before = snapshot(&public);

    let bombs: [(&str, &MakeBomb); 3] = [
        ("limits.unpack.max_bytes", &|work| {
            fs::write(work.join("zeros.bin"), vec![0u8; 8 << 20]).unwrap();
        }),
        ("limits.unpack.max_files", &|work| {
            for i in 0..60 {
                fs::write(work.join(format!("f{i}.html")), "x").unwrap();
            }
        }),
        ("limits.unpack.max_depth", &|work| {
            let deep = work.join("a/b/c/d/e/f/g/h/i/j");
            fs::create_dir_all(&deep).unwrap();
            fs::write(deep.join("deep.html"), "deep").unwrap();
        }),
    ];
    for (key, make) in bombs {
        git(
            &w.work,
            &[
                "rm",
                "-q",
                "-r",
                "--ignore-unmatch",
                "zeros.bin",
                "f*.html",
                "a",
            ],
        );
        make(&w.work);
        git(&w.work, &["add", "-A"]);
        git(&w.work, &["commit", "-q", "-m", key]);
        let out = w.pull();
        assert_one_line_failure(&out, key);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(&format!("raise {key}")), "{stderr}");
        assert_eq!(w.current(), Layout::current_link_target(&a), "{key}");
        assert!(
            snapshot(&public) == before,
            "{key}: the served side changed"
        );
    }
}

/// Bytes of every file below `dir`.
fn du(dir: &std::path::Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| e.file_type().is_file())
        .map(|e| e.metadata().unwrap().len())
        .sum()
}

/// A push of more data than the node allows is refused by the fetch
/// itself: a pack past `limits.unpack.max_bytes` is never kept in the
/// site's repository (before, the fetch stored it all and only the
/// publication was refused, so a tenant's pushes filled `/data`).
#[test]
fn a_fetch_past_the_byte_cap_keeps_nothing_of_it() {
    let w = World::new("limits:\n  unpack:\n    max_bytes: 1m\n");
    let a = w.commit("index.html", "good");
    w.pull_ok();
    let repo = w.layout().git_repo_dir(&w.domain);
    let before = du(&repo);

    // 4 MiB that no compression shrinks.
    let mut noise = vec![0u8; 4 << 20];
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for b in noise.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    fs::write(w.work.join("noise.bin"), &noise).unwrap();
    git(&w.work, &["add", "-A"]);
    git(&w.work, &["commit", "-q", "-m", "noise"]);
    let out = w.pull();
    assert_one_line_failure(&out, "limits.unpack.max_bytes");
    assert_eq!(w.current(), Layout::current_link_target(&a));
    let after = du(&repo);
    assert!(
        after < before + (1 << 20),
        "the repository grew from {before} to {after} bytes"
    );
}

#[test]
fn a_rollback_serves_the_previous_tree_until_a_new_commit_is_pushed() {
    let w = World::new("git:\n  keep_trees: 5\n");
    let a = w.commit("index.html", "v1");
    w.pull_ok();
    let b = w.commit("index.html", "v2");
    w.pull_ok();
    let c = w.commit("index.html", "v3");
    w.pull_ok();

    let back = hostyard_git::rollback(&w.layout(), &w.domain).unwrap();
    assert_eq!(
        (back.from.as_str(), back.to.as_str()),
        (c.as_str(), b.as_str())
    );
    assert_eq!(w.served("index.html"), "v2");
    // Again: further back, not back to the bad tree.
    let back = hostyard_git::rollback(&w.layout(), &w.domain).unwrap();
    assert_eq!(
        (back.from.as_str(), back.to.as_str()),
        (b.as_str(), a.as_str())
    );
    assert_eq!(w.served("index.html"), "v1");

    // The remote's tip is still the commit rolled back from: the pull
    // publishes nothing and says why.
    let out = w.pull();
    assert!(out.status.success(), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(&format!("{c} is held back by a rollback")),
        "{out:?}"
    );
    assert_eq!(w.current(), Layout::current_link_target(&a));

    // A new commit is published, and the hold goes with it.
    let d = w.commit("index.html", "v4");
    w.pull_ok();
    assert_eq!(w.current(), Layout::current_link_target(&d));
    assert!(!w.layout().rollback_hold(&w.domain).exists());
    w.pull_ok();
    assert_eq!(w.served("index.html"), "v4");
}

#[test]
fn a_rollback_with_no_older_tree_changes_nothing() {
    let w = World::new("git:\n  keep_trees: 1\n");
    let a = w.commit("index.html", "v1");
    w.pull_ok();
    w.commit("index.html", "v2");
    w.pull_ok();
    let before = w.current();
    let err = hostyard_git::rollback(&w.layout(), &w.domain).unwrap_err();
    assert!(
        format!("{err:#}").contains("keeps no tree older than"),
        "{err:#}"
    );
    assert_eq!(w.current(), before);
    assert_ne!(before, Layout::current_link_target(&a));
    assert!(!w.layout().rollback_hold(&w.domain).exists());
}
