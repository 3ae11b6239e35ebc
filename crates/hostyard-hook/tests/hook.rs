//! The hostyard-hook binary as systemd runs it: one request on stdin, the
//! answer on stdout, one line on stderr, against a temp data root with a
//! static-git site. What it refuses changes nothing and says why; the
//! secret never appears in what it writes.

use std::io::Write;
use std::process::{Command, Stdio};

use hostyard_core::{Domain, Layout};

const BIN: &str = env!("CARGO_BIN_EXE_hostyard-hook");
const SECRET: &str = "5f0c1e9a7b3d2c4e6f8a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4d5e6f7a8b9c0d1e";

struct Site {
    _dir: tempfile::TempDir,
    config: std::path::PathBuf,
}

fn site(with_secret: bool) -> Site {
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(&dir.path().join("data"));
    let domain = Domain::parse("git.example.com").unwrap();
    std::fs::create_dir_all(layout.git_repo_dir(&domain)).unwrap();
    if with_secret {
        std::fs::create_dir_all(layout.secrets_dir(&domain)).unwrap();
        std::fs::write(layout.hook_secret(&domain), format!("{SECRET}\n")).unwrap();
    }
    let config = dir.path().join("hostyard.yaml");
    std::fs::write(
        &config,
        format!("data_root: {}\n", dir.path().join("data").display()),
    )
    .unwrap();
    Site { _dir: dir, config }
}

/// The status line and stderr of one request.
fn ask(site: &Site, request: &[u8]) -> (String, String) {
    let mut child = Command::new(BIN)
        .arg("--config")
        .arg(&site.config)
        .env_remove("HOSTYARD_CONFIG")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(request).unwrap();
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!stdout.contains(SECRET) && !stderr.contains(SECRET));
    (
        stdout.lines().next().unwrap_or_default().to_string(),
        stderr,
    )
}

fn post(host: &str, path: &str, headers: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {path} HTTP/1.1\r\nHost: {host}\r\n{headers}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[test]
fn refusals_answer_their_status_and_say_why_in_one_line() {
    let s = site(true);
    let body = r#"{"ref":"refs/heads/main"}"#;
    let good = hostyard_hook::sign(SECRET.as_bytes(), body.as_bytes());
    let bad = hostyard_hook::sign(b"another", body.as_bytes());
    let path = hostyard_core::HOOK_PATH;
    let cases = [
        (
            post(
                "git.example.com",
                path,
                &format!("X-Gitea-Signature: {bad}\r\n"),
                body,
            ),
            "403",
            "x-gitea-signature does not match",
        ),
        (
            post("git.example.com", path, "", body),
            "403",
            "no X-Forgejo-Signature",
        ),
        (
            post(
                "other.example.com",
                path,
                &format!("X-Gitea-Signature: {good}\r\n"),
                body,
            ),
            "404",
            "other.example.com is no static-git site hosted here",
        ),
        (
            post("git.example.com", "/elsewhere", "", body),
            "404",
            "no hook at",
        ),
        (
            format!("GET {path} HTTP/1.1\r\nHost: git.example.com\r\n\r\n").into_bytes(),
            "405",
            "a deploy hook is a POST",
        ),
        (
            b"POST / HTTP/1.1\r\nHost: git.example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
                .to_vec(),
            "411",
            "chunked",
        ),
        (
            post(
                "git.example.com",
                path,
                &format!("X-Gitea-Signature: {good}\r\nX-Gitea-Event: issues\r\n"),
                body,
            ),
            "202",
            "needs nothing",
        ),
    ];
    for (request, status, says) in cases {
        let (line, log) = ask(&s, &request);
        assert!(
            line.starts_with(&format!("HTTP/1.1 {status} ")),
            "{line} / {log}"
        );
        assert!(log.contains(says), "{says:?} not in {log}");
        assert_eq!(log.lines().count(), 1, "{log}");
    }
}

#[test]
fn a_site_without_a_secret_names_the_command_that_makes_one() {
    let s = site(false);
    let body = "{}";
    let sig = hostyard_hook::sign(SECRET.as_bytes(), body.as_bytes());
    let (line, log) = ask(
        &s,
        &post(
            "git.example.com",
            hostyard_core::HOOK_PATH,
            &format!("X-Gitea-Signature: {sig}\r\n"),
            body,
        ),
    );
    assert!(line.starts_with("HTTP/1.1 403 "), "{line}");
    assert!(
        log.contains("`hostyard site hook git.example.com` makes one"),
        "{log}"
    );
}
