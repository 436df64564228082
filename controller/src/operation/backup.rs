//! Backup of one instance, as the controller guide's scenario has it (steps 1 to 3.3), with
//! rollback: on any failure the temporary destination file, the controller's own resource
//! dumps and its scratch folder are deleted, and the destination path is left untouched.

use std::time::Instant;

use aps_meta::model::Script;
use camino::Utf8Path;

use crate::archive::{ArchiveWriter, PartKind};
use crate::cancel::Guarded;
use crate::controller::Controller;
use crate::destination::{CommittedFile, Destination, PreparedDestination};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::estimate::SizeEstimate;
use crate::interpreter::ResolvedInterpreter;
use crate::journal::{OperationKind, UndoAction};
use crate::operation::record::BackupRecord;
use crate::operation::{BackupReport, BackupRequest, script_run};
use crate::paths::absolute;
use crate::registry::{Instance, OpenedPackage};

/// Backs up `request.instance` into `request.destination`.
pub fn backup(ctl: &Controller, request: &BackupRequest) -> Result<BackupReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    ctl.check_cancel(Step::FindInstance)?;
    let instance = ctl.find_instance(&request.instance)?;
    // Who runs the tenant's work: refused (root) before anything is locked, written or run.
    let account = ctl.instance_account(&instance)?;
    let _lock = ctl.lock_instance(&instance.name, "backup")?;

    // 1. Parse APP-META.xml.
    let package = ctl.open_package(&instance)?;
    // 1.1 Find the backup script and whether it is `sufficient`; 1.2 resolve its interpreter:
    // refused before anything is written or run.
    let (script, interpreter) =
        script_run::backup_script_with_interpreter(ctl, &instance, &package)?.unzip();
    // Bad age recipients are the request's mistake: refused before anything is written.
    crate::archive::check_recipients(&request.archive.recipients).map_err(|source| {
        OperationError::Archive {
            step: Step::BackupResources,
            source,
        }
    })?;
    // 3.1 Check the destination. Done before any work so that a refused destination costs
    // nothing and leaves nothing behind.
    // A folder the instance's account owns may be its destination; one others can write to
    // is refused.
    let checked = Destination::check_for(
        absolute(&request.destination),
        request.force,
        account.as_ref(),
    )
    .map_err(destination_refused)?;
    // Refused before anything is written when the destination clearly cannot hold it, or
    // the web folders cross the instance's [limits].
    let estimate = crate::estimate::estimate_within(
        &instance,
        ctl.timeout(request.timeout),
        &ctl.config().walk_policy(&instance.name, account.as_ref()),
    )
    .map_err(|source| OperationError::Archive {
        step: Step::BackupResources,
        source,
    })?;
    let dest_dir = destination_dir(request);
    let sufficient = script.as_ref().is_some_and(|s| s.sufficient);
    check_space(&dest_dir, &estimate, request, sufficient)?;
    // Every backup is tagged with the key at the end: a key that cannot be used (another
    // user's, or in a folder another user could change) is refused before anything is written.
    ctl.backup_key(Step::CheckDestination)?;
    ctl.check_cancel(Step::CheckDestination)?;
    // The journal names the temporary destination before it exists: a controller killed at
    // any point after this leaves nothing the next start cannot find and delete.
    let operation = ctl.begin_operation(
        OperationKind::Backup,
        &instance.name,
        Step::CheckDestination,
        |id| vec![UndoAction::DeleteFile(checked.temp_path(id))],
    )?;
    // Creating the temporary file is also the writability test.
    let destination = match checked.create(operation.id()) {
        Ok(destination) => destination,
        Err(source) => return Err(operation.fail(destination_refused(source))),
    };
    let plan = Plan {
        ctl,
        request,
        instance: &instance,
        package: &package,
        script: script.as_ref().zip(interpreter.as_ref()),
        work: operation.work(),
        account: account.as_ref(),
    };
    let result = crate::database::as_account(account.as_ref(), || match script.as_ref() {
        Some(s) if s.sufficient => plan.script_only(&destination),
        _ => plan.controller_archive(&destination, &estimate),
    })
    // A signal after the last byte still stops the backup: nothing is put in place.
    .and_then(|()| ctl.check_cancel(Step::Finish));

    match result {
        Ok(()) => {
            // 3.3 Success: the file goes in place atomically, then it is reported. A signal
            // either comes first (and the backup rolls back) or finds it committed (and it is
            // kept): never both.
            let commit = || destination.commit();
            let committed = match crate::cancel::current() {
                Some(cancel) => cancel.commit_with(commit),
                None => Ok(commit()),
            }
            .map_err(|signal| OperationError::Interrupted {
                step: Step::Finish,
                signal,
                cause: None,
            })?
            .map_err(|source| OperationError::Destination {
                step: Step::Finish,
                source,
            })?;
            if script.as_ref().is_some_and(|s| s.sufficient) {
                record_script_backup(ctl, &instance, &package, &committed)?;
            }
            operation.succeed();
            Ok(BackupReport {
                instance: instance.name.clone(),
                file: committed.path,
                size: committed.size,
                sha256: committed.sha256,
                duration_ms: started.elapsed().as_millis() as u64,
            })
        }
        Err(error) => {
            // Measured before the half-made file goes, to name the place that filled up.
            let error = error.with_space_facts(
                &[dest_dir.as_path(), operation.work()],
                Some(estimate.total),
            );
            // 3.3 Failure: delete the half-made file and what the controller wrote itself.
            drop(destination);
            Err(operation.fail(error))
        }
    }
}

