//! Whether the process that wrote an entry still runs: its pid *and* its start time (from
//! `/proc`), so a reused pid does not make a dead controller look alive.

use std::io;

use super::record::EntryRecord;
use crate::process::{hostname, read_stat};

/// Whether the process that wrote the entry still runs (same pid *and* same start time).
pub(super) fn owner_alive(record: &EntryRecord) -> bool {
    if record.hostname != hostname() {
        // A state folder shared between hosts: we cannot see that process; leave it alone.
        return true;
    }
    match (read_stat(record.pid), record.pid_start) {
        (Some((state, start)), recorded) => {
            let zombie = state == 'Z' || state == 'X';
            !zombie && recorded.is_none_or(|r| r == start)
        }
        (None, _) if std::path::Path::new("/proc/self/stat").exists() => false,
        // No /proc: fall back to "a process with that pid exists".
        // SAFETY: signal 0 only checks existence and permission.
        (None, _) => unsafe {
            libc::kill(record.pid as libc::pid_t, 0) == 0
                || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
        },
    }
}

pub(super) fn process_start(pid: u32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
}
