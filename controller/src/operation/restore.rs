//! Restore of one instance from a backup file (controller guide, "Restoring Service Instance"):
//! same steps as backup with argument `restore`, a readable `BACKUP_FILE`, and an instance that
//! exists already. Nothing of the instance changes until the whole file is verified; before the
//! first change a safety snapshot is taken, and any later failure puts the snapshot back.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use aps_meta::model::{AppMeta, Script};
use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::archive::{
    ArchiveError, ArchiveOptions, ArchiveReader, ArchiveWriter, Compression, ExtractPlan, PartKind,
};
use crate::controller::{Controller, ControllerConfig, absolute};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::journal::{OperationKind, UndoAction};
use crate::operation::record::BackupRecord;
use crate::operation::{RestoreReport, RestoreRequest, script_run};
use crate::registry::{Instance, InstanceStore, OpenedPackage};

/// What the backup file turned out to be, once verified.
enum Source {
    /// The controller's archive, verified: resources (and the script's part, if any) inside.
    Archive(ArchiveReader),
    /// Exactly what a `sufficient` script wrote, known by its recorded SHA-256.
    ScriptFile {
        record: BackupRecord,
        /// Encrypted whole by the controller (age recipients at backup time).
        encrypted: bool,
        /// The very file that was hashed, held open: the script gets a private copy of it
        /// (checked against the record again), never the path, which the tenant may swap.
        file: std::fs::File,
    },
}

impl Source {
    /// (package id, if the package has one; package name; version; release) of the backup.
    fn package(&self) -> (Option<String>, String, String, String) {
        match self {
            Source::Archive(r) => {
                let h = &r.manifest().header;
                (
                    Some(h.package_id.clone()).filter(|id| !id.is_empty()),
                    h.package_name.clone(),
                    h.version.clone(),
                    h.release.clone(),
                )
            }
            Source::ScriptFile { record: r, .. } => (
                r.package_id.clone(),
                r.package_name.clone(),
                r.version.clone(),
                r.release.clone(),
            ),
        }
    }

    fn version(&self) -> (String, String) {
        let (_, _, version, release) = self.package();
        (version, release)
    }

    /// The instance the backup was made of, and when.
    fn origin(&self) -> (String, Option<jiff::Timestamp>) {
        match self {
            Source::Archive(r) => {
                let h = &r.manifest().header;
                (h.instance.clone(), Some(h.created))
            }
            Source::ScriptFile { record: r, .. } => (r.instance.clone(), r.created.parse().ok()),
        }
    }
}

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
    let script = script_run::find_backup_script(&instance, &package)?;
    let interpreter = script
        .as_ref()
        .map(|s| script_run::resolve_interpreter(ctl, s))
        .transpose()?;

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
        // Persisted before the first change: a killed controller is rolled back from it.
        Some(path) => take_snapshot(ctl, &instance, &package.meta, path).and_then(|()| {
            operation.add_undo(
                UndoAction::RestoreSnapshot {
                    snapshot: path.clone(),
                    instance: instance.name.clone(),
                },
                Step::SafetySnapshot,
            )
        }),
        None => Ok(()),
    };
    if let Err(error) = prepared.and_then(|()| ctl.check_cancel(Step::SafetySnapshot)) {
        // Nothing of the instance changed yet; a full disk can only be the work folder's.
        let error = error.with_space_facts(&[operation.work()], None);
        return Err(operation.fail(error));
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
            if snapshot.is_some() {
                ctl.report_part("restore", &instance.name, "rollback", "", None);
            }
            // A second signal must not cut the rollback short.
            if let Some(path) = &snapshot
                && let Err(rollback) =
                    crate::cancel::shielded(|| put_back(ctl.config(), &instance, path, account))
            {
                // Keep the snapshot (and the journal entry) for a person to act on.
                operation.fail_keeping_work(&rollback.to_string());
                return Err(OperationError::RollbackFailed {
                    original: Box::new(error),
                    rollback: Box::new(rollback),
                    snapshot: path.clone(),
                });
            }
            let error = operation.fail(error);
            if snapshot.is_some() {
                remove_kept_snapshots(ctl, &instance.name);
            }
            Err(error)
        }
    }
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

