//! What a pass of the certificate thread reads, and only reads: which file
//! serves each site ([`decide::source`]) and its version, the declared
//! aliases, the files whose new version is to be judged (read and
//! checked), the policy map file.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;
use hostyard_core::{Domain, Layout};
use hostyard_haproxy::Entry;

use super::plan::{Found, Judged, Version};
use crate::check::{check_bundle, MAX_BUNDLE_LEN};
use crate::decide::{self, Source};
use crate::trust::Trust;

impl Version {
    pub(crate) fn of(meta: &std::fs::Metadata) -> Version {
        Version {
            len: meta.len(),
            mtime_ns: meta.mtime() as i128 * 1_000_000_000 + meta.mtime_nsec() as i128,
            ino: meta.ino(),
        }
    }
}

/// Whether this server hosts `domain` (its data is here).
pub(crate) fn hosted(layout: &Layout, domain: &Domain) -> bool {
    layout.domain_dir(domain).is_dir()
}

/// A regular file's metadata (a symlink is not followed).
fn file(path: &Path) -> Option<std::fs::Metadata> {
    std::fs::symlink_metadata(path).ok().filter(|m| m.is_file())
}

/// The file a source names for a site.
pub(crate) fn source_path(layout: &Layout, domain: &Domain, source: Source) -> PathBuf {
    match source {
        Source::Imported => layout.tls_pem(domain),
        Source::Acme | Source::Fleet => layout.acme_cert(domain),
    }
}

/// Which file serves `domain` here, and its metadata: [`decide::source`]
/// over the files that exist.
pub(crate) fn serving(
    layout: &Layout,
    domain: &Domain,
    hosted: bool,
    in_fleet: bool,
) -> Option<(Source, std::fs::Metadata)> {
    let imported = if hosted {
        file(&layout.tls_pem(domain))
    } else {
        None
    };
    let acme = file(&layout.acme_cert(domain));
    let source = decide::source(hosted, imported.is_some(), acme.is_some(), in_fleet)?;
    let meta = match source {
        Source::Imported => imported,
        Source::Acme | Source::Fleet => acme,
    }?;
    Some((source, meta))
}

/// A site's own certificate file here (an import, or ACME's file, by
/// [`decide::source`]), and its version; `None` for a site hosted
/// elsewhere or served with the default certificate.
pub(crate) fn own(layout: &Layout, domain: &Domain) -> Option<(PathBuf, Version)> {
    let (source, meta) = serving(layout, domain, hosted(layout, domain), false)?;
    source
        .own()
        .then(|| (source_path(layout, domain, source), Version::of(&meta)))
}

/// Whether ACME orders `domain`'s certificate here
/// ([`decide::acme_orders`]).
pub(crate) fn acme_orders(layout: &Layout, domain: &Domain) -> bool {
    decide::acme_orders(
        hosted(layout, domain),
        file(&layout.tls_pem(domain)).is_some(),
    )
}

/// Every site with a file to serve it here: those hosted here, and in a
/// fleet those of other servers.
pub fn sources(layout: &Layout, in_fleet: bool) -> anyhow::Result<BTreeMap<Domain, Found>> {
    let mut out = BTreeMap::new();
    let dir = layout.domains_dir();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => Some(e),
        // No site here yet; in a fleet, other servers' sites may be.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", dir.display())),
    };
    for entry in entries.into_iter().flatten() {
        let entry = entry.with_context(|| format!("reading {}", dir.display()))?;
        let Some(domain) = entry
            .file_name()
            .to_str()
            .and_then(|n| Domain::parse(n).ok())
        else {
            continue;
        };
        // The listing says what each entry is (no stat): a link is followed.
        let is_dir = match entry.file_type() {
            Ok(t) if t.is_symlink() => entry.path().is_dir(),
            Ok(t) => t.is_dir(),
            Err(_) => false,
        };
        if !is_dir {
            continue;
        }
        if let Some((source, meta)) = serving(layout, &domain, true, in_fleet) {
            let version = Version::of(&meta);
            out.insert(domain, Found { source, version });
        }
    }
    if in_fleet {
        for domain in crate::files::acme_cert_domains(layout) {
            if out.contains_key(&domain) || hosted(layout, &domain) {
                continue;
            }
            if let Some((source, meta)) = serving(layout, &domain, false, true) {
                let version = Version::of(&meta);
                out.insert(domain, Found { source, version });
            }
        }
    }
    Ok(out)
}

/// Reads and checks the file that serves `domain`; another server's is
/// verified against `trust` too (loaded from `ca_file` the first time).
pub fn judge(
    layout: &Layout,
    domain: &Domain,
    found: &Found,
    trust: &mut Option<Trust>,
    ca_file: &Path,
    now: SystemTime,
) -> Judged {
    let src = source_path(layout, domain, found.source);
    let bytes = match read_limited(&src) {
        Ok(b) => b,
        Err(e) => return Judged::Bad(format!("cannot be read: {e}")),
    };
    let checked = match found.source {
        Source::Fleet => trust
            .get_or_insert_with(|| Trust::load(ca_file))
            .check(&bytes, domain, now),
        Source::Imported | Source::Acme => check_bundle(&bytes, domain, now),
    };
    match checked {
        Ok(checked) => {
            let on_disk = std::fs::read(layout.haproxy_cert(domain)).ok().as_deref()
                == Some(checked.pem.as_bytes());
            Judged::Good { checked, on_disk }
        }
        Err(why) => Judged::Bad(why.to_string()),
    }
}

/// The declared aliases of each site, from the host map confd keeps
/// (`<alias> redirect/<domain>`), `www.<domain>` aside (served when the
/// certificate covers it, declared or not). Empty while confd has not
/// written it.
pub fn declared_aliases(layout: &Layout) -> BTreeMap<Domain, Vec<String>> {
    let text = std::fs::read_to_string(layout.hosts_map()).unwrap_or_default();
    let mut out: BTreeMap<Domain, Vec<String>> = BTreeMap::new();
    for (host, entry) in hostyard_haproxy::parse_map(&text) {
        if let Entry::Redirect(to) = entry {
            if to.www().is_some_and(|w| w.as_str() == host) {
                continue;
            }
            out.entry(to).or_default().push(host);
        }
    }
    out
}

/// The file, or its first [`MAX_BUNDLE_LEN`] + 1 bytes (too long for a
/// bundle, which the check then says).
pub(crate) fn read_limited(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut out = Vec::new();
    file.take(MAX_BUNDLE_LEN as u64 + 1).read_to_end(&mut out)?;
    Ok(out)
}
