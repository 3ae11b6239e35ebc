//! `hostyard site` against a real etcd: forget (a site that changed kind
//! stayed a 503 forever behind its old declaration, and the command the
//! docs named did not exist), the owner's commands, set and show.

mod util;

use std::fs;

use hostyard_core::etcd::Schema;
use hostyard_testsupport::Etcd;
use util::{
    assert_exit_saying, assert_stderr_has, assert_stdout_has, hostyard, stderr, stdout,
    write_config, TempDir,
};

fn config(dir: &TempDir, etcd: &Etcd) -> String {
    let path = dir.str("hostyard.yaml");
    fs::write(
        &path,
        format!(
            "data_root: {}\netcd:\n  endpoints: [\"{}\"]\n",
            dir.str("data"),
            etcd.endpoint()
        ),
    )
    .expect("config");
    path
}

/// [`config`] of the server named `node`.
fn config_on(dir: &TempDir, etcd: &Etcd, node: &str) -> String {
    let path = dir.str("hostyard.yaml");
    fs::write(
        &path,
        format!(
            "data_root: {}\nnode_name: {node}\netcd:\n  endpoints: [\"{}\"]\n",
            dir.str("data"),
            etcd.endpoint()
        ),
    )
    .expect("config");
    path
}

#[test]
fn forget_removes_a_declaration_only_once_the_declared_site_is_stopped() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config(&dir, &etcd);
    // The keys as the default config (no prefix) names them.
    let schema = Schema::new(&hostyard_config::NodeConfig::default().etcd.prefix);
    let domain: hostyard_core::Domain = "example.com".parse().unwrap();
    let site = &schema.site_key(&domain);
    let static_reg = &schema.service_key(hostyard_core::SiteKind::Static, &domain);
    let wp_reg = &schema.service_key(hostyard_core::SiteKind::Wordpress, &domain);
    etcd.put(site, r#"{"kind":"static","aliases":[]}"#).unwrap();
    // The old kind still runs: refused, naming the command that stops it.
    etcd.put_with_lease(
        static_reg,
        r#"{"ip":"172.18.0.5","port":"80","node":"srv1"}"#,
        60,
    )
    .unwrap();
    let out = hostyard(&["--config", &config, "site", "forget", "example.com"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.contains("on server srv1") && err.contains("systemctl stop static@example.com.service"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        etcd.get(site).unwrap().is_some(),
        "the declaration was removed"
    );

    // The old site stopped, the new kind registered: forget works, and the
    // new registration is untouched.
    etcd.delete(static_reg).unwrap();
    etcd.put_with_lease(wp_reg, r#"{"ip":"172.18.0.6","port":"80"}"#, 60)
        .unwrap();
    let out = hostyard(&["--config", &config, "site", "forget", "example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(&out, "forgot example.com (declared as a static site)");
    assert_stdout_has(&out, "is left as it is");
    assert_eq!(etcd.get(site).unwrap(), None);
    assert!(etcd.get(wp_reg).unwrap().is_some());

    // Again: nothing to do, said so.
    let out = hostyard(&["--config", &config, "site", "forget", "example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "example.com has no declaration; nothing changed\n"
    );
}

#[test]
fn forget_refuses_a_name_that_is_not_a_canonical_domain_and_a_down_etcd() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config(&dir, &etcd);
    for (name, want) in [
        ("Example.com", "use \"example.com\""),
        ("../x", "contains '/'"),
    ] {
        let out = hostyard(&["--config", &config, "site", "forget", name]);
        assert_eq!(out.status.code(), Some(2), "{name}: {}", stderr(&out));
        assert!(stderr(&out).contains(want), "{name}: {}", stderr(&out));
    }
    drop(etcd);
    let out = hostyard(&["--config", &config, "site", "forget", "example.com"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("etcd"), "{}", stderr(&out));
}

/// `site claim` and `site transfer`: the owner changes hands in one
/// transaction; a server that serves the site yields only to --take-over;
/// `forget` removes the owner with the declaration.
#[test]
fn the_owner_changes_hands_only_by_claim_transfer_or_take_over() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config(&dir, &etcd);
    let mut text = fs::read_to_string(&config).unwrap();
    text.push_str("node_name: n2\n");
    fs::write(&config, text).unwrap();
    let schema = Schema::new(&hostyard_config::NodeConfig::default().etcd.prefix);
    let domain: hostyard_core::Domain = "example.com".parse().unwrap();
    let owner_key = &schema.owner_key(&domain);
    let reg = &schema.service_key(hostyard_core::SiteKind::Static, &domain);
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str(), "site"];
        all.extend_from_slice(args);
        hostyard(&all)
    };
    let owner = || etcd.get(owner_key).unwrap();

    // Nobody owns it: claimed.
    let out = run(&["owner", "example.com"]);
    assert_eq!((out.status.code(), stdout(&out)), (Some(0), String::new()));
    let out = run(&["claim", "example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(owner().as_deref(), Some("n2"));
    assert_stdout_has(&out, "server n2 owns it now");
    let out = run(&["owner", "example.com"]);
    assert_eq!(stdout(&out), "n2\n");

    // n1 owns and serves it: refused, then taken over.
    etcd.put(owner_key, "n1").unwrap();
    etcd.put_with_lease(reg, r#"{"ip":"172.18.0.5","port":"80","node":"n1"}"#, 60)
        .unwrap();
    let out = run(&["claim", "example.com"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(
        stderr(&out).contains("owned by server n1, which serves it now")
            && stderr(&out).contains("hostyard site claim example.com --take-over"),
        "{}",
        stderr(&out)
    );
    assert_eq!(owner().as_deref(), Some("n1"));
    let out = run(&["claim", "example.com", "--take-over"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(&out, "taken over from server n1");
    assert_eq!(owner().as_deref(), Some("n2"));

    // A move's switch: from the source, even while it serves; run again,
    // nothing to do.
    let out = run(&["transfer", "example.com", "--from", "n2", "--to", "n3"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(owner().as_deref(), Some("n3"));
    let out = run(&["transfer", "example.com", "--from", "n2", "--to", "n3"]);
    assert_stdout_has(&out, "owned by server n3 already");
    // Not the named source's to hand over while n3 serves it.
    let out = run(&["transfer", "example.com", "--from", "n1", "--to", "n4"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert!(stderr(&out).contains("--take-over"), "{}", stderr(&out));
    assert_eq!(owner().as_deref(), Some("n3"));
    let out = run(&[
        "transfer",
        "example.com",
        "--from",
        "n1",
        "--to",
        "bad name",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(owner().as_deref(), Some("n3"));

    // Forgotten once stopped: the owner goes with the declaration.
    etcd.delete(reg).unwrap();
    etcd.put(
        &schema.site_key(&domain),
        r#"{"kind":"static","aliases":[]}"#,
    )
    .unwrap();
    let out = run(&["forget", "example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(owner(), None);
}

#[test]
fn set_changes_aliases_only_on_the_owner_and_never_to_a_taken_name() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config_on(&dir, &etcd, "srv1");
    let schema = Schema::new(&hostyard_config::NodeConfig::default().etcd.prefix);
    let key = |d: &str| schema.site_key(&d.parse().unwrap());
    let owner = schema.owner_key(&"example.com".parse().unwrap());
    let set = |args: &[&str]| {
        let mut all = vec!["--config", &config, "site", "set", "example.com"];
        all.extend_from_slice(args);
        hostyard(&all)
    };

    // Not declared yet: the message says how a site gets a declaration.
    let out = set(&["--add-alias", "a.example.org"]);
    assert_exit_saying(&out, 1, "example.com is not declared: start it first");
    assert_eq!(etcd.get(&key("example.com")).unwrap(), None);

    etcd.put(&key("example.com"), r#"{"kind":"static","aliases":[]}"#)
        .unwrap();
    etcd.put(
        &key("other.example"),
        r#"{"kind":"wordpress","aliases":["old.example.org"]}"#,
    )
    .unwrap();
    etcd.put(&key("shop.example.org"), r#"{"kind":"static"}"#)
        .unwrap();
    let before = etcd.get(&key("example.com")).unwrap();

    // Names other sites hold, and the site's own www name: every problem
    // in one refusal, nothing written.
    let out = set(&[
        "--add-alias",
        "a.example.org",
        "--add-alias",
        "old.example.org",
        "--add-alias",
        "shop.example.org",
        "--add-alias",
        "www.other.example",
    ]);
    assert_exit_saying(&out, 1, "nothing changed");
    for says in [
        "old.example.org already points at other.example",
        "www.other.example already points at other.example",
        "shop.example.org is a site of its own",
    ] {
        assert_stderr_has(&out, says);
    }
    assert_eq!(etcd.get(&key("example.com")).unwrap(), before);

    // Bad input is a usage error naming it.
    assert_exit_saying(&set(&[]), 2, "nothing to set");
    assert_exit_saying(&set(&["--add-alias", "A.example.org"]), 2, "a.example.org");

    // Added: the kind stays, routing reads the new alias.
    let out = set(&[
        "--add-alias",
        "a.example.org",
        "--add-alias",
        "b.example.org",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(
        &out,
        "example.com is now:\naliases: a.example.org, b.example.org\n",
    );
    let decl = etcd.get(&key("example.com")).unwrap().unwrap();
    let decl = hostyard_core::etcd::SiteDecl::parse(decl.as_bytes()).unwrap();
    assert_eq!(decl.kind, hostyard_core::SiteKind::Static);
    assert_eq!(decl.aliases.len(), 2);
    let out = set(&["--add-alias", "a.example.org"]);
    assert_stdout_has(&out, "nothing changed");

    let show = hostyard(&["--config", &config, "site", "show", "example.com"]);
    assert_eq!(
        stdout(&show),
        "kind: static\naliases: a.example.org, b.example.org\ncanonical: bare\nbasic-auth: none\nheaders: none\nowner: none\n"
    );

    // Another server owns it: refused here, naming the owner.
    etcd.put(&owner, "srv2").unwrap();
    let before = etcd.get(&key("example.com")).unwrap();
    let out = set(&["--remove-alias", "a.example.org"]);
    assert_exit_saying(
        &out,
        1,
        "example.com is owned by server srv2, not this one (srv1)",
    );
    assert_eq!(etcd.get(&key("example.com")).unwrap(), before);

    // This server owns it: removed.
    etcd.put(&owner, "srv1").unwrap();
    let out = set(&[
        "--remove-alias",
        "a.example.org",
        "--remove-alias",
        "b.example.org",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(&out, "example.com is now:\naliases: none\n");
    let show = hostyard(&["--config", &config, "site", "show", "example.com"]);
    assert_stdout_has(
        &show,
        "aliases: none\ncanonical: bare\nbasic-auth: none\nheaders: none\nowner: srv1\n",
    );
    let out = set(&["--remove-alias", "a.example.org"]);
    assert_exit_saying(
        &out,
        1,
        "a.example.org is not an alias of example.com (its aliases: none)",
    );

    // Path redirects: 301 unless 308 is asked for, shown as they are set.
    let out = set(&[
        "--redirect",
        "/old=/new",
        "--redirect",
        "308:/api=https://api.example.org/v2",
        "--redirect-prefix",
        "/blog/=https://blog.example.org/",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let show = hostyard(&["--config", &config, "site", "show", "example.com"]);
    assert_eq!(
        stdout(&show),
        "kind: static\naliases: none\nredirect: 308:/api=https://api.example.org/v2\n\
         redirect: 301:/old=/new\nredirect-prefix: 301:/blog/=https://blog.example.org/\n\
         canonical: bare\nbasic-auth: none\nheaders: none\nowner: srv1\n"
    );
    let before = etcd.get(&key("example.com")).unwrap();
    // A temporary status, a second hop and a path that is none: a usage
    // error or one refusal naming each, nothing written.
    assert_exit_saying(&set(&["--redirect", "302:/a=/b"]), 2, "302 is no permanent");
    let out = set(&["--redirect", "/x=/old", "--remove-redirect", "/nothing"]);
    assert_exit_saying(&out, 1, "nothing changed");
    assert_stderr_has(&out, "/x -> /old is redirected again by /old -> /new");
    assert_stderr_has(&out, "no redirect from /nothing");
    assert_eq!(etcd.get(&key("example.com")).unwrap(), before);
    let out = set(&["--remove-redirect", "/old", "--remove-redirect", "/api"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(
        &out,
        "aliases: none\nredirect-prefix: 301:/blog/=https://blog.example.org/\n",
    );
}

#[test]
fn rollback_names_what_it_needs_for_a_site_without_a_repository() {
    let dir = TempDir::new();
    let config = write_config(&dir, &format!("data_root: {}\n", dir.str("data")));
    let out = hostyard(&["--config", &config, "site", "rollback", "example.com"]);
    assert_exit_saying(&out, 1, "example.com has no repository here (");
    assert_stderr_has(&out, "only a static-git site hosted on this server");
    let out = hostyard(&["--config", &config, "site", "rollback", "Example.com"]);
    assert_exit_saying(&out, 2, "example.com");
}

#[test]
fn set_chooses_the_canonical_name_a_preview_password_and_the_headers_preset() {
    use hostyard_core::edge::{authorization, Canonical, HeadersPreset};
    use hostyard_core::etcd::SiteDecl;
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config_on(&dir, &etcd, "srv1");
    let schema = Schema::new(&hostyard_config::NodeConfig::default().etcd.prefix);
    let key = schema.site_key(&"example.com".parse().unwrap());
    etcd.put(&key, r#"{"kind":"static","aliases":[]}"#).unwrap();
    let password = "a long preview password";
    let set = |args: &[&str], input: &str| {
        let mut all = vec!["--config", &config, "site", "set", "example.com"];
        all.extend_from_slice(args);
        util::hostyard_with_stdin(&all, input)
    };
    let decl = || SiteDecl::parse(etcd.get(&key).unwrap().unwrap().as_bytes()).unwrap();

    // Bad input: a usage error naming it, nothing written.
    let before = etcd.get(&key).unwrap();
    assert_exit_saying(&set(&["--canonical", "apex"], ""), 2, "write bare");
    assert_exit_saying(&set(&["--headers", "max"], ""), 2, "write none, basic");
    assert_exit_saying(&set(&["--basic-auth", "boss"], "short\n"), 2, "at least 16");
    assert_exit_saying(
        &set(&["--basic-auth", "a:b"], "0123456789abcdefg\n"),
        2,
        "':'",
    );
    assert_exit_saying(
        &set(&["--remove-basic-auth"], ""),
        1,
        "no basic auth to remove",
    );
    assert_eq!(etcd.get(&key).unwrap(), before);

    // All three in one change; the password is nowhere in etcd or the output.
    let out = set(
        &[
            "--canonical",
            "www",
            "--basic-auth",
            "boss",
            "--headers",
            "strict",
        ],
        &format!("{password}\n"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    for says in ["canonical: www", "basic-auth: boss", "headers: strict"] {
        assert_stdout_has(&out, says);
    }
    let raw = etcd.get(&key).unwrap().unwrap();
    assert!(!raw.contains(password) && !stdout(&out).contains(password));
    let d = decl();
    assert_eq!(d.edge.canonical, Canonical::Www);
    assert_eq!(d.edge.headers, HeadersPreset::Strict);
    let auth = d.edge.basic_auth.expect("basic auth");
    assert!(auth.accepts(&authorization("boss", password)));
    assert!(!auth.accepts(&authorization("boss", "another long password")));

    // show prints them; the hash never.
    let out = hostyard(&["--config", &config, "site", "show", "example.com"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(&out, "canonical: www\nbasic-auth: boss\nheaders: strict\n");
    assert!(!stdout(&out).contains(&auth.sha256));

    // Another server does not own it: refused there.
    etcd.put(&schema.owner_key(&"example.com".parse().unwrap()), "srv2")
        .unwrap();
    assert_exit_saying(&set(&["--headers", "none"], ""), 1, "owned by server srv2");
    etcd.put(&schema.owner_key(&"example.com".parse().unwrap()), "srv1")
        .unwrap();

    // Back to the defaults: the declaration as an old server wrote it.
    let out = set(
        &[
            "--canonical",
            "bare",
            "--remove-basic-auth",
            "--headers",
            "none",
        ],
        "",
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        etcd.get(&key).unwrap().unwrap(),
        r#"{"kind":"static","aliases":[]}"#
    );
    // A www. name has no www. name of its own to serve under.
    etcd.put(
        &schema.site_key(&"www.example.net".parse().unwrap()),
        r#"{"kind":"static"}"#,
    )
    .unwrap();
    let out = util::hostyard_with_stdin(
        &[
            "--config",
            &config,
            "site",
            "set",
            "www.example.net",
            "--canonical",
            "www",
        ],
        "",
    );
    assert_exit_saying(&out, 1, "keep --canonical bare");
}

/// `site set --php-...`: a WordPress site's PHP limits go into its
/// declaration and its `php/site.conf`, within the node config's bounds;
/// a value over a bound and a site of another kind are refused, naming
/// the bound and its key, and nothing changes; --php-reset goes back to
/// the defaults.
#[test]
fn php_limits_are_set_within_the_node_configs_bounds_for_wordpress_only() {
    let etcd = Etcd::start().expect("etcd");
    let dir = TempDir::new();
    let config = config(&dir, &etcd);
    let mut text = fs::read_to_string(&config).unwrap();
    // No container runs here: the docker call says so.
    text.push_str(
        "docker:\n  binary: /bin/false\nwordpress:\n  php_limits:\n    upload: {default: 64M, max: 128M}\n",
    );
    fs::write(&config, text).unwrap();
    let schema = Schema::new(&hostyard_config::NodeConfig::default().etcd.prefix);
    let wp: hostyard_core::Domain = "wp.example".parse().unwrap();
    let site = &schema.site_key(&wp);
    // A declaration from before: no php field.
    etcd.put(site, r#"{"kind":"wordpress","aliases":[]}"#)
        .unwrap();
    etcd.put(
        &schema.site_key(&"static.example".parse().unwrap()),
        r#"{"kind":"static"}"#,
    )
    .unwrap();
    let layout = hostyard_core::Layout::new(std::path::Path::new(&dir.str("data")));
    fs::create_dir_all(layout.domain_dir(&wp)).unwrap();
    let run = |args: &[&str]| {
        let mut all = vec!["--config", config.as_str(), "site", "set"];
        all.extend_from_slice(args);
        hostyard(&all)
    };

    let out = run(&["wp.example", "--php-upload", "2m", "--php-time", "120s"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(&out, "php: upload 2M, memory 256M (default), time 120s\n");
    assert_stdout_has(&out, "wp.example does not run here: it starts with them");
    let decl = etcd.get(site).unwrap().unwrap();
    assert!(
        decl.contains(r#""php":{"upload":"2M","time":"120s"}"#),
        "{decl}"
    );
    let conf = fs::read_to_string(layout.php_site_conf(&wp)).unwrap();
    for line in [
        "php_admin_value upload_max_filesize 2M\n",
        "php_admin_value post_max_size 2M\n",
        "php_admin_value max_execution_time 120\n",
    ] {
        assert!(conf.contains(line), "{conf}");
    }
    assert!(!conf.contains("memory_limit"), "{conf}");

    // Over the bound of this node config: refused, naming it; nothing changed.
    let out = run(&["wp.example", "--php-upload", "256m", "--php-memory", "512m"]);
    assert_exit_saying(
        &out,
        1,
        "--php-upload 256M is over the bound 128M (wordpress.php_limits.upload.max in the node config",
    );
    assert_eq!(etcd.get(site).unwrap().unwrap(), decl);
    assert_eq!(fs::read_to_string(layout.php_site_conf(&wp)).unwrap(), conf);
    // Not a size: a usage error.
    let out = run(&["wp.example", "--php-memory", "lots"]);
    assert_exit_saying(&out, 2, "--php-memory: \"lots\" is not a size");
    // Not WordPress.
    let out = run(&["static.example", "--php-upload", "2m"]);
    assert_exit_saying(&out, 1, "static.example is a static site: --php-upload");
    assert_eq!(
        etcd.get(&schema.site_key(&"static.example".parse().unwrap()))
            .unwrap()
            .unwrap(),
        r#"{"kind":"static"}"#
    );

    let out = hostyard(&["--config", &config, "site", "show", "wp.example"]);
    assert_stdout_has(&out, "php: upload 2M, memory 256M (default), time 120s\n");

    let out = run(&["wp.example", "--php-reset"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_stdout_has(
        &out,
        "php: upload 64M (default), memory 256M (default), time 60s (default)\n",
    );
    assert!(!etcd.get(site).unwrap().unwrap().contains("php"));
    assert!(!fs::read_to_string(layout.php_site_conf(&wp))
        .unwrap()
        .contains("php_admin_value"));
}
