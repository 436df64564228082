//! Reading a tree's entries back: hashing them, and extracting them under a folder without
//! ever following a symlink.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};

use super::{format::*, hash::*, sparse::*};
use crate::account::Account;
use crate::archive::ArchiveError;
use crate::archive::codec::read_error;
use crate::archive::dirfd;

/// A regular entry's data as the extractor writes it: dense, or a sparse file's extents
/// (after its map) and real size.
pub(in crate::archive) struct FileData<'a> {
    pub(in crate::archive) src: &'a mut dyn Read,
    pub(in crate::archive) layout: Option<(u64, &'a [Extent])>,
}

/// Consumes the entries of one tree (hashing them), and writes them under `dest` if given.
pub(in crate::archive) struct TreeReader {
    pub(in crate::archive) hasher: TreeHasher<TreeSha>,
    pub(in crate::archive) extract: Option<Extractor>,
    pub(in crate::archive) archive: Utf8PathBuf,
    pub(in crate::archive) part: String,
    pub(in crate::archive) buf: Vec<u8>,
}

impl TreeReader {
    pub(in crate::archive) fn new(
        archive: &Utf8Path,
        part: &str,
        dest: Option<&Utf8Path>,
        owner: Option<&Account>,
    ) -> Result<Self, ArchiveError> {
        let extract = dest
            .map(|d| {
                Extractor::new(d, owner).map_err(|e| extract_err(archive, part, d.as_str(), e))
            })
            .transpose()?;
        // Extracting, the SHA-256 runs beside the writes; only checking, it keeps pace here
        // with the decompression on its own thread.
        let hasher = TreeHasher::reading(extract.is_some())
            .map_err(|e| read_error(archive, Some(part), e))?;
        Ok(TreeReader {
            hasher,
            extract,
            archive: archive.to_owned(),
            part: part.to_owned(),
            buf: Vec::new(),
        })
    }