/// Reads the whole file and decides what it is: our archive (every part's SHA-256 checked
/// against its manifest), or a `sufficient` script's file whose SHA-256 we recorded.
fn verify_source(
    ctl: &Controller,
    instance: &Instance,
    meta: &AppMeta,
    file: &Utf8Path,
    request: &RestoreRequest,
) -> Result<Source, OperationError> {
    // A missing, unreadable or non-regular file is the control panel's mistake about the
    // backup, not an internal failure: reported as an invalid backup, naming the file.
    let unusable = |reason: String| OperationError::BackupMismatch {
        step: Step::CheckDestination,
        file: file.to_owned(),
        instance: instance.name.clone(),
        reason,
    };
    let metadata =
        std::fs::metadata(file).map_err(|e| unusable(format!("it cannot be read: {e}")))?;
    if !metadata.is_file() {
        return Err(unusable("it is not a regular file".into()));
    }
    let held =
        std::fs::File::open(file).map_err(|e| unusable(format!("it cannot be read: {e}")))?;
    let records = ctl.records_dir();
    let records_err = OperationError::io(
        Step::VerifyBackup,
        "cannot read backup records in",
        records.clone(),
    );
    // A recorded `sufficient` file first: such a script may itself write a tar or a zstd
    // file. Hashing costs a whole extra read, so only a file whose size some record has is
    // hashed (records are few and small; backups may be large).
    let mut sha256 = None;
    if BackupRecord::any_with_size(&records, metadata.len()).map_err(records_err)? {
        let (_, hash) = crate::digest::sha256_reader(&mut &held)
            .map_err(|e| unusable(format!("it cannot be read: {e}")))?;
        if let Some(record) = BackupRecord::find(&records, &hash).map_err(OperationError::io(
            Step::VerifyBackup,
            "cannot read backup records in",
            records.clone(),
        ))? {
            // A record is believed only with this controller's tag: anyone who could drop a
            // record file could otherwise vouch for any file.
            if !record.is_authentic(&ctl.backup_key(Step::VerifyBackup)?) {
                return Err(OperationError::Archive {
                    step: Step::VerifyBackup,
                    source: ArchiveError::Untrusted {
                        archive: file.to_owned(),
                        reason: format!(
                            "its record {records}/{hash}.json carries no valid tag of this controller's key"
                        ),
                    },
                });
            }
            let encrypted =
                crate::archive::is_encrypted(file).map_err(|source| OperationError::Archive {
                    step: Step::VerifyBackup,
                    source,
                })?;
            // Without the identity an encrypted one cannot be given to the script: refused
            // now, before the safety snapshot and any change.
            if encrypted && request.identity.is_none() {
                return Err(OperationError::Archive {
                    step: Step::VerifyBackup,
                    source: ArchiveError::IdentityRequired {
                        archive: file.to_owned(),
                    },
                });
            }
            return Ok(Source::ScriptFile {
                record,
                encrypted,
                file: held,
            });
        }
        sha256 = Some(hash);
    }
    // Made (tagged) by this controller, or imported: anything else is refused here, before
    // the safety snapshot and any change.
    let key = ctl.backup_key(Step::VerifyBackup)?;
    let imported = |seal: &crate::archive::ManifestSeal| super::import::is_imported(ctl, seal);
    match ArchiveReader::open_trusted(file, request.identity.as_deref(), &key, &imported) {
        Ok(reader) => Ok(Source::Archive(reader)),
        Err(ArchiveError::NotAnArchive { .. }) => Err(OperationError::BackupMismatch {
            step: Step::VerifyBackup,
            file: file.to_owned(),
            instance: instance.name.clone(),
            reason: format!(
                "it is neither a backup archive of this controller nor a recorded backup of a `sufficient` backup-script of package {} ({}: altered, truncated, or made elsewhere)",
                display_package(meta),
                match &sha256 {
                    Some(h) => format!("SHA-256 {h} unknown"),
                    None => "no record of a file of its size".to_owned(),
                }
            ),
        }),
        Err(source) => Err(OperationError::Archive {
            step: Step::VerifyBackup,
            source,
        }),
    }
}

