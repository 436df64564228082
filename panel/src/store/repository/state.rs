//! A web folder's metadata walk (names, types, modes, sizes, inodes, times): taken before and after
//! a backup, it proves the engine and the manifest saw the same tree.

use std::io::{self};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use camino::Utf8Path;
use sha2::{Digest, Sha256};

/// Why [`tree_state`] stopped.
pub(super) enum StateError {
    Io(io::Error),
    /// A bound of `[limits]` crossed.
    Limit(aps_controller::archive::ArchiveError),
}

impl StateError {
    pub(super) fn message(&self, dir: &Utf8Path) -> String {
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
pub(super) type Bounds<'a> = Option<(
    &'a aps_controller::archive::WalkPolicy,
    &'a mut aps_controller::archive::WalkCount,
)>;

/// A digest of everything about the tree at `dir` that a change to it would change: for each
/// entry (walked by descriptor, no symlink followed) its path, type, mode, inode, size,
/// mtime and ctime in nanoseconds, and a link's target. Writing a file changes its ctime;
/// adding, removing or renaming an entry changes its folder's. With `bounds`, every folder,
/// file and symlink counts toward `max-files` and every file's size toward
/// `max-instance-size`, checked as the walk goes.
pub(super) fn tree_state(dir: &Utf8Path, mut bounds: Bounds<'_>) -> Result<[u8; 32], StateError> {
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

/// Adds one entry of a walk to a [`tree_state`] digest: its path below the root (empty for the
/// root), type and mode, inode, size, mtime and ctime (a symlink's target follows it).
// The stat fields' types differ between architectures: the casts stay.
#[allow(clippy::unnecessary_cast)]
pub(super) fn record(sha: &mut Sha256, rel: &[u8], st: &rustix::fs::Stat) {
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
