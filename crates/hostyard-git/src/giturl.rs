//! The validated repository URL of a static-git site.
//!
//! The original system ran `git clone $(cat GITURL)` as root: whatever the
//! file held became git's argv. git reads a URL as an option when it starts
//! with `-` (`--upload-pack=...`), runs programs for `ext::` remotes, reads
//! the local disk for `file://` and plain paths, and ssh reads a host name
//! starting with `-` as an option (`ssh://-oProxyCommand=...`). A `GitUrl` is
//! therefore parsed once, where it enters (the import's `GITURL`, the site's
//! `git-url` file), and only these forms get through:
//!
//! - `http://`, `https://`, `git://`, `ssh://` URLs with a host and a path;
//! - scp-like `[user@]host:path` (ssh), when no part of it can be read as an
//!   option.
//!
//! An optional `#branch` suffix names the branch to publish; without it the
//! remote's default branch (its `HEAD`) is used. The branch is checked against
//! a conservative subset of `git check-ref-format`.
//!
//! The URL may carry credentials (`https://user:token@host/repo`); use
//! [`GitUrl::redacted`] whenever it is logged.

use std::fmt;
use std::str::FromStr;

/// Longest URL accepted; real repository URLs are far shorter.
pub const MAX_GIT_URL_LEN: usize = 2048;
/// Longest branch name accepted.
pub const MAX_BRANCH_LEN: usize = 200;

/// A repository URL (and optional branch) that is safe to pass to git after `--`.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct GitUrl {
    url: String,
    branch: Option<String>,
}

/// Why a string is not an acceptable repository URL.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum GitUrlError {
    #[error("repository URL is empty; write one line like https://example.com/site.git")]
    Empty,
    #[error("repository URL is {len} characters long; at most {MAX_GIT_URL_LEN} are allowed")]
    TooLong { len: usize },
    #[error("repository URL {input:?} contains whitespace or a control character")]
    BadChar { input: String },
    #[error("repository URL {input:?} starts with '-', which git would read as an option")]
    LeadingDash { input: String },
    #[error(
        "repository URL {input:?} uses the {scheme:?} transport; only http://, https://, git://, \
         ssh:// and user@host:path are allowed"
    )]
    Scheme { input: String, scheme: String },
    #[error(
        "repository URL {input:?} is a local path; only http://, https://, git://, ssh:// and \
         user@host:path are allowed"
    )]
    LocalPath { input: String },
    #[error("repository URL {input:?} has no host")]
    NoHost { input: String },
    #[error("repository URL {input:?} has a bad host or user {part:?} (it must start with a letter or digit)")]
    BadHost { input: String, part: String },
    #[error("repository URL {input:?} has no repository path")]
    NoPath { input: String },
    #[error(
        "branch {branch:?} in repository URL is not a plain branch name (letters, digits, and \
         . _ - /, not starting with - or .)"
    )]
    BadBranch { branch: String },
}

