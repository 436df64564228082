//! Web folders as tar entries: the walk that writes them, the canonical record stream their
//! SHA-256 covers, and the extraction that puts them back without ever following a symlink.

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Timestamps};
use sha2::{Digest, Sha256};

use super::ArchiveError;
use super::codec::read_error;
use super::dirfd;
use crate::account::Account;

/// What one folder tree held (writer) or holds (reader).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TreeStats {
    /// Regular files.
    pub files: u64,
    /// Folders, the root included.
    pub dirs: u64,
    pub symlinks: u64,
    /// Bytes of all regular files.
    pub bytes: u64,
    /// Sockets, FIFOs and devices found while writing: they cannot be backed up and are left out.
    pub skipped_specials: u64,
    /// Lowercase hex SHA-256 of the canonical record stream (docs/backup-format.md).
    pub sha256: String,
    /// Files that changed while being read (shrunk ones are padded with zeros, as GNU tar does).
    pub warnings: Vec<String>,
}

const KIND_DIR: u8 = b'd';
const KIND_FILE: u8 = b'f';
const KIND_SYMLINK: u8 = b'l';
const COPY_BUF: usize = 256 * 1024;

/// Most names a path below a web folder may have (docs/security.md, "Deep and long paths").
/// Writing and restoring hold one open folder per level, so this bounds the descriptors one
/// operation needs, well below the usual open-file limit of 1024 even with a few operations at
/// once; real sites nest a few dozen levels at most. Length has no bound of its own: every
/// path is walked one name at a time from its folder's descriptor.
pub const MAX_DEPTH: usize = 128;
/// Longest name one folder entry may have (`NAME_MAX` of Linux file systems).
const MAX_NAME: usize = 255;
/// Longest symlink target `symlinkat` takes (`PATH_MAX` with its NUL).
const MAX_LINK_TARGET: usize = 4095;

/// The canonical record stream of a tree, hashed as it goes; see docs/backup-format.md.
pub(super) struct TreeHasher {
    pub(super) sha: Sha256,
    stats: TreeStats,
}

impl TreeHasher {
    pub(super) fn new() -> Self {
        TreeHasher {
            sha: Sha256::new(),
            stats: TreeStats::default(),
        }
    }

    fn record(&mut self, kind: u8, rel: &[u8], mode: u32, mtime: i64) {
        self.sha.update([kind]);
        self.sha.update((rel.len() as u32).to_be_bytes());
        self.sha.update(rel);
        self.sha.update((mode & 0o7777).to_be_bytes());
        self.sha.update(mtime.to_be_bytes());
    }

    pub(super) fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) {
        self.record(KIND_DIR, rel, mode, mtime);
        self.stats.dirs += 1;
    }

    pub(super) fn file(&mut self, rel: &[u8], mode: u32, mtime: i64, size: u64) {
        self.record(KIND_FILE, rel, mode, mtime);
        self.sha.update(size.to_be_bytes());
        self.stats.files += 1;
        self.stats.bytes += size;
    }

    pub(super) fn symlink(&mut self, rel: &[u8], mode: u32, mtime: i64, target: &[u8]) {
        self.record(KIND_SYMLINK, rel, mode, mtime);
        self.sha.update((target.len() as u32).to_be_bytes());
        self.sha.update(target);
        self.stats.symlinks += 1;
    }

    pub(super) fn finish(mut self) -> TreeStats {
        self.stats.sha256 = hex::encode(self.sha.finalize());
        self.stats
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// What to do when a source file ends before the size its tar header announced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum WhenShort {
    /// Pad with zeros so the header stays true (a web file changed by the live site; warned).
    Pad,
    /// Fail the copy (a dump or script file: padding would silently corrupt it).
    Fail,
}

/// Reads exactly `remaining` bytes of a source file into the archive, hashing them. A read
/// error of the source is kept in `error`, apart from failures writing the archive.
pub(super) struct HashingTake<'a, R> {
    pub inner: R,
    remaining: u64,
    sha: &'a mut Sha256,
    when_short: WhenShort,
    /// Zero bytes added ([`WhenShort::Pad`]).
    pub padded: u64,
    /// The source ended early ([`WhenShort::Fail`]).
    pub short: bool,
    pub error: Option<io::Error>,
}

