//! `modelctl gc`: remove blobs nothing references and stale partial downloads.
//!
//! The store lock is taken before anything is examined (a dry run, which removes nothing,
//! does without it, so it also works on a read-only store), so gc never races an `apply`; the
//! grace period protects in-flight work even where the lock does nothing (docs/reliability.md
//! K4, I6).
//! Every digest models.lock lists is kept, whether or not a model links it. What is garbage
//! and how it is removed is [`crate::store::gc`]; this file gathers the inputs and prints.

use std::process::ExitCode;
use std::time::{Duration, SystemTime};

use miette::Result;
use serde::Serialize;

use crate::cli::GcArgs;
use crate::project::Project;
use crate::settings::Settings;
use crate::store::StatCache;
use crate::store::gc::{Garbage, Kept, Options, Skipped, find_garbage, remove_garbage};
use crate::units::human_bytes;

/// The JSON document's version; fields are only ever added.
const GC_FORMAT: u32 = 1;

/// Some garbage could not be removed.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("gc could not remove {count} of the entries it found")]
#[diagnostic(code(gc::incomplete), help("{details}"))]
pub struct Incomplete {
    pub count: usize,
    pub details: String,
}

/// `gc --json`.
#[derive(Serialize)]
struct Document<'a> {
    format: u32,
    dry_run: bool,
    grace_seconds: u64,
    /// Removed, or with `--dry-run` to be removed.
    blobs: &'a [Garbage],
    partials: &'a [Garbage],
    /// What the removal gives back to the disk: the bytes of what went, less those the
    /// machine cache still holds.
    freed_bytes: u64,
    /// Bytes of removed blobs that the machine cache still holds (`cache prune` frees them
    /// once no project needs them).
    machine_cache_bytes: u64,
    kept: Kept,
    skipped: &'a [Skipped],
    changed: &'a [String],
    errors: Vec<String>,
}

pub fn run(settings: Settings, args: &GcArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let store = &project.store;
    let printer = project.settings.printer;
    let root = store.root().display().to_string();
    let exists = crate::store::gc::check_store(store)?;
    let _lock = match exists && !args.dry_run {
        true => Some(project.lock_store()?),
        false => None,
    };
    let locked = crate::ops::gc::kept_digests(&project);
    let options = Options {
        grace: args.grace,
        now: SystemTime::now(),
        locked: &locked,
        linked_elsewhere: false,
    };
    let cache_path = store.stat_cache_path();
    let mut cache = StatCache::load(&cache_path);
    let found = find_garbage(store, &mut cache, &options)?;

    let (blobs, partials, changed, errors) = if args.dry_run {
        (found.blobs.clone(), found.partials.clone(), vec![], vec![])
    } else {
        let removal = remove_garbage(store, &found, &options);
        let gone = removal.keys();
        cache.retain(|key| !gone.contains(key));
        if exists && let Err(e) = cache.save(&cache_path) {
            printer.warn(format_args!(
                "note: the stat cache `{}` was not updated ({e})",
                cache_path.display()
            ));
        }
        (
            removal.blobs,
            removal.partials,
            removal.changed,
            removal.errors,
        )
    };

    let cache = store.machine_cache();
    let in_cache = crate::ops::gc::held_by_machine_cache(store, &blobs);
    let shown = if args.json {
        let doc = Document {
            format: GC_FORMAT,
            dry_run: args.dry_run,
            grace_seconds: args.grace.as_secs(),
            blobs: &blobs,
            partials: &partials,
            freed_bytes: size(&blobs) + size(&partials) - in_cache,
            machine_cache_bytes: in_cache,
            kept: found.kept,
            skipped: &found.skipped,
            changed: &changed,
            errors: errors.iter().map(ToString::to_string).collect(),
        };
        printer.json(&doc)
    } else {
        let text = render_text(&Report {
            dry_run: args.dry_run,
            grace: args.grace,
            blobs: &blobs,
            partials: &partials,
            kept: &found.kept,
            skipped: &found.skipped,
            changed: &changed,
            in_cache: cache
                .as_ref()
                .filter(|_| in_cache > 0)
                .map(|c| (c.root(), in_cache)),
        });
        printer.out(text)
    };
    // What was removed is gone: a reader that went away changes nothing about how gc ends.
    shown.or_else(|e| {
        if args.dry_run {
            Err(e)
        } else {
            e.ignore_closed()
        }
    })?;
    if !exists {
        printer.say(format_args!(
            "There is no store at `{root}`; nothing to collect."
        ));
    }
    if !errors.is_empty() {
        return Err(Incomplete {
            count: errors.len(),
            details: errors
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join("; "),
        }
        .into());
    }
    Ok(ExitCode::SUCCESS)
}

