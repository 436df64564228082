//! Every call into the controller goes through here, so the rest of the panel depends on a
//! handful of functions and not on the controller's evolving API.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use aps_controller::archive::{ArchiveError, ArchiveOptions, PartKind};
pub use aps_controller::operation::{BackupReport, RestoreReport};
use aps_controller::operation::{BackupRequest, RestoreRequest};
use aps_controller::registry::{StateDir, StoreError};
use aps_controller::{Controller, ControllerConfig, ErrorKind};

use crate::naming::Compression;
use crate::problem::Problem;

/// How the controller's archive writer packs a backup (from panel.toml).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ArchiveChoice {
    pub compression: Compression,
    pub age_recipients: Vec<String>,
}

impl ArchiveChoice {
    /// The controller's archive options; `zstd_workers` 0 is one per core (at most 4).
    pub fn options(&self, zstd_workers: u32) -> ArchiveOptions {
        ArchiveOptions {
            compression: match self.compression {
                Compression::Zstd => aps_controller::archive::Compression::ZSTD,
                Compression::Gzip => aps_controller::archive::Compression::GZIP,
                Compression::None => aps_controller::archive::Compression::None,
            },
            recipients: self.age_recipients.clone(),
            zstd_workers,
        }
    }
}

/// What identifies the package of a backed-up instance, for the snapshot's tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct PackageTags {
    pub id: String,
    pub version: String,
    pub release: String,
}

/// Result of the package's verification-script, or of the manifest comparison.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verification {
    pub passed: bool,
    /// `verification-script`, `manifest-counts` or `restore-only`.
    pub method: &'static str,
    pub detail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot open the controller with state folder {state_dir}: {message}")]
    Open {
        state_dir: Utf8PathBuf,
        message: String,
    },
    #[error("{operation} of instance {instance} failed: {}", .problem.message)]
    Operation {
        operation: &'static str,
        instance: String,
        /// Kind and step of the controller's error.
        problem: Problem,
    },
    #[error("archive {archive} did not verify: {message}")]
    Verify {
        archive: Utf8PathBuf,
        kind: ErrorKind,
        message: String,
    },
    #[error("cannot list registered instances: {message}")]
    Instances { message: String },
    /// The store could not be opened for a reason that is not a mistake of panel.toml: its
    /// bucket did not answer (`remote-unreachable`).
    #[error("{}", .problem.message)]
    Store { problem: Problem },
    #[error(transparent)]
    StateDir(#[from] aps_controller::registry::StateDirError),
}

/// What the repository store needs to back one instance up under the controller's rules, with
/// the instance's lock held (so no backup, restore or migrate of it runs meanwhile) until this
/// is dropped.
#[cfg(feature = "repository")]
pub struct RepositorySource {
    pub instance: aps_controller::registry::Instance,
    pub package: Option<PackageTags>,
    /// The account the dump tools run as (`None`: the controller is not root).
    pub account: Option<aps_controller::account::Account>,
    /// The manifest header an archive backup of it would carry now.
    pub header: aps_controller::archive::ManifestHeader,
    /// The controller's backup key, which tags the snapshot's manifest.
    pub key: aps_controller::archive::TagKey,
    /// The configured bound of a dump (and of the backup-script).
    pub dump_timeout: std::time::Duration,
    /// The package's backup-script, checked (file and interpreter), when it declares one.
    pub script: Option<aps_controller::operation::script_file::BackupScript>,
    /// The instance's package, opened: the backup-script runs from it.
    pub opened: aps_controller::registry::OpenedPackage,
    _lock: aps_controller::lock::InstanceLock,
}

/// Backs `instance` up into `destination` for `run` (which backs up several at once).
pub fn backup(
    controller: &Controller,
    instance: &str,
    destination: &Utf8Path,
    archive: &ArchiveChoice,
) -> Result<BackupReport, EngineError> {
    let mut request = BackupRequest::new(instance, destination);
    // `run` already backs up `jobs` instances at once: one zstd thread each.
    request.archive = archive.options(1);
    controller
        .backup(&request)
        .map_err(operation_failed("backup", instance))
}

