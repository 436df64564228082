//! Web folders as tar entries: the walk that writes them, the canonical record stream their
//! SHA-256 covers, and the extraction that puts them back without ever following a symlink.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Write};

use camino::Utf8Path;

use super::ArchiveError;
use super::codec::read_error;
use crate::account::Account;

mod extract;
mod format;
mod hash;
mod sparse;
mod walk;

pub use self::format::{MAX_DEPTH, TreeStats};
pub(in crate::archive) use self::{extract::*, format::*, hash::*, walk::*};
pub use sparse::HoleAwareFile;
pub use walk::{WalkCount, WalkPolicy};

/// Writes `dir` as a plain, uncompressed tar at `tar_path` (root entry `./`, then the tree in
/// the same canonical order as a backup's web folder). Returns what was written and its digest.
pub fn capture_tree(dir: &Utf8Path, tar_path: &Utf8Path) -> Result<TreeStats, ArchiveError> {
    let file = File::create(tar_path).map_err(|e| ArchiveError::WriteArchive {
        part: tar_path.to_string(),
        source: e,
    })?;
    capture_tree_to(dir, file)
}

/// [`capture_tree`] into any writer.
pub fn capture_tree_to<W: Write>(dir: &Utf8Path, out: W) -> Result<TreeStats, ArchiveError> {
    capture_tree_with(dir, out, &WalkPolicy::default())
}

/// [`capture_tree_to`] under a [`WalkPolicy`]: an instance's hard-link rule and bounds.
pub fn capture_tree_with<W: Write>(
    dir: &Utf8Path,
    out: W,
    policy: &WalkPolicy,
) -> Result<TreeStats, ArchiveError> {
    capture_tree_counting(dir, out, policy, &mut WalkCount::default())
}

/// [`capture_tree_with`] adding to `count`: the bounds then hold for several trees (an
/// instance's web folders) together.
pub fn capture_tree_counting<W: Write>(
    dir: &Utf8Path,
    out: W,
    policy: &WalkPolicy,
    count: &mut WalkCount,
) -> Result<TreeStats, ArchiveError> {
    let mut builder = tar::Builder::new(BufWriter::with_capacity(COPY_BUF, out));
    let stats = write_tree(&mut builder, dir, b"", dir.as_str(), policy, count)?;
    let write_err = |e| ArchiveError::WriteArchive {
        part: dir.to_string(),
        source: e,
    };
    let mut out = builder.into_inner().map_err(write_err)?;
    out.flush().map_err(write_err)?;
    Ok(stats)
}

/// Extracts a plain tree tar (ours, or any tar of folders, files and symlinks) into `dest`,
/// with the same safety as a backup's web folder. Entries outside the tree are refused before
/// they are written; the returned digest equals [`capture_tree`]'s for one of ours. With
/// `owner`, every file, folder and symlink created is given to that account (through its
/// descriptor, never following a symlink); `None` leaves them the controller's.
pub fn restore_tree(
    tar_path: &Utf8Path,
    dest: &Utf8Path,
    owner: Option<&Account>,
) -> Result<TreeStats, ArchiveError> {
    let file = File::open(tar_path).map_err(|e| ArchiveError::Open {
        archive: tar_path.to_owned(),
        source: e,
    })?;
    restore_tree_from(
        BufReader::with_capacity(COPY_BUF, file),
        tar_path,
        dest,
        owner,
    )
}

/// [`restore_tree`] from any reader; `label` names the source in errors.
pub fn restore_tree_from<R: Read>(
    input: R,
    label: &Utf8Path,
    dest: &Utf8Path,
    owner: Option<&Account>,
) -> Result<TreeStats, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut tree = TreeReader::new(label, "tree", Some(dest), owner)?;
    let entries = archive
        .entries()
        .map_err(|e| read_error(label, Some("tree"), e))?;
    for entry in entries {
        let mut entry = entry.map_err(|e| read_error(label, Some("tree"), e))?;
        let name = entry.path_bytes().into_owned();
        let mut rel: &[u8] = &name;
        while let Some(r) = rel.strip_prefix(b"./") {
            rel = r;
        }
        if rel == b"." {
            rel = b"";
        }
        tree.entry(&name, rel, &mut entry)?;
    }
    tree.finish()
}
