//! Every refusal of `check_bundle`, on certificates made here with rcgen:
//! one line naming the problem.

use std::time::SystemTime;

use hostyard_core::Domain;
use hostyard_testsupport::SiteCa;
use hostyard_tls::{check_bundle, BadCert};
use rcgen::KeyPair;

fn d(s: &str) -> Domain {
    Domain::parse(s).unwrap()
}

#[test]
fn a_good_bundle_is_accepted_with_its_names_and_without_empty_lines() {
    let ca = SiteCa::new("hostyard test CA");
    let (cert, key) = ca.leaf(&["example.com", "www.example.com"], (2020, 2090));
    let text = format!("{cert}\n\n{}\r\n{}", ca.pem(), key.serialize_pem());
    let ok = check_bundle(text.as_bytes(), &d("example.com"), SystemTime::now()).unwrap();
    assert_eq!(ok.names, ["example.com", "www.example.com"]);
    assert!(!ok.pem.contains("\n\n") && !ok.pem.contains('\r'));
    assert_eq!(ok.pem.matches("BEGIN CERTIFICATE").count(), 2);
    // A wildcard covers www. but not the bare name alone.
    let (cert, key) = ca.leaf(&["*.example.org", "example.org"], (2020, 2090));
    let text = format!("{cert}{}{}", ca.pem(), key.serialize_pem());
    let ok = check_bundle(text.as_bytes(), &d("example.org"), SystemTime::now()).unwrap();
    assert_eq!(ok.names, ["example.org", "www.example.org"]);
}

#[test]
fn each_bad_bundle_is_refused_naming_its_problem() {
    let ca = SiteCa::new("hostyard test CA");
    let (good, key) = ca.leaf(&["example.com"], (2020, 2090));
    let (_, other_key) = ca.leaf(&["example.com"], (2020, 2090));
    let (expired, expired_key) = ca.leaf(&["example.com"], (2019, 2020));
    let (future, future_key) = ca.leaf(&["example.com"], (2080, 2090));
    let (other_name, other_name_key) = ca.leaf(&["example.net"], (2020, 2090));
    let chain = ca.pem();
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
