//! Migration (controller guide, "Application Data Retention"): a backup of the source instance
//! followed by a restore into the target instance, which is registered with its own URL, web
//! folders and databases; the restore script sees the target's environment.
//!
//! The source is only read. The target gets the restore's guarantees: verified file, safety
//! snapshot, put back on any failure. The intermediate file lives in the controller's state
//! folder and is removed afterwards (a journal entry removes it after a kill -9 too), unless
//! the caller asked to keep it.

use std::time::Instant;

use crate::controller::Controller;
use crate::error::{OperationError, Step};
use crate::journal::{OperationKind, UndoAction};
use crate::operation::record::BackupRecord;
use crate::operation::{BackupRequest, MigrateReport, MigrateRequest, RestoreRequest};
use crate::paths::absolute;

pub fn migrate(
    ctl: &Controller,
    request: &MigrateRequest,
) -> Result<MigrateReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    // Both must exist, and the target must be able to take the source's data, before any work:
    // the restore would find out only after a possibly long backup.
    check_migration(ctl, &request.source, &request.target)?;

    let (file, keep) = match &request.keep {
        Some(path) => (absolute(path), true),
        None => {
            let dir = ctl.work_dir("migrations");
            std::fs::create_dir_all(&dir).map_err(OperationError::io(
                Step::CheckDestination,
                "cannot create",
                &dir,
            ))?;
            let stamp = jiff::Timestamp::now().as_millisecond();
            (
                dir.join(format!(
                    "{}-to-{}-{stamp}.aps",
                    request.source, request.target
                )),
                false,
            )
        }
    };
    // The intermediate file is ours to delete even if this process is killed between the
    // backup and the end of the restore (which journal their own steps).
    let journal = ctl
        .journal()
        .begin_with(OperationKind::Migrate, &request.source, |_| {
            if keep {
                Vec::new()
            } else {
                vec![UndoAction::DeleteFile(file.clone())]
            }
        })
        .map_err(|source| OperationError::Journal {
            step: Step::CheckDestination,
            source,
        })?;
    let result = backup_then_restore(ctl, request, &file);
    if !keep {
        let _ = std::fs::remove_file(&file);
        // A `sufficient` script's file is known by a record of its SHA-256; the file is gone,
        // so is the reason to keep the record.
        if let Ok((backup, _)) | Err((Some(backup), _)) = &result {
            let _ = BackupRecord::remove(&ctl.records_dir(), &backup.sha256);
        }
    }
    match result {
        Ok((backup, restore)) => {
            let _ = journal.finish_ok();
            Ok(MigrateReport {
                source: request.source.clone(),
                target: request.target.clone(),
                backup,
                restore,
                kept: keep.then_some(file),
                duration_ms: started.elapsed().as_millis() as u64,
            })
        }
        Err((_, error)) => {
            let _ = journal.finish_failed(&error.to_string());
            Err(error)
        }
    }
}

/// The checks of a migration before any work: another instance, both registered, compatible.
pub(crate) fn check_migration(
    ctl: &Controller,
    source: &str,
    target: &str,
) -> Result<(), OperationError> {
    if source == target {
        return Err(OperationError::BackupMismatch {
            step: Step::FindInstance,
            file: Default::default(),
            instance: target.to_owned(),
            reason: "the target of a migration must be another instance".into(),
        });
    }
    let source = ctl.find_instance(source)?;
    let target = ctl.find_instance(target)?;
    check_compatible(ctl, &source, &target)
}

type Reports = (
    crate::operation::BackupReport,
    crate::operation::RestoreReport,
);

/// The backup of the source, then the restore into the target. On failure, the backup's
/// report (if it was made) comes back with the error, so its record can be dropped.
fn backup_then_restore(
    ctl: &Controller,
    request: &MigrateRequest,
    file: &camino::Utf8Path,
) -> Result<Reports, (Option<crate::operation::BackupReport>, OperationError)> {
    let backup = ctl
        .backup(&BackupRequest {
            instance: request.source.clone(),
            destination: file.to_owned(),
            force: false,
            timeout: request.timeout,
            archive: request.archive.clone(),
        })
        .map_err(|e| (None, e))?;
    ctl.check_cancel(Step::VerifyBackup)
        .map_err(|e| (Some(backup.clone()), e))?;
    match ctl.restore(&RestoreRequest {
        instance: request.target.clone(),
        source: file.to_owned(),
        timeout: request.timeout,
        no_safety_snapshot: request.no_safety_snapshot,
        identity: request.identity.clone(),
        from_other_instance: true,
    }) {
        Ok(restore) => Ok((backup, restore)),
        Err(e) => Err((Some(backup), e)),
    }
}

/// The target must run the same package (by `id`, else by name) at the source's version, or
/// at a newer one whose update rules accept it: the rule restore applies to the file.
fn check_compatible(
    ctl: &Controller,
    source: &crate::registry::Instance,
    target: &crate::registry::Instance,
) -> Result<(), OperationError> {
    let from = ctl.open_package(source)?.meta;
    let to = ctl.open_package(target)?.meta;
    let refuse = |reason: String| OperationError::BackupMismatch {
        step: Step::FindInstance,
        file: Default::default(),
        instance: target.name.clone(),
        reason,
    };
    let same = match (&from.id, &to.id) {
        (Some(a), Some(b)) => a == b,
        _ => from.name == to.name,
    };
    if !same {
        return Err(refuse(format!(
            "instance {} runs package {}, instance {} runs {}: a migration needs the same package",
            source.name,
            from.id.as_deref().unwrap_or(&from.name),
            target.name,
            to.id.as_deref().unwrap_or(&to.name)
        )));
    }
    if !super::restore::version_allowed(&to, &from.version, &from.release) {
        return Err(refuse(format!(
            "instance {} runs version {}-{}, which instance {} ({}-{}) cannot take data from",
            source.name, from.version, from.release, target.name, to.version, to.release
        )));
    }
    Ok(())
}
