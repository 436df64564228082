//! The repository store: a restic-format repository (format v2: encrypted, zstd-compressed,
//! content-defined chunks, deduplicated across every backup of every instance), written and
//! read through `rustic_core`. Each backup of an instance is one snapshot:
//!
//! ```text
//! /databases/<requirement id>.sql   the controller's dump, streamed from the dump tool
//! /web/<url path, '/' as %2F>/…      each web folder of the instance that is not inside
//!                                    another one
//! /manifest.json                    the controller's manifest of the parts (the archive
//!                                    format's, docs/backup-format.md: each dump's size and
//!                                    SHA-256, each web folder's canonical SHA-256 and counts)
//! /manifest.tag                      its HMAC tag under the controller's backup key
//! ```
//!
//! tagged `aps-instance=NAME`, `aps-periodicity=P` and, when known, `aps-package=ID`,
//! `aps-version=V`, `aps-release=R`. The repository is opened with the master key that
//! `store init` wrote to the key file, so no password key derivation runs per backup; the
//! password file it also wrote lets the `restic` tool (or rustic) open the same repository.
//!
//! Known traps of the engine, and how this module handles them:
//! - Per-file read errors are only logged by the engine and the snapshot is still saved: every
//!   open, read, walk and dump error is recorded here, and a backup with any of them fails and
//!   its snapshot is removed. The summary's file count is checked against what was offered.
//! - The engine's command source shrinks its read buffer after a short pipe read and saves the
//!   snapshot even when the command fails: dumps are read through [`DumpReader`], which fills
//!   each buffer and turns a non-zero exit into a read error (and so a failed backup).
//! - A stream without a parent check could be matched to the previous snapshot's node and
//!   recorded as unchanged with 0 bytes read: the streamed nodes (dumps, manifest) carry the
//!   time they were made in nanoseconds and a fresh inode-like number, which no parent node
//!   has, so they are always read; web files are matched by the engine (size, mtime, ctime).
//! - The web folders' manifest entries are computed by the controller's archive code, walking
//!   by descriptor, before the engine reads them; a metadata walk before (names, types, modes,
//!   sizes, inodes, mtimes and ctimes in nanoseconds) and the same digest of the engine's own
//!   walk, with each file the engine reads checked again at its end ([`seen`]), prove that
//!   both saw the same tree, else the backup fails (the site changed while it was backed up).
//! - The engine finds a parent by reading every snapshot file: the cache names the last one
//!   made for the instance, read alone.
//! - `get_all_snapshots` is unsorted: listings are sorted by time, then id.
//!
//! - The engine saved a streamed file's node with the size announced before reading (0 for a
//!   dump), and `restic restore` wrote it empty: the patched engine records the bytes read
//!   (third_party/rustic_core/PATCHED.md).
//!
//! Its parts: [`keys`] (init, open), [`backup`] with what it reads ([`source`], [`dump`],
//! [`web`], [`seen`], [`manifest`], [`state`]), [`snapshots`], [`stage`] for a restore (through
//! [`stream`]), [`retention`], [`verify`], the S3 [`backend`], [`cancel`], restic's [`lock`]s
//! and [`front`]: the repository store as a `Store`.

use std::collections::BTreeMap;
use std::io;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use aps_controller::account::Account;
use aps_controller::archive::{ManifestHeader, TagKey};
use aps_controller::database::Database;
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::repofile::MasterKey;
use rustic_core::{KnownIndexFiles, OpenStatus, Repository, RusticError};
use serde::Serialize;

use crate::config::RepositorySettings;
use crate::periodicity::Periodicity;
pub use stream::WriteOutError;

mod backend;
mod backup;
mod cancel;
mod dump;
pub mod front;
mod keys;
pub mod lock;
mod manifest;
pub mod retention;
mod seen;
mod snapshots;
mod source;
mod stage;
mod state;
mod stream;
pub mod verify;
mod web;

use crate::store::snapshot::SnapshotInfo;
pub use stage::{StagedArchive, StagedRecord, StagedRestore};

const TAG_INSTANCE: &str = "aps-instance=";
const TAG_PERIODICITY: &str = "aps-periodicity=";
const TAG_PACKAGE: &str = "aps-package=";
const TAG_VERSION: &str = "aps-version=";
const TAG_RELEASE: &str = "aps-release=";

