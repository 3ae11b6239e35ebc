//! A site's edge rules: what HAProxy does for the site's names before the
//! site sees a request, set by `hostyard site set` and kept in the site's
//! declaration ([`crate::etcd::SiteDecl`]): path redirects, the canonical
//! name (`D` or `www.D`), HTTP basic auth for a preview and the security
//! headers preset. The decision on a change is a pure function here; confd
//! turns the rules into HAProxy map entries ([`redirect_entries`],
//! [`site_entries`]) and the runtime API applies them without a reload.
//!
//! A redirect is always permanent: 301 (the method may become GET, as
//! browsers do for a moved page) or 308 (the method and body are kept, for
//! an API or a form's target). 302 and 307 tell search engines the old URL
//! stays, which loses a moved site's ranking, so they cannot be chosen. The
//! request's query string is always kept, and a rule never points at
//! another rule: every redirect is one hop.

use serde::{Deserialize, Serialize};

use crate::Domain;

/// The most path redirects one site may have: the map lookups stay cheap
/// (a tree each, but every rule is a line confd keeps in HAProxy's memory),
/// and a moved site with more old URLs than this wants a prefix rule.
pub const MAX_REDIRECTS: usize = 1000;

/// The longest `from` or `to` of a rule, in bytes.
pub const MAX_REDIRECT_LEN: usize = 1024;

/// Everything `hostyard site set` changes besides aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EdgeRules {
    /// Path redirects, sorted by kind and `from`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub redirects: Vec<PathRedirect>,
    /// The name the site is served under; the other one redirects to it.
    #[serde(default, skip_serializing_if = "Canonical::is_bare")]
    pub canonical: Canonical,
    /// A password in front of the site (a preview).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Security headers added to the site's responses.
    #[serde(default, skip_serializing_if = "HeadersPreset::is_none")]
    pub headers: HeadersPreset,
}

impl EdgeRules {
    pub fn is_empty(&self) -> bool {
        self == &EdgeRules::default()
    }
}

/// One path redirect of a site.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PathRedirect {
    /// Exact: the path equals `from`. Prefix: the path starts with `from`
    /// (a string prefix: `/blog/` takes `/blog/x`, `/blog` also `/blogs`),
    /// and what follows it is appended to `to`; the longest prefix wins.
    /// An exact rule wins over every prefix rule.
    #[serde(default)]
    pub prefix: bool,
    /// The path as the client sends it (percent-encoded), without a query.
    pub from: String,
    /// A path of the site itself (`/new`) or an absolute `http(s)://` URL,
    /// without a query or fragment.
    pub to: String,
    /// 301 or 308.
    pub code: u16,
}

impl PathRedirect {
    /// Parses `[301:|308:]FROM=TO` as `--redirect` and `--redirect-prefix`
    /// take it (301 when no code is given).
    pub fn parse(spec: &str, prefix: bool) -> Result<PathRedirect, String> {
        let (code, rule) = match spec.split_once(':') {
            Some((c, rest)) if !c.starts_with('/') => match c {
                "301" => (301, rest),
                "308" => (308, rest),
                _ => {
                    return Err(format!(
                        "{spec:?}: {c} is no permanent redirect's status; write 301:FROM=TO or \
                         308:FROM=TO (302 and 307 are not offered: search engines keep the old URL)"
                    ))
                }
            },
            _ => (301, spec),
        };
        let Some((from, to)) = rule.split_once('=') else {
            return Err(format!(
                "{spec:?} is not FROM=TO (for example /old=/new or /blog/=https://blog.example.org/)"
            ));
        };
        let r = PathRedirect {
            prefix,
            from: from.to_string(),
            to: to.to_string(),
            code,
        };
        r.check()?;
        Ok(r)
    }

    /// The rule as `hostyard site show` prints it and `parse` reads it.
    pub fn spec(&self) -> String {
        format!("{}:{}={}", self.code, self.from, self.to)
    }

    /// Whether the rule takes this request path.
    pub fn matches(&self, path: &str) -> bool {
        if self.prefix {
            path.starts_with(&self.from)
        } else {
            path == self.from
        }
    }

    /// The target's path when it is a path of the site itself.
    fn local_target(&self) -> Option<&str> {
        self.to.starts_with('/').then_some(self.to.as_str())
    }

