//! What crosses [`super::Store`] for a manual backup, a restore and a migration, whatever the
//! store's kind: the request, what the backup made, and why a store refused — neutral, so that
//! the service words a refusal without knowing which kind refused it.

use std::time::Duration;

use aps_controller::ErrorKind;
use aps_controller::error::OperationError;
use aps_controller::operation::BackupReport;
use aps_controller::operation::backup::BackupPlan;
use camino::Utf8PathBuf;
use serde::Serialize;

use super::snapshot::SnapshotInfo;
use crate::error::PanelError;
use crate::naming::Compression;
use crate::periodicity::Periodicity;
use crate::problem::Problem;

/// A manual backup into the store (`backup NAME` without a file), the request already checked.
#[derive(Debug, Clone)]
pub struct ManualBackup<'a> {
    pub instance: &'a str,
    /// `backup NAME`'s, or the one `instance remove` takes first.
    pub kind: ManualKind,
    pub timeout: Option<Duration>,
    /// `None` takes panel.toml's.
    pub compression: Option<Compression>,
    /// age public keys; `None` takes panel.toml's.
    pub recipients: Option<Vec<String>>,
    /// Only check and estimate: the plan is the answer.
    pub dry_run: bool,
}

/// Which backup on demand is asked: it names the backup file or tags the snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ManualKind {
    /// `backup NAME`: periodicity `manual`, counted by retention.
    #[default]
    Manual,
    /// The backup before `instance remove`: periodicity `final`, never removed by retention.
    Final,
}

impl ManualKind {
    pub fn periodicity(self) -> Periodicity {
        match self {
            ManualKind::Manual => Periodicity::Manual,
            ManualKind::Final => Periodicity::Final,
        }
    }
}

/// What a manual backup made.
#[derive(Debug)]
pub enum Outcome {
    /// An archive file, in the archive store or at the request's file.
    Archive(ArchiveBackup),
    /// One snapshot in a store of snapshots.
    Snapshot(SnapshotBackup),
    /// `dry_run`: nothing was written.
    Plan(Box<BackupPlan>),
}

/// An archive backup: the controller's report, the store's name for it and, for a file of the
/// request's, the record that makes the store list it.
#[derive(Debug, Serialize)]
pub struct ArchiveBackup {
    #[serde(flatten)]
    pub report: BackupReport,
    pub stored_as: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Utf8PathBuf>,
    /// Things the person may want to know that did not stop the backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A backup into a store of snapshots.
#[derive(Debug, Serialize)]
pub struct SnapshotBackup {
    pub instance: String,
    /// The store as [`super::Store::describe`] names it: a folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub snapshot: SnapshotInfo,
    pub duration_ms: u64,
}

/// What a restore or a migration names in the store, checked before anything is opened.
#[derive(Debug, Clone, Copy, Default)]
pub struct Wanted<'a> {
    /// A snapshot id (or a unique prefix of it).
    pub id: Option<&'a str>,
    /// An age identity was given.
    pub identity: bool,
    /// A migration's source (a snapshot, never a live backup).
    pub migration: bool,
}

/// A request the store does not take; the service names the request's fields around the
/// store's own words.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unsupported {
    /// The options of archive files: `dry_run`, else compression and recipients. `store_is`
    /// says what the store is instead (`a repository, which compresses and encrypts by
    /// itself`).
    ArchiveOption {
        dry_run: bool,
        store_is: &'static str,
    },
    /// A snapshot: the store holds none (`store_is`: `the archive store`).
    Snapshots { store_is: &'static str },
    /// An age identity, for backups that need none (`backup_is`: `a repository snapshot`).
    Identity { backup_is: &'static str },
}

/// Why a store did not do what a manual backup, a restore or a migration asked.
#[derive(Debug)]
pub enum Refusal {
    Unsupported(Unsupported),
    /// The instance is not registered (the registry's words).
    InstanceNotFound(String),
    /// Refused or failed around the controller's operation, in the store's words.
    Refused {
        kind: ErrorKind,
        step: Option<&'static str>,
        message: String,
    },
    /// The controller's operation failed: its error whole.
    Operation(Box<OperationError>),
    /// A failure inside the store, as reports show it; `hint`: what to do next.
    Problem {
        problem: Problem,
        hint: Option<String>,
    },
    /// panel.toml or the archive folder; `hint`: what to do next.
    Panel {
        error: Box<PanelError>,
        hint: Option<String>,
    },
}

impl From<Problem> for Refusal {
    fn from(problem: Problem) -> Self {
        Refusal::Problem {
            problem,
            hint: None,
        }
    }
}

impl From<PanelError> for Refusal {
    fn from(error: PanelError) -> Self {
        Refusal::Panel {
            error: Box::new(error),
            hint: None,
        }
    }
}

impl From<OperationError> for Refusal {
    fn from(error: OperationError) -> Self {
        Refusal::Operation(Box::new(error))
    }
}

impl From<Unsupported> for Refusal {
    fn from(u: Unsupported) -> Self {
        Refusal::Unsupported(u)
    }
}