#[derive(Debug, thiserror::Error)]
pub enum RepositoryError {
    #[error("repository {repository}: {message}")]
    Engine { repository: String, message: String },
    #[error(
        "no key file {key_file}: the repository store is not initialised; run \
         `aps-controller store init` first"
    )]
    NotInitialised { key_file: Utf8PathBuf },
    #[error("repository {repository} is already initialised (its config file exists)")]
    Exists { repository: String },
    #[error("{what} {path} already exists: store init never overwrites a key")]
    KeyExists {
        what: &'static str,
        path: Utf8PathBuf,
    },
    #[error("cannot {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        source: io::Error,
    },
    #[error(
        "key file {path} does not hold a repository master key ({message}); it is written by \
         `aps-controller store init`"
    )]
    KeyFormat { path: Utf8PathBuf, message: String },
    #[error(
        "backup of instance {instance} into repository {repository} failed, nothing was kept: {}",
        .problems.join("; ")
    )]
    Incomplete {
        instance: String,
        repository: String,
        problems: Vec<String>,
    },
    #[error("repository {repository} has no snapshot {id} of instance {instance}")]
    NoSnapshot {
        repository: String,
        instance: String,
        id: String,
    },
    /// A prefix that more than one snapshot id starts with: the candidates, to pick from.
    #[error(
        "snapshot id {id} of instance {instance} is ambiguous in repository {repository}: it \
         begins {}; give more characters of the id",
        .candidates.join(", ")
    )]
    AmbiguousSnapshot {
        repository: String,
        instance: String,
        id: String,
        candidates: Vec<String>,
    },
    #[error("restore target {path} must be an empty folder or not exist yet")]
    TargetNotEmpty { path: Utf8PathBuf },
    #[error("restoring snapshot {snapshot} of repository {repository} into {target}: {source}")]
    WriteOut {
        repository: String,
        snapshot: String,
        target: Utf8PathBuf,
        source: WriteOutError,
    },
    #[error("repository {repository} has no snapshot of instance {instance}")]
    NoSnapshots {
        repository: String,
        instance: String,
    },
    #[error("snapshot {snapshot} was not made by this controller: {reason}")]
    Untrusted { snapshot: String, reason: String },
    #[error("snapshot {snapshot} does not hold what its manifest says: {reason}")]
    Damaged { snapshot: String, reason: String },
    #[error(
        "backup of instance {instance} into repository {repository} {}: nothing was kept",
        aps_controller::cancel::Cancelled { signal: *.signal }
    )]
    Interrupted {
        instance: String,
        repository: String,
        /// The signal's number (15 for SIGTERM).
        signal: i32,
    },
    /// The bucket did not serve a request (no connection, no answer in time, or server errors
    /// after every retry of panel.toml's `retries`): nothing half-made was kept.
    #[error(
        "repository {repository} cannot be reached (panel.toml [store.s3] endpoint, retries, \
         timeout): {message}"
    )]
    Unreachable { repository: String, message: String },
    /// Another process holds the repository's lock and did not release it in `lock-wait`.
    #[error(
        "repository {repository} is locked by {holder}; waited {}s (panel.toml [store] \
         lock-wait). If no such process runs any more, the lock goes by itself after 30 \
         minutes, or remove it with `restic unlock`",
        .waited.as_secs()
    )]
    Locked {
        repository: String,
        holder: String,
        waited: Duration,
    },
    #[error(
        "restore of instance {instance} from snapshot {snapshot} {} while it was read from the \
         repository: the instance was not touched",
        aps_controller::cancel::Cancelled { signal: *.signal }
    )]
    RestoreInterrupted {
        instance: String,
        snapshot: String,
        signal: i32,
    },
}

pub use crate::engine::PackageTags;

/// What one backup of an instance holds.
#[derive(Debug, Clone)]
pub struct BackupInput<'a> {
    pub instance: &'a str,
    pub periodicity: Periodicity,
    pub package: Option<PackageTags>,
    /// URL path (`/`, `/cache`) → folder or file, as the registry has them.
    pub web_dirs: &'a BTreeMap<String, Utf8PathBuf>,
    /// Requirement id → database, dumped by the controller's dump tool.
    pub databases: &'a BTreeMap<String, Database>,
    /// The controller's manifest header of this backup (package, instance, time).
    pub header: ManifestHeader,
    /// The controller's backup key: tags the snapshot's manifest.
    pub key: &'a TagKey,
    /// The instance's account: the dump tools run as it (`None`: as the controller).
    pub account: Option<&'a Account>,
    /// How long one dump tool may run.
    pub dump_timeout: Duration,
    /// A private folder remembering each web folder's state and manifest entry after a
    /// backup, so that the next backup of an unchanged folder does not read it again for the
    /// manifest (`None`: every folder is read).
    pub cache: Option<&'a Utf8Path>,
    /// The file the package's backup-script wrote (`None`: no backup-script).
    pub script: Option<ScriptPart<'a>>,
    /// What the walks of the web folders may read (controller.toml's `[limits]`, as the
    /// controller's `walk_policy` gives them for the instance). Its `account_uid`, when
    /// `None`, is `account`'s: a hard link must belong to the instance's account.
    pub walk: aps_controller::archive::WalkPolicy,
}

