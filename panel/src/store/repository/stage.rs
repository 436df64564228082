//! A snapshot made ready for a restore: written out into a folder (`restore_to_staging`), or made
//! into a tagged archive for the controller's restore (`stage_archive`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use aps_controller::archive::{
    ArchiveOptions, ArchiveTag, ArchiveWriter, FORMAT_NAME, Manifest, ManifestHeader, PartInfo,
    PartKind, TAG_ALGORITHM, TagKey,
};
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::{
    IndexedFull, Repository, TreeId,
    repofile::{Node, NodeType},
};
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::store::repository::stream::WriteOutError;
use crate::store::repository::stream::{
    StreamError, Streamed, mode_or, mtime_seconds, stream_tree, write_out,
};
use crate::store::repository::{
    RepositoryError, RepositoryStore, SCRIPT_PART, SUFFICIENT_SCRIPT_PART, SnapshotInfo,
    decode_url_path, encode_url_path,
};

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
pub(super) const STAGING_PREFIX: &str = ".repository-restore-";

/// Removes the staging folders of controllers that are no longer running (killed during a
/// restore): their pid is in the name. Best effort, never through a symlink.
pub(super) fn remove_stale_staging(work_parent: &Utf8Path) {
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
    pub(super) _dir: tempfile::TempDir,
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

impl RepositoryStore {
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
        // damaged pack (stream.rs explains).
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
        let (dir, root) = staging_folder(work_parent)?;
        let repo = self.reopen()?.to_indexed().map_err(self.err())?;
        let top = repo
            .node_from_snapshot_path(&snapshot.id, |_| true)
            .map_err(self.err())?;
        let staging = Staging {
            store: self,
            instance,
            snapshot,
            top_tree: top
                .subtree
                .ok_or_else(|| damaged(snapshot, "its root is not a folder".to_owned()))?,
            repo,
        };
        let manifest = staging.trusted_manifest(key)?;
        if let Some(part) = manifest
            .parts
            .iter()
            .find(|p| p.name == SUFFICIENT_SCRIPT_PART)
        {
            // A `sufficient` script's file is the whole backup: handed over as it is.
            if manifest.parts.len() != 1 || part.kind != PartKind::ScriptBackup {
                return Err(damaged(
                    snapshot,
                    "its manifest names a sufficient backup-script's file beside other parts"
                        .to_owned(),
                ));
            }
            let (file, size, sha256) = staging.script_file(part, &root)?;
            return Ok(StagedArchive {
                _dir: dir,
                archive: file,
                snapshot: snapshot.clone(),
                script_file: Some((manifest.header, size, sha256)),
                record: None,
                written: None,
            });
        }
        let (archive, reader) = staging.archive(&manifest, &root, key)?;
        Ok(StagedArchive {
            _dir: dir,
            archive,
            snapshot: snapshot.clone(),
            script_file: None,
            record: None,
            written: Some(reader),
        })
    }
}

fn io_err(action: &'static str, path: &Utf8Path) -> impl FnOnce(io::Error) -> RepositoryError {
    let path = path.to_owned();
    move |source| RepositoryError::Io {
        action,
        path,
        source,
    }
}

fn untrusted(snapshot: &SnapshotInfo, reason: String) -> RepositoryError {
    RepositoryError::Untrusted {
        snapshot: snapshot.id[..8].to_owned(),
        reason,
    }
}

fn damaged(snapshot: &SnapshotInfo, reason: String) -> RepositoryError {
    RepositoryError::Damaged {
        snapshot: snapshot.id[..8].to_owned(),
        reason,
    }
}

/// A private staging folder (mode 0700) under `work_parent`, after removing those of
/// controllers that are gone; the folder goes when the `TempDir` is dropped.
fn staging_folder(
    work_parent: &Utf8Path,
) -> Result<(tempfile::TempDir, Utf8PathBuf), RepositoryError> {
    remove_stale_staging(work_parent);
    let dir = tempfile::Builder::new()
        .prefix(&format!("{STAGING_PREFIX}{}-", std::process::id()))
        .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .tempdir_in(work_parent)
        .map_err(io_err("create a staging folder in", work_parent))?;
    let root = Utf8PathBuf::try_from(dir.path().to_path_buf())
        .expect("the staging folder's path is UTF-8, as its parent's");
    Ok((dir, root))
}

/// A new private file in the staging folder, never through a symlink.
fn create_private(path: &Utf8Path) -> Result<File, RepositoryError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(path)
        .map_err(io_err("create", path))
}

/// One snapshot being staged: the repository, indexed, and the snapshot's root tree.
struct Staging<'a, S> {
    store: &'a RepositoryStore,
    instance: &'a str,
    snapshot: &'a SnapshotInfo,
    repo: Repository<S>,
    top_tree: TreeId,
}

