//! Which certificate a site is served with, here and across a fleet, as
//! pure decisions (the effects are in [`crate::sync`], [`crate::fleet`]
//! and [`crate::acme`]).
//!
//! On one server ([`source`]): a site hosted here is served with its
//! imported certificate (`tls/<domain>.pem`) when it has one, else with
//! ACME's file (ordered here, or taken from the fleet when it moved here);
//! ACME never orders for a site with an imported one ([`acme_orders`]).
//! A site hosted elsewhere is served, in a fleet only, with the bundle its
//! server published (the receiver writes it where ACME's file would be).
//!
//! What the site's hosting server serves now wins, not what lasts
//! longest: its owner publishes whatever it serves, a shorter-lived
//! replacement of a leaked key included, and every other server follows
//! etcd. The hosting server never takes etcd's bundle over a certificate
//! of its own (ACME's or imported): only a site with none yet (it just
//! moved here) takes the fleet's. A site that is neither declared nor
//! owned any more (`hostyard site forget`) has no certificate in etcd.

/// Where the certificate a site is served with on this server comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Source {
    /// The site's own file, brought by an import or put there by an
    /// operator.
    Imported,
    /// ACME's file for a site hosted here.
    Acme,
    /// Another server's site: the bundle its server published.
    Fleet,
}

impl Source {
    /// Whether it is the site's own certificate (not another server's).
    pub fn own(self) -> bool {
        matches!(self, Source::Imported | Source::Acme)
    }

    /// The name `hostyard status` shows.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Imported => "imported",
            Source::Acme => "acme",
            Source::Fleet => "fleet",
        }
    }
}

/// The one precedence rule: which file serves a site, given whether this
/// server hosts it, which of its files exist (`imported`: its
/// `tls/<domain>.pem`; `acme`: `runtime/acme/certs/<domain>.pem`) and
/// whether the server is in a fleet. `None`: the default certificate.
pub fn source(hosted: bool, imported: bool, acme: bool, in_fleet: bool) -> Option<Source> {
    match (hosted, imported, acme) {
        (true, true, _) => Some(Source::Imported),
        (true, false, true) => Some(Source::Acme),
        (true, false, false) => None,
        // Another server's site: only a fleet serves it.
        (false, _, true) if in_fleet => Some(Source::Fleet),
        (false, _, _) => None,
    }
}

/// Whether ACME orders (and renews) a certificate for a site: hosted
/// here, and not served with an imported one, which ACME never replaces.
pub fn acme_orders(hosted: bool, imported: bool) -> bool {
    hosted && source(hosted, imported, false, false) != Some(Source::Imported)
}

/// What etcd holds for a site, as this server judged it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Held {
    /// No key.
    Nothing,
    /// The bytes this server serves.
    Same,
    /// Another bundle, good to serve (checked and verified).
    Usable,
    /// Another bundle, refused (unusable or unverified).
    Refused,
}

/// What a server does with what etcd holds for a site.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Writes it where the certificate thread serves it from.
    Adopt,
    /// Serves its own certificate, whatever etcd holds.
    KeepOwn,
    /// Removes its copy of another server's site: etcd lost it.
    Remove,
    /// Changes nothing.
    Leave,
}

/// What to do with `held` for a site this server hosts or not
/// (`hosted`), which has a certificate of its own here or not (`own`:
/// an import, or ACME's file).
pub fn receive(hosted: bool, own: bool, held: Held) -> Receive {
    match (hosted, held) {
        (true, _) if own => Receive::KeepOwn,
        // None of its own yet: the fleet's spares it an order.
        (true, Held::Usable) => Receive::Adopt,
        (true, _) => Receive::KeepOwn,
        (false, Held::Usable) => Receive::Adopt,
        (false, Held::Nothing) => Receive::Remove,
        // A refused bundle changes nothing (the certificate thread refuses
        // an untrusted copy already here too).
        (false, Held::Same | Held::Refused) => Receive::Leave,
    }
}

