//! The repository store: a restic-format repository (format v2: encrypted, zstd-compressed,
//! content-defined chunks, deduplicated across every backup of every instance), written and
//! read through `rustic_core`. Each backup of an instance is one snapshot:
//!
//! ```text
//! /databases/<requirement id>.sql   the controller's dump, streamed from the dump tool
//! /web/<url path, '/' as %2F>/…      each web folder (or mapped file) of the instance that
//!                                    is not inside another one
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
//!   recorded as unchanged with 0 bytes read: every backup runs with `ParentOptions::force`,
//!   so each file is read (unchanged chunks are still deduplicated, so this costs reading,
//!   not space).
//! - `get_all_snapshots` is unsorted: listings are sorted by time, then id.
//!
//! Known gap: the engine saves a streamed file's node with size 0 (the size is known only at
//! the end). rustic and `restic dump` read such a file by its content, but `restic restore`
//! writes it as an empty file. (The engine's snapshot repair does not rewrite a tree for a
//! size alone.) Fixing it needs the dump's node written with its size.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Stdio};
use std::sync::{Arc, Mutex};

use aps_controller::database::{self, Database};
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::repofile::{MasterKey, SnapshotFile};
use rustic_core::{
    BackupOptions, CheckOptions, ConfigOptions, Credentials, ErrorKind, KeyOptions,
    LocalDestination, LocalSource, LocalSourceFilterOptions, LocalSourceSaveOptions, LsOptions,
    OpenStatus, ParentOptions, ReadSource, ReadSourceEntry, ReadSourceOpen, Repository,
    RepositoryOptions, RestoreOptions, RusticError, RusticResult, SnapshotOptions, StringList,
    repofile::{Metadata, Node, NodeType},
};
use serde::Serialize;

use crate::config::{RepositoryLocation, RepositorySettings};
use crate::periodicity::Periodicity;

mod backend;
mod cancel;
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
    #[error("restore target {path} must be an empty folder or not exist yet")]
    TargetNotEmpty { path: Utf8PathBuf },
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
}

/// What identifies the package of a backed-up instance, for the snapshot's tags.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PackageTags {
    pub id: String,
    pub version: String,
    pub release: String,
}

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

