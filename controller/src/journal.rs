//! The operation journal: what to undo if the controller is killed mid-operation
//! (docs/scripts.md, "Destination and rollback").
//!
//! Every operation writes `<journal>/<id>.json` before it starts (kind, instance, start time,
//! pid) and registers each undo action *before* doing the thing it undoes, so the entry on disk
//! always covers what has been done. Writes are atomic: temp file, fsync, rename, fsync folder.
//!
//! - [`JournalEntry::finish_ok`]: the entry file is removed and a line appended to
//!   `<journal>/journal.log` (JSON lines).
//! - [`JournalEntry::finish_failed`]: the caller has rolled back itself; the entry moves to
//!   `<journal>/closed/` with the message (kept for a person to read), and a log line.
//! - [`Journal::recover_interrupted`]: entries whose owner process is gone are rolled back —
//!   undo actions in reverse order — and closed as `interrupted` the same way.
//!
//! "Owner gone" is decided from the pid *and* the process's start time (from `/proc`), so a
//! reused pid does not make a dead controller look alive. An entry whose owner is alive (another
//! controller's running operation, or one of this process) is never touched. An entry dropped
//! without `finish_*` stays open on purpose: that is what a crash looks like.

use std::fs::{File, OpenOptions};
use std::hash::{BuildHasher, Hasher};
use std::io::{self, Write};

use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::destination::sync_dir;
use crate::process::{hostname, read_stat};

/// Folder under the journal folder where failed and interrupted entries are kept.
pub const CLOSED_DIR: &str = "closed";
/// JSON-lines log of every closed entry, in the journal folder.
pub const LOG_FILE: &str = "journal.log";

/// What kind of operation an entry is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OperationKind {
    Backup,
    Restore,
    Migrate,
    /// Running the package's verification-script: journaled so that the script's private HOME
    /// is removed even when the controller is killed meanwhile.
    Verify,
    /// The policy commands, recorded for `aps-controller log` (they undo nothing themselves:
    /// the backups and restores they run have their own entries). `run`: all its instances.
    Run,
    /// The off-site copy of one backup, after `run` made it.
    Upload,
    /// Retention applied by `prune`.
    Prune,
    /// A restore drill of an instance into its staging instance.
    Drill,
}

impl std::fmt::Display for OperationKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OperationKind::Backup => "backup",
            OperationKind::Restore => "restore",
            OperationKind::Migrate => "migrate",
            OperationKind::Verify => "verify",
            OperationKind::Run => "run",
            OperationKind::Upload => "upload",
            OperationKind::Prune => "prune",
            OperationKind::Drill => "drill",
        })
    }
}

/// One thing to undo. New kinds of undo are added here as operations need them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UndoAction {
    /// Delete a temporary file (a missing file is fine).
    DeleteFile(Utf8PathBuf),
    /// Delete a temporary folder and everything in it (a missing folder is fine).
    DeleteDir(Utf8PathBuf),
    /// Put an instance back from the safety snapshot a restore took; done by the operation
    /// code through the callback given to [`Journal::recover_interrupted`].
    RestoreSnapshot {
        snapshot: Utf8PathBuf,
        instance: String,
    },
}

impl std::fmt::Display for UndoAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UndoAction::DeleteFile(p) => write!(f, "delete file {p}"),
            UndoAction::DeleteDir(p) => write!(f, "delete folder {p}"),
            UndoAction::RestoreSnapshot { snapshot, instance } => {
                write!(f, "put instance {instance} back from snapshot {snapshot}")
            }
        }
    }
}

/// How an entry was closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    Running,
    Ok,
    Failed,
    Interrupted,
}

/// An undo action and what came of it during recovery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UndoOutcome {
    pub action: UndoAction,
    /// `None` when it succeeded.
    pub error: Option<String>,
}

/// The content of an entry file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EntryRecord {
    pub id: String,
    pub kind: OperationKind,
    pub instance: String,
    pub started: Timestamp,
    pub pid: u32,
    /// The owner's start time in clock ticks since boot (`/proc/<pid>/stat`), to tell a reused
    /// pid from the owner.
    pub pid_start: Option<u64>,
    pub hostname: String,
    /// In the order registered; undone in reverse.
    pub undo: Vec<UndoAction>,
    pub outcome: Outcome,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub finished: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub undone: Vec<UndoOutcome>,
}

/// How much history the journal keeps (docs/interruptions.md, "The journal's history").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct JournalLimits {
    /// `journal.log` is rotated to `journal.log.1` (older ones shift to `.2`, …) before a
    /// line would make it larger than this.
    pub log_max_bytes: u64,
    /// Rotated logs kept (`journal.log.1` … `journal.log.N`); older ones are deleted.
    pub log_keep: u32,
    /// Closed entries (`closed/*.json`) older than this are deleted when the controller
    /// starts; their log lines stay as long as the log files do.
    pub closed_max_age: std::time::Duration,
}

