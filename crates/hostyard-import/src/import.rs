//! One site's import: find the source, stage the site, rename it into place.
//!
//! The original copied an import over existing data and then `rm -rf`'d the
//! import. Here the site is built in `domains/.staging-<domain>-<pid>/`, a
//! data root of its own on the same filesystem, flushed, and renamed to
//! `domains/<domain>` with `RENAME_NOREPLACE` only when complete: a crash
//! at any point leaves no site (and a staging dir that the next run removes)
//! or the whole site. Existing site data is never touched, and the import is
//! moved to `import/.done/`, and removed from there `import.keep_done`
//! later by a later import.

use std::fs::{self, File};
use std::io::{BufReader, Read};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context, Result};
use hostyard_config::NodeConfig;
use hostyard_core::{Domain, ImportLayout, Layout, SiteKind};
use hostyard_fs::kind::{kind_from_data, record_kind, recorded_kind};
use hostyard_fs::unpack::{check_no_symlink_below, copy_tree, open_regular, unpack_tar};
use hostyard_fs::{rename_no_replace, sync_dir, sync_filesystem};
use hostyard_git::publish;
use hostyard_git::GitUrl;
use hostyard_log::Priority;
use nix::fcntl::{Flock, FlockArg};

use crate::pem::check_pem;
use crate::secrets::{write_admin_file, write_private, write_site_secrets, DbNames};

/// Where an import comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    Folder(PathBuf),
    Tarball { path: PathBuf, suffix: &'static str },
    Fresh,
}

/// What happened, for the log line and the tests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    AlreadyImported,
    Imported { from: String },
}

/// A line of the import's log, with its priority for the journal.
pub fn log_at(priority: Priority, domain: &Domain, msg: &str) {
    hostyard_log::line(priority, format_args!("hostyard-import: {domain}: {msg}"));
}

/// What the import did: a notice.
pub fn log(domain: &Domain, msg: &str) {
    log_at(Priority::Notice, domain, msg);
}

/// Something left behind that needs a look: a warning.
pub fn warn(domain: &Domain, msg: &str) {
    log_at(Priority::Warning, domain, msg);
}

pub fn run(config: &NodeConfig, kind: SiteKind, domain: &Domain) -> Result<Outcome> {
    let layout = config.layout();
    // The data root is made by setup.sh and is often a mount of its own.
    // Never create it: an importer that runs before a late mount would put
    // fresh data (new secrets, a new WordPress) on the root disk, hidden
    // under the real data once the volume mounts.
    if !layout.root().is_dir() {
        bail!(
            "the data root {} does not exist: is its volume mounted? \
             (scripts/setup.sh creates it on a new server)",
            layout.root().display()
        );
    }
    let domains = layout.domains_dir();
    match fs::DirBuilder::new().mode(0o755).create(&domains) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => {
            return Err(e).with_context(|| format!("cannot create {}", domains.display()));
        }
        _ => {}
    }
    let _lock = lock(&layout.import_lock(domain))?;
    remove_stale_staging(&layout, domain)?;

    let target = layout.domain_dir(domain);
    if fs::symlink_metadata(&target).is_ok() {
        check_kind(&layout, domain, kind)?;
        if kind == SiteKind::Wordpress {
            if crate::secrets::split_wordpress_env(&layout, domain)? {
                log(
                    domain,
                    "wrote secrets/wp.env: WordPress no longer gets MariaDB's root password",
                );
            }
            for file in complete_wordpress_site(config, &layout, domain)? {
                log(domain, &format!("wrote {file}, which this version needs"));
            }
        }
        if fs::symlink_metadata(layout.import_dir(domain)).is_ok() {
            log(
                domain,
                &format!(
                    "{} is left as it is: the site already has data",
                    layout.import_dir(domain).display()
                ),
            );
        }
        return Ok(Outcome::AlreadyImported);
    }

    let source = find_source(&layout, domain)?;
    let staging = layout.staging_dir(domain, std::process::id());
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&staging)
        .with_context(|| format!("cannot create {}", staging.display()))?;
    let built = build(config, kind, domain, &source, &staging);
    if let Err(e) = built {
        let _ = fs::remove_dir_all(&staging);
        return Err(e);
    }
    let staged = Layout::new(&staging).domain_dir(domain);
    sync_filesystem(&staging)?;
    rename_no_replace(&staged, &target)
        .with_context(|| format!("cannot rename {} to {}", staged.display(), target.display()))?;
    sync_dir(&domains)?;
    if let Err(e) = fs::remove_dir_all(&staging) {
        warn(
            domain,
            &format!(
                "cannot remove {} (removed on the next run): {e}",
                staging.display()
            ),
        );
    }

    let from = match &source {
        Source::Fresh => "fresh content".to_string(),
        Source::Folder(p) | Source::Tarball { path: p, .. } => p.display().to_string(),
    };
    // One clock reading names the used import and decides what expired.
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    if let Err(e) = move_aside(&layout, domain, &source, now) {
        // The site is complete; a leftover import is harmless and visible.
        warn(
            domain,
            &format!("imported, but the import could not be moved aside: {e:#}"),
        );
    }
    remove_expired_done(&layout, domain, now, config.import.keep_done.as_secs());
    Ok(Outcome::Imported { from })
}