impl<'a, R> HashingTake<'a, R> {
    pub fn new(inner: R, size: u64, sha: &'a mut Sha256, when_short: WhenShort) -> Self {
        HashingTake {
            inner,
            remaining: size,
            sha,
            when_short,
            padded: 0,
            short: false,
            error: None,
        }
    }
}

impl<R: Read> Read for HashingTake<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.remaining == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf
            .len()
            .min(usize::try_from(self.remaining).unwrap_or(usize::MAX));
        let n = match self.inner.read(&mut buf[..want]) {
            Ok(0) if self.when_short == WhenShort::Pad => {
                buf[..want].fill(0);
                self.padded += want as u64;
                want
            }
            Ok(0) => {
                // Fail the copy: tar would otherwise pad to a length its header disagrees with.
                self.short = true;
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "source file shrank while being archived",
                ));
            }
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Err(e),
            Err(e) => {
                let copy = io::Error::new(e.kind(), e.to_string());
                self.error = Some(e);
                return Err(copy);
            }
        };
        self.sha.update(&buf[..n]);
        self.remaining -= n as u64;
        Ok(n)
    }
}

pub(super) fn os(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `root/rel` for a message, its middle left out when long (a refused path may be 30 KB).
fn shortened(root: &Utf8Path, rel: &[u8]) -> String {
    const KEEP: usize = 160;
    let rel = lossy(rel);
    if rel.len() <= 2 * KEEP {
        return format!("{root}/{rel}");
    }
    let head = rel.floor_char_boundary(KEEP);
    let tail = rel.ceil_char_boundary(rel.len() - KEEP);
    format!("{root}/{}…{}", &rel[..head], &rel[tail..])
}

/// What the extraction could not make, refused when the archive is read (before anything is
/// changed): a path deeper than [`MAX_DEPTH`], a name longer than a file system holds.
fn check_restorable(rel: &[u8]) -> Result<(), String> {
    if rel.is_empty() {
        return Ok(());
    }
    let mut depth = 0;
    for comp in rel.split(|b| *b == b'/') {
        depth += 1;
        if comp.len() > MAX_NAME {
            return Err(format!(
                "a name of {} bytes; file systems hold at most {MAX_NAME}",
                comp.len()
            ));
        }
    }
    if depth > MAX_DEPTH {
        return Err(format!(
            "it lies {depth} names deep; the controller restores at most {MAX_DEPTH}"
        ));
    }
    Ok(())
}

pub(super) fn tar_mtime(meta_mtime: i64) -> i64 {
    // ustar cannot hold times before 1970; such files come back stamped 1970-01-01.
    meta_mtime.max(0)
}

// `struct stat` field types differ between architectures; the casts are no-ops on x86_64.
#[allow(clippy::unnecessary_cast)]
fn base_header(kind: tar::EntryType, st: &rustix::fs::Stat) -> (tar::Header, u32, i64) {
    let mode = st.st_mode as u32 & 0o7777;
    let mtime = tar_mtime(st.st_mtime as i64);
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime as u64);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_size(0);
    (h, mode, mtime)
}

fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// One folder being written: its descriptor, path below the root, and the children not yet
/// written (sorted, popped from the end).
struct Frame {
    fd: OwnedFd,
    rel: Vec<u8>,
    pending: Vec<Vec<u8>>,
}

