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
//!   by descriptor, before the engine reads them; a metadata walk before and after (names,
//!   types, modes, sizes, inodes, mtimes and ctimes in nanoseconds) proves that both saw the
//!   same tree, else the backup fails (the site changed while it was backed up).
//! - `get_all_snapshots` is unsorted: listings are sorted by time, then id.
//!
//! Known gap: the engine saves a streamed file's node with size 0 (the size is known only at
//! the end). rustic and `restic dump` read such a file by its content, but `restic restore`
//! writes it as an empty file. (The engine's snapshot repair does not rewrite a tree for a
//! size alone.) Fixing it needs the dump's node written with its size.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, OnceLock};
use std::time::Duration;

use aps_controller::account::Account;
use aps_controller::archive::{
    ArchiveOptions, ArchiveTag, ArchiveWriter, FORMAT_NAME, Manifest, ManifestHeader, PartInfo,
    PartKind, TAG_ALGORITHM, TagKey,
};
use aps_controller::database::{self, Database};
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, ErrorKind, KeyOptions, OpenStatus,
    ParentOptions, ReadSource, ReadSourceEntry, ReadSourceOpen, Repository, RepositoryOptions,
    RusticError, RusticResult, SnapshotOptions, StringList,
    repofile::{Metadata, Node, NodeType},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

pub use super::repository_restore::WriteOutError;
use super::repository_restore::{
    StreamError, Streamed, mode_or, mtime_seconds, stream_tree, write_out,
};
use super::repository_web::{Offered, WalkBudget, WebFile, WebWalk};
use crate::config::{RepositoryLocation, RepositorySettings};
use crate::periodicity::Periodicity;

mod backend;
mod cancel;
pub mod front;
pub mod retention;
pub mod verify;

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

/// One snapshot, as `backups` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Full id (64 hex digits); any unique prefix names it too.
    pub id: String,
    pub instance: String,
    pub periodicity: Option<Periodicity>,
    pub time: jiff::Timestamp,
    pub package: Option<PackageTags>,
    /// Files in the snapshot (web files and dumps).
    pub files: u64,
    /// Files the engine took as unchanged from the instance's previous snapshot (same size,
    /// mtime and ctime), without reading them; never a dump or the manifest.
    pub files_unchanged: u64,
    /// Bytes read from the instance for this snapshot.
    pub bytes_read: u64,
    /// Bytes this snapshot added to the repository, after deduplication and compression.
    pub bytes_added: u64,
}

/// What `store init` did.
#[derive(Debug, Clone, Serialize)]
pub struct InitReport {
    /// The folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub key_file: Utf8PathBuf,
    pub password_file: Utf8PathBuf,
}

/// What a staging restore wrote.
#[derive(Debug, Clone, Serialize)]
pub struct StagedRestore {
    pub snapshot: String,
    pub target: Utf8PathBuf,
    /// URL path → the folder (or file) under `target` holding it.
    pub web_dirs: BTreeMap<String, Utf8PathBuf>,
    /// Requirement id → the dump file under `target`.
    pub dumps: BTreeMap<String, Utf8PathBuf>,
}

/// Staging folders are `<work_parent>/.repository-restore-<pid>-<random>`.
const STAGING_PREFIX: &str = ".repository-restore-";

/// Removes the staging folders of controllers that are no longer running (killed during a
/// restore): their pid is in the name. Best effort, never through a symlink.
fn remove_stale_staging(work_parent: &Utf8Path) {
    let Ok(entries) = std::fs::read_dir(work_parent) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(rest) = name.to_str().and_then(|n| n.strip_prefix(STAGING_PREFIX)) else {
            continue;
        };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<i32>().ok()) else {
            continue;
        };
        // Signal 0 checks that the process exists; ESRCH: it does not.
        // SAFETY: kill(2) with signal 0 sends nothing; it only reads the pid's existence.
        let gone = unsafe { libc::kill(pid, 0) } != 0
            && io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH);
        if gone {
            let _ = aps_controller::archive::remove_dir_all_nofollow(&entry.path());
        }
    }
}

/// A snapshot made into a tagged archive for the controller's restore ([`RepositoryStore::stage_archive`]);
/// its private folder is removed when this is dropped.
pub struct StagedArchive {
    _dir: tempfile::TempDir,
    /// The uncompressed archive, tagged with the controller's key; or, for a snapshot of a
    /// `sufficient` backup-script, the script's file itself (see `script_file`).
    pub archive: Utf8PathBuf,
    pub snapshot: SnapshotInfo,
    /// For a snapshot of a `sufficient` backup-script: the manifest's header and the file's
    /// size and SHA-256, checked against the tagged manifest. The controller's restore knows
    /// such a file by a record of its SHA-256, which the caller writes.
    pub script_file: Option<(ManifestHeader, u64, String)>,
    /// The record written for `script_file`, removed with the staged file.
    pub record: Option<StagedRecord>,
    /// The archive as its writer sealed it, for the controller's restore without a second
    /// verification pass (`None` for a script's file).
    pub written: Option<aps_controller::archive::ArchiveReader>,
}

impl std::fmt::Debug for StagedArchive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StagedArchive")
            .field("archive", &self.archive)
            .field("snapshot", &self.snapshot)
            .field("script_file", &self.script_file)
            .finish_non_exhaustive()
    }
}

/// A backup record written only for one staged file: removed when dropped.
#[derive(Debug)]
pub struct StagedRecord {
    pub records_dir: Utf8PathBuf,
    pub sha256: String,
}

impl Drop for StagedRecord {
    fn drop(&mut self) {
        let _ = aps_controller::operation::record::BackupRecord::remove(
            &self.records_dir,
            &self.sha256,
        );
    }
}

pub struct RepositoryStore {
    settings: RepositorySettings,
    /// Kept to open the repository again for the engine's indexed states, which consume it.
    key: MasterKey,
    repo: Repository<OpenStatus>,
}

impl std::fmt::Debug for RepositoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RepositoryStore")
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

fn engine_err(repository: String) -> impl Fn(Box<RusticError>) -> RepositoryError {
    move |e| RepositoryError::Engine {
        repository: repository.clone(),
        message: e.display_log(),
    }
}

fn repository_options() -> RepositoryOptions {
    // A local repository needs no cache, and root's home must not collect one per host.
    RepositoryOptions::default().no_cache(true)
}

