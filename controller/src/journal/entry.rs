//! The journal folder and its open entries: begin an operation, register undo actions before
//! doing what they undo, close the entry (removed on success, kept under `closed/` otherwise),
//! read the history.

use std::hash::{BuildHasher, Hasher};
use std::io;

use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::Serialize;

use super::error::JournalError;
use super::log::{MAX_ROTATED_SCAN, append_log};
use super::owner::process_start;
use super::record::*;
use super::recover::{RecoveredEntry, UnreadableEntry};
use crate::durable::{self, TempName, sync_dir};
use crate::process::hostname;

/// The journal folder (`<state>/journal`).
#[derive(Debug, Clone)]
pub struct Journal {
    pub(super) dir: Utf8PathBuf,
    pub(super) limits: JournalLimits,
}

impl Journal {
    pub fn new(dir: impl Into<Utf8PathBuf>) -> Self {
        Journal {
            dir: dir.into(),
            limits: JournalLimits::default(),
        }
    }

    /// The same journal with other history limits.
    pub fn with_limits(mut self, limits: JournalLimits) -> Self {
        self.limits = limits;
        self
    }

    /// Every line of the log, oldest first (rotated files first), for `aps-controller log`.
    /// Lines that cannot be parsed are skipped.
    pub fn history(&self) -> Result<Vec<EntryRecord>, JournalError> {
        let mut files: Vec<Utf8PathBuf> = (1..=self.limits.log_keep.max(MAX_ROTATED_SCAN))
            .rev()
            .map(|n| self.dir.join(format!("{LOG_FILE}.{n}")))
            .collect();
        files.push(self.dir.join(LOG_FILE));
        let mut records = Vec::new();
        for path in files {
            let text = match std::fs::read_to_string(&path) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(JournalError::io(&path)(e)),
            };
            records.extend(
                text.lines()
                    .filter_map(|l| serde_json::from_str::<EntryRecord>(l).ok()),
            );
        }
        Ok(records)
    }

    /// Deletes closed entries older than the limit; returns how many went.
    pub fn prune_closed(&self) -> usize {
        let closed = self.dir.join(CLOSED_DIR);
        let Ok(read) = std::fs::read_dir(&closed) else {
            return 0;
        };
        let now = std::time::SystemTime::now();
        let mut removed = 0;
        for item in read.flatten() {
            let old = item
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| now.duration_since(t).ok())
                .is_some_and(|age| age > self.limits.closed_max_age);
            let name = item.file_name();
            if old
                && name.to_string_lossy().ends_with(".json")
                && std::fs::remove_file(item.path()).is_ok()
            {
                removed += 1;
            }
        }
        removed
    }

    pub fn dir(&self) -> &Utf8Path {
        &self.dir
    }

    /// Writes a new entry for an operation about to start.
    pub fn begin(&self, kind: OperationKind, instance: &str) -> Result<JournalEntry, JournalError> {
        self.begin_with(kind, instance, |_| Vec::new())
    }

    /// [`Journal::begin`] with the first undo actions (which may name paths derived from the
    /// entry's id) persisted in the same write: each persist costs two fsyncs.
    pub fn begin_with(
        &self,
        kind: OperationKind,
        instance: &str,
        undo: impl FnOnce(&str) -> Vec<UndoAction>,
    ) -> Result<JournalEntry, JournalError> {
        std::fs::create_dir_all(&self.dir).map_err(JournalError::io(&self.dir))?;
        let started = Timestamp::now();
        let pid = std::process::id();
        let id = loop {
            let id = format!(
                "{}-{pid}-{:08x}",
                started.strftime("%Y%m%dT%H%M%SZ"),
                random_u32()
            );
            if !self.entry_path(&id).exists() {
                break id;
            }
        };
        let undo = undo(&id);
        let record = EntryRecord {
            id,
            kind,
            instance: instance.to_owned(),
            started,
            pid,
            pid_start: process_start(pid),
            hostname: hostname(),
            undo,
            outcome: Outcome::Running,
            finished: None,
            message: None,
            undone: Vec::new(),
        };
        let entry = JournalEntry {
            path: self.entry_path(&record.id),
            dir: self.dir.clone(),
            limits: self.limits,
            record,
        };
        entry.persist()?;
        Ok(entry)
    }

    pub(super) fn entry_path(&self, id: &str) -> Utf8PathBuf {
        self.dir.join(format!("{id}.json"))
    }

    /// Entries still open (running or abandoned), sorted by id (that is, by start time).
    pub fn open_entries(&self) -> Result<Vec<Result<EntryRecord, UnreadableEntry>>, JournalError> {
        let read = match std::fs::read_dir(&self.dir) {
            Ok(r) => r,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(JournalError::io(&self.dir)(e)),
        };
        let mut paths = Vec::new();
        for item in read {
            let item = item.map_err(JournalError::io(&self.dir))?;
            let Ok(name) = item.file_name().into_string() else {
                continue;
            };
            if name.ends_with(".json") && !name.starts_with('.') {
                paths.push(self.dir.join(name));
            }
        }
        paths.sort();
        Ok(paths
            .into_iter()
            .map(|path| {
                std::fs::read_to_string(&path)
                    .map_err(|e| e.to_string())
                    .and_then(|t| {
                        serde_json::from_str::<EntryRecord>(&t).map_err(|e| e.to_string())
                    })
                    .map_err(|error| UnreadableEntry { path, error })
            })
            .collect())
    }

    /// Closed entries (failed or interrupted, in `closed/`); unreadable ones are left out.
    pub fn closed_entries(&self) -> Vec<EntryRecord> {
        let Ok(read) = std::fs::read_dir(self.dir.join(CLOSED_DIR)) else {
            return Vec::new();
        };
        read.flatten()
            .filter(|item| item.file_name().to_string_lossy().ends_with(".json"))
            .filter_map(|item| std::fs::read_to_string(item.path()).ok())
            .filter_map(|text| serde_json::from_str::<EntryRecord>(&text).ok())
            .collect()
    }
}