/// The folder the backup file goes to.
fn destination_dir(request: &BackupRequest) -> camino::Utf8PathBuf {
    let path = absolute(&request.destination);
    path.parent().map(ToOwned::to_owned).unwrap_or(path)
}

/// Refuses a backup whose estimate clearly exceeds the destination's free space.
fn check_space(
    dest_dir: &Utf8Path,
    estimate: &SizeEstimate,
    request: &BackupRequest,
    sufficient: bool,
) -> Result<(), OperationError> {
    let needed = required_space(estimate, request, sufficient);
    match crate::estimate::free_space(dest_dir) {
        Ok(free) if free < needed => Err(OperationError::NotEnoughSpace {
            step: Step::CheckDestination,
            place: dest_dir.to_owned(),
            free,
            needed,
            estimate: estimate.total,
        }),
        // Unknown free space is not a reason to refuse: the write itself will tell.
        _ => Ok(()),
    }
}

/// The free space below which the backup is refused. A `sufficient` script writes a file of
/// its own making, perhaps compressed: only the compressed bound applies.
fn required_space(estimate: &SizeEstimate, request: &BackupRequest, sufficient: bool) -> u64 {
    let options = if sufficient {
        crate::archive::ArchiveOptions::default()
    } else {
        request.archive.clone()
    };
    crate::estimate::required_space(estimate.total, &options)
}

/// What `backup --dry-run` shows: the checks of a backup, its size estimate and plan; nothing
/// is written, locked or run.
#[derive(Debug, Clone, serde::Serialize)]
pub struct BackupPlan {
    pub instance: String,
    pub destination: camino::Utf8PathBuf,
    /// `controller-archive` (the controller archives resources, the script adds its part),
    /// or `script-only` (a `sufficient` script writes the whole file).
    pub mode: &'static str,
    pub script: Option<camino::Utf8PathBuf>,
    pub estimate: SizeEstimate,
    pub free: Option<u64>,
    /// The free space below which the backup is refused.
    pub required: u64,
    pub fits: bool,
}

