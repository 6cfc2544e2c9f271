//! `modelctl verify`: re-hash the store and compare it with models.lock. No network.
//!
//! This picks the models (all declared ones, or the ids given), sets aside those that cannot be
//! verified (not locked, locked from a different manifest entry, served by Ollama), hands the
//! rest to [`crate::store::verify`], and prints the report. Exit 0 when everything checked is
//! intact, 1 on any problem. The only write is the stat cache, best effort: a read-only store
//! verifies just the same (docs/reliability.md D2).

use std::process::ExitCode;

use miette::Result;
use serde::Serialize;

use crate::cli::VerifyArgs;
use crate::lock::{LockedSource, fingerprint};
use crate::manifest::Manifest;
use crate::names::{ModelId, TypeName};
use crate::plan::Action;
use crate::project::Project;
use crate::settings::Settings;
use crate::store::verify::{CorruptBlob, ModelReport, Problem, ProblemKind, Target, VerifyReport};
use crate::store::{EntryKind, StatCache};
use crate::units::human_bytes;

/// The JSON document's version; fields are only ever added.
const VERIFY_FORMAT: u32 = 1;

/// Ids given on the command line that models.yaml does not declare.
#[derive(Debug, thiserror::Error, miette::Diagnostic)]
#[error("unknown model{} {}: not declared in models.yaml", if ids.len() == 1 { "" } else { "s" }, quoted(ids))]
#[diagnostic(code(verify::unknown_model))]
pub struct UnknownModel {
    pub ids: Vec<String>,
    #[help]
    pub help: String,
}