/// The backup must be of this package, and of a version this package can take data from.
fn check_restorable(
    instance: &Instance,
    meta: &AppMeta,
    script: Option<&Script>,
    file: &Utf8Path,
    source: &Source,
) -> Result<(), OperationError> {
    let refuse = |reason: String| OperationError::BackupMismatch {
        step: Step::VerifyBackup,
        file: file.to_owned(),
        instance: instance.name.clone(),
        reason,
    };
    let (id, name, version, release) = source.package();
    // Identity: `id` (1.2), else the name for packages without one.
    let same_package = match (&id, &meta.id) {
        (Some(a), Some(b)) => a == b,
        _ => name == meta.name,
    };
    if !same_package {
        return Err(refuse(format!(
            "it is a backup of package {} but the instance runs {}",
            id.as_deref().unwrap_or(&name),
            display_package(meta)
        )));
    }
    if !version_allowed(meta, &version, &release) {
        return Err(refuse(format!(
            "it was made with version {version}-{release}; the instance runs {}-{}, which neither equals it nor is newer and declares (upgrade/patch match, upgradable-from) that it can update from it",
            meta.version, meta.release
        )));
    }
    if matches!(source, Source::ScriptFile { .. }) && !script.is_some_and(|s| s.sufficient) {
        return Err(refuse(
            "it was written by a `sufficient` backup-script, but this package's backup-script is not `sufficient` (or absent), so nothing could restore the resources".into(),
        ));
    }
    Ok(())
}

/// The version rule (docs/restore.md): the same version and release; or
/// an older one that this package's own update rules accept — an `upgrade` or `patch` whose
/// `match` holds for the backup's version and release, or APS 1.0's `upgradable-from`. Those
/// rules say which data this package can take over, which is what a restore hands it. A newer
/// backup is never accepted, whatever a loosely written rule matches: older code cannot be
/// trusted with newer data.
pub(crate) fn version_allowed(meta: &AppMeta, version: &str, release: &str) -> bool {
    use aps_meta::version_match::compare_versions;
    use std::cmp::Ordering;
    if version == meta.version && release == meta.release {
        return true;
    }
    let older = match compare_versions(version, &meta.version) {
        Ordering::Less => true,
        Ordering::Equal => compare_versions(release, &meta.release) == Ordering::Less,
        Ordering::Greater => false,
    };
    if !older {
        return false;
    }
    let by_rule = meta.patches.iter().chain(&meta.upgrades).any(|r| {
        aps_meta::version_match::matches(&r.match_expr, version, release).unwrap_or(false)
    });
    let by_1_0 = meta
        .upgradable_from
        .iter()
        .any(|u| u.version == version && u.release.as_deref().is_none_or(|r| r == release));
    by_rule || by_1_0
}

fn display_package(meta: &AppMeta) -> String {
    format!(
        "{} {}-{}",
        meta.id.as_deref().unwrap_or(&meta.name),
        meta.version,
        meta.release
    )
}

struct Steps<'a> {
    ctl: &'a Controller,
    request: &'a RestoreRequest,
    instance: &'a Instance,
    package: &'a OpenedPackage,
    script: Option<(&'a Script, &'a ResolvedInterpreter)>,
    file: &'a Utf8Path,
    work: &'a Utf8Path,
    account: Option<&'a Account>,
}

impl Steps<'_> {
    /// The controller puts web folders and databases back, then the script (if any) restores
    /// its own part.
    fn restore_archive(&self, reader: &ArchiveReader) -> Result<(), OperationError> {
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
    fn restore_script_file(
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
            ScriptOperation::Restore {
                backup_file: backup_file.to_owned(),
            },
            self.request.timeout,
            self.work,
            self.account,
        )
    }
}

