//! `modelctl storage [--json]`: bytes per type and per model, shared blobs counted once, and
//! what `gc` would remove now and what its grace period keeps (found as `gc` finds it), and
//! what `apply` would delete. Reads the store only.

use std::process::ExitCode;

use miette::Result;

use crate::cli::StorageArgs;
use crate::project::Project;
use crate::settings::Settings;
use crate::store::usage::Usage;
use crate::units::human_bytes;

pub fn run(settings: Settings, args: &StorageArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let report = crate::ops::gc::usage(&project)?;
    let printer = project.settings.printer;
    if args.json {
        printer.json(&report)?;
    } else {
        let mut text = render(&report, &project.store.root().display().to_string());
        text.push_str(&sharing(&project.store));
        printer.out(text)?;
    }
    Ok(ExitCode::SUCCESS)
}

/// How the store's files are shared with other projects: the machine cache and its link mode.
fn sharing(store: &crate::store::Store) -> String {
    let Some(cache) = store.machine_cache() else {
        return "No machine cache: this store keeps its own bytes.\n".to_owned();
    };
    let dir = cache.root().display();
    match cache.mode_for(store.root()) {
        mode if mode.shares_bytes() => format!(
            "Shared with other projects through the machine cache `{dir}`, by {mode} (`modelctl cache status`).\n"
        ),
        _ => format!(
            "The machine cache `{dir}` is on another filesystem: this store keeps its own bytes.\n"
        ),
    }
}

fn render(u: &Usage, root: &str) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} in `{root}`", human_bytes(u.blob_bytes));
    if u.models.is_empty() {
        let _ = writeln!(out, "  no models in the store");
    }
    for t in &u.types {
        let _ = writeln!(
            out,
            "  {:<12} {:>10}  {} model{}",
            t.kind.as_str(),
            human_bytes(t.bytes),
            t.models,
            if t.models == 1 { "" } else { "s" }
        );
        for m in u.models.iter().filter(|m| m.kind == t.kind) {
            let shared = m.size - m.unique.min(m.size);
            let note = match (shared, m.declared) {
                (0, true) => String::new(),
                (s, true) => format!("  ({} shared)", human_bytes(s)),
                (_, false) => "  (no longer declared)".to_owned(),
            };
            let _ = writeln!(
                out,
                "    {:<22} {:>10}{note}",
                m.id.as_str(),
                human_bytes(m.size)
            );
        }
    }
    if u.shared_bytes > 0 {
        let _ = writeln!(
            out,
            "Shared between models (counted once): {}",
            human_bytes(u.shared_bytes)
        );
    }
    let r = &u.reclaimable;
    let grace = humantime::format_duration(std::time::Duration::from_secs(r.grace_seconds));
    if r.total == 0 {
        let _ = writeln!(out, "Nothing to reclaim now.");
    } else {
        let _ = writeln!(out, "Reclaimable now: {}", human_bytes(r.total));
        for (bytes, what) in [
            (
                r.unlinked_blobs,
                "blobs no model uses (`modelctl gc` removes them)",
            ),
            (
                r.partials,
                "stale partial downloads (`modelctl gc` removes them)",
            ),
            (
                r.undeclared_models,
                "models no longer declared (`modelctl apply` deletes them)",
            ),
        ] {
            if bytes > 0 {
                let _ = writeln!(out, "  {:>10}  {what}", human_bytes(bytes));
            }
        }
    }
    if r.kept_by_grace > 0 {
        let _ = writeln!(
            out,
            "Kept for gc's grace period: {}, unused but modified within {grace} (a download may be \
             in flight); `modelctl gc --grace 0` removes it now",
            human_bytes(r.kept_by_grace)
        );
    }
    out
}
