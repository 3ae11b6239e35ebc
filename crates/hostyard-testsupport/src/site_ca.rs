//! A throwaway CA that signs sites' certificates, for tests of certificate
//! checks, stores and HTTPS: a leaf for some names and years, as PEM.

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::CertificateDer;

pub struct SiteCa {
    cert: rcgen::Certificate,
    key: KeyPair,
}

impl SiteCa {
    /// A new CA, `name` its common name.
    pub fn new(name: &str) -> SiteCa {
        let key = KeyPair::generate().unwrap();
        let mut p = CertificateParams::new(Vec::<String>::new()).unwrap();
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        p.distinguished_name.push(DnType::CommonName, name);
        let cert = p.self_signed(&key).unwrap();
        SiteCa { cert, key }
    }

    /// The CA's certificate (PEM).
    pub fn pem(&self) -> String {
        self.cert.pem()
    }

    /// The CA's certificate (DER), for a trust store.
    pub fn der(&self) -> &CertificateDer<'static> {
        self.cert.der()
    }

    /// A leaf for `names`, the first one its common name, valid from
    /// January 1st of the first year to January 1st of the second: the
    /// certificate (PEM) and its new key.
    pub fn leaf(&self, names: &[&str], years: (i32, i32)) -> (String, KeyPair) {
        let key = KeyPair::generate().unwrap();
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut p = CertificateParams::new(names.clone()).unwrap();
        p.distinguished_name.push(DnType::CommonName, &names[0]);
        p.not_before = rcgen::date_time_ymd(years.0, 1, 1);
        p.not_after = rcgen::date_time_ymd(years.1, 1, 1);
        let issuer = Issuer::from_ca_cert_der(self.cert.der(), &self.key).unwrap();
        (p.signed_by(&key, &issuer).unwrap().pem(), key)
    }

    /// A bundle as a site keeps it: a leaf (see [`SiteCa::leaf`]), this
    /// CA's certificate, the leaf's key.
    pub fn bundle(&self, names: &[&str], years: (i32, i32)) -> String {
        let (leaf, key) = self.leaf(names, years);
        format!("{leaf}{}{}", self.pem(), key.serialize_pem())
    }
}
