//! The validated domain name: the one type every hostyard binary uses for a
//! site's name.
//!
//! A domain reaches hostyard from outside (a systemd instance name, an etcd
//! key, an import folder, a config file) and then becomes a path component, a
//! unit instance, a container name, an etcd key segment and a HAProxy map key.
//! The original system passed it around as a bare string and broke on each of
//! those. Here it is parsed once, at the edge, and carried as `Domain`
//! afterwards: a value of this type is lower-case RFC 1123 host name syntax,
//! which is safe in every one of those places.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// Longest host name in presentation form (RFC 1035 §2.3.4 less the root dot).
pub const MAX_DOMAIN_LEN: usize = 253;
/// Longest label (RFC 1035 §2.3.4).
pub const MAX_LABEL_LEN: usize = 63;

/// A lower-cased, validated host name such as `example.com`.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Domain(String);

/// Why a string is not a valid domain. Each variant carries what is needed to
/// tell the user what to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DomainError {
    #[error("domain name is empty")]
    Empty,
    #[error(
        "domain name {input:?} is {len} characters long; at most {MAX_DOMAIN_LEN} are allowed"
    )]
    TooLong { input: String, len: usize },
    #[error("domain name {input:?} ends with a dot; write it without the trailing dot")]
    TrailingDot { input: String },
    #[error(
        "site name {input:?} is not in canonical form; use {canonical:?} (lower case, no \
         trailing dot), e.g. `systemctl start static@{canonical}`"
    )]
    NotCanonical { input: String, canonical: String },
    #[error("domain name {input:?} has an empty label (two dots in a row, or a leading dot)")]
    EmptyLabel { input: String },
    #[error("domain name {input:?} has a label longer than {MAX_LABEL_LEN} characters: {label:?}")]
    LabelTooLong { input: String, label: String },
    #[error("domain name {input:?} has a label that starts or ends with a hyphen: {label:?}")]
    HyphenAtEdge { input: String, label: String },
    #[error(
        "domain name {input:?} contains non-ASCII characters; use its punycode (xn--) form, \
         e.g. from `idn2 {input}`"
    )]
    NotAscii { input: String },
    #[error(
        "domain name {input:?} contains {ch:?}; only letters a-z, digits 0-9, hyphens and dots \
         are allowed"
    )]
    BadChar { input: String, ch: char },
    #[error("domain name {input:?} has a single label; a hosted site needs at least two, like example.com")]
    SingleLabel { input: String },
    #[error(
        "domain name {input:?} has an all-numeric top-level label; IP addresses are not site names"
    )]
    NumericTld { input: String },
}

impl Domain {
    /// Parses and lower-cases a host name. See the module docs for the rules.
    pub fn parse(input: &str) -> Result<Domain, DomainError> {
        let owned = || input.to_string();
        if input.is_empty() {
            return Err(DomainError::Empty);
        }
        // Check characters before lengths, so hostile input gets the most
        // useful message ("contains '/'") rather than a length complaint.
        if !input.is_ascii() {
            return Err(DomainError::NotAscii { input: owned() });
        }
        if let Some(ch) = input
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
        {
            return Err(DomainError::BadChar { input: owned(), ch });
        }
        if input.len() > MAX_DOMAIN_LEN {
            return Err(DomainError::TooLong {
                input: owned(),
                len: input.len(),
            });
        }
        if input.ends_with('.') && input.len() > 1 && !input.ends_with("..") {
            return Err(DomainError::TrailingDot { input: owned() });
        }
        let lower = input.to_ascii_lowercase();
        let mut labels = 0;
        let mut last = "";
        for label in lower.split('.') {
            if label.is_empty() {
                return Err(DomainError::EmptyLabel { input: owned() });
            }
            if label.len() > MAX_LABEL_LEN {
                return Err(DomainError::LabelTooLong {
                    input: owned(),
                    label: label.to_string(),
                });
            }
            if label.starts_with('-') || label.ends_with('-') {
                return Err(DomainError::HyphenAtEdge {
                    input: owned(),
                    label: label.to_string(),
                });
            }
            labels += 1;
            last = label;
        }
        if labels < 2 {
            return Err(DomainError::SingleLabel { input: owned() });
        }
        if last.bytes().all(|b| b.is_ascii_digit()) {
            return Err(DomainError::NumericTld { input: owned() });
        }
        Ok(Domain(lower))
    }

