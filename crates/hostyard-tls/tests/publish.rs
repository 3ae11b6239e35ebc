//! The fleet publisher against a real etcd: only the site's owner (or,
//! while nobody owns it, the server hosting it) publishes its certificate.
//! A second copy of a site on another server used to put its own
//! certificate over the owner's.

use etcd_client::Client;
use hostyard_core::etcd::Schema;
use hostyard_core::{Domain, Layout};
use hostyard_testsupport::Etcd;
use hostyard_tls::fleet::Publisher;
use rcgen::{CertificateParams, KeyPair};

/// A self-signed bundle for `domain` (the publisher offers what the
/// certificate thread would serve).
fn bundle(domain: &str) -> String {
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec![domain.to_string()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

#[test]
fn only_the_owner_or_a_host_of_an_unowned_site_publishes() {
    let etcd = Etcd::start().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let layout = Layout::new(dir.path());
    let domain = Domain::parse("example.com").unwrap();
    let schema = Schema::new("/hostyard");
    let (cert_key, owner_key) = (schema.tls_cert_key(&domain), schema.owner_key(&domain));
    std::fs::create_dir_all(layout.domain_dir(&domain)).unwrap();
    let pem = layout.tls_pem(&domain);
    std::fs::create_dir_all(pem.parent().unwrap()).unwrap();
    let write = |text: &str| {
        // A new file (new inode): the publisher looks at it again.
        let tmp = pem.with_extension("tmp");
        std::fs::write(&tmp, text).unwrap();
        std::fs::rename(&tmp, &pem).unwrap();
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let mut client = rt
        .block_on(Client::connect([etcd.endpoint()], None))
        .unwrap();
    let mut publisher = Publisher::new(layout.clone(), schema.clone(), "n2".to_string());
    // Only a declared site's certificate is published.
    etcd.put(&schema.site_key(&domain), r#"{"kind":"static"}"#)
        .unwrap();

    // n1 owns it: n2's copy publishes nothing.
    etcd.put(&owner_key, "n1").unwrap();
    write(&bundle("example.com"));
    assert_eq!(rt.block_on(publisher.pass(&mut client)), vec![]);
    assert_eq!(etcd.get(&cert_key).unwrap(), None);
    let theirs = bundle("example.com");
    etcd.put(&cert_key, &theirs).unwrap();
    write(&bundle("example.com"));
    assert_eq!(rt.block_on(publisher.pass(&mut client)), vec![]);
    assert_eq!(
        etcd.get(&cert_key).unwrap().as_deref(),
        Some(theirs.as_str())
    );

    // Nobody owns it: the host publishes, and claims nothing.
    etcd.delete(&owner_key).unwrap();
    etcd.delete(&cert_key).unwrap();
    let ours = bundle("example.com");
    write(&ours);
    assert_eq!(
        rt.block_on(publisher.pass(&mut client)),
        vec![domain.clone()]
    );
    assert_eq!(etcd.get(&cert_key).unwrap().as_deref(), Some(ours.as_str()));
    assert_eq!(etcd.get(&owner_key).unwrap(), None);

    // n2 owns it: published.
    etcd.put(&owner_key, "n2").unwrap();
    let renewed = bundle("example.com");
    write(&renewed);
    assert_eq!(rt.block_on(publisher.pass(&mut client)), vec![domain]);
    assert_eq!(
        etcd.get(&cert_key).unwrap().as_deref(),
        Some(renewed.as_str())
    );
}
