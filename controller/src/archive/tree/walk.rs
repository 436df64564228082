//! The walk that writes a web folder as tar entries without following a symlink, bounded by
//! the instance's limits.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};

use super::{format::*, hash::*, sparse::*};
use crate::archive::ArchiveError;
use crate::archive::dirfd;

/// One folder being written: its descriptor, path below the root, and the children not yet
/// written (sorted, popped from the end).
pub(in crate::archive) struct Frame {
    pub(in crate::archive) fd: OwnedFd,
    pub(in crate::archive) rel: Vec<u8>,
    pub(in crate::archive) pending: Vec<Vec<u8>>,
}

/// Writes `root` as entries `prefix` (the root folder), `prefix + rel` … in pre-order with
/// sorted siblings. `prefix` is `web/<n>/`, or empty for a plain tree tar (root entry `./`).
///
/// The root is opened with [`dirfd::open_dir_nofollow`] (a root that is a symlink, or lies
/// under one a tenant could have placed, is refused); everything below is reached through the
/// descriptors of the folders above it with `O_NOFOLLOW`, so a folder swapped for a symlink
/// mid-walk is skipped or archived as the symlink it now is, never followed.
pub(in crate::archive) fn write_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Utf8Path,
    prefix: &[u8],
    part: &str,
    policy: &WalkPolicy,
    count: &mut WalkCount,
) -> Result<TreeStats, ArchiveError> {
    let source_err = |rel: &[u8], e: io::Error| ArchiveError::ReadSource {
        part: part.to_owned(),
        path: if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(lossy(rel))
        },
        source: e,
    };
    let write_err = |e: io::Error| ArchiveError::WriteArchive {
        part: part.to_owned(),
        source: e,
    };
    let copy_err = |rel: &[u8], e: CopyError| match e {
        CopyError::Read(e) => source_err(rel, e),
        CopyError::Write(e) => write_err(e),
    };
    let entry_name = |rel: &[u8], dir: bool| -> Vec<u8> {
        let mut name = prefix.to_vec();
        if rel.is_empty() {
            if name.is_empty() {
                name.extend_from_slice(b"./");
            }
        } else {
            name.extend_from_slice(rel);
            if dir {
                name.push(b'/');
            }
        }
        name
    };
    let mut hasher = TreeHasher::new();
    let mut warnings = Vec::new();
    let mut link_buf = Vec::new();
    let mut copy_buf = Vec::new();

    let full = |rel: &[u8]| {
        if rel.is_empty() {
            root.to_owned()
        } else {
            root.join(lossy(rel))
        }
    };
    let root_fd = dirfd::open_dir_nofollow(root.as_std_path()).map_err(|e| source_err(b"", e))?;
    let st = rustix::fs::fstat(&root_fd).map_err(|e| source_err(b"", e.into()))?;
    policy.entry(count, &full(b""))?;
    let (mut h, mode, mtime) = base_header(tar::EntryType::Directory, &st);
    builder
        .append_data(&mut h, os(&entry_name(b"", true)), io::empty())
        .map_err(write_err)?;
    hasher.dir(b"", mode, mtime);
    let pending = dirfd::pending_names(root_fd.as_fd()).map_err(|e| source_err(b"", e))?;
    let mut stack = vec![Frame {
        fd: root_fd,
        rel: Vec::new(),
        pending,
    }];

    loop {
        // Names in `rel` below: one per open frame.
        let depth = stack.len();
        let Some(frame) = stack.last_mut() else {
            break;
        };
        let Some(name) = frame.pending.pop() else {
            stack.pop();
            continue;
        };
        let dir = frame.fd.as_fd();
        let mut rel = frame.rel.clone();
        if !rel.is_empty() {
            rel.push(b'/');
        }
        rel.extend_from_slice(&name);
        // Refused here, what the restore could not hold open.
        if depth > MAX_DEPTH {
            return Err(ArchiveError::TooDeep {
                part: part.to_owned(),
                path: shortened(root, &rel),
                depth,
                max: MAX_DEPTH,
            });
        }
        let name = OsStr::from_bytes(&name);
        let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => st,
            Err(rustix::io::Errno::NOENT) => continue, // vanished
            Err(e) => return Err(source_err(&rel, e.into())),
        };
        if matches!(
            file_type(&st),
            FileType::Directory | FileType::RegularFile | FileType::Symlink
        ) {
            policy.entry(count, &full(&rel))?;
        }
        match file_type(&st) {
            FileType::Directory => {
                let fd = match dirfd::open_walked_dir(dir, name) {
                    Ok(Some(fd)) => fd,
                    // Not the folder that was seen: left out rather than followed.
                    Ok(None) => continue,
                    Err(e) => return Err(source_err(&rel, e)),
                };
                // Describe what was opened, not what the stat saw a moment before.
                let st = rustix::fs::fstat(&fd).map_err(|e| source_err(&rel, e.into()))?;
                let pending = dirfd::pending_names(fd.as_fd()).map_err(|e| source_err(&rel, e))?;
                let (mut h, mode, mtime) = base_header(tar::EntryType::Directory, &st);
                builder
                    .append_data(&mut h, os(&entry_name(&rel, true)), io::empty())
                    .map_err(write_err)?;
                hasher.dir(&rel, mode, mtime);
                stack.push(Frame { fd, rel, pending });
            }
            FileType::RegularFile => {
                let fd = match rustix::fs::openat(
                    dir,
                    name,
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::CLOEXEC,
                    Mode::empty(),
                ) {
                    Ok(fd) => fd,
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => continue,
                    Err(e) => return Err(source_err(&rel, e.into())),
                };
                let mut file = File::from(fd);
                let st = rustix::fs::fstat(&file).map_err(|e| source_err(&rel, e.into()))?;
                if file_type(&st) != FileType::RegularFile {
                    continue;
                }
                // What the descriptor shows: a hard link to a file the tenant cannot read
                // would be read here as root.
                policy.check_links(&st, &full(&rel))?;
                let size = st.st_size as u64;
                if policy.holes_as_data {
                    policy.bytes(count, size, &full(&rel))?;
                    let whole = HoleAwareFile::new(file, &st).map_err(|e| source_err(&rel, e))?;
                    let (mut h, mode, mtime) = base_header(tar::EntryType::Regular, &st);
                    h.set_size(size);
                    hasher.file(&rel, mode, mtime, size);
                    let mut reader = HashingTake::new(
                        BufReader::with_capacity(COPY_BUF, whole),
                        size,
                        &mut hasher.sha,
                        WhenShort::Fail,
                    );
                    if let Err(e) =
                        builder.append_data(&mut h, os(&entry_name(&rel, false)), &mut reader)
                    {
                        return Err(copy_err(&rel, reader.blame(e)));
                    }
                    continue;
                }
                let extents = data_extents(&mut file, &st).map_err(|e| source_err(&rel, e))?;
                let data = extents
                    .as_ref()
                    .map_or(size, |x| x.iter().map(|e| e.len).sum());
                policy.bytes(count, data, &full(&rel))?;
                if let Some(extents) = extents {
                    let (h, mode, mtime) = sparse_header(&st);
                    hasher.sparse_file(&rel, mode, mtime, size, &extents);
                    let name = entry_name(&rel, false);
                    let padded =
                        write_sparse(builder, h, &name, size, &extents, file, &mut hasher.sha)
                            .map_err(|e| copy_err(&rel, e))?;
                    if padded > 0 {
                        warnings.push(format!(
                            "{}: shrank by {padded} bytes while being read; padded with zeros",
                            lossy(&rel)
                        ));
                    }
                    continue;
                }
                let (mut h, mode, mtime) = base_header(tar::EntryType::Regular, &st);
                h.set_size(size);
                hasher.file(&rel, mode, mtime, size);
                // The header alone through tar (it writes long names), the data by ourselves.
                builder
                    .append_data(&mut h, os(&entry_name(&rel, false)), io::empty())
                    .map_err(write_err)?;
                let copied = copy_entry(
                    &mut file,
                    builder.get_mut(),
                    size,
                    &mut hasher.sha,
                    WhenShort::Pad,
                    &mut copy_buf,
                )
                .map_err(|e| copy_err(&rel, e))?;
                if copied.padded > 0 {
                    warnings.push(format!(
                        "{}: shrank by {} bytes while being read; padded with zeros",
                        lossy(&rel),
                        copied.padded
                    ));
                } else if copied.grew {
                    warnings.push(format!(
                        "{}: grew while being read; archived its first {size} bytes",
                        lossy(&rel)
                    ));
                }
            }
            FileType::Symlink => {
                let target = match rustix::fs::readlinkat(dir, name, std::mem::take(&mut link_buf))
                {
                    Ok(t) => t.into_bytes(),
                    Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => continue,
                    Err(e) => return Err(source_err(&rel, e.into())),
                };
                let (mut h, mode, mtime) = base_header(tar::EntryType::Symlink, &st);
                builder
                    .append_link(&mut h, os(&entry_name(&rel, false)), os(&target))
                    .map_err(write_err)?;
                hasher.symlink(&rel, mode, mtime, &target);
                link_buf = target;
            }
            _ => hasher.stats.skipped_specials += 1,
        }
    }
    let mut stats = hasher.finish();
    stats.warnings = warnings;
    Ok(stats)
}