/// A local repository is the controller's alone, wherever it is: everything written into it
/// from now on (by this handle and by the engine) is made 0700/0600 through the umask, and
/// the folder itself is closed (0700) when it is looser, which also closes what an older
/// version left 0755/0644 inside. Encrypted packs still tell their sizes and names.
fn keep_private(location: &RepositoryLocation) -> Result<(), RepositoryError> {
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

fn unopened(location: &RepositoryLocation) -> Result<Repository<()>, RepositoryError> {
    keep_private(location)?;
    let backends = backend::backends(location)?;
    Repository::new(&repository_options(), &backends).map_err(engine_err(location.describe()))
}

/// Writes `bytes` to a new file of mode 0600; never replaces one.
fn write_secret(path: &Utf8Path, what: &'static str, bytes: &[u8]) -> Result<(), RepositoryError> {
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

fn random_password() -> Result<String, RepositoryError> {
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
        })
    }

    /// Another handle on the repository (the master key: no key derivation).
    fn reopen(&self) -> Result<Repository<OpenStatus>, RepositoryError> {
        unopened(&self.settings.location)?
            .open(&Credentials::Masterkey(self.key.clone()))
            .map_err(self.err())
    }

    pub fn describe(&self) -> String {
        self.settings.location.describe()
    }

    fn err(&self) -> impl Fn(Box<RusticError>) -> RepositoryError + use<> {
        engine_err(self.describe())
    }

    /// Backs `input` up as one snapshot. Any file that could not be read, any walk error, any
    /// dump that failed and a web folder that changed while it was backed up fail the whole
    /// backup, and its snapshot is removed again.
    pub fn backup(&self, input: &BackupInput<'_>) -> Result<SnapshotInfo, RepositoryError> {
        let problems = Problems::default();
        let roots = web_roots(input.web_dirs);
        let mut policy = input.walk.clone();
        if policy.account_uid.is_none() {
            policy.account_uid = input.account.map(|a| a.uid);
        }
        // The engine chunks and hashes every byte of a sparse file: the manifest describes it
        // as the regular file the engine stores (and a restore streams back), and its size is
        // what it costs.
        policy.holes_as_data = true;
        // The bounds first, on every web folder together, by the walk that takes their state
        // (metadata only): nothing is read, dumped or written when they are crossed. Sizes,
        // not data, count here: the engine reads a sparse file's holes as zeros.
        let mut counted = aps_controller::archive::WalkCount::default();
        let mut before = Vec::new();
        for (_, _, dir) in &roots {
            let state = tree_state(dir, Some((&policy, &mut counted)))
                .map_err(|e| self.incomplete(input.instance, vec![e.message(dir)]))?;
            before.push(state);
        }
        // The manifest's web parts, by the archive's own code (by descriptor, as an archive
        // backup reads them, under the same bounds).
        let mut manifest_count = aps_controller::archive::WalkCount::default();
        let mut web_parts = Vec::new();
        let cached = input
            .cache
            .map(|dir| PartCache::load(dir, input.instance))
            .unwrap_or_default();
        let mut cache = PartCache::default();
        for (n, ((_, url, dir), state)) in roots.iter().zip(&before).enumerate() {
            // "2": a sparse file is described as a regular file since then; an entry cached
            // before (described as an archive's sparse entry) is not taken.
            let key = format!("2 {url} {dir}");
            let state_hex = hex::encode(state);
            // An unchanged tree (every entry's inode, size, mtime and ctime to the
            // nanosecond, and every name) has the part it had: it is not read again.
            let stats = match cached.parts.get(&key) {
                Some(c) if c.state == state_hex => c.stats.clone(),
                _ => {
                    let t = aps_controller::archive::capture_tree_counting(
                        dir,
                        io::sink(),
                        &policy,
                        &mut manifest_count,
                    )
                    .map_err(|e| self.incomplete(input.instance, vec![e.to_string()]))?;
                    CachedStats {
                        size: t.bytes,
                        sha256: t.sha256,
                        files: t.files,
                        dirs: t.dirs,
                        symlinks: t.symlinks,
                    }
                }
            };
            cache.parts.insert(
                key,
                CachedPart {
                    state: state_hex,
                    stats: stats.clone(),
                },
            );
            let part = format!("web/{n}");
            web_parts.push(PartInfo {
                entry: format!("{part}/"),
                name: part,
                kind: PartKind::WebDir {
                    mapping_url: (*url).clone(),
                },
                size: stats.size,
                sha256: stats.sha256,
                file_count: Some(stats.files),
                dir_count: Some(stats.dirs),
                symlink_count: Some(stats.symlinks),
            });
        }
        let ledger = Arc::new(Ledger::new(input.databases.len()));
        let manifest = Arc::new(ManifestMaker {
            ledger: Arc::clone(&ledger),
            header: input.header.clone(),
            databases: input
                .databases
                .iter()
                .map(|(id, db)| (id.clone(), db.kind.as_str().to_owned()))
                .collect(),
            web_parts,
            script_part: input.script.as_ref().map(|s| {
                let name = if s.sufficient {
                    SUFFICIENT_SCRIPT_PART
                } else {
                    SCRIPT_PART
                };
                PartInfo::file(name, PartKind::ScriptBackup, s.size, s.sha256.to_owned())
            }),
            key: input.key.clone(),
            made: OnceLock::new(),
        });
        let budget = WalkBudget::new(policy);
        let source = InstanceSource::new(input, &roots, &problems, &ledger, &manifest, budget)
            .map_err(self.err())?;
        let offered = source.offered.clone();
        let stop = cancel::token();
        let source = cancel::Cancellable::new(source, stop.clone(), &problems);

        let mut snap = SnapshotOptions::default()
            .to_snapshot()
            .map_err(self.err())?;
        snap.label = input.instance.to_owned();
        let mut tags = StringList::default();
        tags.add(format!("{TAG_INSTANCE}{}", input.instance));
        tags.add(format!("{TAG_PERIODICITY}{}", input.periodicity));
        if let Some(p) = &input.package {
            tags.add(format!("{TAG_PACKAGE}{}", p.id));
            tags.add(format!("{TAG_VERSION}{}", p.version));
            tags.add(format!("{TAG_RELEASE}{}", p.release));
        }
        snap.tags = tags;
        // The parent (the newest snapshot of this instance, by label) lets the engine skip
        // unchanged web files; streamed nodes never match it (see `InstanceSource::entries`).
        let opts = BackupOptions::default().parent_opts(ParentOptions::default());
        let repo = self.reopen()?.to_indexed_ids().map_err(self.err())?;
        let result = repo.archive(&opts, &source, snap, &[PathBuf::from("/")]);
        drop(source);

        if let Some(signal) = stop.signal() {
            if let Ok(snap) = &result {
                // Saved by the engine after the stop, from a source cut short: not a backup.
                let _ = self.repo.delete_snapshots(&[snap.id]);
            }
            return Err(RepositoryError::Interrupted {
                instance: input.instance.to_owned(),
                repository: self.describe(),
                signal,
            });
        }
        let snap = match result {
            Ok(snap) => snap,
            Err(e) => {
                let mut problems = problems.take();
                problems.push(e.display_log());
                return Err(self.incomplete(input.instance, problems));
            }
        };
        let mut problems = problems.take();
        let saved = snap.summary.as_ref().map_or(0, |s| s.total_files_processed);
        let offered = offered.get();
        if problems.is_empty() && saved != offered {
            problems.push(format!(
                "the snapshot holds {saved} files where {offered} were offered"
            ));
        }
        if problems.is_empty() && manifest.made.get().is_none() {
            problems.push("the snapshot's manifest was not written".to_owned());
        }
        for ((_, url, dir), state) in roots.iter().zip(&before) {
            match tree_state(dir, None) {
                Ok(after) if after == *state => {}
                Ok(_) => problems.push(format!(
                    "web folder {url} ({dir}) changed while it was backed up (a file, folder or \
                     link was written, added, removed or renamed); run the backup again"
                )),
                Err(e) => problems.push(e.message(dir)),
            }
        }
        if !problems.is_empty() {
            if let Err(e) = self.repo.delete_snapshots(&[snap.id]) {
                problems.push(format!(
                    "removing the incomplete snapshot {} failed too: {}",
                    snap.id,
                    e.display_log()
                ));
            }
            return Err(self.incomplete(input.instance, problems));
        }
        if let Some(dir) = input.cache {
            // Only a speed-up: a cache that cannot be written makes the next backup read all.
            let _ = cache.save(dir, input.instance);
        }
        Ok(info_of(&snap).expect("a snapshot made here carries the instance tag"))
    }

    fn incomplete(&self, instance: &str, problems: Vec<String>) -> RepositoryError {
        RepositoryError::Incomplete {
            instance: instance.to_owned(),
            repository: self.describe(),
            problems,
        }
    }

    /// The snapshots of `instance` (or of every instance), older to newer.
    pub fn snapshots(&self, instance: Option<&str>) -> Result<Vec<SnapshotInfo>, RepositoryError> {
        let mut all: Vec<SnapshotInfo> = self
            .repo
            .get_all_snapshots()
            .map_err(self.err())?
            .iter()
            .filter_map(info_of)
            .filter(|s| instance.is_none_or(|i| s.instance == i))
            .collect();
        // The engine lists in no particular order.
        all.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// The newest snapshot of `instance`.
    pub fn latest(&self, instance: &str) -> Result<Option<SnapshotInfo>, RepositoryError> {
        Ok(self.snapshots(Some(instance))?.pop())
    }

    /// Snapshot `id` (or a unique prefix of it) of `instance`, or with `None` its newest.
    pub fn snapshot(
        &self,
        instance: &str,
        id: Option<&str>,
    ) -> Result<SnapshotInfo, RepositoryError> {
        match id {
            Some(id) => self.find(instance, id),
            None => self
                .latest(instance)?
                .ok_or_else(|| RepositoryError::NoSnapshots {
                    repository: self.describe(),
                    instance: instance.to_owned(),
                }),
        }
    }

    fn find(&self, instance: &str, id: &str) -> Result<SnapshotInfo, RepositoryError> {
        let mut found: Vec<SnapshotInfo> = self
            .snapshots(Some(instance))?
            .into_iter()
            .filter(|s| !id.is_empty() && s.id.starts_with(id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(RepositoryError::NoSnapshot {
                repository: self.describe(),
                instance: instance.to_owned(),
                id: id.to_owned(),
            }),
            _ => Err(RepositoryError::AmbiguousSnapshot {
                repository: self.describe(),
                instance: instance.to_owned(),
                id: id.to_owned(),
                candidates: found.iter().map(|s| s.id[..8].to_owned()).collect(),
            }),
        }
    }

    /// Removes one snapshot of `instance` (its data goes at the next prune).
    pub fn forget(&self, instance: &str, id: &str) -> Result<(), RepositoryError> {
        let snap = self.find(instance, id)?;
        let full: rustic_core::Id = snap.id.parse().map_err(self.err())?;
        self.repo
            .delete_snapshots(&[rustic_core::repofile::SnapshotId::from(full)])
            .map_err(self.err())
    }

    /// Restores snapshot `id` of `instance` into `target` (created; must be empty): a staging
    /// copy, not the live instance. Files get the backed-up modes and times but not their
    /// owners (the target is the controller's, not a tenant's).
    pub fn restore_to_staging(
        &self,
        instance: &str,
        id: &str,
        target: &Utf8Path,
    ) -> Result<StagedRestore, RepositoryError> {
        let snap = self.find(instance, id)?;
        match std::fs::read_dir(target) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    return Err(RepositoryError::TargetNotEmpty {
                        path: target.to_owned(),
                    });
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(RepositoryError::Io {
                    action: "read the restore target",
                    path: target.to_owned(),
                    source,
                });
            }
        }
        let repo = self.reopen()?.to_indexed().map_err(self.err())?;
        let node = repo
            .node_from_snapshot_path(&snap.id, |_| true)
            .map_err(self.err())?;
        match std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
            .create(target)
        {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(source) => {
                return Err(RepositoryError::Io {
                    action: "create the restore target",
                    path: target.to_owned(),
                    source,
                });
            }
        }
        // Not the engine's restore: its memory grows with the data and it panics on a
        // damaged pack (repository_restore explains).
        write_out(&repo, &node, target).map_err(|e| match e {
            StreamError::Cancelled(signal) => RepositoryError::RestoreInterrupted {
                instance: instance.to_owned(),
                snapshot: snap.id[..8].to_owned(),
                signal,
            },
            StreamError::Read(source) | StreamError::Sink(source) => RepositoryError::WriteOut {
                repository: self.describe(),
                snapshot: snap.id.clone(),
                target: target.to_owned(),
                source,
            },
        })?;

        let mut staged = StagedRestore {
            snapshot: snap.id.clone(),
            target: target.to_owned(),
            web_dirs: BTreeMap::new(),
            dumps: BTreeMap::new(),
        };
        let list = |dir: &str| -> Vec<String> {
            std::fs::read_dir(target.join(dir))
                .map(|it| {
                    it.filter_map(|e| e.ok()?.file_name().into_string().ok())
                        .collect()
                })
                .unwrap_or_default()
        };
        for name in list("web") {
            staged
                .web_dirs
                .insert(decode_url_path(&name), target.join("web").join(&name));
        }
        for name in list("databases") {
            if let Some(id) = name.strip_suffix(".sql") {
                staged
                    .dumps
                    .insert(id.to_owned(), target.join("databases").join(&name));
            }
        }
        Ok(staged)
    }

    /// Makes snapshot `snapshot` of `instance` into a tagged archive the controller's restore
    /// takes, in a private folder made under `work_parent` (mode 0700). Its `manifest.tag` is
    /// checked against its `manifest.json` with `key` first (refused as
    /// [`RepositoryError::Untrusted`] when missing or wrong); then its dumps, web folders and
    /// script file are streamed from the repository, in the manifest's order, by the archive
    /// writer into an uncompressed archive tagged with `key`, without a staged copy on disk.
    /// Every part must come out with the size, SHA-256 and counts the manifest holds
    /// ([`RepositoryError::Damaged`] otherwise). A `sufficient` script's snapshot becomes the
    /// script's file itself (`script_file`). The folder goes when the result is dropped.
    pub fn stage_archive(
        &self,
        instance: &str,
        snapshot: &SnapshotInfo,
        work_parent: &Utf8Path,
        key: &TagKey,
    ) -> Result<StagedArchive, RepositoryError> {
        let io_err = |action: &'static str, path: &Utf8Path| {
            let path = path.to_owned();
            move |source| RepositoryError::Io {
                action,
                path,
                source,
            }
        };
        remove_stale_staging(work_parent);
        let dir = tempfile::Builder::new()
            .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir_in(work_parent)
            .map_err(io_err("create a staging folder in", work_parent))?;
        let root = Utf8PathBuf::try_from(dir.path().to_path_buf())
            .expect("the staging folder's path is UTF-8, as its parent's");
        let short = &snapshot.id[..8];
        let untrusted = |reason: String| RepositoryError::Untrusted {
            snapshot: short.to_owned(),
            reason,
        };
        let damaged = |reason: String| RepositoryError::Damaged {
            snapshot: short.to_owned(),
            reason,
        };
        let write_out = |target: &Utf8Path| {
            let target = target.to_owned();
            let snapshot = snapshot.id.clone();
            let repository = self.describe();
            move |source| RepositoryError::WriteOut {
                repository,
                snapshot,
                target,
                source,
            }
        };
        let interrupted = |signal: i32| RepositoryError::RestoreInterrupted {
            instance: instance.to_owned(),
            snapshot: short.to_owned(),
            signal,
        };
        let repo = self.reopen()?.to_indexed().map_err(self.err())?;
        let top = repo
            .node_from_snapshot_path(&snapshot.id, |_| true)
            .map_err(self.err())?;
        let top_tree = top
            .subtree
            .ok_or_else(|| damaged("its root is not a folder".to_owned()))?;
        let node = |path: &str| repo.node_from_path(top_tree, Path::new(path));
        // The manifest and its tag are small; anything larger is not ours.
        let small = |name: &str| -> Result<Vec<u8>, String> {
            let n = node(name).map_err(|e| e.display_log())?;
            if n.meta.size > 16 << 20 {
                return Err(format!("{} bytes", n.meta.size));
            }
            let mut bytes = Vec::new();
            repo.dump(&n, &mut bytes).map_err(|e| e.display_log())?;
            Ok(bytes)
        };
        let manifest_bytes = small("manifest.json")
            .map_err(|e| untrusted(format!("it has no readable manifest.json ({e})")))?;
        let tag_bytes = small("manifest.tag")
            .map_err(|e| untrusted(format!("it has no readable manifest.tag ({e})")))?;
        let tag: ArchiveTag = serde_json::from_slice(&tag_bytes)
            .map_err(|e| untrusted(format!("its manifest.tag is not a tag ({e})")))?;
        let valid = tag.algorithm == TAG_ALGORITHM
            && hex::decode(&tag.tag).is_ok_and(|t| key.check_archive_tag(&manifest_bytes, &t));
        if !valid {
            return Err(untrusted(if tag.key_id != key.id() {
                format!(
                    "its tag was made with key {} but this controller's key is {}",
                    tag.key_id,
                    key.id()
                )
            } else {
                "its tag does not match its manifest (altered after it was made)".to_owned()
            }));
        }
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes)
            .map_err(|e| damaged(format!("its manifest.json cannot be read: {e}")))?;
        if manifest.format != FORMAT_NAME {
            return Err(damaged(format!(
                "its manifest's format is {:?}",
                manifest.format
            )));
        }
        let part_node = |part: &PartInfo| {
            let path = match &part.kind {
                PartKind::DatabaseDump { db_id, .. } => format!("databases/{db_id}.sql"),
                PartKind::WebDir { mapping_url } => format!("web/{}", encode_url_path(mapping_url)),
                PartKind::ScriptBackup => SCRIPT_PART.to_owned(),
            };
            node(&path).map_err(|e| {
                damaged(format!(
                    "part {} ({path}) is missing: {}",
                    part.name,
                    e.display_log()
                ))
            })
        };

        if let Some(part) = manifest
            .parts
            .iter()
            .find(|p| p.name == SUFFICIENT_SCRIPT_PART)
        {
            // A `sufficient` script's file is the whole backup: handed over as it is.
            if manifest.parts.len() != 1 || part.kind != PartKind::ScriptBackup {
                return Err(damaged(
                    "its manifest names a sufficient backup-script's file beside other parts"
                        .to_owned(),
                ));
            }
            let file_node = part_node(part)?;
            let file = root.join(SCRIPT_PART);
            let mut out = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&file)
                .map_err(io_err("create", &file))?;
            let mut sha = Sha256::new();
            let mut size = 0u64;
            let copied = stream_tree(&repo, &file_node, |item| match item {
                Streamed::File { content, .. } => {
                    let mut buf = vec![0u8; 256 * 1024];
                    loop {
                        let n = content.read(&mut buf)?;
                        if n == 0 {
                            return Ok(());
                        }
                        sha.update(&buf[..n]);
                        size += n as u64;
                        out.write_all(&buf[..n])?;
                    }
                }
                _ => Ok(()),
            });
            match copied {
                Ok(()) => {}
                Err(StreamError::Cancelled(signal)) => return Err(interrupted(signal)),
                Err(StreamError::Read(e)) => return Err(write_out(&file)(e)),
                Err(StreamError::Sink(e)) => {
                    return Err(write_out(&file)(WriteOutError::Write {
                        path: file.to_string(),
                        source: e,
                    }));
                }
            }
            out.sync_all().map_err(io_err("sync", &file))?;
            let sha256 = hex::encode(sha.finalize());
            if size != part.size || sha256 != part.sha256 {
                return Err(damaged(format!(
                    "its backup-script's file restored as {size} bytes with SHA-256 {sha256}, \
                     where the manifest says {} bytes with SHA-256 {}",
                    part.size, part.sha256
                )));
            }
            return Ok(StagedArchive {
                _dir: dir,
                archive: file,
                snapshot: snapshot.clone(),
                script_file: Some((manifest.header, size, sha256)),
                record: None,
                written: None,
            });
        }

        let archive = root.join("snapshot.aps.tar");
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(&archive)
            .map_err(io_err("create", &archive))?;
        // A failure writing the archive (a full disk) is the staging folder's; anything else
        // the archive writer says is about the snapshot's content.
        let arch = |e: aps_controller::archive::ArchiveError| match e {
            aps_controller::archive::ArchiveError::WriteArchive { source, .. } => {
                write_out(&archive)(WriteOutError::Write {
                    path: archive.to_string(),
                    source,
                })
            }
            e => damaged(e.to_string()),
        };
        let streamed = |e: StreamError<aps_controller::archive::ArchiveError>| match e {
            StreamError::Cancelled(signal) => interrupted(signal),
            StreamError::Read(e) => write_out(&archive)(e),
            StreamError::Sink(e) => arch(e),
        };
        // Compressed: runs of zeros (a sparse file's holes, which the engine keeps as one
        // deduplicated chunk) must not take their apparent size in the state folder.
        let options = ArchiveOptions {
            zstd_workers: 1,
            ..ArchiveOptions::default()
        };
        let mut writer =
            ArchiveWriter::create(&file, &options, manifest.header.clone()).map_err(arch)?;
        writer.tag_with(key.clone());
        for part in &manifest.parts {
            let source = part_node(part)?;
            match &part.kind {
                PartKind::WebDir { mapping_url } => {
                    if source.node_type != NodeType::Dir {
                        return Err(damaged(format!("part {} is not a folder", part.name)));
                    }
                    let mut web = writer
                        .begin_web_part(
                            mapping_url,
                            mode_or(&source, 0o755),
                            mtime_seconds(&source),
                        )
                        .map_err(arch)?;
                    stream_tree(&repo, &source, |item| {
                        let (rel, node) = item.entry();
                        let (rel, mode, mtime) = (
                            rel.as_os_str().as_bytes(),
                            mode_or(node, 0o600),
                            mtime_seconds(node),
                        );
                        match item {
                            Streamed::Dir { .. } => web.dir(rel, mode, mtime),
                            Streamed::File { content, .. } => {
                                web.file(rel, mode, mtime, node.meta.size, content)
                            }
                            Streamed::Symlink { .. } => web.symlink(
                                rel,
                                mode,
                                mtime,
                                node.node_type.to_link().as_os_str().as_bytes(),
                            ),
                        }
                    })
                    .map_err(streamed)?;
                    web.finish().map_err(arch)?;
                }
                PartKind::DatabaseDump { .. } | PartKind::ScriptBackup => {
                    if source.node_type != NodeType::File {
                        return Err(damaged(format!("part {} is not a file", part.name)));
                    }
                    let shown = Utf8PathBuf::from(format!("snapshot {short}: part {}", part.name));
                    stream_tree(&repo, &source, |item| match item {
                        Streamed::File { content, .. } => writer
                            .add_stream_part(
                                &part.name,
                                part.kind.clone(),
                                part.size,
                                content,
                                &shown,
                            )
                            .map(|_| ()),
                        _ => Ok(()),
                    })
                    .map_err(streamed)?;
                }
            }
        }
        let (written, seal, _) = writer.finish_sealed().map_err(arch)?;
        file.sync_all().map_err(io_err("sync", &archive))?;
        for (made, listed) in written.parts.iter().zip(&manifest.parts) {
            if made != listed {
                return Err(damaged(format!(
                    "part {} restored as {} bytes with SHA-256 {}, where the manifest says {} \
                     bytes with SHA-256 {}",
                    listed.name, made.size, made.sha256, listed.size, listed.sha256
                )));
            }
        }
        if written.parts.len() != manifest.parts.len() || written.header != manifest.header {
            return Err(damaged(
                "its parts or header differ from the manifest".to_owned(),
            ));
        }
        let reader = aps_controller::archive::ArchiveReader::written(&archive, written, seal)
            .map_err(|e| damaged(e.to_string()))?;
        Ok(StagedArchive {
            _dir: dir,
            archive,
            snapshot: snapshot.clone(),
            script_file: None,
            record: None,
            written: Some(reader),
        })
    }

    /// The engine's structure check (indexes, packs, trees); `read_data` also reads and
    /// verifies every pack.
    pub fn check(&self, read_data: bool) -> Result<(), RepositoryError> {
        let opts = CheckOptions::default().read_data(read_data);
        let results = self.repo.check(opts).map_err(self.err())?;
        results.is_ok().map_err(self.err())
    }
}