/// Whom etcd names as a site's owner, as this server read it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Owner {
    Me,
    Nobody,
    Other,
}

/// Whether this server puts what it serves into etcd for a site it hosts.
/// Its owner does whenever etcd holds something else. While nobody owns
/// it (not registered since owners were recorded), the first host to
/// publish keeps it until an owner exists: two hosts never take turns.
/// An undeclared site publishes nothing (its key would be withdrawn).
pub fn publish(declared: bool, owner: Owner, held: Held) -> bool {
    match owner {
        _ if !declared => false,
        Owner::Other => false,
        Owner::Me => held != Held::Same,
        Owner::Nobody => matches!(held, Held::Nothing | Held::Refused),
    }
}

/// Whether a site's certificate is withdrawn from etcd: the site is
/// removed, i.e. neither declared nor owned (`hostyard site forget`
/// deletes both once no server runs it).
pub fn withdraw(declared: bool, owned: bool) -> bool {
    !declared && !owned
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_imported_certificate_wins_over_acme_and_only_a_fleet_serves_other_servers_sites() {
        use Source::*;
        for in_fleet in [false, true] {
            assert_eq!(source(true, true, true, in_fleet), Some(Imported));
            assert_eq!(source(true, true, false, in_fleet), Some(Imported));
            assert_eq!(source(true, false, true, in_fleet), Some(Acme));
            assert_eq!(source(true, false, false, in_fleet), None);
            assert_eq!(source(false, false, false, in_fleet), None);
        }
        assert_eq!(source(false, false, true, true), Some(Fleet));
        assert_eq!(source(false, false, true, false), None);
        assert!(Imported.own() && Acme.own() && !Fleet.own());
        // ACME orders for a hosted site unless it has an imported one.
        assert!(acme_orders(true, false));
        assert!(!acme_orders(true, true));
        assert!(!acme_orders(false, false));
    }

    #[test]
    fn the_hosting_server_keeps_its_own_and_the_others_follow_etcd() {
        use Held::*;
        // Hosted with a certificate of its own: etcd never replaces it,
        // however long etcd's lasts, and its deletion changes nothing.
        for held in [Nothing, Same, Usable, Refused] {
            assert_eq!(receive(true, true, held), Receive::KeepOwn, "{held:?}");
        }
        // Hosted, none of its own (moved here): a usable one is taken.
        assert_eq!(receive(true, false, Usable), Receive::Adopt);
        assert_eq!(receive(true, false, Refused), Receive::KeepOwn);
        assert_eq!(receive(true, false, Nothing), Receive::KeepOwn);
        // Another server's site: etcd decides, shorter-lived or not.
        assert_eq!(receive(false, true, Usable), Receive::Adopt);
        assert_eq!(receive(false, false, Usable), Receive::Adopt);
        assert_eq!(receive(false, true, Nothing), Receive::Remove);
        assert_eq!(receive(false, true, Refused), Receive::Leave);
        assert_eq!(receive(false, true, Same), Receive::Leave);
    }

    #[test]
    fn the_owner_publishes_what_it_serves_and_others_never() {
        use Held::*;
        assert!(publish(true, Owner::Me, Usable));
        assert!(publish(true, Owner::Me, Refused));
        assert!(publish(true, Owner::Me, Nothing));
        assert!(!publish(true, Owner::Me, Same));
        for held in [Nothing, Same, Usable, Refused] {
            assert!(!publish(true, Owner::Other, held));
            assert!(!publish(false, Owner::Me, held));
            assert!(!publish(false, Owner::Nobody, held));
        }
        assert!(publish(true, Owner::Nobody, Nothing));
        assert!(publish(true, Owner::Nobody, Refused));
        assert!(!publish(true, Owner::Nobody, Usable));
    }

    #[test]
    fn only_a_site_neither_declared_nor_owned_is_withdrawn() {
        assert!(withdraw(false, false));
        assert!(!withdraw(true, false));
        assert!(!withdraw(false, true));
        assert!(!withdraw(true, true));
    }
}
