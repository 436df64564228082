//! The error an operation returns to the control panel: which step of the standard's scenario
//! failed, what kind of failure it is (each kind has its own exit code), and the cause with
//! what a person needs to act (paths, the command line, the script's stderr tail).

use std::fmt;

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::archive::ArchiveError;
use crate::database::DatabaseError;
use crate::destination::DestinationError;
use crate::environment::EnvironmentError;
use crate::interpreter::InterpreterError;
use crate::journal::JournalError;
use crate::lock::LockError;
use crate::registry::{PackageOpenError, StoreError};
use crate::runner::RunError;
use crate::structured_output::{OutputError, ScriptError};

/// A step of an operation, numbered as in the controller guide's scenario where it has one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    /// Look the instance up in the registry.
    FindInstance,
    /// Take the per-instance lock.
    Lock,
    /// 1: parse the package's APP-META.xml.
    ParseMetadata,
    /// 1.1: find `//service/provision/backup-script` (and whether it is `sufficient`).
    FindBackupScript,
    /// 1.1: the controller backs up the instance's resources itself.
    BackupResources,
    /// 1.2: resolve the interpreter of `script-language`.
    ResolveInterpreter,
    /// 2: build the environment variables.
    BuildEnvironment,
    /// 3.1: check the destination (backup) or the source file (restore).
    CheckDestination,
    /// Restore: read and verify the backup file before anything changes.
    VerifyBackup,
    /// Restore: take the safety snapshot of the instance.
    SafetySnapshot,
    /// Restore: put the web folders and databases back from the backup.
    RestoreResources,
    /// 3.2: run the backup script (`backup` or `restore`).
    RunScript,
    /// Verify: find `//service/provision/verification-script` and check its file.
    FindVerificationScript,
    /// Verify: run the verification-script against the instance as it stands.
    RunVerificationScript,
    /// 3.3: write the result in place and report.
    Finish,
    /// Putting the instance back after a failed restore.
    Rollback,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::FindInstance => "find-instance",
            Step::Lock => "lock",
            Step::ParseMetadata => "1-parse-metadata",
            Step::FindBackupScript => "1.1-find-backup-script",
            Step::BackupResources => "1.1-backup-resources",
            Step::ResolveInterpreter => "1.2-resolve-interpreter",
            Step::BuildEnvironment => "2-build-environment",
            Step::CheckDestination => "3.1-check-destination",
            Step::VerifyBackup => "verify-backup",
            Step::SafetySnapshot => "safety-snapshot",
            Step::RestoreResources => "restore-resources",
            Step::RunScript => "3.2-run-script",
            Step::FindVerificationScript => "find-verification-script",
            Step::RunVerificationScript => "run-verification-script",
            Step::Finish => "3.3-finish",
            Step::Rollback => "rollback",
        }
    }
}

impl Step {
    /// Which package script a script failure at this step is about, for messages.
    fn script_role(self) -> &'static str {
        match self {
            Step::FindVerificationScript | Step::RunVerificationScript => "verification script",
            _ => "backup script",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The class of a failure, as the control panel sees it (`kind` in JSON, and the exit code).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ErrorKind {
    InstanceNotFound,
    InvalidPackage,
    InterpreterMissing,
    DestinationRefused,
    ScriptFailed,
    TimedOut,
    Busy,
    ResourceFailed,
    InvalidBackup,
    /// A backup file this controller did not make (no or a wrong authentication tag).
    UntrustedBackup,
    /// A disk or quota filled up (ENOSPC, EDQUOT, EFBIG) during the operation.
    NoSpace,
    /// The tenant's work would run as root (or an account that cannot be used).
    AccountRefused,
    /// A path outside the folders the HTTP adapter was allowed to touch.
    PathNotAllowed,
    /// SIGINT, SIGTERM or SIGHUP stopped the operation; it was rolled back.
    Interrupted,
    /// The command was given bad arguments or input; nothing ran.
    Usage,
    Internal,
}

impl ErrorKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InstanceNotFound => "instance-not-found",
            ErrorKind::InvalidPackage => "invalid-package",
            ErrorKind::InterpreterMissing => "interpreter-missing",
            ErrorKind::DestinationRefused => "destination-refused",
            ErrorKind::ScriptFailed => "script-failed",
            ErrorKind::TimedOut => "timed-out",
            ErrorKind::Busy => "busy",
            ErrorKind::ResourceFailed => "resource-failed",
            ErrorKind::InvalidBackup => "invalid-backup",
            ErrorKind::UntrustedBackup => "untrusted-backup",
            ErrorKind::NoSpace => "no-space",
            ErrorKind::AccountRefused => "account-refused",
            ErrorKind::PathNotAllowed => "path-not-allowed",
            ErrorKind::Interrupted => "interrupted",
            ErrorKind::Usage => "usage",
            ErrorKind::Internal => "internal",
        }
    }

    /// The documented exit code of the CLI for this kind (README, "Exit codes").
    pub fn exit_code(self) -> u8 {
        match self {
            ErrorKind::Internal => 1,
            ErrorKind::InstanceNotFound => 4,
            ErrorKind::InvalidPackage => 10,
            ErrorKind::InterpreterMissing => 11,
            ErrorKind::DestinationRefused => 12,
            ErrorKind::ScriptFailed => 13,
            ErrorKind::TimedOut => 14,
            ErrorKind::Busy => 15,
            ErrorKind::ResourceFailed => 16,
            ErrorKind::InvalidBackup => 17,
            ErrorKind::UntrustedBackup => 18,
            ErrorKind::NoSpace => 19,
            ErrorKind::AccountRefused => 20,
            ErrorKind::PathNotAllowed => 21,
            // 128 + SIGINT; the CLI answers 143 (128 + SIGTERM) when SIGTERM stopped it.
            ErrorKind::Interrupted => 130,
            ErrorKind::Usage => 2,
        }
    }
}

