//! How sizes read in output: decimal units, one decimal place, like `du -h --si` and cargo.

/// `6938078334` → `6.9 GB`; `110` → `110 B`.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 999.95 {
            break;
        }
        value /= 1000.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

/// Memory amounts read in binary units, as GPU and RAM sizes are quoted: `8.0 GiB`.
pub fn human_memory(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["KiB", "MiB", "GiB", "TiB", "PiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    let mut value = bytes as f64;
    let mut unit = "B";
    for u in UNITS {
        if value < 1023.95 {
            break;
        }
        value /= 1024.0;
        unit = u;
    }
    format!("{value:.1} {unit}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_like_du_si() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1000), "1.0 kB");
        assert_eq!(human_bytes(6_938_078_334), "6.9 GB");
        assert_eq!(human_bytes(1_817_888_431), "1.8 GB");
        assert_eq!(human_bytes(999_960), "1.0 MB");
    }

    #[test]
    fn memory_reads_in_binary_units() {
        assert_eq!(human_memory(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(human_memory(512), "512 B");
    }
}
