//! The canonical record stream of a tree and its SHA-256 (docs/backup-format.md): the
//! hasher, the hashing reader the writer appends through, the hashing copy the reader uses.

use std::io::{self, Read, Write};

use sha2::{Digest, Sha256};

use super::format::*;

/// The canonical record stream of a tree, hashed as it goes; see docs/backup-format.md.
pub(in crate::archive) struct TreeHasher {
    pub(in crate::archive) sha: Sha256,
    pub(in crate::archive) stats: TreeStats,
}

impl TreeHasher {
    pub(in crate::archive) fn new() -> Self {
        TreeHasher {
            sha: Sha256::new(),
            stats: TreeStats::default(),
        }
    }

    pub(in crate::archive) fn record(&mut self, kind: u8, rel: &[u8], mode: u32, mtime: i64) {
        self.sha.update([kind]);
        self.sha.update((rel.len() as u32).to_be_bytes());
        self.sha.update(rel);
        self.sha.update((mode & 0o7777).to_be_bytes());
        self.sha.update(mtime.to_be_bytes());
    }

    pub(in crate::archive) fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) {
        self.record(KIND_DIR, rel, mode, mtime);
        self.stats.dirs += 1;
    }

    pub(in crate::archive) fn file(&mut self, rel: &[u8], mode: u32, mtime: i64, size: u64) {
        self.record(KIND_FILE, rel, mode, mtime);
        self.sha.update(size.to_be_bytes());
        self.stats.files += 1;
        self.stats.bytes += size;
    }

    /// A sparse file: its apparent size and data extents are hashed, then only the extents'
    /// bytes (as they follow), so holes cost nothing to hash.
    pub(in crate::archive) fn sparse_file(
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

    pub(in crate::archive) fn symlink(&mut self, rel: &[u8], mode: u32, mtime: i64, target: &[u8]) {
        self.record(KIND_SYMLINK, rel, mode, mtime);
        self.sha.update((target.len() as u32).to_be_bytes());
        self.sha.update(target);
        self.stats.symlinks += 1;
    }

    pub(in crate::archive) fn finish(mut self) -> TreeStats {
        self.stats.sha256 = hex::encode(self.sha.finalize());
        self.stats
    }
}

// ---------------------------------------------------------------------------------------------
// Writing

/// What to do when a source file ends before the size its tar header announced.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(in crate::archive) enum WhenShort {
    /// Pad with zeros so the header stays true (a web file changed by the live site; warned).
    Pad,
    /// Fail the copy (a dump or script file: padding would silently corrupt it).
    Fail,
}

/// Reads exactly `remaining` bytes of a source file into the archive, hashing them. A read
/// error of the source is kept in `error`, apart from failures writing the archive.
pub(in crate::archive) struct HashingTake<'a, R> {
    pub inner: R,
    pub(in crate::archive) remaining: u64,
    pub(in crate::archive) sha: &'a mut Sha256,
    pub(in crate::archive) when_short: WhenShort,
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
    pub(in crate::archive) fn blame(&mut self, append: io::Error) -> CopyError {
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

/// Which side of a copy failed: the archive (read) or the destination (write).
pub(in crate::archive) enum CopyError {
    Read(io::Error),
    Write(io::Error),
}

impl CopyError {
    pub(in crate::archive) fn into_read(self) -> io::Error {
        match self {
            CopyError::Read(e) | CopyError::Write(e) => e,
        }
    }
}

/// Hashing copy with a reused buffer: the tar entry's reads go straight into SHA-256 and,
/// when extracting, into the destination.
pub(in crate::archive) fn copy_hashing(
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
