//! Mail forwarding for hosted domains: the forward file format.
//!
//! The original platform kept a hand-edited regexp map in
//! `/data/runtime/postfix/` and had operators run `systemctl restart
//! postfix`; a typo there went straight into postfix. Here each domain has
//! one plain file, `<root>/runtime/postfix/forwards/<domain>`, that is parsed
//! and validated here before anything is rendered for postfix:
//!
//! ```text
//! # local part   where it goes (one or more addresses, spaces or commas)
//! info           alice@example.org
//! sales          bob@example.net, carol@example.net
//! *              owner@example.org      # everything else for the domain
//! ```
//!
//! Every address is checked down to the character, so nothing an operator
//! (or a tenant with write access to their forward file) writes can inject
//! postfix table syntax: keys and values end up in postfix lookup tables
//! where whitespace and commas are separators.

use std::fmt;

use crate::domain::Domain;

/// The local part that stands for "every address of the domain not listed".
pub const CATCH_ALL: &str = "*";

/// Longest local part SMTP allows (RFC 5321, 4.5.3.1.1).
const MAX_LOCAL_PART: usize = 64;

/// A local part (left of `@`), lower-cased. A deliberately small subset of
/// RFC 5322's dot-atom: letters, digits and `. _ + -`. The rest of `atext`
/// (`| / ' & ...`) is legal in mail but means something to shells, aliases(5)
/// and postfix tables, and real forward addresses do not need it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LocalPart(String);

impl LocalPart {
    pub fn parse(input: &str) -> Result<LocalPart, String> {
        if input.is_empty() {
            return Err("the local part is empty".into());
        }
        if input.len() > MAX_LOCAL_PART {
            return Err(format!(
                "{input:?} is longer than {MAX_LOCAL_PART} characters"
            ));
        }
        if let Some(c) = input.chars().find(|c| !is_atom_char(*c) && *c != '.') {
            return Err(format!(
                "{input:?} contains {c:?}; use letters, digits and . _ + -"
            ));
        }
        if input.starts_with('.') || input.ends_with('.') || input.contains("..") {
            return Err(format!(
                "{input:?}: dots may not start or end a local part or come in pairs"
            ));
        }
        Ok(LocalPart(input.to_ascii_lowercase()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

fn is_atom_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '+' | '-')
}

/// A full address `local@domain`, both parts validated.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(try_from = "String", into = "String")]
pub struct MailAddress {
    local: LocalPart,
    domain: Domain,
}

impl MailAddress {
    pub fn parse(input: &str) -> Result<MailAddress, String> {
        let (local, domain) = input
            .rsplit_once('@')
            .ok_or_else(|| format!("{input:?} is not an address like name@example.org"))?;
        let local = LocalPart::parse(local)?;
        let domain =
            Domain::parse(domain).map_err(|e| format!("{input:?}: the domain is invalid: {e}"))?;
        Ok(MailAddress { local, domain })
    }

    pub fn domain(&self) -> &Domain {
        &self.domain
    }
}

impl TryFrom<String> for MailAddress {
    type Error = String;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        MailAddress::parse(&s)
    }
}

impl From<MailAddress> for String {
    fn from(a: MailAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for MailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.local.as_str(), self.domain)
    }
}

/// Which addresses of the domain a rule matches.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Recipient {
    /// One local part (`info`).
    Local(LocalPart),
    /// Every address not matched by a `Local` rule (`*`).
    CatchAll,
}

/// One line of a forward file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardRule {
    pub recipient: Recipient,
    pub destinations: Vec<MailAddress>,
}

/// A domain's forward file, parsed and validated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ForwardMap {
    pub domain: Domain,
    /// In file order; no two rules have the same recipient.
    pub rules: Vec<ForwardRule>,
}

/// A problem in a forward file, with the 1-based line it is on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {problem}")]
pub struct ForwardError {
    pub line: usize,
    pub problem: String,
}

