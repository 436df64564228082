//! Web folders as tar entries: the walk that writes them, the canonical record stream their
//! SHA-256 covers, and the extraction that puts them back without ever following a symlink.

use std::collections::HashSet;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, Mode, OFlags, Timestamps};
use sha2::{Digest, Sha256};

use super::ArchiveError;
use super::codec::read_error;

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

/// The canonical record stream of a tree, hashed as it goes; see docs/backup-format.md.
pub(super) struct TreeHasher {
    sha: Sha256,
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

    fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) {
        self.record(KIND_DIR, rel, mode, mtime);
        self.stats.dirs += 1;
    }

    fn file(&mut self, rel: &[u8], mode: u32, mtime: i64, size: u64) {
        self.record(KIND_FILE, rel, mode, mtime);
        self.sha.update(size.to_be_bytes());
        self.stats.files += 1;
        self.stats.bytes += size;
    }

    fn symlink(&mut self, rel: &[u8], mode: u32, mtime: i64, target: &[u8]) {
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

fn os(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn tar_mtime(meta_mtime: i64) -> i64 {
    // ustar cannot hold times before 1970; such files come back stamped 1970-01-01.
    meta_mtime.max(0)
}

fn base_header(kind: tar::EntryType, meta: &fs::Metadata) -> (tar::Header, u32, i64) {
    let mode = meta.mode() & 0o7777;
    let mtime = tar_mtime(meta.mtime());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime as u64);
    h.set_uid(u64::from(meta.uid()));
    h.set_gid(u64::from(meta.gid()));
    h.set_size(0);
    (h, mode, mtime)
}

fn nofollow_flag() -> i32 {
    OFlags::NOFOLLOW.bits() as i32
}

/// Lists a folder through a descriptor opened with O_NOFOLLOW, so a folder swapped for a
/// symlink mid-walk is refused instead of followed. Names come back sorted for a stable order.
fn list_dir(path: &Path, follow: bool) -> io::Result<Vec<Vec<u8>>> {
    let mut flags = OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC;
    if !follow {
        flags |= OFlags::NOFOLLOW;
    }
    let fd = rustix::fs::open(path, flags, Mode::empty())?;
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(&fd)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    names.sort_unstable();
    Ok(names)
}

/// Writes `root` as entries `prefix` (the root folder), `prefix + rel` … in pre-order with
/// sorted siblings. `prefix` is `web/<n>/`, or empty for a plain tree tar (root entry `./`).
pub(super) fn write_tree<W: Write>(
    builder: &mut tar::Builder<W>,
    root: &Utf8Path,
    prefix: &[u8],
    part: &str,
) -> Result<TreeStats, ArchiveError> {
    let source_err = |path: &Path, e: io::Error| ArchiveError::ReadSource {
        part: part.to_owned(),
        path: Utf8PathBuf::from(path.to_string_lossy().into_owned()),
        source: e,
    };
    let write_err = |e: io::Error| ArchiveError::WriteArchive {
        part: part.to_owned(),
        source: e,
    };
    let mut hasher = TreeHasher::new();
    let mut warnings = Vec::new();
    // Pending (absolute path, path relative to root), popped from the end.
    let mut stack: Vec<(PathBuf, Vec<u8>)> = vec![(root.as_std_path().to_owned(), Vec::new())];
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

    while let Some((abs, rel)) = stack.pop() {
        let is_root = rel.is_empty();
        // The root may be a symlink the caller chose; nothing below it is ever followed.
        let meta = if is_root {
            fs::metadata(&abs)
        } else {
            fs::symlink_metadata(&abs)
        };
        let meta = match meta {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !is_root => continue, // vanished
            Err(e) => return Err(source_err(&abs, e)),
        };
        let ft = meta.file_type();
        if ft.is_dir() {
            let names = match list_dir(&abs, is_root) {
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::NotFound && !is_root => continue,
                Err(e) => return Err(source_err(&abs, e)),
            };
            let (mut h, mode, mtime) = base_header(tar::EntryType::Directory, &meta);
            builder
                .append_data(&mut h, os(&entry_name(&rel, true)), io::empty())
                .map_err(write_err)?;
            hasher.dir(&rel, mode, mtime);
            for name in names.into_iter().rev() {
                let mut child_rel = rel.clone();
                if !child_rel.is_empty() {
                    child_rel.push(b'/');
                }
                child_rel.extend_from_slice(&name);
                stack.push((abs.join(OsStr::from_bytes(&name)), child_rel));
            }
        } else if ft.is_file() {
            let file = match fs::OpenOptions::new()
                .read(true)
                .custom_flags(nofollow_flag())
                .open(&abs)
            {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(source_err(&abs, e)),
            };
            // Describe what was opened, not what lstat saw a moment before.
            let meta = file.metadata().map_err(|e| source_err(&abs, e))?;
            if !meta.is_file() {
                continue;
            }
            let size = meta.len();
            let (mut h, mode, mtime) = base_header(tar::EntryType::Regular, &meta);
            h.set_size(size);
            hasher.file(&rel, mode, mtime, size);
            let mut reader = HashingTake::new(
                BufReader::with_capacity(COPY_BUF, file),
                size,
                &mut hasher.sha,
                WhenShort::Pad,
            );
            if let Err(e) = builder.append_data(&mut h, os(&entry_name(&rel, false)), &mut reader) {
                return Err(match reader.error.take() {
                    Some(src) => source_err(&abs, src),
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
        } else if ft.is_symlink() {
            let target = match fs::read_link(&abs) {
                Ok(t) => t,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(source_err(&abs, e)),
            };
            let (mut h, mode, mtime) = base_header(tar::EntryType::Symlink, &meta);
            builder
                .append_link(&mut h, os(&entry_name(&rel, false)), &target)
                .map_err(write_err)?;
            hasher.symlink(&rel, mode, mtime, target.as_os_str().as_bytes());
        } else {
            hasher.stats.skipped_specials += 1;
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
    ) -> Result<Self, ArchiveError> {
        let extract = dest
            .map(|d| Extractor::new(d).map_err(|e| extract_err(archive, part, d.as_str(), e)))
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

fn set_mtime_nofollow(path: &Path, mtime: i64) -> io::Result<()> {
    let times = Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: mtime,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(rustix::fs::CWD, path, &times, AtFlags::SYMLINK_NOFOLLOW)?;
    Ok(())
}

/// Writes entries under a destination folder. Every parent is checked with lstat to be a real
/// folder (never a symlink) before anything is created in it; files are created with
/// O_NOFOLLOW|O_EXCL; an existing file or symlink in the way is unlinked (never followed).
struct Extractor {
    dest: PathBuf,
    /// Folders known to be real folders (checked or created by us), below `dest`.
    checked: HashSet<PathBuf>,
    /// (path, mode, mtime) of every folder entry, applied in reverse at the end.
    dirs: Vec<(PathBuf, u32, i64)>,
}

impl Extractor {
    fn new(dest: &Utf8Path) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dest)?;
        // The caller's destination may itself be a symlink they chose; resolve it once.
        let dest = fs::canonicalize(dest)?;
        Ok(Extractor {
            dest,
            checked: HashSet::new(),
            dirs: Vec::new(),
        })
    }

    fn path_of(&self, rel: &[u8]) -> PathBuf {
        if rel.is_empty() {
            self.dest.clone()
        } else {
            self.dest.join(os(rel))
        }
    }

    /// Makes sure every folder above `rel` is a real folder, creating missing ones.
    fn parents(&mut self, rel: &[u8]) -> io::Result<()> {
        let mut end = 0;
        while let Some(pos) = rel[end..].iter().position(|b| *b == b'/') {
            end += pos;
            let p = self.dest.join(os(&rel[..end]));
            end += 1;
            if self.checked.contains(&p) {
                continue;
            }
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    return Err(io::Error::other(format!(
                        "{} is not a folder (symlink or file); refusing to write through it",
                        p.display()
                    )));
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new().mode(0o755).create(&p)?;
                }
                Err(e) => return Err(e),
            }
            self.checked.insert(p);
        }
        Ok(())
    }

    /// Unlinks a file or symlink at `p`; refuses to replace a folder.
    fn clear(&mut self, p: &Path) -> io::Result<()> {
        match fs::symlink_metadata(p) {
            Ok(m) if m.file_type().is_dir() => Err(io::Error::new(
                io::ErrorKind::AlreadyExists,
                format!("{} is a folder in the way", p.display()),
            )),
            Ok(_) => {
                self.checked.remove(p);
                fs::remove_file(p)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) -> io::Result<()> {
        let p = self.path_of(rel);
        if !rel.is_empty() {
            self.parents(rel)?;
            match fs::symlink_metadata(&p) {
                Ok(m) if m.file_type().is_dir() => {}
                Ok(_) => {
                    self.clear(&p)?;
                    fs::DirBuilder::new().mode(0o700).create(&p)?;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {
                    fs::DirBuilder::new().mode(0o700).create(&p)?;
                }
                Err(e) => return Err(e),
            }
            self.checked.insert(p.clone());
        }
        self.dirs.push((p, mode, mtime));
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
        let p = self.path_of(rel);
        let fail = |e| extract_err(archive, part, &p.to_string_lossy(), e);
        self.parents(rel).map_err(fail)?;
        self.clear(&p).map_err(fail)?;
        let file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(nofollow_flag())
            .open(&p)
            .map_err(fail)?;
        let mut out = BufWriter::with_capacity(COPY_BUF, file);
        let copied = match copy_hashing(src, sha, Some(&mut out), buf) {
            Ok(n) => n,
            Err(CopyError::Write(e)) => return Err(fail(e)),
            Err(CopyError::Read(e)) => return Err(read_error(archive, Some(part), e)),
        };
        let file = out.into_inner().map_err(|e| fail(e.into_error()))?;
        file.set_permissions(fs::Permissions::from_mode(restored_mode(mode)))
            .map_err(fail)?;
        file.set_modified(system_time(mtime)).map_err(fail)?;
        Ok(copied)
    }

    fn symlink(&mut self, rel: &[u8], mtime: i64, target: &[u8]) -> io::Result<()> {
        let p = self.path_of(rel);
        self.parents(rel)?;
        self.clear(&p)?;
        std::os::unix::fs::symlink(os(target), &p)?;
        set_mtime_nofollow(&p, mtime)
    }

    fn finish(self) -> Result<(), (String, io::Error)> {
        for (p, mode, mtime) in self.dirs.iter().rev() {
            let fail = |e| (p.to_string_lossy().into_owned(), e);
            // Open with O_NOFOLLOW so a folder swapped for a symlink is not chmod-ed through.
            let fd = rustix::fs::open(
                p,
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )
            .map_err(|e| fail(e.into()))?;
            rustix::fs::fchmod(fd.as_fd(), Mode::from_raw_mode(restored_dir_mode(*mode)))
                .map_err(|e| fail(e.into()))?;
            let times = Timestamps {
                last_access: rustix::fs::Timespec {
                    tv_sec: 0,
                    tv_nsec: rustix::fs::UTIME_OMIT,
                },
                last_modification: rustix::fs::Timespec {
                    tv_sec: *mtime,
                    tv_nsec: 0,
                },
            };
            rustix::fs::futimens(fd.as_fd(), &times).map_err(|e| fail(e.into()))?;
        }
        Ok(())
    }
}

fn system_time(mtime: i64) -> std::time::SystemTime {
    let base = std::time::UNIX_EPOCH;
    if mtime >= 0 {
        base + std::time::Duration::from_secs(mtime as u64)
    } else {
        base - std::time::Duration::from_secs(mtime.unsigned_abs())
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
/// `owner`, everything created below `dest` belongs to that account (symlinks not followed).
pub fn restore_tree(
    tar_path: &Utf8Path,
    dest: &Utf8Path,
    owner: Option<&crate::account::Account>,
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
    owner: Option<&crate::account::Account>,
) -> Result<TreeStats, ArchiveError> {
    let mut archive = tar::Archive::new(input);
    let mut tree = TreeReader::new(label, "tree", Some(dest))?;
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
    let stats = tree.finish()?;
    if let Some(owner) = owner {
        crate::account::chown_tree(dest, owner)
            .map_err(|e| extract_err(label, "tree", dest.as_str(), e))?;
    }
    Ok(stats)
}
