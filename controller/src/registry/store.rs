//! Durable storage of instance records.
//!
//! Layout of the state folder (see docs/instance-file.md):
//! ```text
//! <state>/registry.lock            store-wide lock, held around every read-modify-write
//! <state>/instances/<name>.json    the record, world-readable, no passwords
//! <state>/secrets/<name>.json      database passwords and password settings, mode 0600 in a
//!                                   0700 folder
//! <state>/packages/<sha256>/       .app.zip packages, unpacked once
//! ```
//! Every file is written to a temporary file in its own folder, fsynced, renamed into place
//! and the folder fsynced, so a crash leaves the old or the new file, never a torn one.
//! The record and its secrets are two files; they are tied by the SHA-256 of the secrets file,
//! kept in the record. A put writes the secrets as `<name>.json.pending` first, then renames
//! the record into place (the commit point), then the pending secrets; recovery (run under the
//! lock before every operation) finishes or drops a pending file by that digest.

use std::collections::BTreeMap;
use std::fs::{self, File};
use std::os::unix::fs::{DirBuilderExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

use super::instance::{Instance, SettingValue, is_valid_instance_name};
use crate::secret::Secret;

/// Where the controller keeps its state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateDir {
    root: Utf8PathBuf,
}

/// The state folder could not be determined.
#[derive(Debug, thiserror::Error)]
pub enum StateDirError {
    #[error(
        "no state folder: pass --state-dir, or set APS_CONTROLLER_STATE_DIR, XDG_STATE_HOME or HOME"
    )]
    Unresolved,
    #[error("state folder {0:?} is not valid UTF-8")]
    NotUtf8(std::path::PathBuf),
    #[error("cannot determine the current folder to resolve {path}: {source}")]
    CurrentDir {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// The default state folder of root: the FHS place for a daemon's state, where the shipped
/// systemd units and crontab (examples/) look, so that what root registers by hand is what the
/// nightly run backs up.
pub const ROOT_STATE_DIR: &str = "/var/lib/aps-controller";

/// Where the state folder came from: shown by `config show`, `instance register` and `run`, so
/// that a person can tell why two commands see different instances.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateSource {
    /// `--state-dir`.
    Flag,
    /// `$APS_CONTROLLER_STATE_DIR`.
    Env,
    /// [`ROOT_STATE_DIR`]: root, no flag, no variable.
    RootDefault,
    /// `$XDG_STATE_HOME/aps-controller` (not root).
    XdgStateHome,
    /// `$HOME/.local/state/aps-controller` (not root).
    HomeDefault,
}

impl StateSource {
    /// A stable word for `--json`.
    pub fn as_str(self) -> &'static str {
        match self {
            StateSource::Flag => "flag",
            StateSource::Env => "env",
            StateSource::RootDefault => "default-root",
            StateSource::XdgStateHome => "xdg-state-home",
            StateSource::HomeDefault => "default-home",
        }
    }

    /// Said to a person, after the path.
    pub fn describe(self) -> &'static str {
        match self {
            StateSource::Flag => "from --state-dir",
            StateSource::Env => "from $APS_CONTROLLER_STATE_DIR",
            StateSource::RootDefault => "the default for root",
            StateSource::XdgStateHome => "from $XDG_STATE_HOME, the default for a non-root user",
            StateSource::HomeDefault => "the default for a non-root user without $XDG_STATE_HOME",
        }
    }
}

impl StateDir {
    /// `--state-dir`, else `$APS_CONTROLLER_STATE_DIR`, else for root [`ROOT_STATE_DIR`], else
    /// `$XDG_STATE_HOME/aps-controller`, else `$HOME/.local/state/aps-controller`. Empty
    /// variables count as unset; a relative result is made absolute against the current
    /// folder (records hold absolute paths and scripts run elsewhere).
    pub fn resolve(cli_flag: Option<Utf8PathBuf>) -> Result<Self, StateDirError> {
        Self::resolve_explained(cli_flag).map(|(dir, _)| dir)
    }

