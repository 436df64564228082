//! The instance registry: instance records, INSTANCE.toml, and their durable storage.
//!
//! [`register`] is the one entry point that turns an INSTANCE.toml into a stored record:
//! parse, open the package, validate everything (all problems at once), refuse web folders and
//! databases another instance uses, connect to each database when asked ([`RegisterOptions`]),
//! then store. Nothing is stored when anything is wrong.

pub mod check;
pub mod file;
pub mod instance;
pub mod package;
pub mod store;
pub mod toml_report;
pub mod trust;
pub mod validate;
pub mod view;

use camino::Utf8Path;

use crate::account::Account;
use crate::overrides::Override;

pub use self::file::{InstanceFile, ParseError, parse_database_table};
pub use self::instance::{
    BaseUrl, BaseUrlError, Installed, Instance, InstanceStatus, SettingValue,
    is_valid_instance_name,
};
pub use self::package::{OpenedPackage, PackageOpenError, open_package};
pub use self::store::{
    FileStore, InstanceStore, ROOT_STATE_DIR, StateDir, StateDirError, StateSource, StoreError,
};
pub use self::validate::{Problem, validate};

/// Registration failed; nothing was stored.
#[derive(Debug, thiserror::Error)]
pub enum RegisterError {
    #[error(transparent)]
    Parse(#[from] ParseError),
    #[error("{} problem(s) in the instance file:\n{}", .0.len(), .0.iter().map(|p| format!("  - {p}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<Problem>),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How [`register_with`] registers.
#[derive(Debug, Clone, Copy, Default)]
pub struct RegisterOptions<'a> {
    /// Overwrite an instance of the same name.
    pub replace: bool,
    /// Connect to each database with its login and run a trivial query, the client tools
    /// running as the instance's work would under this configuration (the CLI and `serve` do,
    /// unless told `--no-connect`); a login that does not work is a problem of the file.
    /// `None`: offline (a database made later).
    pub connect: Option<&'a crate::config::ControllerConfig>,
}

/// Parses, validates and stores the instance described by the INSTANCE.toml at `path`, offline
/// (no database is connected to: [`register_with`] does that). `.app.zip` packages are unpacked
/// under `state` (see [`open_package`]).
pub fn register(
    store: &dyn InstanceStore,
    state: &StateDir,
    path: &Utf8Path,
    replace: bool,
) -> Result<Instance, RegisterError> {
    let options = RegisterOptions {
        replace,
        connect: None,
    };
    register_with(store, state, path, &options)
}

/// [`register`], connecting to the databases when `options` say so.
pub fn register_with(
    store: &dyn InstanceStore,
    state: &StateDir,
    path: &Utf8Path,
    options: &RegisterOptions<'_>,
) -> Result<Instance, RegisterError> {
    let file = InstanceFile::load(path)?;
    register_file_with(store, state, &file, options)
}

/// [`register`] for an already parsed file (offline).
pub fn register_file(
    store: &dyn InstanceStore,
    state: &StateDir,
    file: &InstanceFile,
    replace: bool,
) -> Result<Instance, RegisterError> {
    let options = RegisterOptions {
        replace,
        connect: None,
    };
    register_file_with(store, state, file, &options)
}

/// [`register_with`] for an already parsed file.
pub fn register_file_with(
    store: &dyn InstanceStore,
    state: &StateDir,
    file: &InstanceFile,
    options: &RegisterOptions<'_>,
) -> Result<Instance, RegisterError> {
    let replace = options.replace;
    let mut problems = Vec::new();
    let meta = if file.package.is_absolute() {
        match open_package(state, &file.package) {
            Ok(p) => Some(p.meta),
            Err(e) => {
                problems.push(Problem::Package {
                    path: e.path,
                    message: e.message,
                });
                None
            }
        }
    } else {
        None
    };
    problems.extend(validate::web_dirs_exist(file));
    // Reported with the rest; `put` checks again under the lock for a racing registration.
    if !replace && is_valid_instance_name(&file.name) {
        match store.get(&file.name) {
            Ok(_) => problems.push(Problem::AlreadyExists(file.name.clone())),
            Err(StoreError::NotFound { .. }) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let mut instance = match validate(file, meta.as_ref()) {
        Ok(i) if problems.is_empty() => i,
        Ok(_) => return Err(RegisterError::Invalid(problems)),
        Err(mut more) => {
            problems.append(&mut more);
            return Err(RegisterError::Invalid(problems));
        }
    };
    let account = record_account(&mut instance).map_err(|p| RegisterError::Invalid(vec![p]))?;
    // What the record asks for, judged by its content (never by who owns the file).
    let mut problems = Vec::new();
    if let Some(account) = &account {
        problems.extend(trust::account_problems(account, instance.group.as_deref()));
    }
    let owner_checked = account
        .as_ref()
        .filter(|_| crate::account::controller_is_root());
    problems.extend(trust::web_dir_problems(
        &instance,
        owner_checked,
        state.root(),
        true,
    ));
    let account_usable = problems.is_empty();
    // Checked before `put`, not under its lock: two registrations racing for one folder can
    // both pass (the registry's lock belongs to the store, which panels may implement).
    problems.extend(check::conflicts(&instance, &store.list()?));
    if let Some(config) = options.connect
        && account_usable
    {
        problems.extend(connect_problems(config, &instance));
    }
    if !problems.is_empty() {
        return Err(RegisterError::Invalid(problems));
    }
    store.put(&instance, replace)?;
    Ok(instance)
}

/// Each database's login tried as the tools will run it: the instance's account, resolved as an
/// operation resolves it (never as root, unless `allow-root-scripts`). The suggested
/// [`Override::NoConnect`] is spelled now, as the registering front end spells it.
fn connect_problems(config: &crate::config::ControllerConfig, instance: &Instance) -> Vec<Problem> {
    if instance.databases.is_empty() {
        return Vec::new();
    }
    let account = match config.instance_account(instance) {
        Ok(account) => account,
        Err(refused) => {
            let reason = refused.reason;
            return instance
                .databases
                .keys()
                .map(|id| Problem::DatabaseConnect {
                    id: id.clone(),
                    message: format!(
                        "the login cannot be checked: the tools would run as the instance's \
                         account, and {reason}; or register with {}",
                        Override::NoConnect
                    ),
                })
                .collect();
        }
    };
    instance
        .databases
        .iter()
        .filter_map(|(id, db)| {
            let e = check::connect(db, account.as_ref(), check::CONNECT_TIMEOUT).err()?;
            Some(Problem::DatabaseConnect {
                id: id.clone(),
                message: format!(
                    "{}; or register with {} to skip this check (a database made \
                     later)",
                    check::connect_message(id, db, &e),
                    Override::NoConnect
                ),
            })
        })
        .collect()
}

/// Records the account the instance's work runs as: `user` of INSTANCE.toml (which must
/// exist), else the owner of its root web folder now (read without following a symlink).
/// Returns it, or `None` when it is read later.
fn record_account(instance: &mut Instance) -> Result<Option<Account>, Problem> {
    if instance.user.is_none() {
        // No web folder, or one made later (a fresh staging instance): the owner is read
        // when an operation runs (and without one, the operation is refused then).
        let Some(root) = instance.root_web_dir() else {
            return Ok(None);
        };
        if std::fs::symlink_metadata(root).is_err() {
            return Ok(None);
        }
        let owner = Account::owner_name_of(root).map_err(|e| {
            Problem::Account(format!(
                "no `user` given and the owner of the root web folder is unknown: {e}"
            ))
        })?;
        instance.user = Some(owner);
    }
    let user = instance.user.as_deref().unwrap_or_default();
    Account::lookup(user, instance.group.as_deref())
        .map(Some)
        .map_err(|e| Problem::Account(e.to_string()))
}
