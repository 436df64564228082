//! Restore of one instance from a backup file (controller guide, "Restoring Service Instance"):
//! same steps as backup with argument `restore`, a readable `BACKUP_FILE`, and an instance that
//! exists already. Nothing of the instance changes until the whole file is verified; before the
//! first change a safety snapshot is taken, and any later failure puts the snapshot back.
//! This file holds the sequence; the source checks, the safety snapshot and the apply step
//! are its submodules.

use std::time::Instant;

use aps_meta::model::Script;
use camino::Utf8Path;

use self::snapshot::take_restore_snapshot;
use crate::account::Account;
use crate::archive::ArchiveReader;
use crate::controller::Controller;
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::journal::{OperationKind, UndoAction};
use crate::operation::{RestoreReport, RestoreRequest, script_run};
use crate::paths::absolute;
use crate::registry::{Instance, OpenedPackage};

mod apply;
mod aside;
mod snapshot;
mod source;

use self::apply::*;
pub(crate) use self::snapshot::{put_back, put_back_snapshot, take_snapshot};
pub(crate) use self::source::version_allowed;
use self::source::*;

/// Restores `request.instance` from `request.source`.
pub fn restore(
    ctl: &Controller,
    request: &RestoreRequest,
) -> Result<RestoreReport, OperationError> {
    restore_from(ctl, request, None)
}

/// [`restore`] from an archive this process has just written and hashed
/// ([`ArchiveReader::written`], at `request.source`): its tag is checked, but it is not read
/// a second time before the safety snapshot and the extraction (which checks every hash).
pub fn restore_written(
    ctl: &Controller,
    request: &RestoreRequest,
    written: ArchiveReader,
) -> Result<RestoreReport, OperationError> {
    restore_from(ctl, request, Some(written))
}

fn restore_from(
    ctl: &Controller,
    request: &RestoreRequest,
    written: Option<ArchiveReader>,
) -> Result<RestoreReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    ctl.check_cancel(Step::FindInstance)?;
    // The standard requires the instance to exist already.
    let instance = ctl.find_instance(&request.instance)?;
    // Who runs the tenant's work and owns what is restored: refused (root) before anything.
    let account = ctl.instance_account(&instance)?;
    let _lock = ctl.lock_instance(&instance.name, "restore")?;
    crate::database::as_account(account.as_ref(), || {
        restore_as(ctl, request, started, instance, account.as_ref(), written)
    })
}

