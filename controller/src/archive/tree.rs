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
const KIND_SPARSE: u8 = b's';
const COPY_BUF: usize = 256 * 1024;
/// Most data extents a sparse file entry may list: bounds the map a reader holds in memory.
/// A file with more is archived whole (its holes read as zeros).
pub(super) const MAX_EXTENTS: usize = 1 << 16;
/// The PAX keys of a GNU sparse file, format 1.0 (what `tar --sparse --format=pax` writes).
const PAX_SPARSE_MAJOR: &str = "GNU.sparse.major";
const PAX_SPARSE_MINOR: &str = "GNU.sparse.minor";
const PAX_SPARSE_NAME: &str = "GNU.sparse.name";
const PAX_SPARSE_REALSIZE: &str = "GNU.sparse.realsize";

/// One data extent of a sparse file: `len` bytes at `offset`; everything else is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Extent {
    pub offset: u64,
    pub len: u64,
}

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

    /// A sparse file: its apparent size and data extents are hashed, then only the extents'
    /// bytes (as they follow), so holes cost nothing to hash.
    pub(super) fn sparse_file(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        size: u64,
        extents: &[Extent],
    ) {
        self.record(KIND_SPARSE, rel, mode, mtime);
        self.sha.update(size.to_be_bytes());
        self.sha.update((extents.len() as u64).to_be_bytes());
        for e in extents {
            self.sha.update(e.offset.to_be_bytes());
            self.sha.update(e.len.to_be_bytes());
        }
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

impl<R> HashingTake<'_, R> {
    /// What made an append through this reader fail: the source (a read error, or its early
    /// end under [`WhenShort::Fail`]) or the archive.
    pub(super) fn blame(&mut self, append: io::Error) -> CopyError {
        match self.error.take() {
            Some(e) => CopyError::Read(e),
            None if self.short => CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                append.to_string(),
            )),
            None => CopyError::Write(append),
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

/// The header of a sparse entry: POSIX ustar (GNU tar reads the PAX sparse keys only before
/// a ustar header, not an old-GNU one).
#[allow(clippy::unnecessary_cast)]
fn sparse_header(st: &rustix::fs::Stat) -> (tar::Header, u32, i64) {
    let mode = st.st_mode as u32 & 0o7777;
    let mtime = tar_mtime(st.st_mtime as i64);
    let mut h = tar::Header::new_ustar();
    h.set_entry_type(tar::EntryType::Regular);
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
                let mut reader = HashingTake::new(
                    BufReader::with_capacity(COPY_BUF, file),
                    size,
                    &mut hasher.sha,
                    WhenShort::Pad,
                );
                if let Err(e) =
                    builder.append_data(&mut h, os(&entry_name(&rel, false)), &mut reader)
                {
                    return Err(copy_err(&rel, reader.blame(e)));
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

    fn entry(&self, count: &mut WalkCount, path: &Utf8Path) -> Result<(), ArchiveError> {
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

    fn bytes(&self, count: &mut WalkCount, data: u64, path: &Utf8Path) -> Result<(), ArchiveError> {
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
    fn check_links(&self, st: &rustix::fs::Stat, path: &Utf8Path) -> Result<(), ArchiveError> {
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

/// The data extents of a file with fewer allocated blocks than its size (`SEEK_DATA` /
/// `SEEK_HOLE`), or `None` to read it whole: not sparse, a file system without hole
/// reporting, too many extents, or a file changing under the walk. The file's offset is left
/// at 0.
#[allow(clippy::unnecessary_cast)]
fn data_extents(file: &mut File, st: &rustix::fs::Stat) -> io::Result<Option<Vec<Extent>>> {
    use std::io::Seek;
    let size = st.st_size as u64;
    if size == 0 || (st.st_blocks as u64).saturating_mul(512) >= size {
        return Ok(None);
    }
    let mut extents = Vec::new();
    let mut pos = 0u64;
    let found = loop {
        if pos >= size {
            break true;
        }
        let start = match rustix::fs::seek(&*file, rustix::fs::SeekFrom::Data(pos)) {
            Ok(o) => o,
            Err(rustix::io::Errno::NXIO) => break true, // only a hole is left
            Err(_) => break false,
        };
        if start >= size {
            break true;
        }
        let end = match rustix::fs::seek(&*file, rustix::fs::SeekFrom::Hole(start)) {
            Ok(o) => o.min(size),
            Err(_) => break false,
        };
        if end <= start || extents.len() == MAX_EXTENTS {
            break false;
        }
        extents.push(Extent {
            offset: start,
            len: end - start,
        });
        pos = end;
    };
    file.seek(io::SeekFrom::Start(0))?;
    let whole = extents.len() == 1 && extents[0].offset == 0 && extents[0].len == size;
    // A file ending in a hole ends its map with an empty extent at its size, as GNU tar's
    // does (its extraction takes the size from there).
    if extents.last().is_none_or(|e| e.offset + e.len < size) {
        extents.push(Extent {
            offset: size,
            len: 0,
        });
    }
    Ok((found && !whole).then_some(extents))
}

/// A regular file read whole, as a reader that never `read()`s its holes: the holes'
/// zeros come from memory, only the data extents (`SEEK_DATA`/`SEEK_HOLE`, as the archive's
/// sparse entries find them) come from the disk. Reads stop at the size the file had when it
/// was opened; a file that shrinks meanwhile is an error (`UnexpectedEof`), not a short read.
/// For a consumer that needs every byte (the repository engine chunks and hashes them).
pub struct HoleAwareFile {
    file: File,
    size: u64,
    /// Data extents, in order; `None`: the file is read whole (not sparse).
    extents: Option<Vec<Extent>>,
    pos: u64,
    /// First extent not wholly before `pos`.
    next: usize,
}

impl HoleAwareFile {
    /// `file` opened for reading, its offset at 0; `st` its `fstat`.
    #[allow(clippy::unnecessary_cast)]
    pub fn new(mut file: File, st: &rustix::fs::Stat) -> io::Result<Self> {
        let extents = data_extents(&mut file, st)?;
        Ok(HoleAwareFile {
            file,
            size: st.st_size as u64,
            extents,
            pos: 0,
            next: 0,
        })
    }

    /// Bytes of the file's size that are data on the disk (all of them when not sparse):
    /// what reading it costs the disk.
    pub fn data_bytes(&self) -> u64 {
        self.extents
            .as_ref()
            .map_or(self.size, |x| x.iter().map(|e| e.len).sum())
    }

    /// The size it had when opened: how many bytes it reads.
    pub fn size(&self) -> u64 {
        self.size
    }
}

impl Read for HoleAwareFile {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let left = self.size - self.pos;
        if left == 0 || buf.is_empty() {
            return Ok(0);
        }
        let want = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
        // Where the data ends (and holes begin) from `pos`, or where the next data begins.
        let (data, until) = match &self.extents {
            None => (true, self.size),
            Some(extents) => {
                while self.next < extents.len()
                    && extents[self.next].offset + extents[self.next].len <= self.pos
                {
                    self.next += 1;
                }
                match extents.get(self.next) {
                    Some(e) if e.offset <= self.pos => (true, e.offset + e.len),
                    Some(e) => (false, e.offset.min(self.size)),
                    None => (false, self.size),
                }
            }
        };
        let n = want.min(usize::try_from(until - self.pos).unwrap_or(usize::MAX));
        if !data {
            buf[..n].fill(0);
            self.pos += n as u64;
            return Ok(n);
        }
        let got = self.file.read_at(&mut buf[..n], self.pos)?;
        if got == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!(
                    "the file shrank while being read ({} bytes of {})",
                    self.pos, self.size
                ),
            ));
        }
        self.pos += got as u64;
        Ok(got)
    }
}

/// One PAX extended header record: `"<len> <key>=<value>\n"`, `len` counting itself.
fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
    let rest = key.len() + value.len() + 3;
    let mut len = rest + rest.to_string().len();
    if len.to_string().len() + rest != len {
        len = rest + len.to_string().len();
    }
    out.extend_from_slice(format!("{len} {key}=").as_bytes());
    out.extend_from_slice(value);
    out.push(b'\n');
}

/// The map at the start of a sparse entry's data: the extent count, then each extent's offset
/// and length, one decimal number a line, padded with zeros to a 512-byte block.
fn sparse_map(extents: &[Extent]) -> Vec<u8> {
    let mut map = format!("{}\n", extents.len()).into_bytes();
    for e in extents {
        map.extend_from_slice(format!("{}\n{}\n", e.offset, e.len).as_bytes());
    }
    map.resize(map.len().div_ceil(512) * 512, 0);
    map
}

/// Writes a sparse file as GNU tar's PAX sparse format 1.0 (what `tar --sparse --format=pax`
/// writes, and what GNU tar and bsdtar extract as a sparse file): a PAX header naming the real
/// size, then a regular entry holding the map and the data extents only. Returns the zeros
/// padded in for data that vanished while being read.
fn write_sparse<W: Write>(
    builder: &mut tar::Builder<W>,
    mut h: tar::Header,
    name: &[u8],
    size: u64,
    extents: &[Extent],
    file: File,
    sha: &mut Sha256,
) -> Result<u64, CopyError> {
    let mut pax = Vec::new();
    pax_record(&mut pax, PAX_SPARSE_MAJOR, b"1");
    pax_record(&mut pax, PAX_SPARSE_MINOR, b"0");
    pax_record(&mut pax, PAX_SPARSE_NAME, name);
    pax_record(&mut pax, PAX_SPARSE_REALSIZE, size.to_string().as_bytes());
    // A name too long for the ustar header goes into the PAX header (readers take `path`).
    let fits = h.set_path(os(name)).is_ok();
    if !fits {
        pax_record(&mut pax, "path", name);
        let short = &name[..name.len().min(99)];
        h.as_old_mut().name[..short.len()].copy_from_slice(short);
    }
    let mut ph = tar::Header::new_ustar();
    ph.set_entry_type(tar::EntryType::XHeader);
    ph.set_path("././@PaxHeader").map_err(CopyError::Write)?;
    ph.set_mode(0o644);
    ph.set_mtime(0);
    ph.set_size(pax.len() as u64);
    ph.set_cksum();
    builder.append(&ph, &pax[..]).map_err(CopyError::Write)?;
    let map = sparse_map(extents);
    let data: u64 = extents.iter().map(|e| e.len).sum();
    h.set_size(map.len() as u64 + data);
    h.set_cksum();
    let mut src = SparseSource {
        map: io::Cursor::new(map),
        file,
        extents,
        next: 0,
        left: 0,
        sha,
        padded: 0,
        error: None,
    };
    if let Err(e) = builder.append(&h, &mut src) {
        return Err(match src.error.take() {
            Some(e) => CopyError::Read(e),
            None => CopyError::Write(e),
        });
    }
    Ok(src.padded)
}

/// The data of a sparse entry: its map, then each extent read at its offset and hashed. A
/// source that ends early is padded with zeros, as a dense web file is.
struct SparseSource<'a> {
    map: io::Cursor<Vec<u8>>,
    file: File,
    extents: &'a [Extent],
    next: usize,
    left: u64,
    sha: &'a mut Sha256,
    padded: u64,
    error: Option<io::Error>,
}