impl ForwardMap {
    /// Parses the forward file of `domain`. `#` starts a comment; blank lines
    /// are skipped. Every other line is `<local part or *> <address>...`.
    pub fn parse(domain: &Domain, text: &str) -> Result<ForwardMap, ForwardError> {
        let mut rules: Vec<ForwardRule> = Vec::new();
        let mut seen: Vec<(Recipient, usize)> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let error = |problem: String| ForwardError { line, problem };
            let content = raw.split('#').next().unwrap_or_default();
            if let Some(c) = content.chars().find(|c| c.is_control() && *c != '\t') {
                return Err(error(format!("contains the control character {c:?}")));
            }
            let mut words = content
                .split(|c: char| c == ',' || c.is_whitespace())
                .filter(|w| !w.is_empty());
            let Some(first) = words.next() else {
                continue;
            };
            let recipient = if first == CATCH_ALL {
                Recipient::CatchAll
            } else if first.contains('@') {
                return Err(error(format!(
                    "{first:?}: write only the local part (the part before @{domain}), or * for every address"
                )));
            } else {
                Recipient::Local(LocalPart::parse(first).map_err(error)?)
            };
            if let Some((_, earlier)) = seen.iter().find(|(r, _)| *r == recipient) {
                return Err(error(format!(
                    "{first:?} is already forwarded on line {earlier}; list every destination on one line"
                )));
            }
            let destinations = words
                .map(MailAddress::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(error)?;
            if destinations.is_empty() {
                return Err(error(format!(
                    "{first:?} has no destination; write `{first} someone@example.org`"
                )));
            }
            seen.push((recipient.clone(), line));
            rules.push(ForwardRule {
                recipient,
                destinations,
            });
        }
        Ok(ForwardMap {
            domain: domain.clone(),
            rules,
        })
    }

    /// The rules as postfix virtual alias entries: `(key, "dest1, dest2")`
    /// with keys `local@domain`, or `@domain` for the catch-all.
    pub fn virtual_entries(&self) -> Vec<(String, String)> {
        self.rules
            .iter()
            .map(|rule| {
                let key = match &rule.recipient {
                    Recipient::Local(local) => format!("{}@{}", local.as_str(), self.domain),
                    Recipient::CatchAll => format!("@{}", self.domain),
                };
                let value = rule
                    .destinations
                    .iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(", ");
                (key, value)
            })
            .collect()
    }
}

/// Whether `relayhost` is a postfix next hop hostyard accepts: empty (deliver
/// by MX), or `host`, `[host]`, optionally `:port`. Nothing else, so the value
/// cannot carry more settings into main.cf.
pub fn is_relayhost(value: &str) -> bool {
    if value.is_empty() {
        return true;
    }
    let (host, port) = match value.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h, Some(p)),
        Some(_) => return false,
        None => (value, None),
    };
    if let Some(p) = port {
        if p.parse::<u16>().map_or(true, |p| p == 0) {
            return false;
        }
    }
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    host.parse::<std::net::Ipv4Addr>().is_ok() || Domain::parse(host).is_ok()
}

/// The directory under postfix's `public/` that holds one directory per
/// site that sends mail, each with its submission socket.
pub const SITE_SOCKETS: &str = "sites";

/// The socket's name in its site's directory.
pub const SITE_SOCKET: &str = "smtp";

/// Where a site container sees its socket's directory (PHP's msmtp
/// connects to `<this>/smtp`).
pub const SITE_SOCKET_MOUNT: &str = "/run/hostyard/mail";

/// Messages a site's mail may leave with per hour by default
/// (`mail.site_hourly_cap`); the rest waits, deferred, in postfix's queue,
/// and the other sites keep sending. A site's password resets and notices
/// stay far below; a hijacked site's spam run stops here.
pub const SITE_MESSAGES_PER_HOUR: u32 = 200;

/// The directory under postfix's `public/` that holds one directory per
/// site with its capped service's socket: the second step of the site's
/// mail, which only postfix's own pipe reaches (no site container mounts
/// it).
pub const CAPPED_SOCKETS: &str = "capped";

/// The master.cf name of a site's capped service: the smtpd that counts
/// the site's messages (anvil, per service) and signs them. A site's
/// socket only queues its mail; the site's pipe transport hands it here.
pub fn capped_service(domain: &Domain) -> String {
    format!("{CAPPED_SOCKETS}/{domain}/{SITE_SOCKET}")
}

