use super::*;

fn parse(text: &str) -> Result<NodeConfig, ConfigError> {
    NodeConfig::parse(text, Path::new("/etc/hostyard/hostyard.yaml"))
}

/// Why `text` is refused, as the error says it.
fn refusal(text: &str) -> String {
    parse(text).unwrap_err().to_string()
}

#[test]
fn paths_a_sandboxed_unit_cannot_see_are_named_with_the_unit() {
    assert_eq!(
        parse("").unwrap().unit_path_problems(),
        Vec::<String>::new()
    );
    let c = parse(
            "tls:\n  acme:\n    ca_file: /tmp/pebble.pem\netcd:\n  endpoints: [\"https://127.0.0.1:2379\"]\n  ca_file: /root/ca.pem\n  cert_file: /etc/hostyard/etcd/c.pem\n  key_file: /etc/hostyard/etcd/c.key\nbackup:\n  repository: /srv/r\n  password_file: /root/pw\n",
        )
        .unwrap();
    let problems = c.unit_path_problems();
    assert_eq!(problems.len(), 2, "{problems:#?}");
    assert!(
        problems[0]
            .starts_with("etcd.ca_file: /root/ca.pem cannot be read by haproxy-confd.service")
            && problems[0].contains("ProtectHome="),
        "{problems:#?}"
    );
    assert!(
        problems[1].starts_with(
            "tls.acme.ca_file: /tmp/pebble.pem cannot be read by haproxy-confd.service"
        ) && problems[1].contains("PrivateTmp=yes"),
        "{problems:#?}"
    );
    // /root is readable by the backup units; /tmp is not.
    let c = parse("backup:\n  repository: /srv/r\n  password_file: /tmp/pw\n").unwrap();
    assert_eq!(c.unit_path_problems().len(), 1);
    assert!(hidden_from_unit(Path::new("/tmpx/a"), true).is_none());
    assert!(hidden_from_unit(Path::new("/var/tmp/a"), false).is_some());
}

#[test]
fn drop_ins_merge_with_the_operators_file_and_conflicts_name_both() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("hostyard.yaml");
    let drop_ins = dir.path().join("hostyard.yaml.d");
    std::fs::create_dir(&drop_ins).unwrap();
    std::fs::write(
        &main,
        "haproxy:\n  site_maxconn: 123\nbackup:\n  repository: /srv/restic\n",
    )
    .unwrap();
    std::fs::write(
        drop_ins.join("fleet.yaml"),
        "node_name: n1\netcd:\n  prefix: /hy\n",
    )
    .unwrap();
    // Neither hidden nor other names are read.
    std::fs::write(drop_ins.join(".fleet.yaml.tmp"), "node_name: x\n").unwrap();
    std::fs::write(drop_ins.join("fleet.yaml~"), "node_name: y\n").unwrap();
    let c = NodeConfig::load(&main).unwrap();
    assert_eq!(c.node_name, "n1");
    assert_eq!(c.etcd.prefix, "/hy");
    assert_eq!(c.haproxy.site_maxconn, 123);
    assert_eq!(c.backup.repository, "/srv/restic");

    // A drop-in's invalid value names the drop-in.
    std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  endpoints: []\n").unwrap();
    let err = NodeConfig::load(&main).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!(
            "{}: etcd.endpoints:",
            drop_ins.join("zz.yaml").display()
        )),
        "{err}"
    );
    // So does a parse error, with its line.
    std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  nope: 1\n").unwrap();
    let err = NodeConfig::load(&main).unwrap_err().to_string();
    assert!(err.contains("zz.yaml") && err.contains("line 2"), "{err}");
    // A key in two files: both named, nothing chosen.
    std::fs::write(drop_ins.join("zz.yaml"), "etcd:\n  prefix: /other\n").unwrap();
    let err = NodeConfig::load(&main).unwrap_err().to_string();
    assert!(
        err.contains("etcd.prefix")
            && err.contains("is also set in")
            && err.contains("fleet.yaml")
            && err.contains("zz.yaml"),
        "{err}"
    );
    std::fs::remove_file(drop_ins.join("zz.yaml")).unwrap();
    // A .yml drop-in is refused, not ignored.
    std::fs::write(drop_ins.join("local.yml"), "git:\n  keep_trees: 2\n").unwrap();
    let err = NodeConfig::load(&main).unwrap_err().to_string();
    assert!(err.contains("local.yml") && err.contains("rename"), "{err}");
}