    /// [`StateDir::resolve`], and where the folder came from.
    pub fn resolve_explained(
        cli_flag: Option<Utf8PathBuf>,
    ) -> Result<(Self, StateSource), StateDirError> {
        let root = rustix::process::geteuid().is_root();
        Self::resolve_in(cli_flag, |k| std::env::var_os(k), root)
    }

    /// The rule itself, over a given environment and a given answer to "is this root?" (the
    /// effective user id, as the file system sees it).
    pub fn resolve_in(
        cli_flag: Option<Utf8PathBuf>,
        env: impl Fn(&str) -> Option<std::ffi::OsString>,
        is_root: bool,
    ) -> Result<(Self, StateSource), StateDirError> {
        let env = |k: &str| -> Result<Option<Utf8PathBuf>, StateDirError> {
            match env(k) {
                Some(v) if !v.is_empty() => Utf8PathBuf::from_path_buf(v.into())
                    .map(Some)
                    .map_err(StateDirError::NotUtf8),
                _ => Ok(None),
            }
        };
        let (root, source) = if let Some(p) = cli_flag.filter(|p| !p.as_str().is_empty()) {
            (p, StateSource::Flag)
        } else if let Some(p) = env("APS_CONTROLLER_STATE_DIR")? {
            (p, StateSource::Env)
        } else if is_root {
            // Not $XDG_STATE_HOME: a `sudo -E` or a login session would otherwise move root's
            // state away from where the timer looks.
            (Utf8PathBuf::from(ROOT_STATE_DIR), StateSource::RootDefault)
        } else if let Some(p) = env("XDG_STATE_HOME")? {
            (p.join("aps-controller"), StateSource::XdgStateHome)
        } else {
            let home = env("HOME")?.ok_or(StateDirError::Unresolved)?;
            (
                home.join(".local/state/aps-controller"),
                StateSource::HomeDefault,
            )
        };
        let root = if root.is_relative() {
            let cwd = std::env::current_dir().map_err(|source| StateDirError::CurrentDir {
                path: root.clone(),
                source,
            })?;
            let cwd = Utf8PathBuf::from_path_buf(cwd).map_err(StateDirError::NotUtf8)?;
            crate::paths::normalize(&cwd.join(root))
        } else {
            root
        };
        Ok((StateDir { root }, source))
    }

    /// A state folder at exactly this path (tests, panels that manage their own).
    pub fn at(root: impl Into<Utf8PathBuf>) -> Self {
        StateDir { root: root.into() }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }
    pub fn instances_dir(&self) -> Utf8PathBuf {
        self.root.join("instances")
    }
    pub fn secrets_dir(&self) -> Utf8PathBuf {
        self.root.join("secrets")
    }
    /// Where `.app.zip` packages are unpacked, one folder per SHA-256 of the archive.
    pub fn packages_dir(&self) -> Utf8PathBuf {
        self.root.join("packages")
    }
    pub fn lock_file(&self) -> Utf8PathBuf {
        self.root.join("registry.lock")
    }
}

/// A storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("no instance named {name:?}")]
    NotFound { name: String },
    #[error(
        "an instance named {name:?} already exists (use {} to overwrite it)",
        crate::overrides::Override::Replace
    )]
    AlreadyExists { name: String },
    #[error("invalid instance name {name:?}: expected [a-z0-9][a-z0-9._-]{{0,62}}")]
    InvalidName { name: String },
    #[error("{path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is damaged: {message}")]
    Corrupt { path: Utf8PathBuf, message: String },
}