/// The master.cf name of a site's pipe transport, from its queue to its
/// capped service: its deliveries are deferred (and retried) while the
/// site is over its cap, logged as `postfix/site/<domain>/pipe`.
pub fn site_transport(domain: &Domain) -> String {
    format!("send-{domain}")
}

/// The master.cf name of a site's submission service: a path below
/// postfix's `public/`, so its socket is [`crate::Layout::mail_socket_dir`]`/smtp`.
pub fn site_service(domain: &Domain) -> String {
    format!("{SITE_SOCKETS}/{domain}/{SITE_SOCKET}")
}

/// The DKIM selector a domain's first key gets.
pub const FIRST_SELECTOR: &str = "hy1";

/// A DKIM selector hostyard made: `hy<n>`, n from 1. Rotation takes the next.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Selector(u32);

impl Selector {
    pub fn first() -> Selector {
        Selector(1)
    }

    pub fn parse(text: &str) -> Result<Selector, String> {
        text.trim()
            .strip_prefix("hy")
            .and_then(|n| n.parse::<u32>().ok())
            .filter(|n| *n > 0 && !text.trim().starts_with("hy0"))
            .map(Selector)
            .ok_or_else(|| format!("{:?} is not a selector like hy1", text.trim()))
    }

    pub fn next(&self) -> Selector {
        Selector(self.0 + 1)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "hy{}", self.0)
    }
}

/// Where a domain's DKIM key rotation stands: the selector that signs, and
/// the next one while a rotation is under way (its key is made at the next
/// reload of postfix, and signs only once the rotation is finished).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotation {
    pub signing: Selector,
    pub pending: Option<Selector>,
    /// Whether the pending selector's key exists (its record can be
    /// printed, and so published).
    pub pending_key_made: bool,
}

/// What `hostyard mail rotate-dkim` does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RotationStep {
    /// Start: `next` gets its key at the next reload; signing stays.
    Start { next: Selector },
    /// A rotation to `next` is under way already: nothing changes.
    Started { next: Selector },
    /// Finish: `next` signs from the next reload on.
    Switch { from: Selector, to: Selector },
}

/// Why a rotation step cannot be taken (the message says what to do).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RotationError {
    #[error("no rotation is under way: start one with `hostyard mail rotate-dkim {0}`")]
    NotStarted(Domain),
    #[error("{next}'s key is not made yet: run `systemctl reload postfix`, publish the record `hostyard mail dns {domain}` prints for {next}, then finish")]
    KeyMissing { domain: Domain, next: Selector },
}

/// The two-step rotation of a domain's DKIM key: the first step makes the
/// next key while the old one keeps signing, so its record can be
/// published and reach resolvers' caches before any mail is signed with
/// it; the second (`finish`) switches signing, and only once that key
/// exists.
pub fn rotation_step(
    domain: &Domain,
    now: &Rotation,
    finish: bool,
) -> Result<RotationStep, RotationError> {
    match (&now.pending, finish) {
        (None, false) => Ok(RotationStep::Start {
            next: now.signing.next(),
        }),
        (Some(next), false) => Ok(RotationStep::Started { next: next.clone() }),
        (None, true) => Err(RotationError::NotStarted(domain.clone())),
        (Some(next), true) if !now.pending_key_made => Err(RotationError::KeyMissing {
            domain: domain.clone(),
            next: next.clone(),
        }),
        (Some(next), true) => Ok(RotationStep::Switch {
            from: now.signing.clone(),
            to: next.clone(),
        }),
    }
}

/// The selectors whose DKIM records `hostyard mail dns` prints: the one
/// that signs, and during a rotation the next one once its key exists
/// (published ahead of the switch).
pub fn published_selectors(now: &Rotation) -> Vec<Selector> {
    let mut selectors = vec![now.signing.clone()];
    if let Some(next) = now.pending.as_ref().filter(|_| now.pending_key_made) {
        selectors.push(next.clone());
    }
    selectors
}

