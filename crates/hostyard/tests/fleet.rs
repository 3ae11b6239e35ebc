//! The fleet's secured etcd and inventory: certificates from `deploy/ca.sh`
//! (the jump box's real CA script), a real etcd 3.5 member with TLS and
//! client-certificate auth, and `hostyard fleet` granting and revoking the
//! servers' etcd users.

mod util;

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

use etcd_client::{Certificate, Client, ConnectOptions, Identity, TlsOptions, WatchOptions};
use hostyard_config::NodeConfig;
use hostyard_core::etcd::Schema;
use hostyard_testsupport::{Etcd, EtcdTls};
use util::{assert_exit_saying, assert_stderr_has, hostyard, stderr, stdout, TempDir};

const INVENTORY: &str = "\
servers:
  - name: n1
    ssh: root@203.0.113.11
    private: 127.0.0.1
    role: member
  - name: n2
    ssh: root@203.0.113.12
    private: 10.0.0.12
    role: member
  - name: w1
    ssh: root@203.0.113.13
    private: 10.0.0.13
    role: client
sites:
  - domain: example.com
    kind: static
    server: n1
  - domain: blog.example.org
    kind: wordpress
    server: w1
";

fn ca(fleet: &Path, args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ca.sh");
    let out = Command::new(script)
        .args(args)
        .env("FLEET", fleet)
        .output()
        .expect("deploy/ca.sh runs");
    assert!(out.status.success(), "ca.sh {args:?}: {}", stderr(&out));
    stdout(&out).trim().to_string()
}

fn fleet(inventory: &Path, args: &[&str]) -> std::process::Output {
    let mut all = vec!["fleet", "--inventory", inventory.to_str().expect("utf-8")];
    all.extend_from_slice(args);
    hostyard(&all)
}

/// etcd serving n1's certificate from the fleet CA in `certs`, with root's
/// certificate as its client's.
fn etcd_as_n1(certs: &Path) -> Etcd {
    let n1 = |ext: &str| certs.join("servers").join(format!("n1.{ext}"));
    Etcd::start_tls(EtcdTls {
        ca: certs.join("ca.pem"),
        cert: n1("pem"),
        key: n1("key"),
        client_cert: certs.join("root.pem"),
        client_key: certs.join("root.key"),
    })
    .expect("etcd with TLS")
}

/// `hostyard fleet etcd --endpoint ENDPOINT ARGS`, which must succeed: what
/// it printed.
fn etcd_admin(inv: &Path, endpoint: &str, args: &[&str]) -> String {
    let mut all = vec!["etcd", "--endpoint", endpoint];
    all.extend_from_slice(args);
    let out = fleet(inv, &all);
    assert_eq!(out.status.code(), Some(0), "{args:?}: {}", stderr(&out));
    stdout(&out)
}

