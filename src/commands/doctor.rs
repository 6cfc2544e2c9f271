//! `modelctl doctor [--json]`: what this machine has (NVIDIA GPUs through NVML, memory, free
//! disk at the store) and whether the active models fit it. Exits 1 only when they certainly
//! do not; a machine without an NVIDIA driver says "no NVIDIA GPU found" and exits 0.

use std::process::ExitCode;

use miette::Result;
use serde::Serialize;

use crate::cli::DoctorArgs;
use crate::names::{ModelId, TypeName};
use crate::project::Project;
use crate::settings::Settings;
use crate::system::{GpuFacts, SystemFacts};
use crate::units::human_bytes;

#[derive(Debug, Serialize)]
struct Report {
    #[serde(flatten)]
    facts: SystemFacts,
    active: Vec<Active>,
    /// `true`: the active models fit; `false`: they do not; `null`: cannot tell (no GPU facts).
    fits: Option<bool>,
    problems: Vec<String>,
}

#[derive(Debug, Serialize)]
struct Active {
    #[serde(rename = "type")]
    kind: TypeName,
    id: ModelId,
    #[serde(skip_serializing_if = "Option::is_none")]
    gpu_memory: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ram: Option<u64>,
}

pub fn run(settings: Settings, args: &DoctorArgs) -> Result<ExitCode> {
    let project = Project::load(settings)?;
    let facts = crate::system::gather(project.store.root());
    let active: Vec<Active> = project
        .manifest
        .active
        .iter()
        .filter_map(|(kind, id)| {
            let entry = project.manifest.models.get(id)?;
            Some(Active {
                kind: kind.clone(),
                id: id.clone(),
                gpu_memory: entry.requires.gpu_memory,
                ram: entry.requires.ram,
            })
        })
        .collect();
    let (fits, problems) = verdict(&facts, &active);
    let report = Report {
        facts,
        active,
        fits,
        problems,
    };
    let printer = project.settings.printer;
    if args.json {
        printer.json(&report)?;
    } else {
        printer.out(render(&report))?;
    }
    Ok(if report.fits == Some(false) {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    })
}

/// Whether the active set fits: their GPU memory together on the GPUs (each model on one
/// GPU, so the largest need must fit the largest GPU), their memory together in RAM.
fn verdict(facts: &SystemFacts, active: &[Active]) -> (Option<bool>, Vec<String>) {
    let mut problems = Vec::new();
    let mut fits = Some(true);
    let gpu_total: u64 = active.iter().filter_map(|a| a.gpu_memory).sum();
    let gpu_largest = active.iter().filter_map(|a| a.gpu_memory).max();
    if let Some(largest) = gpu_largest {
        match &facts.gpus {
            GpuFacts::None { reason } => {
                fits = None;
                problems.push(format!(
                    "the active models need {} of GPU memory; {reason}",
                    human_bytes(gpu_total)
                ));
            }
            GpuFacts::Found { gpus } => {
                let all: u64 = gpus.iter().map(|g| g.memory_total).sum();
                let biggest = facts.gpus.largest_memory().unwrap_or(0);
                if largest > biggest {
                    fits = Some(false);
                    problems.push(format!(
                        "a model needs {} of GPU memory; the largest GPU has {}",
                        human_bytes(largest),
                        human_bytes(biggest)
                    ));
                } else if gpu_total > all {
                    fits = Some(false);
                    problems.push(format!(
                        "the active models need {} of GPU memory together; the GPUs have {}",
                        human_bytes(gpu_total),
                        human_bytes(all)
                    ));
                }
            }
        }
    }
    let ram_total: u64 = active.iter().filter_map(|a| a.ram).sum();
    if ram_total > 0 {
        match facts.ram_total {
            Some(have) if ram_total > have => {
                fits = Some(false);
                problems.push(format!(
                    "the active models need {} of memory; this machine has {}",
                    human_bytes(ram_total),
                    human_bytes(have)
                ));
            }
            Some(_) => {}
            None => fits = fits.and(None),
        }
    }
    (fits, problems)
}

fn render(r: &Report) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    match &r.facts.gpus {
        GpuFacts::None { reason } => {
            let _ = writeln!(out, "GPU:     {reason}");
        }
        GpuFacts::Found { gpus } => {
            for g in gpus {
                let _ = writeln!(
                    out,
                    "GPU {}:   {} ({} total, {} free)",
                    g.index,
                    g.name,
                    human_bytes(g.memory_total),
                    human_bytes(g.memory_free)
                );
            }
        }
    }
    let _ = writeln!(
        out,
        "Memory:  {}",
        r.facts.ram_total.map_or("unknown".to_owned(), human_bytes)
    );
    let _ = writeln!(
        out,
        "Disk:    {} free at `{}`",
        r.facts.free_disk.map_or("unknown".to_owned(), human_bytes),
        r.facts.disk_path
    );
    if r.active.is_empty() {
        let _ = writeln!(out, "No active models.");
    } else {
        let _ = writeln!(out, "Active models:");
        for a in &r.active {
            let needs: Vec<String> = [
                a.gpu_memory
                    .map(|n| format!("{} GPU memory", human_bytes(n))),
                a.ram.map(|n| format!("{} memory", human_bytes(n))),
            ]
            .into_iter()
            .flatten()
            .collect();
            let needs = if needs.is_empty() {
                "no stated requirements".to_owned()
            } else {
                format!("needs {}", needs.join(", "))
            };
            let _ = writeln!(
                out,
                "  {:<10} {:<24} {needs}",
                a.kind.as_str(),
                a.id.as_str()
            );
        }
    }
    for p in &r.problems {
        let _ = writeln!(out, "  ! {p}");
    }
    let _ = writeln!(
        out,
        "{}",
        match r.fits {
            Some(true) => "The active models fit this machine.",
            Some(false) => "The active models do not fit this machine.",
            None => "Cannot tell whether the active models fit this machine.",
        }
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::system::Gpu;

    fn facts(gpus: GpuFacts) -> SystemFacts {
        SystemFacts {
            free_disk: Some(1 << 40),
            disk_path: "/".into(),
            gpus,
            ram_total: Some(16 << 30),
        }
    }

    fn active(gpu: u64) -> Active {
        Active {
            kind: TypeName::parse("llm").expect("type"),
            id: ModelId::parse("m").expect("id"),
            gpu_memory: Some(gpu << 30),
            ram: None,
        }
    }

    #[test]
    fn gpu_needs_are_checked_against_the_largest_gpu_and_the_sum() {
        let one = GpuFacts::Found {
            gpus: vec![Gpu {
                index: 0,
                name: "T".into(),
                memory_total: 12 << 30,
                memory_free: 12 << 30,
            }],
        };
        assert_eq!(verdict(&facts(one.clone()), &[active(8)]).0, Some(true));
        assert_eq!(verdict(&facts(one.clone()), &[active(16)]).0, Some(false));
        assert_eq!(verdict(&facts(one), &[active(8), active(8)]).0, Some(false));
        let none = GpuFacts::None {
            reason: "no NVIDIA GPU found (the NVIDIA driver is not installed)".into(),
        };
        let (fits, problems) = verdict(&facts(none), &[active(8)]);
        assert_eq!(fits, None);
        assert!(problems[0].contains("no NVIDIA GPU found"), "{problems:?}");
    }
}
