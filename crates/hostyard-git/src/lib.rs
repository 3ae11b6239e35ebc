//! Publishing a static-git site's repository as a served tree.
//!
//! The original system served a `git pull`ed working copy, `.git` included,
//! and a failed pull left whatever half state git had reached. Here:
//!
//! - the repository is a bare clone at [`Layout::git_repo_dir`], outside
//!   `public/`, so `.git` is never served;
//! - each commit is exported (`git archive`, unpacked by
//!   [`hostyard_fs::unpack`]) to
//!   `public/trees/<commit>` under a temporary name and renamed into place
//!   once complete;
//! - `public/current` is switched by renaming a new symlink over it, so a
//!   reader sees the old tree or the new one, never a mix;
//! - any failure leaves `current` as it was: the last good tree keeps serving;
//! - the fetch is forced: the server has no commits of its own, so a
//!   force-pushed branch is followed, never merged.
//!
//! Both hostyard-gitpull (on the site's timer) and hostyard-import (on the
//! staged site, so a new static-git site has a tree before its first start)
//! call [`publish`].

pub mod git;
pub mod giturl;

use std::fs::{self, File};
use std::io;
use std::os::unix::fs::DirBuilderExt;
use std::path::Path;
use std::time::{Duration, SystemTime};

use anyhow::{bail, Context, Result};
use hostyard_config::limits::UnpackLimits;
use hostyard_config::GitConfig;
use hostyard_core::{Domain, Layout};
use hostyard_fs::unpack;
use hostyard_fs::{remove_stale_temporaries, switch_link, sync_filesystem, temporary_sibling};
use nix::fcntl::{Flock, FlockArg};

use crate::git::Git;
pub use crate::giturl::{GitUrl, GitUrlError};

/// The ref the fetched tip is stored under in the bare repository.
const TIP_REF: &str = "refs/hostyard/tip";

/// What a pull did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// `current` now points to `commit`.
    Published {
        commit: String,
        previous: Option<String>,
    },
    /// `current` already pointed to the remote's tip.
    UpToDate { commit: String },
    /// The remote's tip is the commit a rollback moved away from: nothing
    /// is published until a new commit arrives.
    Held { commit: String },
}

/// What a rollback did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RolledBack {
    pub from: String,
    pub to: String,
}

/// Reads the site's stored URL ([`Layout::git_url_file`]).
pub fn read_git_url(layout: &Layout, domain: &Domain) -> Result<GitUrl> {
    let path = layout.git_url_file(domain);
    let mut file = unpack::open_regular(&path)?;
    let mut text = String::new();
    io::Read::read_to_string(&mut file, &mut text)
        .with_context(|| format!("cannot read {}", path.display()))?;
    GitUrl::parse(&text).with_context(|| format!("{}", path.display()))
}

/// Fetches the site's branch and publishes its tip, for a site whose data
/// lives under `layout` (the real data root, or an import's staging root).
/// The tree is written within `limits`: a commit past them (a git bomb) is
/// refused and `current` keeps its tree.
pub fn publish(
    layout: &Layout,
    domain: &Domain,
    url: &GitUrl,
    config: &GitConfig,
    limits: &UnpackLimits,
) -> Result<Outcome> {
    let domain_dir = layout.domain_dir(domain);
    let _lock = lock_dir(&domain_dir)?;
    let repo = layout.git_repo_dir(domain);
    let trees = layout.trees_dir(domain);
    hostyard_fs::make_dirs(&trees, 0o755)?;
    remove_stale_temporaries(&trees)?;
    remove_stale_temporaries(&layout.public_dir(domain))?;
    remove_stale_temporaries(&domain_dir)?;

    let git = Git::new(&repo, Duration::from_secs(config.fetch_timeout_secs.max(1)))
        .with_file_cap(limits.max_bytes.bytes());
    if !repo.exists() {
        // Initialise under a temporary name: a crash must not leave a
        // half-made repository that every later pull trips over.
        let tmp = temporary_sibling(&repo)?;
        Git::new(&tmp, git_timeout_local()).init_bare()?;
        fs::rename(&tmp, &repo)
            .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    }
    git.fetch(url, TIP_REF).with_context(|| {
        format!(
            "cannot fetch {} from {}",
            url.branch().unwrap_or("the default branch"),
            url.redacted()
        )
    })?;
    let local = Git::new(&repo, git_timeout_local());
    let commit = local.resolve_commit(TIP_REF)?;

    let hold = layout.rollback_hold(domain);
    let held = hostyard_fs::read_if_exists(&hold)?;
    if held.as_deref() == Some(commit.as_bytes()) {
        return Ok(Outcome::Held { commit });
    }
    let link = layout.current_link(domain);
    let previous = current_commit(&link);
    let tree = layout.tree_dir(domain, &commit);
    if previous.as_deref() == Some(commit.as_str()) && tree.is_dir() {
        release(&hold, held.is_some())?;
        return Ok(Outcome::UpToDate { commit });
    }
    if !tree.is_dir() {
        let tmp = temporary_sibling(&tree)?;
        fs::DirBuilder::new()
            .mode(0o755)
            .create(&tmp)
            .with_context(|| format!("cannot create {}", tmp.display()))?;
        let unpacked = local
            .archive(&commit, |out| unpack::unpack_tar(out, &tmp, Some(limits)))
            .with_context(|| format!("cannot export commit {commit}"));
        if let Err(e) = unpacked {
            let _ = fs::remove_dir_all(&tmp);
            return Err(e);
        }
        sync_filesystem(&tmp)?;
        fs::rename(&tmp, &tree)
            .with_context(|| format!("cannot rename {} into place", tmp.display()))?;
    }
    // The newest publication is the last to be pruned, whatever its age.
    touch(&tree)?;
    switch_link(&link, &Layout::current_link_target(&commit))?;
    release(&hold, held.is_some())?;
    if let Err(e) = prune(&trees, &commit, config.keep_trees) {
        hostyard_log::line(
            hostyard_log::Priority::Warning,
            format_args!("hostyard-gitpull: {domain}: cannot remove old trees: {e:#}"),
        );
    }
    Ok(Outcome::Published { commit, previous })
}

