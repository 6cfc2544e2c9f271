//! The machine cache as a whole: its roots (the projects that use it), what each needs,
//! what they share, and what `cache prune` may remove: blobs that no live root's models.lock
//! pins, that no store links any more (a single hardlink: the cache's own), and that are older
//! than the grace period. A root whose models.yaml is gone is dead and pins nothing. A live
//! root whose lock cannot be read could pin anything, so nothing is pruned until it reads.
//! Removal is the store's `gc` ([`crate::store::gc`]) run on the cache's directory, with its
//! checks: no symlink followed, each entry checked again just before it goes.

use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime};

use serde::Serialize;

use crate::digest::Sha256;
use crate::store::gc::{Collection, GcError, Options, Removal, find_garbage, remove_garbage};
use crate::store::{MachineCache, Root, Roots, StatCache};

/// One project that uses the cache, as `cache status` reports it.
#[derive(Debug, Clone, Serialize)]
pub struct RootReport {
    pub manifest: String,
    pub store: String,
    /// Its models.yaml exists.
    pub live: bool,
    /// Bytes of the cache's blobs its lock pins (shared ones counted for each project).
    pub bytes: u64,
    /// Of those, bytes no other live project pins.
    pub unshared_bytes: u64,
    /// Why its models.lock cannot be read, when it cannot.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `cache status`.
#[derive(Debug, Clone, Serialize)]
pub struct Status {
    pub dir: String,
    pub blobs: usize,
    /// Bytes of every blob in the cache, each counted once.
    pub bytes: u64,
    /// Bytes of blobs that two or more live projects pin.
    pub shared_bytes: u64,
    /// What `cache prune` would remove now, with its default grace period.
    pub reclaimable_bytes: u64,
    pub roots: Vec<RootReport>,
}

/// What the live roots pin, and the roots themselves.
struct Pins {
    roots: Vec<(Root, Pinned)>,
}

/// What one root pins: the digests its models.lock names, or why that lock cannot be read.
type Pinned = std::result::Result<HashSet<Sha256>, crate::lock::LockError>;

impl Pins {
    fn read(cache: &MachineCache) -> Self {
        let roots = Roots::new(cache.roots_dir())
            .list()
            .into_iter()
            .map(|root| {
                let pinned = if root.is_live() {
                    crate::lock::load(&root.lock).map(|lock| super::gc::lock_digests(&lock))
                } else {
                    Ok(HashSet::new())
                };
                (root, pinned)
            })
            .collect();
        Self { roots }
    }

    /// Every digest a live root pins, or the first root whose lock cannot be read.
    fn kept(&self) -> Result<HashSet<Sha256>, (&Root, &crate::lock::LockError)> {
        let mut kept = HashSet::new();
        for (root, pinned) in &self.roots {
            match pinned {
                Ok(digests) => kept.extend(digests.iter().copied()),
                Err(why) => return Err((root, why)),
            }
        }
        Ok(kept)
    }