/// What a walk of one instance's web folders may read, and whose hard links it may read. One
/// policy covers every folder of one archive: its bounds are the whole instance's.
#[derive(Debug, Clone, Default)]
pub struct WalkPolicy {
    /// Named in errors.
    pub instance: String,
    /// The instance's account: a regular file with more than one link must belong to it.
    /// `None`: links are not checked (a tree that is not a tenant's).
    pub account_uid: Option<u32>,
    /// `[limits] max-instance-size`: data bytes the walk may read (a sparse file's data
    /// extents, not its holes).
    pub max_bytes: Option<u64>,
    /// `[limits] max-files`: entries (files, folders, symlinks, the roots included).
    pub max_files: Option<u64>,
    /// The walk feeds a consumer that processes a sparse file's holes as zeros (the
    /// repository store's engine chunks and hashes every byte): sparse files are recorded
    /// and hashed as regular files (their holes made in memory, never read from the disk),
    /// and their size, not only their data, counts toward `max_bytes`.
    pub holes_as_data: bool,
}

/// What one archive's walks have taken so far, against its [`WalkPolicy`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WalkCount {
    pub bytes: u64,
    pub entries: u64,
}

impl WalkPolicy {
    /// Counts one entry; an error when it crosses `max-files`.
    pub fn count_entry(&self, count: &mut WalkCount, path: &Utf8Path) -> Result<(), ArchiveError> {
        self.entry(count, path)
    }