/// The record of `name` (with its database passwords), its account (root refused, as for
/// every operation), its package's identity and the backup key, under the instance's lock:
/// for the repository store, which reads the web folders and streams the dumps itself.
#[cfg(feature = "repository")]
pub fn repository_source(
    controller: &Controller,
    name: &str,
) -> Result<RepositorySource, EngineError> {
    let op_err = |kind: ErrorKind, message: String| EngineError::Operation {
        operation: "backup",
        instance: name.to_owned(),
        problem: Problem::new(kind, None, message),
    };
    let config = controller.config();
    let instance = controller.store().get(name).map_err(|e| match e {
        StoreError::NotFound { .. } => op_err(
            ErrorKind::InstanceNotFound,
            format!("{e}; `aps-controller instance list` shows the registered instances"),
        ),
        e => op_err(ErrorKind::Internal, e.to_string()),
    })?;
    let account = controller
        .instance_account(&instance)
        .map_err(operation_failed("backup", name))?;
    let lock = aps_controller::lock::InstanceLock::acquire(config.state.root(), name, "backup")
        .map_err(|e| match e {
            aps_controller::lock::LockError::Busy { .. } => op_err(ErrorKind::Busy, e.to_string()),
            e => op_err(ErrorKind::Internal, e.to_string()),
        })?;
    let package = controller
        .open_package(&instance)
        .map_err(operation_failed("backup", name))?;
    // Its file goes into the snapshot; a missing script file or interpreter refuses the
    // backup before any work, as for an archive backup.
    let script =
        aps_controller::operation::script_file::BackupScript::find(controller, &instance, &package)
            .map_err(operation_failed("backup", name))?;
    let header = aps_controller::operation::manifest_header(&package.meta, name);
    let tags = PackageTags {
        id: package
            .meta
            .id
            .clone()
            .unwrap_or_else(|| package.meta.name.clone()),
        version: package.meta.version.clone(),
        release: package.meta.release.clone(),
    };
    let key = backup_key(controller)?;
    Ok(RepositorySource {
        instance,
        package: Some(tags),
        account,
        header,
        key,
        dump_timeout: config.default_timeout,
        script,
        opened: package,
        _lock: lock,
    })
}

/// The controller's backup key (made on first use, or controller.toml's `backup-key-file`).
pub fn backup_key(controller: &Controller) -> Result<aps_controller::archive::TagKey, EngineError> {
    controller
        .config()
        .backup_key()
        .map_err(|e| EngineError::Open {
            state_dir: controller.config().state.root().to_owned(),
            message: e.to_string(),
        })
}

impl EngineError {
    /// The README's error kind of this failure.
    pub fn kind(&self) -> ErrorKind {
        match self {
            EngineError::Open { .. } | EngineError::StateDir(_) => ErrorKind::Usage,
            EngineError::Operation { problem, .. } | EngineError::Store { problem } => {
                kind_named(problem.kind)
            }
            EngineError::Verify { kind, .. } => *kind,
            EngineError::Instances { .. } => ErrorKind::Internal,
        }
    }

    /// As a problem of a report: kind, step and a message without the step.
    pub fn problem(&self) -> Problem {
        match self {
            EngineError::Operation { problem, .. } | EngineError::Store { problem } => {
                problem.clone()
            }
            e => Problem::new(e.kind(), None, e.to_string()),
        }
    }
}

/// The kind whose name is `name` (names come from [`ErrorKind::as_str`]).
fn kind_named(name: &str) -> ErrorKind {
    ErrorKind::named(name).unwrap_or(ErrorKind::Internal)
}

fn operation_failed(
    operation: &'static str,
    instance: &str,
) -> impl FnOnce(aps_controller::OperationError) -> EngineError {
    move |e| EngineError::Operation {
        operation,
        instance: instance.to_owned(),
        problem: Problem::from_operation(&e),
    }
}

/// The controller handle, shared by the worker threads of `run` (the controller is `Sync`).
pub struct Engine {
    controller: Controller,
}