fn info_of(snap: &SnapshotFile) -> Option<SnapshotInfo> {
    let tag = |prefix: &str| {
        snap.tags
            .iter()
            .find_map(|t| t.strip_prefix(prefix))
            .map(str::to_owned)
    };
    let instance = tag(TAG_INSTANCE)?;
    let package = tag(TAG_PACKAGE).map(|id| PackageTags {
        id,
        version: tag(TAG_VERSION).unwrap_or_default(),
        release: tag(TAG_RELEASE).unwrap_or_default(),
    });
    let summary = snap.summary.as_ref();
    Some(SnapshotInfo {
        // In full: the id's Display is its 8-digit short form.
        id: String::from(&*snap.id.to_hex()),
        instance,
        periodicity: tag(TAG_PERIODICITY).and_then(|p| p.parse().ok()),
        time: snap.time.timestamp(),
        package,
        files: summary.map_or(0, |s| s.total_files_processed),
        files_unchanged: summary.map_or(0, |s| s.files_unmodified),
        bytes_read: summary.map_or(0, |s| s.total_bytes_processed),
        bytes_added: summary.map_or(0, |s| s.data_added_packed),
    })
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

/// The web folders a snapshot holds, as (snapshot name, URL path, folder), sorted by the
/// snapshot name (the order the snapshot's tree needs): every mapping's folder but those
/// inside another one (stored once, with the outer one, as the archive store does).
fn web_roots(dirs: &BTreeMap<String, Utf8PathBuf>) -> Vec<(String, &String, &Utf8PathBuf)> {
    let mut roots: Vec<_> = dirs
        .iter()
        .filter(|(url, dir)| {
            !dirs.iter().any(|(other_url, other)| {
                other_url != *url && dir.starts_with(other) && *dir != other
            })
        })
        .map(|(url, dir)| (encode_url_path(url), url, dir))
        .collect();
    roots.sort();
    roots
}

/// Why [`tree_state`] stopped.
enum StateError {
    Io(io::Error),
    /// A bound of `[limits]` crossed.
    Limit(aps_controller::archive::ArchiveError),
}

impl StateError {
    fn message(&self, dir: &Utf8Path) -> String {
        match self {
            StateError::Io(e) => format!("web folder {dir}: {e}"),
            StateError::Limit(e) => e.to_string(),
        }
    }
}

impl From<io::Error> for StateError {
    fn from(e: io::Error) -> Self {
        StateError::Io(e)
    }
}

impl From<rustix::io::Errno> for StateError {
    fn from(e: rustix::io::Errno) -> Self {
        StateError::Io(e.into())
    }
}

/// A walk's bounds and what it has counted so far.
type Bounds<'a> = Option<(
    &'a aps_controller::archive::WalkPolicy,
    &'a mut aps_controller::archive::WalkCount,
)>;

