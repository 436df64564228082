//! The repository store as a [`Store`] (`[store] kind = "repository"`, docs/repository.md):
//! joins the repository ([`super`]) to the controller — the instance's record, account, lock
//! and manifest header for a backup, and the staged, tagged archive the controller's own
//! restore takes.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use aps_controller::operation::record::BackupRecord;
use aps_controller::{Controller, ErrorKind};

use crate::clock::Clock;
use crate::config::{RepositoryLocation, RepositorySettings};
use crate::error::PanelError;
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use crate::prune::{PruneFailure, Pruned, prune_files};
use crate::store::files::list_backups;
use crate::store::repository::retention::{after_run, prune_all};
use crate::store::repository::{
    BackupInput, RepositoryError, RepositoryStore, ScriptPart, StagedArchive, StagedRecord,
    WriteOutError,
};
use crate::store::{
    DrillBackup, Found, HostSnapshot, Listing, Made, ManualBackup, Outcome, ReadData, Refusal,
    RunRetention, SnapshotBackup, SnapshotInfo, Staged, Store, StoreCx, Unsupported, VerifyFailure,
    VerifyReport, Wanted,
};
use crate::web_dirs::{inside_web_dir_message, web_dir_containing};

/// The repository panel.toml names, opened on first use and then kept.
#[derive(Debug)]
pub struct RepositoryFront {
    settings: RepositorySettings,
    opened: OnceLock<RepositoryStore>,
}

impl RepositoryFront {
    pub fn new(settings: RepositorySettings) -> Self {
        RepositoryFront {
            settings,
            opened: OnceLock::new(),
        }
    }

    /// The repository, opened with the key file's master key.
    pub fn opened(&self) -> Result<&RepositoryStore, Problem> {
        if let Some(store) = self.opened.get() {
            return Ok(store);
        }
        let store = RepositoryStore::open(&self.settings)
            .map_err(|e| problem(&e, Some("open-repository")))?;
        Ok(self.opened.get_or_init(|| store))
    }
}

impl Store for RepositoryFront {
    fn describe(&self, _cx: &StoreCx<'_>) -> String {
        self.settings.location.describe()
    }