#[test]
fn poll_interval_is_parsed_once_into_seconds() {
    for (span, secs, shown) in [
        ("600", 600, "10min"),
        ("30s", 30, "30s"),
        ("90", 90, "90s"),
        ("10min", 600, "10min"),
        ("2h", 7200, "2h"),
        ("1d", 86400, "1d"),
    ] {
        for yaml in [
            format!("git:\n  poll_interval: {span}\n"),
            format!("git:\n  poll_interval: \"{span}\"\n"),
        ] {
            let c = parse(&yaml).unwrap();
            assert_eq!(c.git.poll_interval.as_secs(), secs, "{yaml}");
            assert_eq!(c.git.poll_interval.to_string(), shown, "{yaml}");
            // What is shown reads back as the same span.
            assert_eq!(shown.parse::<TimeSpan>().unwrap(), c.git.poll_interval);
        }
    }
    for bad in ["0min", "0", "99999999999999999999d", "10 min"] {
        let err = refusal(&format!("git:\n  poll_interval: \"{bad}\"\n"));
        assert!(
            err.contains("git.poll_interval") && err.contains("line 2"),
            "{err}"
        );
    }
}

#[test]
fn etcd_tls_is_all_three_files_with_https_or_none_with_http() {
    let tls = "  ca_file: /etc/hostyard/etcd/ca.pem\n  cert_file: /etc/hostyard/etcd/n1.pem\n  key_file: /etc/hostyard/etcd/n1.key\n";
    let c = parse(&format!(
        "etcd:\n  endpoints: [\"https://10.0.0.1:2379\", \"https://10.0.0.2:2379\"]\n{tls}"
    ))
    .unwrap();
    assert_eq!(c.etcd.key_file, PathBuf::from("/etc/hostyard/etcd/n1.key"));
    for (yaml, field, says) in [
            (
                format!("etcd:\n  endpoints: [\"http://10.0.0.1:2379\"]\n{tls}"),
                "etcd.endpoints",
                "use https://",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n".to_string(),
                "etcd.endpoints",
                "needs etcd.ca_file",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n  ca_file: /ca.pem\n  cert_file: /c.pem\n".to_string(),
                "etcd.key_file",
                "set all three or none",
            ),
            (
                "etcd:\n  endpoints: [\"https://10.0.0.1:2379\"]\n  ca_file: ca.pem\n  cert_file: /c.pem\n  key_file: /k\n".to_string(),
                "etcd.ca_file",
                "absolute path",
            ),
        ] {
            let err = refusal(&yaml);
            assert!(err.contains(field) && err.contains(says), "{yaml}: {err}");
        }
}

/// A section's TLS files are refused while `key_file` (the setting `name`)
/// is readable by others, and read once it is 0600; their PEM texts.
fn refused_until_private<T>(
    key_file: &std::path::Path,
    name: &str,
    tls_pem: impl Fn() -> Result<Option<T>, String>,
) -> T {
    use std::os::unix::fs::PermissionsExt;
    let Err(err) = tls_pem() else {
        panic!("{name}: a key readable by others was accepted")
    };
    assert!(err.contains(name) && err.contains("chmod 600"), "{err}");
    std::fs::set_permissions(key_file, std::fs::Permissions::from_mode(0o600)).unwrap();
    tls_pem().unwrap().unwrap()
}

#[test]
fn etcd_tls_key_readable_by_others_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, name).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let etcd = EtcdConfig {
        endpoints: vec!["https://127.0.0.1:2379".into()],
        prefix: String::new(),
        ca_file: file("ca.pem", 0o644),
        cert_file: file("n1.pem", 0o644),
        key_file: file("n1.key", 0o640),
    };
    let pem = refused_until_private(&etcd.key_file, "etcd.key_file", || etcd.tls_pem());
    assert_eq!(pem.key, b"n1.key");
    assert!(EtcdConfig::default().tls_pem().unwrap().is_none());
}