/// A digest of everything about the tree at `dir` that a change to it would change: for each
/// entry (walked by descriptor, no symlink followed) its path, type, mode, inode, size,
/// mtime and ctime in nanoseconds, and a link's target. Writing a file changes its ctime;
/// adding, removing or renaming an entry changes its folder's. With `bounds`, every folder,
/// file and symlink counts toward `max-files` and every file's size toward
/// `max-instance-size`, checked as the walk goes.
fn tree_state(dir: &Utf8Path, mut bounds: Bounds<'_>) -> Result<[u8; 32], StateError> {
    use rustix::fs::{AtFlags, Mode, OFlags};
    // The stat fields' types differ between architectures: the casts stay.
    #[allow(clippy::unnecessary_cast)]
    fn count(
        bounds: &mut Bounds<'_>,
        path: &Utf8Path,
        st: &rustix::fs::Stat,
    ) -> Result<(), StateError> {
        let Some((policy, count)) = bounds else {
            return Ok(());
        };
        match rustix::fs::FileType::from_raw_mode(st.st_mode) {
            rustix::fs::FileType::RegularFile => {
                policy.count_entry(count, path).map_err(StateError::Limit)?;
                policy
                    .count_bytes(count, st.st_size as u64, path)
                    .map_err(StateError::Limit)
            }
            rustix::fs::FileType::Directory | rustix::fs::FileType::Symlink => {
                policy.count_entry(count, path).map_err(StateError::Limit)
            }
            _ => Ok(()),
        }
    }
    // The stat fields' types differ between architectures: the casts stay.
    #[allow(clippy::unnecessary_cast)]
    fn record(sha: &mut Sha256, rel: &[u8], st: &rustix::fs::Stat) {
        sha.update((rel.len() as u64).to_be_bytes());
        sha.update(rel);
        for v in [
            u64::from(st.st_mode),
            st.st_ino,
            st.st_size as u64,
            st.st_mtime as u64,
            st.st_mtime_nsec as u64,
            st.st_ctime as u64,
            st.st_ctime_nsec as u64,
        ] {
            sha.update(v.to_be_bytes());
        }
    }
    fn walk(
        fd: std::os::fd::BorrowedFd<'_>,
        root: &Utf8Path,
        rel: &[u8],
        sha: &mut Sha256,
        bounds: &mut Bounds<'_>,
    ) -> Result<(), StateError> {
        // Popped in ascending order.
        for name in aps_controller::archive::pending_names(fd)?
            .into_iter()
            .rev()
        {
            let mut path = rel.to_vec();
            if !path.is_empty() {
                path.push(b'/');
            }
            path.extend_from_slice(&name);
            let os = std::ffi::OsStr::from_bytes(&name);
            let st = rustix::fs::statat(fd, os, AtFlags::SYMLINK_NOFOLLOW)?;
            count(
                bounds,
                &root.join(String::from_utf8_lossy(&path).as_ref()),
                &st,
            )?;
            record(sha, &path, &st);
            match rustix::fs::FileType::from_raw_mode(st.st_mode) {
                rustix::fs::FileType::Symlink => {
                    let target = rustix::fs::readlinkat(fd, os, Vec::new())?;
                    sha.update(target.as_bytes());
                }
                rustix::fs::FileType::Directory => {
                    let sub = rustix::fs::openat(
                        fd,
                        os,
                        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                        Mode::empty(),
                    )?;
                    walk(sub.as_fd(), root, &path, sha, bounds)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
    let fd = aps_controller::archive::open_dir_nofollow(dir.as_std_path())?;
    let mut sha = Sha256::new();
    let st = rustix::fs::fstat(&fd)?;
    count(&mut bounds, dir, &st)?;
    record(&mut sha, b"", &st);
    walk(fd.as_fd(), dir, b"", &mut sha, &mut bounds)?;
    Ok(sha.finalize().into())
}

/// The manifest entries of an instance's web folders at its last backup, each with the
/// [`tree_state`] it was computed for, keyed by URL path and folder.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
struct PartCache {
    parts: BTreeMap<String, CachedPart>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CachedPart {
    state: String,
    stats: CachedStats,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct CachedStats {
    size: u64,
    sha256: String,
    files: u64,
    dirs: u64,
    symlinks: u64,
}

impl PartCache {
    /// The cache of `instance`; empty when there is none or it cannot be read.
    fn load(dir: &Utf8Path, instance: &str) -> Self {
        std::fs::read(dir.join(format!("{instance}.json")))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or_default()
    }

    /// Written to a temporary file (0600, in a 0700 folder) and renamed into place.
    fn save(&self, dir: &Utf8Path, instance: &str) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        std::fs::set_permissions(dir, std::os::unix::fs::PermissionsExt::from_mode(0o700))?;
        let mut tmp = tempfile::Builder::new()
            .prefix(".cache-")
            .tempfile_in(dir)?;
        tmp.write_all(&serde_json::to_vec(self).expect("a cache serialises"))?;
        tmp.persist(dir.join(format!("{instance}.json")))
            .map_err(|e| e.error)?;
        Ok(())
    }
}

/// The dumps of one backup: how many are still running, and the size and SHA-256 of each
/// that completed. The manifest waits for all of them.
struct Ledger {
    state: Mutex<LedgerState>,
    done: Condvar,
}

struct LedgerState {
    pending: usize,
    dumps: BTreeMap<String, (u64, String)>,
    failed: Vec<String>,
}

impl Ledger {
    fn new(pending: usize) -> Self {
        Ledger {
            state: Mutex::new(LedgerState {
                pending,
                dumps: BTreeMap::new(),
                failed: Vec::new(),
            }),
            done: Condvar::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, LedgerState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn finish(&self, id: &str, result: Result<(u64, String), String>) {
        let mut state = self.lock();
        state.pending = state.pending.saturating_sub(1);
        match result {
            Ok(done) => {
                state.dumps.insert(id.to_owned(), done);
            }
            Err(e) => state.failed.push(e),
        }
        self.done.notify_all();
    }
}

/// One dump's place in the [`Ledger`]: reported exactly once, as failed if it is dropped
/// before it finished (the engine gave up on it).
struct DumpSlot {
    ledger: Arc<Ledger>,
    id: String,
    reported: bool,
}

impl DumpSlot {
    fn finish(&mut self, result: Result<(u64, String), String>) {
        if !self.reported {
            self.reported = true;
            self.ledger.finish(&self.id, result);
        }
    }
}

impl Drop for DumpSlot {
    fn drop(&mut self) {
        self.finish(Err(format!(
            "the dump of database {} was abandoned",
            self.id
        )));
    }
}

/// `manifest.json` and `manifest.tag` of a snapshot, made once every dump has completed (the
/// engine opens them after the dumps: they sort after `/databases`).
struct ManifestMaker {
    ledger: Arc<Ledger>,
    header: ManifestHeader,
    /// Requirement id → `mysql` / `postgresql`.
    databases: BTreeMap<String, String>,
    web_parts: Vec<PartInfo>,
    /// The backup-script's file, last as in an archive.
    script_part: Option<PartInfo>,
    key: TagKey,
    made: OnceLock<(Vec<u8>, Vec<u8>)>,
}

impl ManifestMaker {
    fn get(&self) -> Result<&(Vec<u8>, Vec<u8>), String> {
        if let Some(made) = self.made.get() {
            return Ok(made);
        }
        let mut state = self.ledger.lock();
        while state.pending > 0 {
            state = self
                .ledger
                .done
                .wait(state)
                .unwrap_or_else(|e| e.into_inner());
        }
        if !state.failed.is_empty() {
            return Err(format!(
                "no manifest without every dump: {}",
                state.failed.join("; ")
            ));
        }
        // As an archive backup lists them: the dumps, then the web folders.
        let mut parts = Vec::new();
        for (id, kind) in &self.databases {
            let Some((size, sha256)) = state.dumps.get(id) else {
                return Err(format!("the dump of database {id} did not complete"));
            };
            let kind = PartKind::DatabaseDump {
                db_id: id.clone(),
                kind: kind.clone(),
                row_counts: None,
            };
            let name = aps_controller::operation::dump_part_name(id);
            parts.push(PartInfo::file(&name, kind, *size, sha256.clone()));
        }
        parts.extend(self.web_parts.iter().cloned());
        parts.extend(self.script_part.iter().cloned());
        drop(state);
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            header: self.header.clone(),
            parts,
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("a manifest serialises");
        let tag = serde_json::to_vec_pretty(&ArchiveTag::new(&self.key, &json))
            .expect("a tag serialises");
        Ok(self.made.get_or_init(|| (json, tag)))
    }
}

/// The instance as one source: its dumps, the manifest, then its web folders, in path order
/// (the engine builds trees from a sorted stream). Web folders are walked by descriptor
/// ([`super::repository_web`]), never through a symlink: the engine's own local source walks
/// and opens by path, which a tenant swapping a folder for a symlink could redirect.
struct InstanceSource {
    dumps: Vec<(String, Database)>,
    /// The walk of each web folder, opened before anything runs (a refused web root stops the
    /// backup before any dump); taken by `entries`.
    web: Mutex<Vec<WebWalk>>,
    account: Option<Account>,
    dump_timeout: Duration,
    problems: Problems,
    ledger: Arc<Ledger>,
    manifest: Arc<ManifestMaker>,
    /// The backup-script's file and its size.
    script: Option<(Utf8PathBuf, u64)>,
    /// Files offered (dumps, manifest, web files and links); the snapshot must hold as many.
    offered: Offered,
}

impl InstanceSource {
    fn new(
        input: &BackupInput<'_>,
        roots: &[(String, &String, &Utf8PathBuf)],
        problems: &Problems,
        ledger: &Arc<Ledger>,
        manifest: &Arc<ManifestMaker>,
        budget: Arc<WalkBudget>,
    ) -> RusticResult<Self> {
        let offered = Offered::default();
        // The dumps, manifest.json, manifest.tag and the script's file.
        for _ in 0..input.databases.len() + 2 + usize::from(input.script.is_some()) {
            offered.add();
        }
        let mut web = Vec::new();
        for (name, _, dir) in roots {
            let walk = WebWalk::open(
                dir,
                Path::new("/web").join(name),
                offered.clone(),
                Arc::clone(&budget),
            )
            .map_err(|e| {
                problems.push(e.to_string());
                rustic_io("cannot open a web folder", e.into_io())
            })?;
            web.push(walk);
        }
        Ok(InstanceSource {
            dumps: input
                .databases
                .iter()
                .map(|(id, db)| (id.clone(), db.clone()))
                .collect(),
            web: Mutex::new(web),
            account: input.account.cloned(),
            dump_timeout: input.dump_timeout,
            problems: problems.clone(),
            ledger: Arc::clone(ledger),
            manifest: Arc::clone(manifest),
            script: input.script.as_ref().map(|s| (s.file.to_owned(), s.size)),
            offered,
        })
    }
}

/// How the engine opens one entry.
enum EntryOpen {
    Web {
        file: WebFile,
        problems: Problems,
    },
    Dump(Box<DumpJob>),
    Manifest {
        maker: Arc<ManifestMaker>,
        tag: bool,
    },
    /// The backup-script's file, in the controller's private work folder.
    Script(Utf8PathBuf),
}

struct DumpJob {
    id: String,
    db: Database,
    account: Option<Account>,
    timeout: Duration,
    problems: Problems,
    slot: DumpSlot,
}

fn rustic_io(guidance: &'static str, e: io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::InputOutput, guidance, e)
}

impl ReadSourceOpen for EntryOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            EntryOpen::Web { file, problems } => {
                let shown = file.shown.clone();
                match file.open() {
                    Ok(Some(f)) => Ok(Box::new(Watched {
                        inner: f,
                        what: shown.to_string(),
                        problems,
                    })),
                    // Gone, or swapped for a symlink or something else since the walk: left
                    // out (and out of the count), as the archive store leaves it out.
                    Ok(None) => Err(rustic_io(
                        "a web file vanished or was replaced since the walk; left out",
                        io::Error::from(io::ErrorKind::NotFound),
                    )),
                    Err(e) => {
                        problems.push_once(match &e {
                            super::repository_web::WalkError::Io { source, .. } => {
                                format!("cannot open {shown}: {source}")
                            }
                            refused => refused.to_string(),
                        });
                        Err(rustic_io("cannot open a web file", e.into_io()))
                    }
                }
            }
            EntryOpen::Dump(job) => match DumpReader::start(*job) {
                Ok(r) => Ok(Box::new(r)),
                Err((message, problems)) => {
                    problems.push(message.clone());
                    Err(rustic_io(
                        "cannot start a database dump",
                        io::Error::other(message),
                    ))
                }
            },
            EntryOpen::Manifest { maker, tag } => match maker.get() {
                Ok((json, tag_json)) => {
                    let bytes = if tag { tag_json.clone() } else { json.clone() };
                    Ok(Box::new(io::Cursor::new(bytes)))
                }
                Err(message) => Err(rustic_io(
                    "cannot write the snapshot's manifest",
                    io::Error::other(message),
                )),
            },
            EntryOpen::Script(path) => OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)
                .map(|f| Box::new(f) as Box<dyn Read + Send>)
                .map_err(|e| rustic_io("cannot open the backup-script's file", e)),
        }
    }
}

/// A file reader that records its errors.
struct Watched<R> {
    inner: R,
    what: String,
    problems: Problems,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.problems
                .push(format!("cannot read {}: {e}", self.what));
        })
    }
}

