//! `modelctl cache dir|status|prune`: the machine cache, as uv names its cache commands.
//! What the cache holds and what a prune may remove is [`crate::ops::cache`]; this file
//! prints it.

use std::process::ExitCode;

use miette::{Result, miette};
use serde::Serialize;

use crate::cli::CacheCommand;
use crate::ops::cache::{Pruned, Status, prune, status};
use crate::settings::Settings;
use crate::store::MachineCache;
use crate::store::gc::Garbage;
use crate::units::human_bytes;

/// The JSON documents' version; fields are only ever added.
const CACHE_FORMAT: u32 = 1;

pub fn run(settings: &Settings, command: &CacheCommand) -> Result<ExitCode> {
    let printer = settings.printer;
    let Some(dir) = &settings.cache else {
        return Err(miette!(
            help = "unset MODELCTL_NO_CACHE (or drop `--no-cache`), or name one with `--cache DIR`",
            "there is no machine cache: it is switched off, or neither HOME nor XDG_CACHE_HOME says where it goes"
        ));
    };
    let cache = MachineCache::new(dir);
    match command {
        CacheCommand::Dir => printer.outln(dir.display())?,
        CacheCommand::Status(args) => {
            let report = status(&cache, crate::ops::gc::DEFAULT_GRACE);
            if args.json {
                printer.json(&StatusDocument {
                    format: CACHE_FORMAT,
                    status: &report,
                })?;
            } else {
                printer.out(render_status(&report))?;
            }
        }
        CacheCommand::Prune(args) => {
            let pruned = prune(&cache, args.grace, args.dry_run, settings.lock_timeout)?;
            let removed = pruned
                .removal
                .as_ref()
                .map_or(&pruned.found.blobs, |r| &r.blobs);
            let partials = pruned
                .removal
                .as_ref()
                .map_or(&pruned.found.partials, |r| &r.partials);
            if args.json {
                printer.json(&PruneDocument {
                    format: CACHE_FORMAT,
                    dry_run: args.dry_run,
                    grace_seconds: args.grace.as_secs(),
                    blobs: removed,
                    partials,
                    freed_bytes: bytes(removed) + bytes(partials),
                    dead_roots: pruned
                        .dead
                        .iter()
                        .map(|r| r.manifest.display().to_string())
                        .collect(),
                })?;
            } else {
                printer.out(render_prune(&pruned, args, removed, partials))?;
            }
            if let Some(removal) = &pruned.removal
                && !removal.errors.is_empty()
            {
                let details: Vec<String> = removal.errors.iter().map(ToString::to_string).collect();
                return Err(miette!(
                    help = details.join("; "),
                    "cache prune could not remove {} of the entries it found",
                    removal.errors.len()
                ));
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(Serialize)]
struct StatusDocument<'a> {
    format: u32,
    #[serde(flatten)]
    status: &'a Status,
}

#[derive(Serialize)]
struct PruneDocument<'a> {
    format: u32,
    dry_run: bool,
    grace_seconds: u64,
    blobs: &'a [Garbage],
    partials: &'a [Garbage],
    freed_bytes: u64,
    /// models.yaml files of the roots found dead (their records are removed, unless dry).
    dead_roots: Vec<String>,
}

fn bytes(garbage: &[Garbage]) -> u64 {
    garbage.iter().map(|g| g.size).sum()
}

fn render_status(s: &Status) -> String {
    let mut out = format!(
        "Machine cache `{}`: {} blob{}, {}\n",
        s.dir,
        s.blobs,
        if s.blobs == 1 { "" } else { "s" },
        human_bytes(s.bytes)
    );
    if s.roots.is_empty() {
        out.push_str("No project uses it yet.\n");
    }
    for root in &s.roots {
        let state = match (&root.error, root.live) {
            (Some(why), _) => format!("its models.lock cannot be read: {why}"),
            (None, true) => format!(
                "{} ({} not shared)",
                human_bytes(root.bytes),
                human_bytes(root.unshared_bytes)
            ),
            (None, false) => "dead: its models.yaml is gone".to_owned(),
        };
        out.push_str(&format!("  {}  {state}\n", root.manifest));
    }
    out.push_str(&format!(
        "Shared by two or more projects: {}\nReclaimable by `modelctl cache prune`: {}\n",
        human_bytes(s.shared_bytes),
        human_bytes(s.reclaimable_bytes)
    ));
    out
}

fn render_prune(
    p: &Pruned,
    args: &crate::cli::CachePruneArgs,
    blobs: &[Garbage],
    partials: &[Garbage],
) -> String {
    let dry_run = args.dry_run;
    let verb = if dry_run { "would remove" } else { "removed" };
    let mut out = String::new();
    for root in &p.dead {
        out.push_str(&format!(
            "dead root `{}`: its models.yaml is gone{}\n",
            root.manifest.display(),
            if dry_run { "" } else { "; forgotten" }
        ));
    }
    for g in blobs {
        out.push_str(&format!(
            "{verb} blob `{}`  {}\n",
            g.path,
            human_bytes(g.size)
        ));
    }
    if let Some(removal) = &p.removal {
        for path in &removal.changed {
            out.push_str(&format!(
                "left alone `{path}`: it changed while prune ran\n"
            ));
        }
    }
    if blobs.is_empty() && partials.is_empty() {
        out.push_str("nothing to remove\n");
    } else {
        out.push_str(&format!(
            "{verb} {} blob{} and {} partial file{} ({})\n",
            blobs.len(),
            if blobs.len() == 1 { "" } else { "s" },
            partials.len(),
            if partials.len() == 1 { "" } else { "s" },
            human_bytes(bytes(blobs) + bytes(partials))
        ));
    }
    let k = &p.found.kept;
    out.push_str(&format!(
        "kept {} blob{} linked from a store, {} pinned by a live project, {} younger than {}\n",
        k.linked_blobs,
        if k.linked_blobs == 1 { "" } else { "s" },
        k.locked_blobs,
        k.young_blobs,
        humantime::format_duration(args.grace),
    ));
    out
}