/// Writes `root` as entries `prefix` (the root folder), `prefix + rel` … in pre-order with
/// sorted siblings. `prefix` is `web/<n>/`, or empty for a plain tree tar (root entry `./`).
///
/// The root is opened with [`dirfd::open_dir_nofollow`] (a root that is a symlink, or lies
/// under one a tenant could have placed, is refused); everything below is reached through the
/// descriptors of the folders above it with `O_NOFOLLOW`, so a folder swapped for a symlink
/// mid-walk is skipped or archived as the symlink it now is, never followed.
pub(super) fn write_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Utf8Path,
    prefix: &[u8],
    part: &str,
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

    let root_fd = dirfd::open_dir_nofollow(root.as_std_path()).map_err(|e| source_err(b"", e))?;
    let st = rustix::fs::fstat(&root_fd).map_err(|e| source_err(b"", e.into()))?;
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
                let file = File::from(fd);
                let st = rustix::fs::fstat(&file).map_err(|e| source_err(&rel, e.into()))?;
                if file_type(&st) != FileType::RegularFile {
                    continue;
                }
                let size = st.st_size as u64;
                let (mut h, mode, mtime) = base_header(tar::EntryType::Regular, &st);
                h.set_size(size);
                hasher.file(&rel, mode, mtime, size);
                let mut reader = HashingTake::new(
                    BufReader::with_capacity(COPY_BUF, file),
                    size,
                    &mut hasher.sha,
                    WhenShort::Pad,
                );
                if let Err(e) =
                    builder.append_data(&mut h, os(&entry_name(&rel, false)), &mut reader)
                {
                    return Err(match reader.error.take() {
                        Some(src) => source_err(&rel, src),
                        None => write_err(e),
                    });
                }
                if reader.padded > 0 {
                    warnings.push(format!(
                        "{}: shrank by {} bytes while being read; padded with zeros",
                        lossy(&rel),
                        reader.padded
                    ));
                } else {
                    let mut probe = [0u8; 1];
                    if matches!(reader.inner.read(&mut probe), Ok(1)) {
                        warnings.push(format!(
                            "{}: grew while being read; archived its first {size} bytes",
                            lossy(&rel)
                        ));
                    }
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

// ---------------------------------------------------------------------------------------------
// Reading

/// Checks a path relative to a tree's root: `/`-separated, no empty, `.` or `..` component,
/// not absolute. The root itself is the empty path. A trailing `/` (folders) is dropped.
pub(super) fn check_rel(rel: &[u8]) -> Result<&[u8], &'static str> {
    let rel = rel.strip_suffix(b"/").unwrap_or(rel);
    if rel.is_empty() {
        return Ok(rel);
    }
    if rel.starts_with(b"/") {
        return Err("absolute path");
    }
    for comp in rel.split(|b| *b == b'/') {
        match comp {
            b"" => return Err("empty path component"),
            b"." => return Err("`.` path component"),
            b".." => return Err("`..` path component"),
            c if c.contains(&0) => return Err("NUL in path"),
            _ => {}
        }
    }
    Ok(rel)
}

/// Which side of a copy failed: the archive (read) or the destination (write).
pub(super) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    pub(super) fn into_read(self) -> io::Error {
        match self {
            CopyError::Read(e) | CopyError::Write(e) => e,
        }
    }
}

