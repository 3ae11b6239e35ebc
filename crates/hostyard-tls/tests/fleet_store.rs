//! The fleet's certificate store against a real etcd, with a publisher,
//! receivers and certificate threads standing for two servers: n1 hosts
//! and owns `example.com`, n2 serves it with what etcd holds.
//!
//! Each of these used to fail: the bundle that lasted longest won, so a
//! shorter-lived replacement (a leaked key replaced) never left n1, and
//! the hosting server took a longer-lived bundle any etcd writer put over
//! its own; a self-signed bundle pinned in etcd was served everywhere; and
//! nothing deleted a removed site's bundle.

use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use etcd_client::Client;
use hostyard_config::TlsConfig;
use hostyard_core::etcd::{Schema, SiteDecl};
use hostyard_core::{Domain, Layout, SiteKind};
use hostyard_testsupport::{Etcd, SiteCa};
use hostyard_tls::fleet::{Publisher, Received, Receiver};
use hostyard_tls::{CertSync, Trust};
use rcgen::{CertificateParams, KeyPair};

/// A self-signed bundle for `domain`, valid until `until`.
fn self_signed(domain: &str, until: i32) -> String {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(vec![domain.to_string()]).unwrap();
    p.not_before = rcgen::date_time_ymd(2020, 1, 1);
    p.not_after = rcgen::date_time_ymd(until, 1, 1);
    let cert = p.self_signed(&key).unwrap();
    format!("{}{}", cert.pem(), key.serialize_pem())
}

/// The first certificate of a bundle (what tells two bundles apart).
fn leaf(pem: &str) -> String {
    let end = "-----END CERTIFICATE-----";
    pem[..pem.find(end).unwrap() + end.len()].to_string()
}

/// One server of the fleet: its disk, its receiver, its certificate thread.
struct Server {
    _dir: tempfile::TempDir,
    layout: Layout,
    receiver: Receiver,
    sync: CertSync,
}

impl Server {
    fn new(ca_file: &Path) -> Server {
        let dir = tempfile::tempdir().unwrap();
        let layout = Layout::new(dir.path());
        let mut tls = TlsConfig::default();
        tls.acme.ca_file = ca_file.to_path_buf();
        let sync = CertSync::new(layout.clone(), tls).with_fleet(Arc::new(AtomicBool::new(true)));
        let receiver = Receiver::new(layout.clone(), Trust::load(ca_file));
        Server {
            _dir: dir,
            layout,
            receiver,
            sync,
        }
    }

    /// What confd does with `tls/certs/`: a full read (a watch event does
    /// the same for one key), then a pass of the certificate thread (no
    /// HAProxy runs: the files are what it would load).
    fn receive(&mut self, etcd: &Etcd, schema: &Schema) -> Vec<(Domain, Received)> {
        let bundles = etcd
            .get_prefix(&schema.tls_certs_prefix())
            .unwrap()
            .into_iter()
            .map(|(k, v)| (schema.parse_tls_cert_key(&k).unwrap(), v.into_bytes()));
        let done = self.receiver.replace(bundles);
        self.sync.pass().unwrap();
        done
    }

    /// The leaf certificate HAProxy is given for `domain`, if any.
    fn served(&self, domain: &Domain) -> Option<String> {
        self.sync.served().get(domain)?;
        let pem = std::fs::read_to_string(self.layout.haproxy_cert(domain)).unwrap();
        Some(leaf(&pem))
    }
}

struct Fleet {
    etcd: Etcd,
    rt: tokio::runtime::Runtime,
    client: Client,
    schema: Schema,
    domain: Domain,
    ca: SiteCa,
    _ca_dir: tempfile::TempDir,
    n1: Server,
    n2: Server,
    publisher: Publisher,
}

impl Fleet {
    /// n1 hosts and owns the site, which is declared.
    fn new() -> Fleet {
        let etcd = Etcd::start().unwrap();
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let client = rt
            .block_on(Client::connect([etcd.endpoint()], None))
            .unwrap();
        let schema = Schema::new("/hostyard");
        let domain = Domain::parse("example.com").unwrap();
        let ca = SiteCa::new("store test CA");
        let ca_dir = tempfile::tempdir().unwrap();
        let ca_file = ca_dir.path().join("ca.pem");
        std::fs::write(&ca_file, ca.pem()).unwrap();
        let (n1, n2) = (Server::new(&ca_file), Server::new(&ca_file));
        std::fs::create_dir_all(n1.layout.domain_dir(&domain)).unwrap();
        let decl = SiteDecl {
            kind: SiteKind::Static,
            aliases: Vec::new(),
            edge: Default::default(),
            php: Default::default(),
        };
        etcd.put(&schema.site_key(&domain), &decl.to_json())
            .unwrap();
        etcd.put(&schema.owner_key(&domain), "n1").unwrap();
        let publisher = Publisher::new(n1.layout.clone(), schema.clone(), "n1".to_string());
        Fleet {
            etcd,
            rt,
            client,
            schema,
            domain,
            ca,
            _ca_dir: ca_dir,
            n1,
            n2,
            publisher,
        }
    }

