//! `modelctl outdated [ID…]`: which locked models have something newer upstream, and what an
//! update would fetch, without downloading or writing anything.
//!
//! A Hub model is outdated when its revision (a branch or tag) now points at another commit;
//! the bytes to fetch are the files of the new commit whose content the lock does not already
//! have. A URL model is outdated when the server reports another size or `ETag`. Ollama tags
//! are not checked by this build. `modelctl update ID` then re-pins.

use std::process::ExitCode;

use miette::{IntoDiagnostic, Result};
use serde::Serialize;

use crate::cli::OutdatedArgs;
use crate::lock::{LockedFile, LockedModel, LockedSource};
use crate::manifest::Source;
use crate::names::ModelId;
use crate::printer::{OutputError, Printer};
use crate::project::Project;
use crate::settings::Settings;
use crate::units::human_bytes;

/// One model's answer.
#[derive(Debug, Serialize)]
struct Row {
    model: ModelId,
    source: String,
    /// `up_to_date`, `outdated`, `unlocked`, `unknown`.
    state: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    locked: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    latest: Option<String>,
    /// Bytes `update` + `apply` would download.
    #[serde(skip_serializing_if = "Option::is_none")]
    fetch_bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    changed_files: Option<usize>,
    #[serde(skip_serializing_if = "Option::is_none")]
    note: Option<String>,
}

pub fn run(settings: Settings, args: &OutdatedArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    if project.settings.network.offline {
        return Err(miette::miette!(
            help = "run it without `--offline`/`--frozen` (and with HF_HUB_OFFLINE unset)",
            "`outdated` asks the sources what is newest, which needs the network"
        ));
    }
    let ids = crate::ops::select::select_ids(&project, &args.ids)?;
    let ctx = project.resolve_context()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .into_diagnostic()?;
    let rows: Vec<Row> = runtime.block_on(async {
        let mut rows = Vec::new();
        for id in ids {
            if let Some(entry) = project.manifest.models.get(&id) {
                let locked = project.lock.models.get(&id);
                rows.push(check(&ctx, &id, entry, locked).await);
            }
        }
        rows
    });
    let printer = project.settings.printer;
    if args.json {
        printer.json(&rows)?;
    } else {
        print_table(printer, &rows)?;
    }
    Ok(ExitCode::SUCCESS)
}

async fn check(
    ctx: &crate::sources::ResolveContext,
    id: &ModelId,
    entry: &crate::manifest::ModelEntry,
    locked: Option<&LockedModel>,
) -> Row {
    let mut row = Row {
        model: id.clone(),
        source: entry.source.label(),
        state: "unknown",
        locked: None,
        latest: None,
        fetch_bytes: None,
        changed_files: None,
        note: None,
    };
    let Some(locked) = locked else {
        row.state = "unlocked";
        row.note = Some("not in models.lock; `modelctl lock` pins it".to_owned());
        return row;
    };
    match (&entry.source, &locked.source) {
        (Source::Hf(source), LockedSource::Hf { commit, .. }) => {
            row.locked = Some(short(commit));
            match crate::sources::hf::resolve(ctx, source, &entry.files).await {
                Ok((LockedSource::Hf { commit: now, .. }, files)) => {
                    row.latest = Some(short(&now));
                    let (bytes, changed) = to_fetch(&locked.files, &files);
                    row.state = if &now == commit {
                        "up_to_date"
                    } else {
                        "outdated"
                    };
                    if &now != commit {
                        row.fetch_bytes = Some(bytes);
                        row.changed_files = Some(changed);
                    }
                }
                Ok(_) => {}
                Err(why) => row.note = Some(why.to_string()),
            }
        }
        (Source::Url(source), LockedSource::Url { etag, .. }) => {
            row.locked = etag.clone();
            match crate::sources::url::drift(ctx, source, locked).await {
                Ok(None) => row.state = "up_to_date",
                Ok(Some(change)) => {
                    row.state = "outdated";
                    row.note = Some(change.to_string());
                }
                Err(why) => row.note = Some(why.to_string()),
            }
        }
        (Source::Oci(source), LockedSource::Oci { digest, .. }) => {
            row.locked = Some(digest.short());
            // The manifest first: only a tag that moved is listed (its tar layers downloaded).
            match crate::sources::oci::current_digest(ctx, source).await {
                Ok(now) if now == *digest => {
                    row.latest = Some(now.short());
                    row.state = "up_to_date";
                }
                Ok(now) => {
                    row.latest = Some(now.short());
                    row.state = "outdated";
                    if let Ok((_, files)) = crate::sources::oci::resolve(ctx, source).await {
                        let (bytes, changed) = to_fetch(&locked.files, &files);
                        row.fetch_bytes = Some(bytes);
                        row.changed_files = Some(changed);
                    }
                }
                Err(why) => row.note = Some(why.to_string()),
            }
        }
        (Source::Ollama(_), _) => {
            row.note = Some("this build does not check Ollama tags yet".to_owned());
        }
        _ => {
            row.note =
                Some("models.lock pins another kind of source; run `modelctl lock`".to_owned())
        }
    }
    row
}