    fn dead(&self) -> impl Iterator<Item = &Root> {
        self.roots.iter().map(|(r, _)| r).filter(|r| !r.is_live())
    }
}

/// Why `cache prune` stopped before removing anything.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
pub enum PruneError {
    #[error("cannot prune the machine cache: the lock of `{}` cannot be read ({why})", root.manifest.display())]
    #[diagnostic(
        code(modelctl::cache::unreadable_root),
        help(
            "a project that cannot be read could need any blob; fix its models.lock (`modelctl lock` there), or delete the project"
        )
    )]
    UnreadableRoot { root: Root, why: String },
    #[error(transparent)]
    #[diagnostic(transparent)]
    Gc(#[from] GcError),
    #[error(transparent)]
    #[diagnostic(transparent)]
    Lock(#[from] crate::store::StoreLockError),
}

/// What a prune removed (or, dry, would remove), and the dead roots it forgot.
#[derive(Debug)]
pub struct Pruned {
    pub found: Collection,
    pub removal: Option<Removal>,
    pub dead: Vec<Root>,
}

/// The cache's status now.
pub fn status(cache: &MachineCache, grace: Duration) -> Status {
    let pins = Pins::read(cache);
    let blobs = cache.blobs();
    let size: BTreeMap<Sha256, u64> = blobs.iter().map(|(d, s, _)| (*d, *s)).collect();
    let mut holders: BTreeMap<Sha256, usize> = BTreeMap::new();
    for (root, pinned) in &pins.roots {
        if let (true, Ok(digests)) = (root.is_live(), pinned) {
            for d in digests.iter().filter(|d| size.contains_key(d)) {
                *holders.entry(*d).or_default() += 1;
            }
        }
    }
    let roots = pins
        .roots
        .iter()
        .map(|(root, pinned)| {
            let mine = pinned.as_ref().ok();
            let bytes_of = |only: bool| -> u64 {
                mine.into_iter()
                    .flatten()
                    .filter(|d| !only || holders.get(d) == Some(&1))
                    .filter_map(|d| size.get(d))
                    .sum()
            };
            RootReport {
                manifest: root.manifest.display().to_string(),
                store: root.store.display().to_string(),
                live: root.is_live(),
                bytes: bytes_of(false),
                unshared_bytes: bytes_of(true),
                error: pinned.as_ref().err().map(ToString::to_string),
            }
        })
        .collect();
    let reclaimable_bytes = garbage(cache, &pins, grace)
        .map(|c| c.blob_bytes() + c.partial_bytes())
        .unwrap_or(0);
    Status {
        dir: cache.root().display().to_string(),
        blobs: blobs.len(),
        bytes: size.values().sum(),
        shared_bytes: holders
            .iter()
            .filter(|(_, n)| **n > 1)
            .filter_map(|(d, _)| size.get(d))
            .sum(),
        reclaimable_bytes,
        roots,
    }
}

fn options<'a>(kept: &'a HashSet<Sha256>, grace: Duration) -> Options<'a> {
    Options {
        grace,
        now: SystemTime::now(),
        locked: kept,
        linked_elsewhere: true,
    }
}

fn garbage(cache: &MachineCache, pins: &Pins, grace: Duration) -> Result<Collection, PruneError> {
    let kept = pins
        .kept()
        .map_err(|(root, why)| PruneError::UnreadableRoot {
            root: root.clone(),
            why: why.to_string(),
        })?;
    let mut stat = StatCache::default();
    Ok(find_garbage(
        &cache.as_store(),
        &mut stat,
        &options(&kept, grace),
    )?)
}

/// Removes what no live root needs (with `dry_run`, only finds it), holding the cache's lock,
/// and forgets the dead roots.
pub fn prune(
    cache: &MachineCache,
    grace: Duration,
    dry_run: bool,
    lock_timeout: Duration,
) -> Result<Pruned, PruneError> {
    let _lock = match dry_run || !cache.root().exists() {
        true => None,
        false => Some(crate::store::StoreLock::acquire(
            &cache.as_store(),
            lock_timeout,
            &|_| {
                crate::log_line!(
                    "waiting for the lock on the machine cache `{}`",
                    cache.root().display()
                )
            },
        )?),
    };
    let pins = Pins::read(cache);
    let found = garbage(cache, &pins, grace)?;
    let dead: Vec<Root> = pins.dead().cloned().collect();
    if dry_run {
        return Ok(Pruned {
            found,
            removal: None,
            dead,
        });
    }
    let kept = pins.kept().unwrap_or_default();
    let removal = remove_garbage(&cache.as_store(), &found, &options(&kept, grace));
    cache.forget_missing();
    let roots = Roots::new(cache.roots_dir());
    for root in &dead {
        let _ = roots.forget(root);
    }
    Ok(Pruned {
        found,
        removal: Some(removal),
        dead,
    })
}
