//! The controller handle a control panel embeds: configuration, the instance store, and the
//! operations. Opening it also rolls back what an earlier, killed controller left unfinished.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::cancel::Cancel;
use crate::environment::HostFacts;
use crate::error::{OperationError, Step};
use crate::interpreter::InterpreterTable;
use crate::journal::{
    Journal, JournalEntry, JournalLimits, OperationKind, RecoveryReport, UndoAction,
};
use crate::lock::InstanceLock;
use crate::operation::{
    BackupReport, BackupRequest, MigrateReport, MigrateRequest, RestoreReport, RestoreRequest,
    VerifyReport,
};
use crate::progress::{Meter, Part, Progress};
use crate::registry::{
    FileStore, Instance, InstanceStore, OpenedPackage, StateDir, StoreError, open_package,
};

/// Script timeout when the request names none (docs/scripts.md: 3600 s).
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(3600);
/// Time between SIGTERM and SIGKILL for a script that overran its timeout.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// How the controller runs. Everything has a documented default.
#[derive(Debug, Clone)]
pub struct ControllerConfig {
    pub state: StateDir,
    /// `script-language` → interpreter.
    pub interpreters: InterpreterTable,
    pub default_timeout: Duration,
    pub kill_grace: Duration,
    /// Facts about the host passed to scripts (`PHP_VERSION`).
    pub host: HostFacts,
    /// The key that tags backups (controller.toml `backup-key-file`); `None`: `backup-key` in
    /// the state folder, created on first use. See [`crate::backup_key`].
    pub backup_key_file: Option<Utf8PathBuf>,
    /// Let a tenant's work run as root when the instance's account is root. Off by default:
    /// an instance whose account is root is refused (`account-refused`) before anything runs.
    pub allow_root_scripts: bool,
    /// Resource bounds of package scripts (`[limits]`); none by default.
    pub limits: ResourceLimits,
    /// Per-instance bounds (`[limits.instances.NAME]`), overriding `limits` key by key.
    pub instance_limits: std::collections::BTreeMap<String, ResourceLimits>,
    /// How much history the operation journal keeps.
    pub journal_limits: JournalLimits,
}

/// Bounds set with `setrlimit` on a package script before it starts; `None`: inherited from
/// the controller (normally unlimited). Exceeding the file size kills the script (SIGXFSZ),
/// exceeding the CPU time too (SIGXCPU, then SIGKILL): the operation fails and is rolled back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct ResourceLimits {
    /// Largest file the script may write, in MiB (`RLIMIT_FSIZE`): bounds a backup file.
    pub max_file_size_mb: Option<u64>,
    /// Open files at once (`RLIMIT_NOFILE`).
    pub open_files: Option<u64>,
    /// CPU seconds (`RLIMIT_CPU`); wall time is bounded by the timeout.
    pub cpu_secs: Option<u64>,
    /// Data bytes a walk of the instance's web folders may read (backup, safety snapshot,
    /// estimate): a sparse file counts its data, not its holes.
    pub max_instance_size: Option<u64>,
    /// Entries (files, folders, symlinks) a walk of the instance's web folders may take.
    pub max_files: Option<u64>,
}

impl ResourceLimits {
    /// `self`, with `over`'s keys where it has them.
    pub fn overridden_by(self, over: &ResourceLimits) -> ResourceLimits {
        ResourceLimits {
            max_file_size_mb: over.max_file_size_mb.or(self.max_file_size_mb),
            open_files: over.open_files.or(self.open_files),
            cpu_secs: over.cpu_secs.or(self.cpu_secs),
            max_instance_size: over.max_instance_size.or(self.max_instance_size),
            max_files: over.max_files.or(self.max_files),
        }
    }
}

#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct LimitsFile {
    max_file_size_mb: Option<u64>,
    open_files: Option<u64>,
    cpu_secs: Option<u64>,
    max_instance_size: Option<u64>,
    max_files: Option<u64>,
    #[serde(default)]
    instances: std::collections::BTreeMap<String, ResourceLimits>,
}

