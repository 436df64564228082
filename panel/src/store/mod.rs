//! Backup stores. [`Store`] is what every command asks of the store panel.toml chose — a
//! backup into it, its backups, finding and staging one for a restore, retention, verify, a
//! drill's backup — and [`chosen`] is the one place the kinds are listed:
//! - the archive store ([`archive`]): archive files in a local folder ([`local`]), each copied
//!   off the machine when panel.toml has a `[remote]` ([`s3`]);
//! - the repository store ([`repository`]): a restic-format repository, local or in S3.
//!
//! A new kind is its own module implementing [`Store`] plus one line in [`chosen`]. What
//! crosses the trait is neutral: [`outcome`] (a manual backup, a restore's source, a store's
//! refusals), [`snapshot`] (a snapshot and what retention did to them), [`verify`].
//! [`files`] is the listing of archive files that the local folder and the S3 copy answer.

pub mod archive;
pub mod files;
pub mod local;
pub mod outcome;
#[cfg(feature = "repository")]
pub mod repository;
#[cfg(feature = "s3")]
pub mod s3;
pub mod snapshot;
pub mod verify;

use aps_controller::Controller;
use aps_controller::error::OperationError;
use aps_controller::operation::{BackupReport, RestoreReport, RestoreRequest};
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::clock::Clock;
use crate::config::{PanelConfig, StoreKind};
use crate::error::PanelError;
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use crate::prune::{PruneFailure, Pruned};
use crate::retention::RetentionPolicy;

pub use files::{ArchiveFiles, BackupStatus, Remote, StoreError, StoredFile, Upload};
pub use local::LocalStore;
pub use outcome::{
    ArchiveBackup, ManualBackup, ManualKind, Outcome, Refusal, SnapshotBackup, Unsupported, Wanted,
};
pub use snapshot::{
    HostSnapshot, KeptSnapshot, PruneReport, RepositoryPrune, RunRetention, SnapshotInfo,
};
pub use verify::{ReadData, VerifyFailure, VerifyReport};

/// The store panel.toml chose: the one place the kinds are listed, one line each.
pub fn chosen(config: &PanelConfig, state_dir: &Utf8Path) -> Box<dyn Store> {
    match config.store_kind() {
        StoreKind::Archive => Box::new(archive::ArchiveStore),
        StoreKind::Repository => Box::new(repository::front::RepositoryFront::new(
            config.repository_settings(state_dir),
        )),
    }
}

/// What a store's calls work with: panel.toml and the stores of archive files it names (the
/// archive store's folder is there beside a repository too: archives from before it).
#[derive(Clone, Copy)]
pub struct StoreCx<'a> {
    pub state_dir: &'a Utf8Path,
    pub config: &'a PanelConfig,
    pub policy: &'a RetentionPolicy,
    pub local: &'a LocalStore,
    /// The off-machine copy, when panel.toml has a `[remote]`.
    pub remote: Option<&'a dyn Remote>,
}

/// The step of an instance of `run` that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Backup,
    Upload,
    Prune,
}

/// What a backup into a store made.
#[derive(Debug)]
pub enum Made {
    /// An archive file the controller wrote (its report).
    File(BackupReport),
    /// A snapshot; its `bytes_added` is what it added to the store.
    Snapshot(SnapshotInfo),
}

/// What a store did after one successful backup of `run`: retention of that instance, the
/// off-machine copy.
#[derive(Debug, Default)]
pub struct AfterBackup {
    /// Keys removed by retention (`remote:` before those of the off-machine copy).
    pub pruned: Vec<String>,
    pub upload: Option<Upload>,
    /// The step that failed last, and why.
    pub failed: Option<(Step, Problem)>,
}

/// What a store holds of one instance.
#[derive(Debug)]
pub struct Listing {
    /// The store, as [`Store::describe`] names it.
    pub store: String,
    /// Its snapshots, newest first; `None` for a store of archive files.
    pub snapshots: Option<Vec<SnapshotInfo>>,
    /// Archive files, newest first: the store's own, or beside a store of snapshots those
    /// still in the archive folder from before it.
    pub archives: Vec<files::BackupEntry>,
}

impl Listing {
    pub fn is_empty(&self) -> bool {
        self.archives.is_empty() && self.snapshots.as_ref().is_none_or(Vec::is_empty)
    }
}

/// A backup found in a store: a file, or a snapshot.
#[derive(Debug, Clone)]
pub enum Found {
    File(Utf8PathBuf),
    Snapshot(SnapshotInfo),
}

/// A backup made ready for the controller's restore (for a snapshot, a tagged archive in a
/// private folder of the state folder, removed when this is dropped).
#[derive(Debug)]
pub struct Staged {
    /// What the controller's restore reads.
    pub archive: Utf8PathBuf,
    /// The snapshot it was staged from.
    pub snapshot: Option<SnapshotInfo>,
    held: Option<repository::StagedArchive>,
}

impl Staged {
    /// A file that needs no staging.
    pub fn file(archive: Utf8PathBuf) -> Self {
        Staged {
            archive,
            snapshot: None,
            held: None,
        }
    }