impl GitUrl {
    /// Parses `url[#branch]`. Surrounding whitespace is trimmed (a file's
    /// trailing newline); anything inside is checked.
    pub fn parse(input: &str) -> Result<GitUrl, GitUrlError> {
        let input = input.trim();
        if input.is_empty() {
            return Err(GitUrlError::Empty);
        }
        if input.len() > MAX_GIT_URL_LEN {
            return Err(GitUrlError::TooLong { len: input.len() });
        }
        let owned = || input.to_string();
        if input
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '\\')
        {
            return Err(GitUrlError::BadChar { input: owned() });
        }
        if input.starts_with('-') {
            return Err(GitUrlError::LeadingDash { input: owned() });
        }
        let (url, branch) = match input.split_once('#') {
            Some((url, branch)) => {
                check_branch(branch)?;
                (url, Some(branch.to_string()))
            }
            None => (input, None),
        };
        if let Some((scheme, rest)) = url.split_once("://") {
            check_scheme_url(input, scheme, rest)?;
        } else if let Some((transport, _)) = url.split_once("::") {
            // git's `<transport>::<address>` remote-helper syntax (ext::, fd::, ...).
            if !transport.contains(['/', ':', '@']) {
                return Err(GitUrlError::Scheme {
                    input: owned(),
                    scheme: format!("{transport}::"),
                });
            }
            check_scp_like(input, url)?;
        } else {
            check_scp_like(input, url)?;
        }
        Ok(GitUrl {
            url: url.to_string(),
            branch,
        })
    }

    /// The URL to hand to git (after `--`), without the `#branch` suffix.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The configured branch, if any; `None` means the remote's default.
    pub fn branch(&self) -> Option<&str> {
        self.branch.as_deref()
    }

    /// For an http(s) URL with a user (and password or token) in it: the
    /// URL without them, and the credentials, decoded, for git to get
    /// from a credential helper. A URL on git's command line is readable by
    /// every user of the machine (`ps`), and git hands it on to its remote
    /// helper's command line too; so the secret part never goes there.
    pub fn http_credentials(&self) -> Option<HttpCredentials> {
        let (scheme, rest) = self.url.split_once("://")?;
        if !matches!(scheme.to_ascii_lowercase().as_str(), "http" | "https") {
            return None;
        }
        let authority_end = rest.find('/').unwrap_or(rest.len());
        let (authority, path) = rest.split_at(authority_end);
        let (userinfo, host) = authority.rsplit_once('@')?;
        let (user, password) = userinfo.split_once(':').unwrap_or((userinfo, ""));
        Some(HttpCredentials {
            origin: format!("{scheme}://{host}"),
            url: format!("{scheme}://{host}{path}"),
            username: percent_decode(user),
            password: percent_decode(password),
        })
    }

    /// The URL with any password or token replaced by `***`, for logs.
    pub fn redacted(&self) -> String {
        let redacted_url = match self.url.split_once("://") {
            Some((scheme, rest)) => {
                let authority_end = rest.find('/').unwrap_or(rest.len());
                let (authority, path) = rest.split_at(authority_end);
                match authority.rsplit_once('@') {
                    Some((userinfo, host)) if userinfo.contains(':') => {
                        let user = userinfo.split(':').next().unwrap_or("");
                        format!("{scheme}://{user}:***@{host}{path}")
                    }
                    // Over http(s) a lone user name is usually a token.
                    Some((_, host)) if scheme.to_ascii_lowercase().starts_with("http") => {
                        format!("{scheme}://***@{host}{path}")
                    }
                    _ => self.url.clone(),
                }
            }
            None => self.url.clone(),
        };
        match &self.branch {
            Some(b) => format!("{redacted_url}#{b}"),
            None => redacted_url,
        }
    }
}

/// The user part of an http(s) repository URL, taken out of it.
#[derive(Clone, PartialEq, Eq)]
pub struct HttpCredentials {
    /// `scheme://host[:port]`: what git's `credential.<url>.helper` is
    /// scoped to, so the secret goes to this server only.
    pub origin: String,
    /// The URL without the user part, for git's command line.
    pub url: String,
    pub username: String,
    pub password: String,
}

impl std::fmt::Debug for HttpCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "HttpCredentials({} as ***)", self.url)
    }
}