    /// One rule on its own: well-formed parts.
    fn check(&self) -> Result<(), String> {
        let what = if self.prefix {
            "--redirect-prefix"
        } else {
            "--redirect"
        };
        if self.code != 301 && self.code != 308 {
            return Err(format!(
                "{}: status {} is neither 301 nor 308",
                self.from, self.code
            ));
        }
        if !self.from.starts_with('/') {
            return Err(format!(
                "{what} {:?}: the path to redirect starts with /",
                self.from
            ));
        }
        for (part, text) in [("path", &self.from), ("target", &self.to)] {
            if text.len() > MAX_REDIRECT_LEN {
                return Err(format!(
                    "{what} {}: the {part} is longer than {MAX_REDIRECT_LEN} bytes",
                    self.from
                ));
            }
            if let Some(c) = text
                .chars()
                .find(|c| !c.is_ascii_graphic() || matches!(c, '?' | '#' | '"' | '\\'))
            {
                return Err(format!(
                    "{what} {}={}: {c:?} is not allowed in the {part} (a query string is kept \
                     from the request; write other characters percent-encoded)",
                    self.from, self.to
                ));
            }
        }
        let absolute = ["https://", "http://"]
            .iter()
            .find_map(|s| self.to.strip_prefix(s));
        match absolute {
            Some(rest) => {
                let host = rest.split(['/', ':']).next().unwrap_or_default();
                if Domain::parse(host).is_err() {
                    return Err(format!(
                        "{what} {}={}: {host:?} is not a host name",
                        self.from, self.to
                    ));
                }
            }
            None if self.to.starts_with('/') && !self.to.starts_with("//") => {}
            None => {
                return Err(format!(
                    "{what} {}={}: the target is a path of the site (/new) or a URL \
                     (https://example.org/new)",
                    self.from, self.to
                ))
            }
        }
        Ok(())
    }
}

/// The redirects `domain` has after adding `add` (a rule of the same kind
/// and `from` is replaced) and removing the rules whose `from` is in
/// `remove`; or every reason the change is refused, one line each.
pub fn decide_redirects(
    current: &[PathRedirect],
    add: &[PathRedirect],
    remove: &[String],
) -> Result<Vec<PathRedirect>, Vec<String>> {
    let mut problems = Vec::new();
    let mut next: Vec<PathRedirect> = current.to_vec();
    for from in remove {
        let before = next.len();
        next.retain(|r| &r.from != from);
        if next.len() == before {
            problems.push(format!(
                "no redirect from {from} (the site's: {})",
                if current.is_empty() {
                    "none".to_string()
                } else {
                    current
                        .iter()
                        .map(|r| r.from.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                }
            ));
        }
    }
    for (i, rule) in add.iter().enumerate() {
        if let Err(e) = rule.check() {
            problems.push(e);
            continue;
        }
        if add[..i]
            .iter()
            .any(|r| r.from == rule.from && r.prefix == rule.prefix)
        {
            problems.push(format!("{} is given twice; name it once", rule.from));
            continue;
        }
        if remove.contains(&rule.from) {
            problems.push(format!(
                "{} is both added and removed; name it once",
                rule.from
            ));
            continue;
        }
        next.retain(|r| !(r.from == rule.from && r.prefix == rule.prefix));
        next.push(rule.clone());
    }
    next.sort();
    if next.len() > MAX_REDIRECTS {
        problems.push(format!(
            "the site would have {} redirects; at most {MAX_REDIRECTS} (a prefix rule covers many \
             paths)",
            next.len()
        ));
    }
    problems.extend(chains(&next));
    if problems.is_empty() {
        Ok(next)
    } else {
        Err(problems)
    }
}

/// The rule that takes `path`, as HAProxy picks it: an exact rule first,
/// then the longest prefix.
pub fn rule_for<'a>(rules: &'a [PathRedirect], path: &str) -> Option<&'a PathRedirect> {
    rules
        .iter()
        .find(|r| !r.prefix && r.matches(path))
        .or_else(|| {
            rules
                .iter()
                .filter(|r| r.prefix && r.matches(path))
                .max_by_key(|r| r.from.len())
        })
}