fn io(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> StoreError + '_ {
    move |source| StoreError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Storage of instance records. Control panels with their own database implement this;
/// [`FileStore`] is the default. Implementations must keep passwords out of anything
/// world-readable and make `put` all-or-nothing.
pub trait InstanceStore {
    /// The instance, or [`StoreError::NotFound`].
    fn get(&self, name: &str) -> Result<Instance, StoreError>;
    /// All instances, sorted by name.
    fn list(&self) -> Result<Vec<Instance>, StoreError>;
    /// Inserts; with `replace` false an existing record is [`StoreError::AlreadyExists`].
    fn put(&self, instance: &Instance, replace: bool) -> Result<(), StoreError>;
    /// Removes the record and its secrets (never the instance's data) and returns it.
    fn remove(&self, name: &str) -> Result<Instance, StoreError>;
}

/// The file-based store (layout in the module docs). Safe for several processes at once.
#[derive(Debug, Clone)]
pub struct FileStore {
    state: StateDir,
}

/// Key of the record that ties it to its secrets file.
const SECRETS_DIGEST_KEY: &str = "secrets-sha256";
const PENDING_SUFFIX: &str = ".json.pending";
const TMP_PREFIX: &str = ".tmp-";

/// Held while the store is used; released on drop (also by the OS if the process dies).
struct Locked {
    _file: File,
}

impl FileStore {
    pub fn new(state: StateDir) -> Self {
        FileStore { state }
    }

    pub fn state(&self) -> &StateDir {
        &self.state
    }

    fn record_path(&self, name: &str) -> Utf8PathBuf {
        self.state.instances_dir().join(format!("{name}.json"))
    }
    fn secrets_path(&self, name: &str) -> Utf8PathBuf {
        self.state.secrets_dir().join(format!("{name}.json"))
    }
    fn pending_path(&self, name: &str) -> Utf8PathBuf {
        self.state
            .secrets_dir()
            .join(format!("{name}{PENDING_SUFFIX}"))
    }

    /// Creates the folders, takes the store lock and repairs what a crash left behind.
    fn lock(&self) -> Result<Locked, StoreError> {
        let root = self.state.root();
        // The state folder is private (0700, umask 077), however it is first reached.
        crate::paths::make_private(root).map_err(io(root))?;
        let inst = self.state.instances_dir();
        fs::create_dir_all(&inst).map_err(io(&inst))?;
        let sec = self.state.secrets_dir();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&sec)
            .map_err(io(&sec))?;
        // A folder made by an older version or by hand may be too open.
        fs::set_permissions(&sec, fs::Permissions::from_mode(0o700)).map_err(io(&sec))?;
        let lock_path = self.state.lock_file();
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&lock_path)
            .map_err(io(&lock_path))?;
        file.lock().map_err(io(&lock_path))?;
        let locked = Locked { _file: file };
        self.recover()?;
        Ok(locked)
    }

    /// Under the lock nobody else is writing, so any temporary file is a crash leftover, and
    /// a pending secrets file is finished when its record names its digest, else dropped.
    fn recover(&self) -> Result<(), StoreError> {
        for dir in [self.state.instances_dir(), self.state.secrets_dir()] {
            for (fname, path) in read_dir_names(&dir)? {
                if fname.starts_with(TMP_PREFIX) {
                    remove_if_exists(&path)?;
                }
            }
        }
        let sec_dir = self.state.secrets_dir();
        for (fname, path) in read_dir_names(&sec_dir)? {
            let Some(name) = fname.strip_suffix(PENDING_SUFFIX) else {
                continue;
            };
            let want = self.read_record_value(name)?.and_then(|v| {
                v.get(SECRETS_DIGEST_KEY)
                    .and_then(|d| d.as_str())
                    .map(str::to_owned)
            });
            let have = fs::read(&path).map_err(io(&path))?;
            if want.as_deref() == Some(&sha256_hex(&have)) {
                let dest = self.secrets_path(name);
                fs::rename(&path, &dest).map_err(io(&dest))?;
            } else {
                remove_if_exists(&path)?;
            }
            sync_dir(&sec_dir)?;
        }
        Ok(())
    }

    fn read_record_value(&self, name: &str) -> Result<Option<serde_json::Value>, StoreError> {
        let path = self.record_path(name);
        let bytes = match fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(io(&path)(e)),
        };
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| StoreError::Corrupt {
                path,
                message: e.to_string(),
            })
    }

    /// Reads a record and puts its passwords back from the secrets file.
    fn read_locked(&self, name: &str) -> Result<Instance, StoreError> {
        let path = self.record_path(name);
        let Some(mut value) = self.read_record_value(name)? else {
            return Err(StoreError::NotFound {
                name: name.to_string(),
            });
        };
        let corrupt = |message: String| StoreError::Corrupt {
            path: path.clone(),
            message,
        };
        let obj = value
            .as_object_mut()
            .ok_or_else(|| corrupt("not a JSON object".into()))?;
        let digest = obj.remove(SECRETS_DIGEST_KEY);
        let secrets: SecretsFile = match digest {
            None => SecretsFile::default(),
            Some(d) => {
                let sp = self.secrets_path(name);
                let bytes = fs::read(&sp).map_err(io(&sp))?;
                if d.as_str() != Some(&sha256_hex(&bytes)) {
                    return Err(StoreError::Corrupt {
                        path: sp,
                        message: "does not match its instance record (digest differs)".into(),
                    });
                }
                serde_json::from_slice(&bytes).map_err(|e| StoreError::Corrupt {
                    path: sp,
                    message: e.to_string(),
                })?
            }
        };
        if !secrets.setting_values.is_empty() {
            let settings = obj
                .entry("settings")
                .or_insert_with(|| serde_json::Value::Object(Default::default()));
            let settings = settings
                .as_object_mut()
                .ok_or_else(|| corrupt("`settings` is not an object".into()))?;
            for (id, v) in secrets.setting_values {
                settings.insert(id, serde_json::to_value(v).expect("values serialise"));
            }
        }
        if let Some(dbs) = obj.get_mut("databases").and_then(|d| d.as_object_mut()) {
            for (id, db) in dbs.iter_mut() {
                let pw = secrets
                    .database_passwords
                    .get(id)
                    .map(Secret::expose)
                    .unwrap_or_default();
                if let Some(db) = db.as_object_mut() {
                    db.insert("password".into(), pw.into());
                }
            }
        }
        let inst: Instance = serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        if inst.name != name {
            return Err(corrupt(format!("holds instance {:?}", inst.name)));
        }
        Ok(inst)
    }
}