/// The domains a site's mail may be sent as (envelope sender and `From:`):
/// its own, and for a site whose domain is `www.D` also `D`, which is what
/// WordPress sends as by default (`wordpress@` and the home URL's host
/// without a leading `www.`), unless `D` is in `others`, the domains this
/// server knows as someone's (another site, a domain with forwards): `D`
/// may then be another tenant's, and the site sends as `www.D` only.
pub fn sender_domains(site: &Domain, others: &[Domain]) -> Vec<Domain> {
    let mut domains = vec![site.clone()];
    let bare = site
        .as_str()
        .strip_prefix("www.")
        // Domain::parse refuses a single label: `www.com` never sends as `com`.
        .and_then(|rest| Domain::parse(rest).ok())
        .filter(|bare| !others.contains(bare));
    domains.extend(bare);
    domains
}

/// How one record that `hostyard mail dns` prints stands in DNS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RecordCheck {
    /// Published as printed (for SPF: with this server's mechanism).
    Matches,
    /// No such record at that name.
    Missing,
    /// There, but not as printed; says how.
    Differs(String),
}

/// Compares the TXT records published at a name (`published`: each
/// record's strings joined, as resolvers hand them) with the `expected`
/// value `hostyard mail dns` prints there. SPF matches when the one SPF
/// record holds this server's mechanisms (an operator merges them into a
/// record of their own); DKIM when a record's `p=` is the key, whitespace
/// and string splits aside; DMARC when there is a DMARC record at all (the
/// policy is the domain owner's choice).
pub fn compare_record(expected: &str, published: &[String]) -> RecordCheck {
    let starts = |value: &str, tag: &str| {
        value
            .get(..tag.len())
            .is_some_and(|head| head.eq_ignore_ascii_case(tag))
    };
    let tag = expected.split([' ', ';']).next().unwrap_or_default();
    let found: Vec<&String> = published.iter().filter(|v| starts(v.trim(), tag)).collect();
    if found.is_empty() {
        return RecordCheck::Missing;
    }
    if starts(expected, "v=spf1") {
        if found.len() > 1 {
            return RecordCheck::Differs(format!(
                "{} SPF records; a domain has one (merge them)",
                found.len()
            ));
        }
        let terms: Vec<String> = found[0]
            .split_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let lacking: Vec<&str> = expected
            .split_whitespace()
            .skip(1)
            .filter(|t| !t.ends_with("all"))
            .filter(|t| !terms.contains(&t.to_ascii_lowercase()))
            .collect();
        return if lacking.is_empty() {
            RecordCheck::Matches
        } else {
            RecordCheck::Differs(format!("the SPF record lacks {}", lacking.join(" ")))
        };
    }
    if starts(expected, "v=DKIM1") {
        let key = |value: &str| -> Option<String> {
            value.split(';').find_map(|t| {
                let t = t.trim();
                t.strip_prefix("p=")
                    .map(|p| p.chars().filter(|c| !c.is_whitespace()).collect())
            })
        };
        let want = key(expected);
        return if found.iter().any(|v| key(v) == want) {
            RecordCheck::Matches
        } else {
            RecordCheck::Differs("its key (p=) is not this server's".into())
        };
    }
    RecordCheck::Matches
}

/// The TXT records in `dig +short TXT` output, a line each, each record's
/// quoted strings joined (`"v=DKIM1; " "p=MII..."`).
pub fn txt_records(dig_output: &str) -> Vec<String> {
    dig_output
        .lines()
        .filter(|l| l.trim_start().starts_with('"'))
        .map(|line| {
            let mut value = String::new();
            let mut inside = false;
            let mut escaped = false;
            for c in line.chars() {
                match (inside, escaped, c) {
                    (true, false, '\\') => escaped = true,
                    (true, false, '"') | (false, _, '"') => inside = !inside,
                    (true, _, c) => {
                        value.push(c);
                        escaped = false;
                    }
                    (false, _, _) => {}
                }
            }
            value
        })
        .collect()
}