    /// One entry; `name` is the whole tar path (for messages), `rel` the part below the root.
    pub(in crate::archive) fn entry<R: Read>(
        &mut self,
        name: &[u8],
        rel: &[u8],
        entry: &mut tar::Entry<'_, R>,
    ) -> Result<(), ArchiveError> {
        let rel = check_rel(rel).map_err(|reason| ArchiveError::UnsafePath {
            archive: self.archive.clone(),
            entry: lossy(name),
            reason,
        })?;
        check_restorable(rel).map_err(|reason| ArchiveError::UnexpectedEntry {
            archive: self.archive.clone(),
            entry: lossy(name),
            reason,
        })?;
        let header = entry.header();
        let kind = header.entry_type();
        let read_err = |e| read_error(&self.archive, Some(&self.part), e);
        let mode = header.mode().map_err(read_err)? & 0o7777;
        let mtime = i64::try_from(header.mtime().map_err(read_err)?).unwrap_or(i64::MAX);
        let unexpected = |reason: &str| ArchiveError::UnexpectedEntry {
            archive: self.archive.clone(),
            entry: lossy(name),
            reason: reason.to_owned(),
        };
        let sparse = match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                sparse_size(entry, name).map_err(|r| unexpected(&r))?
            }
            _ => None,
        };
        match kind {
            tar::EntryType::Directory => {
                self.hasher.dir(rel, mode, mtime);
                if let Some(x) = &mut self.extract {
                    x.dir(rel, mode, mtime)
                        .map_err(|e| extract_err(&self.archive, &self.part, &lossy(rel), e))?;
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous if sparse.is_some() => {
                if rel.is_empty() {
                    return Err(unexpected("the tree's root must be a folder"));
                }
                let real = sparse.expect("checked above");
                let (extents, map_len) = read_sparse_map(entry, real).map_err(|e| match e {
                    SparseMapError::Read(e) => read_error(&self.archive, Some(&self.part), e),
                    SparseMapError::Bad(r) => unexpected(&r),
                })?;
                let data: u64 = extents.iter().map(|e| e.len).sum();
                if map_len.checked_add(data) != Some(entry.size()) {
                    return Err(unexpected(
                        "the sparse map's extents do not add up to the entry's size",
                    ));
                }
                self.hasher.sparse_file(rel, mode, mtime, real, &extents);
                match &mut self.extract {
                    None => {
                        for e in &extents {
                            let copied = copy_hashing(
                                &mut (&mut *entry).take(e.len),
                                &mut self.hasher.sha,
                                None,
                                &mut self.buf,
                            )
                            .map_err(|e| {
                                read_error(&self.archive, Some(&self.part), e.into_read())
                            })?;
                            if copied != e.len {
                                return Err(ArchiveError::Truncated {
                                    archive: self.archive.clone(),
                                    part: Some(self.part.clone()),
                                    detail: format!("{} ends inside its data", lossy(name)),
                                });
                            }
                        }
                    }
                    Some(x) => {
                        x.file(
                            rel,
                            mode,
                            mtime,
                            FileData {
                                src: entry,
                                layout: Some((real, &extents)),
                            },
                            &mut self.hasher.sha,
                            &mut self.buf,
                            &self.archive,
                            &self.part,
                        )?;
                    }
                }
            }
            tar::EntryType::Regular | tar::EntryType::Continuous => {
                if rel.is_empty() {
                    return Err(unexpected("the tree's root must be a folder"));
                }
                let size = entry.size();
                self.hasher.file(rel, mode, mtime, size);
                let copied = match &mut self.extract {
                    None => copy_hashing(entry, &mut self.hasher.sha, None, &mut self.buf)
                        .map_err(|e| read_error(&self.archive, Some(&self.part), e.into_read()))?,
                    Some(x) => x.file(
                        rel,
                        mode,
                        mtime,
                        FileData {
                            src: entry,
                            layout: None,
                        },
                        &mut self.hasher.sha,
                        &mut self.buf,
                        &self.archive,
                        &self.part,
                    )?,
                };
                if copied != size {
                    return Err(ArchiveError::Truncated {
                        archive: self.archive.clone(),
                        part: Some(self.part.clone()),
                        detail: format!("{} ends after {copied} of {size} bytes", lossy(name)),
                    });
                }
            }
            tar::EntryType::Symlink => {
                if rel.is_empty() {
                    return Err(unexpected("the tree's root must be a folder"));
                }
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| unexpected("symlink without a target"))?
                    .into_owned();
                if target.is_empty() || target.contains(&0) {
                    return Err(unexpected("empty or NUL symlink target"));
                }
                if target.len() > MAX_LINK_TARGET {
                    return Err(unexpected(&format!(
                        "a symlink target of {} bytes; at most {MAX_LINK_TARGET}",
                        target.len()
                    )));
                }
                self.hasher.symlink(rel, mode, mtime, &target);
                if let Some(x) = &mut self.extract {
                    x.symlink(rel, mtime, &target)
                        .map_err(|e| extract_err(&self.archive, &self.part, &lossy(rel), e))?;
                }
            }
            other => {
                return Err(unexpected(&format!(
                    "entry type {other:?} is not allowed (only folders, files, symlinks)"
                )));
            }
        }
        Ok(())
    }

    /// Applies folder modes and mtimes (last, since writing children changes them).
    pub(in crate::archive) fn finish(self) -> Result<TreeStats, ArchiveError> {
        if let Some(x) = self.extract {
            x.finish()
                .map_err(|(p, e)| extract_err(&self.archive, &self.part, &p, e))?;
        }
        Ok(self.hasher.finish())
    }
}

pub(in crate::archive) fn extract_err(
    archive: &Utf8Path,
    part: &str,
    path: &str,
    e: io::Error,
) -> ArchiveError {
    ArchiveError::Extract {
        archive: archive.to_owned(),
        part: part.to_owned(),
        path: path.to_owned(),
        source: e,
    }
}