/// A site's data is of one kind: starting another kind's units on it would
/// serve (or overwrite) it wrongly. Data from before kinds were recorded
/// gets its `KIND` here, once its kind is plain from what it holds.
fn check_kind(layout: &Layout, domain: &Domain, kind: SiteKind) -> Result<()> {
    let recorded = match recorded_kind(layout, domain)? {
        Some(recorded) => recorded,
        None => {
            let found = kind_from_data(layout, domain)?;
            if found == kind {
                record_kind(layout, domain, kind)?;
                log(domain, &format!("recorded its kind ({kind}) in KIND"));
            }
            found
        }
    };
    if recorded != kind {
        bail!(
            "{domain} holds a {recorded} site, not a {kind} one: start {} instead (or stop this \
             unit and move the data aside to make a new {kind} site)",
            recorded.site_unit(domain)
        );
    }
    Ok(())
}

fn lock(path: &Path) -> Result<Flock<File>> {
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    // Wait: systemd runs one importer per site, so a holder is a hand-run
    // import that finishes soon.
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| anyhow::anyhow!("cannot lock {}: {e}", path.display()))
}

/// Staging dirs of this domain left by a killed import (we hold the lock).
fn remove_stale_staging(layout: &Layout, domain: &Domain) -> Result<()> {
    let domains = layout.domains_dir();
    for entry in
        fs::read_dir(&domains).with_context(|| format!("cannot read {}", domains.display()))?
    {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if Layout::is_staging_name(domain, &name) {
            let path = entry.path();
            warn(
                domain,
                &format!("removing {} left by an interrupted import", path.display()),
            );
            fs::remove_dir_all(&path)
                .with_context(|| format!("cannot remove {}", path.display()))?;
        }
    }
    Ok(())
}

fn find_source(layout: &Layout, domain: &Domain) -> Result<Source> {
    let folder = layout.import_dir(domain);
    match fs::symlink_metadata(&folder) {
        Ok(m) if m.is_dir() => return Ok(Source::Folder(folder)),
        Ok(_) => bail!(
            "{} is not a directory (a symlink or file); an import must be a folder or a tarball",
            folder.display()
        ),
        Err(_) => {}
    }
    let suffixes = hostyard_core::layout::IMPORT_TARBALL_SUFFIXES;
    for (path, suffix) in layout.import_tarballs(domain).into_iter().zip(suffixes) {
        if fs::symlink_metadata(&path).is_ok() {
            return Ok(Source::Tarball { path, suffix });
        }
    }
    Ok(Source::Fresh)
}

