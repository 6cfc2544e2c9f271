//! How sizes read in output: binary units with one decimal place (`6.5 GiB`, `32.1 KiB`,
//! `110 B`), as cargo and uv print them, for files, memory, rates and totals alike. Every
//! size a person reads (plan, progress bars, summaries, storage, gc, verify, doctor) goes
//! through [`human_bytes`]; JSON carries plain byte counts.

use bytesize::ByteSize;

/// `6938078334` → `6.5 GiB`; `110` → `110 B` (bytesize's IEC display).
pub fn human_bytes(bytes: u64) -> String {
    ByteSize(bytes).display().iec().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_read_in_binary_units_with_one_decimal() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(33_673), "32.9 KiB");
        assert_eq!(human_bytes(6_938_078_334), "6.5 GiB");
        assert_eq!(human_bytes(8 * 1024 * 1024 * 1024), "8.0 GiB");
        assert_eq!(human_bytes(u64::MAX), "16.0 EiB");
    }
}