impl Default for JournalLimits {
    fn default() -> Self {
        JournalLimits {
            log_max_bytes: 4 * 1024 * 1024,
            log_keep: 4,
            closed_max_age: std::time::Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// The journal folder (`<state>/journal`).
#[derive(Debug, Clone)]
pub struct Journal {
    dir: Utf8PathBuf,
    limits: JournalLimits,
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

    fn entry_path(&self, id: &str) -> Utf8PathBuf {
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

    /// Rolls back every entry whose owner process is gone: undo actions in reverse order
    /// (`RestoreSnapshot` through `restore_snapshot(snapshot, instance)`), then the entry is
    /// closed as `interrupted`. Returns what was done, for the caller to print.
    ///
    /// A failed undo action does not stop the others; it is reported and recorded in the
    /// closed entry, and nothing is deleted that a person would need (snapshots are never
    /// deleted here).
    pub fn recover_interrupted(
        &self,
        mut restore_snapshot: impl FnMut(&Utf8Path, &str) -> Result<(), String>,
    ) -> Result<RecoveryReport, JournalError> {
        let mut report = RecoveryReport::default();
        if !self.dir.exists() {
            return Ok(report);
        }
        // Two controllers starting at once must not undo the same entry twice.
        let guard_path = self.dir.join(".recovery.lock");
        let guard = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&guard_path)
            .map_err(JournalError::io(&guard_path))?;
        guard.lock().map_err(JournalError::io(&guard_path))?;

        for entry in self.open_entries()? {
            let record = match entry {
                Ok(r) => r,
                Err(unreadable) => {
                    report.unreadable.push(unreadable);
                    continue;
                }
            };
            if owner_alive(&record) {
                report.still_running.push(record.id);
                continue;
            }
            let mut record = record;
            // First stop what the dead controller's scripts left running, so nothing writes
            // while the rest is undone.
            for action in &record.undo {
                if let UndoAction::DeleteDir(dir) = action {
                    end_leftover_group(&dir.join(SCRIPT_GROUP_FILE));
                }
            }
            // Snapshots that could not be put back: the folders holding them are kept.
            let mut kept: Vec<Utf8PathBuf> = Vec::new();
            for action in record.undo.iter().rev() {
                let result = match action {
                    UndoAction::DeleteFile(path) => remove_missing_ok(std::fs::remove_file(path)),
                    UndoAction::DeleteDir(path) => {
                        match kept.iter().find(|s| s.starts_with(path)) {
                            Some(snapshot) => Err(format!(
                                "kept: it holds the safety snapshot {snapshot}, which could not be put back"
                            )),
                            None => remove_missing_ok(std::fs::remove_dir_all(path)),
                        }
                    }
                    UndoAction::RestoreSnapshot { snapshot, instance } => {
                        let result = restore_snapshot(snapshot, instance);
                        if result.is_err() {
                            kept.push(snapshot.clone());
                        }
                        result
                    }
                };
                record.undone.push(UndoOutcome {
                    action: action.clone(),
                    error: result.err(),
                });
            }
            let path = self.entry_path(&record.id);
            let entry = JournalEntry {
                path,
                dir: self.dir.clone(),
                limits: self.limits,
                record,
            };
            let closed = entry.close(Outcome::Interrupted, None)?;
            report.entries.push(closed);
        }
        // Temp files of an entry write that was cut short are garbage.
        if let Ok(read) = std::fs::read_dir(&self.dir) {
            for item in read.flatten() {
                let name = item.file_name();
                let name = name.to_string_lossy();
                if name.starts_with('.') && name.ends_with(".json.tmp") {
                    let _ = std::fs::remove_file(item.path());
                }
            }
        }
        drop(guard);
        Ok(report)
    }
}

fn remove_missing_ok(result: io::Result<()>) -> Result<(), String> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    }
}

/// The open entry of a running operation. Dropping it without `finish_*` leaves it open, to
/// be rolled back by the next start of the controller (as a crash would).
#[derive(Debug)]
pub struct JournalEntry {
    path: Utf8PathBuf,
    dir: Utf8PathBuf,
    limits: JournalLimits,
    record: EntryRecord,
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

