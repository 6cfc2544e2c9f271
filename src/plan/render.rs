//! The plan as a person reads it: terraform-style, grouped by model, with a summary line.
//!
//! Symbols: `+` something is added, `-` removed, `~` changed in place, `=` linked from a blob
//! already in the store, `?` cannot be planned until resolved, `!` a warning. Colour is used
//! only when the caller asks for it; the text reads the same without it.

use std::fmt::Write;

use anstyle::{AnsiColor, Style as Ansi};

use super::*;
use crate::units::human_bytes;

/// Whether to colour the output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Style {
    Plain,
    Color,
}

struct Painter(Style);

impl Painter {
    fn paint(&self, color: AnsiColor, text: &str) -> String {
        match self.0 {
            Style::Plain => text.to_owned(),
            Style::Color => {
                let s = Ansi::new().fg_color(Some(color.into()));
                format!("{s}{text}{s:#}")
            }
        }
    }
    fn bold(&self, text: &str) -> String {
        match self.0 {
            Style::Plain => text.to_owned(),
            Style::Color => {
                let s = Ansi::new().bold();
                format!("{s}{text}{s:#}")
            }
        }
    }
    fn sym(&self, sym: &str) -> String {
        let color = match sym {
            "+" => AnsiColor::Green,
            "-" => AnsiColor::Red,
            "~" | "!" => AnsiColor::Yellow,
            "?" => AnsiColor::Cyan,
            _ => AnsiColor::Blue,
        };
        self.paint(color, sym)
    }
}

/// Renders the plan for a terminal or a log.
pub fn render_text(plan: &Plan, style: Style) -> String {
    let p = Painter(style);
    let mut out = String::new();
    let changed: Vec<&ModelPlan> = plan
        .models
        .iter()
        .filter(|m| m.status != ModelStatus::UpToDate)
        .collect();
    let up_to_date = plan.models.len() - changed.len();

    for m in &changed {
        render_model(&mut out, &p, m, plan.model_actions(&m.id).collect());
    }
    let repairs: Vec<&Action> = plan
        .actions
        .iter()
        .filter(|a| matches!(a, Action::RepairBlob { .. }))
        .collect();
    if !repairs.is_empty() {
        let _ = writeln!(out, "  {}", p.bold("blobs"));
        for a in repairs {
            let _ = writeln!(out, "    {}", action_line(&p, a));
        }
        out.push('\n');
    }
    let activations: Vec<&Action> = plan.activations().collect();
    if !activations.is_empty() {
        let _ = writeln!(out, "  {}", p.bold("active models"));
        for a in activations {
            let _ = writeln!(out, "    {}", action_line(&p, a));
        }
        out.push('\n');
    }
    for w in &plan.warnings {
        let who = w
            .model
            .as_ref()
            .map(|m| format!("{m}: "))
            .unwrap_or_default();
        let _ = writeln!(out, "{} warning: {who}{}", p.sym("!"), w.message);
    }
    for e in &plan.errors {
        let who = e
            .model
            .as_ref()
            .map(|m| format!("{m}: "))
            .unwrap_or_default();
        let _ = writeln!(
            out,
            "{} {who}{}",
            p.paint(AnsiColor::Red, "error:"),
            e.message
        );
    }
    if !plan.warnings.is_empty() || !plan.errors.is_empty() {
        out.push('\n');
    }
    let _ = writeln!(out, "{}", summary(plan, up_to_date));
    if plan.disk.peak_bytes > 0 || !plan.disk.fits {
        let _ = writeln!(out, "{}", disk_line(&plan.disk, plan.totals.unresolved));
    }
    out
}

fn render_model(out: &mut String, p: &Painter, m: &ModelPlan, actions: Vec<&Action>) {
    let sym = match &m.status {
        ModelStatus::Removed => "-",
        ModelStatus::Unresolved { .. } => "?",
        ModelStatus::Drifted { .. } => "!",
        _ if actions.iter().any(|a| {
            matches!(
                a,
                Action::Download { replace: true, .. }
                    | Action::Reuse { replace: true, .. }
                    | Action::DeleteFile { .. }
                    | Action::Delete { .. }
            )
        }) || m.diff.is_some() =>
        {
            "~"
        }
        _ => "+",
    };
    let from = if m.source.is_empty() {
        String::new()
    } else {
        format!("  {}", m.source)
    };
    let _ = writeln!(
        out,
        "  {} {} ({}){from}",
        p.sym(sym),
        p.bold(m.id.as_str()),
        m.kind
    );
    if let Some(diff) = &m.diff {
        for line in diff.lines() {
            let painted = match line.chars().next() {
                Some('+') => p.paint(AnsiColor::Green, line),
                Some('-') => p.paint(AnsiColor::Red, line),
                _ => line.to_owned(),
            };
            let _ = writeln!(out, "      {painted}");
        }
    }
    if let ModelStatus::Unresolved { reason } = &m.status {
        let reason = reason.replace('\n', "\n      ");
        let _ = writeln!(out, "      needs resolving: {reason}");
    }
    if let ModelStatus::Drifted { reason } = &m.status {
        let _ = writeln!(out, "      differs from its pin: {reason}");
    }
    for a in actions {
        let _ = writeln!(out, "      {}", action_line(p, a));
    }
    out.push('\n');
}

