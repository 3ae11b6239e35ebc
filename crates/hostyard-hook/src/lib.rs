//! A static-git site's deploy hook, judged: which forge sent a request,
//! whether it holds the site's secret, and what it asks for. Pure: the
//! caller reads the request and the secret, and pulls on a push.
//!
//! The forges prove a request in two ways:
//!
//! | forge | header | value |
//! |---|---|---|
//! | Forgejo | `X-Forgejo-Signature` | hex HMAC-SHA256 of the body |
//! | Gitea | `X-Gitea-Signature` | hex HMAC-SHA256 of the body |
//! | GitHub | `X-Hub-Signature-256` | `sha256=` and the hex HMAC-SHA256 |
//! | GitLab | `X-Gitlab-Token` | the secret itself |
//!
//! Forgejo also sends Gitea's and GitHub's headers, so the first of that
//! order present is the one checked, and a bad one is never rescued by
//! another. Every comparison is constant-time (ring's). No forge signs a
//! time, so a captured request verifies again later: all it can do is make
//! the site pull, which publishes nothing new.

pub mod request;

use ring::hmac;

/// Which forge a verified request came from, by the header that proved it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Forge {
    Forgejo,
    Gitea,
    GitHub,
    GitLab,
}

/// What a verified request asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A branch or tag was pushed: pull.
    Push,
    /// The forge checks the hook works (GitHub's `ping` when it is made).
    Ping,
    /// Anything else, by the forge's name for it: answered, nothing done.
    Other(String),
}

/// Why a request is refused (each says which header, never the secret).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    /// The site has no secret: nothing can verify.
    NoSecret,
    /// No header of a known forge proves the request.
    Unsigned,
    /// The proving header is there twice, or is not in its forge's format.
    Malformed(&'static str),
    /// It does not match the site's secret.
    Mismatch(&'static str),
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Refusal::NoSecret => write!(f, "the site has no hook secret"),
            Refusal::Unsigned => write!(
                f,
                "no X-Forgejo-Signature, X-Gitea-Signature, X-Hub-Signature-256 or X-Gitlab-Token header"
            ),
            Refusal::Malformed(h) => write!(f, "{h} is not one hex HMAC-SHA256 (or token)"),
            Refusal::Mismatch(h) => write!(f, "{h} does not match the site's hook secret"),
        }
    }
}

/// A verified request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub forge: Forge,
    pub event: Event,
}

/// How each forge proves a request: its header, how the value reads, and
/// the header naming its event; in the order they are looked for.
const FORGES: [(Forge, &str, Proof, &str); 4] = [
    (
        Forge::Forgejo,
        "x-forgejo-signature",
        Proof::Hex(""),
        "x-forgejo-event",
    ),
    (
        Forge::Gitea,
        "x-gitea-signature",
        Proof::Hex(""),
        "x-gitea-event",
    ),
    (
        Forge::GitHub,
        "x-hub-signature-256",
        Proof::Hex("sha256="),
        "x-github-event",
    ),
    (
        Forge::GitLab,
        "x-gitlab-token",
        Proof::Token,
        "x-gitlab-event",
    ),
];

#[derive(Debug, Clone, Copy)]
enum Proof {
    /// Hex HMAC-SHA256 of the body after this prefix.
    Hex(&'static str),
    /// The secret itself.
    Token,
}

/// The values of header `name` (any case) among `headers`.
fn values<'a>(headers: &'a [(String, String)], name: &str) -> Vec<&'a str> {
    headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
        .collect()
}

/// Judges a request: `headers` as received, `body` its exact bytes,
/// `secret` the site's.
pub fn verify(
    headers: &[(String, String)],
    body: &[u8],
    secret: &[u8],
) -> Result<Verified, Refusal> {
    if secret.is_empty() {
        return Err(Refusal::NoSecret);
    }
    let key = hmac::Key::new(hmac::HMAC_SHA256, secret);
    for (forge, header, proof, event_header) in FORGES {
        let found = values(headers, header);
        let value = match found.as_slice() {
            [] => continue,
            [one] => *one,
            _ => return Err(Refusal::Malformed(header)),
        };
        let holds = match proof {
            Proof::Hex(prefix) => {
                let tag = value
                    .strip_prefix(prefix)
                    .and_then(|hex| hex::decode(hex).ok())
                    .filter(|tag| tag.len() == 32)
                    .ok_or(Refusal::Malformed(header))?;
                hmac::verify(&key, body, &tag).is_ok()
            }
            // Compared as HMACs of the two, which takes the same time
            // whatever the token's length or where it differs.
            Proof::Token => {
                let given = hmac::sign(&key, value.as_bytes());
                hmac::verify(&key, secret, given.as_ref()).is_ok()
            }
        };
        if !holds {
            return Err(Refusal::Mismatch(header));
        }
        let event = match values(headers, event_header).first().copied() {
            Some("push") | Some("Push Hook") | Some("Tag Push Hook") => Event::Push,
            Some("ping") => Event::Ping,
            Some(other) => Event::Other(other.to_string()),
            None => Event::Other(String::new()),
        };
        return Ok(Verified { forge, event });
    }
    Err(Refusal::Unsigned)
}

/// The hex HMAC-SHA256 of `body` a forge sends (Forgejo's and Gitea's
/// header; GitHub's after `sha256=`), for tests and for a hoster's check.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, secret), body))
}

/// What a verified push does with the site's puller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pull {
    /// Start it: no run is under way, so the one started fetches after
    /// the push.
    Start,
    /// Wait for the run under way to end, then start another. That run
    /// may have fetched before the push reached the repository, and
    /// systemd merges a start into the start job that runs: without the
    /// second run the push would wait for the timer.
    AfterTheRunningOne,
}