/// Decodes `%XX` escapes (a URL's user part may hold `%40` for `@`); a `%`
/// that starts no valid escape stays as it is.
fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(b)) => {
                out.push(b);
                i += 3;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// `scheme://[user[:pass]@]host[:port]/path`
fn check_scheme_url(input: &str, scheme: &str, rest: &str) -> Result<(), GitUrlError> {
    let lower = scheme.to_ascii_lowercase();
    if !matches!(lower.as_str(), "http" | "https" | "git" | "ssh") {
        return Err(GitUrlError::Scheme {
            input: input.to_string(),
            scheme: format!("{scheme}://"),
        });
    }
    let authority_end = rest.find('/').unwrap_or(rest.len());
    let (authority, path) = rest.split_at(authority_end);
    check_user_host(input, authority, check_name_start)?;
    if path.trim_start_matches('/').is_empty() {
        return Err(GitUrlError::NoPath {
            input: input.to_string(),
        });
    }
    Ok(())
}

/// `[user@]host` (of a URL, `host:port`): `check` passes the user, if
/// any, and the host, which must not be empty.
fn check_user_host(
    input: &str,
    user_host: &str,
    check: fn(&str, &str) -> Result<(), GitUrlError>,
) -> Result<(), GitUrlError> {
    let host = match user_host.rsplit_once('@') {
        Some((user, host)) => {
            check(input, user)?;
            host
        }
        None => user_host,
    };
    if host.is_empty() {
        return Err(GitUrlError::NoHost {
            input: input.to_string(),
        });
    }
    check(input, host)
}

/// `[user@]host:path`; git takes this form when a `:` comes before any `/`.
fn check_scp_like(input: &str, url: &str) -> Result<(), GitUrlError> {
    let colon = url.find(':');
    let slash = url.find('/');
    let colon = match (colon, slash) {
        (Some(c), Some(s)) if c < s => c,
        (Some(c), None) => c,
        _ => {
            return Err(GitUrlError::LocalPath {
                input: input.to_string(),
            })
        }
    };
    let (user_host, path) = (&url[..colon], &url[colon + 1..]);
    check_user_host(input, user_host, check_name)?;
    if path.is_empty() || path.starts_with('-') {
        return Err(GitUrlError::NoPath {
            input: input.to_string(),
        });
    }
    Ok(())
}

/// A user or host of an scp-like URL: letters, digits, `.`, `_`, `-`, not
/// starting with `-` (ssh would read it as an option).
fn check_name(input: &str, part: &str) -> Result<(), GitUrlError> {
    let ok = part.starts_with(|c: char| c.is_ascii_alphanumeric())
        && part
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(GitUrlError::BadHost {
            input: input.to_string(),
            part: part.to_string(),
        })
    }
}

/// The host (or userinfo) of a scheme URL must start with a letter, digit,
/// `[` (IPv6 literal) or `%` (escaped user name), never `-`.
fn check_name_start(input: &str, part: &str) -> Result<(), GitUrlError> {
    if part.starts_with(|c: char| c.is_ascii_alphanumeric() || c == '[' || c == '%') {
        Ok(())
    } else {
        Err(GitUrlError::BadHost {
            input: input.to_string(),
            part: part.to_string(),
        })
    }
}

fn check_branch(branch: &str) -> Result<(), GitUrlError> {
    let bad = || GitUrlError::BadBranch {
        branch: branch.to_string(),
    };
    if branch.is_empty()
        || branch.len() > MAX_BRANCH_LEN
        || branch == "HEAD"
        || branch.contains("..")
        || branch.contains("//")
        || branch.ends_with('/')
        || branch.ends_with(".lock")
        || branch.ends_with('.')
    {
        return Err(bad());
    }
    if !branch
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | '/'))
    {
        return Err(bad());
    }
    if branch
        .split('/')
        .any(|part| part.starts_with('-') || part.starts_with('.'))
    {
        return Err(bad());
    }
    Ok(())
}

impl fmt::Display for GitUrl {
    /// The stored form, `url[#branch]`, credentials included: this is what
    /// the `git-url` file holds. Log [`GitUrl::redacted`] instead.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.branch {
            Some(b) => write!(f, "{}#{b}", self.url),
            None => f.write_str(&self.url),
        }
    }
}

impl fmt::Debug for GitUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GitUrl({})", self.redacted())
    }
}

