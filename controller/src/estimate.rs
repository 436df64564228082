//! How much room a backup will take, and how much a folder's file system has: the check
//! before a backup starts and the facts a `no-space` error names (docs/interruptions.md).
//!
//! The estimate is the size of the controller's archive *before compression*: every regular
//! file's size in the web folders plus one 512-byte tar header per entry (and its padding),
//! plus the databases' data as their servers report it. Compression makes the real file
//! smaller, so the check before a backup only refuses when the free space is *clearly* too
//! small (see [`required_space`]).

use std::os::unix::fs::MetadataExt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::archive::{ArchiveError, ArchiveOptions, Compression, WalkCount, WalkPolicy};
use crate::database::Database;
use crate::registry::Instance;

/// A tar header and the padding of the last block, per archived entry.
const TAR_BLOCK: u64 = 512;
/// Room kept free beside the estimate for the manifest and file-system overhead.
pub const SPACE_MARGIN: u64 = 1024 * 1024;
/// A compressed archive is refused only when free space is below the estimate divided by this:
/// ratios above 10:1 are rare for web folders and dumps.
pub const COMPRESSED_RATIO_BOUND: u64 = 10;

/// The estimate of one instance's backup.
#[derive(Debug, Clone, Serialize)]
pub struct SizeEstimate {
    pub web_dirs: Vec<WebDirSize>,
    pub databases: Vec<DatabaseSize>,
    /// Bytes before compression: web folders + databases (unknown database sizes count 0).
    pub total: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct WebDirSize {
    pub mapping_url: String,
    pub dir: Utf8PathBuf,
    pub files: u64,
    pub bytes: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct DatabaseSize {
    pub db_id: String,
    /// `None` when the server could not say (the error is in `error`).
    pub bytes: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// The longest a database is asked for its size: the estimate must not hold a backup up when
/// a server is slow (the dump then reports the server's trouble itself).
const SIZE_QUERY_TIMEOUT: Duration = Duration::from_secs(30);

/// Adds up the instance's web folders (the ones the archive holds) and databases.
pub fn estimate_instance(instance: &Instance, timeout: Duration) -> SizeEstimate {
    estimate_within(instance, timeout, &WalkPolicy::default())
        .expect("a walk without bounds is never refused")
}

/// [`estimate_instance`], refused as soon as the walk crosses the instance's `[limits]`
/// (`max-instance-size`, `max-files`): a backup that would cross them is refused before it
/// starts, naming the path where the bound was crossed.
pub fn estimate_within(
    instance: &Instance,
    timeout: Duration,
    policy: &WalkPolicy,
) -> Result<SizeEstimate, ArchiveError> {
    let timeout = timeout.min(SIZE_QUERY_TIMEOUT);
    let mut web_dirs = Vec::new();
    let mut count = WalkCount::default();
    for (url, dir) in instance.archived_web_dirs() {
        let (files, bytes) = tree_size(dir, policy, &mut count)?;
        web_dirs.push(WebDirSize {
            mapping_url: url.clone(),
            dir: dir.clone(),
            files,
            bytes,
        });
    }
    let mut databases = Vec::new();
    for (db_id, db) in &instance.databases {
        let (bytes, error) = match database_size(db, timeout) {
            Ok(b) => (Some(b), None),
            Err(e) => (None, Some(e)),
        };
        databases.push(DatabaseSize {
            db_id: db_id.clone(),
            bytes,
            error,
        });
    }
    let total = web_dirs.iter().map(|w| w.bytes).sum::<u64>()
        + databases.iter().filter_map(|d| d.bytes).sum::<u64>()
        // header, manifest and the end-of-archive blocks
        + 8 * TAR_BLOCK;
    Ok(SizeEstimate {
        web_dirs,
        databases,
        total,
    })
}

/// The free space below which a backup of `estimate` bytes with `options` is refused.
pub fn required_space(estimate: u64, options: &ArchiveOptions) -> u64 {
    let bound = match options.compression {
        Compression::None => estimate,
        _ => estimate / COMPRESSED_RATIO_BOUND,
    };
    bound + SPACE_MARGIN
}

/// Entries and archived bytes of the tree at `dir`: regular files' data rounded up to tar
/// blocks (a sparse file's allocated blocks, which is what its entry holds), plus a header per
/// entry. Symlinks are counted, never followed; unreadable parts count as nothing (the backup
/// itself will report them).
fn tree_size(
    dir: &Utf8Path,
    policy: &WalkPolicy,
    count: &mut WalkCount,
) -> Result<(u64, u64), ArchiveError> {
    let mut files = 0;
    let mut bytes = 0;
    if dir.symlink_metadata().is_ok() {
        policy.count_entry(count, dir)?;
    }
    let mut stack = vec![dir.as_std_path().to_owned()];
    while let Some(path) = stack.pop() {
        let Ok(read) = std::fs::read_dir(&path) else {
            continue;
        };
        for entry in read.flatten() {
            let Ok(meta) = entry.path().symlink_metadata() else {
                continue;
            };
            let shown = || Utf8PathBuf::from(entry.path().to_string_lossy().into_owned());
            if meta.is_dir() || meta.is_file() || meta.is_symlink() {
                policy.count_entry(count, &shown())?;
            }
            bytes += TAR_BLOCK;
            if meta.is_dir() {
                stack.push(entry.path());
            } else if meta.is_file() {
                files += 1;
                let data = meta.size().min(meta.blocks().saturating_mul(512));
                policy.count_bytes(count, data, &shown())?;
                bytes += data.div_ceil(TAR_BLOCK) * TAR_BLOCK;
            }
        }
    }
    Ok((files, bytes))
}

/// The data size of a database as its server reports it (tables' data, not indexes: a dump
/// holds the rows, and the indexes are rebuilt from them).
fn database_size(db: &Database, timeout: Duration) -> Result<u64, String> {
    let sql = db.kind.engine().size_query();
    let out = crate::database::query(db, sql, timeout).map_err(|e| e.to_string())?;
    out.trim()
        .parse::<u64>()
        .map_err(|e| format!("unexpected answer {:?}: {e}", out.trim()))
}

/// Bytes available to the controller on the file system of `path` (or of its nearest existing
/// parent, for a file not created yet).
pub fn free_space(path: &Utf8Path) -> std::io::Result<u64> {
    let mut at = path;
    loop {
        match rustix::fs::statvfs(at.as_std_path()) {
            Ok(s) => return Ok(s.f_bavail.saturating_mul(s.f_frsize)),
            Err(e) if e == rustix::io::Errno::NOENT => match at.parent() {
                Some(parent) if !parent.as_str().is_empty() => at = parent,
                _ => return Err(e.into()),
            },
            Err(e) => return Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compressed_backups_are_refused_only_when_clearly_too_big() {
        let plain = ArchiveOptions::plain();
        let zstd = ArchiveOptions::default();
        assert_eq!(
            required_space(100 << 20, &plain),
            (100 << 20) + SPACE_MARGIN
        );
        assert_eq!(required_space(100 << 20, &zstd), (10 << 20) + SPACE_MARGIN);
    }

    #[test]
    fn free_space_of_a_path_not_created_yet() {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8Path::from_path(dir.path()).unwrap().join("a/b/c.aps");
        assert!(free_space(&path).unwrap() > 0);
    }
}
