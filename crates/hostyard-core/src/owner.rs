//! Who may serve a site: the decisions about its owner record
//! (`{prefix}/owners/<domain>`, [`crate::etcd::Schema::owner_key`]).
//!
//! Each decision is made on what was read from etcd and applied by the
//! caller as one transaction that compares the owner key with what was read,
//! so a change in between makes the transaction fail instead of deciding on
//! stale facts.

/// What a claim of a site by this server does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Claim {
    /// No server owns it: this one becomes the owner (the key must still
    /// be absent).
    Create,
    /// This server owns it already: nothing to write.
    Ours,
    /// Another server owns it: the owner becomes this server (the key must
    /// still name `from`).
    Move { from: String },
    /// Another server owns it and serves it (its registration is live):
    /// only an explicit take-over moves it.
    Refuse { owner: String },
}

/// The claim of a site by `me`. `live` says whether the site has a live
/// registration (someone serves it now); `take_over` is the operator's
/// explicit request to move it anyway. An owner without a live
/// registration (its server is down, or the site stopped there) yields:
/// its copy is not in routing, so nothing serves twice.
pub fn decide_claim(me: &str, owner: Option<&str>, live: bool, take_over: bool) -> Claim {
    match owner {
        None => Claim::Create,
        Some(o) if o == me => Claim::Ours,
        Some(o) if !live || take_over => Claim::Move {
            from: o.to_string(),
        },
        Some(o) => Claim::Refuse {
            owner: o.to_string(),
        },
    }
}

/// What a hand-over from `from` to `to` (a move's switch) does.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    /// The owner becomes `to`; the key must still hold `from` (`None`:
    /// must still be absent, a site not registered since owners were
    /// recorded).
    Move { from: Option<String> },
    /// `to` owns it already (a move run again after its switch).
    Done,
    /// A third server owns it and serves it: the move is not this one's to
    /// make unless taken over.
    Refuse { owner: String },
}

/// The hand-over of a site from `from` to `to`, on the owner read from
/// etcd. A third server's ownership yields as in [`decide_claim`]: when its
/// registration is not live, or on an explicit take-over.
pub fn decide_transfer(
    owner: Option<&str>,
    from: &str,
    to: &str,
    live: bool,
    take_over: bool,
) -> Transfer {
    match owner {
        Some(o) if o == to => Transfer::Done,
        None => Transfer::Move { from: None },
        Some(o) if o == from || !live || take_over => Transfer::Move {
            from: Some(o.to_string()),
        },
        Some(o) => Transfer::Refuse {
            owner: o.to_string(),
        },
    }
}

/// Whether `me` may write the site's registration or certificate:
/// `Ok(true)` when it must first create the owner key (no owner yet; the
/// first registration claims the site), `Ok(false)` when it owns it, and
/// the owner's name when another server does. A server never takes a site
/// from another by registering: only a claim or a transfer moves it.
pub fn may_write(me: &str, owner: Option<&str>) -> Result<bool, String> {
    match owner {
        None => Ok(true),
        Some(o) if o == me => Ok(false),
        Some(o) => Err(o.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_claim_creates_keeps_moves_or_refuses() {
        assert_eq!(decide_claim("n2", None, false, false), Claim::Create);
        assert_eq!(decide_claim("n2", None, true, false), Claim::Create);
        assert_eq!(decide_claim("n2", Some("n2"), true, false), Claim::Ours);
        assert_eq!(decide_claim("n2", Some("n2"), false, true), Claim::Ours);
        // The owner serves it: refused unless taken over.
        assert_eq!(
            decide_claim("n2", Some("n1"), true, false),
            Claim::Refuse { owner: "n1".into() }
        );
        assert_eq!(
            decide_claim("n2", Some("n1"), true, true),
            Claim::Move { from: "n1".into() }
        );
        // The owner does not serve it: it yields without --take-over.
        assert_eq!(
            decide_claim("n2", Some("n1"), false, false),
            Claim::Move { from: "n1".into() }
        );
    }

    #[test]
    fn a_transfer_moves_from_the_named_owner_or_a_third_that_yields() {
        let from = |o: &str| Transfer::Move {
            from: Some(o.to_string()),
        };
        // The source serves it until the switch: that is the point.
        assert_eq!(
            decide_transfer(Some("n1"), "n1", "n2", true, false),
            from("n1")
        );
        assert_eq!(
            decide_transfer(None, "n1", "n2", false, false),
            Transfer::Move { from: None }
        );
        assert_eq!(
            decide_transfer(Some("n2"), "n1", "n2", true, false),
            Transfer::Done
        );
        assert_eq!(
            decide_transfer(Some("n3"), "n1", "n2", true, false),
            Transfer::Refuse { owner: "n3".into() }
        );
        assert_eq!(
            decide_transfer(Some("n3"), "n1", "n2", true, true),
            from("n3")
        );
        assert_eq!(
            decide_transfer(Some("n3"), "n1", "n2", false, false),
            from("n3")
        );
    }

    #[test]
    fn only_the_owner_or_a_first_claim_may_write() {
        assert_eq!(may_write("n1", None), Ok(true));
        assert_eq!(may_write("n1", Some("n1")), Ok(false));
        assert_eq!(may_write("n2", Some("n1")), Err("n1".to_string()));
    }
}