fn restore_as(
    ctl: &Controller,
    request: &RestoreRequest,
    started: Instant,
    instance: Instance,
    account: Option<&Account>,
    written: Option<ArchiveReader>,
) -> Result<RestoreReport, OperationError> {
    // 1. Parse APP-META.xml; 1.1 find the backup script; 1.2 resolve its interpreter.
    let package = ctl.open_package(&instance)?;
    let (script, interpreter) =
        script_run::backup_script_with_interpreter(ctl, &instance, &package)?.unzip();

    // 3.1 The file must be readable; then verified completely before anything changes.
    let file = absolute(&request.source);
    let source = match written {
        Some(reader) => {
            let key = ctl.backup_key(Step::VerifyBackup)?;
            crate::archive::reader::check_trust(&file, reader.seal(), &key, &|_| false).map_err(
                |source| OperationError::Archive {
                    step: Step::VerifyBackup,
                    source,
                },
            )?;
            Source::Archive(reader)
        }
        None => {
            let size = std::fs::metadata(&file).ok().map(|m| m.len());
            ctl.report_part("restore", &instance.name, "verify", file.as_str(), size);
            verify_source(ctl, &instance, &package.meta, &file, request)?
        }
    };
    check_restorable(&instance, &package.meta, script.as_ref(), &file, &source)?;
    let (source_instance, backup_created) = source.origin();
    // Another instance's backup overwrites this one with another site: only when asked for.
    if source_instance != instance.name && !request.from_other_instance {
        return Err(OperationError::OtherInstanceBackup {
            step: Step::VerifyBackup,
            file,
            instance: instance.name.clone(),
            source_instance,
            created: backup_created,
        });
    }
    ctl.check_cancel(Step::VerifyBackup)?;

    let mut operation = ctl.begin_operation(
        OperationKind::Restore,
        &instance.name,
        Step::SafetySnapshot,
        |_| Vec::new(),
    )?;
    let snapshot =
        (!request.no_safety_snapshot).then(|| operation.work().join("safety-snapshot.aps.tar.zst"));
    if snapshot.is_some() {
        ctl.report_part("restore", &instance.name, "safety-snapshot", "", None);
    }
    let prepared = match &snapshot {
        // Journaled before the first change: a killed controller is rolled back from it.
        // Kept aside: the web folders the extraction empties and refills. A `sufficient`
        // script's restore leaves them in place (it may change them: they are archived).
        Some(path) => take_restore_snapshot(
            ctl,
            &mut operation,
            &instance,
            &package.meta,
            path,
            &|url| match &source {
                Source::Archive(reader) => reader.manifest().web_dir(url).is_some(),
                Source::ScriptFile { .. } => false,
            },
        ),
        None => Ok(()),
    }
    .and_then(|()| {
        ctl.check_cancel(Step::SafetySnapshot)
            .map_err(|e| (e, snapshot.is_some()))
    });
    if let Err((error, journaled)) = prepared {
        // A full disk can only be the work folder's: nothing of the instance was written.
        let error = error.with_space_facts(&[operation.work()], None);
        return Err(fail_and_put_back(
            ctl,
            operation,
            &instance,
            snapshot.as_deref().filter(|_| journaled),
            account,
            error,
        ));
    }

    let steps = Steps {
        ctl,
        request,
        instance: &instance,
        package: &package,
        script: script.as_ref().zip(interpreter.as_ref()),
        file: &file,
        work: operation.work(),
        account,
    };
    let result = match &source {
        Source::Archive(reader) => steps.restore_archive(reader),
        Source::ScriptFile {
            encrypted,
            file,
            record,
        } => steps.restore_script_file(*encrypted, file, &record.sha256),
    }
    // A signal after the last step still puts the instance back: the restore did not finish.
    .and_then(|()| ctl.check_cancel(Step::Finish));

    match result {
        Ok(()) => {
            operation.succeed();
            remove_kept_snapshots(ctl, &instance.name);
            let (from_version, from_release) = source.version();
            Ok(RestoreReport {
                instance: instance.name.clone(),
                file,
                source_instance,
                backup_created,
                from_version,
                from_release,
                safety_snapshot: snapshot.is_some(),
                duration_ms: started.elapsed().as_millis() as u64,
                manifest: match &source {
                    Source::Archive(reader) => Some(reader.manifest().clone()),
                    Source::ScriptFile { .. } => None,
                },
            })
        }
        Err(error) => {
            // Measured before the rollback frees anything, to name the place that filled up.
            let mut places: Vec<&Utf8Path> = instance.web_dirs.values().map(|d| &**d).collect();
            places.push(operation.work());
            let error = error.with_space_facts(&places, None);
            Err(fail_and_put_back(
                ctl,
                operation,
                &instance,
                snapshot.as_deref(),
                account,
                error,
            ))
        }
    }
}

/// A restore that failed after its journal entry: the instance is put back from `snapshot`
/// (when one was journaled) and the entry closed with `error`. When putting back fails too,
/// the work folder, which holds the snapshot, is kept for a person to act on.
fn fail_and_put_back(
    ctl: &Controller,
    operation: crate::controller::Operation,
    instance: &Instance,
    snapshot: Option<&Utf8Path>,
    account: Option<&Account>,
    error: OperationError,
) -> OperationError {
    let Some(path) = snapshot else {
        return operation.fail(error);
    };
    ctl.report_part("restore", &instance.name, "rollback", "", None);
    // A second signal must not cut the rollback short.
    if let Err(rollback) =
        crate::cancel::shielded(|| put_back(ctl.config(), instance, path, account))
    {
        operation.fail_keeping_work(&rollback.to_string());
        return OperationError::RollbackFailed {
            original: Box::new(error),
            rollback: Box::new(rollback),
            snapshot: path.to_owned(),
        };
    }
    let error = operation.fail(error);
    remove_kept_snapshots(ctl, &instance.name);
    error
}

/// Once the instance is back — restored, or put back whole from this try's snapshot — the
/// safety snapshots that earlier tries kept when their rollback failed (or a recovery after a
/// kill could not put back) have served: their work folders are removed. Only folders
/// directly in `<state>/work` that a closed restore entry of this instance names.
fn remove_kept_snapshots(ctl: &Controller, instance: &str) {
    let work = ctl.work_dir("");
    for record in ctl.journal().closed_entries() {
        let ours = record.kind == OperationKind::Restore
            && record.undo.iter().any(
                |a| matches!(a, UndoAction::RestoreSnapshot { instance: i, .. } if i == instance),
            );
        if !ours {
            continue;
        }
        for action in &record.undo {
            if let UndoAction::DeleteDir(dir) = action
                && dir.parent() == Some(work.as_path())
                && std::fs::symlink_metadata(dir).is_ok()
            {
                let _ = crate::archive::remove_dir_all_nofollow(dir.as_std_path());
            }
        }
    }
}

