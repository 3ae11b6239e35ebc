//! `hostyard mail`: the rendered postfix config (goldens), and the command's
//! promises: only changed files are written, a bad forward file changes
//! nothing and names its file and line. Real postfix and smtp-sink take this
//! config in the end-to-end suite (tests/e2e, `t_mail_*`).
//!
//! Refresh the goldens with:
//! `HOSTYARD_BLESS=1 cargo test -p hostyard --test mail`

mod util;

use std::fs;
use std::path::Path;

use hostyard::mail::{render_mail, MailSite};
use hostyard_core::mail::{ForwardMap, Selector};
use hostyard_core::{Domain, Layout};
use util::{
    assert_exit_saying, assert_golden_tree, assert_stdout_has, hostyard, read_tree, stderr, stdout,
    write_config, TempDir,
};

fn domain(name: &str) -> Domain {
    Domain::parse(name).expect("test domain")
}

#[test]
fn rendered_mail_config_matches_the_goldens() {
    let maps = [
        ForwardMap::parse(
            &domain("example.com"),
            "info alice@example.org\nsales bob@example.net, carol@example.net\n* owner@example.org\n",
        )
        .expect("forwards"),
        ForwardMap::parse(&domain("b.example"), "# only a comment\n").expect("forwards"),
    ];
    let files = render_mail(
        &Layout::new(Path::new("/data")),
        "mx.example.com",
        "[smtp.example.org]:587",
        &maps,
        &[domain("broken.example")],
        &[
            MailSite {
                domain: domain("blog.example.net"),
                selector: Selector::first(),
                pending: None,
                senders: vec![domain("blog.example.net")],
            },
            MailSite {
                domain: domain("shop.example"),
                selector: Selector::first().next(),
                // A rotation under way: hy3's key is made, hy2 signs.
                pending: Some(Selector::first().next().next()),
                senders: vec![domain("shop.example")],
            },
            // WordPress's default sender for www.c.example is
            // wordpress@c.example; b.example has forwards (someone's).
            MailSite {
                domain: domain("www.c.example"),
                selector: Selector::first(),
                pending: None,
                senders: vec![domain("www.c.example"), domain("c.example")],
            },
            MailSite {
                domain: domain("www.b.example"),
                selector: Selector::first(),
                pending: None,
                senders: vec![domain("www.b.example"), domain("b.example")],
            },
        ],
        hostyard_core::mail::SITE_MESSAGES_PER_HOUR,
        true,
    )
    .expect("render");
    let tree = files.into_iter().map(|f| (f.name, f.contents)).collect();
    assert_golden_tree("mail", &tree);
}

/// What `hostyard mail` says of both maps under `etc_dir`: `verb` and
/// each file, a line each.
fn both_maps(verb: &str, etc_dir: &Path) -> String {
    let file = |name: &str| etc_dir.join(name).display().to_string();
    format!(
        "{verb} {}\n{verb} {}\n",
        file("virtual"),
        file("virtual_domains")
    )
}

/// A data root and a config naming it, with a fixed mail host name.
fn server() -> (TempDir, String) {
    server_with_mail("  hostname: mx.example.com\n")
}

/// A data root and a config naming it, `mail` its mail section.
fn server_with_mail(mail: &str) -> (TempDir, String) {
    let dir = TempDir::new();
    let yaml = format!("data_root: {}\nmail:\n{mail}", dir.str("data"));
    let config = write_config(&dir, &yaml);
    (dir, config)
}

fn forwards(dir: &TempDir) -> std::path::PathBuf {
    dir.join("data/runtime/postfix/forwards")
}

fn etc(dir: &TempDir) -> std::path::PathBuf {
    dir.join("data/runtime/postfix/etc")
}