    /// Parses a site name that names a unit instance, a container and an
    /// etcd key as it is: only the canonical form is accepted.
    ///
    /// `static@Example.com` and `static@example.com.` are other systemd units
    /// than `static@example.com`, yet [`Domain::parse`] maps all three to the
    /// same site. A second unit for the same site would register the same
    /// etcd key under a lease of its own and revoke it when stopped, taking
    /// the real site out of routing; so every helper refuses a name that is
    /// not already canonical, naming the form to use.
    pub fn parse_instance(input: &str) -> Result<Domain, DomainError> {
        let canonical = match input.strip_suffix('.') {
            // Without the dot it must still be a valid name, else report
            // whatever is wrong with it.
            Some(stripped) if !stripped.ends_with('.') => Domain::parse(stripped)?,
            _ => Domain::parse(input)?,
        };
        if canonical.as_str() != input {
            return Err(DomainError::NotCanonical {
                input: input.to_string(),
                canonical: canonical.0,
            });
        }
        Ok(canonical)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The `www.` form that redirects to this domain.
    ///
    /// Returns `None` when the result would not be a valid domain (too long).
    pub fn www(&self) -> Option<Domain> {
        if self.0.starts_with("www.") {
            return None;
        }
        Domain::parse(&format!("www.{}", self.0)).ok()
    }
}

impl fmt::Display for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Domain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Domain({})", self.0)
    }
}

impl FromStr for Domain {
    type Err = DomainError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Domain::parse(s)
    }
}

impl TryFrom<String> for Domain {
    type Error = DomainError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        Domain::parse(&s)
    }
}

impl From<Domain> for String {
    fn from(d: Domain) -> String {
        d.0
    }
}

impl AsRef<str> for Domain {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn instance_names_must_be_canonical_and_the_error_names_the_form_to_use() {
        assert_eq!(
            Domain::parse_instance("example.com").unwrap().as_str(),
            "example.com"
        );
        for (input, canonical) in [
            ("Example.com", "example.com"),
            ("example.com.", "example.com"),
            ("WWW.Example.COM.", "www.example.com"),
        ] {
            let err = Domain::parse_instance(input).expect_err(input);
            assert_eq!(
                err,
                DomainError::NotCanonical {
                    input: input.into(),
                    canonical: canonical.into()
                }
            );
            assert!(
                err.to_string().contains(&format!("use \"{canonical}\"")),
                "{err}"
            );
        }
        // Invalid names keep their own, more useful, error.
        assert!(matches!(
            Domain::parse_instance("a..b"),
            Err(DomainError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Domain::parse_instance("example.com.."),
            Err(DomainError::EmptyLabel { .. })
        ));
        assert!(matches!(
            Domain::parse_instance("."),
            Err(DomainError::EmptyLabel { .. } | DomainError::Empty)
        ));
    }

    #[test]
    fn accepts_ordinary_names_and_lowercases_them() {
        for (input, want) in [
            ("example.com", "example.com"),
            ("Example.COM", "example.com"),
            ("a.b.c.d.example.org", "a.b.c.d.example.org"),
            ("xn--bcher-kva.example", "xn--bcher-kva.example"),
            ("my-site.co.uk", "my-site.co.uk"),
            ("1password.com", "1password.com"),
            ("a.io", "a.io"),
        ] {
            assert_eq!(Domain::parse(input).unwrap().as_str(), want, "{input}");
        }
    }