/// The open entry of a running operation. Dropping it without `finish_*` leaves it open, to
/// be rolled back by the next start of the controller (as a crash would).
#[derive(Debug)]
pub struct JournalEntry {
    pub(super) path: Utf8PathBuf,
    pub(super) dir: Utf8PathBuf,
    pub(super) limits: JournalLimits,
    pub(super) record: EntryRecord,
}

impl JournalEntry {
    /// The entry id (time, pid, random): safe in file names.
    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn record(&self) -> &EntryRecord {
        &self.record
    }

    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// Registers an undo action and persists it; call it *before* doing what it undoes.
    pub fn add_undo(&mut self, action: UndoAction) -> Result<(), JournalError> {
        self.record.undo.push(action);
        if let Err(e) = self.persist() {
            self.record.undo.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Adds several undo actions in one write: a kill leaves all of them or none.
    pub fn add_undos(&mut self, actions: Vec<UndoAction>) -> Result<(), JournalError> {
        let before = self.record.undo.len();
        self.record.undo.extend(actions);
        if let Err(e) = self.persist() {
            self.record.undo.truncate(before);
            return Err(e);
        }
        Ok(())
    }

    /// The operation succeeded: the entry is removed and logged.
    pub fn finish_ok(self) -> Result<(), JournalError> {
        self.finish_ok_saying(None)
    }

    /// [`JournalEntry::finish_ok`] with what was done, for `log` (`uploaded … 1.2 MiB`).
    pub fn finish_ok_saying(self, message: Option<&str>) -> Result<(), JournalError> {
        let mut record = self.record;
        record.outcome = Outcome::Ok;
        record.finished = Some(Timestamp::now());
        record.message = message.map(str::to_owned);
        append_log(&self.dir, &self.limits, &record)?;
        std::fs::remove_file(&self.path).map_err(JournalError::io(&self.path))?;
        sync_dir(&self.dir).map_err(JournalError::io(&self.dir))
    }

    /// The operation failed and the caller rolled back what it did: the entry is kept in
    /// `closed/` with `message`, and logged.
    pub fn finish_failed(self, message: &str) -> Result<(), JournalError> {
        self.close(Outcome::Failed, Some(message)).map(drop)
    }

    pub(super) fn close(
        mut self,
        outcome: Outcome,
        message: Option<&str>,
    ) -> Result<RecoveredEntry, JournalError> {
        self.record.outcome = outcome;
        self.record.finished = Some(Timestamp::now());
        self.record.message = message.map(str::to_owned);
        let closed_dir = self.dir.join(CLOSED_DIR);
        std::fs::create_dir_all(&closed_dir).map_err(JournalError::io(&closed_dir))?;
        let closed_path = closed_dir.join(format!("{}.json", self.record.id));
        write_atomic(&closed_path, &self.record)?;
        append_log(&self.dir, &self.limits, &self.record)?;
        std::fs::remove_file(&self.path).map_err(JournalError::io(&self.path))?;
        sync_dir(&self.dir).map_err(JournalError::io(&self.dir))?;
        Ok(RecoveredEntry {
            record: self.record,
            closed_path,
        })
    }

    pub(super) fn persist(&self) -> Result<(), JournalError> {
        write_atomic(&self.path, &self.record)
    }
}

/// Writes `value` as JSON to `path` so that `path` holds either the old or the new content. The
/// temporary file is `.<random>.<name>.tmp`, which recovery removes when a crash left it.
pub(super) fn write_atomic(path: &Utf8Path, value: &impl Serialize) -> Result<(), JournalError> {
    let name = path.file_name().unwrap_or("entry.json");
    let text = serde_json::to_vec_pretty(value).map_err(|e| JournalError::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    let suffix = format!(".{name}.tmp");
    let temp = TempName {
        prefix: ".",
        suffix: &suffix,
    };
    durable::write_atomic(path, &text, 0o600, temp).map_err(|e| JournalError::Io {
        path: e.path,
        source: e.source,
    })
}

fn random_u32() -> u32 {
    // RandomState is seeded randomly per process and per instance: enough for a unique suffix.
    let mut h = std::hash::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    h.finish() as u32
}
