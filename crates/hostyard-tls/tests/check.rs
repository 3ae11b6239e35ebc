//! Every refusal of `check_bundle`, on certificates made here with rcgen:
//! one line naming the problem.

use std::time::SystemTime;

use hostyard_core::Domain;
use hostyard_tls::{check_bundle, BadCert};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};

struct Ca {
    cert: rcgen::Certificate,
    key: KeyPair,
}

fn ca() -> Ca {
    let key = KeyPair::generate().unwrap();
    let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
    p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    p.distinguished_name
        .push(DnType::CommonName, "hostyard test CA");
    Ca {
        cert: p.self_signed(&key).unwrap(),
        key,
    }
}

/// A leaf for `names` signed by `ca`, valid between the years given.
fn leaf(ca: &Ca, names: &[&str], years: (i32, i32)) -> (String, KeyPair) {
    let key = KeyPair::generate().unwrap();
    let mut p =
        CertificateParams::new(names.iter().map(|s| s.to_string()).collect::<Vec<_>>()).unwrap();
    p.distinguished_name.push(DnType::CommonName, names[0]);
    p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
    p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
    let cert = p
        .signed_by(
            &key,
            &Issuer::from_ca_cert_der(ca.cert.der(), &ca.key).unwrap(),
        )
        .unwrap();
    (cert.pem(), key)
}

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

#[test]
fn a_good_bundle_is_accepted_with_its_names_and_without_empty_lines() {
    let ca = ca();
    let (cert, key) = leaf(&ca, &["example.com", "www.example.com"], (2020, 2090));
    let text = format!("{cert}\n\n{}\r\n{}", ca.cert.pem(), key.serialize_pem());
    let ok = check_bundle(text.as_bytes(), &d("example.com"), SystemTime::now()).unwrap();
    assert_eq!(ok.names, ["example.com", "www.example.com"]);
    assert!(!ok.pem.contains("\n\n") && !ok.pem.contains('\r'));
    assert_eq!(ok.pem.matches("BEGIN CERTIFICATE").count(), 2);
    // A wildcard covers www. but not the bare name alone.
    let (cert, key) = leaf(&ca, &["*.example.org", "example.org"], (2020, 2090));
    let text = format!("{cert}{}{}", ca.cert.pem(), key.serialize_pem());
    let ok = check_bundle(text.as_bytes(), &d("example.org"), SystemTime::now()).unwrap();
    assert_eq!(ok.names, ["example.org", "www.example.org"]);
}

#[test]
fn each_bad_bundle_is_refused_naming_its_problem() {
    let ca = ca();
    let (good, key) = leaf(&ca, &["example.com"], (2020, 2090));
    let (_, other_key) = leaf(&ca, &["example.com"], (2020, 2090));
    let (expired, expired_key) = leaf(&ca, &["example.com"], (2019, 2020));
    let (future, future_key) = leaf(&ca, &["example.com"], (2080, 2090));
    let (other_name, other_name_key) = leaf(&ca, &["example.net"], (2020, 2090));
    let chain = ca.cert.pem();
    let k = |k: &KeyPair| k.serialize_pem();
    type Case = (String, fn(&BadCert) -> bool, &'static str);
    let cases: Vec<Case> = vec![
        (k(&key), |e| *e == BadCert::NoCertificate, "no certificate"),
        (
            format!("{good}{chain}"),
            |e| *e == BadCert::NoKey,
            "no private key",
        ),
        (
            format!("{good}{chain}{}", k(&other_key)),
            |e| *e == BadCert::KeyMismatch,
            "does not belong",
        ),
        (
            format!("{expired}{chain}{}", k(&expired_key)),
            |e| matches!(e, BadCert::Expired(_)),
            "expired",
        ),
        (
            format!("{future}{chain}{}", k(&future_key)),
            |e| matches!(e, BadCert::NotYetValid(_)),
            "not valid before",
        ),
        (
            format!("{other_name}{chain}{}", k(&other_name_key)),
            |e| matches!(e, BadCert::WrongName { .. }),
            "covers example.net but not example.com",
        ),
        (
            format!("{good}{}", k(&key)),
            |e| matches!(e, BadCert::NoChain(_)),
            "lacks its chain",
        ),
    ];
    let err = check_bundle(b"\x30\x82\xff DER", &d("example.com"), SystemTime::now()).unwrap_err();
    assert_eq!(err, BadCert::NotPem);
    assert!(err.to_string().contains("not PEM"));
    for (text, is, words) in cases {
        let err = check_bundle(text.as_bytes(), &d("example.com"), SystemTime::now()).unwrap_err();
        let line = err.to_string();
        assert!(is(&err), "{words}: got {err:?}");
        assert!(line.contains(words), "{words}: {line}");
        assert_eq!(line.lines().count(), 1, "{line}");
    }
}