    /// One snapshot tagged with the request's periodicity, manual or final (docs/repository.md); the options of archive files
    /// are refused before any work.
    fn manual_backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        request: &ManualBackup<'_>,
    ) -> Result<Outcome, Refusal> {
        let store_is = "a repository, which compresses and encrypts by itself";
        if request.dry_run {
            return Err(Unsupported::ArchiveOption {
                dry_run: true,
                store_is,
            }
            .into());
        }
        if request.compression.is_some() || request.recipients.is_some() {
            return Err(Unsupported::ArchiveOption {
                dry_run: false,
                store_is,
            }
            .into());
        }
        let started = std::time::Instant::now();
        let opened = self.opened()?;
        let snapshot = backup(
            cx,
            ctl,
            opened,
            request.instance,
            request.kind.periodicity(),
        )?;
        Ok(Outcome::Snapshot(SnapshotBackup {
            instance: request.instance.to_owned(),
            repository: self.describe(cx),
            snapshot,
            duration_ms: started.elapsed().as_millis() as u64,
        }))
    }

    fn check_wanted(&self, wanted: &Wanted<'_>) -> Result<(), Unsupported> {
        if wanted.identity {
            return Err(Unsupported::Identity {
                backup_is: "a repository snapshot",
            });
        }
        Ok(())
    }

    /// The snapshot, staged; one that is not there says how to list them.
    fn take(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        id: Option<&str>,
    ) -> Result<Staged, Refusal> {
        self.opened()?;
        self.find(cx, instance, id)
            .and_then(|found| self.stage(cx, ctl, instance, &found))
            .map_err(|problem| {
                let hint = (problem.kind == ErrorKind::Usage.as_str())
                    .then(|| format!("`aps-controller backups {instance}` lists its snapshots"));
                Refusal::Problem { problem, hint }
            })
    }

    fn open(&self, _cx: &StoreCx<'_>) -> Result<(), Problem> {
        self.opened().map(drop)
    }

    fn backup(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        periodicity: Periodicity,
        _clock: &dyn Clock,
    ) -> Result<Made, Problem> {
        backup(cx, ctl, self.opened()?, instance, periodicity).map(Made::Snapshot)
    }

    /// The repository is pruned once, after every backup of the run: a prune never runs beside
    /// a backup of this run (and its two-phase deletion covers backups of other processes).
    fn after_run(
        &self,
        cx: &StoreCx<'_>,
        succeeded: &[String],
        now: jiff::Timestamp,
    ) -> Option<RunRetention> {
        Some(after_run(&self.settings, succeeded, cx.policy, now))
    }

    fn every_host(&self, _cx: &StoreCx<'_>) -> Result<Vec<HostSnapshot>, Problem> {
        self.opened()?.every_host().map_err(|e| problem(&e, None))
    }

    /// Its snapshots, newest first, then the archives still in the archive store's folder
    /// (made before the switch to the repository), so that a switch hides none of them.
    fn list(&self, cx: &StoreCx<'_>, instance: &str) -> Result<Listing, Problem> {
        let mut snapshots = self
            .opened()?
            .snapshots(Some(instance))
            .map_err(|e| problem(&e, None))?;
        snapshots.reverse();
        Ok(Listing {
            store: self.settings.location.describe(),
            snapshots: Some(snapshots),
            archives: list_backups(cx.local, instance).map_err(|e| e.problem())?,
        })
    }

    fn find(&self, _cx: &StoreCx<'_>, instance: &str, id: Option<&str>) -> Result<Found, Problem> {
        self.opened()?
            .snapshot(instance, id)
            .map(Found::Snapshot)
            .map_err(|e| problem(&e, Some("find-snapshot")))
    }

    fn stage(
        &self,
        cx: &StoreCx<'_>,
        ctl: &Controller,
        instance: &str,
        found: &Found,
    ) -> Result<Staged, Problem> {
        let Found::Snapshot(snapshot) = found else {
            return Err(Problem::new(
                ErrorKind::Internal,
                None,
                "the repository store stages snapshots, not files",
            ));
        };
        let staged = stage_snapshot(cx, ctl, self.opened()?, instance, snapshot)?;
        Ok(Staged {
            archive: staged.archive.clone(),
            snapshot: Some(staged.snapshot.clone()),
            held: Some(staged),
        })
    }

    /// The archive folder's files as the archive store prunes them, then the same policy over
    /// the snapshots and one prune.
    fn prune(
        &self,
        cx: &StoreCx<'_>,
        now: jiff::Timestamp,
        dry_run: bool,
    ) -> Result<Pruned, PruneFailure> {
        let stores = prune_files(cx.local, cx.remote, cx.policy, now, dry_run)?;
        match prune_all(&self.settings, cx.policy, now, dry_run) {
            Ok(r) => Ok(Pruned {
                stores,
                repository: Some(r),
            }),
            Err(e) => Err(PruneFailure {
                kind: match &e {
                    RepositoryError::Locked { .. } => ErrorKind::Busy,
                    RepositoryError::Unreachable { .. } => ErrorKind::RemoteUnreachable,
                    _ => ErrorKind::Internal,
                },
                message: e.to_string(),
                done: stores,
                repository: Some(self.settings.location.describe()),
            }),
        }
    }

    /// The engine's check plus packs read back; damage is a report with errors, not a failure.
    fn verify(&self, _cx: &StoreCx<'_>, read: &ReadData) -> Result<VerifyReport, VerifyFailure> {
        let fail = |e: RepositoryError| {
            let kind = match &e {
                RepositoryError::NotInitialised { .. } | RepositoryError::KeyFormat { .. } => {
                    ErrorKind::Usage
                }
                _ => ErrorKind::Internal,
            };
            VerifyFailure {
                problem: Problem::new(kind, Some("check-repository"), e.to_string()),
                repository: Some(self.settings.location.describe()),
            }
        };
        RepositoryStore::open(&self.settings)
            .map_err(fail)?
            .verify(read)
            .map_err(fail)
    }

    /// Its newest snapshot, made into a tagged archive (as `restore --latest` does) that the
    /// controller's restore takes.
    fn drill_backup(
        &self,
        _cx: &StoreCx<'_>,
        instance: &str,
    ) -> Result<Option<DrillBackup>, PanelError> {
        let repository = self.opened().map_err(|p| PanelError::Usage(p.message))?;
        let newest = repository
            .latest(instance)
            .map_err(|e| PanelError::Usage(problem(&e, None).message))?;
        Ok(newest.map(|newest| DrillBackup {
            shown: format!("{} snapshot {}", repository.describe(), &newest.id[..8]),
            found: Found::Snapshot(newest),
            store: "repository",
        }))
    }
}