/// Hashing copy with a reused buffer: the tar entry's reads go straight into SHA-256 and,
/// when extracting, into the destination.
pub(super) fn copy_hashing(
    src: &mut dyn Read,
    sha: &mut Sha256,
    mut dst: Option<&mut dyn Write>,
    buf: &mut Vec<u8>,
) -> Result<u64, CopyError> {
    if buf.len() < COPY_BUF {
        buf.resize(COPY_BUF, 0);
    }
    let mut total = 0u64;
    loop {
        let n = match src.read(buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        sha.update(&buf[..n]);
        if let Some(d) = dst.as_deref_mut() {
            d.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        total += n as u64;
    }
}

/// Consumes the entries of one tree (hashing them), and writes them under `dest` if given.
pub(super) struct TreeReader {
    hasher: TreeHasher,
    extract: Option<Extractor>,
    archive: Utf8PathBuf,
    part: String,
    buf: Vec<u8>,
}

impl TreeReader {
    pub(super) fn new(
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
        Ok(TreeReader {
            hasher: TreeHasher::new(),
            extract,
            archive: archive.to_owned(),
            part: part.to_owned(),
            buf: Vec::new(),
        })
    }

    /// One entry; `name` is the whole tar path (for messages), `rel` the part below the root.
    pub(super) fn entry<R: Read>(
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
        match kind {
            tar::EntryType::Directory => {
                self.hasher.dir(rel, mode, mtime);
                if let Some(x) = &mut self.extract {
                    x.dir(rel, mode, mtime)
                        .map_err(|e| extract_err(&self.archive, &self.part, &lossy(rel), e))?;
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
                        entry,
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
    pub(super) fn finish(self) -> Result<TreeStats, ArchiveError> {
        if let Some(x) = self.extract {
            x.finish()
                .map_err(|(p, e)| extract_err(&self.archive, &self.part, &p, e))?;
        }
        Ok(self.hasher.finish())
    }
}

pub(super) fn extract_err(
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
fn restored_mode(mode: u32) -> u32 {
    mode & 0o1777
}

/// Folders keep setgid: on a folder it only makes new files inherit the folder's group (web
/// hosts set it on upload folders), it grants nobody anything; setuid means nothing there.
fn restored_dir_mode(mode: u32) -> u32 {
    mode & 0o3777
}

fn mtime_only(mtime: i64) -> Timestamps {
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

fn not_a_folder(dest: &Utf8Path, rel: &[u8]) -> io::Error {
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
struct Extractor {
    dest: Utf8PathBuf,
    root: OwnedFd,
    /// The open folders from the root down to the last entry's folder: (name, descriptor).
    chain: Vec<(Vec<u8>, OwnedFd)>,
    /// (path below the root, mode, mtime) of every folder entry, applied in reverse at the end.
    dirs: Vec<(Vec<u8>, u32, i64)>,
    /// Owner given to everything created.
    owner: Option<(rustix::fs::Uid, rustix::fs::Gid)>,
}

impl Extractor {
    fn new(dest: &Utf8Path, owner: Option<&Account>) -> io::Result<Self> {
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

    fn chown_fd(&self, fd: BorrowedFd<'_>) -> io::Result<()> {
        if let Some((uid, gid)) = self.owner {
            rustix::fs::fchown(fd, Some(uid), Some(gid))?;
        }
        Ok(())
    }

    /// The open folder holding `rel` (opened, or created, from the folders above it), and the
    /// last component of `rel`.
    fn parent<'r>(&mut self, rel: &'r [u8]) -> io::Result<(BorrowedFd<'_>, &'r [u8])> {
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
    fn descend(&mut self, dirs: &[u8], create: bool) -> io::Result<BorrowedFd<'_>> {
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
    fn clear(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
        match rustix::fs::unlinkat(dir, OsStr::from_bytes(name), AtFlags::empty()) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => Ok(()),
            Err(rustix::io::Errno::ISDIR | rustix::io::Errno::PERM) => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a folder in the way", lossy(name)),
            )),
            Err(e) => Err(e.into()),
        }
    }

    fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) -> io::Result<()> {
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

    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        src: &mut dyn Read,
        sha: &mut Sha256,
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
        let mut out = BufWriter::with_capacity(COPY_BUF, File::from(fd));
        let copied = match copy_hashing(src, sha, Some(&mut out), buf) {
            Ok(n) => n,
            Err(CopyError::Write(e)) => return Err(fail(e)),
            Err(CopyError::Read(e)) => return Err(read_error(archive, Some(part), e)),
        };
        let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
        rustix::fs::fchmod(&file, Mode::from_raw_mode(restored_mode(mode)))
            .map_err(|e| fail(e.into()))?;
        rustix::fs::futimens(&file, &mtime_only(mtime)).map_err(|e| fail(e.into()))?;
        Ok(copied)
    }

    fn symlink(&mut self, rel: &[u8], mtime: i64, target: &[u8]) -> io::Result<()> {
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

    fn finish(mut self) -> Result<(), (String, io::Error)> {
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
    let mut builder = tar::Builder::new(BufWriter::with_capacity(COPY_BUF, out));
    let stats = write_tree(&mut builder, dir, b"", dir.as_str())?;
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