/// Rules whose target is redirected again (a second hop, or a loop).
fn chains(rules: &[PathRedirect]) -> Vec<String> {
    let mut problems = Vec::new();
    for rule in rules {
        let Some(target) = rule.local_target() else {
            continue;
        };
        // The target itself, and for a prefix rule any path below it
        // that another rule takes.
        let hit = rule_for(rules, target).or_else(|| {
            rule.prefix
                .then(|| {
                    rules
                        .iter()
                        .find(|r| r.from.starts_with(target) && r.from != rule.from)
                })
                .flatten()
        });
        if let Some(other) = hit {
            if other == rule {
                problems.push(format!(
                    "{} -> {} redirects to itself again (a loop)",
                    rule.from, rule.to
                ));
            } else {
                problems.push(format!(
                    "{} -> {} is redirected again by {} -> {}: point {} at the final target, \
                     every redirect is one hop",
                    rule.from, rule.to, other.from, other.to, rule.from
                ));
            }
        }
    }
    problems
}

/// HAProxy's map entries for `domain`'s rules: (exact, prefix), each a
/// list of (key, value). The key is the site's name and the path
/// (`example.com/old`), so one map serves every site; the value is
/// `<status>/<length of from>/<target>` (haproxy.cfg takes the status
/// with `field(1,/)`, cuts the path after the length with `bytes`, and
/// takes the target after the second `/`). No value holds a space.
pub type MapEntries = Vec<(String, String)>;

pub fn redirect_entries(domain: &Domain, rules: &[PathRedirect]) -> (MapEntries, MapEntries) {
    let mut exact = Vec::new();
    let mut prefix = Vec::new();
    for r in rules {
        let entry = (
            format!("{domain}{}", r.from),
            format!("{}/{}/{}", r.code, r.from.len(), r.to),
        );
        if r.prefix {
            prefix.push(entry);
        } else {
            exact.push(entry);
        }
    }
    (exact, prefix)
}

/// The name a site is served under: `D` (the default; `www.D` redirects
/// to it) or `www.D` (`D` redirects to it). Either way one 301 reaches it
/// from the other name and from every alias.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Canonical {
    #[default]
    Bare,
    Www,
}

impl Canonical {
    /// `--canonical bare|www`.
    pub fn parse(s: &str) -> Result<Canonical, String> {
        match s {
            "bare" => Ok(Canonical::Bare),
            "www" => Ok(Canonical::Www),
            _ => Err(format!(
                "--canonical {s:?}: write bare (serve D, www.D redirects to it) or www (serve \
                 www.D, D redirects to it)"
            )),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Canonical::Bare => "bare",
            Canonical::Www => "www",
        }
    }

    fn is_bare(&self) -> bool {
        *self == Canonical::Bare
    }

    /// The name `domain` is served under with this choice; refused for a
    /// domain that has no `www.` name of its own (it is one, or too long).
    pub fn name(self, domain: &Domain) -> Result<Domain, String> {
        match self {
            Canonical::Bare => Ok(domain.clone()),
            Canonical::Www => domain.www().ok_or_else(|| {
                format!(
                    "{domain} has no www. name of its own to serve under (it is a www. name or \
                     too long); keep --canonical bare"
                )
            }),
        }
    }
}

/// The shortest preview password: the map holds a fast salted hash
/// (SHA-256, as HAProxy computes it per request), which only a long
/// password makes hopeless to guess offline.
pub const MIN_PASSWORD_LEN: usize = 16;

/// The longest preview password or user name, in bytes.
pub const MAX_CREDENTIAL_LEN: usize = 256;

/// HTTP basic auth in front of a site: the user and a salted hash, never
/// the password.
///
/// HAProxy's own check (`http_auth` with a `userlist`) lives in the
/// configuration file, which changes only with a reload; the runtime API
/// changes maps. So the map holds `<salt>/<hash>` per site and HAProxy
/// compares `sha2(256)` of the salt followed by the request's
/// `Authorization` header with the hash (`secure_memcmp`, constant time).
/// The salt is random per setting: one password on two sites, or set
/// twice, gives two hashes, and no table of precomputed hashes applies.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicAuth {
    pub user: String,
    /// 16 random bytes, lower-case hex.
    pub salt: String,
    /// SHA-256 of the salt's text followed by `Basic <base64(user:password)>`,
    /// upper-case hex as HAProxy's `hex` converter writes it.
    pub sha256: String,
}