/// One snapshot of `instance`: its web folders and database dumps (the tools run as the
/// instance's account), with the controller's tagged manifest, under the instance's lock.
pub fn backup(
    cx: &StoreCx<'_>,
    ctl: &Controller,
    store: &RepositoryStore,
    instance: &str,
    periodicity: Periodicity,
) -> Result<SnapshotInfo, Problem> {
    let source = crate::engine::repository_source(ctl, instance).map_err(|e| e.problem())?;
    // The repository inside a web folder would be served on the web, as an archive store there.
    if let Some(settings) = cx.config.repository(cx.state_dir)
        && let RepositoryLocation::Folder(path) = &settings.location
        && let Some((mapping, dir)) = web_dir_containing(path, &source.instance.web_dirs)
    {
        return Err(Problem::new(
            ErrorKind::DestinationRefused,
            Some("3.1-check-destination"),
            inside_web_dir_message(
                "the repository (panel.toml [store] path)",
                path,
                &mapping,
                &dir,
            ),
        ));
    }
    // The backup-script's file first (a failing script leaves no snapshot); with a
    // `sufficient` script it is the whole backup, as in the archive store.
    let script_file = match &source.script {
        Some(script) => Some(
            script
                .run(
                    ctl,
                    &source.instance,
                    &source.opened,
                    source.account.as_ref(),
                    Some(source.dump_timeout),
                )
                .map_err(|e| Problem::from_operation(&e))?,
        ),
        None => None,
    };
    let sufficient = source.script.as_ref().is_some_and(|s| s.sufficient());
    let nothing = (BTreeMap::new(), BTreeMap::new());
    let (web_dirs, databases) = if sufficient {
        (&nothing.0, &nothing.1)
    } else {
        (&source.instance.web_dirs, &source.instance.databases)
    };
    store
        .backup(&BackupInput {
            instance,
            periodicity,
            package: source.package.clone(),
            web_dirs,
            databases,
            header: source.header.clone(),
            key: &source.key,
            account: source.account.as_ref(),
            dump_timeout: source.dump_timeout,
            cache: Some(&cx.state_dir.join("repository-cache")),
            script: script_file.as_ref().map(|f| ScriptPart {
                file: &f.path,
                size: f.size,
                sha256: &f.sha256,
                sufficient,
            }),
            // The archive store's bounds, for the same instance (docs/security.md).
            walk: ctl.config().walk_policy(instance, source.account.as_ref()),
        })
        .map_err(|e| problem(&e, Some("backup")))
}