/// The value of the DKIM TXT record in a `<selector>.txt` that
/// opendkim-genkey wrote (a zone file line with the value split into
/// quoted strings): the strings joined.
pub fn dkim_txt_value(zone_line: &str) -> Result<String, String> {
    let mut value = String::new();
    let mut rest = zone_line;
    while let Some(start) = rest.find('"') {
        let after = &rest[start + 1..];
        let end = after.find('"').ok_or("an unterminated quoted string")?;
        value.push_str(&after[..end]);
        rest = &after[end + 1..];
    }
    if !value.starts_with("v=DKIM1") || !value.contains("p=") {
        return Err("no DKIM record (v=DKIM1 ... p=...) in it".into());
    }
    if let Some(c) = value.chars().find(|c| c.is_control()) {
        return Err(format!("the record contains {c:?}"));
    }
    Ok(value)
}

/// The DNS records a domain that sends mail from this server publishes,
/// as `(name, TXT value)`: SPF naming the server's mail host name, the
/// DKIM key of `selector`, and a DMARC policy that asks receivers to
/// quarantine mail that is neither SPF- nor DKIM-aligned.
pub fn dns_records(
    domain: &Domain,
    mail_hostname: &str,
    selector: &Selector,
    dkim_value: &str,
) -> Vec<(String, String)> {
    vec![
        (
            format!("{domain}."),
            format!("v=spf1 a:{mail_hostname} ~all"),
        ),
        (
            format!("{selector}._domainkey.{domain}."),
            dkim_value.to_string(),
        ),
        (
            format!("_dmarc.{domain}."),
            "v=DMARC1; p=quarantine; adkim=r; aspf=r".to_string(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn domain() -> Domain {
        Domain::parse("example.com").unwrap()
    }

    #[test]
    fn parses_rules_comments_and_catch_all() {
        let map = ForwardMap::parse(
            &domain(),
            "# forwards\n\ninfo  alice@example.org\nSales bob@example.net, carol@Example.NET # two\n*\towner@example.org\n",
        )
        .unwrap();
        assert_eq!(
            map.virtual_entries(),
            vec![
                ("info@example.com".into(), "alice@example.org".into()),
                (
                    "sales@example.com".into(),
                    "bob@example.net, carol@example.net".into()
                ),
                ("@example.com".into(), "owner@example.org".into()),
            ]
        );
    }

    #[test]
    fn refuses_bad_lines_naming_the_line() {
        for (text, line, needle) in [
            ("info\n", 1, "no destination"),
            (
                "info a@b.org\ninfo c@d.org\n",
                2,
                "already forwarded on line 1",
            ),
            ("info@example.com a@b.org\n", 1, "only the local part"),
            ("in\"fo a@b.org\n", 1, "contains '\"'"),
            ("info a@b\\.org\n", 1, "domain is invalid"),
            ("info nobody\n", 1, "not an address"),
            ("\n\n.info a@b.org\n", 3, "dots"),
            ("info a@b.org\x07\n", 1, "control character"),
            ("info |/bin/sh@x.org\n", 1, "contains '|'"),
            ("info /etc/passwd\n", 1, "not an address"),
            ("info a@-b.org\n", 1, "domain is invalid"),
        ] {
            let err = ForwardMap::parse(&domain(), text).unwrap_err();
            assert_eq!(err.line, line, "{text:?}: {err}");
            assert!(err.problem.contains(needle), "{text:?}: {err}");
        }
    }

    #[test]
    fn relayhost_forms() {
        for ok in [
            "",
            "smtp.example.org",
            "[smtp.example.org]",
            "[127.0.0.1]:2525",
            "relay.example.org:587",
        ] {
            assert!(is_relayhost(ok), "{ok:?}");
        }
        for bad in [
            "smtp.example.org\nmynetworks = 0.0.0.0/0",
            "a b",
            "[x]:0",
            "[x]:99999",
            "host:25:26",
            "[::1]:25",
            "-x",
        ] {
            assert!(!is_relayhost(bad), "{bad:?}");
        }
    }

    #[test]
    fn selectors_parse_and_rotate() {
        let first = Selector::parse("hy1\n").unwrap();
        assert_eq!(first, Selector::first());
        assert_eq!(first.next().to_string(), "hy2");
        for bad in ["", "hy", "hy0", "hy01", "x1", "hy1 ", "hy-1", "hy1;p=x"] {
            if bad == "hy1 " {
                continue; // trimmed: a file's newline is fine
            }
            assert!(Selector::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn rotation_makes_the_next_key_before_it_signs() {
        let hy = |n: u32| Selector(n);
        let at = |signing, pending, made| Rotation {
            signing,
            pending,
            pending_key_made: made,
        };
        // Step one: the next selector, signing stays; printed once made.
        let idle = at(hy(1), None, false);
        assert_eq!(
            rotation_step(&domain(), &idle, false),
            Ok(RotationStep::Start { next: hy(2) })
        );
        assert_eq!(published_selectors(&idle), vec![hy(1)]);
        let started = at(hy(1), Some(hy(2)), false);
        assert_eq!(published_selectors(&started), vec![hy(1)]);
        // Again: nothing changes (no hy3 behind the operator's back).
        assert_eq!(
            rotation_step(&domain(), &started, false),
            Ok(RotationStep::Started { next: hy(2) })
        );
        // Finishing before the key exists is refused, naming the steps.
        let err = rotation_step(&domain(), &started, true).unwrap_err();
        assert!(
            err.to_string().contains("systemctl reload postfix"),
            "{err}"
        );
        let made = at(hy(1), Some(hy(2)), true);
        assert_eq!(published_selectors(&made), vec![hy(1), hy(2)]);
        assert_eq!(
            rotation_step(&domain(), &made, true),
            Ok(RotationStep::Switch {
                from: hy(1),
                to: hy(2)
            })
        );
        // Finishing with none under way says how to start one.
        let err = rotation_step(&domain(), &idle, true).unwrap_err();
        assert_eq!(err, RotationError::NotStarted(domain()));
        assert!(err.to_string().contains("rotate-dkim example.com"), "{err}");
    }

    #[test]
    fn www_site_sends_as_its_bare_domain_unless_that_is_someone_elses() {
        let d = |s: &str| Domain::parse(s).unwrap();
        // WordPress's default sender for www.example.com is
        // wordpress@example.com.
        assert_eq!(
            sender_domains(&d("www.example.com"), &[d("other.example")]),
            vec![d("www.example.com"), d("example.com")]
        );
        // example.com is another site here (another tenant's, maybe).
        assert_eq!(
            sender_domains(&d("www.example.com"), &[d("example.com")]),
            vec![d("www.example.com")]
        );
        // Only www. is stripped, and never down to a single label.
        assert_eq!(
            sender_domains(&d("example.com"), &[]),
            vec![d("example.com")]
        );
        assert_eq!(sender_domains(&d("www.com"), &[]), vec![d("www.com")]);
        assert_eq!(
            sender_domains(&d("wwwx.example.com"), &[]),
            vec![d("wwwx.example.com")]
        );
        assert_eq!(
            sender_domains(&d("shop.www.example.com"), &[]),
            vec![d("shop.www.example.com")]
        );
    }

    #[test]
    fn published_records_compare_with_the_printed_ones() {
        let v = |s: &[&str]| s.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let spf = "v=spf1 a:mx.example.net ~all";
        assert_eq!(compare_record(spf, &v(&[spf])), RecordCheck::Matches);
        // Merged into the domain's own record: fine.
        assert_eq!(
            compare_record(
                spf,
                &v(&[
                    "v=spf1 include:_spf.google.com A:MX.example.net -all",
                    "google-site-verification=x"
                ])
            ),
            RecordCheck::Matches
        );
        assert_eq!(
            compare_record(spf, &v(&["google-site-verification=x"])),
            RecordCheck::Missing
        );
        assert_eq!(
            compare_record(spf, &v(&["v=spf1 ip4:192.0.2.1 ~all"])),
            RecordCheck::Differs("the SPF record lacks a:mx.example.net".into())
        );
        assert!(
            matches!(compare_record(spf, &v(&[spf, spf])), RecordCheck::Differs(m) if m.contains("2 SPF records"))
        );
        let dkim = "v=DKIM1; h=sha256; k=rsa; p=MIIBIjANBgkq";
        // A resolver's joined strings, split anywhere, spaces inside p=.
        for published in [
            "v=DKIM1; h=sha256; k=rsa; p=MIIBIjANBgkq",
            "v=DKIM1; k=rsa; p=MIIBIj ANBgkq",
            "v=DKIM1;p=MIIBIjANBgkq;",
        ] {
            assert_eq!(
                compare_record(dkim, &v(&[published])),
                RecordCheck::Matches,
                "{published}"
            );
        }
        assert_eq!(compare_record(dkim, &[]), RecordCheck::Missing);
        assert!(matches!(
            compare_record(dkim, &v(&["v=DKIM1; p=OTHER"])),
            RecordCheck::Differs(_)
        ));
        let dmarc = "v=DMARC1; p=quarantine; adkim=r; aspf=r";
        assert_eq!(
            compare_record(dmarc, &v(&["v=DMARC1; p=reject"])),
            RecordCheck::Matches
        );
        assert_eq!(
            compare_record(dmarc, &v(&["v=spf1 -all"])),
            RecordCheck::Missing
        );
        // dig +short's form: quoted strings per record, joined.
        assert_eq!(
            txt_records("\"v=DKIM1; k=rsa; \" \"p=MIIB\"\n\"v=spf1 -all\"\n"),
            v(&["v=DKIM1; k=rsa; p=MIIB", "v=spf1 -all"])
        );
    }

    #[test]
    fn site_service_is_below_the_sites_dir() {
        assert_eq!(site_service(&domain()), "sites/example.com/smtp");
        // Never below the sites' dir: a site container mounts its own
        // directory there, and must not reach past the cap.
        assert_eq!(capped_service(&domain()), "capped/example.com/smtp");
        assert_ne!(CAPPED_SOCKETS, SITE_SOCKETS);
        assert_eq!(site_transport(&domain()), "send-example.com");
    }

    #[test]
    fn dkim_record_from_opendkim_genkey_output() {
        let txt = "hy1._domainkey\tIN\tTXT\t( \"v=DKIM1; h=sha256; k=rsa; \"\n\t  \"p=MIIBIjANBg\"\n\t  \"kqhkiG9wAQAB\" )  ; ----- DKIM key hy1 for example.com\n";
        assert_eq!(
            dkim_txt_value(txt).unwrap(),
            "v=DKIM1; h=sha256; k=rsa; p=MIIBIjANBgkqhkiG9wAQAB"
        );
        assert!(dkim_txt_value("nothing here").is_err());
        assert!(dkim_txt_value("\"v=DKIM1; p=abc").is_err());
        let records = dns_records(
            &domain(),
            "mx.example.net",
            &Selector::first(),
            "v=DKIM1; p=x",
        );
        assert_eq!(
            records[0],
            ("example.com.".into(), "v=spf1 a:mx.example.net ~all".into())
        );
        assert_eq!(records[1].0, "hy1._domainkey.example.com.");
        assert_eq!(records[2].0, "_dmarc.example.com.");
    }

    proptest! {
        // Whatever a forward file holds, what parses renders to table lines
        // of exactly two fields, key and value, with no whitespace or control
        // characters inside an address: nothing can break out of the table.
        #[test]
        fn accepted_files_render_safe_table_lines(text in "[ -~\t\n,@#*.]{0,200}") {
            if let Ok(map) = ForwardMap::parse(&domain(), &text) {
                for (key, value) in map.virtual_entries() {
                    prop_assert!(!key.is_empty());
                    prop_assert!(!key.chars().any(|c| c.is_whitespace() || c.is_control() || c == ','));
                    for address in value.split(", ") {
                        prop_assert!(address.contains('@'));
                        prop_assert!(!address.chars().any(|c| c.is_whitespace() || c.is_control() || c == ','));
                    }
                }
            }
        }

        #[test]
        fn addresses_round_trip(local in "[a-z0-9][a-z0-9._+-]{0,20}[a-z0-9]", host in "[a-z][a-z0-9]{0,10}\\.org") {
            let text = format!("{local}@{host}");
            if !text.contains("..") {
                let address = MailAddress::parse(&text).unwrap();
                prop_assert_eq!(address.to_string(), text);
            }
        }
    }
}
