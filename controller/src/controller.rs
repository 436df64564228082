//! The controller handle a control panel embeds: configuration, the instance store, and the
//! operations. Opening it also rolls back what an earlier, killed controller left unfinished.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::cancel::Cancel;
pub use crate::config::{
    AccountRefused, ConfigError, ControllerConfig, DEFAULT_KILL_GRACE, DEFAULT_TIMEOUT,
    ResourceLimits,
};
use crate::error::{OperationError, Step};
use crate::journal::{
    Journal, JournalEntry, OperationKind, RecoveryReport, UndoAction, UndoHandler,
};
use crate::lock::InstanceLock;
use crate::operation::{
    BackupReport, BackupRequest, MigrateReport, MigrateRequest, RestoreReport, RestoreRequest,
    VerifyReport,
};
pub use crate::paths::{absolute, make_private};
use crate::progress::{Meter, Part, Progress};
use crate::registry::{
    FileStore, Instance, InstanceStore, OpenedPackage, StateDir, StoreError, open_package,
};

/// The controller. Cheap to share between threads by reference.
pub struct Controller {
    config: ControllerConfig,
    store: Box<dyn InstanceStore + Send + Sync>,
    recovered: RecoveryReport,
    /// Checked by every operation ([`crate::cancel`]); the process's token unless replaced.
    cancel: Cancel,
    /// Where operations report their parts and bytes; none by default.
    progress: Option<Meter>,
}

impl Controller {
    /// A controller over the default file store of `config.state`.
    pub fn open(config: ControllerConfig) -> Result<Self, OperationError> {
        let store = FileStore::new(config.state.clone());
        Self::with_store(config, Box::new(store))
    }

    /// A controller over a store of the control panel's own.
    pub fn with_store(
        config: ControllerConfig,
        store: Box<dyn InstanceStore + Send + Sync>,
    ) -> Result<Self, OperationError> {
        let root = config.state.root().to_owned();
        make_private(&root).map_err(OperationError::io(
            Step::FindInstance,
            "cannot create state folder",
            &root,
        ))?;
        // What scripts of a killed controller detached is ended first.
        crate::process::end_stale_runs();
        crate::operation::tenant::remove_stale();
        let journal = Journal::new(journal_dir(&config.state)).with_limits(config.journal_limits);
        journal.prune_closed();
        // Leftovers of a killed controller are undone before anything else runs (docs/scripts.md).
        let recovered = journal
            .recover_interrupted_with(Undoer {
                config: &config,
                store: store.as_ref(),
            })
            .map_err(|source| OperationError::Journal {
                step: Step::Rollback,
                source,
            })?;
        Ok(Controller {
            config,
            store,
            recovered,
            cancel: Cancel::process().clone(),
            progress: None,
        })
    }

    pub fn config(&self) -> &ControllerConfig {
        &self.config
    }

    pub fn store(&self) -> &(dyn InstanceStore + Send + Sync) {
        self.store.as_ref()
    }

    pub fn cancel(&self) -> &Cancel {
        &self.cancel
    }

    /// Makes `cancel` the token this controller's operations check from now on and returns
    /// the one it replaces: for an embedder that stops one operation on purpose (a
    /// conformance run's fault round) without setting the process's token, which no
    /// operation after it could clear.
    pub fn replace_cancel(&mut self, cancel: Cancel) -> Cancel {
        std::mem::replace(&mut self.cancel, cancel)
    }

    /// Operations report their progress to `sink` from now on.
    pub fn set_progress(&mut self, sink: Option<std::sync::Arc<dyn Progress>>) {
        self.progress = sink.map(Meter::new);
    }

    /// Reports that `phase` of an operation on `instance` starts.
    pub(crate) fn report_part(
        &self,
        operation: &'static str,
        instance: &str,
        phase: &'static str,
        name: &str,
        total: Option<u64>,
    ) {
        if let Some(m) = &self.progress {
            m.part(&Part {
                operation,
                instance: instance.to_owned(),
                phase,
                name: name.to_owned(),
                total,
            });
        }
    }

