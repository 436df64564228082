//! The repository store through the front door: `backup NAME`, `run`, `backups NAME` and
//! `restore NAME --latest | --snapshot ID` use it when panel.toml says
//! `[store] kind = "repository"` (docs/repository.md). The store itself is
//! [`crate::store::repository`]; this module joins it to the controller: the instance's
//! record, account, lock and manifest header for a backup, and the staged, tagged archive the
//! controller's own restore takes.

use aps_controller::ErrorKind;

use crate::context::Panel;
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use std::collections::BTreeMap;

use crate::store::repository::{
    BackupInput, RepositoryError, RepositoryStore, ScriptPart, SnapshotInfo, StagedArchive,
    StagedRecord, WriteOutError,
};
use aps_controller::operation::record::BackupRecord;

/// The repository of panel.toml, opened; `None` when the store is the archive store.
pub fn open(panel: &Panel) -> Result<Option<RepositoryStore>, Problem> {
    match panel.config.repository(&panel.state_dir) {
        None => Ok(None),
        Some(settings) => RepositoryStore::open(&settings)
            .map(Some)
            .map_err(|e| problem(&e, Some("open-repository"))),
    }
}

/// One snapshot of `instance`: its web folders and database dumps (the tools run as the
/// instance's account), with the controller's tagged manifest, under the instance's lock.
pub fn backup(
    panel: &Panel,
    ctl: &aps_controller::Controller,
    store: &RepositoryStore,
    instance: &str,
    periodicity: Periodicity,
) -> Result<SnapshotInfo, Problem> {
    let source = crate::engine::repository_source(ctl, instance).map_err(|e| e.problem())?;
    // The repository inside a web folder would be served on the web, as an archive store there.
    if let Some(settings) = panel.config.repository(&panel.state_dir)
        && let crate::config::RepositoryLocation::Folder(path) = &settings.location
        && let Some((mapping, dir)) =
            crate::manual::web_dir_containing(path, &source.instance.web_dirs)
    {
        return Err(Problem::new(
            ErrorKind::DestinationRefused,
            Some("3.1-check-destination"),
            crate::manual::inside_web_dir_message(
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
            cache: Some(&panel.state_dir.join("repository-cache")),
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

/// Snapshot `id` (a unique prefix will do; `None`: the newest) of `instance` made into a
/// tagged archive in a private folder of the state folder, for the controller's restore
/// (which then takes its safety snapshot, writes by descriptor as the instance's account, and
/// puts everything back on failure). The folder goes when the result is dropped.
pub fn stage(
    panel: &Panel,
    ctl: &aps_controller::Controller,
    store: &RepositoryStore,
    instance: &str,
    id: Option<&str>,
) -> Result<StagedArchive, Problem> {
    let snapshot = store
        .snapshot(instance, id)
        .map_err(|e| problem(&e, Some("find-snapshot")))?;
    stage_snapshot(panel, ctl, store, instance, &snapshot)
}

/// [`stage`] for a snapshot already found (by [`RepositoryStore::latest`] or
/// [`RepositoryStore::snapshot`]).
pub fn stage_snapshot(
    panel: &Panel,
    ctl: &aps_controller::Controller,
    store: &RepositoryStore,
    instance: &str,
    snapshot: &SnapshotInfo,
) -> Result<StagedArchive, Problem> {
    let key = crate::engine::backup_key(ctl).map_err(|e| e.problem())?;
    let mut staged = store
        .stage_archive(instance, snapshot, &panel.state_dir, &key)
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
    ctl: &aps_controller::Controller,
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