/// Builds the whole site under `staging` (a data root of its own).
fn build(
    config: &NodeConfig,
    kind: SiteKind,
    domain: &Domain,
    source: &Source,
    staging: &Path,
) -> Result<()> {
    let staged = Layout::new(staging);
    let import_root = match source {
        Source::Fresh => None,
        Source::Folder(p) => Some(p.clone()),
        Source::Tarball { path, suffix } => {
            let unpacked = staging.join("unpacked");
            fs::DirBuilder::new().mode(0o700).create(&unpacked)?;
            let file = open_regular(path)?;
            let reader: Box<dyn Read> = if *suffix == ".tar" {
                Box::new(BufReader::new(file))
            } else {
                Box::new(flate2::read::GzDecoder::new(BufReader::new(file)))
            };
            unpack_tar(reader, &unpacked, Some(&config.limits.unpack))
                .with_context(|| format!("{} is refused", path.display()))?;
            Some(descend_wrapper(&unpacked, domain))
        }
    };
    let import = import_root.as_deref().map(ImportLayout::new);
    if let Some(import) = &import {
        for path in [
            import.tls_pem(domain),
            import.www_content(),
            import.git_url(),
            import.mysql_dump(),
            import.mysql_env(),
            import.wp_content(),
            import.htaccess(),
        ] {
            check_no_symlink_below(import.root(), &path)?;
        }
    }

    for dir in [staged.domains_dir(), staged.domain_dir(domain)] {
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    if let Some(import) = &import {
        import_tls(import, &staged, domain)?;
    }
    match kind {
        SiteKind::Static => build_static(config, import.as_ref(), &staged, domain)?,
        SiteKind::StaticGit => build_static_git(config, import.as_ref(), &staged, domain)?,
        SiteKind::Wordpress => build_wordpress(config, import.as_ref(), &staged, domain)?,
    }
    record_kind(&staged, domain, kind)
}

/// A tarball made with `tar -C /data/import -c example.com` has the layout
/// one level down.
fn descend_wrapper(unpacked: &Path, domain: &Domain) -> PathBuf {
    let inner = unpacked.join(domain.as_str());
    let only_entry = fs::read_dir(unpacked)
        .map(|d| d.count() == 1)
        .unwrap_or(false);
    match fs::symlink_metadata(&inner) {
        Ok(m) if m.is_dir() && only_entry => inner,
        _ => unpacked.to_path_buf(),
    }
}

fn exists(path: &Path) -> bool {
    fs::symlink_metadata(path).is_ok()
}

fn mkdir(path: &Path, mode: u32) -> Result<()> {
    fs::DirBuilder::new()
        .mode(mode)
        .create(path)
        .with_context(|| format!("cannot create {}", path.display()))
}

fn read_limited(path: &Path, limit: u64) -> Result<Vec<u8>> {
    let mut buf = Vec::new();
    open_regular(path)?
        .take(limit + 1)
        .read_to_end(&mut buf)
        .with_context(|| format!("cannot read {}", path.display()))?;
    if buf.len() as u64 > limit {
        bail!("{} is larger than {limit} bytes", path.display());
    }
    Ok(buf)
}

fn import_tls(import: &ImportLayout, staged: &Layout, domain: &Domain) -> Result<()> {
    let src = import.tls_pem(domain);
    if !exists(&src) {
        return Ok(());
    }
    let pem = read_limited(&src, crate::pem::MAX_PEM_LEN as u64)?;
    check_pem(&pem).with_context(|| format!("{} is not a PEM certificate file", src.display()))?;
    let dest = staged.tls_pem(domain);
    if let Some(dir) = dest.parent() {
        mkdir(dir, 0o700)?;
    }
    // It holds the private key.
    write_private(&dest, &pem)
}

fn copy_dir_or_empty(config: &NodeConfig, src: Option<PathBuf>, dest: &Path) -> Result<bool> {
    mkdir(dest, 0o755)?;
    match src {
        Some(src) if exists(&src) => {
            copy_tree(&src, dest, Some(&config.limits.unpack))
                .with_context(|| format!("cannot import {}", src.display()))?;
            Ok(true)
        }
        _ => Ok(false),
    }
}

fn build_static(
    config: &NodeConfig,
    import: Option<&ImportLayout>,
    staged: &Layout,
    domain: &Domain,
) -> Result<()> {
    let www = staged.www_dir(domain);
    if !copy_dir_or_empty(config, import.map(ImportLayout::www_content), &www)? {
        let page = format!(
            "<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{domain}</title></head>\n\
             <body><h1>{domain}</h1><p>This site is hosted by hostyard and has no content yet.</p></body></html>\n"
        );
        fs::write(www.join("index.html"), page).context("cannot write the placeholder page")?;
    }
    Ok(())
}

fn build_static_git(
    config: &NodeConfig,
    import: Option<&ImportLayout>,
    staged: &Layout,
    domain: &Domain,
) -> Result<()> {
    let layout = config.layout();
    let hint = || {
        format!(
            "a static-git site needs a repository URL: put it in {} (one line, like \
             https://example.com/site.git, with #branch to publish a branch other than the default), \
             then run the import again",
            ImportLayout::new(&layout.import_dir(domain)).git_url().display()
        )
    };
    let Some(file) = import.map(ImportLayout::git_url).filter(|f| exists(f)) else {
        bail!("{}", hint());
    };
    let text = read_limited(&file, 8192)?;
    let text =
        String::from_utf8(text).with_context(|| format!("{} is not text", file.display()))?;
    let line = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'))
        .with_context(hint)?;
    let url = GitUrl::parse(line).with_context(|| format!("{} is refused", file.display()))?;
    // Credentials may be in the URL: only root reads it.
    write_private(&staged.git_url_file(domain), format!("{url}\n").as_bytes())?;
    let outcome = publish(staged, domain, &url, &config.git, &config.limits.unpack)
        .with_context(|| format!("cannot publish {}", url.redacted()))?;
    if let hostyard_git::Outcome::Published { commit, .. } = outcome {
        log(
            domain,
            &format!("published {commit} from {}", url.redacted()),
        );
    }
    Ok(())
}

/// A new site's `.htaccess`: WordPress's own rewrite block for a site at
/// `/`, between the markers WordPress rewrites when its permalinks change.
pub const DEFAULT_HTACCESS: &str = "# BEGIN WordPress\n\
<IfModule mod_rewrite.c>\n\
RewriteEngine On\n\
RewriteRule .* - [E=HTTP_AUTHORIZATION:%{HTTP:Authorization}]\n\
RewriteBase /\n\
RewriteRule ^index\\.php$ - [L]\n\
RewriteCond %{REQUEST_FILENAME} !-f\n\
RewriteCond %{REQUEST_FILENAME} !-d\n\
RewriteRule . /index.php [L]\n\
</IfModule>\n\
# END WordPress\n";

fn build_wordpress(
    config: &NodeConfig,
    import: Option<&ImportLayout>,
    staged: &Layout,
    domain: &Domain,
) -> Result<()> {
    copy_dir_or_empty(
        config,
        import.map(ImportLayout::wp_content),
        &staged.wp_content_dir(domain),
    )?;
    mkdir(&staged.mysql_dir(domain), 0o755)?;
    let mut names = DbNames::default();
    let mut htaccess_done = false;
    let mut facts = None;
    if let Some(import) = import {
        let htaccess = import.htaccess();
        if exists(&htaccess) {
            let mut src = open_regular(&htaccess)?;
            let mut dest = fs::File::create(staged.htaccess_file(domain))?;
            std::io::copy(&mut src, &mut dest).context("cannot copy .htaccess")?;
            htaccess_done = true;
        }
        if exists(&import.mysql_env()) {
            names = DbNames::from_env_file(&import.mysql_env())?;
        }
        let dump = import.mysql_dump();
        if exists(&dump) {
            mkdir(&staged.mysql_init_dir(domain), 0o755)?;
            let mut src = BufReader::new(open_regular(&dump)?);
            let dest_path = staged.mysql_init_dump(domain);
            // It holds the site's users and their password hashes.
            let dest = fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&dest_path)
                .with_context(|| format!("cannot create {}", dest_path.display()))?;
            let mut dest = std::io::BufWriter::new(dest);
            // A dump that would load in part is refused here, before the
            // site exists (the staging dir goes with it).
            facts = Some(crate::wpdump::copy_and_check(
                &mut src,
                &mut dest,
                &dump.display().to_string(),
            )?);
        }
    }
    if !htaccess_done {
        write_new(&staged.htaccess_file(domain), DEFAULT_HTACCESS.as_bytes())?;
    }
    write_php_defaults(config, staged, domain)?;
    let prefix = facts.as_ref().map(|f| f.table_prefix.as_str());
    write_site_secrets(staged, domain, &names, prefix)?;
    // An imported site keeps its own administrators and their passwords;
    // a new one is installed with a generated one.
    let admin_email = config.wordpress.admin_email_for(domain);
    write_admin_file(
        staged,
        domain,
        facts.is_none().then_some(admin_email.as_str()),
    )
}