#[test]
fn fleet_tls_is_one_pem_of_certificate_and_key_and_a_shared_key_is_refused() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str, mode: u32| {
        let p = dir.path().join(name);
        std::fs::write(&p, text).unwrap();
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
        p
    };
    let fleet = FleetConfig {
        private_address: Some("10.0.0.11".parse().unwrap()),
        ca_file: file("ca.pem", "CA\n", 0o644),
        cert_file: file("n1.pem", "CERT", 0o644),
        key_file: file("n1.key", "KEY\n", 0o640),
        ..FleetConfig::default()
    };
    let pem = refused_until_private(&fleet.key_file, "fleet.key_file", || fleet.tls_pem());
    assert_eq!(pem.cert_and_key, b"CERT\nKEY\n");
    assert_eq!(pem.ca, b"CA\n");
    assert!(FleetConfig::default().tls_pem().unwrap().is_none());
    assert_eq!(FleetConfig::default().peer_cn_regex(), None);
    let peers = FleetConfig {
        peers: vec![
            FleetPeer {
                name: "n2".into(),
                address: "10.0.0.12".parse().unwrap(),
            },
            FleetPeer {
                name: "n3-b".into(),
                address: "10.0.0.13".parse().unwrap(),
            },
        ],
        ..fleet
    };
    assert_eq!(
        peers.peer_cn_regex().unwrap(),
        "^hostyard-(n2|n3-b)-[0-9a-f]+$"
    );
}

#[test]
fn empty_file_is_the_default_config() {
    assert_eq!(parse("").unwrap(), NodeConfig::default());
    assert_eq!(parse("# nothing\n").unwrap(), NodeConfig::default());
}

#[test]
fn partial_config_keeps_other_defaults() {
    let c = parse("node_name: n1\nhaproxy:\n  http_port: 8080\n").unwrap();
    assert_eq!(c.node_name(), "n1");
    assert_eq!(c.haproxy.http_port, 8080);
    assert_eq!(c.haproxy.https_port, 443);
    assert_eq!(c.git.poll_interval.to_string(), "10min");
}

#[test]
fn unknown_field_is_refused_with_line_and_column() {
    let err = refusal("node_name: n1\nhaproxy:\n  http_prot: 8080\n");
    assert!(err.contains("http_prot"), "{err}");
    assert!(err.contains("line 3 column 3"), "{err}");
    assert!(err.starts_with("/etc/hostyard/hostyard.yaml: "), "{err}");
}

#[test]
fn limits_are_parsed_once_and_bad_ones_refused_with_their_place() {
    let c =
        parse("limits:\n  wordpress:\n    memory: 1536M\n    cpus: 2\n    pids: 300\n").unwrap();
    assert_eq!(
        c.limits.wordpress.environment(),
        [
            "HOSTYARD_MEMORY=1536m",
            "HOSTYARD_PIDS=300",
            "HOSTYARD_CPUS=2.00"
        ]
    );
    assert_eq!(c.limits.mysql, crate::limits::Limits::default().mysql);
    for (text, want) in [
        (
            "limits:\n  static:\n    memory: 5m\n    cpus: 1\n    pids: 64\n",
            "not a memory size",
        ),
        (
            "limits:\n  static:\n    memory: 64m\n    cpus: -1\n    pids: 64\n",
            "not a CPU count",
        ),
        (
            "limits:\n  static:\n    memory: 64m\n    cpus: 1\n    pids: 3\n",
            "too few",
        ),
        ("limits:\n  static:\n    memory: 64m\n", "missing field"),
    ] {
        let err = refusal(text);
        assert!(
            err.contains(want) && err.contains("line "),
            "{text:?}: {err}"
        );
    }
}

#[test]
fn wrong_type_is_refused_with_location() {
    let err = refusal("haproxy:\n  http_port: eighty\n");
    assert!(err.contains("line 2"), "{err}");
}