impl Engine {
    pub fn open(state_dir: &Utf8Path) -> Result<Self, EngineError> {
        let open_err = |message: String| EngineError::Open {
            state_dir: state_dir.to_owned(),
            message,
        };
        let state =
            StateDir::resolve(Some(state_dir.to_owned())).map_err(|e| open_err(e.to_string()))?;
        let config = ControllerConfig::load(state).map_err(|e| open_err(e.to_string()))?;
        let controller = Controller::open(config).map_err(|e| open_err(e.to_string()))?;
        Ok(Engine { controller })
    }

    /// [`repository_source`] of this engine's controller.
    #[cfg(feature = "repository")]
    pub fn repository_source(&self, name: &str) -> Result<RepositorySource, EngineError> {
        repository_source(&self.controller, name)
    }

    /// The controller this engine calls.
    pub fn controller(&self) -> &Controller {
        &self.controller
    }

    /// The engine over a controller the caller already opened.
    pub fn with_controller(controller: Controller) -> Self {
        Engine { controller }
    }

    /// The controller's operations report their parts and bytes to `sink`.
    pub fn set_progress(
        &mut self,
        sink: Option<std::sync::Arc<dyn aps_controller::progress::Progress>>,
    ) {
        self.controller.set_progress(sink);
    }

    /// Names of the registered instances, sorted.
    pub fn instances(&self) -> Result<Vec<String>, EngineError> {
        let mut names: Vec<String> = self
            .controller
            .instances()
            .map_err(|e| EngineError::Instances {
                message: e.to_string(),
            })?
            .into_iter()
            .map(|i| i.name)
            .collect();
        names.sort();
        Ok(names)
    }

    /// The web folders of a registered instance (url-mapping → folder).
    pub fn web_dirs(&self, instance: &str) -> Result<BTreeMap<String, Utf8PathBuf>, EngineError> {
        self.controller
            .store()
            .get(instance)
            .map(|i| i.web_dirs)
            .map_err(|e| EngineError::Instances {
                message: e.to_string(),
            })
    }

    /// Backs `instance` up into `destination` (which the controller writes via temp + rename).
    pub fn backup(
        &self,
        instance: &str,
        destination: &Utf8Path,
        archive: &ArchiveChoice,
    ) -> Result<BackupReport, EngineError> {
        backup(&self.controller, instance, destination, archive)
    }

    pub fn restore(
        &self,
        instance: &str,
        source: &Utf8Path,
        identity: Option<&Utf8Path>,
    ) -> Result<RestoreReport, EngineError> {
        let mut request = RestoreRequest::new(instance, source);
        request.identity = identity.map(Utf8Path::to_owned);
        // Drills restore a backup into their staging instance, never into its own instance.
        request.from_other_instance = true;
        self.controller
            .restore(&request)
            .map_err(operation_failed("restore", instance))
    }

    /// Checks a backup end to end and returns a summary: the controller's archive by its format,
    /// manifest, every part's hash and its authentication tag (made or imported here); a
    /// `sufficient` backup-script's own file (no manifest) by its SHA-256 against the record
    /// the controller kept (and tagged) when it wrote it.
    pub fn verify_archive(
        &self,
        archive: &Utf8Path,
        identity: Option<&Utf8Path>,
    ) -> Result<String, EngineError> {
        // Intact and made (tagged) or imported by this controller: an archive from elsewhere
        // is refused as untrusted.
        let m = match self.controller.verify_archive(archive, identity) {
            Ok(m) => m,
            Err(aps_controller::OperationError::Archive {
                source: ArchiveError::NotAnArchive { .. },
                ..
            }) => return self.verify_script_backup(archive),
            Err(e) => {
                // What the user got wrong (no such file, no or a wrong identity) is usage; a
                // file that does not read back is a damaged backup.
                use aps_controller::OperationError as Op;
                let kind = match &e {
                    Op::Archive {
                        source: ArchiveError::Open { source, .. },
                        ..
                    } if source.kind() == std::io::ErrorKind::NotFound => ErrorKind::Usage,
                    Op::Archive {
                        source:
                            ArchiveError::IdentityRequired { .. }
                            | ArchiveError::IdentityFile { .. }
                            | ArchiveError::WrongIdentity { .. },
                        ..
                    } => ErrorKind::Usage,
                    _ if e.kind() == ErrorKind::UntrustedBackup => ErrorKind::UntrustedBackup,
                    _ => ErrorKind::InvalidBackup,
                };
                return Err(EngineError::Verify {
                    archive: archive.to_owned(),
                    kind,
                    message: e.to_string(),
                });
            }
        };
        Ok(format!(
            "{} parts, instance {}, package {} {}-{}, created {}",
            m.parts.len(),
            m.header.instance,
            m.header.package_name,
            m.header.version,
            m.header.release,
            m.header.created
        ))
    }

