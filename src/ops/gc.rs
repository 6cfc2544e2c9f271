//! What `gc` would remove, found the one way both `gc` and `storage` find it, so that
//! `storage`'s "reclaimable" is exactly what `gc` then frees.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use miette::Result;

use crate::digest::Sha256;
use crate::lock::{LockedSource, Lockfile};
use crate::project::Project;
use crate::store::StatCache;
use crate::store::gc::{Collection, Garbage, Options, find_garbage};

/// `gc`'s default grace period (`--grace 1h`).
pub const DEFAULT_GRACE: Duration = Duration::from_secs(3600);

/// Every digest models.lock names: never garbage, even with no model linking it.
pub fn lock_digests(lock: &Lockfile) -> HashSet<Sha256> {
    let mut digests = HashSet::new();
    for model in lock.models.values() {
        digests.extend(model.files.iter().filter_map(|f| f.sha256));
        if let LockedSource::Ollama { digest, layers, .. } = &model.source {
            digests.insert(*digest);
            digests.extend(layers.iter().map(|l| l.digest));
        }
    }
    digests
}

/// Every digest the project's models.lock names, and those of the other live projects that
/// share its store: a blob one of them is about to link is not this project's garbage.
pub fn kept_digests(project: &Project) -> HashSet<Sha256> {
    let mut digests = lock_digests(&project.lock);
    for neighbour in project.neighbours().0 {
        digests.extend(lock_digests(&neighbour.lock));
    }
    digests
}

/// The garbage of the project's store with grace period `grace`, now. Takes no lock and
/// changes nothing on disk; `cache` learns the hashes of copies it had to compute.
pub fn find(project: &Project, grace: Duration, cache: &mut StatCache) -> Result<Collection> {
    let locked = kept_digests(project);
    let options = Options {
        grace,
        now: SystemTime::now(),
        locked: &locked,
        linked_elsewhere: false,
    };
    Ok(find_garbage(&project.store, cache, &options)?)
}

/// The bytes of `blobs` that the store's machine cache holds too: removing them from the store
/// gives nothing back to the disk until `cache prune` removes the cache's copy.
pub fn held_by_machine_cache(store: &crate::store::Store, blobs: &[Garbage]) -> u64 {
    let Some(cache) = store.machine_cache() else {
        return 0;
    };
    blobs
        .iter()
        .filter(|g| g.sha256.and_then(|d| cache.holds(&d)).is_some())
        .map(|g| g.size)
        .sum()
}

/// `storage`'s report (and `GET /api/storage`'s): the store scanned, bytes per type and
/// model, with what `gc` would remove now and what its default grace period keeps, found as
/// `gc` finds them. One stat cache serves the scan and the search, and is saved once.
pub fn usage(project: &Project) -> Result<crate::store::usage::Usage> {
    let cache_path = project.store.stat_cache_path();
    let mut cache = StatCache::load(&cache_path);
    let state = project.scan_with(&mut cache)?;
    let garbage = find(project, DEFAULT_GRACE, &mut cache)?;
    if project.store.root().exists() {
        // A read-only store still reports; it just hashes again next time.
        let _ = cache.save(&cache_path);
    }
    let mut report = crate::store::usage::usage(&state, &project.manifest, &garbage, DEFAULT_GRACE);
    // As `gc` counts what it frees: not what the machine cache still holds.
    let held = held_by_machine_cache(&project.store, &garbage.blobs);
    report.reclaimable.unlinked_blobs -= held;
    report.reclaimable.total -= held;
    Ok(report)
}