/// Copies the open file `held` (from its start) to the new file `dest` (0600, never through a
/// symlink), checking that what was copied has SHA-256 `sha256`: the file may have been
/// rewritten in place since it was checked.
fn private_copy(held: &std::fs::File, dest: &Utf8Path, sha256: &str) -> std::io::Result<()> {
    use sha2::{Digest, Sha256};
    use std::io::{Read, Seek, Write};
    use std::os::unix::fs::OpenOptionsExt;
    let mut src = held;
    src.seek(std::io::SeekFrom::Start(0))?;
    let mut out = std::fs::File::options()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(dest)?;
    let mut sha = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match src.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        sha.update(&buf[..n]);
        out.write_all(&buf[..n])?;
    }
    out.sync_all()?;
    let actual = hex::encode(sha.finalize());
    if actual != sha256 {
        drop(out);
        let _ = std::fs::remove_file(dest);
        return Err(std::io::Error::other(format!(
            "it changed after it was checked (SHA-256 now {actual}, recorded {sha256})"
        )));
    }
    Ok(())
}

/// The safety snapshot: a compressed archive of the instance as it is now.
fn take_snapshot(
    ctl: &Controller,
    instance: &Instance,
    meta: &AppMeta,
    path: &Utf8Path,
) -> Result<(), OperationError> {
    let account = ctl.instance_account(instance)?;
    write_snapshot(ctl.config(), instance, meta, path, account.as_ref()).map_err(|e| match e {
        OperationError::Archive { source, .. } => OperationError::Archive {
            step: Step::SafetySnapshot,
            source,
        },
        OperationError::Database { db_id, source, .. } => OperationError::Database {
            step: Step::SafetySnapshot,
            db_id,
            source,
        },
        other => other,
    })
}

fn write_snapshot(
    config: &ControllerConfig,
    instance: &Instance,
    meta: &AppMeta,
    path: &Utf8Path,
    account: Option<&Account>,
) -> Result<(), OperationError> {
    let arch = |source| OperationError::Archive {
        step: Step::SafetySnapshot,
        source,
    };
    let file = std::fs::File::create(path).map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot create",
        path,
    ))?;
    // Compressed, and holes kept as holes: a snapshot needs about what the site's data takes,
    // not its apparent size. zstd's fastest level on every core: nothing else runs while it is
    // taken, and a restore should cost about what it did when snapshots were plain copies.
    let options = ArchiveOptions {
        compression: Compression::Zstd { level: -3 },
        ..ArchiveOptions::default()
    };
    let mut writer = ArchiveWriter::create(
        &file,
        &options,
        super::manifest_header(meta, &instance.name),
    )
    .map_err(arch)?;
    writer.walk_policy(config.walk_policy(&instance.name, account));
    // Every archive the controller writes is tagged, its private snapshots too.
    let key = config.backup_key().map_err(|e| OperationError::Io {
        step: Step::SafetySnapshot,
        what: "cannot use the backup key",
        path: e.path().to_owned(),
        source: std::io::Error::other(e.to_string()),
    })?;
    writer.tag_with(key);
    let dir = path.parent().expect("snapshot path has a folder");
    for (db_id, db) in &instance.databases {
        let dump = dir.join(format!("snapshot-{}.sql", super::file_safe(db_id)));
        let info = crate::database::dump(db, &dump, config.default_timeout).map_err(|source| {
            OperationError::Database {
                step: Step::SafetySnapshot,
                db_id: db_id.clone(),
                source,
            }
        })?;
        writer
            .add_file_part(
                &super::dump_part_name(db_id),
                PartKind::DatabaseDump {
                    db_id: db_id.clone(),
                    kind: db.kind.as_str().to_owned(),
                    row_counts: Some(info.row_counts),
                },
                &dump,
            )
            .map_err(arch)?;
        let _ = std::fs::remove_file(&dump);
    }
    for (url, dir) in super::archived_web_dirs(instance) {
        // A folder that does not exist yet (a fresh staging instance) has nothing to keep; the
        // rollback removes whatever the restore created there. A symlink is not "missing":
        // it reaches the writer, which refuses it by name.
        if std::fs::symlink_metadata(dir).is_ok() {
            writer.add_web_dir(url, dir).map_err(arch)?;
        }
    }
    writer.finish().map_err(arch)?;
    file.sync_all().map_err(OperationError::io(
        Step::SafetySnapshot,
        "cannot sync",
        path,
    ))
}