/// `snapshot` of `instance` made into a tagged archive in a private folder of the state folder,
/// for the controller's restore (which then takes its safety snapshot, writes by descriptor as
/// the instance's account, and puts everything back on failure). The folder goes when the
/// result is dropped.
fn stage_snapshot(
    cx: &StoreCx<'_>,
    ctl: &Controller,
    store: &RepositoryStore,
    instance: &str,
    snapshot: &SnapshotInfo,
) -> Result<StagedArchive, Problem> {
    let key = crate::engine::backup_key(ctl).map_err(|e| e.problem())?;
    let mut staged = store
        .stage_archive(instance, snapshot, cx.state_dir, &key)
        .map_err(|e| problem(&e, Some("stage-snapshot")))?;
    // A `sufficient` script's file carries no manifest of ours: the controller's restore
    // knows it by a record of its SHA-256, written here for the staged file (its snapshot's
    // manifest tag was checked) and removed with it, unless this controller already keeps
    // one for the same content (an archive-store backup of it).
    if let Some((header, size, sha256)) = &staged.script_file {
        let records = ctl.records_dir();
        let record_err = |e: std::io::Error| {
            Problem::new(
                ErrorKind::Internal,
                Some("stage-snapshot"),
                format!("cannot record the staged backup-script file in {records}: {e}"),
            )
        };
        let kept = BackupRecord::find(&records, sha256)
            .map_err(record_err)?
            .is_some_and(|r| r.is_authentic(&key));
        if !kept {
            BackupRecord::for_header(header, &staged.archive, *size, sha256)
                .sign(&key)
                .save(&records)
                .map_err(record_err)?;
            staged.record = Some(StagedRecord {
                records_dir: records.clone(),
                sha256: sha256.clone(),
            });
        }
    }
    Ok(staged)
}

/// The controller's restore of `staged` into `request.instance` (`request.source` is
/// `staged.archive`): an archive the staging wrote and hashed is not read a second time before
/// the restore begins; a `sufficient` script's file goes through the controller's usual
/// checks.
// The controller's own error type, as `Controller::restore` returns it.
#[allow(clippy::result_large_err)]
pub fn restore_staged(
    ctl: &Controller,
    staged: &mut StagedArchive,
    request: &aps_controller::operation::RestoreRequest,
) -> Result<aps_controller::operation::RestoreReport, aps_controller::OperationError> {
    match staged.written.take() {
        Some(reader) => ctl.restore_written(request, reader),
        None => ctl.restore(request),
    }
}

/// A repository failure as the README's error kinds have it.
pub fn problem(e: &RepositoryError, step: Option<&str>) -> Problem {
    let interrupted = aps_controller::cancel::Cancel::process().signal().is_some();
    let kind = match e {
        RepositoryError::NotInitialised { .. }
        | RepositoryError::KeyFormat { .. }
        | RepositoryError::Exists { .. }
        | RepositoryError::KeyExists { .. }
        | RepositoryError::NoSnapshot { .. }
        | RepositoryError::AmbiguousSnapshot { .. }
        | RepositoryError::NoSnapshots { .. } => ErrorKind::Usage,
        RepositoryError::Untrusted { .. } => ErrorKind::UntrustedBackup,
        RepositoryError::Locked { .. } => ErrorKind::Busy,
        RepositoryError::Unreachable { .. } => ErrorKind::RemoteUnreachable,
        RepositoryError::Damaged { .. } => ErrorKind::InvalidBackup,
        RepositoryError::TargetNotEmpty { .. } => ErrorKind::DestinationRefused,
        RepositoryError::Interrupted { .. } | RepositoryError::RestoreInterrupted { .. } => {
            ErrorKind::Interrupted
        }
        RepositoryError::Incomplete { .. } if interrupted => ErrorKind::Interrupted,
        RepositoryError::Incomplete { .. } => ErrorKind::ResourceFailed,
        RepositoryError::WriteOut { source, .. } => match source {
            WriteOutError::Read { .. } | WriteOutError::BadPath { .. } => ErrorKind::InvalidBackup,
            WriteOutError::Write { source, .. }
                if source.kind() == std::io::ErrorKind::StorageFull =>
            {
                ErrorKind::NoSpace
            }
            WriteOutError::Write { .. } => ErrorKind::Internal,
        },
        RepositoryError::Engine { .. } | RepositoryError::Io { .. } => ErrorKind::Internal,
    };
    Problem::new(kind, step, e.to_string())
}