impl BasicAuth {
    /// The setting for `user` and `password` with this salt (16 random
    /// bytes the caller draws), or why the credentials are refused.
    pub fn new(user: &str, password: &str, salt: [u8; 16]) -> Result<BasicAuth, String> {
        check_user(user)?;
        if password.chars().count() < MIN_PASSWORD_LEN {
            return Err(format!(
                "the password has {} characters; a preview password has at least \
                 {MIN_PASSWORD_LEN} (for example `openssl rand -base64 18`)",
                password.chars().count()
            ));
        }
        if password.len() > MAX_CREDENTIAL_LEN {
            return Err(format!(
                "the password is longer than {MAX_CREDENTIAL_LEN} bytes"
            ));
        }
        if password.chars().any(char::is_control) {
            return Err(
                "the password holds a control character (a tab or a second line?); \
                 give one line"
                    .to_string(),
            );
        }
        let salt = hex::encode(salt);
        let sha256 = hash(&salt, &authorization(user, password));
        Ok(BasicAuth {
            user: user.to_string(),
            salt,
            sha256,
        })
    }

    /// Whether a request's `Authorization` header value passes, as
    /// HAProxy decides it.
    pub fn accepts(&self, header: &str) -> bool {
        hash(&self.salt, header) == self.sha256
    }

    /// A setting read from etcd: well-formed parts, so no map value holds
    /// a space or a `/` out of place.
    pub fn check(&self) -> Result<(), String> {
        check_user(&self.user)?;
        let hex_of = |s: &str, len: usize, upper: bool| {
            s.len() == len
                && s.chars().all(|c| {
                    c.is_ascii_digit()
                        || if upper {
                            ('A'..='F').contains(&c)
                        } else {
                            ('a'..='f').contains(&c)
                        }
                })
        };
        if !hex_of(&self.salt, 32, false) || !hex_of(&self.sha256, 64, true) {
            return Err(format!(
                "basic auth of user {}: the salt or hash is malformed; set it again with \
                 --basic-auth",
                self.user
            ));
        }
        Ok(())
    }
}

/// The `Authorization` header value a browser sends (RFC 7617, UTF-8).
pub fn authorization(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

fn hash(salt: &str, header: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, format!("{salt}{header}").as_bytes());
    hex::encode_upper(digest.as_ref())
}

fn check_user(user: &str) -> Result<(), String> {
    if user.is_empty() || user.len() > 64 {
        return Err(format!(
            "--basic-auth {user:?}: a user name has 1 to 64 characters"
        ));
    }
    if let Some(c) = user.chars().find(|c| !c.is_ascii_graphic() || *c == ':') {
        return Err(format!(
            "--basic-auth {user:?}: {c:?} is not allowed in a user name (letters, digits and \
             punctuation other than ':')"
        ));
    }
    Ok(())
}

/// Security headers HAProxy adds to a site's responses, unless the site
/// sends the header itself (its own choice wins).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HeadersPreset {
    /// None added.
    #[default]
    None,
    /// Harmless for any site: no MIME sniffing, no full URL sent to other
    /// sites, no framing by other sites.
    Basic,
    /// Basic, plus HSTS over HTTPS and no access to the camera,
    /// microphone, location, payment or USB APIs.
    Strict,
}

impl HeadersPreset {
    pub const ALL: [HeadersPreset; 3] = [
        HeadersPreset::None,
        HeadersPreset::Basic,
        HeadersPreset::Strict,
    ];

    /// `--headers none|basic|strict`.
    pub fn parse(s: &str) -> Result<HeadersPreset, String> {
        HeadersPreset::ALL
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                format!("--headers {s:?}: write none, basic (nosniff, referrer policy, same-origin frames) or strict (basic, HSTS and a permissions policy)")
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            HeadersPreset::None => "none",
            HeadersPreset::Basic => "basic",
            HeadersPreset::Strict => "strict",
        }
    }

    fn is_none(&self) -> bool {
        *self == HeadersPreset::None
    }

    /// The headers a response gets with this preset (`https`: it is
    /// served over HTTPS).
    pub fn headers(self, https: bool) -> Vec<(&'static str, &'static str)> {
        SECURITY_HEADERS
            .iter()
            .filter(|h| match self {
                HeadersPreset::None => false,
                HeadersPreset::Basic => !h.strict_only,
                HeadersPreset::Strict => !h.https_only || https,
            })
            .map(|h| (h.name, h.value))
            .collect()
    }
}