fn quoted(ids: &[String]) -> String {
    ids.iter()
        .map(|id| format!("`{id}`"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A selected model that is not handed to the store check, and why.
struct Skip {
    id: ModelId,
    kind: TypeName,
    status: &'static str,
    reason: &'static str,
}

/// One selected model: checked (an index into the report) or set aside.
enum Outcome {
    Checked(usize),
    Skipped(Skip),
}

pub fn run(settings: Settings, args: &VerifyArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let selected = select(&project.manifest, &args.ids)?;
    let mut outcomes = Vec::new();
    let mut targets = Vec::new();
    for (id, entry) in selected {
        let skip = |status, reason| {
            Outcome::Skipped(Skip {
                id: id.clone(),
                kind: entry.kind.clone(),
                status,
                reason,
            })
        };
        let outcome = match project.lock.models.get(id) {
            None => skip(
                "not_locked",
                "not locked, cannot verify (run `modelctl lock`)",
            ),
            Some(locked) if locked.fingerprint != fingerprint(entry) => skip(
                "not_locked",
                "not locked, cannot verify: models.yaml changed since it was locked (run `modelctl lock`)",
            ),
            Some(locked) if matches!(locked.source, LockedSource::Ollama { .. }) => skip(
                "ollama",
                "verified by the Ollama daemon, nothing in the store to hash",
            ),
            Some(locked) => {
                targets.push(Target {
                    id,
                    kind: &entry.kind,
                    files: &locked.files,
                });
                Outcome::Checked(targets.len() - 1)
            }
        };
        outcomes.push(outcome);
    }

    let cache_path = project.store.stat_cache_path();
    let mut cache = StatCache::load(&cache_path);
    let printer = project.settings.printer;
    let announce = |files: usize, bytes: u64| {
        if bytes >= 1_000_000_000 {
            printer.say(format_args!(
                "Hashing {files} files ({}) on every core...",
                human_bytes(bytes)
            ));
        }
    };
    let mut report = crate::store::verify::verify(&project.store, &targets, &mut cache, &announce)?;
    if project.manifest.hf_cache {
        check_hf_cache(&project, &mut report);
    }
    if project.store.root().exists()
        && let Err(e) = cache.save(&cache_path)
    {
        printer.warn(format_args!(
            "note: the stat cache `{}` was not updated ({e}); the next `plan` hashes again",
            cache_path.display()
        ));
    }

    let shown = if args.json {
        printer.json(&document(&outcomes, &report))
    } else {
        printer.out(render_text(&outcomes, &report))
    };
    // `--repair` asked for the repair too: a reader that went away does not cancel it.
    shown.or_else(|e| {
        if args.repair {
            e.ignore_closed()
        } else {
            Err(e)
        }
    })?;
    if args.repair && !report.is_ok() {
        return repair(&project, &report, cache);
    }
    Ok(if report.is_ok() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// With `hf_cache: true`, what each checked `hf` model's snapshot in the Hugging Face cache
/// serves is checked too: consumers load it from there.
fn check_hf_cache(project: &Project, report: &mut VerifyReport) {
    let cache = crate::sources::hf::cache::HfCache::new(&project.settings.hf.cache_dir);
    for model in &mut report.models {
        let (Some(entry), Some(locked)) = (
            project.manifest.models.get(&model.id),
            project.lock.models.get(&model.id),
        ) else {
            continue;
        };
        if let (crate::manifest::Source::Hf(source), LockedSource::Hf { commit, .. }) =
            (&entry.source, &locked.source)
        {
            let repo = crate::sources::hf::Repo::of(source);
            model.hf_cache = cache.verify_snapshot(&repo, commit, &locked.files);
        }
    }
}

/// `--repair`: re-fetches (or relinks, or removes) exactly what the report found damaged,
/// through the same engine as `apply`, without touching pointers or other models. Progress
/// goes to stderr so that `--json` keeps stdout to the report.
fn repair(project: &Project, report: &VerifyReport, mut cache: StatCache) -> Result<ExitCode> {
    let store = &project.store;
    let printer = project.settings.printer;
    store.check_writable()?;
    let _lock = project.lock_store()?;
    let damaged: std::collections::BTreeSet<&ModelId> = report
        .models
        .iter()
        .filter(|m| !m.problems.is_empty() || !m.hf_cache.is_empty())
        .map(|m| &m.id)
        .collect();
    let state = project.scan_with(&mut cache)?;
    let mut plan = project.plan(&state)?;
    // Damaged blobs are put right by the plan itself (published again from an intact model
    // file, or removed); the damaged models' files are fetched or relinked.
    let keep = |a: &Action| {
        matches!(a, Action::RepairBlob { .. })
            || a.model().is_some_and(|m| damaged.contains(m))
                && matches!(
                    a,
                    Action::Download { .. }
                        | Action::Reuse { .. }
                        | Action::DeleteFile { .. }
                        | Action::Verify { .. }
                        | Action::ShareHfCache { .. }
                )
    };
    plan.retain(|m| damaged.contains(&m.id), keep);
    if plan.actions.is_empty() {
        printer.say("Nothing to repair in the model directories.");
        let _ = cache.save(&store.stat_cache_path());
        return Ok(ExitCode::SUCCESS);
    }
    printer.say(format_args!("Repairing {} file(s):", plan.actions.len()));
    let reporter = crate::ops::execute::reporter_for(
        &None,
        plan.totals.download_bytes,
        project.settings.printer,
    );
    let next_lock = plan.next_lock.clone();
    let options = crate::ops::execute::ExecOptions {
        jobs: 4,
        connections: 16,
    };
    let (outcome, elapsed, cache) =
        crate::ops::execute::execute(project, &plan, &next_lock, reporter.clone(), options, cache)?;
    crate::ops::execute::finish(
        project,
        cache,
        &outcome,
        elapsed,
        None,
        reporter.as_ref(),
        "Repaired",
    )
}

/// The declared models to verify: all of them, or the ids given (each must be declared).
fn select<'a>(
    manifest: &'a Manifest,
    ids: &[String],
) -> Result<Vec<(&'a ModelId, &'a crate::manifest::ModelEntry)>, UnknownModel> {
    if ids.is_empty() {
        return Ok(manifest.models.iter().collect());
    }
    let mut unknown = Vec::new();
    let mut hints = Vec::new();
    let mut chosen = Vec::new();
    for text in ids {
        match manifest.models.iter().find(|(id, _)| id.as_str() == text) {
            Some(pair) => chosen.push(pair),
            None => {
                let names = manifest.models.keys().map(ModelId::as_str);
                if let Some(close) = crate::diagnostic::closest(text, names) {
                    hints.push((text.as_str(), close));
                }
                unknown.push(text.clone());
            }
        }
    }
    if !unknown.is_empty() {
        let help = match hints.as_slice() {
            [] => "`modelctl status` lists the declared models".to_owned(),
            [(_, close)] if unknown.len() == 1 => format!("did you mean `{close}`?"),
            _ => hints
                .iter()
                .map(|(text, close)| format!("did you mean `{close}` for `{text}`?"))
                .collect::<Vec<_>>()
                .join(" "),
        };
        return Err(UnknownModel { ids: unknown, help });
    }
    chosen.sort_by(|a, b| a.0.cmp(b.0));
    chosen.dedup_by(|a, b| a.0 == b.0);
    Ok(chosen)
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

fn sha_or(digest: Option<crate::digest::Sha256>, missing: &str) -> String {
    digest.map_or_else(|| missing.to_owned(), |d| d.hex())
}

fn oid_or(oid: Option<crate::digest::GitOid>, missing: &str) -> String {
    oid.map_or_else(|| missing.to_owned(), |d| d.hex())
}

/// `a symlink to `x``, `a directory`: what an entry is, with a symlink's target.
fn entry_words(problem: &Problem) -> String {
    let found = problem.found.unwrap_or(EntryKind::Other);
    match &problem.link_target {
        Some(target) => format!("{} to `{target}` (not followed)", found.describe()),
        None => found.describe().to_owned(),
    }
}

/// One line describing a problem, without indentation.
fn describe(problem: &Problem) -> String {
    let path = &problem.path;
    let expected = format!(
        "expected {} bytes, sha256 {}",
        problem.expected_size.unwrap_or(0),
        sha_or(problem.expected_sha256, "not in models.lock")
    );
    match problem.kind {
        ProblemKind::Missing => format!("missing `{path}`: {expected}"),
        ProblemKind::Extra => match problem.found {
            Some(EntryKind::File) => format!(
                "extra `{path}`: {} bytes, not in models.lock",
                problem.actual_size.unwrap_or(0)
            ),
            _ => format!(
                "extra `{path}`: {}, not in models.lock",
                entry_words(problem)
            ),
        },
        ProblemKind::LockInconsistent => format!(
            "models.lock is inconsistent for `{path}`: its bytes match the sha256 models.lock \
             gives, but have git blob id {}, not the {} it pairs with it (run `modelctl update` \
             for this model)",
            oid_or(problem.actual_git_oid, "unknown"),
            oid_or(problem.expected_git_oid, "unknown"),
        ),
        ProblemKind::Corrupted
            if problem.expected_sha256.is_none() && problem.expected_git_oid.is_some() =>
        {
            format!(
                "corrupted `{path}`: git blob id {}, expected {}",
                oid_or(problem.actual_git_oid, "unknown"),
                oid_or(problem.expected_git_oid, "unknown"),
            )
        }
        ProblemKind::Corrupted => {
            let actual = sha_or(problem.actual_sha256, "unknown");
            let wanted = sha_or(problem.expected_sha256, "not in models.lock");
            if problem.actual_size == problem.expected_size {
                format!("corrupted `{path}`: sha256 {actual}, expected {wanted}")
            } else {
                format!(
                    "corrupted `{path}`: {} bytes, expected {}; sha256 {actual}, expected {wanted}",
                    problem.actual_size.unwrap_or(0),
                    problem.expected_size.unwrap_or(0)
                )
            }
        }
        ProblemKind::NotAFile if path == "." => {
            format!(
                "not a directory: the model directory is {}",
                entry_words(problem)
            )
        }
        ProblemKind::NotAFile => {
            format!("not a file `{path}`: {}; {expected}", entry_words(problem))
        }
    }
}

fn describe_blob(blob: &CorruptBlob) -> String {
    match blob.actual_sha256 {
        Some(actual) => format!("corrupt blob `{}`: its bytes hash to {actual}", blob.path),
        None => format!(
            "corrupt blob `{}`: {}, not a regular file (not followed)",
            blob.path,
            blob.found.describe()
        ),
    }
}

/// The text report: models in id order with their problems, the blobs, a summary line.
fn render_text(outcomes: &[Outcome], report: &VerifyReport) -> String {
    let mut out = String::new();
    for outcome in outcomes {
        match outcome {
            Outcome::Skipped(skip) => {
                out.push_str(&format!("{} ({}): {}\n", skip.id, skip.kind, skip.reason));
            }
            Outcome::Checked(i) => {
                let Some(model) = report.models.get(*i) else {
                    continue;
                };
                render_model(&mut out, model);
            }
        }
    }
    let corrupt = report.corrupt_blobs.len();
    if corrupt == 0 {
        out.push_str(&format!(
            "blobs: {} checked, all intact\n",
            report.blobs_checked
        ));
    } else {
        out.push_str(&format!(
            "blobs: {} checked, {corrupt} corrupt\n",
            report.blobs_checked
        ));
        for blob in &report.corrupt_blobs {
            out.push_str(&format!("  {}\n", describe_blob(blob)));
        }
    }
    let files: usize = report.models.iter().map(|m| m.files_checked).sum();
    let bytes: u64 = report.models.iter().map(|m| m.bytes_checked).sum();
    let problems = match report.problem_count() {
        0 => "no problems".to_owned(),
        n => plural(n, "problem", "problems"),
    };
    out.push_str(&format!(
        "verified {} ({}) in {}: {problems}\n",
        plural(files, "file", "files"),
        human_bytes(bytes),
        plural(report.models.len(), "model", "models"),
    ));
    out
}

fn render_model(out: &mut String, model: &ModelReport) {
    if model.problems.is_empty() && model.hf_cache.is_empty() {
        out.push_str(&format!(
            "{} ({}): {} intact ({})\n",
            model.id,
            model.kind,
            plural(model.files_checked, "file", "files"),
            human_bytes(model.bytes_checked)
        ));
    } else {
        out.push_str(&format!(
            "{} ({}): {}\n",
            model.id,
            model.kind,
            plural(
                model.problems.len() + model.hf_cache.len(),
                "problem",
                "problems"
            )
        ));
        for problem in &model.problems {
            out.push_str(&format!("  {}\n", describe(problem)));
        }
        for problem in &model.hf_cache {
            out.push_str(&format!("  in the HF cache: {}\n", describe(problem)));
        }
    }
    for path in &model.size_only {
        out.push_str(&format!(
            "  note: `{path}` has no sha256 in models.lock; only its size was checked\n"
        ));
    }
}

/// `verify --json`.
#[derive(Serialize)]
struct Document<'a> {
    format: u32,
    ok: bool,
    models: Vec<ModelJson<'a>>,
    corrupt_blobs: &'a [CorruptBlob],
    totals: Totals,
}

#[derive(Serialize)]
struct ModelJson<'a> {
    id: &'a ModelId,
    #[serde(rename = "type")]
    kind: &'a TypeName,
    /// checked | not_locked | ollama
    status: &'static str,
    /// Why a model was not checked.
    reason: Option<&'static str>,
    files_checked: usize,
    bytes_checked: u64,
    problems: &'a [Problem],
    size_only: &'a [String],
    /// Problems of the model's snapshot in the Hugging Face cache (`hf_cache: true`).
    hf_cache_problems: &'a [Problem],
}

#[derive(Serialize)]
struct Totals {
    models_checked: usize,
    files_checked: usize,
    bytes_checked: u64,
    blobs_checked: usize,
    problems: usize,
}

fn document<'a>(outcomes: &'a [Outcome], report: &'a VerifyReport) -> Document<'a> {
    let models = outcomes
        .iter()
        .filter_map(|outcome| match outcome {
            Outcome::Skipped(skip) => Some(ModelJson {
                id: &skip.id,
                kind: &skip.kind,
                status: skip.status,
                reason: Some(skip.reason),
                files_checked: 0,
                bytes_checked: 0,
                problems: &[],
                size_only: &[],
                hf_cache_problems: &[],
            }),
            Outcome::Checked(i) => report.models.get(*i).map(|m| ModelJson {
                id: &m.id,
                kind: &m.kind,
                status: "checked",
                reason: None,
                files_checked: m.files_checked,
                bytes_checked: m.bytes_checked,
                problems: &m.problems,
                size_only: &m.size_only,
                hf_cache_problems: &m.hf_cache,
            }),
        })
        .collect();
    Document {
        format: VERIFY_FORMAT,
        ok: report.is_ok(),
        models,
        corrupt_blobs: &report.corrupt_blobs,
        totals: Totals {
            models_checked: report.models.len(),
            files_checked: report.models.iter().map(|m| m.files_checked).sum(),
            bytes_checked: report.models.iter().map(|m| m.bytes_checked).sum(),
            blobs_checked: report.blobs_checked,
            problems: report.problem_count(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::digest::Sha256;

    fn problem(kind: ProblemKind, path: &str) -> Problem {
        Problem {
            kind,
            path: path.to_owned(),
            expected_sha256: Some(Sha256::of(b"want")),
            actual_sha256: None,
            expected_size: Some(4),
            expected_git_oid: None,
            actual_git_oid: None,
            actual_size: None,
            found: None,
            link_target: None,
        }
    }

    #[test]
    fn text_lists_each_problem_with_expected_and_actual_then_a_summary() {
        let want = Sha256::of(b"want").hex();
        let got = Sha256::of(b"got!").hex();
        let report = VerifyReport {
            models: vec![ModelReport {
                id: ModelId::parse("voice").expect("id"),
                kind: TypeName::parse("tts").expect("type"),
                files_checked: 2,
                bytes_checked: 6,
                problems: vec![
                    Problem {
                        actual_sha256: Some(Sha256::of(b"got!")),
                        actual_size: Some(4),
                        found: Some(EntryKind::File),
                        ..problem(ProblemKind::Corrupted, "a.bin")
                    },
                    Problem {
                        actual_sha256: Some(Sha256::of(b"go")),
                        actual_size: Some(2),
                        found: Some(EntryKind::File),
                        ..problem(ProblemKind::Corrupted, "b.bin")
                    },
                    Problem {
                        found: Some(EntryKind::Symlink),
                        link_target: Some("/etc/passwd".to_owned()),
                        ..problem(ProblemKind::NotAFile, "c.bin")
                    },
                    problem(ProblemKind::Missing, "d.bin"),
                    Problem {
                        expected_sha256: None,
                        expected_size: None,
                        actual_size: Some(3),
                        found: Some(EntryKind::File),
                        ..problem(ProblemKind::Extra, "e.txt")
                    },
                ],
                size_only: vec![],
                hf_cache: vec![],
            }],
            corrupt_blobs: vec![CorruptBlob {
                path: format!("blobs/sha256/{}/{want}", &want[..2]),
                expected_sha256: Sha256::of(b"want"),
                actual_sha256: Some(Sha256::of(b"got!")),
                actual_size: Some(4),
                found: EntryKind::File,
            }],
            blobs_checked: 3,
            hashed_files: 4,
            hashed_bytes: 10,
        };
        let skipped = Outcome::Skipped(Skip {
            id: ModelId::parse("llama").expect("id"),
            kind: TypeName::parse("llm").expect("type"),
            status: "ollama",
            reason: "verified by the Ollama daemon, nothing in the store to hash",
        });
        let text = render_text(&[skipped, Outcome::Checked(0)], &report);
        let expected = format!(
            "llama (llm): verified by the Ollama daemon, nothing in the store to hash
voice (tts): 5 problems
  corrupted `a.bin`: sha256 {got}, expected {want}
  corrupted `b.bin`: 2 bytes, expected 4; sha256 {go}, expected {want}
  not a file `c.bin`: a symlink to `/etc/passwd` (not followed); expected 4 bytes, sha256 {want}
  missing `d.bin`: expected 4 bytes, sha256 {want}
  extra `e.txt`: 3 bytes, not in models.lock
blobs: 3 checked, 1 corrupt
  corrupt blob `blobs/sha256/{}/{want}`: its bytes hash to {got}
verified 2 files (6 B) in 1 model: 6 problems
",
            &want[..2],
            go = Sha256::of(b"go").hex(),
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn an_unknown_id_is_refused_with_the_closest_declared_one() {
        let manifest = crate::manifest::parse_str(
            "version: 1\nmodels:\n  sdxl-base:\n    type: image_gen\n    source: { ollama: x }\n",
            "models.yaml",
        )
        .expect("manifest");
        let err = select(&manifest, &["sdxl-bsae".to_owned()]).expect_err("unknown");
        assert_eq!(
            err.to_string(),
            "unknown model `sdxl-bsae`: not declared in models.yaml"
        );
        assert_eq!(err.help, "did you mean `sdxl-base`?");
        let err = select(&manifest, &["zzz".to_owned(), "yyy".to_owned()]).expect_err("unknown");
        assert!(
            err.to_string().starts_with("unknown models `zzz`, `yyy`"),
            "{err}"
        );
        let chosen =
            select(&manifest, &["sdxl-base".to_owned(), "sdxl-base".to_owned()]).expect("known");
        assert_eq!(chosen.len(), 1, "an id given twice is checked once");
    }
}