/// The node config's PHP defaults where the site's Apache reads them
/// (`php/defaults.conf`), written again at a start when they differ: a
/// changed `wordpress.php_limits` reaches the site when it restarts.
/// Returns whether it wrote.
fn write_php_defaults(config: &NodeConfig, layout: &Layout, domain: &Domain) -> Result<bool> {
    let path = layout.php_defaults_conf(domain);
    let text = hostyard_core::php::defaults_conf(&config.wordpress.php_limits);
    if fs::read(&path).ok().as_deref() == Some(text.as_bytes()) {
        return Ok(false);
    }
    if !exists(&layout.php_dir(domain)) {
        mkdir(&layout.php_dir(domain), 0o755)?;
    }
    hostyard_fs::AtomicWrite::new(0o644).write(&path, text.as_bytes())?;
    Ok(true)
}

/// A world-readable file the site's containers read; refuses to replace one.
fn write_new(path: &Path, content: &[u8]) -> Result<()> {
    hostyard_fs::AtomicWrite::new(0o644)
        .no_replace()
        .write(path, content)
}

/// What a site imported before this version lacks: its `.htaccess` (the
/// unit mounts it, and docker would make a missing one a directory) and
/// its administrator file. A site whose database never started gets a
/// generated administrator password (it is installed with it); any other
/// keeps its users as they are.
fn complete_wordpress_site(
    config: &NodeConfig,
    layout: &Layout,
    domain: &Domain,
) -> Result<Vec<&'static str>> {
    let mut wrote = Vec::new();
    if !exists(&layout.htaccess_file(domain)) {
        write_new(&layout.htaccess_file(domain), DEFAULT_HTACCESS.as_bytes())?;
        wrote.push(".htaccess");
    }
    if exists(&layout.secrets_dir(domain)) && !exists(&layout.wp_admin_file(domain)) {
        let never_started = fs::read_dir(layout.mysql_dir(domain))
            .map(|mut d| d.next().is_none())
            .unwrap_or(true);
        let admin_email = config.wordpress.admin_email_for(domain);
        write_admin_file(
            layout,
            domain,
            never_started.then_some(admin_email.as_str()),
        )?;
        wrote.push("secrets/wp-admin.env");
    }
    if write_php_defaults(config, layout, domain)? {
        wrote.push("php/defaults.conf");
    }
    Ok(wrote)
}