#[test]
fn the_inventory_answers_the_scripts_and_refuses_mistakes_naming_them() {
    let dir = TempDir::new();
    let inv = dir.join("fleet.yaml");
    fs::write(&inv, INVENTORY).expect("inventory");
    let out = fleet(&inv, &["servers"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        stdout(&out),
        "n1 root@203.0.113.11 127.0.0.1 member\nn2 root@203.0.113.12 10.0.0.12 member\n\
         w1 root@203.0.113.13 10.0.0.13 client\n"
    );
    let out = fleet(&inv, &["sites", "--server", "w1"]);
    assert_eq!(stdout(&out), "blog.example.org wordpress w1\n");
    // A member's node config uses its own member on loopback, a client
    // every member; both parse as the servers will read them.
    for (name, endpoints) in [
        ("n1", vec!["https://127.0.0.1:2379"]),
        (
            "w1",
            vec!["https://127.0.0.1:2379", "https://10.0.0.12:2379"],
        ),
    ] {
        let out = fleet(&inv, &["node-config", name]);
        assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
        let config = NodeConfig::parse(&stdout(&out), Path::new("node.yaml")).expect("parses");
        assert_eq!(config.node_name(), name);
        assert_eq!(config.etcd.endpoints, endpoints);
        assert_eq!(
            config.etcd.key_file,
            PathBuf::from("/etc/hostyard/etcd/server.key")
        );
        // Every other server is a peer, by name and private address.
        let peers: Vec<(String, String)> = config
            .fleet
            .peers
            .iter()
            .map(|p| (p.name.clone(), p.address.to_string()))
            .collect();
        let all = [
            ("n1", "127.0.0.1"),
            ("n2", "10.0.0.12"),
            ("w1", "10.0.0.13"),
        ];
        let want: Vec<(String, String)> = all
            .iter()
            .filter(|(n, _)| *n != name)
            .map(|(n, a)| (n.to_string(), a.to_string()))
            .collect();
        assert_eq!(peers, want);
        let own = all.iter().find(|(n, _)| *n == name).unwrap().1;
        assert_eq!(config.fleet.private_address, Some(own.parse().unwrap()));
        // Peers prove themselves with the same certificate as etcd's.
        assert_eq!(
            (
                &config.fleet.ca_file,
                &config.fleet.cert_file,
                &config.fleet.key_file
            ),
            (
                &config.etcd.ca_file,
                &config.etcd.cert_file,
                &config.etcd.key_file
            )
        );
    }
    let out = fleet(
        &inv,
        &[
            "member-env",
            "n2",
            "--cluster",
            "n1=https://127.0.0.1:2380,n2=https://10.0.0.12:2380",
        ],
    );
    let env = stdout(&out);
    for line in [
        "ETCD_INITIAL_CLUSTER_STATE=existing",
        "ETCD_LISTEN_CLIENT_URLS=https://10.0.0.12:2379,https://127.0.0.1:2379",
        "ETCD_CLIENT_CERT_AUTH=true",
        "ETCD_PEER_CLIENT_CERT_AUTH=true",
    ] {
        assert!(env.lines().any(|l| l == line), "{line} in {env}");
    }
    // No listener of a member is plain http but the loopback metrics one.
    for l in env.lines().filter(|l| l.contains("_URLS=")) {
        assert!(
            !l.contains("http://") || l == "ETCD_LISTEN_METRICS_URLS=http://127.0.0.1:2381",
            "{l}"
        );
    }
    let out = fleet(&inv, &["member-env", "w1"]);
    assert_eq!(out.status.code(), Some(2));
    assert_stderr_has(&out, "only a member runs etcd");

    // Each case: the inventory with `from` replaced by `to`, and what the
    // refusal says.
    for (from, to, says) in [
        (
            "server: w1",
            "server: w9",
            "server \"w9\" is not in servers",
        ),
        ("10.0.0.13", "10.0.0.12", "private address 10.0.0.12"),
        ("kind: static", "kind: php", "example.com"),
        (
            "root@203.0.113.12",
            "-oProxyCommand=x",
            "not an ssh destination",
        ),
        ("role: member", "role: client", "no server has role member"),
        (
            "    role: client",
            "    role: client\n    port: 22",
            "unknown field `port`",
        ),
    ] {
        let bad = INVENTORY.replace(from, to);
        fs::write(&inv, &bad).expect("inventory");
        let out = fleet(&inv, &["check"]);
        assert_eq!(out.status.code(), Some(2), "{bad}");
        let err = stderr(&out);
        assert!(
            err.contains("fleet.yaml") && err.contains(says),
            "{says}: {err}"
        );
        assert_eq!(err.lines().count(), 1, "{err}");
    }
}

/// A client of `endpoint` that presents `identity` (certificate, key), or
/// none.
async fn client(
    endpoint: &str,
    ca: &Path,
    identity: Option<(&Path, &Path)>,
) -> Result<Client, etcd_client::Error> {
    let mut tls =
        TlsOptions::new().ca_certificate(Certificate::from_pem(fs::read(ca).expect("ca")));
    if let Some((cert, key)) = identity {
        tls = tls.identity(Identity::from_pem(
            fs::read(cert).expect("cert"),
            fs::read(key).expect("key"),
        ));
    }
    let options = ConnectOptions::new()
        .with_connect_timeout(std::time::Duration::from_secs(3))
        .with_timeout(std::time::Duration::from_secs(5))
        .with_tls(tls);
    Client::connect([endpoint], Some(options)).await
}

/// `hostyard fleet set-server`, the inventory's side of `deploy/site.sh
/// move`: only the site's `server:` changes (comments and layout stay, in
/// block and flow style, whatever the order of the keys), the file stays valid and keeps its mode, and a
/// mistake is one line with nothing written.
#[test]
fn set_server_rewrites_one_site_keeping_the_file_valid_and_refuses_mistakes() {
    let dir = TempDir::new();
    let inv = dir.join("fleet.yaml");
    let commented = INVENTORY.replace(
        "  - domain: example.com\n",
        "  # the shop's site\n  - domain: example.com   # moved in May\n",
    );
    fs::write(&inv, &commented).expect("inventory");
    fs::set_permissions(&inv, fs::Permissions::from_mode(0o640)).expect("chmod");
    let out = fleet(&inv, &["set-server", "example.com", "n2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("server n1 -> n2"), "{}", stdout(&out));
    let text = fs::read_to_string(&inv).expect("read");
    assert_eq!(
        text,
        commented.replacen("    server: n1\n", "    server: n2\n", 1),
        "only that line changed"
    );
    assert_eq!(
        fs::metadata(&inv).unwrap().permissions().mode() & 0o777,
        0o640
    );
    let out = fleet(&inv, &["sites"]);
    assert_eq!(
        stdout(&out),
        "example.com static n2\nblog.example.org wordpress w1\n"
    );
    // Again: nothing changes, and it says so.
    let out = fleet(&inv, &["set-server", "example.com", "n2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(stdout(&out).contains("nothing changed"), "{}", stdout(&out));
    assert_eq!(fs::read_to_string(&inv).unwrap(), text);

    // Flow style, as the fleet-in-a-box writes it, and a domain that is a
    // suffix of another's: only the named entry changes.
    let flow = "servers:\n  - {name: n1, ssh: root@10.0.0.1, private: 10.0.0.1, role: member}\n  \
                - {name: n2, ssh: root@10.0.0.2, private: 10.0.0.2, role: member}\nsites:\n  \
                - {domain: www.a.example, kind: static, server: n1}\n  \
                - {domain: a.example, kind: wordpress, server: n1}\n";
    fs::write(&inv, flow).expect("inventory");
    let out = fleet(&inv, &["set-server", "a.example", "n2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(&inv).unwrap(),
        flow.replace("wordpress, server: n1", "wordpress, server: n2")
    );

    // `server:` before `domain:`: changed in place all the same (the
    // editor works on YAML's syntax tree, not on the text).
    let odd = "servers:\n  - {name: n1, ssh: root@10.0.0.1, private: 10.0.0.1, role: member}\n  \
               - {name: n2, ssh: root@10.0.0.2, private: 10.0.0.2, role: member}\nsites:\n  \
               - {server: n1, kind: static, domain: a.example}\n  \
               - {server: n1, kind: static, domain: b.example}\n";
    fs::write(&inv, odd).expect("inventory");
    let out = fleet(&inv, &["set-server", "a.example", "n2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        fs::read_to_string(&inv).unwrap(),
        odd.replacen(
            "{server: n1, kind: static, domain: a",
            "{server: n2, kind: static, domain: a",
            1
        )
    );
    let out = fleet(&inv, &["sites"]);
    assert_eq!(
        stdout(&out),
        "a.example static n2\nb.example static n1\n",
        "{}",
        fs::read_to_string(&inv).unwrap()
    );
    assert_eq!(fleet(&inv, &["servers"]).status.code(), Some(0));

    // A tagged entry the editor does not change in place: the whole
    // inventory is rendered from its typed form instead, valid, with the
    // change, and saying so at its top.
    let tagged = odd.replace(
        "  - {server: n1, kind: static, domain: a.example}",
        "  - !!map {server: n1, kind: static, domain: a.example}",
    );
    fs::write(&inv, &tagged).expect("inventory");
    let out = fleet(&inv, &["set-server", "a.example", "n2"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let text = fs::read_to_string(&inv).unwrap();
    assert!(
        text.starts_with("# Written by `hostyard fleet set-server`"),
        "{text}"
    );
    assert_eq!(
        stdout(&fleet(&inv, &["sites"])),
        "a.example static n2\nb.example static n1\n",
        "{text}"
    );

    // Mistakes: exit 2, one line naming the fix, the file untouched.
    fs::write(&inv, INVENTORY).expect("inventory");
    for (args, names) in [
        (
            ["set-server", "nowhere.example", "n2"],
            "add it under sites: first",
        ),
        (
            ["set-server", "example.com", "n9"],
            "add it under servers: first",
        ),
        (["set-server", "a..b", "n2"], "a..b"),
    ] {
        let out = fleet(&inv, &args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let err = stderr(&out);
        assert!(err.contains(names), "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
        assert_eq!(fs::read_to_string(&inv).unwrap(), INVENTORY, "{args:?}");
    }
}

#[test]
fn servers_reach_etcd_by_certificate_only_within_their_prefix_until_revoked() {
    let dir = TempDir::new();
    let fleet_dir = dir.join("fleet");
    fs::create_dir(&fleet_dir).expect("fleet dir");
    let inv = fleet_dir.join("fleet.yaml");
    fs::write(&inv, INVENTORY).expect("inventory");
    ca(&fleet_dir, &["init"]);
    for name in ["n1", "n2", "w1"] {
        ca(&fleet_dir, &["issue", name, "127.0.0.1"]);
    }
    let certs = fleet_dir.join("ca");
    let server = |name: &str, ext: &str| certs.join("servers").join(format!("{name}.{ext}"));
    let etcd = etcd_as_n1(&certs);
    let endpoint = etcd.endpoint();
    assert!(endpoint.starts_with("https://"), "{endpoint}");
    let admin = |args: &[&str]| etcd_admin(&inv, &endpoint, args);
    assert_eq!(admin(&["enable-auth"]), "authentication enabled\n");
    assert_eq!(
        admin(&["enable-auth"]),
        "authentication was enabled already; nothing changed\n"
    );
    let user = |name: &str| ca(&fleet_dir, &["user", name]);
    let (n1, n2) = (user("n1"), user("n2"));
    assert!(n1.starts_with("hostyard-n1-") && n1 != n2, "{n1} {n2}");
    assert_eq!(
        admin(&["grant", &n1, "--prefix", "/hostyard"]),
        format!("granted {n1} /hostyard/\n")
    );
    assert_eq!(
        admin(&["grant", &n1, "--prefix", "/hostyard"]),
        format!("{n1} exists; nothing changed\n")
    );
    // The same user under another prefix is refused, not reported as
    // granted: its role reaches /hostyard/ and nothing else.
    let wider = fleet(
        &inv,
        &[
            "etcd",
            "--endpoint",
            endpoint.as_str(),
            "grant",
            &n1,
            "--prefix",
            "/other",
        ],
    );
    assert_exit_saying(&wider, 1, "/hostyard/");
    assert_stderr_has(&wider, "revoke");
    admin(&["grant", &n2, "--prefix", "/hostyard"]);

    // Each server's node config, as deploy/ writes it, with its own files.
    let config = |name: &str| {
        let path = dir.join(&format!("{name}.yaml"));
        fs::write(
            &path,
            format!(
                "node_name: {name}\netcd:\n  endpoints: [\"{endpoint}\"]\n  prefix: /hostyard\n  \
                 ca_file: {}\n  cert_file: {}\n  key_file: {}\n",
                certs.join("ca.pem").display(),
                server(name, "pem").display(),
                server(name, "key").display()
            ),
        )
        .expect("config");
        path
    };
    let check = |name: &str| {
        let path = config(name);
        hostyard(&[
            "--config",
            path.to_str().expect("utf-8"),
            "etcd",
            "check",
            "--timeout",
            "3",
        ])
    };
    for name in ["n1", "n2"] {
        let out = check(name);
        assert_eq!(out.status.code(), Some(0), "{name}: {}", stderr(&out));
        assert_eq!(stdout(&out), format!("healthy: {endpoint}\n"));
    }
    // w1 has a certificate of the fleet CA but no etcd user: refused.
    let out = check("w1");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("user name not found") || err.contains("permission denied"),
        "{err}"
    );

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut c = client(
            &endpoint,
            &certs.join("ca.pem"),
            Some((&server("n1", "pem"), &server("n1", "key"))),
        )
        .await
        .expect("n1 connects");
        c.put("/hostyard/sites/example.com", "{}", None)
            .await
            .expect("n1 writes its prefix");
        let err = c
            .put("/elsewhere", "x", None)
            .await
            .expect_err("outside its prefix");
        assert!(err.to_string().contains("permission denied"), "{err}");
        // What confd reads and watches, the routing range and the fleet's
        // certificates, lies within the grant.
        let schema = Schema::new("/hostyard");
        let (kvs, _) = hostyard_etcd::read_routing(&mut c, &schema)
            .await
            .expect("n1 reads the routing range");
        assert!(kvs.contains_key("/hostyard/sites/example.com"), "{kvs:?}");
        let (start, end) = schema.routing_range();
        let mut stream = c
            .watch(start.as_str(), Some(WatchOptions::new().with_range(end)))
            .await
            .expect("n1 watches the routing range");
        let cert_key = schema.tls_cert_key(&hostyard_core::Domain::parse("example.com").unwrap());
        c.put(cert_key.as_str(), "bundle", None)
            .await
            .expect("n1 publishes a certificate");
        hostyard_etcd::read_all_paged(&mut c, &schema.tls_certs_prefix(), 100)
            .await
            .expect("n1 reads the fleet's certificates");
        c.put("/hostyard/sites/example.org", "{}", None)
            .await
            .expect("n1 writes its prefix");
        let event = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                let resp = stream.message().await.expect("watch").expect("watch open");
                assert!(!resp.canceled(), "{}", resp.cancel_reason());
                if !resp.events().is_empty() {
                    return resp.events()[0].kv().map(|kv| kv.key().to_vec());
                }
            }
        })
        .await
        .expect("a watch event within 5 s");
        assert_eq!(event.as_deref(), Some(&b"/hostyard/sites/example.org"[..]));
        // Without a certificate there is no connection at all.
        let bare = match client(&endpoint, &certs.join("ca.pem"), None).await {
            Ok(mut c) => c.get("/hostyard/", None).await.map(drop),
            Err(e) => Err(e),
        };
        assert!(bare.is_err(), "a client without certificate was served");
    });

    // A key others could read is refused before any connection.
    let key = server("n1", "key");
    fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = check("n1");
    assert_eq!(out.status.code(), Some(1));
    assert!(stderr(&out).contains("chmod 600"), "{}", stderr(&out));
    fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).expect("chmod");

    // Revoked: n2's certificate, still signed by the CA, is refused; n1 is not.
    assert_eq!(admin(&["revoke", &n2]), format!("revoked {n2}\n"));
    assert_eq!(
        admin(&["revoke", &n2]),
        format!("{n2} does not exist; nothing changed\n")
    );
    let out = check("n2");
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    assert_eq!(check("n1").status.code(), Some(0));
}

/// `deploy/ca.sh ARGS` with `env` set (RENEW_DAYS, CERT_DAYS).
fn ca_env(fleet: &Path, env: &[(&str, &str)], args: &[&str]) -> String {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../deploy/ca.sh");
    let out = Command::new(script)
        .args(args)
        .env("FLEET", fleet)
        .envs(env.iter().copied())
        .output()
        .expect("deploy/ca.sh runs");
    assert!(out.status.success(), "ca.sh {args:?}: {}", stderr(&out));
    format!("{}{}", stdout(&out), stderr(&out))
}

/// A fleet directory with the inventory, the CA and the root identity.
fn fleet_dir(dir: &TempDir) -> (PathBuf, PathBuf) {
    let fleet_dir = dir.join("fleet");
    fs::create_dir(&fleet_dir).expect("fleet dir");
    let inv = fleet_dir.join("fleet.yaml");
    fs::write(&inv, INVENTORY).expect("inventory");
    ca(&fleet_dir, &["init"]);
    (fleet_dir, inv)
}

#[test]
fn a_member_takes_peer_connections_from_members_only() {
    let dir = TempDir::new();
    let (fleet_dir, inv) = fleet_dir(&dir);
    ca(&fleet_dir, &["issue", "n1", "127.0.0.1", "member"]);
    ca(&fleet_dir, &["issue", "n2", "127.0.0.1", "member"]);
    ca(&fleet_dir, &["issue", "w1", "127.0.0.1", "client"]);
    let certs = fleet_dir.join("ca");
    let pem = |name: &str, ext: &str| certs.join("servers").join(format!("{name}.{ext}"));
    // The peer settings of n1's member.env, as etcd.service reads them.
    let out = fleet(&inv, &["member-env", "n1"]);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    let env = stdout(&out);
    let peer_rules: Vec<(String, String)> = env
        .lines()
        .filter(|l| l.starts_with("ETCD_PEER_CERT_ALLOWED_"))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    assert!(
        !peer_rules.is_empty(),
        "member-env takes any certificate of the CA as a peer: {env}"
    );
    let etcd = Etcd::start_tls_env(
        EtcdTls {
            ca: certs.join("ca.pem"),
            cert: pem("n1", "pem"),
            key: pem("n1", "key"),
            client_cert: certs.join("root.pem"),
            client_key: certs.join("root.key"),
        },
        peer_rules,
    )
    .expect("etcd with the member's peer settings");
    // A request on the peer port (etcd answers /members there to peers).
    let peer = |cert: &Path, key: &Path| {
        let out = Command::new("curl")
            .args([
                "--silent",
                "--show-error",
                "--fail",
                "--http1.1",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(certs.join("ca.pem"))
            .arg("--cert")
            .arg(cert)
            .arg("--key")
            .arg(key)
            .arg(format!("{}/members", etcd.peer_endpoint()))
            .output()
            .expect("curl runs");
        (out.status.success(), stderr(&out))
    };
    let (taken, why) = peer(&pem("n2", "pem"), &pem("n2", "key"));
    assert!(taken, "another member's certificate refused: {why}");
    let (taken, _) = peer(&pem("w1", "pem"), &pem("w1", "key"));
    assert!(
        !taken,
        "a client-role server's certificate is taken as a peer"
    );
    let (taken, _) = peer(&certs.join("root.pem"), &certs.join("root.key"));
    assert!(!taken, "the jump box's root identity is taken as a peer");
    // A member's certificate is a client's once its role is: issued again.
    let out = ca_env(&fleet_dir, &[], &["issue", "n2", "127.0.0.1", "client"]);
    assert!(out.contains("the server is a client"), "{out}");
    let (taken, _) = peer(&pem("n2", "pem"), &pem("n2", "key"));
    assert!(
        !taken,
        "a certificate issued for a client is taken as a peer"
    );
}

#[test]
fn a_certificate_near_its_end_is_warned_about_then_issued_again_with_a_new_user() {
    let dir = TempDir::new();
    let (fleet_dir, inv) = fleet_dir(&dir);
    let certs = fleet_dir.join("ca");
    // n1's certificate lasts 5 days: within the 30 of RENEW_DAYS.
    ca_env(
        &fleet_dir,
        &[("CERT_DAYS", "5")],
        &["issue", "n1", "127.0.0.1", "member"],
    );
    let etcd = etcd_as_n1(&certs);
    let endpoint = etcd.endpoint();
    let admin = |args: &[&str]| etcd_admin(&inv, &endpoint, args);
    admin(&["enable-auth"]);
    let old = ca(&fleet_dir, &["user", "n1"]);
    admin(&["grant", &old, "--prefix", "/hostyard"]);
    // n1's files as the server has them (a copy: the jump box's change).
    let server_dir = dir.join("server");
    fs::create_dir(&server_dir).expect("server dir");
    let install = |to: &str| {
        let d = server_dir.join(to);
        fs::create_dir_all(&d).expect("dir");
        for f in ["n1.pem", "n1.key"] {
            fs::copy(certs.join("servers").join(f), d.join(f)).expect("copy");
        }
        let path = d.join("hostyard.yaml");
        fs::write(
            &path,
            format!(
                "node_name: n1\netcd:\n  endpoints: [\"{endpoint}\"]\n  prefix: /hostyard\n  \
                 ca_file: {}\n  cert_file: {}\n  key_file: {}\n",
                certs.join("ca.pem").display(),
                d.join("n1.pem").display(),
                d.join("n1.key").display()
            ),
        )
        .expect("config");
        path
    };
    let check = |config: &Path| {
        hostyard(&[
            "--config",
            config.to_str().expect("utf-8"),
            "etcd",
            "check",
            "--timeout",
            "3",
        ])
    };
    let short = install("old");
    let out = check(&short);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("healthy: {endpoint}\n"));
    let warning = stderr(&out);
    assert!(
        warning.contains("WARNING: this server's etcd certificate")
            // Issued seconds ago for 5 days: 4 days and hours left, or
            // exactly 5 in the second it was issued (OpenSSL 3.5).
            && (warning.contains("ends in 4 days") || warning.contains("ends in 5 days"))
            && warning.contains("deploy/server.sh add n1"),
        "{warning}"
    );

    // The jump box lists it as due.
    let due = ca(&fleet_dir, &["due"]);
    assert!(due.starts_with("n1 ") && due.lines().count() == 1, "{due}");

    // The jump box's step: a new certificate and key with a new user; the
    // replaced one's user stays known until it is revoked.
    let out = ca_env(&fleet_dir, &[], &["issue", "n1", "127.0.0.1", "member"]);
    assert!(out.contains("a new one, it ends"), "{out}");
    let new = ca(&fleet_dir, &["user", "n1"]);
    assert!(new.starts_with("hostyard-n1-") && new != old, "{old} {new}");
    assert_eq!(ca(&fleet_dir, &["user", "n1", "--old"]), old);
    let out = ca_env(&fleet_dir, &[], &["issue", "n1", "127.0.0.1", "member"]);
    assert!(
        out.contains("exists, ends"),
        "a second issue changes nothing: {out}"
    );
    assert_eq!(ca(&fleet_dir, &["due"]), "");
    admin(&["grant", &new, "--prefix", "/hostyard"]);
    let renewed = install("new");
    let out = check(&renewed);
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert!(!stderr(&out).contains("WARNING"), "{}", stderr(&out));
    // Revoked once the new one works: the replaced certificate is refused.
    admin(&["revoke", &old]);
    ca(&fleet_dir, &["forget-old", "n1"]);
    assert_eq!(ca(&fleet_dir, &["user", "n1", "--old"]), "");
    let out = check(&short);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let err = stderr(&out);
    assert!(
        err.contains("user name not found") || err.contains("permission denied"),
        "{err}"
    );
    assert!(
        !admin(&["users"]).lines().any(|u| u == old),
        "the replaced user is still in etcd"
    );
    assert_eq!(check(&renewed).status.code(), Some(0));
}
