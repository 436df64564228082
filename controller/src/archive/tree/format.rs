//! What the walk and the extraction share: the tree's statistics, the record kinds and
//! bounds of the canonical stream, tar headers and times, and the checks of entry names.

use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use camino::Utf8Path;
use rustix::fs::FileType;

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

pub(in crate::archive) const KIND_DIR: u8 = b'd';
pub(in crate::archive) const KIND_FILE: u8 = b'f';
pub(in crate::archive) const KIND_SYMLINK: u8 = b'l';
pub(in crate::archive) const KIND_SPARSE: u8 = b's';
pub(in crate::archive) const COPY_BUF: usize = 256 * 1024;
/// Most data extents a sparse file entry may list: bounds the map a reader holds in memory.
/// A file with more is archived whole (its holes read as zeros).
pub(in crate::archive) const MAX_EXTENTS: usize = 1 << 16;
/// The PAX keys of a GNU sparse file, format 1.0 (what `tar --sparse --format=pax` writes).
pub(in crate::archive) const PAX_SPARSE_MAJOR: &str = "GNU.sparse.major";
pub(in crate::archive) const PAX_SPARSE_MINOR: &str = "GNU.sparse.minor";
pub(in crate::archive) const PAX_SPARSE_NAME: &str = "GNU.sparse.name";
pub(in crate::archive) const PAX_SPARSE_REALSIZE: &str = "GNU.sparse.realsize";

/// One data extent of a sparse file: `len` bytes at `offset`; everything else is a hole.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::archive) struct Extent {
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
pub(in crate::archive) const MAX_NAME: usize = 255;
/// Longest symlink target `symlinkat` takes (`PATH_MAX` with its NUL).
pub(in crate::archive) const MAX_LINK_TARGET: usize = 4095;

pub(in crate::archive) fn os(bytes: &[u8]) -> &Path {
    Path::new(OsStr::from_bytes(bytes))
}

pub(in crate::archive) fn lossy(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `root/rel` for a message, its middle left out when long (a refused path may be 30 KB).
pub(in crate::archive) fn shortened(root: &Utf8Path, rel: &[u8]) -> String {
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
pub(in crate::archive) fn check_restorable(rel: &[u8]) -> Result<(), String> {
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

pub(in crate::archive) fn tar_mtime(meta_mtime: i64) -> i64 {
    // ustar cannot hold times before 1970; such files come back stamped 1970-01-01.
    meta_mtime.max(0)
}

/// The header of an ordinary entry (old GNU).
pub(in crate::archive) fn base_header(
    kind: tar::EntryType,
    st: &rustix::fs::Stat,
) -> (tar::Header, u32, i64) {
    stat_header(tar::Header::new_gnu(), kind, st)
}

/// The header of a sparse entry: POSIX ustar (GNU tar reads the PAX sparse keys only before
/// a ustar header, not an old-GNU one).
pub(in crate::archive) fn sparse_header(st: &rustix::fs::Stat) -> (tar::Header, u32, i64) {
    stat_header(tar::Header::new_ustar(), tar::EntryType::Regular, st)
}

/// `h` given `kind` and the mode, time and owner of `st`, size 0; with the mode and time it
/// holds.
// `struct stat` field types differ between architectures; the casts are no-ops on x86_64.
#[allow(clippy::unnecessary_cast)]
fn stat_header(
    mut h: tar::Header,
    kind: tar::EntryType,
    st: &rustix::fs::Stat,
) -> (tar::Header, u32, i64) {
    let mode = st.st_mode as u32 & 0o7777;
    let mtime = tar_mtime(st.st_mtime as i64);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime as u64);
    h.set_uid(u64::from(st.st_uid));
    h.set_gid(u64::from(st.st_gid));
    h.set_size(0);
    (h, mode, mtime)
}

pub(in crate::archive) fn file_type(st: &rustix::fs::Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// Checks a path relative to a tree's root: `/`-separated, no empty, `.` or `..` component,
/// not absolute. The root itself is the empty path. A trailing `/` (folders) is dropped.
pub(in crate::archive) fn check_rel(rel: &[u8]) -> Result<&[u8], &'static str> {
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
