//! getrusage for the benchmarks' CPU and peak-memory figures. Shared by the benches of several
//! crates with `#[path = "…/benches/support/rusage.rs"] mod rusage;`.

#![allow(dead_code)]

use std::time::Duration;

pub fn rusage(who: libc::c_int) -> libc::rusage {
    // SAFETY: getrusage fills the struct it is given; zeroed is a valid rusage.
    unsafe {
        let mut u: libc::rusage = std::mem::zeroed();
        assert_eq!(libc::getrusage(who, &mut u), 0);
        u
    }
}

/// User + system time.
pub fn cpu(who: libc::c_int) -> Duration {
    let u = rusage(who);
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(u.ru_utime) + tv(u.ru_stime)
}

/// Peak resident set size, KiB.
pub fn maxrss(who: libc::c_int) -> i64 {
    rusage(who).ru_maxrss
}