/// Reads a dump tool's stdout through a pipe while the controller's runner runs the tool (as
/// the instance's account, confined, under a timeout, stopped by SIGINT/SIGTERM). Each read
/// fills the caller's buffer (a pipe returns at most 64 KiB per read, and the engine's
/// chunker slows down on short reads); end of stream is only reported after the tool exited
/// 0, so a failed dump is a read error, never a short file in a saved snapshot. The bytes are
/// counted and hashed for the manifest.
struct DumpReader {
    label: String,
    pipe: io::PipeReader,
    run: Option<std::thread::JoinHandle<Result<(), String>>>,
    problems: Problems,
    slot: DumpSlot,
    size: u64,
    sha: Sha256,
    finished: bool,
}

impl DumpReader {
    fn start(job: DumpJob) -> Result<Self, (String, Problems)> {
        let DumpJob {
            id,
            db,
            account,
            timeout,
            problems,
            mut slot,
        } = job;
        let label = format!("database {id} ({}, {})", db.name, db.server());
        let started = (|| {
            let (spec, program) =
                database::as_account(account.as_ref(), || database::dump_process(&db))
                    .map_err(|e| e.to_string())?;
            let (pipe, writer) =
                io::pipe().map_err(|e| format!("cannot dump {label}: no pipe: {e}"))?;
            let spec = spec.timeout(timeout).stdout_to_pipe(writer);
            let what = format!("{program} ({label})");
            let run = std::thread::Builder::new()
                .name(format!("dump-{id}"))
                .spawn(move || {
                    let result = spec.run().map(|_| ()).map_err(|e| {
                        let tail = e.stderr_tail();
                        format!(
                            "{e}{}",
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!(": {tail}")
                            }
                        )
                    });
                    // The spec holds the pipe's write end: the reader's end of stream.
                    drop(spec);
                    result
                })
                .map_err(|e| format!("cannot run {what}: {e}"))?;
            Ok::<_, String>((pipe, run))
        })();
        match started {
            Ok((pipe, run)) => Ok(DumpReader {
                label,
                pipe,
                run: Some(run),
                problems,
                slot,
                size: 0,
                sha: Sha256::new(),
                finished: false,
            }),
            Err(message) => {
                slot.finish(Err(message.clone()));
                Err((message, problems))
            }
        }
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.problems.push(message.clone());
        self.slot.finish(Err(message.clone()));
        io::Error::other(message)
    }
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.pipe.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let label = self.label.clone();
                    return Err(self.fail(format!("reading the dump of {label} failed: {e}")));
                }
            }
        }
        self.sha.update(&buf[..filled]);
        self.size += filled as u64;
        if filled == 0 {
            self.finished = true;
            let ran = self
                .run
                .take()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the dump's thread panicked".into()))
                })
                .unwrap_or(Ok(()));
            if let Err(e) = ran {
                let label = self.label.clone();
                return Err(self.fail(format!("the dump of {label} failed: {e}")));
            }
            let sha = hex::encode(std::mem::take(&mut self.sha).finalize());
            self.slot.finish(Ok((self.size, sha)));
        }
        Ok(filled)
    }
}