/// Why an operation failed. Everything it did was rolled back before this is returned.
#[derive(Debug, thiserror::Error)]
pub enum OperationError {
    #[error("instance {name:?} is not registered ({source})")]
    InstanceNotFound {
        name: String,
        #[source]
        source: StoreError,
    },
    /// The script's backup file reached the file size bound of controller.toml (`[limits]
    /// max-file-size-mb`): writing stopped there, so the file is taken to be cut short.
    #[error(
        "step {step}: the backup-script {script} wrote {limit_mb} MiB, the max-file-size-mb bound of controller.toml's [limits]; its file is cut short and not kept"
    )]
    FileSizeBound {
        step: Step,
        script: Utf8PathBuf,
        limit_mb: u64,
    },
    /// The account the instance's work would run as is root (and controller.toml does not
    /// say `allow-root-scripts = true`), or cannot be resolved. Nothing ran.
    #[error("step {step}: instance {instance}: {reason}")]
    AccountRefused {
        step: Step,
        instance: String,
        reason: String,
    },
    #[error("step {step}: the instance registry failed: {source}")]
    Registry {
        step: Step,
        #[source]
        source: StoreError,
    },
    #[error("{source}")]
    Busy {
        instance: String,
        #[source]
        source: Box<LockError>,
    },
    #[error("step {step}: {source}")]
    Package {
        step: Step,
        #[source]
        source: PackageOpenError,
    },
    #[error("step {step}: the package of instance {instance} cannot be used: {reason}")]
    PackageUnusable {
        step: Step,
        instance: String,
        reason: String,
    },
    #[error(
        "step {step}: instance {instance}: the web folder {dir} of mapping {mapping:?} does not exist; \
         create it, or fix [web-dirs] in the instance's record"
    )]
    MissingWebDir {
        step: Step,
        instance: String,
        mapping: String,
        dir: camino::Utf8PathBuf,
    },
    #[error("step {step}: the operation is refused, the script never ran: {source}")]
    Interpreter {
        step: Step,
        #[source]
        source: InterpreterError,
    },
    #[error("step {step}: {source}")]
    Environment {
        step: Step,
        #[source]
        source: EnvironmentError,
    },
    #[error("step {step}: {source}")]
    Destination {
        step: Step,
        #[source]
        source: DestinationError,
    },
    #[error("step {step}: {} {script} failed: {source}", step.script_role())]
    Script {
        step: Step,
        script: Utf8PathBuf,
        #[source]
        source: RunError,
    },
    #[error("step {step}: {} {script} reported errors: {}", step.script_role(), format_script_errors(.errors))]
    ScriptReported {
        step: Step,
        script: Utf8PathBuf,
        errors: Vec<ScriptError>,
    },
    #[error("step {step}: the structured output of {} {script} is unreadable: {source}", step.script_role())]
    ScriptOutput {
        step: Step,
        script: Utf8PathBuf,
        #[source]
        source: OutputError,
    },
    #[error("step {step}: database {db_id:?}: {source}")]
    Database {
        step: Step,
        db_id: String,
        #[source]
        source: DatabaseError,
    },
    #[error("step {step}: {source}")]
    Archive {
        step: Step,
        #[source]
        source: ArchiveError,
    },
    #[error(
        "step {step}: backup file {file} cannot be restored into instance {instance}: {reason}"
    )]
    BackupMismatch {
        step: Step,
        file: Utf8PathBuf,
        instance: String,
        reason: String,
    },
    #[error("step {step}: the operation journal failed: {source}")]
    Journal {
        step: Step,
        #[source]
        source: JournalError,
    },
    #[error("step {step}: {what} {path}: {source}")]
    Io {
        step: Step,
        what: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A restore failed and putting the instance back failed too: the instance needs a person.
    #[error(
        "{original}; putting the instance back ALSO failed at step {}: {rollback} — the safety snapshot is kept at {snapshot}",
        Step::Rollback
    )]
    RollbackFailed {
        original: Box<OperationError>,
        rollback: Box<OperationError>,
        snapshot: Utf8PathBuf,
    },
}