    #[test]
    fn refuses_hostile_and_malformed_names_with_a_named_reason() {
        let long = format!("{}.com", "a".repeat(250));
        let cases: &[(&str, &str)] = &[
            ("../etc", "contains '/'"),
            ("a/b", "contains '/'"),
            ("a b", "contains ' '"),
            ("-x.com", "starts or ends with a hyphen"),
            ("x-.com", "starts or ends with a hyphen"),
            ("x.com.", "trailing dot"),
            ("$(id).com", "contains '$'"),
            ("", "empty"),
            (&long, "254 characters"),
            ("a..b", "empty label"),
            (".a.b", "empty label"),
            ("%", "contains '%'"),
            ("a%2fb.com", "contains '%'"),
            ("user@example.com", "contains '@'"),
            ("bücher.example", "punycode"),
            ("localhost", "single label"),
            ("127.0.0.1", "all-numeric"),
            ("a_b.com", "contains '_'"),
            ("x.com\n", "contains '\\n'"),
        ];
        for (input, needle) in cases {
            let err = Domain::parse(input).expect_err(input).to_string();
            assert!(err.contains(needle), "{input:?}: {err:?} lacks {needle:?}");
        }
        let label = format!("{}.com", "a".repeat(64));
        assert!(matches!(
            Domain::parse(&label),
            Err(DomainError::LabelTooLong { .. })
        ));
    }

    #[test]
    fn limits_are_inclusive() {
        let label63 = "a".repeat(63);
        let d = format!("{label63}.{label63}.{label63}.{}", "b".repeat(61));
        assert_eq!(d.len(), 253);
        assert!(Domain::parse(&d).is_ok());
    }

    #[test]
    fn www_form() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(d.www().unwrap().as_str(), "www.example.com");
        assert!(Domain::parse("www.example.com").unwrap().www().is_none());
    }

    #[test]
    fn deserializes_through_validation() {
        let ok: Domain = serde_json::from_str("\"Example.com\"").unwrap();
        assert_eq!(ok.as_str(), "example.com");
        assert!(serde_json::from_str::<Domain>("\"../etc\"").is_err());
    }

    proptest! {
        /// Whatever the input, an accepted value is safe as a path component,
        /// a systemd instance name (no escaping needed), an etcd key segment
        /// and a HAProxy map key, and it round-trips.
        #[test]
        fn accepted_values_are_safe_everywhere(input in "\\PC{0,80}|[a-zA-Z0-9.%/@ _-]{0,80}") {
            if let Ok(d) = Domain::parse(&input) {
                let s = d.as_str();
                prop_assert!(!s.is_empty() && s.len() <= MAX_DOMAIN_LEN);
                prop_assert!(s != "." && s != ".." && !s.contains('/') && !s.contains('\0'));
                prop_assert!(!s.starts_with('-') && !s.starts_with('.'));
                prop_assert!(s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.'));
                prop_assert!(!s.contains(".."));
                prop_assert_eq!(&Domain::parse(s).unwrap(), &d);
                prop_assert_eq!(s, input.to_ascii_lowercase());
            }
        }

        /// An instance name is accepted exactly when it is already the
        /// canonical form of a valid name.
        #[test]
        fn instance_names_are_accepted_only_when_canonical(input in "[a-zA-Z0-9.-]{0,40}\\.?") {
            let want = Domain::parse(&input).ok().filter(|d| d.as_str() == input);
            prop_assert_eq!(Domain::parse_instance(&input).ok(), want);
        }

        #[test]
        fn generated_valid_names_are_accepted(labels in proptest::collection::vec("[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?", 1..5), tld in "[a-z]{2,10}") {
            let mut name = labels.join(".");
            name.push('.');
            name.push_str(&tld);
            let d = Domain::parse(&name.to_uppercase()).unwrap();
            prop_assert_eq!(d.as_str(), name);
        }
    }
}
