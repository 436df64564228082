//! What the journal writes and where: an entry's record (operation, instance, owner, undo
//! actions), how each undo action ended, the folder's layout and how much history it keeps.

use camino::Utf8PathBuf;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

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
    /// A new instance made from a package: everything it made is undone unless it finished.
    Install,
    /// `configure configure` with changed settings: an interrupted one is closed with its
    /// script's process group ended; the record keeps the old settings (they are written last).
    Configure,
    /// `configure enable`, likewise: the record keeps the old status.
    Enable,
    /// `configure disable`, likewise.
    Disable,
    /// An instance moved to a newer version of its package: put back whole from its safety
    /// snapshot unless it finished.
    Upgrade,
    /// An instance removed: `configure remove`, then its files, databases and record. Its
    /// undo list is written whole at the point of no return and *finishes* the removal.
    Remove,
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
            OperationKind::Install => "install",
            OperationKind::Configure => "configure",
            OperationKind::Enable => "enable",
            OperationKind::Disable => "disable",
            OperationKind::Upgrade => "upgrade",
            OperationKind::Remove => "remove",
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
    /// Remove `name` (with everything under it) from the folder `dir`, by descriptor: `dir` is
    /// opened without following a symlink a tenant could have placed, and nothing under it is
    /// followed either (an install's files in a tenant's web root).
    RemoveEntry { dir: Utf8PathBuf, name: String },
    /// Drop a database and its user an install created (`server` names them in
    /// controller.toml); done through the recovery handler. Journaled with the names chosen,
    /// before the create: dropping what was never made is a no-op.
    DropDatabase(crate::database::provision::CreatedDatabase),
    /// Remove the record of `instance` from the registry (an install recorded it but was
    /// stopped before it could close its entry); done through the recovery handler.
    Unregister { instance: String },
    /// Put the record of `instance` back as the one-record store at `copy` holds it (an
    /// upgrade's record, saved before it was replaced); done through the recovery handler.
    RestoreRecord { instance: String, copy: Utf8PathBuf },
    /// Remove the folder `name` of `dir` only when it is empty (a web root a removal empties
    /// of the install's files: a tenant's own files keep it); done by descriptor.
    RemoveEmptyDir { dir: Utf8PathBuf, name: String },
}

impl std::fmt::Display for UndoAction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            UndoAction::DeleteFile(p) => write!(f, "delete file {p}"),
            UndoAction::DeleteDir(p) => write!(f, "delete folder {p}"),
            UndoAction::RestoreSnapshot { snapshot, instance } => {
                write!(f, "put instance {instance} back from snapshot {snapshot}")
            }
            UndoAction::RemoveEntry { dir, name } => write!(f, "remove {name} from {dir}"),
            UndoAction::Unregister { instance } => write!(f, "unregister instance {instance}"),
            UndoAction::RestoreRecord { instance, copy } => {
                write!(f, "put the record of instance {instance} back from {copy}")
            }
            UndoAction::RemoveEmptyDir { dir, name } => {
                write!(f, "remove {name} from {dir} if it is empty")
            }
            UndoAction::DropDatabase(db) => write!(
                f,
                "drop database {} and user {} on server {}",
                db.database, db.login, db.server
            ),
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

/// Folder under the journal folder where failed and interrupted entries are kept.
pub const CLOSED_DIR: &str = "closed";
/// JSON-lines log of every closed entry, in the journal folder.
pub const LOG_FILE: &str = "journal.log";

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