type EntryResult = RusticResult<ReadSourceEntry<EntryOpen>>;

/// A fresh number for a streamed node's inode: no parent node has it.
fn fresh_inode() -> u64 {
    let mut bytes = [0u8; 8];
    let _ = File::open("/dev/urandom").and_then(|mut f| f.read_exact(&mut bytes));
    u64::from_ne_bytes(bytes) | 1 << 63
}

impl ReadSource for InstanceSource {
    type Open = EntryOpen;
    type Iter = Box<dyn Iterator<Item = EntryResult> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        // Streamed nodes carry the time they are made, to the nanosecond, as mtime and ctime
        // and a fresh inode-like number: the engine compares size, mtime and ctime with the
        // parent snapshot's node, and must never take a stream for unchanged without reading
        // it (their size is 0 until read).
        let streamed = |name: &str| {
            let now = jiff::Timestamp::now();
            let meta = Metadata {
                mode: Some(0o600),
                mtime: Some(now),
                ctime: Some(now),
                inode: fresh_inode(),
                ..Default::default()
            };
            Node::new_node(std::ffi::OsStr::new(name), NodeType::File, meta)
        };
        let mut entries: Vec<EntryResult> = Vec::new();
        for (id, db) in &self.dumps {
            let name = format!("{id}.sql");
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/databases").join(&name),
                node: streamed(&name),
                open: Some(EntryOpen::Dump(Box::new(DumpJob {
                    id: id.clone(),
                    db: db.clone(),
                    account: self.account.clone(),
                    timeout: self.dump_timeout,
                    problems: self.problems.clone(),
                    slot: DumpSlot {
                        ledger: Arc::clone(&self.ledger),
                        id: id.clone(),
                        reported: false,
                    },
                }))),
            }));
        }
        for (name, tag) in [("manifest.json", false), ("manifest.tag", true)] {
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/").join(name),
                node: streamed(name),
                open: Some(EntryOpen::Manifest {
                    maker: Arc::clone(&self.manifest),
                    tag,
                }),
            }));
        }
        // "/script-backup" sorts between the manifest and "/web".
        if let Some((path, size)) = &self.script {
            let mut node = streamed(SCRIPT_PART);
            node.meta.size = *size;
            entries.push(Ok(ReadSourceEntry {
                path: Path::new("/").join(SCRIPT_PART),
                node,
                open: Some(EntryOpen::Script(path.clone())),
            }));
        }
        let mut iter: Self::Iter = Box::new(entries.into_iter());
        let walks = std::mem::take(&mut *self.web.lock().unwrap_or_else(|e| e.into_inner()));
        for walk in walks {
            let problems = self.problems.clone();
            let moved = walk.map(move |entry| -> EntryResult {
                let entry = entry.map_err(|e| {
                    problems.push_once(e.to_string());
                    rustic_io("cannot walk a web folder", e.into_io())
                })?;
                let open = entry.file.map(|file| EntryOpen::Web {
                    file,
                    problems: problems.clone(),
                });
                Ok(ReadSourceEntry {
                    path: entry.path,
                    node: entry.node,
                    open,
                })
            });
            iter = Box::new(iter.chain(moved));
        }
        iter
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
