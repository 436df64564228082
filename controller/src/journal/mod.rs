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

mod entry;
mod error;
mod log;
mod owner;
mod record;
mod recover;

pub use self::entry::{Journal, JournalEntry};
pub use self::error::JournalError;
pub use self::record::{
    CLOSED_DIR, EntryRecord, JournalLimits, LOG_FILE, OperationKind, Outcome, UndoAction,
    UndoOutcome,
};
pub(crate) use self::recover::undo_on_disk;
pub use self::recover::{
    RecoveredEntry, RecoveryReport, SCRIPT_GROUP_FILE, UndoHandler, UnreadableEntry,
};

#[cfg(test)]
mod tests;