#[test]
fn invalid_values_name_the_field() {
    for (text, field) in [
            ("data_root: data\n", "data_root"),
            ("data_root: \"/da ta\"\n", "data_root"),
            ("data_root: \"/data%i\"\n", "data_root"),
            ("etcd:\n  endpoints: []\n", "etcd.endpoints"),
            (
                "etcd:\n  endpoints: [\"127.0.0.1:2379\"]\n",
                "etcd.endpoints",
            ),
            ("etcd:\n  prefix: hostyard/\n", "etcd.prefix"),
            (
                "git:\n  poll_interval: \"10 minutes; rm -rf /\"\n",
                "git.poll_interval",
            ),
            ("images:\n  static: \"x y\"\n", "images.static"),
            ("docker:\n  network: \"-bad\"\n", "docker.network"),
            (
                "confd:\n  allowed_networks: [\"10.0.0.0/33\"]\n",
                "confd.allowed_networks",
            ),
            (
                "discovery:\n  health_path: \"x\"\n",
                "discovery.health_path",
            ),
            ("haproxy:\n  site_maxconn: 0\n", "haproxy.site_maxconn"),
            (
                "haproxy:\n  maxconn: 100\n  site_maxconn: 10\n  reserved_conns: 100\n",
                "haproxy.reserved_conns",
            ),
            ("haproxy:\n  source_maxconn: 0\n", "haproxy.source_maxconn"),
            ("haproxy:\n  login_rate: 0\n", "haproxy.login_rate"),
            (
                "haproxy:\n  unlimited_sources: [\"10.0.0.0/33\"]\n",
                "haproxy.unlimited_sources",
            ),
            (
                "fleet:\n  peers: [{name: n2, address: 10.0.0.12}]\n",
                "fleet.private_address",
            ),
            (
                "node_name: n1\nfleet:\n  private_address: 10.0.0.11\n  peers: [{name: n1, address: 10.0.0.12}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peers: [{name: n2, address: 10.0.0.11}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peers: [{name: n2, address: 10.0.0.12}, {name: n2, address: 10.0.0.13}]\n",
                "fleet.peers[1]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  peer_port: 80\n",
                "fleet.peer_port",
            ),
            ("git:\n  hook_port: 8405\n", "git.hook_port"),
            ("git:\n  hook_port: 0\n", "git.hook_port"),
            (
                "node_name: n1\nfleet:\n  private_address: 10.0.0.11\n  peers: [{name: N2, address: 10.0.0.12}]\n",
                "fleet.peers[0]",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n",
                "fleet.ca_file",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  ca_file: /ca.pem\n  cert_file: /n1.pem\n",
                "fleet.key_file",
            ),
            (
                "fleet:\n  private_address: 10.0.0.11\n  ca_file: /ca.pem\n  cert_file: n1.pem\n  key_file: /n1.key\n",
                "fleet.cert_file",
            ),
            (
                "haproxy:\n  maxconn: 10\n  site_maxconn: 11\n",
                "haproxy.site_maxconn",
            ),
            (
                "tls:\n  acme:\n    directory: http://ca.example/dir\n    email: a@b.example\n",
                "tls.acme.directory",
            ),
            (
                "tls:\n  acme:\n    directory: https://ca.example/dir\n    email: nobody\n",
                "tls.acme.email",
            ),
            (
                "tls:\n  acme:\n    directory: https://ca.example/dir\n    email: a@b.example\n    ca_file: root.pem\n",
                "tls.acme.ca_file",
            ),
            ("tls:\n  acme:\n    retry_secs: 0\n", "tls.acme.retry_secs"),
        ] {
            let err = refusal(text);
            assert!(err.contains(field), "{text:?}: {err}");
            // A fixture may have other problems too (a fleet needs its
            // TLS files): each is a line of its own, this one among them.
            assert!(
                err.lines().any(|l| l.contains(&format!(": {field}"))),
                "{text:?}: {err}"
            );
        }
}