impl Read for SparseSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Seek;
        let n = self.map.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        while self.left == 0 {
            let Some(e) = self.extents.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            self.left = e.len;
            if let Err(err) = self.file.seek(io::SeekFrom::Start(e.offset)) {
                let copy = io::Error::new(err.kind(), err.to_string());
                self.error = Some(err);
                return Err(copy);
            }
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = match self.file.read(&mut buf[..want]) {
            Ok(0) => {
                buf[..want].fill(0);
                self.padded += want as u64;
                want
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
        self.left -= n as u64;
        Ok(n)
    }
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

/// A regular entry's data as the extractor writes it: dense, or a sparse file's extents
/// (after its map) and real size.
pub(super) struct FileData<'a> {
    src: &'a mut dyn Read,
    layout: Option<(u64, &'a [Extent])>,
}

/// Writes at its own position, seeking over every aligned block of zeros instead of writing
/// it: the file gets holes there once its length is set. The file is new (every byte not
/// written reads as zero), so zeros are never written at all, even those of a block that a
/// write only begins or ends: the block stays a hole when the rest of it is zeros too, however
/// the reader above cut its buffers (a decompressor's are not block-aligned).
struct HoleWriter {
    file: File,
    pos: u64,
}

const HOLE_BLOCK: usize = 4096;

impl Write for HoleWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        use std::os::unix::fs::FileExt;
        let mut i = 0;
        while i < buf.len() {
            // Up to the next block boundary of the file, so holes stay block-aligned.
            let to_edge = HOLE_BLOCK - (self.pos % HOLE_BLOCK as u64) as usize;
            let n = to_edge.min(buf.len() - i);
            let chunk = &buf[i..i + n];
            if chunk.iter().any(|b| *b != 0) {
                // Data: this block and every following non-zero one in one write.
                let mut j = i + n;
                while j < buf.len() {
                    let m = HOLE_BLOCK.min(buf.len() - j);
                    if buf[j..j + m].iter().all(|b| *b == 0) {
                        break;
                    }
                    j += m;
                }
                self.file.write_all_at(&buf[i..j], self.pos)?;
                self.pos += (j - i) as u64;
                i = j;
            } else {
                self.pos += n as u64;
                i += n;
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The real size of a GNU PAX sparse 1.0 entry (`GNU.sparse.major=1`, `minor=0`), `None` for
/// an ordinary file; other sparse formats and a `GNU.sparse.name` other than the entry's own
/// name are refused.
fn sparse_size<R: Read>(entry: &mut tar::Entry<'_, R>, name: &[u8]) -> Result<Option<u64>, String> {
    let Some(pax) = entry
        .pax_extensions()
        .map_err(|e| format!("unreadable PAX header: {e}"))?
    else {
        return Ok(None);
    };
    let (mut major, mut minor, mut sname, mut real) = (None, None, None, None);
    for ext in pax {
        let ext = ext.map_err(|e| format!("unreadable PAX header: {e}"))?;
        let value = ext.value_bytes();
        match ext.key_bytes() {
            b"GNU.sparse.major" => major = Some(value.to_vec()),
            b"GNU.sparse.minor" => minor = Some(value.to_vec()),
            b"GNU.sparse.name" => sname = Some(value.to_vec()),
            b"GNU.sparse.realsize" => real = Some(value.to_vec()),
            k if k.starts_with(b"GNU.sparse.") => {
                return Err("only GNU's PAX sparse format 1.0 is read".into());
            }
            _ => {}
        }
    }
    if major.is_none() && minor.is_none() && sname.is_none() && real.is_none() {
        return Ok(None);
    }
    if major.as_deref() != Some(b"1") || minor.as_deref() != Some(b"0") {
        return Err("only GNU's PAX sparse format 1.0 is read".into());
    }
    if sname.as_deref().is_some_and(|n| n != name) {
        return Err("its GNU.sparse.name differs from its name".into());
    }
    let real = real
        .and_then(|r| decimal(&r))
        .ok_or("a sparse file without a valid GNU.sparse.realsize")?;
    Ok(Some(real))
}

fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

pub(super) enum SparseMapError {
    Read(io::Error),
    Bad(String),
}

/// Reads a sparse entry's map (whole 512-byte blocks) and checks it: at most
/// [`MAX_EXTENTS`] extents, in order, not overlapping, within the real size. Returns the
/// extents and the map's length in the entry.
fn read_sparse_map(src: &mut dyn Read, real: u64) -> Result<(Vec<Extent>, u64), SparseMapError> {
    let bad = |r: &str| SparseMapError::Bad(format!("bad sparse map: {r}"));
    let mut text = Vec::new();
    let mut numbers: Vec<u64> = Vec::new();
    let mut line_start = 0;
    let mut wanted: Option<usize> = None;
    loop {
        let mut block = [0u8; 512];
        src.read_exact(&mut block).map_err(SparseMapError::Read)?;
        text.extend_from_slice(&block);
        while let Some(nl) = text[line_start..].iter().position(|b| *b == b'\n') {
            let n =
                decimal(&text[line_start..line_start + nl]).ok_or_else(|| bad("not a number"))?;
            line_start += nl + 1;
            numbers.push(n);
            if wanted.is_none() {
                let count = usize::try_from(n).ok().filter(|c| *c <= MAX_EXTENTS);
                wanted = Some(1 + 2 * count.ok_or_else(|| bad("too many extents"))?);
            }
            if Some(numbers.len()) == wanted {
                break;
            }
        }
        if Some(numbers.len()) == wanted {
            break;
        }
        // A number is at most 20 digits: a longer line is not a map.
        if text.len() - line_start > 21 {
            return Err(bad("not a number"));
        }
    }
    if text[line_start..].iter().any(|b| *b != 0) {
        return Err(bad("not padded with zeros"));
    }
    let mut extents = Vec::with_capacity(numbers.len() / 2);
    let mut end = 0u64;
    for pair in numbers[1..].chunks(2) {
        let (offset, len) = (pair[0], pair[1]);
        let stop = offset
            .checked_add(len)
            .filter(|s| *s <= real)
            .ok_or_else(|| bad("an extent beyond the file's size"))?;
        if offset < end {
            return Err(bad("extents out of order or overlapping"));
        }
        end = stop;
        extents.push(Extent { offset, len });
    }
    Ok((extents, text.len() as u64))
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

    /// Writes a file; runs of zeros (a sparse entry's holes, and zero blocks of any file)
    /// become holes: skipped with a seek and `set_len`, never written. Returns the data bytes
    /// copied.
    #[allow(clippy::too_many_arguments)]
    fn file(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        data: FileData<'_>,
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
        let mut out = HoleWriter {
            file: File::from(fd),
            pos: 0,
        };
        let copy =
            |src: &mut dyn Read, out: &mut HoleWriter, sha: &mut Sha256, buf: &mut Vec<u8>| {
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
