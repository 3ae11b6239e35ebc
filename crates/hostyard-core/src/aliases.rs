//! A site's aliases as `hostyard site set` changes them: the decision, on
//! what etcd holds, without I/O.
//!
//! An alias is another name that answers with a 301 to the site (its
//! `www.` name does, unless the site is served under it). Routing skips a
//! name two sites claim and lets a site's own name win over an alias, so
//! a change that would make either happen is refused here, with the
//! command that clears the way, instead of leaving a name that silently
//! goes nowhere.

use std::collections::BTreeSet;

use crate::Domain;

/// The most aliases one site may have: an ACME certificate names at most
/// 100 names, and the domain and its `www.` name take two.
pub const MAX_ALIASES: usize = 98;

/// What the rest of etcd says about a name a site wants as an alias.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Taken {
    /// A site of its own is declared under that name.
    Site,
    /// Another site has it as an alias, or as its `www.` name.
    AliasOf(Domain),
}

/// The aliases `domain` has after adding `add` and removing `remove` from
/// `current`, sorted; or every reason the change is refused, one line each.
pub fn decide(
    domain: &Domain,
    current: &[Domain],
    add: &[Domain],
    remove: &[Domain],
    taken: impl Fn(&Domain) -> Option<Taken>,
) -> Result<Vec<Domain>, Vec<String>> {
    let mut problems = Vec::new();
    let mut next: BTreeSet<Domain> = current.iter().cloned().collect();
    for name in remove {
        if add.contains(name) {
            problems.push(format!("{name} is both added and removed; name it once"));
        } else if !next.remove(name) {
            problems.push(format!(
                "{name} is not an alias of {domain} (its aliases: {})",
                listed(current)
            ));
        }
    }
    for name in add {
        if remove.contains(name) || current.contains(name) {
            // Reported above, or already there: adding is idempotent.
            next.insert(name.clone());
            continue;
        }
        if name == domain {
            problems.push(format!("{name} is the site's own name, not an alias"));
            continue;
        }
        if domain.www().as_ref() == Some(name) {
            problems.push(format!(
                "{name} redirects to {domain} already; it needs no alias"
            ));
            continue;
        }
        match taken(name) {
            Some(Taken::Site) => problems.push(format!(
                "{name} is a site of its own, and a site's name wins over an alias: stop it and \
                 `hostyard site forget {name}` first"
            )),
            Some(Taken::AliasOf(other)) if &other != domain => problems.push(format!(
                "{name} already points at {other}: `hostyard site set {other} --remove-alias \
                 {name}` first"
            )),
            _ => {
                next.insert(name.clone());
            }
        }
    }
    if next.len() > MAX_ALIASES {
        problems.push(format!(
            "{domain} would have {} aliases; at most {MAX_ALIASES} fit on its certificate",
            next.len()
        ));
    }
    if problems.is_empty() {
        Ok(next.into_iter().collect())
    } else {
        Err(problems)
    }
}

/// Names for a message: comma-separated, or "none".
pub fn listed(names: &[Domain]) -> String {
    if names.is_empty() {
        return "none".to_string();
    }
    names
        .iter()
        .map(Domain::as_str)
        .collect::<Vec<_>>()
        .join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(s: &str) -> Domain {
        Domain::parse(s).unwrap()
    }

    fn ds(names: &[&str]) -> Vec<Domain> {
        names.iter().map(|n| d(n)).collect()
    }

    fn free(_: &Domain) -> Option<Taken> {
        None
    }

    #[test]
    fn adds_and_removes_sorted_and_adding_twice_changes_nothing() {
        let site = d("example.com");
        let got = decide(
            &site,
            &ds(&["old.example.net", "b.example.org"]),
            &ds(&["a.example.org", "b.example.org"]),
            &ds(&["old.example.net"]),
            free,
        );
        assert_eq!(got, Ok(ds(&["a.example.org", "b.example.org"])));
    }

    #[test]
    fn refuses_every_problem_at_once() {
        let site = d("example.com");
        let taken = |n: &Domain| match n.as_str() {
            "shop.example.org" => Some(Taken::Site),
            "old.example.org" => Some(Taken::AliasOf(d("other.example"))),
            "mine.example.org" => Some(Taken::AliasOf(d("example.com"))),
            _ => None,
        };
        let got = decide(
            &site,
            &ds(&["mine.example.org"]),
            &ds(&[
                "example.com",
                "www.example.com",
                "shop.example.org",
                "old.example.org",
                "both.example.org",
            ]),
            &ds(&["both.example.org", "never.example.org"]),
            taken,
        )
        .unwrap_err();
        let expect = [
            "both.example.org is both added and removed",
            "never.example.org is not an alias of example.com (its aliases: mine.example.org)",
            "example.com is the site's own name",
            "www.example.com redirects to example.com already",
            "shop.example.org is a site of its own",
            "`hostyard site forget shop.example.org`",
            "old.example.org already points at other.example: `hostyard site set other.example --remove-alias old.example.org`",
        ];
        let all = got.join("\n");
        for line in expect {
            assert!(all.contains(line), "{line:?} missing from:\n{all}");
        }
        assert_eq!(got.len(), 6, "{all}");
    }

    #[test]
    fn an_alias_it_already_holds_is_no_conflict() {
        let site = d("example.com");
        let mine = |_: &Domain| Some(Taken::AliasOf(d("example.com")));
        let got = decide(&site, &[], &ds(&["a.example.org"]), &[], mine);
        assert_eq!(got, Ok(ds(&["a.example.org"])));
    }

    #[test]
    fn at_most_what_a_certificate_holds() {
        let site = d("example.com");
        let many: Vec<Domain> = (0..=MAX_ALIASES)
            .map(|i| d(&format!("a{i}.example.org")))
            .collect();
        let got = decide(&site, &[], &many, &[], free).unwrap_err();
        assert_eq!(got.len(), 1);
        assert!(
            got[0].contains("would have 99 aliases; at most 98"),
            "{got:?}"
        );
        assert!(decide(&site, &[], &many[..MAX_ALIASES], &[], free).is_ok());
    }

    #[test]
    fn listed_says_none_for_no_names() {
        assert_eq!(listed(&[]), "none");
        assert_eq!(
            listed(&ds(&["a.example", "b.example"])),
            "a.example, b.example"
        );
    }
}
