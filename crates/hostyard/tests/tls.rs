//! `hostyard tls renew D` on a server's files: it leaves the request
//! confd's ACME pass takes (tests/acme.rs of hostyard-confd shows confd
//! serving a new key from it), says what happens next, and refuses,
//! changing nothing, where this server would order nothing.

mod util;

use std::fs;

use util::{assert_exit_saying, hostyard, stderr, stdout, TempDir};

fn config(dir: &TempDir, acme: bool) -> String {
    let path = dir.str("hostyard.yaml");
    let mut text = format!("data_root: {}\n", dir.str("data"));
    if acme {
        text.push_str(
            "tls:\n  acme:\n    directory: https://127.0.0.1:14000/dir\n    email: ops@example.org\n    terms_accepted: true\n",
        );
    }
    fs::write(&path, text).expect("config");
    path
}

#[test]
fn renew_leaves_a_request_for_a_site_hosted_here_and_refuses_otherwise() {
    let dir = TempDir::new();
    let config = config(&dir, true);
    let request = dir.join("data/runtime/acme/renew/blog.example.org");

    // Not hosted here: refused, naming where to run it.
    let out = hostyard(&["--config", &config, "tls", "renew", "blog.example.org"]);
    assert_exit_saying(&out, 1, "not hosted on this server");
    assert!(!request.exists());

    fs::create_dir_all(dir.join("data/domains/blog.example.org")).unwrap();
    let out = hostyard(&["--config", &config, "tls", "renew", "blog.example.org"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let said = stdout(&out);
    assert!(
        said.contains("haproxy-confd.service orders a new key and certificate")
            && said.contains("within 2 s")
            && said.contains("journalctl -u haproxy-confd.service"),
        "{said}"
    );
    assert!(request.exists());

    // An imported certificate is the operator's to replace.
    fs::create_dir_all(dir.join("data/domains/shop.example.org/tls")).unwrap();
    let imported = dir.join("data/domains/shop.example.org/tls/shop.example.org.pem");
    fs::write(&imported, "x").unwrap();
    let out = hostyard(&["--config", &config, "tls", "renew", "shop.example.org"]);
    assert_exit_saying(&out, 1, "imported certificate");
    assert!(!dir
        .join("data/runtime/acme/renew/shop.example.org")
        .exists());

    // Without tls.acme nothing orders: refused.
    let plain = TempDir::new();
    let config = self::config(&plain, false);
    fs::create_dir_all(plain.join("data/domains/blog.example.org")).unwrap();
    let out = hostyard(&["--config", &config, "tls", "renew", "blog.example.org"]);
    assert_exit_saying(&out, 1, "tls.acme is not set");
    assert!(!plain.join("data/runtime/acme").exists());

    // Not a domain: a usage error.
    let out = hostyard(&["--config", &config, "tls", "renew", "../x"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}