/// Steps 1 to 3.1 of a backup without side effects, plus the size estimate.
pub fn plan(ctl: &Controller, request: &BackupRequest) -> Result<BackupPlan, OperationError> {
    let instance = ctl.find_instance(&request.instance)?;
    let package = ctl.open_package(&instance)?;
    let script =
        script_run::backup_script_with_interpreter(ctl, &instance, &package)?.map(|(s, _)| s);
    crate::archive::check_recipients(&request.archive.recipients).map_err(|source| {
        OperationError::Archive {
            step: Step::BackupResources,
            source,
        }
    })?;
    let destination = absolute(&request.destination);
    Destination::check(destination.clone(), request.force).map_err(destination_refused)?;
    let estimate = crate::estimate::estimate_within(
        &instance,
        ctl.timeout(request.timeout),
        &ctl.config().walk_policy(&instance.name, None),
    )
    .map_err(|source| OperationError::Archive {
        step: Step::BackupResources,
        source,
    })?;
    let free = crate::estimate::free_space(&destination_dir(request)).ok();
    let sufficient = script.as_ref().is_some_and(|s| s.sufficient);
    let required = required_space(&estimate, request, sufficient);
    Ok(BackupPlan {
        instance: instance.name.clone(),
        destination,
        mode: match &script {
            Some(s) if s.sufficient => "script-only",
            _ => "controller-archive",
        },
        script: script.map(|s| package.root.join("scripts").join(&s.name)),
        fits: free.is_none_or(|f| f >= required),
        estimate,
        free,
        required,
    })
}

fn destination_refused(source: crate::destination::DestinationError) -> OperationError {
    OperationError::Destination {
        step: Step::CheckDestination,
        source,
    }
}

struct Plan<'a> {
    ctl: &'a Controller,
    request: &'a BackupRequest,
    instance: &'a Instance,
    package: &'a OpenedPackage,
    script: Option<(&'a Script, &'a ResolvedInterpreter)>,
    work: &'a Utf8Path,
    account: Option<&'a crate::account::Account>,
}

