//! How the controller runs: [`ControllerConfig`], its defaults and `<state>/controller.toml`.

use std::time::Duration;

use camino::Utf8PathBuf;

use crate::account::Account;
use crate::database::DbKind;
use crate::database::provision::{DatabaseServer, ProvisionError};
use crate::environment::HostFacts;
use crate::interpreter::InterpreterTable;
use crate::journal::JournalLimits;
use crate::registry::instance::Instance;
use crate::registry::store::StateDir;
pub use crate::runner::ResourceLimits;

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
    /// PHP extensions the sites' PHP has (`php-extensions`), for packages' requirements.
    pub php_extensions: Vec<String>,
    /// The servers databases may be created on (`[database-servers.NAME]`), by name.
    pub database_servers: std::collections::BTreeMap<String, DatabaseServer>,
}

/// `[database-servers.NAME]`: a server the controller may create databases and users on.
#[derive(Debug, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct DatabaseServerFile {
    #[serde(rename = "type")]
    kind: DbKind,
    host: String,
    port: Option<u16>,
    admin_login: String,
    admin_password_file: Utf8PathBuf,
    version: Option<String>,
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
/// php-extensions = ["mysqli", "gd"]  # what install checks a package's php:extension against
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
/// [database-servers.main]    # where `install` creates databases; NAME: letters, digits, . _ -
/// type = "mysql"             # mysql (MySQL or MariaDB) | postgresql
/// host = "127.0.0.1"
/// port = 3306                # default 3306 (mysql), 5432 (postgresql)
/// admin-login = "aps_admin"  # may create and drop databases and users
/// admin-password-file = "/etc/aps-controller/main.password"  # root's, mode 0600; read at use
/// version = "10.11"          # reported instead of asking the server
/// ```
#[derive(Debug, Default, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct ConfigFile {
    timeout_secs: Option<u64>,
    kill_grace_secs: Option<u64>,
    php_version: Option<String>,
    #[serde(default)]
    php_extensions: Vec<String>,
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
    #[serde(default)]
    database_servers: std::collections::BTreeMap<String, DatabaseServerFile>,
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
            message: crate::registry::toml_report::toml_problem(&text, &e),
        })?;
        let mut config = Self::new(state);
        if let Some(t) = file.timeout_secs {
            config.default_timeout = Duration::from_secs(t);
        }
        if let Some(g) = file.kill_grace_secs {
            config.kill_grace = Duration::from_secs(g);
        }
        config.host.php_version = file.php_version;
        config.php_extensions = file.php_extensions;
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
        for (name, server) in file.database_servers {
            let server =
                database_server(&config, name, server).map_err(|message| ConfigError::Invalid {
                    path: path.clone(),
                    message,
                })?;
            config.database_servers.insert(server.name.clone(), server);
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
            php_extensions: Vec::new(),
            database_servers: Default::default(),
        }
    }

    /// The database server controller.toml names `name`.
    pub fn database_server(&self, name: &str) -> Result<&DatabaseServer, ProvisionError> {
        self.database_servers
            .get(name)
            .ok_or_else(|| ProvisionError::UnknownServer {
                server: name.to_owned(),
                configured: self.database_servers.keys().cloned().collect(),
            })
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

/// A `[database-servers.NAME]` table checked: the name is 1 to 64 letters, digits, `.`, `_` or
/// `-` (it is typed in `--database ID=NAME`), host and login are not empty, and a relative
/// password file is in the state folder.
fn database_server(
    config: &ControllerConfig,
    name: String,
    file: DatabaseServerFile,
) -> Result<DatabaseServer, String> {
    let table = format!("[database-servers.{name}]");
    let valid_name = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
    if !valid_name {
        return Err(format!(
            "{table}: a database server's name is 1 to 64 letters, digits, `.`, `_` or `-`"
        ));
    }
    for (key, value) in [("host", &file.host), ("admin-login", &file.admin_login)] {
        if value.trim().is_empty() {
            return Err(format!("{table}: `{key}` is empty"));
        }
    }
    if file.admin_password_file.as_str().is_empty() {
        return Err(format!("{table}: `admin-password-file` is empty"));
    }
    Ok(DatabaseServer {
        port: file.port.unwrap_or(file.kind.default_port()),
        kind: file.kind,
        host: file.host,
        admin_login: file.admin_login,
        admin_password_file: config.state.root().join(file.admin_password_file),
        version: file.version,
        name,
    })
}

/// Why an instance's work may not run under its account; `reason` says what to change.
#[derive(Debug, thiserror::Error)]
#[error("{reason}")]
pub struct AccountRefused {
    pub reason: String,
}

impl ControllerConfig {
    /// The account `instance`'s work runs as: none when the controller is not root (it runs
    /// everything as itself); refused when the record asks for what no instance may have, or
    /// for root without `allow-root-scripts`.
    pub fn instance_account(&self, instance: &Instance) -> Result<Option<Account>, AccountRefused> {
        if !crate::account::controller_is_root() {
            return Ok(None);
        }
        let refuse = |reason: String| AccountRefused { reason };
        // Records made before accounts were recorded: the root web folder's owner, now.
        let user = match &instance.user {
            Some(user) => user.clone(),
            None => {
                let root = instance
                    .root_web_dir()
                    .ok_or_else(|| refuse("it has no `user` and no web folder".into()))?;
                Account::owner_name_of(root).map_err(|e| refuse(e.to_string()))?
            }
        };
        let account = Account::lookup(&user, instance.group.as_deref())
            .map_err(|e| refuse(format!("its account cannot be used: {e}")))?;
        if account.is_root() && !self.allow_root_scripts {
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
            self.state.root(),
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
}