/// The secrets file: kept apart from the record so the record can be world-readable.
#[derive(Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
struct SecretsFile {
    /// db requirement id → password.
    database_passwords: BTreeMap<String, Secret>,
    /// Values of the instance's `secret_settings` (password settings).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    setting_values: BTreeMap<String, SettingValue>,
}

fn check_name(name: &str) -> Result<(), StoreError> {
    if is_valid_instance_name(name) {
        Ok(())
    } else {
        Err(StoreError::InvalidName {
            name: name.to_string(),
        })
    }
}

impl InstanceStore for FileStore {
    fn get(&self, name: &str) -> Result<Instance, StoreError> {
        check_name(name)?;
        let _l = self.lock()?;
        self.read_locked(name)
    }

    fn list(&self) -> Result<Vec<Instance>, StoreError> {
        let _l = self.lock()?;
        let mut names: Vec<String> = read_dir_names(&self.state.instances_dir())?
            .into_iter()
            .filter_map(|(f, _)| f.strip_suffix(".json").map(str::to_owned))
            .filter(|n| is_valid_instance_name(n))
            .collect();
        names.sort();
        names.iter().map(|n| self.read_locked(n)).collect()
    }

    fn put(&self, instance: &Instance, replace: bool) -> Result<(), StoreError> {
        let name = instance.name.as_str();
        check_name(name)?;
        let _l = self.lock()?;
        let record_path = self.record_path(name);
        if !replace && record_path.exists() {
            return Err(StoreError::AlreadyExists {
                name: name.to_string(),
            });
        }
        let mut value = serde_json::to_value(instance).map_err(|e| StoreError::Corrupt {
            path: record_path.clone(),
            message: format!("cannot serialise: {e}"),
        })?;
        let obj = value
            .as_object_mut()
            .expect("Instance serialises to an object");
        let mut secrets = SecretsFile::default();
        if let Some(dbs) = obj.get_mut("databases").and_then(|d| d.as_object_mut()) {
            for (id, db) in dbs.iter_mut() {
                if let Some(db) = db.as_object_mut() {
                    db.remove("password");
                }
                secrets
                    .database_passwords
                    .insert(id.clone(), instance.databases[id].password.clone());
            }
        }
        if let Some(settings) = obj.get_mut("settings").and_then(|s| s.as_object_mut()) {
            for id in &instance.secret_settings {
                if settings.remove(id).is_some() {
                    secrets
                        .setting_values
                        .insert(id.clone(), instance.settings[id].clone());
                }
            }
        }
        let sec_dir = self.state.secrets_dir();
        let _inst_dir = self.state.instances_dir();
        let had_secrets =
            !secrets.database_passwords.is_empty() || !secrets.setting_values.is_empty();
        if had_secrets {
            let bytes = serde_json::to_vec_pretty(&secrets).expect("secrets serialise");
            obj.insert(SECRETS_DIGEST_KEY.into(), sha256_hex(&bytes).into());
            write_atomic(&self.pending_path(name), &bytes, 0o600)?;
        }
        let mut bytes = serde_json::to_vec_pretty(&value).expect("record serialises");
        bytes.push(b'\n');
        // The commit point: from here on the new record (and, by recovery, its secrets) is it.
        write_atomic(&record_path, &bytes, 0o600)?;
        let secrets_path = self.secrets_path(name);
        if had_secrets {
            let pending = self.pending_path(name);
            fs::rename(&pending, &secrets_path).map_err(io(&secrets_path))?;
        } else {
            remove_if_exists(&secrets_path)?;
        }
        sync_dir(&sec_dir)
    }