/// `  via mirror …` for a download or pull asked of mirrors first; empty without.
fn via_mirrors(mirrors: &[String]) -> String {
    match mirrors {
        [] => String::new(),
        [one] => format!("  via mirror {one}"),
        many => format!("  via mirrors {}", many.join(", ")),
    }
}

fn action_line(p: &Painter, a: &Action) -> String {
    match a {
        Action::Download {
            path,
            size,
            sha256,
            md5,
            git_oid,
            replace,
            mirrors,
            ..
        } => {
            let what = if *replace { "replace" } else { "download" };
            let via = via_mirrors(mirrors);
            let check = match (sha256, git_oid, md5) {
                (Some(d), _, _) => format!("sha256:{}", d.short()),
                (None, Some(g), _) => format!("git-oid:{}", &g.hex()[..12]),
                (None, None, Some(_)) => "md5 only (weak)".to_owned(),
                (None, None, None) => "sha256 computed on download".to_owned(),
            };
            format!(
                "{} {what} {path}  {}  {check}{via}",
                p.sym(if *replace { "~" } else { "+" }),
                human_bytes(*size)
            )
        }
        Action::Reuse {
            path,
            size,
            replace,
            hf_cache,
            machine_cache,
            ollama_store,
            ..
        } => {
            let what = if *replace { "relink" } else { "link" };
            let from = match (machine_cache, hf_cache, ollama_store) {
                (Some(mode), _, _) if mode.shares_bytes() => {
                    format!("from the machine cache by {mode}")
                }
                (Some(_), _, _) => {
                    "copied from the machine cache: it is on another filesystem".to_owned()
                }
                (None, Some(_), _) => "reuse from the HF cache, verified first".to_owned(),
                (None, None, Some(_)) => "reuse from Ollama's store, verified first".to_owned(),
                (None, None, None) => "blob already in the store".to_owned(),
            };
            format!(
                "{} {what} {path}  {}  ({from})",
                p.sym("="),
                human_bytes(*size)
            )
        }
        Action::Verify {
            path, size, reason, ..
        } => {
            format!(
                "{} verify {path}  {}  ({reason})",
                p.sym("~"),
                human_bytes(*size)
            )
        }
        Action::RepairBlob { sha256, from } => match from {
            Some(copy) => format!(
                "{} repair blob sha256:{}  (its bytes are damaged; {}/{}/{} holds them intact)",
                p.sym("~"),
                sha256.short(),
                copy.kind,
                copy.model,
                copy.path
            ),
            None => format!(
                "{} remove damaged blob sha256:{}  (no intact copy in the store)",
                p.sym("-"),
                sha256.short()
            ),
        },
        Action::DeleteFile { path, size, .. } => {
            format!(
                "{} delete stray file {path}  {}",
                p.sym("-"),
                human_bytes(*size)
            )
        }
        Action::Delete {
            model,
            kind,
            size,
            freed,
            in_machine_cache: 0,
        } => format!(
            "{} delete models/{kind}/{model}/  {}  (frees {} of blobs at `gc`)",
            p.sym("-"),
            human_bytes(*size),
            human_bytes(*freed)
        ),
        Action::Delete {
            model,
            kind,
            size,
            freed: 0,
            in_machine_cache,
        } => format!(
            "{} delete models/{kind}/{model}/  {}  (its {} stay in the machine cache until \
             `modelctl cache prune`)",
            p.sym("-"),
            human_bytes(*size),
            human_bytes(*in_machine_cache)
        ),
        Action::Delete {
            model,
            kind,
            size,
            freed,
            in_machine_cache,
        } => format!(
            "{} delete models/{kind}/{model}/  {}  (frees {} of blobs at `gc`; {} stay in the \
             machine cache until `modelctl cache prune`)",
            p.sym("-"),
            human_bytes(*size),
            human_bytes(*freed),
            human_bytes(*in_machine_cache)
        ),
        Action::Pull {
            name,
            digest,
            present: true,
            ..
        } => format!(
            "{} record {name}  sha256:{}  (already in Ollama)",
            p.sym("+"),
            digest.short()
        ),
        Action::Pull {
            name,
            digest,
            size,
            mirrors,
            ..
        } => {
            format!(
                "{} pull {name}  {}  sha256:{}{}",
                p.sym("+"),
                human_bytes(*size),
                digest.short(),
                via_mirrors(mirrors)
            )
        }
        Action::PullAndPin { name, .. } => format!(
            "{} pull {name} through the Ollama daemon, then pin the digest it reports",
            p.sym("+")
        ),
        Action::Remove { name, .. } => format!("{} remove {name} from Ollama", p.sym("-")),
        Action::Load { name, .. } => format!("{} load {name} into the Ollama daemon", p.sym("+")),
        Action::Unload { name, .. } => {
            format!("{} unload {name} from the Ollama daemon", p.sym("-"))
        }
        Action::Activate { kind, to } => format!("{} {kind}: {to}", p.sym("+")),
        Action::Swap { kind, from, to } => format!("{} {kind}: {from} → {to}", p.sym("~")),
        Action::Deactivate { kind, from } => format!("{} {kind}: {from} → (none)", p.sym("-")),
        Action::ShareHfCache { repo, commit, .. } => format!(
            "{} share with the HF cache as {repo} @ {}",
            p.sym("+"),
            commit.get(..7).unwrap_or(commit)
        ),
        Action::Hook {
            model,
            event,
            command,
        } => format!("{} run {event} hook of {model}: {command}", p.sym("~")),
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `Plan: 3 to download (8.5 GiB), 1 to delete (frees 1.6 GiB), 1 swap; 2 need resolving.`
fn summary(plan: &Plan, up_to_date: usize) -> String {
    let t = &plan.totals;
    let mut parts = Vec::new();
    if t.downloads > 0 {
        parts.push(format!(
            "{} to download ({})",
            t.downloads,
            human_bytes(t.download_bytes)
        ));
    }
    if t.pulls > 0 {
        parts.push(format!(
            "{} to pull ({}{})",
            t.pulls,
            if t.unsized_pulls > 0 { "at least " } else { "" },
            human_bytes(t.pull_bytes)
        ));
    }
    if t.records > 0 {
        parts.push(format!("{} to record from Ollama", t.records));
    }
    if t.reuses > 0 {
        parts.push(format!("{} to link", t.reuses));
    }
    if t.verifies > 0 {
        parts.push(format!("{} to verify", t.verifies));
    }
    if t.blob_repairs > 0 {
        parts.push(format!("{} damaged blob(s) to repair", t.blob_repairs));
    }
    if t.activations > 0 {
        parts.push(format!("{} to activate", t.activations));
    }
    if t.swaps > 0 {
        parts.push(plural(t.swaps, "swap", "swaps"));
    }
    if t.deactivations > 0 {
        parts.push(format!("{} to deactivate", t.deactivations));
    }
    if t.deletes > 0 {
        parts.push(format!(
            "{} to delete (frees {})",
            t.deletes,
            human_bytes(t.freed_bytes)
        ));
    }
    let lock = plan.lock_changes.len();
    if lock > 0 {
        parts.push(format!(
            "{} models.lock {}",
            lock,
            if lock == 1 {
                "entry to update"
            } else {
                "entries to update"
            }
        ));
    }
    let drifted: Vec<String> = plan
        .models
        .iter()
        .filter(|m| matches!(m.status, ModelStatus::Drifted { .. }))
        .map(|m| m.id.to_string())
        .collect();
    let mut line = match (parts.is_empty(), t.unresolved) {
        // Never "matches" while a pin is not what its source holds.
        (true, 0) if !drifted.is_empty() => "Nothing to change".to_owned(),
        (true, 0) => "No changes. The store matches models.yaml and models.lock".to_owned(),
        // Nothing to do *yet*: what the unresolved models need is unknown, not absent.
        (true, _) => "Nothing to change yet".to_owned(),
        (false, _) => format!("Plan: {}", parts.join(", ")),
    };
    if up_to_date > 0 {
        line.push_str(&format!(
            "; {} up to date",
            plural(up_to_date, "model", "models")
        ));
    }
    if !drifted.is_empty() {
        line.push_str(&format!(
            "; {} from its pin ({}), see above",
            plural(drifted.len(), "model differs", "models differ"),
            drifted.join(", ")
        ));
    }
    if t.unresolved > 0 {
        let ids: Vec<String> = plan.unresolved().map(|(id, _)| id.to_string()).collect();
        line.push_str(&format!(
            "; {} resolving ({}), see above",
            plural(t.unresolved, "model needs", "models need"),
            ids.join(", ")
        ));
    }
    line.push('.');
    line
}

fn disk_line(disk: &DiskCheck, unresolved: usize) -> String {
    let free = disk
        .free_bytes
        .map_or_else(|| "unknown".to_owned(), human_bytes);
    let verdict = if disk.fits { "fits" } else { "does NOT fit" };
    let unknown = match unresolved {
        0 => String::new(),
        1 => " (1 unresolved model not counted)".to_owned(),
        n => format!(" ({n} unresolved models not counted)"),
    };
    format!(
        "Disk: {} needed at peak{unknown}, {free} free at `{}` ({verdict}).",
        human_bytes(disk.peak_bytes),
        disk.path
    )
}