/// The file a backup-script wrote, held by the snapshot as `/script-backup`. With a
/// `sufficient` script it is the whole backup (the caller then gives no web folders and no
/// databases), and its manifest part is named [`SUFFICIENT_SCRIPT_PART`], so that a restore
/// hands it to the script as the controller's restore hands a `sufficient` file.
#[derive(Debug, Clone)]
pub struct ScriptPart<'a> {
    /// A file in a private folder of the controller.
    pub file: &'a Utf8Path,
    pub size: u64,
    pub sha256: &'a str,
    pub sufficient: bool,
}

/// The manifest part of a backup-script's file, as in an archive.
const SCRIPT_PART: &str = "script-backup";
/// The manifest part of a `sufficient` backup-script's file: the whole backup.
pub const SUFFICIENT_SCRIPT_PART: &str = "sufficient-script-backup";

impl<'a> BackupInput<'a> {
    /// A backup of `instance`'s web folders and databases, its manifest tagged with `key`:
    /// without package tags, the dump tools run as the controller with the controller's
    /// default timeout, and every web folder read for the manifest (no cache). Set the other
    /// fields as needed.
    pub fn new(
        instance: &'a str,
        periodicity: Periodicity,
        web_dirs: &'a BTreeMap<String, Utf8PathBuf>,
        databases: &'a BTreeMap<String, Database>,
        header: ManifestHeader,
        key: &'a TagKey,
    ) -> Self {
        BackupInput {
            instance,
            periodicity,
            package: None,
            web_dirs,
            databases,
            header,
            key,
            account: None,
            dump_timeout: aps_controller::controller::DEFAULT_TIMEOUT,
            cache: None,
            script: None,
            walk: aps_controller::archive::WalkPolicy {
                instance: instance.to_owned(),
                ..Default::default()
            },
        }
    }
}

/// What `store init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub key_file: Utf8PathBuf,
    pub password_file: Utf8PathBuf,
}

pub struct RepositoryStore {
    settings: RepositorySettings,
    /// Kept to open the repository again for the engine's indexed states, which consume it.
    key: MasterKey,
    repo: Repository<OpenStatus>,
    /// The index files read by the backups of this store so far: a run of many backups reads
    /// each once.
    index: Mutex<KnownIndexFiles>,
    /// Instance → its newest snapshot's id, from one reading of every snapshot file (made when
    /// a backup without a remembered parent first needs it) and the backups made since.
    newest: Mutex<Option<BTreeMap<String, String>>>,
}

impl std::fmt::Debug for RepositoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn engine_err(repository: String) -> impl Fn(Box<RusticError>) -> RepositoryError {
    move |e| {
        if backend::is_unreachable(&e) {
            RepositoryError::Unreachable {
                repository: repository.clone(),
                message: e.display_log(),
            }
        } else {
            RepositoryError::Engine {
                repository: repository.clone(),
                message: e.display_log(),
            }
        }
    }
}

impl RepositoryStore {
    pub fn describe(&self) -> String {
        self.settings.location.describe()
    }

    /// The host name of this controller's snapshots (panel.toml `[store] host`, else the
    /// machine's): the only host whose snapshots it lists, restores, keeps and forgets.
    pub fn host(&self) -> String {
        self.settings
            .sharing
            .host
            .clone()
            .unwrap_or_else(lock::machine_host)
    }

    fn err(&self) -> impl Fn(Box<RusticError>) -> RepositoryError + use<> {
        engine_err(self.describe())
    }
}

/// `/` → `%2F`, `/cache` → `%2Fcache`: one file name per URL path, reversible.
fn encode_url_path(url_path: &str) -> String {
    url_path.replace('%', "%25").replace('/', "%2F")
}

fn decode_url_path(name: &str) -> String {
    name.replace("%2F", "/").replace("%25", "%")
}

/// Every error met while reading the instance; the engine would only log them.
#[derive(Debug, Clone, Default)]
struct Problems(Arc<Mutex<Vec<String>>>);

impl Problems {
    fn push(&self, problem: String) {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(problem);
    }
    /// Records `problem` unless it is recorded already.
    fn push_once(&self, problem: String) {
        let mut all = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if !all.contains(&problem) {
            all.push(problem);
        }
    }
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(|e| e.into_inner()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_paths_round_trip_as_names() {
        for url in ["/", "/cache", "/a/b", "/100%"] {
            let name = encode_url_path(url);
            assert!(!name.contains('/'), "{name}");
            assert_eq!(decode_url_path(&name), url);
        }
    }
}