    /// Arms the cancellation token on this thread for the duration of an operation.
    pub(crate) fn arm_cancel(&self) -> crate::cancel::Armed {
        self.cancel.arm_with(self.progress.clone())
    }

    /// Between two steps: stops the operation if a signal asked to.
    pub(crate) fn check_cancel(&self, step: Step) -> Result<(), OperationError> {
        match crate::cancel::requested() {
            Some(signal) => Err(OperationError::Interrupted {
                step,
                signal,
                cause: None,
            }),
            None => Ok(()),
        }
    }

    /// What opening the controller rolled back (interrupted operations), for the caller to log.
    pub fn recovered(&self) -> &RecoveryReport {
        &self.recovered
    }

    /// Every registered instance, by name.
    pub fn instances(&self) -> Result<Vec<Instance>, OperationError> {
        self.store
            .list()
            .map_err(|source| OperationError::Registry {
                step: Step::FindInstance,
                source,
            })
    }

    pub fn backup(&self, request: &BackupRequest) -> Result<BackupReport, OperationError> {
        crate::operation::backup::backup(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// What [`Controller::backup`] would do with `request`, with the instance's size estimate
    /// and the destination's free space; nothing is written, locked or run.
    pub fn plan_backup(
        &self,
        request: &BackupRequest,
    ) -> Result<crate::operation::backup::BackupPlan, OperationError> {
        crate::operation::backup::plan(self, request)
    }

    pub fn restore(&self, request: &RestoreRequest) -> Result<RestoreReport, OperationError> {
        crate::operation::restore::restore(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// [`restore`](Self::restore) from an archive this process has just written at
    /// `request.source` ([`crate::archive::ArchiveReader::written`]): no second verification
    /// pass before the safety snapshot and the extraction, which checks every hash.
    pub fn restore_written(
        &self,
        request: &RestoreRequest,
        written: crate::archive::ArchiveReader,
    ) -> Result<RestoreReport, OperationError> {
        crate::operation::restore::restore_written(self, request, written)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// Installs a new instance from a package (see [`crate::operation::install`]): checks,
    /// files, databases, `configure install`, the verification-script, the record last;
    /// anything that fails is undone whole.
    pub fn install(
        &self,
        request: &crate::operation::install::InstallRequest,
    ) -> Result<crate::operation::install::InstallReport, OperationError> {
        crate::operation::install::install(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// Changes an instance's settings through its package's `configure configure` (see
    /// [`crate::operation::configure`]): the changes checked as at install, the new settings
    /// recorded only once the script succeeded.
    pub fn configure(
        &self,
        request: &crate::operation::configure::ConfigureRequest,
    ) -> Result<crate::operation::configure::ConfigureReport, OperationError> {
        crate::operation::configure::configure(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// Switches an instance on or off through its package's `configure enable|disable` (see
    /// [`crate::operation::enable`]), where the package declares `status-control`; the status
    /// recorded only once the script succeeded.
    pub fn set_enabled(
        &self,
        request: &crate::operation::enable::EnableRequest,
    ) -> Result<crate::operation::enable::EnableReport, OperationError> {
        crate::operation::enable::set_enabled(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// Moves an instance to a newer version of its package ([`crate::operation::upgrade`]):
    /// put back whole from its safety snapshot when any step fails.
    pub fn upgrade(
        &self,
        request: &crate::operation::upgrade::UpgradeRequest,
    ) -> Result<crate::operation::upgrade::UpgradeReport, OperationError> {
        crate::operation::upgrade::upgrade(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// Removes an instance (`configure remove`, then what its install made, then its record),
    /// or with `keep_data` only its record.
    pub fn remove(
        &self,
        request: &crate::operation::remove::RemoveRequest,
    ) -> Result<crate::operation::remove::RemoveReport, OperationError> {
        crate::operation::remove::remove(self, request)
    }

    /// The refusals of a removal, checked without changing anything.
    pub fn check_remove(&self, name: &str) -> Result<(), OperationError> {
        crate::operation::remove::check_remove(self, name)
    }

    /// [`install`](Self::install), then `fill` on the new instance (a restore or a migration
    /// into it) inside the install's journal entry: if `fill` fails, or either is killed, the
    /// new instance is removed whole by the install's own undo. `fill` is not called on a dry
    /// run (`None`). See [`crate::operation::new_instance`].
    pub fn install_then<T>(
        &self,
        request: &crate::operation::install::InstallRequest,
        fill: impl FnOnce(&crate::operation::install::InstallReport) -> Result<T, OperationError>,
    ) -> Result<(crate::operation::install::InstallReport, Option<T>), OperationError> {
        crate::operation::install::install_then(self, request, fill)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    pub fn migrate(&self, request: &MigrateRequest) -> Result<MigrateReport, OperationError> {
        crate::operation::migrate::migrate(self, request)
            .map_err(|e| e.interrupted_by(self.cancel.signal()))
    }

    /// What [`Controller::migrate`] checks before any work: `source` and `target` are
    /// registered, differ, and the target runs the same package at a version that takes the
    /// source's data. For a migration whose data comes from elsewhere (a repository snapshot).
    pub fn check_migration(&self, source: &str, target: &str) -> Result<(), OperationError> {
        crate::operation::migrate::check_migration(self, source, target)
    }

    /// Accepts a backup file from elsewhere (see [`crate::operation::import`]).
    pub fn import_backup(
        &self,
        request: &crate::operation::import::ImportRequest,
    ) -> Result<crate::operation::import::ImportReport, OperationError> {
        crate::operation::import::import(self, request)
    }

    /// Runs the package's verification-script against `instance` (see
    /// [`crate::operation::verify`]); `Ok(None)` when the package has none. `timeout`: `None`
    /// means the configured default.
    pub fn verify_instance(
        &self,
        instance: &str,
        timeout: Option<Duration>,
    ) -> Result<Option<VerifyReport>, OperationError> {
        crate::operation::verify::verify_instance(self, instance, timeout)
    }

    /// The controller's record of a backup file written by a `sufficient` backup-script whose
    /// content has SHA-256 `sha256`, if the controller made one: such a file has no manifest,
    /// so this is how a control panel checks it is one of ours and unchanged.
    pub fn script_backup_record(
        &self,
        sha256: &str,
    ) -> Result<Option<crate::operation::record::BackupRecord>, OperationError> {
        let dir = self.records_dir();
        let record = crate::operation::record::BackupRecord::find(&dir, sha256).map_err(
            OperationError::io(
                Step::VerifyBackup,
                "cannot read the backup records in",
                &dir,
            ),
        )?;
        match record {
            Some(r) if !r.is_authentic(&self.backup_key(Step::VerifyBackup)?) => {
                Err(OperationError::Archive {
                    step: Step::VerifyBackup,
                    source: crate::archive::ArchiveError::Untrusted {
                        archive: r.file.clone().into(),
                        reason: format!(
                            "the record {dir}/{sha256}.json of a file with its SHA-256 carries no valid tag of this controller's key"
                        ),
                    },
                })
            }
            other => Ok(other),
        }
    }

    /// The backup key (see [`ControllerConfig::backup_key`]); errors are reported at `step`.
    pub fn backup_key(&self, step: Step) -> Result<crate::archive::TagKey, OperationError> {
        self.config.backup_key().map_err(|e| OperationError::Io {
            step,
            what: "cannot use the backup key",
            path: e.path().to_owned(),
            source: std::io::Error::other(e.to_string()),
        })
    }

    /// Checks the archive at `path` end to end and that this controller made it (its tag) or
    /// imported it: what `verify` of a backup file means. Returns the manifest.
    pub fn verify_archive(
        &self,
        path: &Utf8Path,
        identity: Option<&Utf8Path>,
    ) -> Result<crate::archive::Manifest, OperationError> {
        let key = self.backup_key(Step::VerifyBackup)?;
        let trusted =
            |seal: &crate::archive::ManifestSeal| crate::operation::import::is_imported(self, seal);
        crate::archive::verify_trusted(path, identity, &key, &trusted)
            .map(|(manifest, _)| manifest)
            .map_err(|source| OperationError::Archive {
                step: Step::VerifyBackup,
                source,
            })
    }

    // --- shared steps of the operations ---

    pub(crate) fn find_instance(&self, name: &str) -> Result<Instance, OperationError> {
        self.store.get(name).map_err(|source| match source {
            StoreError::NotFound { .. } | StoreError::InvalidName { .. } => {
                OperationError::InstanceNotFound {
                    name: name.to_owned(),
                    source,
                }
            }
            source => OperationError::Registry {
                step: Step::FindInstance,
                source,
            },
        })
    }

    pub(crate) fn lock_instance(
        &self,
        name: &str,
        operation: &str,
    ) -> Result<InstanceLock, OperationError> {
        InstanceLock::acquire(self.config.state.root(), name, operation).map_err(|source| {
            OperationError::Busy {
                instance: name.to_owned(),
                source: Box::new(source),
            }
        })
    }

    /// Step 1: the instance's package, parsed.
    pub fn open_package(&self, instance: &Instance) -> Result<OpenedPackage, OperationError> {
        open_package(&self.config.state, &instance.package).map_err(|source| {
            OperationError::Package {
                step: Step::ParseMetadata,
                source,
            }
        })
    }

    /// The operation journal, with the configured history limits.
    pub fn journal(&self) -> Journal {
        Journal::new(journal_dir(&self.config.state)).with_limits(self.config.journal_limits)
    }

    /// Opens the journal entry of an operation on `instance` with its first undo actions (made
    /// from the new operation's id by `undo`) and its work folder (the controller's dumps, the
    /// scripts' private HOME), known to the journal in the same write, before the folder
    /// exists: a killed run leaves nothing behind. Errors are reported at `step`; on one,
    /// nothing is left open.
    pub(crate) fn begin_operation(
        &self,
        kind: OperationKind,
        instance: &str,
        step: Step,
        undo: impl FnOnce(&str) -> Vec<UndoAction>,
    ) -> Result<Operation, OperationError> {
        let journal = self
            .journal()
            .begin_with(kind, instance, |id| {
                let mut undo = undo(id);
                undo.push(UndoAction::DeleteDir(self.work_dir(id)));
                undo
            })
            .map_err(|source| OperationError::Journal { step, source })?;
        let work = self.work_dir(journal.id());
        if let Err(e) = std::fs::create_dir_all(&work) {
            let error = OperationError::io(step, "cannot create the work folder", &work)(e);
            let _ = journal.finish_failed(&error.to_string());
            return Err(error);
        }
        Ok(Operation { journal, work })
    }

    /// A private scratch folder of one operation, under the state folder.
    pub(crate) fn work_dir(&self, id: &str) -> Utf8PathBuf {
        self.config.state.root().join("work").join(id)
    }

    /// The account `instance`'s work runs as, resolved before anything runs: `None` when the
    /// controller is not root (it then runs everything as itself). Root is refused unless
    /// `allow-root-scripts`; an account that no longer exists is refused.
    pub fn instance_account(&self, instance: &Instance) -> Result<Option<Account>, OperationError> {
        self.config
            .instance_account(instance)
            .map_err(|refused| OperationError::AccountRefused {
                step: Step::FindInstance,
                instance: instance.name.clone(),
                reason: refused.reason,
            })
    }

    pub(crate) fn timeout(&self, requested: Option<Duration>) -> Duration {
        requested.unwrap_or(self.config.default_timeout)
    }

    /// Where the controller records the SHA-256 of backups made by `sufficient` scripts, which
    /// carry no manifest of ours, so that restore can check them.
    pub fn records_dir(&self) -> Utf8PathBuf {
        self.config.state.root().join("backup-records")
    }
}

/// Does the undo actions the journal needs the operations or the store for.
struct Undoer<'a> {
    config: &'a ControllerConfig,
    store: &'a (dyn InstanceStore + Send + Sync),
}

impl UndoHandler for Undoer<'_> {
    fn restore_snapshot(&mut self, snapshot: &Utf8Path, instance: &str) -> Result<(), String> {
        crate::operation::restore::put_back_snapshot(self.config, self.store, snapshot, instance)
    }

    fn unregister(&mut self, instance: &str) -> Result<(), String> {
        match self.store.remove(instance) {
            Ok(_) | Err(StoreError::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.to_string()),
        }
    }

    fn drop_database(
        &mut self,
        created: &crate::database::provision::CreatedDatabase,
    ) -> Result<(), String> {
        let server = self
            .config
            .database_server(&created.server)
            .map_err(|e| e.to_string())?;
        crate::database::provision::drop(server, created).map_err(|e| e.to_string())
    }

    fn restore_record(&mut self, instance: &str, copy: &Utf8Path) -> Result<(), String> {
        crate::operation::upgrade::restore_record(self.store, instance, copy)
    }
}

fn journal_dir(state: &StateDir) -> Utf8PathBuf {
    state.root().join("journal")
}

/// A running operation: its open journal entry and its work folder, closed together.
pub(crate) struct Operation {
    journal: JournalEntry,
    work: Utf8PathBuf,
}

impl Operation {
    pub(crate) fn id(&self) -> &str {
        self.journal.id()
    }

    pub(crate) fn work(&self) -> &Utf8Path {
        &self.work
    }

    /// Adds an undo action, persisted before it returns; errors are reported at `step`.
    pub(crate) fn add_undo(
        &mut self,
        action: UndoAction,
        step: Step,
    ) -> Result<(), OperationError> {
        self.journal
            .add_undo(action)
            .map_err(|source| OperationError::Journal { step, source })
    }

    /// Success: the work folder is removed and the entry closed. Failing to close it must not
    /// turn a complete operation into an error: the next start only finds leftovers that no
    /// longer exist.
    pub(crate) fn succeed(self) {
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = self.journal.finish_ok();
    }

    /// Undoes, newest first, every action registered so far except the work folder's removal
    /// (which closing the entry does): what a killed run's recovery would do, done now.
    /// Returns each action that failed, with why, for the error.
    pub(crate) fn undo_now(&self, ctl: &Controller) -> Vec<String> {
        let mut failed = Vec::new();
        for action in self.journal.record().undo.iter().rev() {
            if matches!(action, UndoAction::DeleteDir(dir) if *dir == self.work) {
                continue;
            }
            if let Err(e) = self.do_action(ctl, action) {
                failed.push(format!("{action}: {e}"));
            }
        }
        failed
    }

    /// Does one journaled action now, as recovery would (a removal finishes itself with
    /// the same actions its journal entry holds).
    pub(crate) fn do_action(&self, ctl: &Controller, action: &UndoAction) -> Result<(), String> {
        let mut handler = Undoer {
            config: &ctl.config,
            store: ctl.store.as_ref(),
        };
        match action {
            UndoAction::RestoreSnapshot { snapshot, instance } => {
                handler.restore_snapshot(snapshot, instance)
            }
            UndoAction::Unregister { instance } => handler.unregister(instance),
            UndoAction::DropDatabase(created) => handler.drop_database(created),
            UndoAction::RestoreRecord { instance, copy } => handler.restore_record(instance, copy),
            other => crate::journal::undo_on_disk(other).unwrap_or(Ok(())),
        }
    }

    /// Adds several actions in one journal write; errors are reported at `step`.
    pub(crate) fn add_undos(
        &mut self,
        actions: Vec<UndoAction>,
        step: Step,
    ) -> Result<(), OperationError> {
        self.journal
            .add_undos(actions)
            .map_err(|source| OperationError::Journal { step, source })
    }

    /// Failure, after the caller undid its changes: the work folder is removed and the entry
    /// closed with `error`, which is handed back.
    pub(crate) fn fail(self, error: OperationError) -> OperationError {
        let _ = std::fs::remove_dir_all(&self.work);
        let _ = self.journal.finish_failed(&error.to_string());
        error
    }

    /// Failure that could not be undone: the entry is closed with `message` and the work folder
    /// kept (it holds what a person needs to act on, e.g. the safety snapshot).
    pub(crate) fn fail_keeping_work(self, message: &str) {
        let _ = self.journal.finish_failed(message);
    }
}
