//! Recovery at start-up: entries whose owner process is gone are rolled back (undo actions
//! in reverse order, a script's leftover process group ended) and closed as `interrupted`.

use std::fs::OpenOptions;
use std::io;

use camino::{Utf8Path, Utf8PathBuf};

use super::entry::{Journal, JournalEntry};
use super::error::JournalError;
use super::owner::owner_alive;
use super::record::*;
use crate::process::read_stat;

/// The undo actions the journal cannot do by itself: they need the operation code (a
/// restore's snapshot) or the instance store. A closure is a handler that only puts snapshots
/// back.
pub trait UndoHandler {
    /// Puts `instance` back from `snapshot` ([`UndoAction::RestoreSnapshot`]).
    fn restore_snapshot(&mut self, snapshot: &Utf8Path, instance: &str) -> Result<(), String>;

    /// Drops a database and user an install created ([`UndoAction::DropDatabase`]).
    fn drop_database(
        &mut self,
        created: &crate::database::provision::CreatedDatabase,
    ) -> Result<(), String> {
        Err(format!(
            "this recovery cannot drop database {} and user {} on server {}; drop them by hand",
            created.database, created.login, created.server
        ))
    }

    /// Removes the record of `instance` ([`UndoAction::Unregister`]).
    fn unregister(&mut self, instance: &str) -> Result<(), String> {
        Err(format!(
            "this recovery cannot unregister instance {instance}; run `aps-controller instance remove {instance}`"
        ))
    }

    /// Puts the record of `instance` back from the saved copy ([`UndoAction::RestoreRecord`]).
    fn restore_record(&mut self, instance: &str, copy: &Utf8Path) -> Result<(), String> {
        Err(format!(
            "this recovery cannot put the record of instance {instance} back from {copy}"
        ))
    }
}

impl<F: FnMut(&Utf8Path, &str) -> Result<(), String>> UndoHandler for F {
    fn restore_snapshot(&mut self, snapshot: &Utf8Path, instance: &str) -> Result<(), String> {
        self(snapshot, instance)
    }
}

/// Does one undo action that needs nothing but the file system (`None` for the others, which
/// the caller's [`UndoHandler`] does).
pub(crate) fn undo_on_disk(action: &UndoAction) -> Option<Result<(), String>> {
    Some(match action {
        UndoAction::DeleteFile(path) => remove_missing_ok(std::fs::remove_file(path)),
        UndoAction::DeleteDir(path) => remove_missing_ok(std::fs::remove_dir_all(path)),
        UndoAction::RemoveEntry { dir, name } => remove_entry(dir, name),
        UndoAction::RemoveEmptyDir { dir, name } => remove_empty_dir(dir, name),
        UndoAction::RestoreSnapshot { .. }
        | UndoAction::Unregister { .. }
        | UndoAction::DropDatabase(_)
        | UndoAction::RestoreRecord { .. } => return None,
    })
}

/// [`UndoAction::RemoveEntry`]: a folder that is gone (or never was made) is fine.
fn remove_entry(dir: &Utf8Path, name: &str) -> Result<(), String> {
    let Some(fd) = open_parent(dir, name)? else {
        return Ok(());
    };
    crate::archive::remove_at(std::os::fd::AsFd::as_fd(&fd), name.as_bytes())
        .map_err(|e| format!("{dir}/{name}: {e}"))
}

/// [`UndoAction::RemoveEmptyDir`]: gone is fine, and so is a folder something still holds.
fn remove_empty_dir(dir: &Utf8Path, name: &str) -> Result<(), String> {
    let Some(fd) = open_parent(dir, name)? else {
        return Ok(());
    };
    match rustix::fs::unlinkat(&fd, name, rustix::fs::AtFlags::REMOVEDIR) {
        Ok(()) | Err(rustix::io::Errno::NOENT) | Err(rustix::io::Errno::NOTEMPTY) => Ok(()),
        Err(e) => Err(format!("{dir}/{name}: {e}")),
    }
}

/// `dir` opened without following a symlink, for the one `name` inside it an undo removes;
/// `None` when `dir` is gone (so is `name`).
fn open_parent(dir: &Utf8Path, name: &str) -> Result<Option<std::os::fd::OwnedFd>, String> {
    if name.is_empty() || name.contains('/') || name == "." || name == ".." {
        return Err(format!("refused: {name:?} is not a name inside {dir}"));
    }
    match crate::archive::open_dir_nofollow(dir.as_std_path()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(format!("{dir}: {e}")),
    }
}

impl Journal {
    /// Rolls back every entry whose owner process is gone: undo actions in reverse order
    /// (`RestoreSnapshot` through `restore_snapshot(snapshot, instance)`), then the entry is
    /// closed as `interrupted`. Returns what was done, for the caller to print.
    ///
    /// A failed undo action does not stop the others; it is reported and recorded in the
    /// closed entry, and nothing is deleted that a person would need (snapshots are never
    /// deleted here).
    pub fn recover_interrupted(
        &self,
        restore_snapshot: impl FnMut(&Utf8Path, &str) -> Result<(), String>,
    ) -> Result<RecoveryReport, JournalError> {
        self.recover_interrupted_with(restore_snapshot)
    }

    /// [`Journal::recover_interrupted`] with a handler for every undo action the journal
    /// cannot do by itself (snapshots, records).
    pub fn recover_interrupted_with(
        &self,
        mut handler: impl UndoHandler,
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
                    UndoAction::DeleteDir(path) if kept.iter().any(|s| s.starts_with(path)) => {
                        let snapshot = kept.iter().find(|s| s.starts_with(path));
                        Err(format!(
                            "kept: it holds the safety snapshot {}, which could not be put back",
                            snapshot.map(|s| s.as_str()).unwrap_or_default()
                        ))
                    }
                    UndoAction::RestoreSnapshot { snapshot, instance } => {
                        let result = handler.restore_snapshot(snapshot, instance);
                        if result.is_err() {
                            kept.push(snapshot.clone());
                        }
                        result
                    }
                    UndoAction::Unregister { instance } => handler.unregister(instance),
                    UndoAction::DropDatabase(created) => handler.drop_database(created),
                    UndoAction::RestoreRecord { instance, copy } => {
                        handler.restore_record(instance, copy)
                    }
                    other => undo_on_disk(other).unwrap_or(Ok(())),
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

pub(super) fn remove_missing_ok(result: io::Result<()>) -> Result<(), String> {
    match result {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e.to_string()),
        _ => Ok(()),
    }
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

/// The file, in an operation's work folder, where the runner records the process group of
/// the script it runs ([`crate::runner::ProcessSpec::record_group_in`]).
pub const SCRIPT_GROUP_FILE: &str = "script.pgid";

/// Kills the process group recorded in `file`, if its leader (the script, killed with the
/// controller) is gone. While any member lives, Linux never hands out the group's id as a new
/// pid, so a live process with that pid means the group is over and the id reused: left alone.
pub(super) fn end_leftover_group(file: &Utf8Path) {
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