fn unopened(location: &RepositoryLocation) -> Result<Repository<()>, RepositoryError> {
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

    /// Backs `input` up as one snapshot. Any file that could not be read, any walk error and
    /// any dump that failed fails the whole backup, and its snapshot is removed again.
    pub fn backup(&self, input: &BackupInput<'_>) -> Result<SnapshotInfo, RepositoryError> {
        let problems = Problems::default();
        let home = tempfile::Builder::new()
            .prefix("aps-dump-home-")
            .tempdir()
            .map_err(|source| RepositoryError::Io {
                action: "create a private HOME for the dump tools in",
                path: std::env::temp_dir().to_string_lossy().into_owned().into(),
                source,
            })?;
        let home =
            Utf8PathBuf::try_from(home.path().to_path_buf()).expect("the temp folder is UTF-8");
        let source = InstanceSource::new(input, &home, &problems).map_err(self.err())?;
        let offered = source.file_count;
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
        // Never match a parent: a stream's node would be taken as unchanged, unread.
        let opts = BackupOptions::default().parent_opts(ParentOptions::default().force(true));
        let repo = self.reopen()?.to_indexed_ids().map_err(self.err())?;
        let result = repo.archive(&opts, &source, snap, &[PathBuf::from("/")]);
        drop(source);
        let _ = std::fs::remove_dir_all(&home);

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
        if problems.is_empty() && saved != offered {
            problems.push(format!(
                "the snapshot holds {saved} files where {offered} were offered"
            ));
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

    fn find(&self, instance: &str, id: &str) -> Result<SnapshotInfo, RepositoryError> {
        let mut found = self
            .snapshots(Some(instance))?
            .into_iter()
            .filter(|s| !id.is_empty() && s.id.starts_with(id));
        match (found.next(), found.next()) {
            (Some(s), None) => Ok(s),
            _ => Err(RepositoryError::NoSnapshot {
                repository: self.describe(),
                instance: instance.to_owned(),
                id: id.to_owned(),
            }),
        }
    }

    /// Removes one snapshot of `instance` (its data goes at the next prune).
    pub fn forget(&self, instance: &str, id: &str) -> Result<(), RepositoryError> {
        let snap = self.find(instance, id)?;
        let full = self
            .repo
            .get_snapshot_from_str(&snap.id, |_| true)
            .map_err(self.err())?;
        self.repo.delete_snapshots(&[full.id]).map_err(self.err())
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
        let ls = repo.ls(&node, &LsOptions::default()).map_err(self.err())?;
        let dest = LocalDestination::new(&format!("{target}/"), true, false).map_err(self.err())?;
        let opts = RestoreOptions::default().no_ownership(true);
        let plan = repo
            .prepare_restore(&opts, ls.clone(), &dest, false)
            .map_err(self.err())?;
        repo.restore(plan, &opts, ls, &dest).map_err(self.err())?;

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

/// One web folder walked by the engine's local source, its paths moved under `/web/<name>`.
struct WebRoot {
    root: PathBuf,
    snapshot_path: PathBuf,
    source: LocalSource,
}

/// The instance as one source: its dumps, then its web folders, in path order (the engine
/// builds trees from a sorted stream).
struct InstanceSource {
    dumps: Vec<(String, Database)>,
    web: Vec<WebRoot>,
    home: Utf8PathBuf,
    problems: Problems,
    file_count: u64,
}

impl InstanceSource {
    fn new(input: &BackupInput<'_>, home: &Utf8Path, problems: &Problems) -> RusticResult<Self> {
        let mut web = Vec::new();
        let mut file_count = input.databases.len() as u64;
        // A folder inside another mapped folder is stored once, with the outer one (as the
        // archive store does). Sorted by the encoded name: the order the snapshot's tree needs.
        let dirs = input.web_dirs;
        let roots: BTreeMap<String, &Utf8PathBuf> = dirs
            .iter()
            .filter(|(url, dir)| {
                !dirs.iter().any(|(other_url, other)| {
                    other_url != *url && dir.starts_with(other) && *dir != other
                })
            })
            .map(|(url, dir)| (encode_url_path(url), dir))
            .collect();
        for (name, dir) in roots {
            let source = LocalSource::new(
                LocalSourceSaveOptions::default(),
                &Default::default(),
                &LocalSourceFilterOptions::default(),
                &[dir.as_std_path()],
            )?;
            // Counted as the engine's walk sees them (no symlink followed, hidden files too).
            file_count += count_files(dir.as_std_path(), problems);
            web.push(WebRoot {
                root: dir.as_std_path().to_owned(),
                snapshot_path: Path::new("/web").join(name),
                source,
            });
        }
        Ok(InstanceSource {
            dumps: input
                .databases
                .iter()
                .map(|(id, db)| (id.clone(), db.clone()))
                .collect(),
            web,
            home: home.to_owned(),
            problems: problems.clone(),
            file_count,
        })
    }
}

fn count_files(root: &Path, problems: &Problems) -> u64 {
    let meta = match std::fs::symlink_metadata(root) {
        Ok(m) => m,
        Err(e) => {
            problems.push(format!("cannot read {}: {e}", root.display()));
            return 0;
        }
    };
    // The engine counts every node that is not a folder (files, links, FIFOs…).
    if !meta.is_dir() {
        return 1;
    }
    let mut n = 0;
    match std::fs::read_dir(root) {
        Ok(entries) => {
            for entry in entries.flatten() {
                n += count_files(&entry.path(), problems);
            }
        }
        Err(e) => problems.push(format!("cannot list {}: {e}", root.display())),
    }
    n
}

/// How the engine opens one entry.
enum EntryOpen {
    File { path: PathBuf, problems: Problems },
    Dump(Box<DumpJob>),
}

struct DumpJob {
    id: String,
    db: Database,
    home: Utf8PathBuf,
    problems: Problems,
}

fn rustic_io(guidance: &'static str, e: io::Error) -> Box<RusticError> {
    RusticError::with_source(ErrorKind::InputOutput, guidance, e)
}

impl ReadSourceOpen for EntryOpen {
    type Reader = Box<dyn Read + Send>;

    fn open(self) -> RusticResult<Self::Reader> {
        match self {
            EntryOpen::File { path, problems } => {
                // The final component is not followed (a tenant may have swapped the file
                // for a link since the walk), and a non-regular file is never read (a FIFO
                // would block the backup).
                let opened = OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                    .open(&path)
                    .and_then(|f| {
                        if f.metadata()?.is_file() {
                            Ok(f)
                        } else {
                            Err(io::Error::other("no longer a regular file"))
                        }
                    });
                match opened {
                    Ok(f) => Ok(Box::new(Watched {
                        inner: f,
                        what: path.display().to_string(),
                        problems,
                    })),
                    Err(e) => {
                        problems.push(format!("cannot open {}: {e}", path.display()));
                        Err(rustic_io("cannot open a web file", e))
                    }
                }
            }
            EntryOpen::Dump(job) => match DumpReader::start(&job) {
                Ok(r) => Ok(Box::new(r)),
                Err(message) => {
                    job.problems.push(message.clone());
                    Err(rustic_io(
                        "cannot start a database dump",
                        io::Error::other(message),
                    ))
                }
            },
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

/// Reads a dump tool's stdout. Each read fills the caller's buffer (a pipe returns at most
/// 64 KiB per read, and the engine's chunker slows down on short reads); end of stream is
/// only reported after the tool exited 0, so a failed dump is a read error, never a short
/// file in a saved snapshot.
struct DumpReader {
    label: String,
    child: Child,
    stdout: ChildStdout,
    stderr: File,
    problems: Problems,
    finished: bool,
}

impl DumpReader {
    fn start(job: &DumpJob) -> Result<Self, String> {
        let label = format!("database {} ({}, {})", job.id, job.db.name, job.db.server());
        let (mut cmd, program) =
            database::dump_command(&job.db, &job.home).map_err(|e| e.to_string())?;
        // The tool's messages go to an unlinked file: a pipe could fill and stall the dump.
        let stderr = tempfile::tempfile_in(&job.home)
            .map_err(|e| format!("cannot dump {label}: no file for its messages: {e}"))?;
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(stderr.try_clone().map_err(|e| e.to_string())?)
            .spawn()
            .map_err(|e| format!("cannot run {program} to dump {label}: {e}"))?;
        let stdout = child.stdout.take().expect("stdout is piped");
        Ok(DumpReader {
            label,
            child,
            stdout,
            stderr,
            problems: job.problems.clone(),
            finished: false,
        })
    }

    fn fail(&mut self, message: String) -> io::Error {
        self.problems.push(message.clone());
        io::Error::other(message)
    }

    fn stderr_tail(&mut self) -> String {
        use std::io::{Seek, SeekFrom};
        let len = self.stderr.metadata().map(|m| m.size()).unwrap_or(0);
        let _ = self.stderr.seek(SeekFrom::Start(len.saturating_sub(2000)));
        let mut text = String::new();
        let _ = (&self.stderr).read_to_string(&mut text);
        text.trim().to_owned()
    }
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.stdout.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let label = self.label.clone();
                    return Err(self.fail(format!("reading the dump of {label} failed: {e}")));
                }
            }
        }
        if filled == 0 {
            self.finished = true;
            let status = self.child.wait().map_err(|e| {
                let label = self.label.clone();
                self.fail(format!("waiting for the dump of {label} failed: {e}"))
            })?;
            if !status.success() {
                let tail = self.stderr_tail();
                let label = self.label.clone();
                return Err(self.fail(format!("the dump of {label} failed ({status}): {tail}")));
            }
        }
        Ok(filled)
    }
}

impl Drop for DumpReader {
    fn drop(&mut self) {
        // Abandoned before its end (the backup failed elsewhere): stop the tool.
        if !self.finished {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

type EntryResult = RusticResult<ReadSourceEntry<EntryOpen>>;

impl ReadSource for InstanceSource {
    type Open = EntryOpen;
    type Iter = Box<dyn Iterator<Item = EntryResult> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        Ok(None)
    }

    fn entries(&self) -> Self::Iter {
        let now = jiff::Timestamp::now();
        let dumps: Vec<EntryResult> = self
            .dumps
            .iter()
            .map(|(id, db)| {
                let name = format!("{id}.sql");
                let meta = Metadata {
                    mode: Some(0o600),
                    mtime: Some(now),
                    ..Default::default()
                };
                Ok(ReadSourceEntry {
                    path: Path::new("/databases").join(&name),
                    node: Node::new_node(std::ffi::OsStr::new(&name), NodeType::File, meta),
                    open: Some(EntryOpen::Dump(Box::new(DumpJob {
                        id: id.clone(),
                        db: db.clone(),
                        home: self.home.clone(),
                        problems: self.problems.clone(),
                    }))),
                })
            })
            .collect();
        let mut iter: Self::Iter = Box::new(dumps.into_iter());
        for web in &self.web {
            let root = web.root.clone();
            let to = web.snapshot_path.clone();
            let problems = self.problems.clone();
            let moved = web.source.entries().map(move |entry| -> EntryResult {
                let entry = entry.inspect_err(|e| {
                    problems.push(format!("walking {}: {}", root.display(), e.display_log()));
                })?;
                let rel = entry.path.strip_prefix(&root).unwrap_or(Path::new(""));
                let path = if rel.as_os_str().is_empty() {
                    to.clone()
                } else {
                    to.join(rel)
                };
                let mut node = entry.node;
                if rel.as_os_str().is_empty() {
                    // The root takes its snapshot name (`%2F`), not the folder's own.
                    let name = to.file_name().expect("a web root has a name");
                    node = Node::new_node(name, node.node_type.clone(), node.meta.clone());
                }
                let open = entry.open.map(|_| EntryOpen::File {
                    path: entry.path.clone(),
                    problems: problems.clone(),
                });
                Ok(ReadSourceEntry { path, node, open })
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
