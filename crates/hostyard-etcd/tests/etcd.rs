//! The connector against a real etcd, and against a member that accepts
//! connections but never answers.

use std::net::TcpListener;
use std::time::{Duration, Instant};

use hostyard_config::EtcdConfig;
use hostyard_testsupport::Etcd;

fn config(endpoint: String) -> EtcdConfig {
    EtcdConfig {
        endpoints: vec![endpoint],
        ..EtcdConfig::default()
    }
}

#[test]
fn a_member_that_never_answers_is_one_line_naming_the_call_within_its_deadline() {
    // Accepts TCP and then says nothing, like a member whose process hangs.
    let silent = TcpListener::bind("127.0.0.1:0").unwrap();
    let endpoint = format!("http://{}", silent.local_addr().unwrap());
    let etcd = config(endpoint.clone());
    let started = Instant::now();
    let result = hostyard_etcd::block_on(async {
        let mut client = hostyard_etcd::connect_within(&etcd, Duration::from_secs(1)).await?;
        hostyard_etcd::bounded("get", Duration::from_secs(1), client.get("k", None)).await?;
        Ok(())
    });
    let took = started.elapsed();
    let error = format!("{:#}", result.expect_err("a silent member cannot answer"));
    assert!(
        error.contains("no answer within 1 s")
            && (error.contains(&endpoint) || error.starts_with("etcd get")),
        "the error names the member or the call and the deadline: {error}"
    );
    assert!(
        took < Duration::from_secs(5),
        "gave up after {took:?}, not after its 1 s deadlines"
    );
    drop(silent);
}

#[test]
fn a_paged_read_returns_every_key_of_the_prefix_at_one_revision() {
    let etcd = Etcd::start().unwrap();
    for i in 0..250 {
        etcd.put(&format!("/p/{i:03}"), &i.to_string()).unwrap();
    }
    // Outside the prefix, on both sides of it.
    etcd.put("/o", "x").unwrap();
    etcd.put("/q", "x").unwrap();
    let config = config(etcd.endpoint());
    let (kvs, revision) = hostyard_etcd::block_on(async {
        let mut client = hostyard_etcd::connect(&config).await?;
        hostyard_etcd::read_all_paged(&mut client, "/p/", 100).await
    })
    .unwrap();
    assert_eq!(kvs.len(), 250, "every key once, across three pages");
    assert_eq!(kvs["/p/000"], b"0");
    assert_eq!(kvs["/p/249"], b"249");
    assert!(kvs.keys().all(|k| k.starts_with("/p/")));
    // 252 puts after etcd's first revision.
    assert_eq!(revision, 253, "the revision the snapshot was read at");
}
