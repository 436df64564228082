//! Creating and opening a repository: its private folder, the master key and password files `store
//! init` writes, and the engine opened with the key.

use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Mutex;

use camino::Utf8Path;
use rustic_core::repofile::MasterKey;
use rustic_core::{
    ConfigOptions, Credentials, IndexedIdsStatus, KeyOptions, OpenStatus, Repository,
    RepositoryOptions,
};

use crate::config::{RepositoryLocation, RepositorySettings};
use crate::store::repository::{InitReport, RepositoryError, RepositoryStore, engine_err};

pub(super) fn repository_options() -> RepositoryOptions {
    // A local repository needs no cache, and root's home must not collect one per host.
    RepositoryOptions::default().no_cache(true)
}

/// A local repository is the controller's alone, wherever it is: everything written into it
/// from now on (by this handle and by the engine) is made 0700/0600 through the umask, and
/// the folder itself is closed (0700) when it is looser, which also closes what an older
/// version left 0755/0644 inside. Encrypted packs still tell their sizes and names.
pub(super) fn keep_private(location: &RepositoryLocation) -> Result<(), RepositoryError> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let RepositoryLocation::Folder(path) = location else {
        return Ok(());
    };
    let meta = match std::fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(source) => {
            return Err(RepositoryError::Io {
                action: "read the repository folder",
                path: path.clone(),
                source,
            });
        }
    };
    if meta.is_dir()
        && meta.mode() & 0o077 != 0
        && meta.uid() == rustix::process::geteuid().as_raw()
    {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700)).map_err(
            |source| RepositoryError::Io {
                action: "make the repository folder private",
                path: path.clone(),
                source,
            },
        )?;
    }
    Ok(())
}

pub(super) fn unopened(location: &RepositoryLocation) -> Result<Repository<()>, RepositoryError> {
    keep_private(location)?;
    let backends = crate::store::repository::backend::backends(location)?;
    Repository::new(&repository_options(), &backends).map_err(engine_err(location.describe()))
}

/// Writes `bytes` to a new file of mode 0600; never replaces one.
pub(super) fn write_secret(
    path: &Utf8Path,
    what: &'static str,
    bytes: &[u8],
) -> Result<(), RepositoryError> {
    let io_err = |action| {
        move |source| RepositoryError::Io {
            action,
            path: path.to_owned(),
            source,
        }
    };
    if let Some(parent) = path.parent()
        && !parent.as_str().is_empty()
    {
        std::fs::create_dir_all(parent).map_err(io_err("create the folder of"))?;
    }
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|source| {
            if source.kind() == io::ErrorKind::AlreadyExists {
                RepositoryError::KeyExists {
                    what,
                    path: path.to_owned(),
                }
            } else {
                io_err("create")(source)
            }
        })?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io_err("write"))
}

pub(super) fn random_password() -> Result<String, RepositoryError> {
    let mut bytes = [0u8; 32];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .map_err(|source| RepositoryError::Io {
            action: "read",
            path: "/dev/urandom".into(),
            source,
        })?;
    Ok(hex::encode(bytes))
}

impl RepositoryStore {
    /// Creates the repository, then the key file (the master key, JSON) and the password file
    /// (a random password, also stored in the repository as a restic key). Refuses when the
    /// repository or either file exists. The password's key derivation runs once, here.
    pub fn init(settings: &RepositorySettings) -> Result<InitReport, RepositoryError> {
        let location = &settings.location;
        let describe = location.describe();
        for (what, p) in [
            ("key file", &settings.key_file),
            ("password file", &settings.password_file),
        ] {
            if p.exists() {
                return Err(RepositoryError::KeyExists {
                    what,
                    path: p.clone(),
                });
            }
        }
        let repo = unopened(location)?;
        if repo
            .config_id()
            .map_err(engine_err(describe.clone()))?
            .is_some()
        {
            return Err(RepositoryError::Exists {
                repository: describe,
            });
        }
        let key = MasterKey::new();
        let key_json = serde_json::to_vec_pretty(&key).expect("a master key serialises");
        let password = random_password()?;
        // Files first: a repository whose key was not saved could never be opened.
        write_secret(&settings.key_file, "key file", &key_json)?;
        write_secret(
            &settings.password_file,
            "password file",
            format!("{password}\n").as_bytes(),
        )?;
        let repo = repo
            .init(
                &Credentials::Masterkey(key),
                &KeyOptions::default(),
                &ConfigOptions::default(),
            )
            .map_err(engine_err(describe.clone()))?;
        repo.add_key(&password, &KeyOptions::default())
            .map_err(engine_err(describe.clone()))?;
        Ok(InitReport {
            repository: describe,
            key_file: settings.key_file.clone(),
            password_file: settings.password_file.clone(),
        })
    }

    /// Opens the repository with the key file's master key.
    pub fn open(settings: &RepositorySettings) -> Result<Self, RepositoryError> {
        let text = std::fs::read(&settings.key_file).map_err(|source| {
            if source.kind() == io::ErrorKind::NotFound {
                RepositoryError::NotInitialised {
                    key_file: settings.key_file.clone(),
                }
            } else {
                RepositoryError::Io {
                    action: "read the key file",
                    path: settings.key_file.clone(),
                    source,
                }
            }
        })?;
        let key: MasterKey =
            serde_json::from_slice(&text).map_err(|e| RepositoryError::KeyFormat {
                path: settings.key_file.clone(),
                message: e.to_string(),
            })?;
        let repo = unopened(&settings.location)?
            .open(&Credentials::Masterkey(key.clone()))
            .map_err(engine_err(settings.location.describe()))?;
        Ok(RepositoryStore {
            settings: settings.clone(),
            key,
            repo,
            index: Mutex::default(),
            newest: Mutex::default(),
        })
    }

    /// Another handle on the repository (the master key: no key derivation).
    pub(super) fn reopen(&self) -> Result<Repository<OpenStatus>, RepositoryError> {
        unopened(&self.settings.location)?
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(self.err())
    }

    /// Another handle on the repository with its index, for a backup: only the index files
    /// this store has not read yet are read (a run of many backups writes one per backup).
    pub(super) fn indexed(&self) -> Result<Repository<IndexedIdsStatus>, RepositoryError> {
        let repo = self.reopen()?;
        let mut known = self.index.lock().unwrap_or_else(|e| e.into_inner());
        repo.to_indexed_ids_with(&mut known).map_err(self.err())
    }
}