#[test]
fn mail_writes_the_config_then_only_what_changed() {
    let (dir, config) = server();
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    // The first run creates the operator's directory and the queue.
    assert!(forwards(&dir).is_dir());
    assert!(dir.join("data/runtime/postfix/queue").is_dir());
    assert_eq!(stdout(&out).lines().count(), 9, "{}", stdout(&out));
    let tree = read_tree(&etc(&dir));
    assert_eq!(
        tree["virtual_domains"]
            .lines()
            .filter(|l| !l.starts_with('#'))
            .count(),
        0
    );

    fs::write(
        forwards(&dir).join("example.com"),
        "info alice@example.org\n",
    )
    .expect("write");
    let out = hostyard(&["--config", &config, "mail", "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let etc_dir = etc(&dir);
    assert_eq!(stdout(&out), both_maps("differs", &etc_dir));
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), both_maps("updated", &etc_dir));
    assert!(read_tree(&etc_dir)["virtual"].contains("\ninfo@example.com alice@example.org\n"));
    let out = hostyard(&["--config", &config, "mail", "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stdout(&out));
}

/// One bad forward file used to make `hostyard mail` exit 2, so
/// postfix.service failed to start at the next boot for every domain. Now
/// the file is reported (file and line) and skipped: every other domain
/// keeps forwarding, and the bad file's domain is deferred (451, senders
/// retry) until it is fixed rather than bounced.
#[test]
fn a_bad_forward_file_is_reported_and_skipped_and_its_domain_deferred() {
    let (dir, config) = server();
    fs::create_dir_all(forwards(&dir)).expect("mkdir");
    fs::write(
        forwards(&dir).join("example.com"),
        "info alice@example.org\n",
    )
    .expect("write");
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let good = read_tree(&etc(&dir));
    for (name, text, needle, deferred) in [
        (
            "b.org",
            "info alice@example.org\nsales\n",
            "line 2: \"sales\" has no destination",
            Some("b.org"),
        ),
        (
            "b.org",
            "info a@b.org\nINFO c@d.org\n",
            "line 2: \"INFO\" is already forwarded on line 1",
            Some("b.org"),
        ),
        (
            "b.org",
            "info alice@example.org bob@x y\n",
            "line 1:",
            Some("b.org"),
        ),
        (
            "b.org",
            "x@b.org a@c.org\n",
            "write only the local part",
            Some("b.org"),
        ),
        (
            "not_a_domain",
            "info a@c.org\n",
            "the file name must be the domain",
            None,
        ),
    ] {
        let path = forwards(&dir).join(name);
        fs::write(&path, text).expect("write");
        let out = hostyard(&["--config", &config, "mail"]);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(0), "{text:?}: {err}");
        let warning = err
            .lines()
            .find(|l| l.contains("skipped"))
            .unwrap_or_else(|| panic!("{text:?}: no warning: {err}"));
        assert!(
            warning.contains(&path.display().to_string()) && warning.contains(needle),
            "{text:?}: {warning}"
        );
        let tree = read_tree(&etc(&dir));
        // The good domain forwards as before.
        assert_eq!(tree["virtual"], good["virtual"], "{text:?}");
        assert!(
            tree["virtual_domains"].contains("\nexample.com "),
            "{text:?}"
        );
        let deferring: Vec<&str> = tree["deferred_domains"]
            .lines()
            .filter(|l| !l.starts_with('#'))
            .filter_map(|l| l.split_whitespace().next())
            .collect();
        assert_eq!(
            deferring,
            deferred.into_iter().collect::<Vec<_>>(),
            "{text:?}"
        );
        if let Some(d) = deferred {
            // Accepted as a destination (else: 554 relay denied, a bounce),
            // then answered 451 by the recipient check.
            assert!(
                tree["virtual_domains"].contains(&format!("\n{d} ")),
                "{text:?}"
            );
            assert!(tree["deferred_domains"].contains(" 451 4.3.0 "), "{text:?}");
        }
        // --check says the forwards need fixing.
        let out = hostyard(&["--config", &config, "mail", "--check"]);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {}", stderr(&out));
        assert_stdout_has(&out, &format!("bad {}", path.display()));
        fs::remove_file(&path).expect("remove");
    }
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        read_tree(&etc(&dir)),
        good,
        "fixing the file restores the config"
    );
}

#[test]
fn relayhost_that_could_inject_settings_is_refused() {
    let (dir, config) = server_with_mail("  relayhost: \"x.org\\nmynetworks = 0.0.0.0/0\"\n");
    let out = hostyard(&["--config", &config, "mail"]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("mail.relayhost"), "{err}");
    assert!(!dir.join("data").exists(), "wrote something");
}