#[test]
fn every_problem_is_reported_at_once_one_line_each_in_a_fixed_order() {
    // Three independent problems, written in another order than the
    // checks run: the lines follow the checks, not the file.
    let text = "mail:\n  relayhost: \"a b\"\nhaproxy:\n  http_port: 443\ngit:\n  keep_trees: 0\n";
    let err = parse(text).unwrap_err();
    let ConfigError::Invalid(problems) = &err else {
        panic!("{err}");
    };
    let fields: Vec<&str> = problems.iter().map(|p| p.problem.field.as_str()).collect();
    assert_eq!(
        fields,
        ["git.keep_trees", "haproxy.https_port", "mail.relayhost"]
    );
    let lines: Vec<String> = err.to_string().lines().map(String::from).collect();
    assert_eq!(
        lines,
        [
            "/etc/hostyard/hostyard.yaml: git.keep_trees: must be at least 1 (the tree being served)",
            "/etc/hostyard/hostyard.yaml: haproxy.https_port: 443 is haproxy.http_port too; give HTTPS a port of its own (443)",
            "/etc/hostyard/hostyard.yaml: mail.relayhost: \"a b\" must be empty, a host name or IPv4 address, optionally in [] and with :port, like [smtp.example.org]:587",
        ]
    );
    // The same config again: the same lines.
    assert_eq!(refusal(text), err.to_string());
    // validate() is the list itself, without files.
    let mut config = NodeConfig::default();
    config.git.keep_trees = 0;
    config.haproxy.maxconn = 0;
    // A zero maxconn is one problem, not also site_maxconn's and
    // reserved_conns'.
    assert_eq!(
        config.validate(),
        [
            Problem::new(
                "git.keep_trees",
                "must be at least 1 (the tree being served)".into()
            ),
            Problem::new("haproxy.maxconn", "must be at least 1".into()),
        ]
    );
}

#[test]
fn each_problem_names_the_file_that_sets_its_key() {
    let dir = tempfile::tempdir().unwrap();
    let main = dir.path().join("hostyard.yaml");
    std::fs::write(&main, "git:\n  keep_trees: 0\n").unwrap();
    let drop_ins = dir.path().join("hostyard.yaml.d");
    std::fs::create_dir(&drop_ins).unwrap();
    std::fs::write(drop_ins.join("fleet.yaml"), "etcd:\n  prefix: bad\n").unwrap();
    let err = NodeConfig::load(&main).unwrap_err().to_string();
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 2, "{err}");
    assert!(
        lines[0].starts_with(&format!(
            "{}: etcd.prefix: ",
            drop_ins.join("fleet.yaml").display()
        )),
        "{err}"
    );
    assert!(
        lines[1].starts_with(&format!("{}: git.keep_trees: ", main.display())),
        "{err}"
    );
}

#[test]
fn acme_is_off_by_default_and_on_with_a_directory() {
    assert!(!parse("").unwrap().tls.acme.enabled());
    let c = parse("tls:\n  acme:\n    directory: https://ca.example/dir\n    email: a@b.example\n")
        .unwrap();
    assert!(c.tls.acme.enabled());
    assert!(
        !c.tls.acme.terms_accepted,
        "the operator must accept the terms"
    );
}

#[test]
fn missing_explicit_file_is_an_error_but_default_path_is_not() {
    let dir = tempfile::tempdir().unwrap();
    assert!(NodeConfig::load(&dir.path().join("nope.yaml")).is_err());
}

#[test]
fn time_spans() {
    for ok in ["600", "30s", "10min", "1h", "2d", "5sec", "3m"] {
        assert!(ok.parse::<TimeSpan>().is_ok(), "{ok}");
    }
    for bad in ["", "min", "0", "10 min", "10min;", "-1s", "1y", "1.5h"] {
        let err = bad.parse::<TimeSpan>().unwrap_err().to_string();
        assert!(err.contains(&format!("{bad:?}")), "{err}");
    }
}

#[test]
fn php_limits_bounds_parse_as_php_sizes_and_a_default_over_its_max_is_refused() {
    let c = parse(
        "wordpress:\n  php_limits:\n    upload: {default: 32m, max: 2G}\n    time: {default: 90s, max: 10m}\n",
    )
    .unwrap();
    let b = c.wordpress.php_limits;
    assert_eq!(b.upload.max.to_string(), "2G");
    assert_eq!(b.time.max.to_string(), "600s");
    // Not given: the image's values.
    assert_eq!(b.memory, hostyard_core::php::PhpBounds::default().memory);
    let e = refusal("wordpress:\n  php_limits:\n    upload: {default: 1G, max: 512M}\n");
    assert!(
        e.contains(
            "wordpress.php_limits.upload.default 1G is over wordpress.php_limits.upload.max 512M"
        ),
        "{e}"
    );
    let e = refusal("wordpress:\n  php_limits:\n    upload: {default: lots, max: 512M}\n");
    assert!(e.contains("\"lots\" is not a size"), "{e}");
}