impl FromStr for GitUrl {
    type Err = GitUrlError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        GitUrl::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_credentials_come_out_of_the_url_decoded_and_scoped_to_its_origin() {
        let u = GitUrl::parse("https://deploy:s%40cret@git.example.com:8443/a/b.git#main").unwrap();
        let c = u.http_credentials().expect("credentials");
        assert_eq!(c.origin, "https://git.example.com:8443");
        assert_eq!(c.url, "https://git.example.com:8443/a/b.git");
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("deploy", "s@cret")
        );
        assert!(!format!("{c:?}").contains("cret"));
        // A token as the user name.
        let c = GitUrl::parse("http://tok123@h.example/r.git")
            .unwrap()
            .http_credentials()
            .expect("credentials");
        assert_eq!((c.username.as_str(), c.password.as_str()), ("tok123", ""));
        assert_eq!(c.url, "http://h.example/r.git");
        for none in [
            "https://git.example.com/r.git",
            "ssh://git@git.example.com/r.git",
            "git@git.example.com:r.git",
            "git://git.example.com/r.git",
        ] {
            assert!(
                GitUrl::parse(none).unwrap().http_credentials().is_none(),
                "{none}"
            );
        }
        assert_eq!(percent_decode("a%zz%4"), "a%zz%4");
    }
    use proptest::prelude::*;

    #[test]
    fn accepts_the_allowed_transports() {
        for (input, url, branch) in [
            (
                "https://example.com/site.git",
                "https://example.com/site.git",
                None,
            ),
            (
                "http://example.com:8080/a/b",
                "http://example.com:8080/a/b",
                None,
            ),
            (
                "git://127.0.0.1:9418/site.git",
                "git://127.0.0.1:9418/site.git",
                None,
            ),
            (
                "ssh://git@example.com/site.git",
                "ssh://git@example.com/site.git",
                None,
            ),
            ("ssh://[::1]:22/site.git", "ssh://[::1]:22/site.git", None),
            (
                "git@github.com:owner/site.git",
                "git@github.com:owner/site.git",
                None,
            ),
            ("host.example:site.git", "host.example:site.git", None),
            (
                "https://example.com/site.git#main",
                "https://example.com/site.git",
                Some("main"),
            ),
            (
                "git@h.example:o/s.git#release/v1",
                "git@h.example:o/s.git",
                Some("release/v1"),
            ),
            (
                "  https://example.com/site.git\n",
                "https://example.com/site.git",
                None,
            ),
            (
                "https://u:tok@example.com/x.git",
                "https://u:tok@example.com/x.git",
                None,
            ),
        ] {
            let u = GitUrl::parse(input).unwrap_or_else(|e| panic!("{input:?}: {e}"));
            assert_eq!(u.url(), url, "{input:?}");
            assert_eq!(u.branch(), branch, "{input:?}");
        }
    }

    #[test]
    fn refuses_hostile_urls_with_a_named_reason() {
        for (input, want) in [
            ("", "empty"),
            ("ext::sh -c touch% /tmp/pwned", "whitespace"),
            ("ext::sh", "\"ext::\" transport"),
            ("fd::17", "\"fd::\" transport"),
            ("file:///etc", "\"file://\" transport"),
            ("FILE:///etc", "\"FILE://\" transport"),
            ("ftp://example.com/x", "\"ftp://\" transport"),
            ("/srv/git/site.git", "local path"),
            ("./site.git", "local path"),
            ("site.git", "local path"),
            ("-u/tmp/x", "starts with '-'"),
            ("--upload-pack=touch /tmp/x", "whitespace"),
            ("--upload-pack=touch", "starts with '-'"),
            ("ssh://-oProxyCommand=x/y", "bad host"),
            ("ssh://-oProxyCommand=x@host/y", "bad host"),
            ("-oProxyCommand=x:y", "starts with '-'"),
            ("user@-oProxyCommand=x:y", "bad host"),
            ("-user@host:y", "starts with '-'"),
            ("host:-y", "no repository path"),
            ("https://example.com", "no repository path"),
            ("https:///x", "no host"),
            ("https://example.com/a b", "whitespace"),
            ("https://example.com/a\tb", "whitespace"),
            ("https://example.com/a\u{7f}", "whitespace"),
            ("https://example.com/x.git#-b", "branch"),
            ("https://example.com/x.git#a..b", "branch"),
            ("https://example.com/x.git#", "branch"),
            ("https://example.com/x.git#a:b", "branch"),
            ("https://example.com/x.git#HEAD", "branch"),
        ] {
            let err = GitUrl::parse(input).expect_err(input).to_string();
            assert!(err.contains(want), "{input:?}: {err}");
        }
    }

    #[test]
    fn redacts_passwords_but_keeps_the_rest() {
        let u = GitUrl::parse("https://deploy:s3cret@example.com/x.git#main").unwrap();
        assert_eq!(u.redacted(), "https://deploy:***@example.com/x.git#main");
        assert!(!format!("{u:?}").contains("s3cret"));
        assert_eq!(
            u.to_string(),
            "https://deploy:s3cret@example.com/x.git#main"
        );
        let plain = GitUrl::parse("git@example.com:x.git").unwrap();
        assert_eq!(plain.redacted(), "git@example.com:x.git");
    }

    /// What git itself would do with the string as an argument or URL: the
    /// properties every accepted URL must have, whatever it looks like.
    fn assert_safe(u: &GitUrl) {
        let url = u.url();
        assert!(!url.starts_with('-'));
        assert!(!url.chars().any(|c| c.is_whitespace() || c.is_control()));
        let lower = url.to_ascii_lowercase();
        let allowed = ["http://", "https://", "git://", "ssh://"];
        if lower.contains("://") {
            assert!(allowed.iter().any(|p| lower.starts_with(p)), "{url}");
            let rest = &url[url.find("://").unwrap() + 3..];
            assert!(!rest.starts_with('-'), "{url}");
            if let Some(at) = rest.split('/').next().and_then(|a| a.rsplit_once('@')) {
                assert!(!at.1.starts_with('-'), "{url}");
            }
        } else {
            // scp-like: a colon before any slash, and no part an option.
            let colon = url.find(':').expect("scp-like has a colon");
            assert!(url.find('/').is_none_or(|s| colon < s), "{url}");
            for part in url[..colon].split('@') {
                assert!(!part.starts_with('-'), "{url}");
            }
        }
        // Never git's `<helper>::<address>` form: the chars before the first
        // `::` must not all be URL-scheme characters (git's is_urlschemechar).
        if let Some((helper, _)) = url.split_once("::") {
            assert!(
                !helper
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '.' | '-')),
                "{url}"
            );
        }
        if let Some(b) = u.branch() {
            assert!(!b.starts_with('-') && !b.contains(".."), "{b}");
        }
        // The stored form parses back to the same value.
        assert_eq!(GitUrl::parse(&u.to_string()).as_ref(), Ok(u));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_pass_unsafe(s in any::<String>()) {
            if let Ok(u) = GitUrl::parse(&s) {
                assert_safe(&u);
            }
        }

        #[test]
        fn url_shaped_strings_never_pass_unsafe(
            scheme in prop::sample::select(vec![
                "", "http://", "https://", "git://", "ssh://", "file://", "ext::", "fd::",
                "-", "--upload-pack=", "-u", "HTTPS://", "sSh://",
            ]),
            user in prop::sample::select(vec!["", "git@", "-o@", "u:p@", "%2d@"]),
            host in "[-a-z0-9.:\\[\\]@]{0,12}",
            path in "[-a-z0-9./:#_ ]{0,16}",
        ) {
            let s = format!("{scheme}{user}{host}{path}");
            if let Ok(u) = GitUrl::parse(&s) {
                assert_safe(&u);
            }
        }

        #[test]
        fn ordinary_https_urls_are_accepted(
            host in "[a-z][a-z0-9]{0,10}\\.[a-z]{2,5}",
            path in "[a-z0-9_]{1,10}(/[a-z0-9_]{1,10}){0,3}\\.git",
        ) {
            let s = format!("https://{host}/{path}");
            prop_assert_eq!(GitUrl::parse(&s).map(|u| u.url().to_string()), Ok(s));
        }
    }
}
