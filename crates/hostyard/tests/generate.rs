//! `hostyard generate`: goldens, the writer's promises (atomic, only what
//! changed), `--check`, bad input, and that every unit passes
//! `systemd-analyze verify`; and `hostyard config get`, which setup.sh
//! reads the config with.
//!
//! Refresh the goldens with:
//! `HOSTYARD_BLESS=1 cargo test -p hostyard --test generate`

mod util;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use hostyard::units::{render_units, UnitFile};
use hostyard_config::{NodeConfig, DEFAULT_CONFIG_PATH};
use hostyard_core::{SiteKind, UnitRole};
use util::*;

fn default_units() -> Vec<UnitFile> {
    render_units(&NodeConfig::default(), Path::new(DEFAULT_CONFIG_PATH)).expect("renders")
}

fn as_tree(files: &[UnitFile]) -> BTreeMap<String, String> {
    files
        .iter()
        .map(|f| (f.name.clone(), f.contents.clone()))
        .collect()
}

/// Asserts that `out` succeeded and listed what it wrote: a line for each
/// verb and file of `lines`.
fn assert_wrote(out: &std::process::Output, lines: &[(&str, &Path)]) {
    assert_eq!(out.status.code(), Some(0), "{}", stderr(out));
    let listed: String = lines
        .iter()
        .map(|(verb, file)| format!("{verb} {}\n", file.display()))
        .collect();
    assert_eq!(stdout(out), listed);
}

/// `hostyard --config CONFIG generate --out OUT`.
fn generate(config: &str, out: &str) -> std::process::Output {
    hostyard(&["--config", config, "generate", "--out", out])
}

#[test]
fn rendered_units_for_the_default_config_match_the_goldens() {
    assert_golden_tree("units", &as_tree(&default_units()));
}

/// Every case under `tests/golden/cases/`: its `hostyard.yaml` rendered,
/// the whole tree (units and HAProxy's config) diffed against `rendered/`.
#[test]
fn every_golden_case_renders_its_whole_tree() {
    let cases_dir = golden_dir().join("cases");
    let mut cases: Vec<_> = fs::read_dir(&cases_dir)
        .expect("tests/golden/cases")
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("hostyard.yaml").is_file())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    cases.sort();
    assert!(cases.len() >= 2, "{cases:?}");
    for case in cases {
        let config_path = cases_dir.join(&case).join("hostyard.yaml");
        let config = NodeConfig::load(&config_path)
            .unwrap_or_else(|e| panic!("{}: {e}", config_path.display()));
        let units = render_units(&config, Path::new(DEFAULT_CONFIG_PATH)).expect("renders");
        let mut tree: BTreeMap<String, String> = units
            .into_iter()
            .map(|f| (format!("units/{}", f.name), f.contents))
            .collect();
        tree.insert(
            "haproxy/haproxy.cfg".to_string(),
            hostyard_haproxy::render_cfg(&config).expect("haproxy.cfg renders"),
        );
        assert_golden_tree(&format!("cases/{case}/rendered"), &tree);
    }
}

