//! The instance registry: instance records, INSTANCE.toml, and their durable storage.
//!
//! [`register`] is the one entry point that turns an INSTANCE.toml into a stored record:
//! parse, open the package, validate everything (all problems at once), then store.
//! Nothing is stored when anything is wrong.

pub mod file;
pub mod instance;
pub mod package;
pub mod store;
pub mod trust;
pub mod validate;
pub mod view;

use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;

pub use file::{InstanceFile, ParseError};
pub use instance::{BaseUrl, BaseUrlError, Instance, SettingValue, is_valid_instance_name};
pub use package::{OpenedPackage, PackageOpenError, open_package};
pub use store::{
    FileStore, InstanceStore, ROOT_STATE_DIR, StateDir, StateDirError, StateSource, StoreError,
};
pub use validate::{Problem, validate};

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

/// Parses, validates and stores the instance described by the INSTANCE.toml at `path`.
/// `.app.zip` packages are unpacked under `state` (see [`open_package`]).
pub fn register(
    store: &dyn InstanceStore,
    state: &StateDir,
    path: &Utf8Path,
    replace: bool,
) -> Result<Instance, RegisterError> {
    let file = InstanceFile::load(path)?;
    register_file(store, state, &file, replace)
}

/// [`register`] for an already parsed file.
pub fn register_file(
    store: &dyn InstanceStore,
    state: &StateDir,
    file: &InstanceFile,
    replace: bool,
) -> Result<Instance, RegisterError> {
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
    if !problems.is_empty() {
        return Err(RegisterError::Invalid(problems));
    }
    store.put(&instance, replace)?;
    Ok(instance)
}

/// The root web folder: the `/` mapping's, else the first mapping's (by URL).
pub fn root_web_dir(instance: &Instance) -> Option<&Utf8PathBuf> {
    instance
        .web_dirs
        .get("/")
        .or_else(|| instance.web_dirs.values().next())
}

/// Records the account the instance's work runs as: `user` of INSTANCE.toml (which must
/// exist), else the owner of its root web folder now (read without following a symlink).
/// Returns it, or `None` when it is read later.
fn record_account(instance: &mut Instance) -> Result<Option<Account>, Problem> {
    if instance.user.is_none() {
        // No web folder, or one made later (a fresh staging instance): the owner is read
        // when an operation runs (and without one, the operation is refused then).
        let Some(root) = root_web_dir(instance) else {
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