/// Restored file modes drop setuid/setgid: a backup must not be a way to plant them.
pub(in crate::archive) fn restored_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Folders keep setgid: on a folder it only makes new files inherit the folder's group (web
/// hosts set it on upload folders), it grants nobody anything; setuid means nothing there.
pub(in crate::archive) fn restored_dir_mode(mode: u32) -> u32 {
    mode & 0o3777
}

pub(in crate::archive) fn mtime_only(mtime: i64) -> Timestamps {
    Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    }
}

pub(in crate::archive) fn not_a_folder(dest: &Utf8Path, rel: &[u8]) -> io::Error {
    io::Error::other(format!(
        "{}/{} is not a folder (symlink or file); refusing to write through it",
        dest,
        lossy(rel)
    ))
}

/// Writes entries under a destination folder through descriptors: the destination is opened
/// once ([`dirfd::open_or_create_dir`]), every folder below it is opened from its parent's
/// descriptor with `O_NOFOLLOW` and kept open while its entries are written, files are created
/// with `O_CREAT|O_EXCL|O_NOFOLLOW` relative to their folder, and an existing file or symlink
/// in the way is unlinked (never followed). A folder renamed or swapped for a symlink meanwhile
/// therefore never redirects a write: writes go on into the folder that was opened.
pub(in crate::archive) struct Extractor {
    pub(in crate::archive) dest: Utf8PathBuf,
    pub(in crate::archive) root: OwnedFd,
    /// The open folders from the root down to the last entry's folder: (name, descriptor).
    pub(in crate::archive) chain: Vec<(Vec<u8>, OwnedFd)>,
    /// (path below the root, mode, mtime) of every folder entry, applied in reverse at the end.
    pub(in crate::archive) dirs: Vec<(Vec<u8>, u32, i64)>,
    /// Owner given to everything created.
    pub(in crate::archive) owner: Option<(rustix::fs::Uid, rustix::fs::Gid)>,
}

impl Extractor {
    pub(in crate::archive) fn new(dest: &Utf8Path, owner: Option<&Account>) -> io::Result<Self> {
        let (root, created) = dirfd::open_or_create_dir(dest.as_std_path())?;
        let owner = owner.map(|a| {
            (
                rustix::fs::Uid::from_raw(a.uid),
                rustix::fs::Gid::from_raw(a.gid),
            )
        });
        let x = Extractor {
            dest: dest.to_owned(),
            root,
            chain: Vec::new(),
            dirs: Vec::new(),
            owner,
        };
        if created {
            x.chown_fd(x.root.as_fd())?;
        }
        Ok(x)
    }

    pub(in crate::archive) fn chown_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::fchown(fd, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// The open folder holding `rel` (opened, or created, from the folders above it), and the
    /// last component of `rel`.
    pub(in crate::archive) fn parent<'r>(
        &mut self,
        rel: &'r [u8],
    ) -> io::Result<(BorrowedFd<'_>, &'r [u8])> {
        let (dirs, name) = match rel.iter().rposition(|b| *b == b'/') {
            Some(pos) => (&rel[..pos], &rel[pos + 1..]),
            None => (&rel[..0], rel),
        };
        Ok((self.descend(dirs, true)?, name))
    }