/// `<state>/controller.toml`: everything optional.
///
/// ```toml
/// timeout-secs = 3600        # script timeout when a request names none
/// kill-grace-secs = 10       # SIGTERM → SIGKILL
/// php-version = "8.2"        # exported as PHP_VERSION
/// backup-key-file = "/etc/aps-controller/backup-key"  # shared by a fleet; default <state>/backup-key
/// allow-root-scripts = false # run scripts of an instance whose account is root (as root)
/// [limits]                   # setrlimit on package scripts; absent = unlimited
/// max-file-size-mb = 10240   # RLIMIT_FSIZE
/// open-files = 1024          # RLIMIT_NOFILE
/// cpu-secs = 3600            # RLIMIT_CPU
/// max-instance-size = 21474836480  # data bytes a walk of the web folders may read
/// max-files = 1000000        # entries a walk of the web folders may take
/// [limits.instances.blog]    # per instance, key by key
/// max-file-size-mb = 2048
/// journal-log-max-bytes = 4194304   # journal.log is rotated beyond this
/// journal-log-keep = 4              # rotated logs kept
/// journal-closed-max-days = 90      # closed journal entries kept this long
/// [interpreters]             # script-language → program [args…]; name on PATH or absolute
/// php = "/usr/bin/php8.2"
/// python = "python3 -I"
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    timeout_secs: Option<u64>,
    kill_grace_secs: Option<u64>,
    php_version: Option<String>,
    backup_key_file: Option<Utf8PathBuf>,
    #[serde(default)]
    allow_root_scripts: bool,
    #[serde(default)]
    limits: LimitsFile,
    journal_log_max_bytes: Option<u64>,
    journal_log_keep: Option<u32>,
    journal_closed_max_days: Option<u64>,
    #[serde(default)]
    interpreters: std::collections::BTreeMap<String, String>,
}

/// `controller.toml` could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not a valid controller configuration: {message}")]
    Invalid { path: Utf8PathBuf, message: String },
}

impl ControllerConfig {
    /// The name of the configuration file inside the state folder.
    pub const FILE_NAME: &'static str = "controller.toml";