    fn remove(&self, name: &str) -> Result<Instance, StoreError> {
        check_name(name)?;
        let _l = self.lock()?;
        let inst = self.read_locked(name)?;
        let record = self.record_path(name);
        fs::remove_file(&record).map_err(io(&record))?;
        sync_dir(&self.state.instances_dir())?;
        // A crash here leaves secrets without a record: harmless, unreadable to others, and
        // overwritten by the next registration of this name.
        remove_if_exists(&self.secrets_path(name))?;
        sync_dir(&self.state.secrets_dir())?;
        Ok(inst)
    }
}

fn sha256_hex(b: &[u8]) -> String {
    hex::encode(Sha256::digest(b))
}

fn read_dir_names(dir: &Utf8Path) -> Result<Vec<(String, Utf8PathBuf)>, StoreError> {
    let rd = match dir.read_dir_utf8() {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(dir)(e)),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry.map_err(io(dir))?;
        out.push((entry.file_name().to_string(), entry.path().to_owned()));
    }
    Ok(out)
}

fn remove_if_exists(p: &Utf8Path) -> Result<(), StoreError> {
    match fs::remove_file(p) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(io(p)(e)),
        _ => Ok(()),
    }
}

fn sync_dir(dir: &Utf8Path) -> Result<(), StoreError> {
    crate::durable::sync_dir(dir).map_err(io(dir))
}

/// [`crate::durable::write_atomic`] with the store's temporary names (removed at the next lock
/// when a crash left them).
pub(crate) fn write_atomic(dest: &Utf8Path, bytes: &[u8], mode: u32) -> Result<(), StoreError> {
    let temp = crate::durable::TempName {
        prefix: TMP_PREFIX,
        suffix: "",
    };
    crate::durable::write_atomic(dest, bytes, mode, temp).map_err(|e| StoreError::Io {
        path: e.path,
        source: e.source,
    })
}