/// Puts the instance back exactly as the snapshot holds it.
fn put_back(
    config: &ControllerConfig,
    instance: &Instance,
    snapshot: &Utf8Path,
    account: Option<&Account>,
) -> Result<(), OperationError> {
    let reader = ArchiveReader::open(snapshot, None).map_err(|source| OperationError::Archive {
        step: Step::Rollback,
        source,
    })?;
    let work = snapshot.parent().expect("snapshot path has a folder");
    apply_archive(
        &reader,
        instance,
        work,
        config.default_timeout,
        Step::Rollback,
        account,
        None,
    )?;
    // Folders absent from the snapshot did not exist before the restore.
    for (url, dir) in super::archived_web_dirs(instance) {
        let kept = reader
            .manifest()
            .parts
            .iter()
            .any(|p| matches!(&p.kind, PartKind::WebDir { mapping_url } if mapping_url == url));
        if !kept && std::fs::symlink_metadata(dir).is_ok() {
            crate::archive::remove_dir_all_nofollow(dir.as_std_path()).map_err(
                OperationError::io(
                    Step::Rollback,
                    "cannot remove the web folder created by the restore",
                    dir,
                ),
            )?;
        }
    }
    Ok(())
}

/// Makes the instance's web folders and databases what the archive holds, in one extraction
/// pass: every web folder is emptied and refilled, every database emptied and loaded. Parts
/// for mappings or databases the instance does not have are skipped (a migration target may
/// differ). Returns the extracted script part, if the archive has one.
fn apply_archive(
    reader: &ArchiveReader,
    instance: &Instance,
    work: &Utf8Path,
    timeout: std::time::Duration,
    step: Step,
    owner: Option<&Account>,
    ctl: Option<&Controller>,
) -> Result<Option<Utf8PathBuf>, OperationError> {
    let arch = |source| OperationError::Archive { step, source };
    let mut plan = ExtractPlan::new();
    let mut dumps = Vec::new();
    let mut script_part = None;
    for part in &reader.manifest().parts {
        match &part.kind {
            PartKind::WebDir { mapping_url } => {
                if let Some(dir) = instance.web_dirs.get(mapping_url) {
                    empty_folder(dir, owner).map_err(OperationError::io(
                        step,
                        "cannot empty web folder",
                        dir,
                    ))?;
                    plan = plan.web_dir(mapping_url, dir.clone());
                }
            }
            PartKind::DatabaseDump { db_id, .. } => {
                if let Some(db) = instance.databases.get(db_id) {
                    let dump = work.join(format!("load-{}.sql", super::file_safe(db_id)));
                    plan = plan.file(&part.name, dump.clone());
                    dumps.push((db_id.clone(), db, dump));
                }
            }
            PartKind::ScriptBackup => {
                let path = work.join("script-backup");
                plan = plan.file(&part.name, path.clone());
                script_part = Some(path);
            }
        }
    }
    // Restored files are the tenant's, never root's: given to the account through their
    // descriptors as they are created (symlinks not followed).
    let plan = plan.owner(owner.filter(|a| !a.is_current()));
    reader.extract(&plan).map_err(arch)?;
    for (db_id, db, dump) in dumps {
        if let Some(ctl) = ctl {
            ctl.check_cancel(step)?;
            // The load tool reads the dump itself: no byte count, only that it runs.
            ctl.report_part("restore", &instance.name, "database", &db_id, None);
        }
        crate::database::load(db, &dump, timeout).map_err(|source| OperationError::Database {
            step,
            db_id: db_id.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&dump);
    }
    Ok(script_part)
}

/// Mappings the archive has no part of because the backed-up instance kept their folder
/// inside a parent mapping's folder (`/media` → `<root>/media`), while this instance keeps it
/// apart (a migration target registered with `"/media" = "/data/media"`): their content came
/// back inside the parent's folder, at the mapping's relative URL. It is moved to the
/// mapping's own folder, which is emptied first, so the web server finds it where this
/// instance's `WEB_…_DIR` says. Same file system only (a rename); otherwise the restore fails
/// and is rolled back rather than copying half.
fn relocate_separate_mappings(
    reader: &ArchiveReader,
    instance: &Instance,
) -> Result<(), OperationError> {
    let manifest = reader.manifest();
    for (url, dir) in super::archived_web_dirs(instance) {
        if manifest.web_dir(url).is_some() {
            continue;
        }
        // The nearest mapping above `url` whose folder the archive holds.
        let parent = instance
            .web_dirs
            .iter()
            .filter(|(u, _)| *u != url && manifest.web_dir(u).is_some())
            .filter_map(|(u, d)| {
                let rel = crate::archive::url_below(url, u)?;
                Some((u.len(), (d.clone(), rel)))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, found)| found);
        let Some((parent_dir, rel)) = parent else {
            continue;
        };
        let io = |what| OperationError::io(Step::RestoreResources, what, dir);
        // The restored copy lies in the tenant's folder: reached from the parent mapping's
        // folder without following any symlink (a symlink there is never moved through).
        let parent_fd = crate::archive::open_dir_nofollow(parent_dir.as_std_path())
            .map_err(io("cannot open the parent mapping's folder for"))?;
        let rel = std::path::Path::new(rel);
        let inner = match crate::archive::open_dir_beneath(parent_fd.as_fd(), rel) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot open the restored folder for")(e)),
        };
        let holder = crate::archive::open_dir_beneath(
            parent_fd.as_fd(),
            rel.parent().unwrap_or(std::path::Path::new("")),
        )
        .map_err(io("cannot open the restored folder for"))?;
        let (target, _) = crate::archive::open_or_create_dir(dir.as_std_path())
            .map_err(io("cannot open web folder"))?;
        crate::archive::empty_dir_at(target.as_fd()).map_err(io("cannot empty web folder"))?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&inner)
            .map_err(|e| io("cannot read the restored folder for")(e.into()))?
        {
            let entry = entry.map_err(|e| io("cannot read the restored folder for")(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        for name in names {
            let name = std::ffi::OsStr::from_bytes(&name);
            rustix::fs::renameat(&inner, name, &target, name).map_err(|e| {
                io("cannot move restored content (another file system?) into")(e.into())
            })?;
        }
        drop(inner);
        let last = rel
            .file_name()
            .expect("a mapping below its parent has a name");
        rustix::fs::unlinkat(&holder, last, rustix::fs::AtFlags::REMOVEDIR)
            .map_err(|e| io("cannot remove the restored copy beside")(e.into()))?;
    }
    Ok(())
}

/// Journal recovery after a killed controller: put the instance back from its snapshot.
pub(crate) fn put_back_snapshot(
    config: &ControllerConfig,
    store: &dyn InstanceStore,
    snapshot: &Utf8Path,
    instance: &str,
) -> Result<(), String> {
    let instance = store.get(instance).map_err(|e| e.to_string())?;
    // What the snapshot puts back belongs to the instance's account, as after a restore; an
    // account that is refused now (root) leaves the files to the controller.
    let account = crate::controller::resolve_account(config, &instance)
        .ok()
        .flatten();
    crate::database::as_account(account.as_ref(), || {
        put_back(config, &instance, snapshot, account.as_ref())
    })
    .map_err(|e| e.to_string())
}

/// Removes everything inside `dir` but keeps the folder itself (it may be a mount point, or
/// carry ownership and mode set by the control panel); creates it when missing. By descriptor:
/// `dir` is refused when it is a symlink or lies under one a tenant could have placed, and
/// nothing inside is followed (`crate::archive::empty_dir_at`).
/// A folder it creates is given to `owner`: a web folder belongs to the instance's account.
fn empty_folder(dir: &Utf8Path, owner: Option<&Account>) -> std::io::Result<()> {
    let (fd, created) = crate::archive::open_or_create_dir(dir.as_std_path())?;
    if let (true, Some(a)) = (created, owner) {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(a.uid)),
            Some(rustix::fs::Gid::from_raw(a.gid)),
        )?;
    }
    crate::archive::empty_dir_at(std::os::fd::AsFd::as_fd(&fd))
}
