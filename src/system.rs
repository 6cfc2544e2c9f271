//! Facts about this machine that decide whether a plan fits: free disk, GPUs, memory.
//!
//! Gathered once per command and handed to the planner as data, so planning stays pure and
//! tests can describe any machine. A machine without an NVIDIA driver is an ordinary case:
//! NVML fails to initialise in well under a millisecond and the facts say "no NVIDIA GPU
//! found" instead of failing.

use std::path::Path;

use serde::Serialize;

/// What the planner may know about the machine.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SystemFacts {
    /// Bytes available to this user on the filesystem of the store.
    pub free_disk: Option<u64>,
    /// The directory whose filesystem `free_disk` describes.
    pub disk_path: String,
    pub gpus: GpuFacts,
    /// Total system memory in bytes, when known.
    pub ram_total: Option<u64>,
}

/// NVIDIA GPUs as NVML reports them.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum GpuFacts {
    Found { gpus: Vec<Gpu> },
    None { reason: String },
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Gpu {
    pub index: u32,
    pub name: String,
    pub memory_total: u64,
    pub memory_free: u64,
}

impl GpuFacts {
    /// The most memory any single GPU has, if there is one.
    pub fn largest_memory(&self) -> Option<u64> {
        match self {
            GpuFacts::Found { gpus } => gpus.iter().map(|g| g.memory_total).max(),
            GpuFacts::None { .. } => None,
        }
    }
}

/// Reads the facts for a store at `store_root` (which need not exist yet).
pub fn gather(store_root: &Path) -> SystemFacts {
    let existing = store_root
        .ancestors()
        .find(|p| p.exists())
        .unwrap_or(Path::new("."));
    SystemFacts {
        free_disk: fs4::available_space(existing).ok(),
        disk_path: existing.display().to_string(),
        gpus: gpus(),
        ram_total: ram_total(),
    }
}

/// NVML's view of the GPUs, or why there is none.
pub fn gpus() -> GpuFacts {
    let nvml = match nvml_wrapper::Nvml::init() {
        Ok(n) => n,
        Err(nvml_wrapper::error::NvmlError::LibloadingError(_)) => {
            return GpuFacts::None {
                reason: "no NVIDIA GPU found (the NVIDIA driver is not installed)".to_owned(),
            };
        }
        Err(e) => {
            return GpuFacts::None {
                reason: format!("no NVIDIA GPU found (NVML: {e})"),
            };
        }
    };
    let count = match nvml.device_count() {
        Ok(c) => c,
        Err(e) => {
            return GpuFacts::None {
                reason: format!("NVML could not count GPUs: {e}"),
            };
        }
    };
    let gpus: Vec<Gpu> = (0..count)
        .filter_map(|index| {
            let device = nvml.device_by_index(index).ok()?;
            let memory = device.memory_info().ok()?;
            Some(Gpu {
                index,
                name: device.name().unwrap_or_else(|_| format!("GPU {index}")),
                memory_total: memory.total,
                memory_free: memory.free,
            })
        })
        .collect();
    if gpus.is_empty() {
        GpuFacts::None {
            reason: "no NVIDIA GPU found".to_owned(),
        }
    } else {
        GpuFacts::Found { gpus }
    }
}

/// Total memory from `/proc/meminfo` (Linux), the only figure the planner uses.
fn ram_total() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_machine_without_a_driver_reports_no_gpu_instead_of_failing() {
        let facts = gather(Path::new("/nonexistent/store/dir"));
        assert!(
            facts.free_disk.is_some(),
            "free space of the nearest existing ancestor"
        );
        if let GpuFacts::None { reason } = &facts.gpus {
            assert!(reason.contains("GPU"), "{reason}");
        }
    }
}
