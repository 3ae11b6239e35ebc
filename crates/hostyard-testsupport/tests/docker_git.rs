//! The harness's Docker image and git daemon against the real programs.

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use hostyard_testsupport::{
    busybox_http_image, docker, http_get_addr, require_docker, unique_name, wait_until, Container,
    GitDaemon, BUSYBOX_HTTP_BODY,
};

#[test]
fn busybox_http_image_runs_and_answers_on_its_container_ip() {
    require_docker();
    let image = busybox_http_image().expect("image builds");
    // A second call finds the image instead of building it again.
    assert_eq!(busybox_http_image().expect("image exists"), image);
    let name = unique_name("hostyard-test-httpd");
    let container = Container::run(&["--name", &name, &image]).expect("container runs");
    let ip = container.ip().expect("container ip");
    let addr = SocketAddr::new(ip, 80);
    let answer = wait_until("busybox httpd to answer", Duration::from_secs(20), || {
        http_get_addr(addr, "example.org", "/index.html").ok()
    })
    .unwrap_or_else(|e| panic!("{e:#}; container logs:\n{}", container.logs()));
    assert_eq!(answer, (200, BUSYBOX_HTTP_BODY.to_owned()));

    drop(container);
    let left = docker(&["ps", "-a", "-q", "--filter", &format!("name=^{name}$")]).expect("ps");
    assert!(left.is_empty(), "container {name} was not removed");
}

#[test]
fn git_daemon_serves_a_repository_that_clones() {
    let base = tempfile::tempdir().expect("tempdir");
    let repo = base.path().join("site.git");
    std::fs::create_dir(&repo).expect("mkdir");
    hostyard_testsupport::git(&repo, &["init", "-q", "-b", "main"]);
    std::fs::write(repo.join("index.html"), "hello from git\n").expect("write");
    hostyard_testsupport::git(&repo, &["add", "index.html"]);
    hostyard_testsupport::git(&repo, &["commit", "-q", "-m", "first"]);

    let daemon = GitDaemon::start(base.path()).expect("git daemon starts");
    let work = tempfile::tempdir().expect("tempdir");
    let clone = work.path().join("clone");
    let out = Command::new("git")
        .args(["clone", "-q", &daemon.url("site.git")])
        .arg(&clone)
        .output()
        .expect("git clone runs");
    assert!(
        out.status.success(),
        "clone of {}: {}",
        daemon.url("site.git"),
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(clone.join("index.html")).expect("cloned file"),
        "hello from git\n"
    );
}
