//! Failpoints: named places where a test can make modelctl die as if killed
//! (docs/reliability.md C1–C4).
//!
//! `MODELCTL_FAILPOINT=<name>` (read once, by [`crate::settings`]) makes the process abort
//! the first time it reaches the failpoint of that name: [`std::process::abort`] runs no
//! destructors and flushes nothing, so what is on disk afterwards is what a `kill -9` at that
//! instant leaves. It is a testing hook, like git's `GIT_TEST_*` variables: unset (the normal
//! case) every failpoint is one comparison with `None`. Every name is in [`ALL`], so the crash
//! tests (`tests/cli/crash.rs`) can kill an apply at each of them and check that each is reached.

use std::path::Path;
use std::sync::OnceLock;

/// Every failpoint, in the order an apply reaches them.
pub const ALL: &[&str] = &[
    // The download pipeline (`apply/fetch.rs`, `store/place.rs`, `apply/mod.rs`).
    "download.after-first-chunk",
    "download.before-fsync",
    "download.before-verify",
    "download.before-rename",
    "download.before-dir-fsync",
    "download.after-publish",
    // Replacing a model directory whole (`store/place.rs`).
    "restage.before-swap",
    "restage.after-swap",
    // The activation swap (`store/place.rs`, `apply/pointers.rs`).
    "swap.before-rename",
    "swap.before-active-json",
    // Durable writes of state files (`durable.rs`): `<file name>.<step>`.
    "active.json.before-fsync",
    "active.json.before-rename",
    "models.lock.before-fsync",
    "models.lock.before-rename",
    // Deletion of a model (`store/place.rs`), after its first entry is gone.
    "delete.midway",
];

static ARMED: OnceLock<Option<String>> = OnceLock::new();

/// Arms the failpoint `name` for this process (first call wins); `None` arms none.
pub fn arm(name: Option<String>) {
    let _ = ARMED.set(name.filter(|n| ALL.contains(&n.as_str())));
}

fn armed() -> Option<&'static str> {
    ARMED.get().and_then(|n| n.as_deref())
}

/// Aborts the process if the failpoint `name` is armed.
pub fn hit(name: &str) {
    if armed() == Some(name) {
        die(name);
    }
}

/// The failpoint `<file name>.<step>` of a durable write of `path` (`models.lock.before-fsync`).
pub fn hit_file(path: &Path, step: &str) {
    let Some(armed) = armed() else { return };
    let file = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if armed.strip_suffix(step).and_then(|a| a.strip_suffix('.')) == Some(file) {
        die(armed);
    }
}

fn die(name: &str) -> ! {
    crate::log_line!("failpoint {name}: aborting");
    std::process::abort()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique() {
        let mut names = ALL.to_vec();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "duplicate failpoint names");
    }
}
