//! A site's path redirects, as `hostyard site set` writes them into its
//! declaration, reach HAProxy through confd's runtime API without a
//! reload, and go again when removed.

// Shared with confd.rs, which uses the rest of it.
#[allow(dead_code)]
mod util;

use hostyard_core::edge::PathRedirect;
use hostyard_core::etcd::SiteDecl;
use hostyard_core::SiteKind;
use hostyard_testsupport::{http_get_with_headers, wait_until, Etcd};
use util::{d, Router, T};

/// The status and Location of `path` on `host`.
fn ask(r: &Router, host: &str, path: &str) -> (u16, Option<String>) {
    match http_get_with_headers(r.port, host, path, &[]) {
        Ok(resp) => (resp.status, resp.header("location").map(str::to_string)),
        Err(_) => (0, None),
    }
}

fn wait_answer(r: &Router, host: &str, path: &str, want: (u16, Option<String>)) {
    let mut last = (0, None);
    if let Err(e) = wait_until(&format!("{host}{path} -> {want:?}"), T, || {
        last = ask(r, host, path);
        (last == want).then_some(())
    }) {
        panic!("{e:#}; last {last:?}\nconfd log:\n{}", r.confd_log());
    }
}

#[test]
fn path_redirects_follow_the_declaration_without_a_reload() {
    let etcd = Etcd::start().unwrap();
    let (r, _backend) = Router::routed(&etcd, "moved.example.com", "site");
    let worker = r.haproxy().worker_pid().unwrap();
    let key = r.schema.site_key(&d("moved.example.com"));
    let port = r.port;
    let mut decl = SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![],
        edge: Default::default(),
        php: Default::default(),
    };
    decl.edge.redirects = vec![
        PathRedirect::parse("/old=/new", false).unwrap(),
        PathRedirect::parse("308:/blog/=https://blog.example.org/", true).unwrap(),
    ];
    etcd.put(&key, &decl.to_json()).unwrap();
    wait_answer(
        &r,
        "moved.example.com",
        "/old?a=1",
        (
            301,
            Some(format!("http://moved.example.com:{port}/new?a=1")),
        ),
    );
    assert_eq!(
        ask(&r, "moved.example.com", "/blog/2020/x?y"),
        (308, Some("https://blog.example.org/2020/x?y".to_string()))
    );

    // A rule removed goes; the other stays.
    decl.edge.redirects.retain(|r| r.prefix);
    etcd.put(&key, &decl.to_json()).unwrap();
    wait_answer(&r, "moved.example.com", "/old", (200, None));
    assert_eq!(ask(&r, "moved.example.com", "/blog/").0, 308);
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");

    // The file holds what HAProxy holds: a restart loads the same.
    let prefix = std::fs::read_to_string(r.layout.redirect_prefix_map()).unwrap();
    assert_eq!(
        prefix,
        "moved.example.com/blog/ 308/6/https://blog.example.org/\n"
    );
    assert_eq!(
        std::fs::read_to_string(r.layout.redirect_exact_map()).unwrap(),
        ""
    );
}

#[test]
fn canonical_name_basic_auth_and_headers_follow_the_declaration_without_a_reload() {
    use hostyard_core::edge::{authorization, BasicAuth, Canonical, HeadersPreset};
    let etcd = Etcd::start().unwrap();
    let (r, _backend) = Router::routed(&etcd, "preview.example.com", "site");
    let worker = r.haproxy().worker_pid().unwrap();
    let key = r.schema.site_key(&d("preview.example.com"));
    let port = r.port;
    let mut decl = SiteDecl {
        kind: SiteKind::Static,
        aliases: vec![],
        edge: Default::default(),
        php: Default::default(),
    };
    decl.edge.canonical = Canonical::Www;
    decl.edge.basic_auth =
        Some(BasicAuth::new("boss", "a long preview password", [3; 16]).unwrap());
    decl.edge.headers = HeadersPreset::Basic;
    etcd.put(&key, &decl.to_json()).unwrap();
    wait_answer(
        &r,
        "preview.example.com",
        "/x?y",
        (
            301,
            Some(format!("http://www.preview.example.com:{port}/x?y")),
        ),
    );
    // www. is served, behind the password, with the preset's headers.
    wait_answer(&r, "www.preview.example.com", "/", (401, None));
    let right = authorization("boss", "a long preview password");
    let resp = http_get_with_headers(
        port,
        "www.preview.example.com",
        "/",
        &[("Authorization", &right)],
    )
    .unwrap();
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.header("x-content-type-options"), Some("nosniff"));

    // All three go back to the defaults: the maps empty, the same worker.
    decl.edge = Default::default();
    etcd.put(&key, &decl.to_json()).unwrap();
    wait_answer(&r, "preview.example.com", "/", (200, None));
    let resp = http_get_with_headers(port, "preview.example.com", "/", &[]).unwrap();
    assert_eq!(resp.header("x-content-type-options"), None);
    assert_eq!(r.haproxy().worker_pid().unwrap(), worker, "no reload");
    for map in [
        r.layout.canonical_map(),
        r.layout.basic_auth_map(),
        r.layout.headers_map(),
    ] {
        assert_eq!(std::fs::read_to_string(&map).unwrap(), "", "{map:?}");
    }
}
