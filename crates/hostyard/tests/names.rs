//! The questions scripts ask `hostyard`: `names`, `etcd placement`,
//! `etcd check` (against a real etcd) and `image-id`. setup.sh used to
//! keep its own copies of these names and parse URLs and etcd's health
//! JSON in bash.

mod util;

use std::fs;
use std::time::{Duration, Instant};

use hostyard_testsupport::Etcd;
use util::{dir_with_config, hostyard, stderr, stdout, write_config, TempDir};

fn lines(out: &std::process::Output) -> Vec<String> {
    stdout(out).lines().map(str::to_string).collect()
}

#[test]
fn names_come_from_the_config_and_the_code() {
    let (_dir, config) =
        dir_with_config("data_root: /srv/yard\nimages:\n  static_git: registry.example/sg:2\n");
    let ask = |what: &str| {
        let out = hostyard(&["--config", &config, "names", what]);
        assert_eq!(out.status.code(), Some(0), "{what}: {}", stderr(&out));
        assert_eq!(stderr(&out), "", "{what}");
        lines(&out)
    };
    assert_eq!(
        ask("binaries"),
        [
            "hostyard",
            "hostyard-confd",
            "hostyard-discovery",
            "hostyard-import",
            "hostyard-gitpull",
            "hostyard-hook"
        ]
    );
    let images = ask("images");
    assert_eq!(images.len(), 6, "{images:?}");
    assert!(images.contains(&"static-git registry.example/sg:2".to_string()));
    assert!(images.contains(&"haproxy hostyard/haproxy".to_string()));
    // Each kind has its Dockerfile in the checkout, where images.sh looks.
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    for line in &images {
        let kind = line.split(' ').next().expect("kind");
        let out = std::process::Command::new("bash")
            .args([
                "-c",
                "source scripts/lib/images.sh && image_dockerfile \"$1\"",
                "-",
                kind,
            ])
            .current_dir(&repo)
            .output()
            .expect("bash");
        let file = String::from_utf8_lossy(&out.stdout).to_string();
        assert!(
            out.status.success() && !file.is_empty(),
            "{kind}: {}",
            stderr(&out)
        );
        assert!(
            repo.join("dockerfiles").join(&file).is_file(),
            "{kind}: {file}"
        );
    }
    assert_eq!(ask("target"), ["hostyard.target"]);
    assert_eq!(
        ask("services"),
        [
            "haproxy-confd.service",
            "haproxy.service",
            "postfix.service"
        ]
    );
    assert_eq!(
        ask("dirs"),
        [
            "root /srv/yard",
            "domains /srv/yard/domains",
            "import /srv/yard/import",
            "runtime /srv/yard/runtime",
            "haproxy /srv/yard/runtime/haproxy",
            "postfix /srv/yard/runtime/postfix"
        ]
    );
    let out = hostyard(&["--config", &config, "names", "units"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("'units'"), "{}", stderr(&out));
}

#[test]
fn placement_is_local_only_when_every_endpoint_is_on_loopback() {
    let dir = TempDir::new();
    for (endpoints, want) in [
        (r#"["http://127.0.0.1:2379"]"#, "local"),
        (r#"["http://localhost:2379", "http://[::1]:2379"]"#, "local"),
        (
            r#"["http://127.0.0.1:2379", "http://10.0.0.5:2379"]"#,
            "cluster",
        ),
        (r#"["https://etcd.example:2379"]"#, "cluster"),
    ] {
        // https:// needs the TLS files (not read to answer placement).
        let tls = if endpoints.contains("https://") {
            "  ca_file: /etc/hostyard/etcd/ca.pem\n  cert_file: /etc/hostyard/etcd/server.pem\n  \
             key_file: /etc/hostyard/etcd/server.key\n"
        } else {
            ""
        };
        let config = write_config(&dir, &format!("etcd:\n  endpoints: {endpoints}\n{tls}"));
        let out = hostyard(&["--config", &config, "etcd", "placement"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        assert_eq!(lines(&out), [want], "{endpoints}");
    }
}

#[test]
fn etcd_check_names_what_answers_and_what_does_not() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    // Port 1 on loopback: nothing listens, the connection is refused.
    let down = "http://127.0.0.1:1";
    let config = write_config(
        &dir,
        &format!(
            "etcd:\n  endpoints: [\"{}\", \"{down}\"]\n",
            etcd.endpoint()
        ),
    );
    let out = hostyard(&["--config", &config, "etcd", "check", "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = lines(&out);
    assert_eq!(out[0], format!("healthy: {}", etcd.endpoint()));
    assert!(
        out[1].starts_with(&format!(
            "not answering (the others serve meanwhile): {down} ("
        )),
        "{out:?}"
    );
    assert_eq!(out.len(), 2, "{out:?}");
}

#[test]
fn etcd_check_without_an_answer_fails_within_its_timeout_naming_the_fix() {
    let mut etcd = Etcd::start().expect("etcd");
    let endpoint = etcd.endpoint();
    etcd.stop();
    let (_dir, config) = dir_with_config(&format!("etcd:\n  endpoints: [\"{endpoint}\"]\n"));
    let t0 = Instant::now();
    let out = hostyard(&["--config", &config, "etcd", "check", "--timeout", "2"]);
    let took = t0.elapsed();
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!(
            "hostyard: no etcd endpoint of {config} answers within 2s: {endpoint} ("
        )),
        "{err}"
    );
    assert!(
        err.contains("or set etcd.endpoints to http://127.0.0.1:2379"),
        "{err}"
    );
    assert!(took >= Duration::from_secs(2), "gave up early: {took:?}");
    assert!(took < Duration::from_secs(6), "{took:?}");

    // With the member back, the same check succeeds.
    etcd.start_again().expect("etcd again");
    let out = hostyard(&["--config", &config, "etcd", "check", "--timeout", "10"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines(&out), [format!("healthy: {endpoint}")]);
}

#[test]
fn image_id_reads_the_manifest_and_names_a_bad_tarball() {
    let dir = TempDir::new();
    let hex = "ab".repeat(32);
    let tar_path = dir.join("static.tar");
    let mut builder = tar::Builder::new(fs::File::create(&tar_path).expect("tar"));
    let manifest = format!(r#"[{{"Config":"{hex}.json","RepoTags":["hostyard/static:latest"]}}]"#);
    let mut header = tar::Header::new_gnu();
    header.set_size(manifest.len() as u64);
    header.set_mode(0o644);
    header.set_cksum();
    builder
        .append_data(&mut header, "manifest.json", manifest.as_bytes())
        .expect("append");
    builder.finish().expect("finish");
    drop(builder);
    let path = tar_path.to_str().expect("utf-8");
    let out = hostyard(&["image-id", path]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(lines(&out), [hex]);

    let config = dir.str("hostyard.yaml");
    fs::write(&config, "x").expect("not a tar");
    let out = hostyard(&["image-id", &config]);
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("hostyard.yaml"), "{}", stderr(&out));
}
