//! `journal.log`: one JSON line per closed entry, rotated beyond its size limit.

use std::fs::OpenOptions;
use std::io::{self, Write};

use camino::Utf8Path;

use super::error::JournalError;
use super::record::{EntryRecord, JournalLimits, LOG_FILE};
use crate::durable::sync_dir;

/// Rotated logs looked at by [`Journal::history`] even when fewer are kept now.
pub(super) const MAX_ROTATED_SCAN: u32 = 16;

pub(super) fn append_log(
    dir: &Utf8Path,
    limits: &JournalLimits,
    record: &EntryRecord,
) -> Result<(), JournalError> {
    let path = dir.join(LOG_FILE);
    let mut line = serde_json::to_vec(record).map_err(|e| JournalError::Io {
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    line.push(b'\n');
    // Rotation and appends of concurrent controllers are serialised by this lock.
    let lock_path = dir.join(".log.lock");
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(JournalError::io(&lock_path))?;
    lock.lock().map_err(JournalError::io(&lock_path))?;
    let size = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
    if size > 0 && size + line.len() as u64 > limits.log_max_bytes {
        rotate(dir, limits.log_keep)?;
    }
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .map_err(JournalError::io(&path))?;
    // One write call with O_APPEND: lines of concurrent writers do not interleave.
    file.write_all(&line).map_err(JournalError::io(&path))?;
    file.sync_data().map_err(JournalError::io(&path))?;
    drop(lock);
    Ok(())
}

/// `journal.log` → `journal.log.1` → `.2` …; the oldest beyond `keep` is deleted.
pub(super) fn rotate(dir: &Utf8Path, keep: u32) -> Result<(), JournalError> {
    let numbered = |n: u32| dir.join(format!("{LOG_FILE}.{n}"));
    let _ = std::fs::remove_file(numbered(keep.max(1)));
    for n in (1..keep.max(1)).rev() {
        let from = numbered(n);
        if from.exists() {
            std::fs::rename(&from, numbered(n + 1)).map_err(JournalError::io(&from))?;
        }
    }
    let current = dir.join(LOG_FILE);
    if keep == 0 {
        std::fs::remove_file(&current).map_err(JournalError::io(&current))?;
    } else {
        std::fs::rename(&current, numbered(1)).map_err(JournalError::io(&current))?;
    }
    sync_dir(dir).map_err(JournalError::io(dir))
}