    /// n1's ACME file becomes `pem` (a new file, as ACME writes it).
    fn n1_obtains(&self, pem: &str) {
        let path = self.n1.layout.acme_cert(&self.domain);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let tmp = path.with_extension("tmp");
        std::fs::write(&tmp, pem).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
    }

    fn publish(&mut self) -> Vec<Domain> {
        self.rt.block_on(self.publisher.pass(&mut self.client))
    }

    fn in_etcd(&self) -> Option<String> {
        self.etcd
            .get(&self.schema.tls_cert_key(&self.domain))
            .unwrap()
    }
}

#[test]
fn a_shorter_lived_replacement_reaches_every_server() {
    let mut f = Fleet::new();
    let domain = f.domain.clone();
    let long = f.ca.bundle(&["example.com"], (2020, 2090));
    f.n1_obtains(&long);
    assert_eq!(f.publish(), vec![domain.clone()]);
    f.n1.receive(&f.etcd, &f.schema);
    f.n2.receive(&f.etcd, &f.schema);
    assert_eq!(f.n1.served(&domain), Some(leaf(&long)));
    assert_eq!(f.n2.served(&domain), Some(leaf(&long)));

    // The key leaked: n1 serves a new one, which lasts less long.
    let short = f.ca.bundle(&["example.com"], (2020, 2080));
    f.n1_obtains(&short);
    assert_eq!(f.publish(), vec![domain.clone()]);
    assert_eq!(f.in_etcd().as_deref(), Some(short.as_str()));
    f.n1.receive(&f.etcd, &f.schema);
    f.n2.receive(&f.etcd, &f.schema);
    assert_eq!(f.n1.served(&domain), Some(leaf(&short)));
    assert_eq!(f.n2.served(&domain), Some(leaf(&short)));

    // An etcd writer puts back the old, longer-lived bundle: the hosting
    // server keeps its own and puts it back; n2 follows etcd each time.
    f.etcd.put(&f.schema.tls_cert_key(&domain), &long).unwrap();
    let done = f.n1.receive(&f.etcd, &f.schema);
    assert!(
        done.contains(&(domain.clone(), Received::OwnKept)),
        "{done:?}"
    );
    assert_eq!(f.n1.served(&domain), Some(leaf(&short)));
    f.publisher.recheck(&domain);
    assert_eq!(f.publish(), vec![domain.clone()]);
    assert_eq!(f.in_etcd().as_deref(), Some(short.as_str()));
    f.n2.receive(&f.etcd, &f.schema);
    assert_eq!(f.n2.served(&domain), Some(leaf(&short)));
}

#[test]
fn a_pinned_self_signed_bundle_is_refused_and_served_only_from_an_import() {
    let mut f = Fleet::new();
    let domain = f.domain.clone();
    let key = f.schema.tls_cert_key(&domain);
    let pinned = self_signed("example.com", 2090);
    f.etcd.put(&key, &pinned).unwrap();

    // Neither the other server nor the hosting one (which has no
    // certificate of its own yet) takes it; nothing is served.
    for server in [&mut f.n2, &mut f.n1] {
        let done = server.receive(&f.etcd, &f.schema);
        let refused = done.iter().find(|(d, _)| *d == domain).map(|(_, r)| r);
        match refused {
            Some(Received::Refused(why)) => assert!(why.contains("self-signed"), "{why}"),
            other => panic!("not refused: {other:?}"),
        }
        assert!(!server.layout.acme_cert(&domain).exists());
        assert_eq!(server.served(&domain), None);
    }

    // A copy taken before this check is not served either.
    std::fs::create_dir_all(f.n2.layout.acme_certs_dir()).unwrap();
    std::fs::write(f.n2.layout.acme_cert(&domain), &pinned).unwrap();
    f.n2.sync.pass().unwrap();
    assert_eq!(f.n2.served(&domain), None);
    assert!(f.n2.sync.refused().contains_key(&domain));

    // The hosting server publishes its own over it, and n2 takes that.
    let good = f.ca.bundle(&["example.com"], (2020, 2080));
    f.n1_obtains(&good);
    assert_eq!(f.publish(), vec![domain.clone()]);
    f.n2.receive(&f.etcd, &f.schema);
    assert_eq!(f.n2.served(&domain), Some(leaf(&good)));

    // On its own server, an imported self-signed certificate is served.
    let imported = f.n1.layout.tls_pem(&domain);
    std::fs::create_dir_all(imported.parent().unwrap()).unwrap();
    std::fs::write(&imported, &pinned).unwrap();
    f.n1.sync.pass().unwrap();
    assert_eq!(f.n1.served(&domain), Some(leaf(&pinned)));
}

