//! A site's kind as its importer recorded it (`domains/<domain>/KIND`).

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use hostyard_core::spec::Part;
use hostyard_core::{Domain, Layout, SiteKind};

use crate::write::AtomicWrite;

/// The kind of the site whose data is at `domains/<domain>`; `None` when
/// the site has no data. Data an importer made before it recorded kinds
/// has no `KIND`: its kind is the one whose data is there
/// ([`kind_from_data`]) until its importer records it at the next start.
pub fn site_kind(layout: &Layout, domain: &Domain) -> Result<Option<SiteKind>> {
    let dir = layout.domain_dir(domain);
    match fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", dir.display())),
        Ok(m) if !m.is_dir() => bail!("{} is not a directory", dir.display()),
        Ok(_) => {}
    }
    match recorded_kind(layout, domain)? {
        Some(kind) => Ok(Some(kind)),
        None => kind_from_data(layout, domain).map(Some),
    }
}

/// What `KIND` says, `None` when there is no such file.
pub fn recorded_kind(layout: &Layout, domain: &Domain) -> Result<Option<SiteKind>> {
    let path = layout.kind_file(domain);
    let text = match fs::read_to_string(&path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        other => other.with_context(|| format!("cannot read {}", path.display()))?,
    };
    let kind = text.trim().parse::<SiteKind>();
    Ok(Some(
        kind.with_context(|| format!("in {}", path.display()))?,
    ))
}

/// Records `kind` in the site's data dir below `layout` (a staged import's
/// or the live one).
pub fn record_kind(layout: &Layout, domain: &Domain, kind: SiteKind) -> Result<()> {
    AtomicWrite::new(0o644).write(&layout.kind_file(domain), format!("{kind}\n").as_bytes())
}

/// The first part of a kind's data that is on disk whatever the site
/// holds: its tree or its source file.
fn marker(kind: SiteKind) -> Option<fn(&Layout, &Domain) -> PathBuf> {
    kind.spec().parts.iter().find_map(|part| match *part {
        Part::Tree { data, .. } | Part::Source { data, .. } => Some(data),
        Part::OptionalFile { .. } | Part::Database => None,
    })
}

/// The one kind whose data is in the site's dir, for data made before
/// importers recorded their kind.
pub fn kind_from_data(layout: &Layout, domain: &Domain) -> Result<SiteKind> {
    let exists = |p: &Path| fs::symlink_metadata(p).is_ok();
    let found: Vec<SiteKind> = SiteKind::ALL
        .into_iter()
        .filter(|k| marker(*k).is_some_and(|data| exists(&data(layout, domain))))
        .collect();
    match found.as_slice() {
        [kind] => Ok(*kind),
        _ => bail!(
            "{} holds no KIND file and no data of exactly one kind ({} found); write the \
             site's kind ({}) into {}",
            layout.domain_dir(domain).display(),
            if found.is_empty() {
                "none".to_string()
            } else {
                found
                    .iter()
                    .map(|k| k.as_str())
                    .collect::<Vec<_>>()
                    .join(" and ")
            },
            SiteKind::slugs(),
            layout.kind_file(domain).display()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn setup() -> (tempfile::TempDir, Layout, Domain) {
        let tmp = tempfile::tempdir().unwrap();
        let layout = Layout::new(tmp.path());
        let domain = Domain::parse("example.com").unwrap();
        (tmp, layout, domain)
    }

    #[test]
    fn no_data_is_no_site() {
        let (_tmp, layout, domain) = setup();
        assert_eq!(site_kind(&layout, &domain).unwrap(), None);
    }

    #[test]
    fn the_recorded_kind_wins_over_the_data() {
        let (_tmp, layout, domain) = setup();
        fs::create_dir_all(layout.wp_content_dir(&domain)).unwrap();
        record_kind(&layout, &domain, SiteKind::Static).unwrap();
        assert_eq!(site_kind(&layout, &domain).unwrap(), Some(SiteKind::Static));
    }

    #[test]
    fn unrecorded_data_of_each_kind_is_that_kind() {
        for kind in SiteKind::ALL {
            let (_tmp, layout, domain) = setup();
            let data = marker(kind).expect("every kind has data on disk")(&layout, &domain);
            fs::create_dir_all(data.parent().unwrap()).unwrap();
            fs::create_dir(&data).unwrap();
            assert_eq!(site_kind(&layout, &domain).unwrap(), Some(kind), "{kind}");
        }
    }

    #[test]
    fn ambiguous_or_unknown_data_is_an_error_naming_the_fix() {
        let (_tmp, layout, domain) = setup();
        fs::create_dir_all(layout.domain_dir(&domain)).unwrap();
        let err = format!("{:#}", site_kind(&layout, &domain).unwrap_err());
        assert!(err.contains("none found") && err.contains("KIND"), "{err}");
        fs::create_dir_all(layout.www_dir(&domain)).unwrap();
        fs::create_dir_all(layout.wp_content_dir(&domain)).unwrap();
        let err = format!("{:#}", site_kind(&layout, &domain).unwrap_err());
        assert!(err.contains("static and wordpress"), "{err}");
        fs::write(layout.kind_file(&domain), "php\n").unwrap();
        let err = format!("{:#}", site_kind(&layout, &domain).unwrap_err());
        assert!(err.contains("unknown site kind"), "{err}");
    }
}