/// The pull for a push, from the puller unit's `ActiveState` (a oneshot:
/// `activating` while it runs). Any other state takes a start as a new run,
/// a stop under way (`deactivating`) included: systemd queues the start
/// behind it.
pub fn pull_for_push(active_state: &str) -> Pull {
    if active_state.trim() == "activating" {
        Pull::AfterTheRunningOne
    } else {
        Pull::Start
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_push_during_a_pull_waits_for_it_then_pulls_again() {
        assert_eq!(pull_for_push("activating\n"), Pull::AfterTheRunningOne);
        for state in ["inactive", "failed", "deactivating", "active", ""] {
            assert_eq!(pull_for_push(state), Pull::Start, "{state}");
        }
    }

    fn h(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    const SECRET: &[u8] = b"3b1f0c6e9a2d4f7b8c5e1a0d3f6b9c2e";
    const BODY: &[u8] = br#"{"ref":"refs/heads/main"}"#;

    #[test]
    fn the_signature_is_rfc_4231s_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            sign(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn each_forge_is_verified_by_its_own_header() {
        let tag = sign(SECRET, BODY);
        let github = format!("sha256={tag}");
        let secret = std::str::from_utf8(SECRET).unwrap();
        let cases = [
            (
                h(&[("X-Forgejo-Signature", &tag), ("X-Forgejo-Event", "push")]),
                Forge::Forgejo,
                Event::Push,
            ),
            (
                h(&[("x-gitea-signature", &tag), ("x-gitea-event", "push")]),
                Forge::Gitea,
                Event::Push,
            ),
            (
                h(&[("X-Hub-Signature-256", &github), ("X-GitHub-Event", "ping")]),
                Forge::GitHub,
                Event::Ping,
            ),
            (
                h(&[("X-Gitlab-Token", secret), ("X-Gitlab-Event", "Push Hook")]),
                Forge::GitLab,
                Event::Push,
            ),
            (
                h(&[
                    ("X-Hub-Signature-256", &github),
                    ("X-GitHub-Event", "issues"),
                ]),
                Forge::GitHub,
                Event::Other("issues".into()),
            ),
        ];
        for (headers, forge, event) in cases {
            assert_eq!(
                verify(&headers, BODY, SECRET),
                Ok(Verified { forge, event }),
                "{headers:?}"
            );
        }
    }

    #[test]
    fn refusals_name_the_header_and_a_bad_one_is_never_rescued() {
        let tag = sign(SECRET, BODY);
        let other = sign(b"another site's secret", BODY);
        let cases = [
            (h(&[]), Refusal::Unsigned),
            (h(&[("X-GitHub-Event", "push")]), Refusal::Unsigned),
            (
                // Forgejo's header is checked first; Gitea's good one does
                // not rescue it.
                h(&[("X-Forgejo-Signature", &other), ("X-Gitea-Signature", &tag)]),
                Refusal::Mismatch("x-forgejo-signature"),
            ),
            (
                h(&[("X-Hub-Signature-256", &tag)]),
                Refusal::Malformed("x-hub-signature-256"),
            ),
            (
                h(&[("X-Gitea-Signature", "sha256=zz")]),
                Refusal::Malformed("x-gitea-signature"),
            ),
            (
                h(&[("X-Gitea-Signature", &tag[..20])]),
                Refusal::Malformed("x-gitea-signature"),
            ),
            (
                h(&[("X-Gitea-Signature", &tag), ("X-Gitea-Signature", &other)]),
                Refusal::Malformed("x-gitea-signature"),
            ),
            (
                h(&[("X-Gitlab-Token", "guess")]),
                Refusal::Mismatch("x-gitlab-token"),
            ),
        ];
        for (headers, refusal) in cases {
            assert_eq!(verify(&headers, BODY, SECRET), Err(refusal), "{headers:?}");
        }
        let signed = h(&[("X-Gitea-Signature", &tag)]);
        assert_eq!(verify(&signed, BODY, b""), Err(Refusal::NoSecret));
        assert!(!Refusal::Mismatch("x-gitlab-token")
            .to_string()
            .contains(std::str::from_utf8(SECRET).unwrap()));
    }

    proptest! {
        #[test]
        fn a_signed_body_verifies_and_any_change_to_it_does_not(
            secret in proptest::collection::vec(any::<u8>(), 1..64),
            body in proptest::collection::vec(any::<u8>(), 0..512),
            flip in any::<prop::sample::Index>(),
        ) {
            let tag = sign(&secret, &body);
            let headers = h(&[("X-Gitea-Signature", &tag)]);
            prop_assert_eq!(verify(&headers, &body, &secret).map(|v| v.forge), Ok(Forge::Gitea));
            if !body.is_empty() {
                let mut changed = body.clone();
                changed[flip.index(body.len())] ^= 1;
                prop_assert_eq!(
                    verify(&headers, &changed, &secret),
                    Err(Refusal::Mismatch("x-gitea-signature"))
                );
            }
        }

        #[test]
        fn any_headers_are_judged_without_panicking(
            headers in proptest::collection::vec(
                (
                    prop::sample::select(vec![
                        "X-Forgejo-Signature", "X-Gitea-Signature", "X-Hub-Signature-256",
                        "X-Gitlab-Token", "X-GitHub-Event", "X-Gitlab-Event", "Other",
                    ]),
                    ".{0,80}",
                ),
                0..6,
            ),
            body in proptest::collection::vec(any::<u8>(), 0..64),
        ) {
            let headers: Vec<(String, String)> =
                headers.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
            // Random values never hold a random secret's HMAC.
            prop_assert!(verify(&headers, &body, SECRET).is_err());
        }
    }
}