    /// Counts `data` bytes read; an error when they cross `max-instance-size`.
    pub fn count_bytes(
        &self,
        count: &mut WalkCount,
        data: u64,
        path: &Utf8Path,
    ) -> Result<(), ArchiveError> {
        self.bytes(count, data, path)
    }

    pub(in crate::archive) fn entry(
        &self,
        count: &mut WalkCount,
        path: &Utf8Path,
    ) -> Result<(), ArchiveError> {
        count.entries += 1;
        match self.max_files {
            Some(max) if count.entries > max => Err(ArchiveError::WalkLimit {
                instance: self.instance.clone(),
                limit: "max-files",
                max,
                path: path.to_owned(),
                reached: format!("{} entries", count.entries),
            }),
            _ => Ok(()),
        }
    }

    pub(in crate::archive) fn bytes(
        &self,
        count: &mut WalkCount,
        data: u64,
        path: &Utf8Path,
    ) -> Result<(), ArchiveError> {
        count.bytes = count.bytes.saturating_add(data);
        match self.max_bytes {
            Some(max) if count.bytes > max => Err(ArchiveError::WalkLimit {
                instance: self.instance.clone(),
                limit: "max-instance-size",
                max,
                path: path.to_owned(),
                reached: format!("{} bytes of data", count.bytes),
            }),
            _ => Ok(()),
        }
    }

    #[allow(clippy::unnecessary_cast)]
    pub(in crate::archive) fn check_links(
        &self,
        st: &rustix::fs::Stat,
        path: &Utf8Path,
    ) -> Result<(), ArchiveError> {
        match self.account_uid {
            Some(account) if st.st_nlink as u64 > 1 && st.st_uid != account => {
                Err(ArchiveError::ForeignHardLink {
                    instance: self.instance.clone(),
                    path: path.to_owned(),
                    links: st.st_nlink as u64,
                    owner: st.st_uid,
                    account,
                })
            }
            _ => Ok(()),
        }
    }
}