/// One header of the presets; haproxy.cfg has one rule each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SecurityHeader {
    pub name: &'static str,
    pub value: &'static str,
    /// Only in the strict preset.
    pub strict_only: bool,
    /// Only on a response over HTTPS (HSTS means nothing over HTTP).
    pub https_only: bool,
}

/// Every header of the presets.
pub const SECURITY_HEADERS: &[SecurityHeader] = &[
    SecurityHeader {
        name: "X-Content-Type-Options",
        value: "nosniff",
        strict_only: false,
        https_only: false,
    },
    SecurityHeader {
        name: "Referrer-Policy",
        value: "strict-origin-when-cross-origin",
        strict_only: false,
        https_only: false,
    },
    SecurityHeader {
        name: "X-Frame-Options",
        value: "SAMEORIGIN",
        strict_only: false,
        https_only: false,
    },
    // A year, the site's own name only: includeSubDomains or preload
    // would bind names this site does not control.
    SecurityHeader {
        name: "Strict-Transport-Security",
        value: "max-age=31536000",
        strict_only: true,
        https_only: true,
    },
    SecurityHeader {
        name: "Permissions-Policy",
        value: "camera=(), microphone=(), geolocation=(), payment=(), usb=()",
        strict_only: true,
        https_only: false,
    },
];

/// One site's entries in the per-site maps (`None`: no line in that map).
/// Each map is keyed by the declared domain, which haproxy.cfg finds for
/// the site's every name.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SiteEntries {
    /// `D` → `www.D` when the site is served under `www.D`.
    pub canonical: Option<(String, String)>,
    /// `D` → `<salt>/<hash>` ([`BasicAuth`]).
    pub basic_auth: Option<(String, String)>,
    /// `D` → `basic` or `strict`.
    pub headers: Option<(String, String)>,
}