/// postfix's STARTTLS certificate: the one HAProxy serves for the server
/// name when the crt-list names it, else HAProxy's default;
/// copied 0600 into postfix's config dir; `--certificate-changed` says when
/// the copy is out of date (exit 0) or current (exit 1), writing nothing.
/// Real postfix offers it over STARTTLS in the end-to-end suite
/// (`t_mail_starttls_offers_the_server_certificate`).
#[test]
fn postfix_gets_the_server_names_certificate_else_the_default() {
    use std::os::unix::fs::PermissionsExt;
    let (dir, config) = server();
    let changed = || {
        hostyard(&["--config", &config, "mail", "--certificate-changed"])
            .status
            .code()
    };
    let tls = etc(&dir).join("tls.pem");
    // No certificate anywhere yet (confd has not run): no STARTTLS, said.
    let out = hostyard(&["--config", &config, "mail"]);
    assert_exit_saying(&out, 0, "postfix offers no STARTTLS");
    assert!(!read_tree(&etc(&dir))["main.cf"].contains("smtpd_tls"));
    assert_eq!(changed(), Some(1));

    let certs = dir.join("data/runtime/haproxy/certs");
    fs::create_dir_all(&certs).expect("mkdir");
    fs::write(certs.join("_default.pem"), "DEFAULT\n").expect("write");
    assert_eq!(changed(), Some(0));
    assert!(!tls.exists(), "--certificate-changed wrote");
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains(&format!("created {}", tls.display())));
    assert_eq!(fs::read_to_string(&tls).expect("copy"), "DEFAULT\n");
    let mode = fs::metadata(&tls).expect("stat").permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let main_cf = &read_tree(&etc(&dir))["main.cf"];
    assert!(
        main_cf.contains("\nsmtpd_tls_security_level = may\n"),
        "{main_cf}"
    );
    assert!(main_cf.contains(&format!("\nsmtpd_tls_cert_file = {}\n", tls.display())));
    assert!(main_cf.contains("\nsmtpd_tls_protocols = >=TLSv1.2\n"));
    assert_eq!(changed(), Some(1));

    // Another site's certificate is not the server's.
    let list = certs.join("certs.list");
    let line =
        |d: &str, names: &str| format!("{} {names}\n", certs.join(format!("{d}.pem")).display());
    fs::write(certs.join("example.com.pem"), "SITE\n").expect("write");
    fs::write(&list, line("example.com", "example.com www.example.com")).expect("write");
    assert_eq!(changed(), Some(1));
    // The server name's, once listed (its `www.`-less name or an alias).
    fs::write(certs.join("mx.example.com.pem"), "SERVER\n").expect("write");
    fs::write(
        &list,
        line("example.com", "example.com www.example.com")
            + &line("mx.example.com", "mx.example.com"),
    )
    .expect("write");
    assert_eq!(changed(), Some(0));
    let out = hostyard(&["--config", &config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("updated {}\n", tls.display()));
    assert_eq!(fs::read_to_string(&tls).expect("copy"), "SERVER\n");
    // Renewed: out of date until the next render.
    fs::write(certs.join("mx.example.com.pem"), "RENEWED\n").expect("write");
    assert_eq!(changed(), Some(0));
    let out = hostyard(&["--config", &config, "mail", "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), format!("differs {}\n", tls.display()));
    hostyard(&["--config", &config, "mail"]);
    assert_eq!(fs::read_to_string(&tls).expect("copy"), "RENEWED\n");
    // Taken out of the list (removed or refused): back to the default.
    fs::write(&list, line("example.com", "example.com www.example.com")).expect("write");
    assert_eq!(changed(), Some(0));
    hostyard(&["--config", &config, "mail"]);
    assert_eq!(fs::read_to_string(&tls).expect("copy"), "DEFAULT\n");
    assert_eq!(changed(), Some(1));
}

/// `systemctl reload postfix` as far as hostyard's files go: `hostyard
/// mail` (its first step), then the keys the container's start makes for
/// the lines of `dkim_keys` that have none (as opendkim-genkey writes
/// them: `<selector>.private` and the record in `<selector>.txt`).
fn reload_postfix(dir: &TempDir, config: &str) {
    let out = hostyard(&["--config", config, "mail"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let keys = fs::read_to_string(etc(dir).join("dkim_keys")).expect("dkim_keys");
    for line in keys.lines().filter(|l| !l.trim().is_empty()) {
        let [domain, selector, key_dir] = line.split(' ').collect::<Vec<_>>()[..] else {
            panic!("dkim_keys line {line:?}");
        };
        let key_dir = Path::new(key_dir);
        if !key_dir.join(format!("{selector}.txt")).exists() {
            fs::create_dir_all(key_dir).expect("mkdir");
            fs::write(key_dir.join(format!("{selector}.private")), "key").expect("key");
            fs::write(
                key_dir.join(format!("{selector}.txt")),
                format!("{selector}._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \"\n\t  \"p=KEY{selector}\" )  ; ----- DKIM key {selector} for {domain}\n"),
            )
            .expect("record");
        }
    }
}

/// The two-step rotation exactly as docs/mail.md tells the operator: the
/// next key is made and printed while the old one signs; the switch is a
/// second command, refused until the new key exists.
#[test]
fn dkim_rotation_publishes_the_next_key_before_it_signs() {
    let (dir, config) = server();
    // A WordPress site sends mail (its data's KIND).
    let site = dir.join("data/domains/blog.example.net");
    fs::create_dir_all(&site).expect("mkdir");
    fs::write(site.join("KIND"), "wordpress\n").expect("KIND");
    let signs = || fs::read_to_string(etc(&dir).join("dkim_signing_table")).expect("table");
    let dns = || {
        let out = hostyard(&["--config", &config, "mail", "dns", "blog.example.net"]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        stdout(&out)
    };
    let rotate = |finish: bool| {
        let mut args = vec![
            "--config",
            &config,
            "mail",
            "rotate-dkim",
            "blog.example.net",
        ];
        if finish {
            args.push("--finish");
        }
        hostyard(&args)
    };
    reload_postfix(&dir, &config);
    assert!(signs().contains("hy1._domainkey.blog.example.net"));
    assert_eq!(dns().lines().count(), 3, "{}", dns());

    // 1. hostyard mail rotate-dkim blog.example.net
    let out = rotate(false);
    assert_exit_saying(&out, 0, "hy2 is the next key; hy1 keeps signing");
    // Finishing before the key is made is refused, naming the steps.
    assert_exit_saying(&rotate(true), 2, "hy2's key is not made yet");
    // 2. systemctl reload postfix: hy2's key is made, hy1 still signs.
    reload_postfix(&dir, &config);
    assert!(signs().contains("hy1._domainkey"), "{}", signs());
    assert!(!signs().contains("hy2"), "{}", signs());
    // 3. hostyard mail dns prints both keys (publish hy2).
    let printed = dns();
    assert_eq!(printed.lines().count(), 4, "{printed}");
    assert!(
        printed.contains(
            "hy1._domainkey.blog.example.net. IN TXT \"v=DKIM1; h=sha256; k=rsa; p=KEYhy1\""
        ),
        "{printed}"
    );
    assert!(
        printed.contains(
            "hy2._domainkey.blog.example.net. IN TXT \"v=DKIM1; h=sha256; k=rsa; p=KEYhy2\""
        ),
        "{printed}"
    );
    // Asking again starts nothing new.
    assert_exit_saying(&rotate(false), 0, "under way already");
    // 4. hostyard mail rotate-dkim blog.example.net --finish
    assert_exit_saying(
        &rotate(true),
        0,
        "signs with hy2 after `systemctl reload postfix`",
    );
    // 5. systemctl reload postfix: hy2 signs; only its record is printed.
    reload_postfix(&dir, &config);
    assert!(
        signs().contains("hy2._domainkey.blog.example.net"),
        "{}",
        signs()
    );
    let printed = dns();
    assert_eq!(printed.lines().count(), 3, "{printed}");
    assert!(
        printed.contains("hy2._domainkey") && !printed.contains("hy1._domainkey"),
        "{printed}"
    );
}