#[test]
fn generate_writes_what_render_units_returns() {
    // The binary and the pure function agree: the written tree is the
    // rendered one (with this test's config path).
    let dir = TempDir::new();
    fs::write(dir.join("hostyard.yaml"), "").expect("config");
    let out = generate(&dir.str("hostyard.yaml"), &dir.str("units"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let expected =
        render_units(&NodeConfig::default(), &dir.join("hostyard.yaml")).expect("renders");
    assert_eq!(read_tree(&dir.join("units")), as_tree(&expected));
    let printed = stdout(&out);
    let listed: Vec<&str> = printed.lines().collect();
    assert_eq!(listed.len(), expected.len(), "{listed:?}");
    assert!(
        listed.iter().all(|l| l.starts_with("created ")),
        "{listed:?}"
    );
    // The units name the config they were generated from.
    let confd = fs::read_to_string(dir.join("units/haproxy-confd.service")).expect("unit");
    let flag = format!("--config {}", dir.join("hostyard.yaml").display());
    assert!(confd.contains(&flag), "{confd}");
}

#[test]
fn cli_help_matches_the_goldens() {
    let mut help = BTreeMap::new();
    for (name, args) in [
        ("hostyard.txt", vec!["--help"]),
        ("hostyard-generate.txt", vec!["generate", "--help"]),
        ("hostyard-status.txt", vec!["status", "--help"]),
        ("hostyard-mail.txt", vec!["mail", "--help"]),
        ("hostyard-mail-wait.txt", vec!["mail-wait", "--help"]),
        ("hostyard-config.txt", vec!["config", "--help"]),
        ("hostyard-config-get.txt", vec!["config", "get", "--help"]),
        ("hostyard-site-forget.txt", vec!["site", "forget", "--help"]),
        ("hostyard-site-claim.txt", vec!["site", "claim", "--help"]),
        (
            "hostyard-site-transfer.txt",
            vec!["site", "transfer", "--help"],
        ),
        ("hostyard-names.txt", vec!["names", "--help"]),
        (
            "hostyard-wordpress-password.txt",
            vec!["wordpress", "password", "--help"],
        ),
        (
            "hostyard-wordpress-reset-password.txt",
            vec!["wordpress", "reset-password", "--help"],
        ),
        ("hostyard-etcd.txt", vec!["etcd", "--help"]),
        (
            "hostyard-etcd-placement.txt",
            vec!["etcd", "placement", "--help"],
        ),
        ("hostyard-etcd-check.txt", vec!["etcd", "check", "--help"]),
        ("hostyard-image-id.txt", vec!["image-id", "--help"]),
        ("hostyard-tls.txt", vec!["tls", "--help"]),
        ("hostyard-tls-renew.txt", vec!["tls", "renew", "--help"]),
    ] {
        let out = hostyard(&args);
        assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
        help.insert(name.to_string(), stdout(&out));
    }
    assert_golden_tree("help", &help);
}

fn mtime(path: &Path) -> SystemTime {
    fs::metadata(path)
        .and_then(|m| m.modified())
        .expect("mtime")
}

#[test]
fn generate_into_an_existing_dir_rewrites_only_what_changed() {
    let dir = TempDir::new();
    let config = dir.join("hostyard.yaml");
    fs::write(&config, "").expect("config");
    let units = dir.join("units");
    let args = |extra: &[&str]| {
        let mut a = vec![
            "--config".to_string(),
            config.display().to_string(),
            "generate".to_string(),
            "--out".to_string(),
            units.display().to_string(),
        ];
        a.extend(extra.iter().map(|s| s.to_string()));
        a
    };
    let run = |extra: &[&str]| {
        let a = args(extra);
        hostyard(&a.iter().map(String::as_str).collect::<Vec<_>>())
    };
    assert_eq!(run(&[]).status.code(), Some(0));

    // Put every file an hour in the past, so any rewrite shows.
    let past = SystemTime::now() - Duration::from_secs(3600);
    let names: Vec<String> = read_tree(&units).into_keys().collect();
    for name in &names {
        fs::File::options()
            .write(true)
            .open(units.join(name))
            .and_then(|f| f.set_modified(past))
            .expect("set mtime");
    }
    let edited = units.join("static-git@.service");
    fs::write(&edited, "# edited by hand\n").expect("edit");
    fs::File::options()
        .write(true)
        .open(&edited)
        .and_then(|f| f.set_modified(past))
        .expect("set mtime");
    let removed = units.join("hostyard.target");
    fs::remove_file(&removed).expect("remove");
    let stray = units.join("unrelated.service");
    fs::write(&stray, "[Unit]\n").expect("stray");

    let out = run(&[]);
    assert_wrote(&out, &[("created", &removed), ("updated", &edited)]);
    for name in &names {
        let path = units.join(name);
        if path == edited || path == removed {
            assert!(mtime(&path) > past, "{name} was rewritten");
        } else {
            assert_eq!(mtime(&path), past, "{name} was left alone");
        }
    }
    assert_eq!(fs::read_to_string(&stray).expect("stray"), "[Unit]\n");
    // No temp file is left behind.
    let leftovers: Vec<String> = read_tree(&units)
        .into_keys()
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");

    // A config change rewrites exactly the units it affects.
    fs::write(&config, "git:\n  poll_interval: 1h\n").expect("config");
    let out = run(&[]);
    assert_wrote(
        &out,
        &[("updated", &units.join("static-git-puller@.timer"))],
    );

    // Nothing to do: nothing written, nothing listed.
    let out = run(&[]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(stdout(&out), "");
}

#[test]
fn check_exits_1_listing_missing_and_different_files_and_writes_nothing() {
    let (dir, config) = dir_with_config("");
    let units = dir.str("units");

    let out = hostyard(&["--config", &config, "generate", "--out", &units, "--check"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    assert_eq!(stdout(&out).lines().count(), 29, "{}", stdout(&out));
    assert!(stdout(&out).lines().all(|l| l.starts_with("missing ")));
    assert!(!Path::new(&units).exists(), "--check created the out dir");

    let out = generate(&config, &units);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let out = hostyard(&["--config", &config, "generate", "--out", &units, "--check"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), "");

    let edited = Path::new(&units).join("mysql@.service");
    fs::write(&edited, "changed\n").expect("edit");
    let before = read_tree(Path::new(&units));
    let out = hostyard(&["--config", &config, "generate", "--out", &units, "--check"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(stdout(&out), format!("differs {}\n", edited.display()));
    assert_eq!(
        read_tree(Path::new(&units)),
        before,
        "--check wrote something"
    );
}

#[test]
fn bad_config_is_one_line_naming_the_field_exit_2_and_nothing_written() {
    for (yaml, field) in [
        (
            "git:\n  poll_interval: \"10 minutes\"\n",
            "git.poll_interval",
        ),
        ("haproxy:\n  http_prot: 80\n", "http_prot"),
        ("docker:\n  network: \"a b\"\n", "docker.network"),
        ("bin_dir: \"/usr/local/b%in\"\n", "bin_dir"),
        ("images:\n  static: \"x;rm -rf /\"\n", "images.static"),
        // A path the unit that reads it cannot see: refused with the unit.
        (
            "tls:\n  acme:\n    ca_file: /tmp/pebble.pem\n",
            "tls.acme.ca_file: /tmp/pebble.pem cannot be read by haproxy-confd.service",
        ),
    ] {
        let (dir, config) = dir_with_config(yaml);
        let units = dir.str("units");
        let out = generate(&config, &units);
        let err = stderr(&out);
        assert_eq!(out.status.code(), Some(2), "{yaml}: {err}");
        assert_eq!(err.lines().count(), 1, "{yaml}: {err}");
        assert!(err.starts_with("hostyard: "), "{err}");
        assert!(err.contains(field), "{yaml}: {err}");
        assert!(err.contains(&config), "names the file: {err}");
        assert!(!Path::new(&units).exists(), "{yaml}: wrote units");
        assert_eq!(stdout(&out), "");
    }
}

#[test]
fn every_problem_of_a_config_is_a_line_of_its_own_with_its_key() {
    let (dir, config) = dir_with_config(
        "mail:\n  relayhost: \"a b\"\nhaproxy:\n  http_port: 443\ngit:\n  keep_trees: 0\n",
    );
    let units = dir.str("units");
    let out = generate(&config, &units);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(2), "{err}");
    let keys: Vec<&str> = err
        .lines()
        .map(|l| {
            l.strip_prefix(&format!("hostyard: {config}: "))
                .and_then(|l| l.split(':').next())
                .unwrap_or_else(|| panic!("{l:?} names the program and the file"))
        })
        .collect();
    assert_eq!(
        keys,
        ["git.keep_trees", "haproxy.https_port", "mail.relayhost"],
        "{err}"
    );
    assert!(!Path::new(&units).exists(), "wrote units");
}

#[test]
fn missing_config_named_explicitly_is_an_error() {
    let dir = TempDir::new();
    let out = generate(&dir.str("nope.yaml"), &dir.str("units"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(stderr(&out).contains("nope.yaml"), "{}", stderr(&out));
    assert!(!dir.join("units").exists());
}

#[test]
fn config_path_that_cannot_go_into_a_unit_is_refused() {
    let dir = TempDir::new();
    let config = dir.str("host yard.yaml");
    fs::write(&config, "").expect("config");
    let out = generate(&config, &dir.str("units"));
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert_eq!(stderr(&out).lines().count(), 1, "{}", stderr(&out));
    assert!(stderr(&out).contains("--config"), "{}", stderr(&out));
    assert!(!dir.join("units").exists());
}

#[test]
fn usage_errors_exit_2() {
    for args in [
        vec!["generate"],
        vec!["frobnicate"],
        vec!["generate", "--out"],
    ] {
        let out = hostyard(&args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert_eq!(
            stderr(&out).lines().count(),
            1,
            "{args:?}: {}",
            stderr(&out)
        );
    }
}

/// A unit's settings as (key, value) pairs, continuation lines joined.
fn settings(contents: &str) -> Vec<(String, String)> {
    let mut joined = Vec::new();
    let mut current = String::new();
    for line in contents.lines() {
        let line = line.trim();
        if line.starts_with('#') || line.is_empty() {
            continue;
        }
        if let Some(head) = line.strip_suffix('\\') {
            current.push_str(head);
            current.push(' ');
            continue;
        }
        current.push_str(line);
        joined.push(std::mem::take(&mut current));
    }
    joined
        .into_iter()
        .filter_map(|l| {
            l.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect()
}

/// The settings of the unit `name` among `units`.
fn settings_of(units: &[UnitFile], name: &str) -> Vec<(String, String)> {
    let unit = units.iter().find(|u| u.name == name).expect(name);
    settings(&unit.contents)
}

fn values<'a>(s: &'a [(String, String)], key: &str) -> Vec<&'a str> {
    s.iter()
        .filter(|(k, _)| k == key)
        .flat_map(|(_, v)| v.split_whitespace())
        .collect()
}

#[test]
fn every_unit_handing_the_instance_to_docker_requires_and_follows_its_importer() {
    let units = default_units();
    let docker = NodeConfig::default().docker.binary;
    let docker = docker.to_str().expect("utf-8");
    let mut checked = 0;
    for unit in &units {
        let s = settings(&unit.contents);
        let hands_instance_to_docker = s.iter().any(|(k, v)| {
            k.starts_with("Exec")
                && v.trim_start_matches(['-', '+']).starts_with(docker)
                && v.contains("%i")
        });
        if !hands_instance_to_docker {
            continue;
        }
        checked += 1;
        let kind = if unit.name.starts_with("mysql@") || unit.name.starts_with("wordpress-cron@") {
            SiteKind::Wordpress
        } else {
            SiteKind::ALL
                .into_iter()
                .find(|k| unit.name == k.template_unit(UnitRole::Site))
                .unwrap_or_else(|| panic!("{} runs docker with %i but is no site unit", unit.name))
        };
        let importer = kind.instance_unit_in_template(UnitRole::Importer);
        assert!(
            values(&s, "Requires").contains(&importer.as_str()),
            "{}",
            unit.name
        );
        assert!(
            values(&s, "After").contains(&importer.as_str()),
            "{}",
            unit.name
        );
    }
    assert_eq!(checked, 5, "three site units, mysql@ and wordpress-cron@");
}

/// With `/data` on a volume that mounts late, a unit that started first
/// would create fresh site data on the root disk.
#[test]
fn every_unit_touching_the_data_root_waits_for_its_mount() {
    let config = NodeConfig {
        data_root: PathBuf::from("/srv/hostyard-data"),
        ..NodeConfig::default()
    };
    let units = render_units(&config, Path::new(DEFAULT_CONFIG_PATH)).expect("renders");
    let mut waiting = Vec::new();
    for unit in &units {
        let s = settings(&unit.contents);
        let touches = s
            .iter()
            .any(|(k, v)| k != "RequiresMountsFor" && v.contains("/srv/hostyard-data"));
        let waits = values(&s, "RequiresMountsFor") == ["/srv/hostyard-data"];
        assert_eq!(
            touches, waits,
            "{}: uses the data root: {touches}, RequiresMountsFor it: {waits}",
            unit.name
        );
        if waits {
            waiting.push(unit.name.as_str());
        }
    }
    // Each importer, site, puller and mysql@ unit, confd, HAProxy, postfix.
    for name in [
        "static-importer@.service",
        "wordpress@.service",
        "mysql@.service",
        "static-git-puller@.service",
        "haproxy-confd.service",
        "haproxy.service",
        "postfix.service",
    ] {
        assert!(waiting.contains(&name), "{name} does not wait: {waiting:?}");
    }
}

/// `Requires=` propagates a restart: `systemctl restart haproxy-confd`
/// restarted HAProxy's container too and dropped requests.
#[test]
fn haproxy_follows_confd_without_being_restarted_by_it_and_stops_gracefully() {
    let units = default_units();
    let unit = units
        .iter()
        .find(|u| u.name == "haproxy.service")
        .expect("haproxy.service");
    let s = settings(&unit.contents);
    for binding in ["Requires", "BindsTo", "PartOf", "Requisite"] {
        assert!(
            !values(&s, binding).contains(&"haproxy-confd.service"),
            "haproxy.service {binding}= confd"
        );
    }
    assert!(values(&s, "Wants").contains(&"haproxy-confd.service"));
    assert!(values(&s, "After").contains(&"haproxy-confd.service"));
    // SIGUSR1 is HAProxy's soft stop: finish what is in flight.
    assert!(
        values(&s, "ExecStart").contains(&"SIGUSR1"),
        "{}",
        unit.contents
    );
}

/// `docker inspect` shows a container's environment: WordPress used to
/// get MariaDB's root password through the shared env file.
#[test]
fn wordpress_gets_its_own_env_file_and_only_mariadb_gets_the_root_one() {
    let units = default_units();
    let env_files = |name: &str| -> Vec<String> {
        let s = settings_of(&units, name);
        let start = values(&s, "ExecStart");
        start
            .windows(2)
            .filter(|w| w[0] == "--env-file")
            .map(|w| w[1].to_string())
            .collect()
    };
    assert_eq!(
        env_files("wordpress@.service"),
        ["/data/domains/%i/secrets/wp.env"]
    );
    assert_eq!(
        env_files("mysql@.service"),
        ["/data/domains/%i/secrets/db.env"]
    );
}

/// No container ran with a memory, CPU or process limit: one leak or fork
/// bomb could take the server, etcd and HAProxy included.
#[test]
fn every_container_runs_with_memory_cpu_and_process_limits() {
    let mut checked = 0;
    for unit in &default_units() {
        let s = settings(&unit.contents);
        let start = values(&s, "ExecStart");
        if !start.windows(2).any(|w| w == ["run", "--rm"]) {
            continue;
        }
        checked += 1;
        for flag in ["--memory", "--memory-swap", "--pids-limit", "--cpus"] {
            let value = start
                .windows(2)
                .find(|w| w[0] == flag)
                .map(|w| w[1])
                .unwrap_or_else(|| panic!("{}: no {flag}", unit.name));
            // Site units read them from their Environment= (a drop-in may
            // change them); each such variable has a default there.
            if let Some(var) = value.strip_prefix("${").and_then(|v| v.strip_suffix('}')) {
                assert!(
                    values(&s, "Environment")
                        .iter()
                        .any(|e| e.starts_with(&format!("{var}="))),
                    "{}: {var} has no default",
                    unit.name
                );
            }
        }
    }
    // Three site kinds, mysql@, HAProxy and postfix.
    assert_eq!(checked, 6);
}

/// Site containers and databases shared one bridge: WordPress A could
/// connect to `mysql_B:3306`.
#[test]
fn a_database_shares_a_network_with_its_own_wordpress_only() {
    let units = default_units();
    let networks = |name: &str| -> Vec<String> {
        let s = settings_of(&units, name);
        values(&s, "ExecStart")
            .windows(2)
            .filter(|w| w[0] == "--network")
            .map(|w| w[1].to_string())
            .collect()
    };
    assert_eq!(networks("mysql@.service"), ["hostyard-db-%i"]);
    assert_eq!(
        networks("wordpress@.service"),
        ["hostyard", "hostyard-db-%i"]
    );
    assert_eq!(networks("static@.service"), ["hostyard"]);
    assert_eq!(networks("static-git@.service"), ["hostyard"]);
}

#[test]
fn no_unit_runs_a_shell() {
    for unit in default_units() {
        for (k, v) in settings(&unit.contents) {
            if !k.starts_with("Exec") {
                continue;
            }
            let program = v.trim_start_matches(['-', '+', '@', ':', '!']);
            let program = program.split_whitespace().next().unwrap_or_default();
            let name = program.rsplit('/').next().unwrap_or_default();
            assert!(
                !["sh", "bash", "dash", "zsh", "env"].contains(&name),
                "{}: {k}={v}",
                unit.name
            );
            assert!(
                program.starts_with('/'),
                "{}: {k}={v}: absolute path",
                unit.name
            );
        }
    }
}

#[test]
fn site_units_pull_in_their_helpers_as_the_design_says() {
    let units = as_tree(&default_units());
    for kind in SiteKind::ALL {
        let s = settings(&units[&kind.template_unit(UnitRole::Site)]);
        let discovery = kind.instance_unit_in_template(UnitRole::Discovery);
        assert!(values(&s, "Wants").contains(&discovery.as_str()));
        assert_eq!(
            values(&s, "Wants").contains(
                &kind
                    .timer_in_template(hostyard_core::UnitRole::Puller)
                    .as_str()
            ),
            kind.has_puller(),
            "{kind}"
        );
        assert_eq!(
            values(&s, "Requires").contains(&"mysql@%i.service"),
            kind.has_database(),
            "{kind}"
        );
        assert_eq!(values(&s, "Type"), ["exec"]);
        assert_eq!(values(&s, "WantedBy"), ["multi-user.target"]);
        assert!(values(&s, "Restart") == ["on-failure"]);
        assert!(!values(&s, "StartLimitBurst").is_empty());

        // Discovery stops with the site but must not wait for it: the
        // site's ExecStartPost waits for discovery.
        let d = settings(&units[&kind.template_unit(UnitRole::Discovery)]);
        let site = kind.instance_unit_in_template(UnitRole::Site);
        assert_eq!(values(&d, "BindsTo"), [site.as_str()]);
        assert!(
            !values(&d, "After").contains(&site.as_str()),
            "{kind}: deadlock"
        );
        assert_eq!(values(&d, "Type"), ["notify"]);

        let i = settings(&units[&kind.template_unit(UnitRole::Importer)]);
        assert_eq!(values(&i, "Type"), ["oneshot"]);
        assert_eq!(values(&i, "RemainAfterExit"), ["yes"]);
    }
    let timer = settings(&units["static-git-puller@.timer"]);
    assert_eq!(values(&timer, "Persistent"), ["true"]);
    assert_eq!(values(&timer, "OnUnitActiveSec"), ["10min"]);
    assert!(!values(&timer, "RandomizedDelaySec").is_empty());
    // WordPress's cron runs on a timer the site pulls in and stops, never
    // on a site that is not running.
    let wp = settings(&units["wordpress@.service"]);
    assert!(values(&wp, "Wants").contains(&"wordpress-cron@%i.timer"));
    let cron_timer = settings(&units["wordpress-cron@.timer"]);
    assert_eq!(values(&cron_timer, "PartOf"), ["wordpress@%i.service"]);
    assert_eq!(values(&cron_timer, "OnUnitActiveSec"), ["1min"]);
    let cron = settings(&units["wordpress-cron@.service"]);
    assert_eq!(values(&cron, "Requisite"), ["wordpress@%i.service"]);
}

/// The real helper binaries, from the target dir cargo built `hostyard`
/// The binaries beside `hostyard` the units run.
fn helpers() -> impl Iterator<Item = &'static str> {
    hostyard::names::BINARIES
        .into_iter()
        .filter(|b| *b != hostyard::units::HOSTYARD_BIN)
}

/// into. `cargo test --workspace` (what scripts/test.sh runs) builds them.
fn helper_bins() -> PathBuf {
    let dir = hostyard_bin().parent().expect("target dir").to_path_buf();
    for helper in helpers() {
        assert!(
            dir.join(helper).is_file(),
            "{} is missing: build the helpers first (cargo build --workspace, or \
             scripts/test.sh); systemd-analyze verify checks that ExecStart programs exist",
            dir.join(helper).display()
        );
    }
    dir
}

/// Writes a config for `dir` whose programs all exist: `bin_dir` holds
/// links to the real helpers, docker is the real client, the data root is
/// `dir/data` (not created). Returns the config's path.
fn config_with_real_programs(dir: &TempDir) -> PathBuf {
    let docker = search_path("docker")
        .expect("docker is missing: apt-get install docker.io (scripts/test.sh does)");
    let bin = dir.join("bin");
    fs::create_dir(&bin).expect("bin dir");
    let built = helper_bins();
    for helper in hostyard::names::BINARIES {
        std::os::unix::fs::symlink(built.join(helper), bin.join(helper)).expect("link");
    }
    let config = dir.join("hostyard.yaml");
    fs::write(
        &config,
        format!(
            "data_root: {}\nbin_dir: {}\ndocker:\n  binary: {}\netcd:\n  endpoints: [\"http://127.0.0.1:9\"]\n",
            dir.join("data").display(),
            bin.display(),
            docker.display()
        ),
    )
    .expect("config");
    config
}

#[test]
fn every_generated_unit_passes_systemd_analyze_verify() {
    let analyze = search_path("systemd-analyze")
        .expect("systemd-analyze is missing: apt-get install systemd (scripts/test.sh does)");
    let dir = TempDir::new();
    // verify checks that every Exec program exists and is executable.
    let config = config_with_real_programs(&dir);
    let units = dir.join("units");
    let out = generate(
        config.to_str().expect("utf-8"),
        units.to_str().expect("utf-8"),
    );
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));

    // Templates are verified as instances, the way systemd loads them;
    // verify looks for the template next to the named file.
    let names: Vec<PathBuf> = read_tree(&units)
        .into_keys()
        .map(|name| units.join(name.replace("@.", "@example.com.")))
        .collect();
    assert_eq!(names.len(), 29);
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .args(&names)
        .current_dir(dir.path())
        .env("SYSTEMD_LOG_COLOR", "0")
        .output()
        .expect("systemd-analyze runs");
    assert!(
        out.status.success() && out.stderr.is_empty(),
        "systemd-analyze verify failed ({:?}):\n{}{}",
        out.status,
        stdout(&out),
        stderr(&out)
    );
}

#[test]
fn systemd_analyze_verify_catches_a_broken_unit() {
    // The verify test above is only worth something if verify complains
    // when it should, in the way that test calls it.
    let analyze = search_path("systemd-analyze").expect("systemd-analyze is missing");
    let dir = TempDir::new();
    fs::write(
        dir.join("broken@.service"),
        "[Service]\nExecStart=/nonexistent/program %i\n",
    )
    .expect("unit");
    let out = Command::new(&analyze)
        .arg("verify")
        .arg("--man=no")
        .arg(dir.join("broken@example.com.service"))
        .current_dir(dir.path())
        .output()
        .expect("systemd-analyze runs");
    assert!(!out.status.success(), "{}", stderr(&out));
    assert_stderr_has(&out, "/nonexistent/program");
}

/// Instance names systemd accepts that are not domains. systemd hands `%i`
/// over verbatim (escapes such as `\x2f` included).
const HOSTILE_INSTANCES: [&str; 8] = [
    "..",
    "a..b",
    "x.com.",
    "-x.com",
    "\\x2fetc\\x2fpasswd",
    "a_b.com",
    "localhost",
    "a:b.com",
];

#[test]
fn hostile_instance_names_are_refused_by_every_helper_before_anything_is_written() {
    let dir = TempDir::new();
    let config = config_with_real_programs(&dir);
    let text = fs::read_to_string(&config).expect("config");
    let node: NodeConfig = NodeConfig::parse(&text, &config).expect("the test config is valid");
    let units = render_units(&node, &config).expect("renders");
    let bin = node.bin_dir.to_str().expect("utf-8").to_string();
    let mut commands = 0;
    for unit in &units {
        for (key, value) in settings(&unit.contents) {
            let line = value.trim_start_matches(['-', '+']);
            if !key.starts_with("Exec") || !line.starts_with(&bin) || !line.contains("%i") {
                continue;
            }
            commands += 1;
            for instance in HOSTILE_INSTANCES {
                // What systemd would run for `<unit>@<instance>`.
                let argv: Vec<String> = line
                    .split_whitespace()
                    .map(|w| w.replace("%i", instance))
                    .collect();
                let mut child = Command::new(&argv[0])
                    .args(&argv[1..])
                    .env_remove("HOSTYARD_CONFIG")
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("helper starts");
                let deadline = std::time::Instant::now() + Duration::from_secs(20);
                let status = loop {
                    if let Some(status) = child.try_wait().expect("wait") {
                        break status;
                    }
                    if std::time::Instant::now() > deadline {
                        let _ = child.kill();
                        let _ = child.wait();
                        panic!(
                            "{}: {argv:?} did not refuse {instance:?} within 20 s",
                            unit.name
                        );
                    }
                    std::thread::sleep(Duration::from_millis(20));
                };
                let mut err = String::new();
                if let Some(mut e) = child.stderr.take() {
                    use std::io::Read;
                    let _ = e.read_to_string(&mut err);
                }
                assert_eq!(status.code(), Some(2), "{}: {argv:?}: {err}", unit.name);
                assert_eq!(err.lines().count(), 1, "{}: {argv:?}: {err}", unit.name);
                assert!(
                    !dir.join("data").exists(),
                    "{}: {argv:?} wrote under the data root",
                    unit.name
                );
            }
        }
    }
    // importer x3, discovery run x3, discovery wait x3 (site units), puller,
    // backup run and backup failed.
    assert_eq!(commands, 12);
}

#[test]
fn helper_units_are_rated_ok_by_systemd_analyze_security() {
    let analyze = search_path("systemd-analyze").expect("systemd-analyze is missing");
    let dir = TempDir::new();
    for f in default_units() {
        fs::write(dir.join(&f.name), &f.contents).expect("unit");
    }
    let helpers: Vec<String> = SiteKind::ALL
        .into_iter()
        .flat_map(|k| {
            let mut units = vec![
                k.instance_unit(UnitRole::Importer, &example()),
                k.instance_unit(UnitRole::Discovery, &example()),
            ];
            if k.has_puller() {
                units.push(k.instance_unit(UnitRole::Puller, &example()));
            }
            units
        })
        .chain(["haproxy-confd.service".to_string()])
        .collect();
    for unit in helpers {
        // Exposure 4.9 is the top of systemd's "OK" band; the figures are
        // printed for the record (they were 1.4 to 2.1 on systemd 252).
        let out = Command::new(&analyze)
            .args(["security", "--offline=true", "--threshold=49", "--no-pager"])
            .arg(dir.join(&unit))
            .current_dir(dir.path())
            .output()
            .expect("systemd-analyze runs");
        let report = stdout(&out);
        let verdict = report
            .lines()
            .find(|l| l.contains("Overall exposure level"))
            .unwrap_or("no verdict")
            .to_string();
        eprintln!("{verdict}");
        assert!(
            out.status.success(),
            "{unit}: {verdict}\n{report}{}",
            stderr(&out)
        );
    }
}

fn example() -> hostyard_core::Domain {
    hostyard_core::Domain::parse("example.com").expect("valid")
}

/// A Debian 13 image, as servers run, that boots systemd 257 as PID 1, with
/// etcd (for confd) and HAProxy 3.0 (confd's `haproxy -c`: the config uses
/// 3.0's options). Bump the tag when the recipe changes.
const SYSTEMD_IMAGE: &str = "hostyard-test-systemd:2";
const SYSTEMD_DOCKERFILE: &str = "FROM debian:trixie-slim
RUN apt-get update -qq \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \\
    systemd systemd-sysv dbus etcd-server haproxy >/dev/null \\
 && systemctl disable haproxy.service \\
 && rm -rf /var/lib/apt/lists/*
";

/// Builds [`SYSTEMD_IMAGE`] once per machine; `flock` keeps parallel test
/// runs from building it twice.
fn systemd_image() -> &'static str {
    let lock = "/tmp/hostyard-test-systemd.lock";
    let script = format!(
        "docker image inspect {SYSTEMD_IMAGE} >/dev/null 2>&1 && exit 0; \
         {root}/scripts/base-image.sh trixie >&2 && docker build -q -t {SYSTEMD_IMAGE} - >&2",
        root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../..")
            .display()
    );
    let mut child = Command::new("flock")
        .args([lock, "bash", "-c", &script])
        .stdin(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("flock runs (util-linux)");
    {
        use std::io::Write;
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(SYSTEMD_DOCKERFILE.as_bytes())
            .expect("dockerfile");
    }
    let out = child.wait_with_output().expect("build finishes");
    assert!(
        out.status.success(),
        "building {SYSTEMD_IMAGE} failed: {}",
        stderr(&out)
    );
    SYSTEMD_IMAGE
}

/// `docker exec <container> <args>`.
fn exec(container: &hostyard_testsupport::Container, args: &[&str]) -> std::process::Output {
    Command::new("docker")
        .arg("exec")
        .arg(container.id())
        .args(args)
        .output()
        .expect("docker exec runs")
}

fn show(container: &hostyard_testsupport::Container, unit: &str, property: &str) -> String {
    let out = exec(
        container,
        &["systemctl", "show", "--value", "-p", property, unit],
    );
    stdout(&out).trim().to_string()
}

#[test]
fn units_work_under_real_systemd() {
    hostyard_testsupport::require_docker();
    let image = systemd_image();
    let name = hostyard_testsupport::unique_name("hostyard-systemd");
    // systemd as PID 1 in a container: the capabilities, tmpfs mounts and
    // cgroup tree it needs, instead of --privileged.
    let server = hostyard_testsupport::Container::run(&[
        "--name",
        &name,
        "--cap-add",
        "SYS_ADMIN",
        "--cap-add",
        "NET_ADMIN",
        "--security-opt",
        "seccomp=unconfined",
        "--security-opt",
        "apparmor=unconfined",
        "--tmpfs",
        "/run",
        "--tmpfs",
        "/run/lock",
        "-v",
        "/sys/fs/cgroup:/sys/fs/cgroup:rw",
        image,
        "/lib/systemd/systemd",
    ])
    .expect("server container starts");
    hostyard_testsupport::wait_until(
        "systemd in the container is up",
        Duration::from_secs(90),
        || {
            let state = stdout(&exec(&server, &["systemctl", "is-system-running"]));
            matches!(state.trim(), "running" | "degraded").then_some(())
        },
    )
    .expect("systemd boots");

    // The default config (no /etc/hostyard/hostyard.yaml: all defaults),
    // the real helpers in /usr/local/bin.
    let dir = TempDir::new();
    for f in default_units() {
        let path = dir.join(&f.name);
        fs::write(&path, &f.contents).expect("unit");
        hostyard_testsupport::docker(&[
            "cp",
            path.to_str().expect("utf-8"),
            &format!("{}:/etc/systemd/system/", server.id()),
        ])
        .expect("copy unit");
    }
    let built = helper_bins();
    for helper in helpers() {
        hostyard_testsupport::docker(&[
            "cp",
            built.join(helper).to_str().expect("utf-8"),
            &format!("{}:/usr/local/bin/", server.id()),
        ])
        .expect("copy helper");
    }
    let ok = |args: &[&str]| {
        let out = exec(&server, args);
        assert!(
            out.status.success(),
            "{args:?}: {}{}",
            stdout(&out),
            stderr(&out)
        );
        stdout(&out)
    };
    ok(&["systemctl", "daemon-reload"]);

    // Plain files in /etc/systemd/system can be enabled (generated ones
    // cannot), so a site survives a reboot.
    ok(&["systemctl", "enable", "static-git@example.com"]);
    assert_eq!(
        ok(&["systemctl", "is-enabled", "static-git@example.com"]).trim(),
        "enabled"
    );
    let deps = ok(&[
        "systemctl",
        "list-dependencies",
        "--plain",
        "--no-pager",
        "static-git@example.com",
    ]);
    for unit in [
        "static-git-importer@example.com.service",
        "static-git-discovery@example.com.service",
        "static-git-puller@example.com.timer",
    ] {
        assert!(deps.contains(unit), "{unit} not pulled in:\n{deps}");
    }

    // The importers work inside their sandboxes, data root created first.
    ok(&["systemctl", "start", "static-importer@example.com"]);
    ok(&["test", "-d", "/data/domains/example.com/www"]);
    ok(&["systemctl", "start", "wordpress-importer@example.org"]);
    assert_eq!(
        ok(&["stat", "-c", "%a", "/data/domains/example.org/secrets"]).trim(),
        "700"
    );

    // A hostile instance stops at the importer: exit 2, and the site's
    // docker commands never run.
    let out = exec(&server, &["systemctl", "start", "static@a..b.service"]);
    assert!(!out.status.success());
    assert_eq!(
        show(&server, "static-importer@a..b.service", "ExecMainStatus"),
        "2"
    );
    assert_eq!(
        show(
            &server,
            "static@a..b.service",
            "ExecMainStartTimestampMonotonic"
        ),
        "0"
    );
    let pre = show(&server, "static@a..b.service", "ExecStartPre");
    assert_eq!(pre.matches("pid=").count(), 2, "{pre}");
    assert_eq!(pre.matches("pid=0 ").count(), 2, "never ran: {pre}");
    let domains = ok(&["ls", "-A", "/data/domains"]);
    assert!(!domains.contains("a..b"), "{domains}");

    // A site's backup timer stops with the site (it kept running, and
    // backing up, after its site was stopped or removed).
    ok(&["systemctl", "start", "backup@example.com.timer"]);
    assert_eq!(
        show(&server, "backup@example.com.timer", "ActiveState"),
        "active"
    );
    ok(&["systemctl", "stop", "static@example.com"]);
    assert_eq!(
        show(&server, "backup@example.com.timer", "ActiveState"),
        "inactive",
        "backup@example.com.timer outlived its site"
    );

    // confd starts in its sandbox (etcd, haproxy -c, runtime dir) and
    // reports READY.
    ok(&["systemctl", "start", "haproxy-confd.service"]);
    assert_eq!(
        show(&server, "haproxy-confd.service", "ActiveState"),
        "active"
    );
    ok(&["test", "-s", "/data/runtime/haproxy/haproxy.cfg"]);
}

/// `hostyard config get KEY` through the binary: what setup.sh relies on.
fn config_get(config: &str, key: &str) -> std::process::Output {
    let dir = TempDir::new();
    fs::write(dir.join("hostyard.yaml"), config).expect("config");
    hostyard(&["--config", &dir.str("hostyard.yaml"), "config", "get", key])
}

#[test]
fn config_get_prints_scalars_as_they_are_and_lists_one_item_a_line() {
    let config = "bin_dir: /opt/hostyard/bin\n\
                  etcd:\n  endpoints: [\"http://10.0.0.1:2379\", 'http://10.0.0.2:2379']\n\
                  images:\n  static_git: \"reg.example/static-git:2\"  # pinned\n";
    for (key, want) in [
        ("bin_dir", "/opt/hostyard/bin\n"),
        (
            "etcd.endpoints",
            "http://10.0.0.1:2379\nhttp://10.0.0.2:2379\n",
        ),
        ("images.static_git", "reg.example/static-git:2\n"),
        // Defaults for what the file does not set.
        ("data_root", "/data\n"),
        ("images.static", "hostyard/static\n"),
        ("haproxy.http_port", "80\n"),
        ("haproxy.frontend_rules", ""),
        ("discovery.expect_status", ""),
    ] {
        let out = config_get(config, key);
        assert_eq!(out.status.code(), Some(0), "{key}: {}", stderr(&out));
        assert_eq!(stdout(&out), want, "{key}");
    }
    let out = config_get("", "etcd.endpoints");
    assert_eq!(stdout(&out), "http://127.0.0.1:2379\n");
}

#[test]
fn config_get_of_an_unknown_key_or_a_section_exits_2_naming_it() {
    for (key, says) in [
        ("etcd.endpoint", "unknown config key \"etcd.endpoint\""),
        ("bin_dir.x", "unknown config key \"bin_dir.x\""),
        ("etcd", "\"etcd\" is a section"),
    ] {
        let out = config_get("", key);
        assert_eq!(out.status.code(), Some(2), "{key}");
        assert_eq!(stdout(&out), "", "{key}");
        let err = stderr(&out);
        assert!(err.starts_with("hostyard: "), "{err}");
        assert!(err.contains(says), "{err}");
        assert!(err.contains("etcd.endpoints"), "lists the keys: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

#[test]
fn config_get_refuses_an_invalid_config_like_every_binary() {
    let out = config_get(
        "etcd:\n  endpoints: [\"10.0.0.1:2379\"]\n",
        "etcd.endpoints",
    );
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(stdout(&out), "");
    assert!(stderr(&out).contains("etcd.endpoints"), "{}", stderr(&out));
    let out = config_get("bin_dirr: /x\n", "bin_dir");
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("bin_dirr"), "{}", stderr(&out));
}

#[test]
fn backups_are_daily_randomized_persistent_and_loud_and_start_with_sites_once_configured() {
    let plain =
        render_units(&NodeConfig::default(), Path::new(DEFAULT_CONFIG_PATH)).expect("renders");
    let units: BTreeMap<_, _> = plain
        .iter()
        .map(|u| (u.name.clone(), &u.contents))
        .collect();
    let timer = settings(units["backup@.timer"]);
    assert_eq!(values(&timer, "OnCalendar"), ["daily"]);
    assert_eq!(values(&timer, "Persistent"), ["true"]);
    assert_eq!(values(&timer, "RandomizedDelaySec"), ["1h"]);
    let service = settings(units["backup@.service"]);
    assert_eq!(values(&service, "Type"), ["oneshot"]);
    assert_eq!(values(&service, "OnFailure"), ["backup-failed@%i.service"]);
    assert_eq!(
        values(&service, "ExecStart").join(" "),
        "/usr/local/bin/hostyard --config /etc/hostyard/hostyard.yaml backup run -- %i"
    );
    // Twelve hours from the backups: a prune or check locks the
    // repository exclusively.
    for (job, calendar) in [("prune", "*-*-* 12:00:00"), ("check", "Sun *-*-* 12:30:00")] {
        let s = settings(units[&format!("backup-{job}.service")]);
        assert_eq!(
            values(&s, "OnFailure"),
            [format!("backup-failed@{job}.service")]
        );
        let t = settings(units[&format!("backup-{job}.timer")]);
        assert_eq!(values(&t, "OnCalendar").join(" "), calendar);
        assert_eq!(values(&t, "Persistent"), ["true"]);
    }
    // No repository: nothing starts a backup.
    for unit in &plain {
        assert!(!unit.contents.contains("Wants=backup"), "{}", unit.name);
    }

    let config = NodeConfig::parse(
        "backup:\n  repository: /srv/restic\n  schedule: weekly\n",
        Path::new("hostyard.yaml"),
    )
    .expect("config");
    let on = render_units(&config, Path::new(DEFAULT_CONFIG_PATH)).expect("renders");
    let units: BTreeMap<_, _> = on.iter().map(|u| (u.name.clone(), &u.contents)).collect();
    for kind in SiteKind::ALL {
        let site = settings(units[&kind.template_unit(UnitRole::Site)]);
        assert!(
            values(&site, "Wants").contains(&"backup@%i.timer"),
            "{kind}"
        );
    }
    let target = settings(units["hostyard.target"]);
    assert!(values(&target, "Wants").contains(&"backup-prune.timer"));
    assert!(values(&target, "Wants").contains(&"backup-check.timer"));
    assert_eq!(
        values(&settings(units["backup@.timer"]), "OnCalendar"),
        ["weekly"]
    );
    // A local repository is the one path restic writes outside its cache.
    assert!(
        values(&settings(units["backup@.service"]), "ReadWritePaths").contains(&"-/srv/restic")
    );
}