fn format_script_errors(errors: &[ScriptError]) -> String {
    errors
        .iter()
        .map(|e| match &e.setting_id {
            Some(s) => format!("[{s}] {}", e.message),
            None => e.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

impl OperationError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            OperationError::InstanceNotFound { .. } => ErrorKind::InstanceNotFound,
            OperationError::Busy { .. } => ErrorKind::Busy,
            OperationError::AccountRefused { .. } => ErrorKind::AccountRefused,
            OperationError::FileSizeBound { .. } => ErrorKind::ScriptFailed,
            OperationError::Package { .. } | OperationError::PackageUnusable { .. } => {
                ErrorKind::InvalidPackage
            }
            OperationError::Interpreter { .. } => ErrorKind::InterpreterMissing,
            OperationError::Destination { .. } => ErrorKind::DestinationRefused,
            OperationError::Script {
                source: RunError::Timeout { .. },
                ..
            } => ErrorKind::TimedOut,
            OperationError::Script { .. }
            | OperationError::ScriptReported { .. }
            | OperationError::ScriptOutput { .. } => ErrorKind::ScriptFailed,
            OperationError::Database { .. } | OperationError::MissingWebDir { .. } => {
                ErrorKind::ResourceFailed
            }
            OperationError::Archive {
                source: ArchiveError::Untrusted { .. },
                ..
            } => ErrorKind::UntrustedBackup,
            OperationError::Archive { step, .. } => match step {
                Step::VerifyBackup | Step::CheckDestination => ErrorKind::InvalidBackup,
                _ => ErrorKind::ResourceFailed,
            },
            OperationError::BackupMismatch { .. } => ErrorKind::InvalidBackup,
            OperationError::Registry { .. }
            | OperationError::Environment { .. }
            | OperationError::Journal { .. }
            | OperationError::Io { .. } => ErrorKind::Internal,
            OperationError::RollbackFailed { original, .. } => original.kind(),
        }
    }

    pub fn step(&self) -> Step {
        match self {
            OperationError::InstanceNotFound { .. } => Step::FindInstance,
            OperationError::Busy { .. } => Step::Lock,
            OperationError::RollbackFailed { .. } => Step::Rollback,
            OperationError::Registry { step, .. }
            | OperationError::AccountRefused { step, .. }
            | OperationError::FileSizeBound { step, .. }
            | OperationError::Package { step, .. }
            | OperationError::PackageUnusable { step, .. }
            | OperationError::Interpreter { step, .. }
            | OperationError::Environment { step, .. }
            | OperationError::Destination { step, .. }
            | OperationError::Script { step, .. }
            | OperationError::ScriptReported { step, .. }
            | OperationError::ScriptOutput { step, .. }
            | OperationError::Database { step, .. }
            | OperationError::MissingWebDir { step, .. }
            | OperationError::Archive { step, .. }
            | OperationError::BackupMismatch { step, .. }
            | OperationError::Journal { step, .. }
            | OperationError::Io { step, .. } => *step,
        }
    }

    /// The tail of the script's stderr, when a script failed.
    pub fn script_stderr(&self) -> Option<String> {
        match self {
            OperationError::Script { source, .. } => {
                let tail = source.stderr_tail();
                (!tail.is_empty()).then_some(tail)
            }
            OperationError::RollbackFailed { original, .. } => original.script_stderr(),
            _ => None,
        }
    }

    /// The JSON object the CLI prints under `"error"`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": self.kind().as_str(),
            "step": self.step().as_str(),
            "message": self.to_string(),
        });
        if let Some(stderr) = self.script_stderr() {
            v["stderr_tail"] = stderr.into();
        }
        v
    }

    pub(crate) fn io(
        step: Step,
        what: &'static str,
        path: impl Into<Utf8PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> OperationError {
        let path = path.into();
        move |source| OperationError::Io {
            step,
            what,
            path,
            source,
        }
    }
}