    fn close(
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

    fn persist(&self) -> Result<(), JournalError> {
        write_atomic(&self.path, &self.record)
    }
}

/// Writes `value` as JSON to `path` so that `path` holds either the old or the new content.
fn write_atomic(path: &Utf8Path, value: &impl Serialize) -> Result<(), JournalError> {
    let dir = path.parent().unwrap_or(Utf8Path::new("."));
    let name = path.file_name().unwrap_or("entry.json");
    let tmp = dir.join(format!(".{name}.tmp"));
    let text = serde_json::to_vec_pretty(value).map_err(|e| JournalError::Io {
        path: path.to_owned(),
        source: io::Error::other(e),
    })?;
    let mut file = File::create(&tmp).map_err(JournalError::io(&tmp))?;
    file.write_all(&text).map_err(JournalError::io(&tmp))?;
    file.sync_all().map_err(JournalError::io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(JournalError::io(path))?;
    sync_dir(dir).map_err(JournalError::io(dir))
}

/// Rotated logs looked at by [`Journal::history`] even when fewer are kept now.
const MAX_ROTATED_SCAN: u32 = 16;

fn append_log(
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
fn rotate(dir: &Utf8Path, keep: u32) -> Result<(), JournalError> {
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

/// An entry closed by recovery.
#[derive(Debug, Clone)]
pub struct RecoveredEntry {
    pub record: EntryRecord,
    /// Where the closed entry is kept.
    pub closed_path: Utf8PathBuf,
}

impl RecoveredEntry {
    /// Whether every undo action succeeded.
    pub fn fully_undone(&self) -> bool {
        self.record.undone.iter().all(|u| u.error.is_none())
    }
}

impl std::fmt::Display for RecoveredEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let r = &self.record;
        write!(
            f,
            "rolled back the interrupted {} of instance {} (started {} by pid {}, journal {})",
            r.kind, r.instance, r.started, r.pid, r.id
        )?;
        if r.undone.is_empty() {
            write!(f, ": nothing to undo")?;
        }
        for (i, u) in r.undone.iter().enumerate() {
            let sep = if i == 0 { ": " } else { "; " };
            match &u.error {
                None => write!(f, "{sep}{}", u.action)?,
                Some(e) => write!(f, "{sep}FAILED to {}: {e}", u.action)?,
            }
        }
        if !self.fully_undone() {
            write!(f, " (record kept in {})", self.closed_path)?;
        }
        Ok(())
    }
}

/// An entry file that could not be read; left in place for a person.
#[derive(Debug, Clone)]
pub struct UnreadableEntry {
    pub path: Utf8PathBuf,
    pub error: String,
}

/// What [`Journal::recover_interrupted`] did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// Entries rolled back and closed as `interrupted`.
    pub entries: Vec<RecoveredEntry>,
    /// Ids of entries whose owner is alive (left alone).
    pub still_running: Vec<String>,
    /// Entry files that could not be parsed (left alone).
    pub unreadable: Vec<UnreadableEntry>,
}

impl RecoveryReport {
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty() && self.unreadable.is_empty()
    }
}

/// Whether the process that wrote the entry still runs (same pid *and* same start time).
fn owner_alive(record: &EntryRecord) -> bool {
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

fn process_start(pid: u32) -> Option<u64> {
    read_stat(pid).map(|(_, start)| start)
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

/// The journal could not be written or read.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    #[error("operation journal {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

impl JournalError {
    fn io(path: &Utf8Path) -> impl FnOnce(io::Error) -> JournalError + '_ {
        move |source| JournalError::Io {
            path: path.to_owned(),
            source,
        }
    }
}

/// The file, in an operation's work folder, where the runner records the process group of
/// the script it runs ([`crate::runner::ProcessSpec::record_group_in`]).
pub const SCRIPT_GROUP_FILE: &str = "script.pgid";

/// Kills the process group recorded in `file`, if its leader (the script, killed with the
/// controller) is gone. While any member lives, Linux never hands out the group's id as a new
/// pid, so a live process with that pid means the group is over and the id reused: left alone.
fn end_leftover_group(file: &Utf8Path) {
    let Ok(text) = std::fs::read_to_string(file) else {
        return;
    };
    let Ok(pgid) = text.trim().parse::<libc::pid_t>() else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // A zombie leader (nobody reaped it, e.g. no init in a container) still owns the id.
    let leader_running =
        read_stat(pgid as u32).is_some_and(|(state, _)| !matches!(state, 'Z' | 'X'));
    if leader_running {
        return;
    }
    // SAFETY: kill has no memory effects; ESRCH (no such group) is the common, harmless case.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_alive_and_stat_parses() {
        let (state, start) = read_stat(std::process::id()).unwrap();
        assert!(state != 'Z');
        assert!(start > 0);
    }

    #[test]
    fn undo_action_json_shape() {
        let json = serde_json::to_string(&UndoAction::RestoreSnapshot {
            snapshot: "/s/snap.tar".into(),
            instance: "blog".into(),
        })
        .unwrap();
        assert_eq!(
            json,
            r#"{"restore_snapshot":{"snapshot":"/s/snap.tar","instance":"blog"}}"#
        );
        let json = serde_json::to_string(&UndoAction::DeleteFile("/t/x".into())).unwrap();
        assert_eq!(json, r#"{"delete_file":"/t/x"}"#);
    }
}
