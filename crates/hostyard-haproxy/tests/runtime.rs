//! The runtime API against a real HAProxy: map changes pipelined in one
//! round trip land exactly, and a map that is not what confd believes is
//! reported, not papered over.

use hostyard_haproxy::{Entry, HostMap, MapApi, Session, GENERATION_KEY};
use hostyard_testsupport::{Haproxy, SocketDir};

fn start(map_text: &str) -> (SocketDir, Haproxy, std::path::PathBuf) {
    let sockets = SocketDir::new().unwrap();
    let map = sockets.path().join("hosts.map");
    std::fs::write(&map, map_text).unwrap();
    let cfg = sockets.path().join("haproxy.cfg");
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {} level admin\ndefaults\n  mode http\n  timeout client 1s\n  \
             timeout server 1s\n  timeout connect 1s\nfrontend f\n  bind unix@{}\n  \
             http-request set-var(txn.r) req.hdr(host),map({},none)\n  \
             http-request deny\n",
            sockets.admin_socket_path().display(),
            sockets.path().join("http.sock").display(),
            map.display()
        ),
    )
    .unwrap();
    let haproxy = Haproxy::start(&cfg).unwrap();
    (sockets, haproxy, map)
}

fn route(port: u16) -> Entry {
    Entry::Route(format!("127.0.0.1:{port}").parse().unwrap())
}

fn shown(h: &Haproxy, map: &std::path::Path) -> Vec<String> {
    let mut lines: Vec<String> = h
        .runtime(&format!("show map {}", map.display()))
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.to_string()))
        .collect();
    lines.sort();
    lines
}

#[test]
fn pipelined_changes_set_add_and_delete_exactly() {
    let (_s, h, map) = start(&format!(
        "{GENERATION_KEY} 4\nkept.example route/127.0.0.1/1\nmoved.example route/127.0.0.1/2\ngone.example route/127.0.0.1/3\n"
    ));
    let mut held = HostMap::new();
    held.insert("kept.example".into(), route(1));
    held.insert("moved.example".into(), route(2));
    held.insert("gone.example".into(), route(3));
    let (moved, new, down) = (route(20), route(30), Entry::Down);
    // 300 new hosts: more than one pipelined write.
    let many: Vec<String> = (0..300).map(|i| format!("n{i}.example")).collect();
    let mut changes = vec![
        ("moved.example".to_string(), Some(&moved)),
        ("new.example".to_string(), Some(&new)),
        ("gone.example".to_string(), None),
        ("down.example".to_string(), Some(&down)),
    ];
    changes.extend(many.iter().map(|h| (h.clone(), Some(&new))));
    let mut session = Session::connect(h.admin_socket()).unwrap();
    MapApi::new(&mut session, &map)
        .apply_known(&held, &changes, 5)
        .unwrap();
    let lines = shown(&h, &map);
    assert_eq!(lines.len(), 1 + 1 + 1 + 1 + 1 + 300, "{lines:?}");
    for want in [
        format!("{GENERATION_KEY} 5"),
        "kept.example route/127.0.0.1/1".into(),
        "moved.example route/127.0.0.1/20".into(),
        "new.example route/127.0.0.1/30".into(),
        format!("down.example {}", Entry::Down.map_value()),
        "n299.example route/127.0.0.1/30".into(),
    ] {
        assert!(lines.contains(&want), "{want} missing from {lines:?}");
    }
    assert!(!lines.iter().any(|l| l.starts_with("gone.example")));
}

#[test]
fn a_map_that_differs_from_what_was_held_is_an_error() {
    // confd believes `ghost.example` is in the map; HAProxy has no such key,
    // so `set map` is refused, and the caller must replace the map whole.
    let (_s, h, map) = start(&format!("{GENERATION_KEY} 1\n"));
    let mut held = HostMap::new();
    held.insert("ghost.example".into(), route(1));
    let next = route(2);
    let mut session = Session::connect(h.admin_socket()).unwrap();
    let err = MapApi::new(&mut session, &map)
        .apply_known(&held, &[("ghost.example".to_string(), Some(&next))], 2)
        .unwrap_err()
        .to_string();
    assert!(err.contains("entry not found"), "{err}");
    // The session stays usable: every answer was read.
    assert!(MapApi::new(&mut session, &map).generation().is_ok());
}