    /// Whether the controller may restore another instance's backup: always into another
    /// instance (a migration); into the same one only when the request allows it (`asked`) and
    /// the backup is a file, not a snapshot found by the instance's own tag.
    pub fn from_other_instance(&self, from: &str, into: &str, asked: bool) -> bool {
        from != into || (asked && self.held.is_none())
    }

    /// The controller's restore of this backup (`request.source` is [`Staged::archive`]).
    // The controller's own error type, as `Controller::restore` returns it.
    #[allow(clippy::result_large_err)]
    pub fn restore(
        &mut self,
        ctl: &Controller,
        request: &RestoreRequest,
    ) -> Result<RestoreReport, OperationError> {
        match &mut self.held {
            Some(staged) => repository::front::restore_staged(ctl, staged, request),
            None => ctl.restore(request),
        }
    }
}

/// A drill's backup: the newest good one of an instance, as reports name it.
#[derive(Debug)]
pub struct DrillBackup {
    pub found: Found,
    /// A path, or `<repository> snapshot <id prefix>`.
    pub shown: String,
    /// The store's word in the drill report: `local` or `repository`.
    pub store: &'static str,
}

/// What every command asks of the store panel.toml chose. Errors are [`Problem`]s (kind,
/// step, message) as the commands report them.
pub trait Store: Send + Sync {
    /// A human name for messages: a folder or `s3://bucket/prefix/`.
    fn describe(&self, cx: &StoreCx<'_>) -> String;

    /// Whether a manual backup into the store is an archive file the controller writes: the
    /// controller's progress is then its progress, and an interrupted one leaves a partial
    /// file that the rollback deletes. By default it is not.
    fn manual_writes_archive(&self) -> bool {
        false
    }

    /// A manual backup into the store (`backup NAME` without a file of its own): what it is
    /// is the store's to decide (the archive store: the manual plan and an archive file, or
    /// with `dry_run` only the plan; the repository: one snapshot, periodicity manual).
    fn manual_backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        request: &ManualBackup<'_>,
    ) -> Result<Outcome, Refusal>;

    /// Refuses, before anything is opened, what a restore or a migration cannot take from the
    /// store.
    fn check_wanted(&self, wanted: &Wanted<'_>) -> Result<(), Unsupported>;

    /// Backup `id` of `instance` (`None`: its newest) found and made ready for the
    /// controller's restore or migration; a refusal says how to list what is there.
    fn take(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        id: Option<&str>,
    ) -> Result<Staged, Refusal>;

    /// Opens what the later calls need, once (`run` fails as a whole when it cannot). By
    /// default there is nothing to open.
    fn open(&self, _cx: &StoreCx<'_>) -> Result<(), Problem> {
        Ok(())
    }

    /// One backup of `instance` into the store (by `run`, and `backup NAME` of a store of
    /// snapshots).
    fn backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        periodicity: Periodicity,
        clock: &dyn Clock,
    ) -> Result<Made, Problem>;

    /// What `run` does after one successful backup of `instance`. By default nothing: the
    /// store's retention and copies wait for [`after_run`](Self::after_run).
    fn after_backup(
        &self,
        _cx: &StoreCx<'_>,
        _ctl: &Controller,
        _instance: &str,
        _made: &Made,
        _clock: &dyn Clock,
    ) -> AfterBackup {
        AfterBackup::default()
    }

    /// Retention once every backup of a run ended, over the instances whose backup
    /// succeeded (never empty); `None` when the store has none to do then.
    fn after_run(
        &self,
        cx: &StoreCx<'_>,
        succeeded: &[String],
        now: jiff::Timestamp,
    ) -> Option<RunRetention>;

    /// What the store holds of `instance` (`backups NAME`).
    fn list(&self, cx: &StoreCx<'_>, instance: &str) -> Result<Listing, Problem>;

    /// Every snapshot of every host that wrote into the store (`status --repository`). By
    /// default a store keeps no hosts: refused.
    fn every_host(&self, cx: &StoreCx<'_>) -> Result<Vec<HostSnapshot>, Problem> {
        Err(Problem::new(
            aps_controller::ErrorKind::Usage,
            None,
            format!(
                "{} is a store of this server's archive files; `status --repository` reads a \
                 repository store several servers back up into ([store] kind = \"repository\")",
                self.describe(cx)
            ),
        ))
    }

    /// Backup `id` of `instance` (a unique prefix will do; `None`: the newest); one that is
    /// not there is an error.
    fn find(&self, cx: &StoreCx<'_>, instance: &str, id: Option<&str>) -> Result<Found, Problem>;

    /// `found` made ready for the controller's restore.
    fn stage(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        found: &Found,
    ) -> Result<Staged, Problem>;

    /// Retention over every instance (`prune`): plan, and unless `dry_run` apply.
    fn prune(
        &self,
        cx: &StoreCx<'_>,
        now: jiff::Timestamp,
        dry_run: bool,
    ) -> Result<Pruned, PruneFailure>;

    /// The store's own check (`verify --repository`), reading back `read` of its data.
    fn verify(&self, cx: &StoreCx<'_>, read: &ReadData) -> Result<VerifyReport, VerifyFailure>;

    /// The newest good backup of `instance` for a drill; `None` when it has none.
    fn drill_backup(
        &self,
        cx: &StoreCx<'_>,
        instance: &str,
    ) -> Result<Option<DrillBackup>, PanelError>;
}
