//! `modelctl show ID [--json]`: one model in full: what models.yaml declares, what models.lock
//! pins, which files are on disk, whether it is active, what it needs and whether this machine
//! has it (GPU memory through NVML, RAM), and, for an Ollama model whose daemon answers, what
//! the daemon says about it (`/api/show`, `/api/ps`). No network besides the local daemon.

use std::process::ExitCode;

use miette::Result;
use serde_json::Value;

use crate::cli::ShowArgs;
use crate::ops::show::{Shown, shown};
use crate::project::Project;
use crate::settings::Settings;
use crate::units::human_bytes;

pub fn run(settings: Settings, args: &ShowArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let id = crate::ops::select::select_ids(&project, std::slice::from_ref(&args.id))?
        .into_iter()
        .next()
        .ok_or_else(|| miette::miette!("no model `{}` in models.yaml", args.id))?;
    let shown = shown(&project, &id)?;
    let printer = project.settings.printer;
    if args.json {
        printer.json(&shown)?;
    } else {
        printer.out(render(&shown))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn render(s: &Shown) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    let _ = writeln!(out, "{} ({})", s.id, s.kind);
    if let Some(d) = &s.description {
        let _ = writeln!(out, "  {d}");
    }
    let _ = writeln!(out, "  source:   {}", s.source);
    let _ = writeln!(
        out,
        "  pinned:   {}",
        s.pinned
            .as_deref()
            .unwrap_or("not locked (`modelctl lock` pins it)")
    );
    let active = match (s.active, s.wants_active) {
        (true, true) => "yes",
        (false, true) => "pending (`modelctl apply` activates it)",
        (true, false) => "yes, to be deactivated",
        (false, false) => "no",
    };
    let _ = writeln!(out, "  active:   {active}");
    if !s.files.is_empty() {
        let total: u64 = s.files.iter().map(|f| f.size).sum();
        let present = s.files.iter().filter(|f| f.present).count();
        let _ = writeln!(
            out,
            "  files:    {present}/{} present, {}",
            s.files.len(),
            human_bytes(total)
        );
        for f in &s.files {
            let mark = if f.present { "✓" } else { "·" };
            let _ = writeln!(out, "    {mark} {}  {}", f.path, human_bytes(f.size));
        }
    }
    for reason in &s.compatibility.reasons {
        let _ = writeln!(out, "  requires: {reason}");
    }
    let verdict = match s.compatibility.fits {
        Some(true) => "fits this machine",
        Some(false) => "does not fit this machine",
        None => "cannot tell whether it fits this machine",
    };
    let _ = writeln!(out, "  verdict:  {verdict}");
    if !s.config.is_empty() {
        let _ = writeln!(out, "  config:   {}", Value::Object(s.config.clone()));
    }
    if let Some(o) = &s.ollama {
        let loaded = o.get("loaded").and_then(Value::as_bool).unwrap_or(false);
        let _ = writeln!(
            out,
            "  ollama:   {}",
            if loaded { "loaded" } else { "not loaded" }
        );
        if let Some(details) = o.get("details") {
            let _ = writeln!(out, "            {details}");
        }
    }
    out
}