    /// The folder `dirs` below the root, opened one name at a time from the descriptor of the
    /// folder above with `O_NOFOLLOW` (the open chain's common part reused): the kernel never
    /// gets a whole path, so a tree deeper than `PATH_MAX` bytes is no different. With
    /// `create`, a missing folder is made as tar does (0755, given to the owner).
    pub(in crate::archive) fn descend(
        &mut self,
        dirs: &[u8],
        create: bool,
    ) -> io::Result<BorrowedFd<'_>> {
        let comps: Vec<&[u8]> = if dirs.is_empty() {
            Vec::new()
        } else {
            dirs.split(|b| *b == b'/').collect()
        };
        let same = self
            .chain
            .iter()
            .zip(&comps)
            .take_while(|((have, _), want)| have.as_slice() == **want)
            .count();
        self.chain.truncate(same);
        for (i, comp) in comps.iter().enumerate().skip(same) {
            let above = match self.chain.last() {
                Some((_, fd)) => fd.as_fd(),
                None => self.root.as_fd(),
            };
            let fd = match rustix::fs::openat(
                above,
                OsStr::from_bytes(comp),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            ) {
                Ok(fd) => fd,
                Err(rustix::io::Errno::NOENT) if create => {
                    // A folder the archive lists no entry for (not one of ours): made as tar does.
                    rustix::fs::mkdirat(
                        above,
                        OsStr::from_bytes(comp),
                        Mode::from_raw_mode(0o755),
                    )?;
                    let fd = dirfd::open_child_dir(above, comp)?;
                    self.chown_fd(fd.as_fd())?;
                    fd
                }
                Err(rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
                    return Err(not_a_folder(&self.dest, &comps[..=i].join(&b'/')));
                }
                Err(e) => return Err(e.into()),
            };
            self.chain.push((comp.to_vec(), fd));
        }
        Ok(match self.chain.last() {
            Some((_, fd)) => fd.as_fd(),
            None => self.root.as_fd(),
        })
    }

    /// Unlinks a file or symlink `name` in `dir`; refuses to replace a folder.
    pub(in crate::archive) fn clear(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a folder in the way", lossy(name)),
            )),
            Err(e) => Err(e.into()),
        }
    }

    pub(in crate::archive) fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) -> io::Result<()> {
        if !rel.is_empty() {
            let owner = self.owner;
            let (parent, name) = self.parent(rel)?;
            let os_name = OsStr::from_bytes(name);
            let created = match rustix::fs::mkdirat(parent, os_name, Mode::from_raw_mode(0o700)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => {
                    let st = rustix::fs::statat(parent, os_name, AtFlags::SYMLINK_NOFOLLOW)?;
                    if dirfd::is_dir(&st) {
                        false
                    } else {
                        Self::clear(parent, name)?;
                        rustix::fs::mkdirat(parent, os_name, Mode::from_raw_mode(0o700))?;
                        true
                    }
                }
                Err(e) => return Err(e.into()),
            };
            if created && let Some((uid, gid)) = owner {
                let fd = dirfd::open_child_dir(parent, name)?;
                rustix::fs::fchown(&fd, Some(uid), Some(gid))?;
            }
        }
        self.dirs.push((rel.to_vec(), mode, mtime));
        Ok(())
    }

    /// Writes a file; runs of zeros (a sparse entry's holes, and zero blocks of any file)
    /// become holes: skipped with a seek and `set_len`, never written. Returns the data bytes
    /// copied.
    #[allow(clippy::too_many_arguments)]
    pub(in crate::archive) fn file(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        data: FileData<'_>,
        sha: &mut dyn Feed,
        buf: &mut Vec<u8>,
        archive: &Utf8Path,
        part: &str,
    ) -> Result<u64, ArchiveError> {
        let dest = self.dest.clone();
        let fail = |e| extract_err(archive, part, &format!("{dest}/{}", lossy(rel)), e);
        let owner = self.owner;
        let (parent, name) = self.parent(rel).map_err(fail)?;
        let os_name = OsStr::from_bytes(name);
        let create = || {
            rustix::fs::openat(
                parent,
                os_name,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )
        };
        let fd = match create() {
            Ok(fd) => fd,
            Err(rustix::io::Errno::EXIST) => {
                Self::clear(parent, name).map_err(fail)?;
                create().map_err(|e| fail(e.into()))?
            }
            Err(e) => return Err(fail(e.into())),
        };
        if let Some((uid, gid)) = owner {
            rustix::fs::fchown(&fd, Some(uid), Some(gid)).map_err(|e| fail(e.into()))?;
        }
        let mut out = HoleWriter {
            file: File::from(fd),
            pos: 0,
        };
        let copy =
            |src: &mut dyn Read, out: &mut HoleWriter, sha: &mut dyn Feed, buf: &mut Vec<u8>| {
                match copy_hashing(src, sha, Some(out as &mut dyn Write), buf) {
                    Ok(n) => Ok(n),
                    Err(CopyError::Write(e)) => Err(fail(e)),
                    Err(CopyError::Read(e)) => Err(read_error(archive, Some(part), e)),
                }
            };
        let (copied, end) = match data.layout {
            None => {
                let n = copy(data.src, &mut out, sha, buf)?;
                (n, n)
            }
            Some((real, extents)) => {
                let mut total = 0;
                for e in extents {
                    out.pos = e.offset;
                    let n = copy(&mut (&mut *data.src).take(e.len), &mut out, sha, buf)?;
                    if n != e.len {
                        return Err(ArchiveError::Truncated {
                            archive: archive.to_owned(),
                            part: Some(part.to_owned()),
                            detail: format!("{}/{} ends inside its data", self.dest, lossy(rel)),
                        });
                    }
                    total += n;
                }
                (total, real)
            }
        };
        let file = out.file;
        file.set_len(end).map_err(fail)?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(restored_mode(mode)))
            .map_err(|e| fail(e.into()))?;
        rustix::fs::futimens(&file, &mtime_only(mtime)).map_err(|e| fail(e.into()))?;
        Ok(copied)
    }

    pub(in crate::archive) fn symlink(
        &mut self,
        rel: &[u8],
        mtime: i64,
        target: &[u8],
    ) -> io::Result<()> {
        let owner = self.owner;
        let (parent, name) = self.parent(rel)?;
        let os_name = OsStr::from_bytes(name);
        Self::clear(parent, name)?;
        rustix::fs::symlinkat(OsStr::from_bytes(target), parent, os_name)?;
        if let Some((uid, gid)) = owner {
            // Through a descriptor of the link itself: whatever replaced the name meanwhile is
            // refused rather than given away.
            let fd = rustix::fs::openat(
                parent,
                os_name,
                OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let st = rustix::fs::fstat(&fd)?;
            if file_type(&st) != FileType::Symlink {
                return Err(io::Error::other(format!(
                    "{}/{} changed while being restored",
                    self.dest,
                    lossy(rel)
                )));
            }
            rustix::fs::chownat(
                &fd,
                "",
                Some(uid),
                Some(gid),
                AtFlags::EMPTY_PATH | AtFlags::SYMLINK_NOFOLLOW,
            )?;
        }
        rustix::fs::utimensat(
            parent,
            os_name,
            &mtime_only(mtime),
            AtFlags::SYMLINK_NOFOLLOW,
        )?;
        Ok(())
    }

    pub(in crate::archive) fn finish(mut self) -> Result<(), (String, io::Error)> {
        let dirs = std::mem::take(&mut self.dirs);
        // Children before their folder (reverse pre-order), so consecutive folders share most
        // of the open chain: about one `openat` per folder, whatever the depth or length.
        for (rel, mode, mtime) in dirs.iter().rev() {
            let dest = self.dest.clone();
            let fail = |e| (format!("{dest}/{}", lossy(rel)), e);
            // Reopened name by name below the held root, never through a symlink, so a folder
            // swapped for one is not chmod-ed through.
            let fd = self.descend(rel, false).map_err(fail)?;
            rustix::fs::fchmod(fd, Mode::from_raw_mode(restored_dir_mode(*mode)))
                .map_err(|e| fail(e.into()))?;
            rustix::fs::futimens(fd, &mtime_only(*mtime)).map_err(|e| fail(e.into()))?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------------------
// Plain tree tars (safety snapshots, tools)