impl<S: IndexedFull> Staging<'_, S>
where
    Repository<S>: Sync,
{
    fn node(&self, path: &str) -> rustic_core::RusticResult<Node> {
        self.repo.node_from_path(self.top_tree, Path::new(path))
    }

    fn write_out(&self, target: &Utf8Path) -> impl FnOnce(WriteOutError) -> RepositoryError {
        let target = target.to_owned();
        let snapshot = self.snapshot.id.clone();
        let repository = self.store.describe();
        move |source| RepositoryError::WriteOut {
            repository,
            snapshot,
            target,
            source,
        }
    }

    fn interrupted(&self, signal: i32) -> RepositoryError {
        RepositoryError::RestoreInterrupted {
            instance: self.instance.to_owned(),
            snapshot: self.snapshot.id[..8].to_owned(),
            signal,
        }
    }

    /// The manifest, once its tag is checked with `key`.
    fn trusted_manifest(&self, key: &TagKey) -> Result<Manifest, RepositoryError> {
        let untrusted = |reason| untrusted(self.snapshot, reason);
        // The manifest and its tag are small; anything larger is not ours.
        // A store that did not answer says nothing of the snapshot: that is `Unreachable`, not
        // a snapshot found untrusted.
        let small = |name: &str| -> Result<Vec<u8>, RepositoryError> {
            let unread = |e: Box<rustic_core::RusticError>| {
                if super::backend::is_unreachable(&e) {
                    RepositoryError::Unreachable {
                        repository: self.store.describe(),
                        message: e.display_log(),
                    }
                } else {
                    untrusted(format!("it has no readable {name} ({})", e.display_log()))
                }
            };
            let n = self.node(name).map_err(unread)?;
            if n.meta.size > 16 << 20 {
                return Err(untrusted(format!(
                    "it has no readable {name} ({} bytes)",
                    n.meta.size
                )));
            }
            let mut bytes = Vec::new();
            self.repo.dump(&n, &mut bytes).map_err(unread)?;
            Ok(bytes)
        };
        let manifest_bytes = small("manifest.json")?;
        let tag_bytes = small("manifest.tag")?;
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
        let manifest: Manifest = serde_json::from_slice(&manifest_bytes).map_err(|e| {
            damaged(
                self.snapshot,
                format!("its manifest.json cannot be read: {e}"),
            )
        })?;
        if manifest.format != FORMAT_NAME {
            return Err(damaged(
                self.snapshot,
                format!("its manifest's format is {:?}", manifest.format),
            ));
        }
        Ok(manifest)
    }

    /// The node of a part the manifest lists.
    fn part_node(&self, part: &PartInfo) -> Result<Node, RepositoryError> {
        let path = match &part.kind {
            PartKind::DatabaseDump { db_id, .. } => format!("databases/{db_id}.sql"),
            PartKind::WebDir { mapping_url } => format!("web/{}", encode_url_path(mapping_url)),
            PartKind::ScriptBackup => SCRIPT_PART.to_owned(),
        };
        self.node(&path).map_err(|e| {
            damaged(
                self.snapshot,
                format!(
                    "part {} ({path}) is missing: {}",
                    part.name,
                    e.display_log()
                ),
            )
        })
    }

    /// A `sufficient` script's file, copied out and checked against the manifest: its path,
    /// size and SHA-256.
    fn script_file(
        &self,
        part: &PartInfo,
        root: &Utf8Path,
    ) -> Result<(Utf8PathBuf, u64, String), RepositoryError> {
        let file_node = self.part_node(part)?;
        let file = root.join(SCRIPT_PART);
        let mut out = create_private(&file)?;
        let mut sha = Sha256::new();
        let mut size = 0u64;
        let copied = stream_tree(&self.repo, &file_node, |item| match item {
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
            Err(StreamError::Cancelled(signal)) => return Err(self.interrupted(signal)),
            Err(StreamError::Read(e)) => return Err(self.write_out(&file)(e)),
            Err(StreamError::Sink(e)) => {
                return Err(self.write_out(&file)(WriteOutError::Write {
                    path: file.to_string(),
                    source: e,
                }));
            }
        }
        out.sync_all().map_err(io_err("sync", &file))?;
        let sha256 = hex::encode(sha.finalize());
        if size != part.size || sha256 != part.sha256 {
            return Err(damaged(
                self.snapshot,
                format!(
                    "its backup-script's file restored as {size} bytes with SHA-256 {sha256}, \
                     where the manifest says {} bytes with SHA-256 {}",
                    part.size, part.sha256
                ),
            ));
        }
        Ok((file, size, sha256))
    }

    /// The archive of every part, in the manifest's order, streamed by the archive writer
    /// and tagged with `key`; then checked part by part against the manifest.
    fn archive(
        &self,
        manifest: &Manifest,
        root: &Utf8Path,
        key: &TagKey,
    ) -> Result<(Utf8PathBuf, aps_controller::archive::ArchiveReader), RepositoryError> {
        let damaged = |reason| damaged(self.snapshot, reason);
        let short = &self.snapshot.id[..8];
        let archive = root.join("snapshot.aps.tar");
        let file = create_private(&archive)?;
        // A failure writing the archive (a full disk) is the staging folder's; anything else
        // the archive writer says is about the snapshot's content.
        let arch = |e: aps_controller::archive::ArchiveError| match e {
            aps_controller::archive::ArchiveError::WriteArchive { source, .. } => {
                self.write_out(&archive)(WriteOutError::Write {
                    path: archive.to_string(),
                    source,
                })
            }
            e => damaged(e.to_string()),
        };
        let streamed = |e: StreamError<aps_controller::archive::ArchiveError>| match e {
            StreamError::Cancelled(signal) => self.interrupted(signal),
            StreamError::Read(e) => self.write_out(&archive)(e),
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
            let source = self.part_node(part)?;
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
                    stream_tree(&self.repo, &source, |item| {
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
                    stream_tree(&self.repo, &source, |item| match item {
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
        Ok((archive, reader))
    }
}