impl Plan<'_> {
    /// `sufficient`: the destination is exactly what the script writes.
    /// With age recipients the script writes into the work folder and the controller
    /// encrypts its file into the destination: a backup asked to be encrypted never lies on
    /// disk in clear beyond the private work folder.
    fn script_only(&self, destination: &PreparedDestination) -> Result<(), OperationError> {
        let (script, interpreter) = self.script.expect("sufficient implies a script");
        self.ctl
            .report_part("backup", &self.instance.name, "script", &script.name, None);
        let recipients = &self.request.archive.recipients;
        if recipients.is_empty() {
            return self.run_script(script, interpreter, destination.temp_path());
        }
        let clear = self.work.join("script-backup");
        self.run_script(script, interpreter, &clear)?;
        let encrypted = crate::archive::encrypt_file(&clear, destination.file(), recipients)
            .map_err(|source| OperationError::Archive {
                step: Step::Finish,
                source,
            });
        let _ = std::fs::remove_file(&clear);
        encrypted
    }

    /// No script, or not `sufficient`: 1.1 the controller backs up the resources itself, then
    /// the script (if any) writes its own part, and all goes into one archive.
    fn controller_archive(
        &self,
        destination: &PreparedDestination,
        estimate: &SizeEstimate,
    ) -> Result<(), OperationError> {
        let work = self.work;
        let header = super::manifest_header(&self.package.meta, &self.instance.name);
        let key = self.ctl.backup_key(Step::BackupResources)?;
        // Every write checks the cancellation token and counts bytes for the progress.
        let out = Guarded::new(destination.file());
        let mut writer =
            ArchiveWriter::create(out, &self.request.archive, header).map_err(|source| {
                OperationError::Archive {
                    step: Step::BackupResources,
                    source,
                }
            })?;
        writer.tag_with(key);
        writer.walk_policy(
            self.ctl
                .config()
                .walk_policy(&self.instance.name, self.account),
        );
        let name = &self.instance.name;
        // The bytes counted are those written to the archive: only without compression and
        // encryption do they add up to the estimate, so only then is a total announced.
        let plain = matches!(
            self.request.archive.compression,
            crate::archive::Compression::None
        ) && self.request.archive.recipients.is_empty();
        let total = |bytes: Option<u64>| bytes.filter(|_| plain);

        // 1.1 Databases, dumped with the servers' own tools.
        for (db_id, db) in &self.instance.databases {
            self.ctl.check_cancel(Step::BackupResources)?;
            let size = estimate
                .databases
                .iter()
                .find(|d| &d.db_id == db_id)
                .and_then(|d| d.bytes);
            self.ctl
                .report_part("backup", name, "database", db_id, total(size));
            let dump = work.join(super::dump_part_name(db_id));
            let info = crate::database::dump(db, &dump, self.ctl.timeout(self.request.timeout))
                .map_err(|source| OperationError::Database {
                    step: Step::BackupResources,
                    db_id: db_id.clone(),
                    source,
                })?;
            writer
                .add_file_part(
                    &super::dump_part_name(db_id),
                    PartKind::DatabaseDump {
                        db_id: db_id.clone(),
                        kind: db.kind.as_str().to_owned(),
                        row_counts: Some(info.row_counts.clone()),
                    },
                    &dump,
                )
                .map_err(|source| OperationError::Archive {
                    step: Step::BackupResources,
                    source,
                })?;
            // The dump is in the archive; free the space now rather than at the end.
            let _ = std::fs::remove_file(&dump);
        }
        // 1.1 Web folders, with modes, symlinks and empty folders.
        for (url, dir) in self.instance.archived_web_dirs() {
            self.ctl.check_cancel(Step::BackupResources)?;
            let size = estimate
                .web_dirs
                .iter()
                .find(|w| &w.mapping_url == url)
                .map(|w| w.bytes);
            self.ctl
                .report_part("backup", name, "web-folder", url, total(size));
            if !dir.exists() {
                return Err(OperationError::MissingWebDir {
                    step: Step::BackupResources,
                    instance: self.instance.name.clone(),
                    mapping: url.clone(),
                    dir: dir.clone(),
                });
            }
            writer
                .add_web_dir(url, dir)
                .map_err(|source| OperationError::Archive {
                    step: Step::BackupResources,
                    source,
                })?;
        }
        // 3.2 The script's own part.
        if let Some((script, interpreter)) = self.script {
            self.ctl.check_cancel(Step::RunScript)?;
            self.ctl
                .report_part("backup", name, "script", &script.name, None);
            let script_file = work.join("script-backup");
            self.run_script(script, interpreter, &script_file)?;
            writer
                .add_file_part("script-backup", PartKind::ScriptBackup, &script_file)
                .map_err(|source| OperationError::Archive {
                    step: Step::RunScript,
                    source,
                })?;
        }
        writer.finish().map_err(|source| OperationError::Archive {
            step: Step::Finish,
            source,
        })?;
        Ok(())
    }

    /// 2 + 3.2: build the environment and run `INTERPRETER SCRIPT backup`.
    fn run_script(
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
            ScriptOperation::Backup {
                backup_file: backup_file.to_owned(),
            },
            self.request.timeout,
            self.work,
            self.account,
        )
    }
}

/// A `sufficient` backup has no manifest of ours: keep its SHA-256 and package identity so that
/// restore can check the file is one of ours, unchanged, and of the right package.
fn record_script_backup(
    ctl: &Controller,
    instance: &Instance,
    package: &OpenedPackage,
    file: &CommittedFile,
) -> Result<(), OperationError> {
    let key = ctl.backup_key(Step::Finish)?;
    BackupRecord::for_script_backup(&package.meta, &instance.name, file)
        .sign(&key)
        .save(&ctl.records_dir())
        .map_err(OperationError::io(
            Step::Finish,
            "cannot record the backup's checksum in",
            ctl.records_dir(),
        ))
}
