//! The error an operation returns to the control panel: which step of the standard's scenario
//! failed, what kind of failure it is (each kind has its own exit code), and the cause with
//! what a person needs to act (paths, the command line, the script's stderr tail).

use camino::Utf8PathBuf;

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

mod json;
pub mod kind;
mod refusal;
mod space;
mod step;
mod upgrade_refusal;

pub use crate::overrides::{Override, current_spelling, spelled, spelled_as};
pub use kind::ErrorKind;
pub use refusal::{ConfigureRefusal, InstallRefusal, RemoveRefusal};
pub use space::human_bytes;
use space::{is_no_space, says_no_space};
pub use step::Step;
pub use upgrade_refusal::UpgradeRefusal;

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
    /// A database the install creates could not be made (or its server not used).
    #[error("step {step}: database {db_id:?}: {source}")]
    Provision {
        step: Step,
        db_id: String,
        #[source]
        source: crate::database::provision::ProvisionError,
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
    /// A restore of another instance's backup that did not say `from_other_instance`.
    #[error(
        "step {step}: backup file {file} is a backup of instance {source_instance} (made {}), not of {instance}: restoring it would replace {instance}'s web folders and databases with {source_instance}'s, so nothing was changed; give {} to restore it into {instance} anyway, or copy one instance into another with `aps-controller migrate {source_instance} --to-instance {instance}`",
        created.map(|t| t.strftime("%Y-%m-%d %H:%M:%S UTC").to_string()).unwrap_or_else(|| "at an unknown time".into()),
        Override::FromOtherInstance
    )]
    OtherInstanceBackup {
        step: Step,
        file: Utf8PathBuf,
        instance: String,
        source_instance: String,
        created: Option<jiff::Timestamp>,
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
    /// A signal (SIGINT, SIGTERM, SIGHUP) stopped the operation between two steps.
    #[error(
        "step {step}: stopped by {}{}; what the operation had done was rolled back",
        crate::cancel::signal_name(*.signal),
        cause.as_ref().map(|c| format!(" ({c})")).unwrap_or_default()
    )]
    Interrupted {
        step: Step,
        signal: i32,
        /// The failure the stop caused, when it surfaced as one (a cut stream, a stopped tool).
        #[source]
        cause: Option<Box<OperationError>>,
    },
    /// The free space at the destination is clearly too small for the backup's estimate
    /// (docs/interruptions.md): refused before anything was written.
    #[error(
        "step {step}: not enough space for the backup in {place}: {} free, about {} needed \
         (estimate {} before compression; see `backup --dry-run`)",
        human_bytes(*.free),
        human_bytes(*.needed),
        human_bytes(*.estimate)
    )]
    NotEnoughSpace {
        step: Step,
        place: Utf8PathBuf,
        free: u64,
        needed: u64,
        estimate: u64,
    },
    /// A disk or quota filled up: `source` is the failure as it happened, `place` the folder
    /// whose file system was full.
    #[error(
        "step {}: no space left for {place} ({} free{}): {source}",
        source.step(),
        human_bytes(*.free),
        needed.map(|n| format!(", about {} needed", human_bytes(n))).unwrap_or_default()
    )]
    NoSpace {
        place: Utf8PathBuf,
        /// Bytes free there when the failure was seen (before the rollback freed anything).
        free: u64,
        /// What the operation expected to need there, when it knows.
        needed: Option<u64>,
        #[source]
        source: Box<OperationError>,
    },
    /// An install refused at one of its checks; nothing was made.
    #[error("step {step}: install of {instance} refused: {refusal}")]
    InstallRefused {
        step: Step,
        instance: String,
        refusal: InstallRefusal,
    },
    /// A configure, enable or disable refused at its checks; nothing ran.
    #[error("step {step}: {operation} of {instance} refused: {refusal}")]
    ConfigureRefused {
        step: Step,
        /// `configure`, `enable` or `disable`.
        operation: &'static str,
        instance: String,
        refusal: ConfigureRefusal,
    },
    /// An install failed and undoing what it had made failed too: the leftovers are named.
    #[error(
        "{original}; undoing the install ALSO failed, these are left for a person to remove: {}",
        leftovers.join("; ")
    )]
    InstallUndoFailed {
        original: Box<OperationError>,
        leftovers: Vec<String>,
    },
    /// A removal refused before anything ran or was deleted.
    #[error("step {step}: removal of {instance} refused: {refusal}")]
    RemoveRefused {
        step: Step,
        instance: String,
        refusal: RemoveRefusal,
    },
    /// A removal past its point of no return could not take everything away: the leftovers
    /// are named, and the record is kept so that the removal can be run again.
    #[error(
        "removing {instance}: `configure remove` ran but these could not be taken away: {}; the instance stays registered: run the removal again once they can be",
        leftovers.join("; ")
    )]
    RemoveIncomplete {
        instance: String,
        leftovers: Vec<String>,
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
    /// An upgrade refused at one of its checks; nothing of the instance changed.
    #[error("step {step}: upgrade of {instance} refused: {refusal}")]
    UpgradeRefused {
        step: Step,
        instance: String,
        refusal: UpgradeRefusal,
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

/// The kind a cause deep in the source chain imposes, whatever step it surfaced at: a
/// cancellation (a stopped process, a stopped stream) is `interrupted`, a full disk `no-space`.
fn cause_kind(error: &(dyn std::error::Error + 'static)) -> Option<ErrorKind> {
    let mut found = None;
    let mut current = Some(error);
    while let Some(e) = current {
        let run = e
            .downcast_ref::<RunError>()
            .or_else(|| e.downcast_ref::<Box<RunError>>().map(|b| &**b));
        match run {
            Some(RunError::Interrupted { .. }) => return Some(ErrorKind::Interrupted),
            Some(run @ RunError::Exit { .. }) if says_no_space(&run.stderr_tail()) => {
                found = Some(ErrorKind::NoSpace)
            }
            _ => {}
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if crate::cancel::Cancelled::in_io(io).is_some() {
                return Some(ErrorKind::Interrupted);
            }
            if is_no_space(io.raw_os_error()) {
                found = Some(ErrorKind::NoSpace);
            }
        }
        if e.downcast_ref::<crate::cancel::Cancelled>().is_some() {
            return Some(ErrorKind::Interrupted);
        }
        current = e.source();
    }
    found
}

impl OperationError {
    pub fn kind(&self) -> ErrorKind {
        match self {
            OperationError::Interrupted { .. } => return ErrorKind::Interrupted,
            OperationError::NoSpace { source, .. } => {
                // A cancellation wins over the full disk it may have caused.
                return match source.kind() {
                    ErrorKind::Interrupted => ErrorKind::Interrupted,
                    _ => ErrorKind::NoSpace,
                };
            }
            // Louder than whatever the restore failed of, a signal or a full disk included:
            // the instance is half-restored until a person acts.
            OperationError::RollbackFailed { .. } | OperationError::InstallUndoFailed { .. } => {
                return ErrorKind::RollbackFailed;
            }
            _ => {}
        }
        if let Some(kind) = cause_kind(self) {
            return kind;
        }
        let kind = self.direct_kind();
        // A database tool's failure keeps only its stderr excerpt, in the message.
        if matches!(self, OperationError::Database { .. }) && says_no_space(&self.to_string()) {
            return ErrorKind::NoSpace;
        }
        kind
    }

    /// This error as the interruption it is when `signal` had asked the operation to stop
    /// before it failed: a stream cut by the token surfaces as a damaged archive, a stopped
    /// tool as a failed one.
    pub fn interrupted_by(self, signal: Option<i32>) -> Self {
        match signal {
            // A failed rollback stays what it is: the instance needs a person either way.
            Some(signal)
                if !matches!(
                    self.kind(),
                    ErrorKind::Interrupted | ErrorKind::RollbackFailed
                ) =>
            {
                OperationError::Interrupted {
                    step: self.step(),
                    signal,
                    cause: Some(Box::new(self)),
                }
            }
            _ => self,
        }
    }

    /// The signal that stopped the operation, when one did.
    pub fn signal(&self) -> Option<i32> {
        match self {
            OperationError::Interrupted { signal, .. } => return Some(*signal),
            OperationError::NoSpace { source, .. } => return source.signal(),
            OperationError::RollbackFailed { original, .. } => return original.signal(),
            _ => {}
        }
        let mut current: Option<&(dyn std::error::Error + 'static)> = Some(self);
        while let Some(e) = current {
            let run = e
                .downcast_ref::<RunError>()
                .or_else(|| e.downcast_ref::<Box<RunError>>().map(|b| &**b));
            if let Some(RunError::Interrupted { signal, .. }) = run {
                return Some(*signal);
            }
            if let Some(c) = e
                .downcast_ref::<std::io::Error>()
                .and_then(crate::cancel::Cancelled::in_io)
            {
                return Some(c.signal);
            }
            current = e.source();
        }
        None
    }

    /// When this is a full disk, the same error naming the fullest of `places` (the folders
    /// the operation wrote to) with its free space, and what was `needed` there if known.
    /// Call it before the rollback frees anything.
    pub fn with_space_facts(self, places: &[&camino::Utf8Path], needed: Option<u64>) -> Self {
        if self.kind() != ErrorKind::NoSpace || matches!(self, OperationError::NoSpace { .. }) {
            return self;
        }
        // Known only from a database tool's message: the server's own disk is full, not one
        // of ours; that message names the database and carries the server's words.
        if matches!(self, OperationError::Database { .. }) && cause_kind(&self).is_none() {
            return self;
        }
        let fullest = places
            .iter()
            .filter_map(|p| crate::estimate::free_space(p).ok().map(|free| (free, *p)))
            .min_by_key(|(free, _)| *free);
        match fullest {
            Some((free, place)) => OperationError::NoSpace {
                place: place.to_owned(),
                free,
                needed,
                source: Box::new(self),
            },
            None => self,
        }
    }

    fn direct_kind(&self) -> ErrorKind {
        match self {
            OperationError::Interrupted { .. } => ErrorKind::Interrupted,
            OperationError::NoSpace { .. } | OperationError::NotEnoughSpace { .. } => {
                ErrorKind::NoSpace
            }
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
            OperationError::Database { .. }
            | OperationError::MissingWebDir { .. }
            | OperationError::Provision { .. } => ErrorKind::ResourceFailed,
            OperationError::Archive {
                source: ArchiveError::Untrusted { .. },
                ..
            } => ErrorKind::UntrustedBackup,
            OperationError::Archive { step, .. } => match step {
                Step::VerifyBackup | Step::CheckDestination => ErrorKind::InvalidBackup,
                _ => ErrorKind::ResourceFailed,
            },
            OperationError::BackupMismatch { .. } => ErrorKind::InvalidBackup,
            // The file is sound; the command lacked the flag that says it is meant.
            OperationError::OtherInstanceBackup { .. } => ErrorKind::Usage,
            OperationError::Registry { .. }
            | OperationError::Environment { .. }
            | OperationError::Journal { .. }
            | OperationError::Io { .. } => ErrorKind::Internal,
            OperationError::RollbackFailed { .. } | OperationError::InstallUndoFailed { .. } => {
                ErrorKind::RollbackFailed
            }
            OperationError::InstallRefused { refusal, .. } => refusal.kind(),
            OperationError::ConfigureRefused { refusal, .. } => refusal.kind(),
            OperationError::UpgradeRefused { refusal, .. } => refusal.kind(),
            OperationError::RemoveRefused { refusal, .. } => refusal.kind(),
            OperationError::RemoveIncomplete { .. } => ErrorKind::ResourceFailed,
        }
    }

    pub fn step(&self) -> Step {
        match self {
            OperationError::InstanceNotFound { .. } => Step::FindInstance,
            OperationError::Busy { .. } => Step::Lock,
            OperationError::RollbackFailed { .. } | OperationError::InstallUndoFailed { .. } => {
                Step::Rollback
            }
            OperationError::NoSpace { source, .. } => source.step(),
            OperationError::Interrupted { step, .. } => *step,
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
            | OperationError::Provision { step, .. }
            | OperationError::MissingWebDir { step, .. }
            | OperationError::Archive { step, .. }
            | OperationError::BackupMismatch { step, .. }
            | OperationError::OtherInstanceBackup { step, .. }
            | OperationError::Journal { step, .. }
            | OperationError::Io { step, .. }
            | OperationError::NotEnoughSpace { step, .. }
            | OperationError::InstallRefused { step, .. }
            | OperationError::ConfigureRefused { step, .. } => *step,
            OperationError::UpgradeRefused { step, .. } => *step,
            OperationError::RemoveRefused { step, .. } => *step,
            OperationError::RemoveIncomplete { .. } => Step::RemoveData,
        }
    }

    /// The option of the request that lets this refused operation run, when the message
    /// suggests one (`force` over an existing backup file).
    pub fn allowed_by(&self) -> Option<Override> {
        match self {
            OperationError::Destination {
                source: DestinationError::Exists { .. },
                ..
            } => Some(Override::Force),
            OperationError::OtherInstanceBackup { .. } => Some(Override::FromOtherInstance),
            OperationError::Archive {
                source: ArchiveError::IdentityRequired { .. },
                ..
            } => Some(Override::IdentityFile),
            OperationError::RemoveRefused { .. } => Some(Override::KeepData),
            _ => None,
        }
    }

    /// The tail of the script's stderr, when a script failed.
    pub fn script_stderr(&self) -> Option<String> {
        match self {
            OperationError::Script { source, .. } => {
                let tail = source.stderr_tail();
                (!tail.is_empty()).then_some(tail)
            }
            OperationError::RollbackFailed { original, .. }
            | OperationError::InstallUndoFailed { original, .. } => original.script_stderr(),
            OperationError::NoSpace { source, .. } => source.script_stderr(),
            _ => None,
        }
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

#[cfg(test)]
mod tests;