pub fn site_entries(domain: &Domain, rules: &EdgeRules) -> SiteEntries {
    let key = domain.to_string();
    SiteEntries {
        canonical: rules
            .canonical
            .name(domain)
            .ok()
            .filter(|name| name != domain)
            .map(|name| (key.clone(), name.to_string())),
        basic_auth: rules
            .basic_auth
            .as_ref()
            .map(|a| (key.clone(), format!("{}/{}", a.salt, a.sha256))),
        headers: (!rules.headers.is_none())
            .then(|| (key.clone(), rules.headers.as_str().to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exact(from: &str, to: &str) -> PathRedirect {
        PathRedirect::parse(&format!("{from}={to}"), false).unwrap()
    }

    fn prefix(from: &str, to: &str) -> PathRedirect {
        PathRedirect::parse(&format!("{from}={to}"), true).unwrap()
    }

    #[test]
    fn parses_the_status_the_paths_and_refuses_what_is_not_permanent() {
        let r = PathRedirect::parse("308:/api=/v2/api", false).unwrap();
        assert_eq!(
            (r.code, r.from.as_str(), r.to.as_str()),
            (308, "/api", "/v2/api")
        );
        assert_eq!(PathRedirect::parse(&r.spec(), false).unwrap(), r);
        let r = PathRedirect::parse("/blog/=https://blog.example.org/", true).unwrap();
        assert_eq!(r.code, 301);
        assert_eq!(r.to, "https://blog.example.org/");
        for (bad, says) in [
            ("302:/a=/b", "302 is no permanent"),
            ("307:/a=/b", "307 is no permanent"),
            ("/a", "not FROM=TO"),
            ("a=/b", "starts with /"),
            ("/a=b", "a path of the site"),
            ("/a=//evil.example/", "a path of the site"),
            ("/a=/b?x=1", "'?' is not allowed"),
            ("/a b=/c", "' ' is not allowed"),
            ("/a=/b#top", "'#' is not allowed"),
            ("/a=https://no host/", "' ' is not allowed"),
            ("/a=https://-x/", "not a host name"),
            ("/a=ftp://x.example/", "a path of the site"),
        ] {
            let e = PathRedirect::parse(bad, false).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        let long = format!("/{}=/b", "a".repeat(MAX_REDIRECT_LEN));
        assert!(PathRedirect::parse(&long, false)
            .unwrap_err()
            .contains("longer"));
    }

    #[test]
    fn adds_replaces_and_removes_sorted() {
        let current = vec![
            exact("/old", "/new"),
            prefix("/blog/", "https://blog.example.org/"),
        ];
        let got = decide_redirects(
            &current,
            &[exact("/old", "/newer"), exact("/a", "/b")],
            &["/blog/".to_string()],
        )
        .unwrap();
        assert_eq!(got, vec![exact("/a", "/b"), exact("/old", "/newer")]);
        // An exact and a prefix rule of one path are two rules.
        let got = decide_redirects(&got, &[prefix("/old", "/newer/")], &[]).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(decide_redirects(&got, &[], &[]).unwrap(), got);
    }

    #[test]
    fn refuses_every_problem_at_once_and_changes_nothing() {
        let current = vec![exact("/a", "/b")];
        let problems = decide_redirects(
            &current,
            &[
                exact("/x", "/a"),
                exact("/y", "/z"),
                exact("/y", "/w"),
                exact("/gone", "/g"),
            ],
            &["/gone".to_string(), "/nope".to_string()],
        )
        .unwrap_err();
        let text = problems.join("\n");
        assert!(text.contains("no redirect from /nope"), "{text}");
        assert!(text.contains("/y is given twice"), "{text}");
        assert!(text.contains("/gone is both added and removed"), "{text}");
        assert!(
            text.contains("/x -> /a is redirected again by /a -> /b"),
            "{text}"
        );
    }

    #[test]
    fn refuses_loops_and_second_hops_of_prefix_rules() {
        for rules in [
            vec![exact("/a", "/a")],
            vec![prefix("/a/", "/a/b/")],
            vec![prefix("/old/", "/new/"), exact("/new/x", "/y")],
            vec![exact("/a", "/b/c"), prefix("/b/", "/d/")],
        ] {
            assert!(decide_redirects(&[], &rules, &[]).is_err(), "{rules:?}");
        }
        // A target elsewhere is never a second hop here.
        let ok = [
            exact("/a", "https://other.example/a"),
            prefix("/", "https://new.example/"),
        ];
        assert!(decide_redirects(&[], &ok, &[]).is_ok());
    }

    #[test]
    fn a_bounded_count() {
        let many: Vec<_> = (0..=MAX_REDIRECTS)
            .map(|i| exact(&format!("/p{i}"), "/"))
            .collect();
        let e = decide_redirects(&[], &many, &[]).unwrap_err().join("\n");
        assert!(e.contains(&format!("at most {MAX_REDIRECTS}")), "{e}");
        assert!(decide_redirects(&[], &many[..MAX_REDIRECTS], &[]).is_ok());
    }

    #[test]
    fn exact_wins_then_the_longest_prefix() {
        let rules = vec![
            prefix("/b", "/1/"),
            prefix("/blog/", "/2/"),
            exact("/blog/x", "/3"),
        ];
        assert_eq!(rule_for(&rules, "/blog/x").unwrap().to, "/3");
        assert_eq!(rule_for(&rules, "/blog/y").unwrap().to, "/2/");
        assert_eq!(rule_for(&rules, "/bx").unwrap().to, "/1/");
        assert!(rule_for(&rules, "/c").is_none());
    }

    #[test]
    fn map_entries_carry_status_length_and_target() {
        let d = Domain::parse("example.com").unwrap();
        let (e, p) = redirect_entries(
            &d,
            &[
                exact("/old", "/new"),
                PathRedirect::parse("308:/blog/=https://b.example/", true).unwrap(),
            ],
        );
        assert_eq!(e, vec![("example.com/old".into(), "301/4//new".into())]);
        assert_eq!(
            p,
            vec![(
                "example.com/blog/".into(),
                "308/6/https://b.example/".into()
            )]
        );
    }

    #[test]
    fn empty_rules_leave_the_declaration_as_it_was() {
        let json = serde_json::to_string(&EdgeRules::default()).unwrap();
        assert_eq!(json, "{}");
    }

    #[test]
    fn the_canonical_name_is_the_domain_or_its_www_name() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(Canonical::Bare.name(&d).unwrap(), d);
        assert_eq!(Canonical::Www.name(&d).unwrap().as_str(), "www.example.com");
        let www = Domain::parse("www.example.com").unwrap();
        assert!(Canonical::Www
            .name(&www)
            .unwrap_err()
            .contains("keep --canonical bare"));
        for c in [Canonical::Bare, Canonical::Www] {
            assert_eq!(Canonical::parse(c.as_str()).unwrap(), c);
        }
        assert!(Canonical::parse("apex").unwrap_err().contains("bare"));
    }

    #[test]
    fn basic_auth_keeps_a_salted_hash_that_accepts_only_the_right_header() {
        let a = BasicAuth::new("preview", "correct horse battery", [7; 16]).unwrap();
        a.check().unwrap();
        assert!(!serde_json::to_string(&a).unwrap().contains("horse"));
        assert!(a.accepts(&authorization("preview", "correct horse battery")));
        assert!(!a.accepts(&authorization("preview", "correct horse batterY")));
        assert!(!a.accepts(&authorization("other", "correct horse battery")));
        assert!(!a.accepts(""));
        // Another salt, another hash for the same password.
        let b = BasicAuth::new("preview", "correct horse battery", [8; 16]).unwrap();
        assert_ne!(a.sha256, b.sha256);
        assert_eq!(
            authorization("preview", "correct horse battery"),
            "Basic cHJldmlldzpjb3JyZWN0IGhvcnNlIGJhdHRlcnk="
        );
        for (user, password, says) in [
            ("", "0123456789abcdef", "1 to 64"),
            ("a:b", "0123456789abcdef", "':' is not allowed"),
            ("a b", "0123456789abcdef", "' ' is not allowed"),
            ("u", "short", "at least 16"),
            ("u", "0123456789abcdef\nx", "control character"),
        ] {
            let e = BasicAuth::new(user, password, [0; 16]).unwrap_err();
            assert!(e.contains(says), "{user:?} {password:?}: {e}");
        }
        let mut bad = a.clone();
        bad.sha256 = bad.sha256.to_lowercase();
        assert!(bad.check().is_err());
        bad.sha256 = "A B".into();
        assert!(bad.check().is_err());
    }

    #[test]
    fn presets_add_their_headers_and_hsts_only_over_https() {
        let names = |p: HeadersPreset, https| -> Vec<&str> {
            p.headers(https).into_iter().map(|(n, _)| n).collect()
        };
        assert!(names(HeadersPreset::None, true).is_empty());
        let basic = [
            "X-Content-Type-Options",
            "Referrer-Policy",
            "X-Frame-Options",
        ];
        assert_eq!(names(HeadersPreset::Basic, true), basic);
        assert_eq!(
            names(HeadersPreset::Strict, false),
            [&basic[..], &["Permissions-Policy"]].concat()
        );
        assert!(names(HeadersPreset::Strict, true).contains(&"Strict-Transport-Security"));
        for p in HeadersPreset::ALL {
            assert_eq!(HeadersPreset::parse(p.as_str()).unwrap(), p);
        }
        assert!(HeadersPreset::parse("max").is_err());
    }

    #[test]
    fn site_entries_hold_only_what_differs_from_the_default() {
        let d = Domain::parse("example.com").unwrap();
        assert_eq!(
            site_entries(&d, &EdgeRules::default()),
            SiteEntries::default()
        );
        let rules = EdgeRules {
            canonical: Canonical::Www,
            basic_auth: Some(BasicAuth::new("u", "0123456789abcdef", [1; 16]).unwrap()),
            headers: HeadersPreset::Strict,
            ..EdgeRules::default()
        };
        let e = site_entries(&d, &rules);
        assert_eq!(
            e.canonical,
            Some(("example.com".into(), "www.example.com".into()))
        );
        let (_, auth) = e.basic_auth.unwrap();
        assert!(auth.starts_with("01010101010101010101010101010101/") && !auth.contains(' '));
        assert_eq!(e.headers, Some(("example.com".into(), "strict".into())));
        // Old declarations (no such fields) read as the defaults, and the
        // defaults write no field.
        let json = serde_json::to_string(&rules).unwrap();
        assert_eq!(serde_json::from_str::<EdgeRules>(&json).unwrap(), rules);
        assert_eq!(
            serde_json::from_str::<EdgeRules>("{}").unwrap(),
            EdgeRules::default()
        );
    }
}