    fn verify_script_backup(&self, file: &Utf8Path) -> Result<String, EngineError> {
        let fail = |message: String| EngineError::Verify {
            archive: file.to_owned(),
            kind: ErrorKind::InvalidBackup,
            message,
        };
        let (_, sha256) = aps_controller::digest::sha256_file(file).map_err(|e| {
            let kind = if e.kind() == std::io::ErrorKind::NotFound {
                ErrorKind::Usage
            } else {
                ErrorKind::InvalidBackup
            };
            EngineError::Verify {
                archive: file.to_owned(),
                kind,
                message: format!("cannot read it: {e}"),
            }
        })?;
        match self.controller.script_backup_record(&sha256) {
            Ok(Some(r)) => Ok(format!(
                "the package's own backup file, SHA-256 {sha256} as recorded when instance {} \
                 ({} {}-{}) was backed up at {}",
                r.instance, r.package_name, r.version, r.release, r.created
            )),
            Ok(None) => Err(fail(format!(
                "it is not an aps-controller archive, and the controller has no record of a \
                 backup-script's file with SHA-256 {sha256}: it was not made here, or it changed \
                 since it was written"
            ))),
            Err(e) => Err(fail(e.to_string())),
        }
    }

    /// After `restore` into `instance`: the package's verification-script if it has one, else
    /// the restored manifest's web file counts and database row counts against what `instance`
    /// now holds.
    pub fn check_restored(
        &self,
        instance: &str,
        restore: &RestoreReport,
    ) -> Result<Verification, EngineError> {
        match self.controller.verify_instance(instance, None) {
            Ok(Some(report)) => {
                return Ok(Verification {
                    passed: true,
                    method: "verification-script",
                    detail: if report.stdout.is_empty() {
                        format!("{} {}: exit 0", report.script, report.argument)
                    } else {
                        format!(
                            "{} {}: exit 0: {}",
                            report.script, report.argument, report.stdout
                        )
                    },
                });
            }
            // The script ran and said no (or ran out of time): that is the drill's answer, with
            // the script's own words (the error holds its stderr tail).
            Err(e) if matches!(e.kind(), ErrorKind::ScriptFailed | ErrorKind::TimedOut) => {
                return Ok(Verification {
                    passed: false,
                    method: "verification-script",
                    detail: e.to_string(),
                });
            }
            // The check itself could not run (instance gone, busy, no interpreter …).
            Err(e) => return Err(operation_failed("verification", instance)(e)),
            Ok(None) => {}
        }
        // A `sufficient` backup-script's own file has no manifest: the restore having
        // succeeded is all that can be checked without the package's verification-script.
        let Some(manifest) = &restore.manifest else {
            return Ok(Verification {
                passed: true,
                method: "restore-only",
                detail: "the backup is the package's own file (no manifest to compare)".to_owned(),
            });
        };
        // One record, not the whole registry.
        let staging = self.controller.store().get(instance).map_err(|e| match e {
            StoreError::NotFound { .. } => EngineError::Operation {
                operation: "check",
                instance: instance.to_owned(),
                problem: Problem::new(
                    ErrorKind::InstanceNotFound,
                    None,
                    "not a registered instance",
                ),
            },
            e => EngineError::Instances {
                message: e.to_string(),
            },
        })?;
        let timeout = self.controller.config().default_timeout;
        let mut problems = Vec::new();
        let (mut dirs, mut databases) = (0, 0);
        for part in &manifest.parts {
            match (&part.kind, part.file_count) {
                (PartKind::WebDir { mapping_url }, Some(want)) => {
                    dirs += 1;
                    match staging.web_dirs.get(mapping_url) {
                        None => {
                            problems.push(format!("{mapping_url}: no such mapping in {instance}"))
                        }
                        Some(dir) => match count_files(dir) {
                            Ok(got) if got == want => {}
                            Ok(got) => problems
                                .push(format!("{mapping_url}: {got} files, the backup has {want}")),
                            Err(e) => problems
                                .push(format!("{mapping_url}: cannot count files in {dir}: {e}")),
                        },
                    }
                }
                (
                    PartKind::DatabaseDump {
                        db_id,
                        row_counts: Some(want),
                        ..
                    },
                    _,
                ) => {
                    databases += 1;
                    match staging.databases.get(db_id) {
                        None => problems.push(format!("database {db_id}: not in {instance}")),
                        Some(db) => match aps_controller::database::row_counts(db, timeout) {
                            Ok(got) => problems.extend(compare_rows(db_id, want, &got)),
                            Err(e) => {
                                problems.push(format!("database {db_id}: cannot count rows: {e}"))
                            }
                        },
                    }
                }
                _ => {}
            }
        }
        Ok(Verification {
            passed: problems.is_empty(),
            method: "manifest-counts",
            detail: if problems.is_empty() {
                format!(
                    "{dirs} web folders and {databases} databases match the manifest's file and \
                     row counts"
                )
            } else {
                problems.join("; ")
            },
        })
    }
}