pub(super) struct Steps<'a> {
    pub(super) ctl: &'a Controller,
    pub(super) request: &'a RestoreRequest,
    pub(super) instance: &'a Instance,
    pub(super) package: &'a OpenedPackage,
    pub(super) script: Option<(&'a Script, &'a ResolvedInterpreter)>,
    pub(super) file: &'a Utf8Path,
    pub(super) work: &'a Utf8Path,
    pub(super) account: Option<&'a Account>,
}

impl Steps<'_> {
    /// The controller puts web folders and databases back, then the script (if any) restores
    /// its own part.
    pub(super) fn restore_archive(&self, reader: &ArchiveReader) -> Result<(), OperationError> {
        // `--timeout` bounds the script (the CLI documents it so); loading a large dump is
        // bounded by the configured default instead, so a short script timeout never turns a
        // slow but healthy load into a failure.
        let size = std::fs::metadata(reader.path()).ok().map(|m| m.len());
        let name = &self.instance.name;
        self.ctl
            .report_part("restore", name, "extract", reader.path().as_str(), size);
        let script_part = apply_archive(
            reader,
            self.instance,
            self.work,
            self.ctl.config().default_timeout,
            Step::RestoreResources,
            self.account,
            Some(self.ctl),
        )?;
        relocate_separate_mappings(reader, self.instance)?;
        if let (Some((script, interpreter)), Some(part)) = (self.script, script_part) {
            self.ctl.check_cancel(Step::RunScript)?;
            self.ctl
                .report_part("restore", name, "script", &script.name, None);
            self.run_script(script, interpreter, &part)?;
        }
        Ok(())
    }

    /// `sufficient`: the controller provides the resources empty, the script fills them.
    ///
    /// The script never gets the backup's own path: whoever can write where it lies could
    /// swap it after the check. It gets a private copy in the work folder, copied from the
    /// descriptor that was hashed and checked against the record once more while copying.
    pub(super) fn restore_script_file(
        &self,
        encrypted: bool,
        held: &std::fs::File,
        sha256: &str,
    ) -> Result<(), OperationError> {
        let copy = self.work.join(if encrypted {
            "script-backup.age"
        } else {
            "script-backup"
        });
        private_copy(held, &copy, sha256).map_err(|e| OperationError::BackupMismatch {
            step: Step::VerifyBackup,
            file: self.file.to_owned(),
            instance: self.instance.name.clone(),
            reason: e.to_string(),
        })?;
        // Encrypted by the controller at backup time: the script gets the clear file, made in
        // the private work folder before anything is wiped (a wrong identity changes nothing).
        let file = if encrypted {
            let clear = self.work.join("script-backup");
            let decrypted =
                crate::archive::decrypt_file(&copy, self.request.identity.as_deref(), &clear)
                    .map_err(|source| OperationError::Archive {
                        step: Step::VerifyBackup,
                        source,
                    });
            let _ = std::fs::remove_file(&copy);
            decrypted?;
            clear
        } else {
            copy
        };
        for (db_id, db) in &self.instance.databases {
            self.ctl.check_cancel(Step::RestoreResources)?;
            crate::database::wipe(db, self.ctl.config().default_timeout).map_err(|source| {
                OperationError::Database {
                    step: Step::RestoreResources,
                    db_id: db_id.clone(),
                    source,
                }
            })?;
        }
        let (script, interpreter) = self.script.expect("checked: a sufficient script exists");
        self.run_script(script, interpreter, &file)
    }

    pub(super) fn run_script(
        &self,
        script: &Script,
        interpreter: &ResolvedInterpreter,
        backup_file: &Utf8Path,
    ) -> Result<(), OperationError> {
        script_run::run_backup_script(
            self.ctl,
            self.instance,
            self.package,
            (script, interpreter),
            ScriptOperation::Restore {
                backup_file: backup_file.to_owned(),
            },
            self.request.timeout,
            self.work,
            self.account,
        )
    }
}