#[test]
fn a_removed_sites_key_is_gone_everywhere() {
    let mut f = Fleet::new();
    let domain = f.domain.clone();
    let key = f.schema.tls_cert_key(&domain);
    let pem = f.ca.bundle(&["example.com"], (2020, 2090));
    f.n1_obtains(&pem);
    assert_eq!(f.publish(), vec![domain.clone()]);
    f.n2.receive(&f.etcd, &f.schema);
    assert_eq!(f.n2.served(&domain), Some(leaf(&pem)));

    // Another site, declared and owned, stays.
    let other = Domain::parse("other.example").unwrap();
    let other_pem = f.ca.bundle(&["other.example"], (2020, 2090));
    f.etcd
        .put(&f.schema.site_key(&other), r#"{"kind":"static"}"#)
        .unwrap();
    f.etcd.put(&f.schema.owner_key(&other), "n3").unwrap();
    f.etcd
        .put(&f.schema.tls_cert_key(&other), &other_pem)
        .unwrap();

    // `hostyard site forget` deletes the declaration and the owner.
    f.etcd.delete(&f.schema.site_key(&domain)).unwrap();
    f.etcd.delete(&f.schema.owner_key(&domain)).unwrap();
    let started = Instant::now();
    // One pass of any server's publisher (here n2's, which hosts nothing).
    let mut p2 = Publisher::new(f.n2.layout.clone(), f.schema.clone(), "n2".to_string());
    f.rt.block_on(p2.pass(&mut f.client));
    assert_eq!(f.in_etcd(), None);
    let done = f.n2.receive(&f.etcd, &f.schema);
    assert!(
        done.contains(&(domain.clone(), Received::Removed)),
        "{done:?}"
    );
    f.n1.receive(&f.etcd, &f.schema);
    let took = started.elapsed();
    assert_eq!(f.n2.served(&domain), None);
    assert!(!f.n2.layout.acme_cert(&domain).exists());
    assert!(!f.n2.layout.haproxy_cert(&domain).exists());
    assert_eq!(f.n2.served(&other), Some(leaf(&other_pem)));
    assert!(f
        .etcd
        .get(&f.schema.tls_cert_key(&other))
        .unwrap()
        .is_some());
    // The hosting server's own file is its own; its publisher does not
    // put the bundle back for an undeclared site.
    assert!(f.n1.layout.acme_cert(&domain).exists());
    f.publisher.recheck(&domain);
    assert_eq!(f.publish(), vec![]);
    assert_eq!(f.etcd.get(&key).unwrap(), None);
    eprintln!(
        "a removed site's certificate left etcd and both servers in {} ms (one publisher pass, one receive and one certificate pass each)",
        took.as_millis()
    );
}

#[test]
fn verification_cost_per_bundle() {
    let ca = SiteCa::new("store test CA");
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca.pem()).unwrap();
    let trust = Trust::load(&ca_file);
    let domain = Domain::parse("example.com").unwrap();
    let pem = ca.bundle(&["example.com"], (2020, 2090));
    let mut times = Vec::new();
    for _ in 0..200 {
        let t = Instant::now();
        trust
            .verify(pem.as_bytes(), &domain, SystemTime::now())
            .unwrap();
        times.push(t.elapsed());
    }
    times.sort();
    let median = times[times.len() / 2];
    eprintln!(
        "verification of one bundle against the system roots plus a CA file: median {} µs over {} runs",
        median.as_micros(),
        times.len()
    );
    // Done once per changed bundle; a slow one would delay the others.
    assert!(median < Duration::from_millis(20), "{median:?}");
}