    /// Defaults, overridden by `<state>/controller.toml` when it exists.
    pub fn load(state: StateDir) -> Result<Self, ConfigError> {
        let path = state.root().join(Self::FILE_NAME);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::new(state)),
            Err(source) => return Err(ConfigError::Read { path, source }),
        };
        let file: ConfigFile = toml::from_str(&text).map_err(|e| ConfigError::Invalid {
            path: path.clone(),
            message: crate::registry::validate::toml_problem(&text, &e),
        })?;
        let mut config = Self::new(state);
        if let Some(t) = file.timeout_secs {
            config.default_timeout = Duration::from_secs(t);
        }
        if let Some(g) = file.kill_grace_secs {
            config.kill_grace = Duration::from_secs(g);
        }
        config.host.php_version = file.php_version;
        // Relative to the state folder, like everything else the file names.
        config.backup_key_file = file.backup_key_file.map(|p| config.state.root().join(p));
        config.allow_root_scripts = file.allow_root_scripts;
        config.limits = ResourceLimits {
            max_file_size_mb: file.limits.max_file_size_mb,
            open_files: file.limits.open_files,
            cpu_secs: file.limits.cpu_secs,
            max_instance_size: file.limits.max_instance_size,
            max_files: file.limits.max_files,
        };
        config.instance_limits = file.limits.instances;
        if let Some(b) = file.journal_log_max_bytes {
            config.journal_limits.log_max_bytes = b;
        }
        if let Some(k) = file.journal_log_keep {
            config.journal_limits.log_keep = k;
        }
        if let Some(d) = file.journal_closed_max_days {
            config.journal_limits.closed_max_age = Duration::from_secs(d * 24 * 3600);
        }
        for (language, command) in &file.interpreters {
            config.interpreters = config.interpreters.with_override(language, command);
        }
        Ok(config)
    }

    /// Defaults for a state folder.
    pub fn new(state: StateDir) -> Self {
        ControllerConfig {
            state,
            interpreters: InterpreterTable::new(),
            default_timeout: DEFAULT_TIMEOUT,
            kill_grace: DEFAULT_KILL_GRACE,
            host: HostFacts::default(),
            backup_key_file: None,
            allow_root_scripts: false,
            limits: ResourceLimits::default(),
            instance_limits: Default::default(),
            journal_limits: JournalLimits::default(),
        }
    }

    /// The key that tags this controller's backups: controller.toml's `backup-key-file` (which
    /// must exist: a fleet's shared key is never made up on one machine), else `backup-key` in
    /// the state folder, created on first use.
    pub fn backup_key(&self) -> Result<crate::archive::TagKey, crate::backup_key::BackupKeyError> {
        match &self.backup_key_file {
            Some(path) => crate::backup_key::load(path),
            None => crate::backup_key::load_or_create(
                &self.state.root().join(crate::backup_key::KEY_FILE_NAME),
            ),
        }
    }

    /// The bounds of `instance`'s scripts.
    pub fn limits_for(&self, instance: &str) -> ResourceLimits {
        match self.instance_limits.get(instance) {
            Some(over) => self.limits.overridden_by(over),
            None => self.limits,
        }
    }

    /// How a walk of `instance`'s web folders is bounded, and whose hard links it reads: the
    /// account's only (a hard link to anyone else's file would be read as root).
    pub fn walk_policy(
        &self,
        instance: &str,
        account: Option<&crate::account::Account>,
    ) -> crate::archive::WalkPolicy {
        let limits = self.limits_for(instance);
        crate::archive::WalkPolicy {
            instance: instance.to_owned(),
            account_uid: account.map(|a| a.uid),
            max_bytes: limits.max_instance_size,
            max_files: limits.max_files,
            holes_as_data: false,
        }
    }
}

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
            .recover_interrupted(|snapshot, instance| {
                crate::operation::restore::put_back_snapshot(
                    &config,
                    store.as_ref(),
                    snapshot,
                    instance,
                )
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

    /// Replaces the cancellation token operations check (default: [`Cancel::process`]).
    pub fn set_cancel(&mut self, cancel: Cancel) {
        self.cancel = cancel;
    }

    pub fn cancel(&self) -> &Cancel {
        &self.cancel
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
        resolve_account(&self.config, instance)
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

/// Everything the controller creates from now on is private to it (umask 077: folders 0700,
/// files 0600): records, secrets, journal, locks, work folders, safety snapshots and backups
/// hold passwords and whole databases. Its children set their own umask (022) before exec.
/// The state folder itself is created, or tightened, to 0700.
pub fn make_private(state_root: &Utf8Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    std::fs::create_dir_all(state_root)?;
    let meta = std::fs::metadata(state_root)?;
    if meta.permissions().mode() & 0o077 != 0
        && std::os::unix::fs::MetadataExt::uid(&meta) == rustix::process::geteuid().as_raw()
    {
        std::fs::set_permissions(state_root, std::fs::Permissions::from_mode(0o700))?;
    }
    Ok(())
}

/// [`Controller::instance_account`] for code that has only the configuration (recovery).
pub(crate) fn resolve_account(
    config: &ControllerConfig,
    instance: &Instance,
) -> Result<Option<Account>, OperationError> {
    if !crate::account::controller_is_root() {
        return Ok(None);
    }
    let refuse = |reason: String| OperationError::AccountRefused {
        step: Step::FindInstance,
        instance: instance.name.clone(),
        reason,
    };
    // Records made before accounts were recorded: the root web folder's owner, now.
    let user = match &instance.user {
        Some(user) => user.clone(),
        None => {
            let root = crate::registry::root_web_dir(instance)
                .ok_or_else(|| refuse("it has no `user` and no web folder".into()))?;
            Account::owner_name_of(root).map_err(|e| refuse(e.to_string()))?
        }
    };
    let account = Account::lookup(&user, instance.group.as_deref())
        .map_err(|e| refuse(format!("its account cannot be used: {e}")))?;
    if account.is_root() && !config.allow_root_scripts {
        return Err(refuse(format!(
            "its account is root ({}), and a tenant's scripts and tools never run as root \
                 unless controller.toml says `allow-root-scripts = true`; give the instance its \
                 own account (`user = \"NAME\"` in INSTANCE.toml, or chown its root web folder \
                 and register it again)",
            if instance.user.is_some() {
                "`user` of the instance"
            } else {
                "owner of its root web folder"
            }
        )));
    }
    // Records registered before these checks existed, or whose folders changed hands since.
    let mut problems =
        crate::registry::trust::account_problems(&account, instance.group.as_deref());
    // A symlink in place of a web folder is the walk's business (never followed).
    problems.extend(crate::registry::trust::web_dir_problems(
        instance,
        Some(&account),
        config.state.root(),
        false,
    ));
    if !problems.is_empty() {
        let list: Vec<String> = problems.iter().map(ToString::to_string).collect();
        return Err(refuse(format!(
            "its record asks for what no instance may have (register it again once fixed): {}",
            list.join("; ")
        )));
    }
    Ok(Some(account))
}

fn journal_dir(state: &StateDir) -> Utf8PathBuf {
    state.root().join("journal")
}

/// `path` made absolute against the current folder (the CLI's paths are relative to it).
pub fn absolute(path: &Utf8Path) -> Utf8PathBuf {
    if path.is_absolute() {
        return path.to_owned();
    }
    match std::env::current_dir()
        .ok()
        .and_then(|d| Utf8PathBuf::from_path_buf(d).ok())
    {
        Some(cwd) => cwd.join(path),
        None => path.to_owned(),
    }
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