/// Every table whose row count differs from the backup's (missing and extra tables too).
fn compare_rows(
    db_id: &str,
    want: &BTreeMap<String, u64>,
    got: &BTreeMap<String, u64>,
) -> Vec<String> {
    let mut problems = Vec::new();
    for (table, n) in want {
        match got.get(table) {
            Some(m) if m == n => {}
            Some(m) => problems.push(format!(
                "database {db_id}: table {table} has {m} rows, the backup has {n}"
            )),
            None => problems.push(format!(
                "database {db_id}: table {table} is missing (the backup has {n} rows)"
            )),
        }
    }
    for table in got.keys().filter(|t| !want.contains_key(*t)) {
        problems.push(format!(
            "database {db_id}: table {table} is not in the backup"
        ));
    }
    problems
}

/// Regular files under `dir`, not following symlinks (as the archive's tree capture counts).
fn count_files(dir: &Utf8Path) -> std::io::Result<u64> {
    let meta = std::fs::symlink_metadata(dir)?;
    if meta.is_file() {
        return Ok(1);
    }
    let mut n = 0;
    let mut stack = vec![dir.as_std_path().to_owned()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(d)? {
            let entry = entry?;
            let t = entry.file_type()?;
            if t.is_dir() {
                stack.push(entry.path());
            } else if t.is_file() {
                n += 1;
            }
        }
    }
    Ok(n)
}

/// The state folder by the controller's own rule ([`StateDir::resolve`]: the flag, else
/// `APS_CONTROLLER_STATE_DIR`, else the per-user default), so both sides agree on where the
/// registry and `backups/` are.
pub fn resolve_state_dir(flag: Option<Utf8PathBuf>) -> Result<Utf8PathBuf, EngineError> {
    Ok(StateDir::resolve(flag)?.root().to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rows(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
        pairs.iter().map(|(t, n)| (t.to_string(), *n)).collect()
    }

    #[test]
    fn row_counts_differences_name_each_table() {
        let want = rows(&[("posts", 3), ("users", 1), ("gone", 0)]);
        assert!(compare_rows("main", &want, &want).is_empty());
        let got = rows(&[("posts", 2), ("users", 1), ("extra", 5)]);
        assert_eq!(
            compare_rows("main", &want, &got),
            [
                "database main: table gone is missing (the backup has 0 rows)",
                "database main: table posts has 2 rows, the backup has 3",
                "database main: table extra is not in the backup",
            ]
        );
    }
}