/// Bytes and files of `new` whose content `old` does not have (by sha256, or by git blob id
/// for files the Hub publishes no sha256 for).
fn to_fetch(old: &[LockedFile], new: &[LockedFile]) -> (u64, usize) {
    let have = |f: &LockedFile| {
        old.iter().any(|o| {
            (f.sha256.is_some() && o.sha256 == f.sha256)
                || (f.git_oid.is_some() && o.git_oid == f.git_oid)
        })
    };
    new.iter()
        .filter(|f| !have(f))
        .fold((0, 0), |(bytes, n), f| (bytes + f.size, n + 1))
}

fn short(commit: &str) -> String {
    commit.get(..12).unwrap_or(commit).to_owned()
}

fn print_table(printer: Printer, rows: &[Row]) -> Result<(), OutputError> {
    use std::fmt::Write;
    let outdated = rows.iter().filter(|r| r.state == "outdated").count();
    let mut table = String::new();
    for row in rows {
        let detail = match row.state {
            "up_to_date" => format!("up to date ({})", row.locked.as_deref().unwrap_or("-")),
            "outdated" => {
                let pin = match (&row.locked, &row.latest) {
                    (Some(a), Some(b)) => format!("{a} → {b}"),
                    _ => "changed upstream".to_owned(),
                };
                match (row.fetch_bytes, row.changed_files) {
                    (Some(bytes), Some(n)) => format!(
                        "{pin}: {n} file{} to fetch ({})",
                        if n == 1 { "" } else { "s" },
                        human_bytes(bytes)
                    ),
                    _ => pin,
                }
            }
            "unlocked" => "not locked".to_owned(),
            _ => "unknown".to_owned(),
        };
        let _ = writeln!(
            table,
            "{:<24} {:<40} {detail}",
            row.model.as_str(),
            row.source
        );
        if let Some(note) = &row.note {
            let _ = writeln!(table, "{:<24} {note}", "");
        }
    }
    printer.out(table)?;
    if outdated == 0 {
        printer.say("Every checked model is up to date.");
    } else {
        printer.say(format_args!(
            "{outdated} model{} can be updated; `modelctl update ID` re-pins, then `modelctl apply`.",
            if outdated == 1 { "" } else { "s" }
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::{GitOid, Sha256};
    use crate::names::RelPath;

    fn file(path: &str, size: u64, sha: Option<&[u8]>, oid: Option<&str>) -> LockedFile {
        LockedFile {
            path: RelPath::parse(path).expect("path"),
            size,
            sha256: sha.map(Sha256::of),
            md5: None,
            git_oid: oid.map(|o| GitOid::parse(o).expect("oid")),
        }
    }

    #[test]
    fn only_content_the_lock_lacks_is_counted() {
        let oid = "2f9618c3a19b9a61add74f70bfb121335aeef666";
        let old = vec![
            file("a.bin", 10, Some(b"a"), None),
            file("c.json", 1, None, Some(oid)),
        ];
        let new = vec![
            file("a.bin", 10, Some(b"a"), None),
            file("renamed.bin", 10, Some(b"a"), None),
            file("b.bin", 20, Some(b"b"), None),
            file("c.json", 1, None, Some(oid)),
        ];
        assert_eq!(to_fetch(&old, &new), (20, 1));
    }
}
