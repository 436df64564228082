//! A full disk in words: sizes for people, and how a full disk or quota shows in an OS error
//! code or a tool's stderr.

/// `1.5 GiB`, `300.0 KiB`, `12 B`: every size shown to a person (messages and the CLI's
/// text output), in binary units with one decimal.
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if n < 1024 {
        return format!("{n} B");
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{value:.1} {}", UNITS[unit])
}

/// Whether an OS error code means a full disk or quota.
pub(super) fn is_no_space(code: Option<i32>) -> bool {
    matches!(code, Some(libc::ENOSPC | libc::EDQUOT | libc::EFBIG))
}

/// What a tool or script prints when its disk is full (its own error is only an exit code):
/// the C library's texts for ENOSPC, EDQUOT and EFBIG, MariaDB/MySQL's "table is full" (1114)
/// and PostgreSQL's "could not extend file" (its data folder is full).
pub(super) fn says_no_space(stderr: &str) -> bool {
    stderr.contains("No space left on device")
        || stderr.contains("Disk quota exceeded")
        || stderr.contains("File too large")
        || stderr.contains("ERROR 1114")
        || stderr.contains("could not extend file")
}