fn size(garbage: &[Garbage]) -> u64 {
    garbage.iter().map(|g| g.size).sum()
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// What the text output describes.
struct Report<'a> {
    dry_run: bool,
    grace: Duration,
    blobs: &'a [Garbage],
    partials: &'a [Garbage],
    kept: &'a Kept,
    skipped: &'a [Skipped],
    changed: &'a [String],
    /// The machine cache, and the bytes of the removed blobs it still holds.
    in_cache: Option<(&'a std::path::Path, u64)>,
}

fn render_text(r: &Report<'_>) -> String {
    let verb = if r.dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for g in r.blobs {
        out.push_str(&format!(
            "{verb} blob `{}`  {}\n",
            g.path,
            human_bytes(g.size)
        ));
    }
    for g in r.partials {
        out.push_str(&format!(
            "{verb} partial download `{}`  {}\n",
            g.path,
            human_bytes(g.size)
        ));
    }
    for s in r.skipped {
        out.push_str(&format!(
            "left alone `{}`: {}, not a regular file\n",
            s.path,
            s.found.describe()
        ));
    }
    for path in r.changed {
        out.push_str(&format!("left alone `{path}`: it changed while gc ran\n"));
    }
    if r.blobs.is_empty() && r.partials.is_empty() {
        out.push_str("nothing to remove\n");
    } else {
        out.push_str(&format!(
            "{verb} {} ({}) and {} ({}){}\n",
            plural(r.blobs.len(), "blob", "blobs"),
            human_bytes(size(r.blobs)),
            plural(r.partials.len(), "partial download", "partial downloads"),
            human_bytes(size(r.partials)),
            if r.dry_run {
                "; nothing was removed (--dry-run)"
            } else {
                ""
            }
        ));
    }
    if let Some((dir, bytes)) = r.in_cache {
        out.push_str(&format!(
            "{} of that stays in the machine cache `{}` until no project needs it (`modelctl cache prune`)\n",
            human_bytes(bytes),
            dir.display()
        ));
    }
    let k = r.kept;
    let mut kept = Vec::new();
    if k.linked_blobs > 0 {
        kept.push(format!(
            "{} linked from `models/`",
            plural(k.linked_blobs, "blob", "blobs")
        ));
    }
    if k.copied_blobs > 0 {
        kept.push(format!(
            "{} copied in `models/`",
            plural(k.copied_blobs, "blob", "blobs")
        ));
    }
    if k.locked_blobs > 0 {
        kept.push(format!(
            "{} listed in models.lock",
            plural(k.locked_blobs, "blob", "blobs")
        ));
    }
    let grace = humantime::format_duration(r.grace);
    if k.young_blobs > 0 {
        kept.push(format!(
            "{} younger than {grace}",
            plural(k.young_blobs, "blob", "blobs")
        ));
    }
    if k.young_partials > 0 {
        kept.push(format!(
            "{} younger than {grace}",
            plural(k.young_partials, "partial download", "partial downloads")
        ));
    }
    if !kept.is_empty() {
        out.push_str(&format!("kept {}\n", kept.join(", ")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grace_reads_back_as_a_duration_that_parses_to_it() {
        let shown = |text: &str| {
            let parsed = crate::cli::parse_duration(text).expect(text);
            let shown = humantime::format_duration(parsed).to_string();
            assert_eq!(crate::cli::parse_duration(&shown), Ok(parsed), "{shown}");
            shown
        };
        assert_eq!(shown("1h"), "1h");
        assert_eq!(shown("45s"), "45s");
        assert_eq!(shown("1h30m"), "1h 30m");
        assert_eq!(shown("2d"), "2days");
        assert_eq!(shown("0"), "0s");
    }

    #[test]
    fn an_empty_collection_says_nothing_to_remove_and_why_things_were_kept() {
        let kept = Kept {
            linked_blobs: 2,
            copied_blobs: 0,
            locked_blobs: 1,
            young_blobs: 1,
            young_partials: 3,
            young_bytes: 4096,
        };
        let text = render_text(&Report {
            dry_run: false,
            grace: Duration::from_secs(3600),
            blobs: &[],
            partials: &[],
            kept: &kept,
            skipped: &[],
            changed: &[".modelctl/tmp/x".to_owned()],
            in_cache: None,
        });
        assert_eq!(
            text,
            "left alone `.modelctl/tmp/x`: it changed while gc ran
nothing to remove
kept 2 blobs linked from `models/`, 1 blob listed in models.lock, 1 blob younger than 1h, 3 partial downloads younger than 1h
"
        );
    }
}