/// Removes a rollback's hold once a new commit is published.
fn release(hold: &Path, held: bool) -> Result<()> {
    if held {
        fs::remove_file(hold).with_context(|| format!("cannot remove {}", hold.display()))?;
    }
    Ok(())
}

/// Serves the tree published before the current one again, at once (the
/// same atomic switch as a publication), and holds the remote's tip back:
/// pulls publish nothing until a new commit is pushed. The tree rolled back
/// from is made the oldest, so a second rollback goes further back and
/// pruning removes it first.
pub fn rollback(layout: &Layout, domain: &Domain) -> Result<RolledBack> {
    let _lock = lock_dir(&layout.domain_dir(domain))?;
    let link = layout.current_link(domain);
    let Some(from) = current_commit(&link) else {
        bail!(
            "{} names no published tree: {domain} is not a static-git site that has been published",
            link.display()
        );
    };
    let trees = layout.trees_dir(domain);
    let mut others = Vec::new();
    for entry in fs::read_dir(&trees).with_context(|| format!("cannot read {}", trees.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == from || !entry.file_type()?.is_dir() {
            continue;
        }
        others.push((entry.metadata()?.modified()?, name));
    }
    let Some((_, to)) = others.into_iter().max() else {
        bail!(
            "{domain} keeps no tree older than {from} (git.keep_trees in the node config says how              many are kept): nothing to roll back to"
        );
    };
    // What a pull would publish again is the remote's tip, which may be
    // newer than what serves (a failed pull): that is what is held.
    let repo = layout.git_repo_dir(domain);
    let tip = Git::new(&repo, git_timeout_local())
        .resolve_commit(TIP_REF)
        .unwrap_or_else(|_| from.clone());
    hostyard_fs::AtomicWrite::new(0o644).write(&layout.rollback_hold(domain), tip.as_bytes())?;
    switch_link(&link, &Layout::current_link_target(&to))?;
    let old = layout.tree_dir(domain, &from);
    File::open(&old)
        .and_then(|f| f.set_modified(SystemTime::UNIX_EPOCH))
        .with_context(|| format!("cannot update the time of {}", old.display()))?;
    Ok(RolledBack { from, to })
}

/// Local git work (rev-parse, archive) is bounded too, generously.
fn git_timeout_local() -> Duration {
    Duration::from_secs(600)
}

/// Takes the site's pull lock, without waiting: a timer-driven pull that
/// finds another one running has nothing to add.
fn lock_dir(dir: &Path) -> Result<Flock<File>> {
    let file = File::open(dir).with_context(|| format!("cannot open {}", dir.display()))?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).map_err(|(_, errno)| {
        anyhow::anyhow!(
            "cannot lock {}: {errno} (is another hostyard-gitpull running for this site?)",
            dir.display()
        )
    })
}

/// The commit `current` points to, if it is a link made by [`publish`].
fn current_commit(link: &Path) -> Option<String> {
    let target = fs::read_link(link).ok()?;
    let name = target.file_name()?.to_str()?.to_string();
    (Layout::current_link_target(&name) == target).then_some(name)
}

fn touch(path: &Path) -> Result<()> {
    File::open(path)
        .and_then(|f| f.set_modified(SystemTime::now()))
        .with_context(|| format!("cannot update the time of {}", path.display()))
}

/// Keeps `keep` trees: the current one and the most recently published others.
fn prune(trees: &Path, current: &str, keep: usize) -> Result<()> {
    let mut others = Vec::new();
    for entry in fs::read_dir(trees)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') || name == current {
            continue;
        }
        let modified = entry.metadata()?.modified()?;
        others.push((modified, entry.path()));
    }
    others.sort_by_key(|b| std::cmp::Reverse(b.0));
    for (_, path) in others.into_iter().skip(keep.saturating_sub(1)) {
        fs::remove_dir_all(&path).with_context(|| format!("cannot remove {}", path.display()))?;
    }
    Ok(())
}

/// Refuses to run on a site that is not a static-git site with data.
pub fn check_site(layout: &Layout, domain: &Domain) -> Result<()> {
    let dir = layout.domain_dir(domain);
    if !dir.is_dir() {
        bail!(
            "{} does not exist: the site has not been imported (run hostyard-import static-git {domain})",
            dir.display()
        );
    }
    Ok(())
}