/// Moves the used import to `import/.done/<domain>-<time>[.tar...]`.
fn move_aside(layout: &Layout, domain: &Domain, source: &Source, now: u64) -> Result<()> {
    let (path, suffix) = match source {
        Source::Fresh => return Ok(()),
        Source::Folder(p) => (p, ""),
        Source::Tarball { path, suffix } => (path, *suffix),
    };
    let done = layout.import_done_dir();
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(&done)?;
    let dest = layout.import_done_entry(domain, now, suffix);
    rename_no_replace(path, &dest)
        .with_context(|| format!("cannot move {} to {}", path.display(), dest.display()))?;
    log(domain, &format!("moved the import to {}", dest.display()));
    Ok(())
}

/// Removes the used imports older than `keep_secs` from `import/.done/`
/// (every site's: they hold TLS keys and dumps). A failure is logged, not
/// fatal: the site was built.
pub fn remove_expired_done(layout: &Layout, domain: &Domain, now: u64, keep_secs: u64) {
    let dir = layout.import_done_dir();
    let names: Vec<String> = match fs::read_dir(&dir) {
        Ok(entries) => entries
            .filter_map(|e| e.ok()?.file_name().into_string().ok())
            .collect(),
        Err(_) => return,
    };
    for name in Layout::expired_import_done(names.iter().map(String::as_str), now, keep_secs) {
        let path = dir.join(name);
        // symlink_metadata: a link is removed, never followed.
        let removed = match fs::symlink_metadata(&path) {
            Ok(m) if m.is_dir() => fs::remove_dir_all(&path),
            Ok(_) => fs::remove_file(&path),
            Err(e) => Err(e),
        };
        match removed {
            Ok(()) => log(
                domain,
                &format!("removed {} (older than import.keep_done)", path.display()),
            ),
            Err(e) => log(domain, &format!("cannot remove {}: {e}", path.display())),
        }
    }
}

use std::os::unix::fs::OpenOptionsExt;
