//! The web folders' part of a capture: the controller's own walk (by descriptor, no symlink
//! followed: `archive::capture_tree_with`) streamed through a pipe and read back entry by
//! entry, so that the capture sees exactly what a backup would take.

use std::collections::BTreeMap;
use std::io::Read;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use aps_controller::archive::{WalkPolicy, capture_tree_with};

use crate::error::ConformanceError;

/// What an entry is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    Folder,
    File,
    Symlink,
}

/// Who owns an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Owner {
    /// The instance's account (whatever its uid).
    Account,
    /// Another uid: root's files in a tenant's folder are worth a line.
    Uid(u32),
}

/// One entry of a web folder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileState {
    pub kind: FileKind,
    /// Permission bits (`0o7777`).
    pub mode: u32,
    pub owner: Owner,
    /// Regular files: their size and the SHA-256 of their content (holes read as zeros).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// Symlinks: their target, as stored (never followed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

/// One web folder: path below it (`""` the folder itself) → entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FolderState {
    pub path: Utf8PathBuf,
    pub entries: BTreeMap<String, FileState>,
}

pub(super) fn capture_folder(
    path: &Utf8Path,
    account_uid: Option<u32>,
) -> Result<FolderState, ConformanceError> {
    let tree_err = |source| ConformanceError::Tree {
        path: path.to_owned(),
        source: Box::new(source),
    };
    if std::fs::symlink_metadata(path).is_ok_and(|m| m.is_file()) {
        return capture_file(path, account_uid);
    }
    let (reader, writer) =
        std::io::pipe().map_err(ConformanceError::io("open a pipe to capture", path))?;
    let policy = WalkPolicy {
        instance: path.to_string(),
        account_uid: None,
        holes_as_data: true,
        ..WalkPolicy::default()
    };
    let walked = std::thread::scope(|scope| {
        let walker = scope.spawn(|| capture_tree_with(path, writer, &policy));
        let read = read_entries(reader, path, account_uid);
        let walked = walker
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (walked, read)
    });
    match walked {
        (Err(e), _) => Err(tree_err(e)),
        (Ok(_), read) => Ok(FolderState {
            path: path.to_owned(),
            entries: read?,
        }),
    }
}

/// A url-mapping that is one file: opened without following a symlink, hashed whole.
fn capture_file(
    path: &Utf8Path,
    account_uid: Option<u32>,
) -> Result<FolderState, ConformanceError> {
    use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
        .open(path)
        .map_err(ConformanceError::io("open", path))?;
    let meta = file
        .metadata()
        .map_err(ConformanceError::io("read", path))?;
    let mut sha = Sha256::new();
    let size = std::io::copy(&mut file, &mut sha).map_err(ConformanceError::io("read", path))?;
    let owner = match account_uid {
        Some(account) if account == meta.uid() => Owner::Account,
        _ => Owner::Uid(meta.uid()),
    };
    let state = FileState {
        kind: FileKind::File,
        mode: meta.mode() & 0o7777,
        owner,
        size: Some(size),
        sha256: Some(hex::encode(sha.finalize())),
        target: None,
    };
    Ok(FolderState {
        path: path.to_owned(),
        entries: [(String::new(), state)].into(),
    })
}

fn read_entries(
    reader: std::io::PipeReader,
    path: &Utf8Path,
    account_uid: Option<u32>,
) -> Result<BTreeMap<String, FileState>, ConformanceError> {
    let read_err = ConformanceError::io("read the captured tree of", path);
    let mut archive = tar::Archive::new(reader);
    let mut entries = BTreeMap::new();
    let mut buf = vec![0u8; 64 * 1024];
    for entry in archive.entries().map_err(read_err)? {
        let mut entry = entry.map_err(ConformanceError::io("read the captured tree of", path))?;
        let name = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let rel = name
            .trim_start_matches("./")
            .trim_end_matches('/')
            .to_owned();
        let header = entry.header();
        let mode = header.mode().unwrap_or(0) & 0o7777;
        let uid = header.uid().unwrap_or(u64::MAX) as u32;
        let owner = match account_uid {
            Some(account) if account == uid => Owner::Account,
            _ => Owner::Uid(uid),
        };
        let kind = header.entry_type();
        let state = if kind.is_dir() {
            FileState {
                kind: FileKind::Folder,
                mode,
                owner,
                size: None,
                sha256: None,
                target: None,
            }
        } else if kind.is_symlink() {
            let target = entry
                .link_name_bytes()
                .map(|t| String::from_utf8_lossy(&t).into_owned());
            FileState {
                kind: FileKind::Symlink,
                mode,
                owner,
                size: None,
                sha256: None,
                target,
            }
        } else {
            let mut sha = Sha256::new();
            let mut size = 0u64;
            loop {
                let n = entry
                    .read(&mut buf)
                    .map_err(ConformanceError::io("read the captured tree of", path))?;
                if n == 0 {
                    break;
                }
                sha.update(&buf[..n]);
                size += n as u64;
            }
            FileState {
                kind: FileKind::File,
                mode,
                owner,
                size: Some(size),
                sha256: Some(hex::encode(sha.finalize())),
                target: None,
            }
        };
        entries.insert(rel, state);
    }
    // Drain what the walker may still write after the end of the archive (tar padding).
    let _ = std::io::copy(&mut archive.into_inner(), &mut std::io::sink());
    Ok(entries)
}
