//! The canonical record stream of a tree and its SHA-256 (docs/backup-format.md): the
//! hasher (on the caller's thread, or on a thread of its own beside an extraction's writes),
//! the hashing reader the writer appends through, the hashing copy the reader uses.

use std::io::{self, Read, Write};
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};

use sha2::{Digest, Sha256};

use super::format::*;

/// What bytes are hashed into: SHA-256 itself, or [`ShaThread`].
pub(in crate::archive) trait Feed {
    fn feed(&mut self, data: &[u8]);
}

impl Feed for Sha256 {
    fn feed(&mut self, data: &[u8]) {
        self.update(data);
    }
}

/// Bytes gathered before they are handed to the hashing thread.
const SHA_CHUNK: usize = 256 * 1024;
/// Chunks queued for the hashing thread (memory: about `SHA_CHUNKS + 2` chunks).
const SHA_CHUNKS: usize = 8;

/// SHA-256 computed on a thread of its own: an extraction hashes and writes side by side.
/// Bytes are gathered into [`SHA_CHUNK`]-byte chunks and queued in order (at most
/// [`SHA_CHUNKS`]); [`finalize`](ShaThread::finalize) waits for the digest.
pub(in crate::archive) struct ShaThread {
    chunks: Option<SyncSender<Vec<u8>>>,
    spent: Receiver<Vec<u8>>,
    pending: Vec<u8>,
    thread: Option<std::thread::JoinHandle<[u8; 32]>>,
}

impl ShaThread {
    pub(in crate::archive) fn new() -> io::Result<Self> {
        let (chunks, queued) = sync_channel::<Vec<u8>>(SHA_CHUNKS);
        let (give_back, spent) = sync_channel::<Vec<u8>>(SHA_CHUNKS + 2);
        let thread = std::thread::Builder::new()
            .name("archive-sha256".into())
            .spawn(move || {
                let mut sha = Sha256::new();
                for chunk in queued {
                    sha.update(&chunk);
                    let _ = give_back.try_send(chunk);
                }
                sha.finalize().into()
            })?;
        Ok(ShaThread {
            chunks: Some(chunks),
            spent,
            pending: Vec::with_capacity(SHA_CHUNK),
            thread: Some(thread),
        })
    }

    fn send_pending(&mut self) {
        let next = self
            .spent
            .try_recv()
            .map(|mut v| {
                v.clear();
                v
            })
            .unwrap_or_else(|_| Vec::with_capacity(SHA_CHUNK));
        let full = std::mem::replace(&mut self.pending, next);
        if let Some(chunks) = &self.chunks {
            // The thread only ends when this sender is dropped.
            let _ = chunks.send(full);
        }
    }

    /// The digest of everything fed.
    pub(in crate::archive) fn finalize(mut self) -> [u8; 32] {
        if !self.pending.is_empty() {
            self.send_pending();
        }
        self.chunks = None;
        self.thread
            .take()
            .expect("finalized once")
            .join()
            .expect("the hashing thread does not panic")
    }
}

impl Drop for ShaThread {
    fn drop(&mut self) {
        self.chunks = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Feed for ShaThread {
    fn feed(&mut self, mut data: &[u8]) {
        while !data.is_empty() {
            let room = SHA_CHUNK - self.pending.len();
            let n = room.min(data.len());
            self.pending.extend_from_slice(&data[..n]);
            data = &data[n..];
            if self.pending.len() == SHA_CHUNK {
                self.send_pending();
            }
        }
    }
}

/// The SHA-256 of a tree read back: on this thread, or beside it when extracting.
pub(in crate::archive) enum TreeSha {
    Here(Sha256),
    Beside(ShaThread),
}

impl Feed for TreeSha {
    fn feed(&mut self, data: &[u8]) {
        match self {
            TreeSha::Here(sha) => sha.update(data),
            TreeSha::Beside(t) => t.feed(data),
        }
    }
}

impl TreeSha {
    fn finalize(self) -> [u8; 32] {
        match self {
            TreeSha::Here(sha) => sha.finalize().into(),
            TreeSha::Beside(t) => t.finalize(),
        }
    }
}

/// The canonical record stream of a tree, hashed as it goes; see docs/backup-format.md.
pub(in crate::archive) struct TreeHasher<S = Sha256> {
    pub(in crate::archive) sha: S,
    pub(in crate::archive) stats: TreeStats,
}

impl TreeHasher {
    pub(in crate::archive) fn new() -> Self {
        TreeHasher {
            sha: Sha256::new(),
            stats: TreeStats::default(),
        }
    }

    pub(in crate::archive) fn finish(mut self) -> TreeStats {
        self.stats.sha256 = hex::encode(self.sha.finalize());
        self.stats
    }
}

impl TreeHasher<TreeSha> {
    /// A hasher for a tree read back; `beside`: on a thread of its own.
    pub(in crate::archive) fn reading(beside: bool) -> io::Result<Self> {
        Ok(TreeHasher {
            sha: if beside {
                TreeSha::Beside(ShaThread::new()?)
            } else {
                TreeSha::Here(Sha256::new())
            },
            stats: TreeStats::default(),
        })
    }

    pub(in crate::archive) fn finish(mut self) -> TreeStats {
        self.stats.sha256 = hex::encode(self.sha.finalize());
        self.stats
    }
}

impl<S: Feed> TreeHasher<S> {
    pub(in crate::archive) fn record(&mut self, kind: u8, rel: &[u8], mode: u32, mtime: i64) {
        self.sha.feed(&[kind]);
        self.sha.feed(&(rel.len() as u32).to_be_bytes());
        self.sha.feed(rel);
        self.sha.feed(&(mode & 0o7777).to_be_bytes());
        self.sha.feed(&mtime.to_be_bytes());
    }

    pub(in crate::archive) fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) {
        self.record(KIND_DIR, rel, mode, mtime);
        self.stats.dirs += 1;
    }

    pub(in crate::archive) fn file(&mut self, rel: &[u8], mode: u32, mtime: i64, size: u64) {
        self.record(KIND_FILE, rel, mode, mtime);
        self.sha.feed(&size.to_be_bytes());
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
        self.sha.feed(&size.to_be_bytes());
        self.sha.feed(&(extents.len() as u64).to_be_bytes());
        for e in extents {
            self.sha.feed(&e.offset.to_be_bytes());
            self.sha.feed(&e.len.to_be_bytes());
        }
        self.stats.files += 1;
        self.stats.bytes += size;
    }

    pub(in crate::archive) fn symlink(&mut self, rel: &[u8], mode: u32, mtime: i64, target: &[u8]) {
        self.record(KIND_SYMLINK, rel, mode, mtime);
        self.sha.feed(&(target.len() as u32).to_be_bytes());
        self.sha.feed(target);
        self.stats.symlinks += 1;
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

/// What [`copy_entry`] saw of its source besides the bytes it copied.
#[derive(Debug, Default)]
pub(in crate::archive) struct Copied {
    /// Zero bytes added for a source that ended early ([`WhenShort::Pad`]).
    pub(in crate::archive) padded: u64,
    /// The source held more than the entry's size (only its first bytes were archived).
    pub(in crate::archive) grew: bool,
}

/// One tar entry's data after its header (written with no data by the caller): exactly `size`
/// bytes of `src`, hashed, then the zeros up to a whole tar block. Reads and writes go
/// `buf`-sized, where tar's own copy goes 8 KiB at a time (one call of the compressor each,
/// and a copy through a buffered reader); the last read asks for one byte more, so that a
/// file that grew is seen without a read of its own.
pub(in crate::archive) fn copy_entry(
    src: &mut dyn Read,
    dst: &mut dyn Write,
    size: u64,
    sha: &mut Sha256,
    when_short: WhenShort,
    buf: &mut Vec<u8>,
) -> Result<Copied, CopyError> {
    if buf.len() < COPY_BUF {
        buf.resize(COPY_BUF, 0);
    }
    let mut copied = Copied::default();
    let mut remaining = size;
    // Whether a read has gone past `size` (so the end has been looked at).
    let mut probed = false;
    while remaining > 0 {
        let want =
            usize::try_from(remaining.saturating_add(1)).map_or(buf.len(), |w| w.min(buf.len()));
        let n = match src.read(&mut buf[..want]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(CopyError::Read(e)),
        };
        let take = n.min(usize::try_from(remaining).unwrap_or(usize::MAX));
        probed = want as u64 > remaining;
        copied.grew = n > take;
        sha.update(&buf[..take]);
        dst.write_all(&buf[..take]).map_err(CopyError::Write)?;
        remaining -= take as u64;
    }
    if remaining > 0 {
        if when_short == WhenShort::Fail {
            return Err(CopyError::Read(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "source file shrank while being archived",
            )));
        }
        // Zeros keep the header's size true, as GNU tar does; they are hashed as read.
        copied.padded = remaining;
        buf.fill(0);
        while remaining > 0 {
            let k = usize::try_from(remaining).map_or(buf.len(), |r| r.min(buf.len()));
            sha.update(&buf[..k]);
            dst.write_all(&buf[..k]).map_err(CopyError::Write)?;
            remaining -= k as u64;
        }
    } else if !probed {
        let mut probe = [0u8; 1];
        copied.grew = matches!(src.read(&mut probe), Ok(1));
    }
    let tail = ((512 - size % 512) % 512) as usize;
    dst.write_all(&[0u8; 512][..tail])
        .map_err(CopyError::Write)?;
    Ok(copied)
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
    sha: &mut dyn Feed,
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
        sha.feed(&buf[..n]);
        if let Some(d) = dst.as_deref_mut() {
            d.write_all(&buf[..n]).map_err(CopyError::Write)?;
        }
        total += n as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `copy_entry` of `src` announced as `size` bytes: what it wrote, and what it saw.
    fn copy(src: &[u8], size: u64, when_short: WhenShort) -> (Vec<u8>, Copied, String) {
        let mut out = Vec::new();
        let mut sha = Sha256::new();
        let mut buf = Vec::new();
        let copied = copy_entry(
            &mut &src[..],
            &mut out,
            size,
            &mut sha,
            when_short,
            &mut buf,
        )
        .map_err(CopyError::into_read)
        .unwrap();
        (out, copied, hex::encode(sha.finalize()))
    }

    #[test]
    fn an_entry_is_its_bytes_hashed_and_padded_to_a_block() {
        for len in [
            0,
            1,
            511,
            512,
            513,
            COPY_BUF - 1,
            COPY_BUF,
            COPY_BUF + 1,
            3 * COPY_BUF,
        ] {
            let data: Vec<u8> = (0..len).map(|i| (i % 251) as u8).collect();
            let (out, copied, sha) = copy(&data, len as u64, WhenShort::Pad);
            assert_eq!(out.len() % 512, 0, "{len}");
            assert_eq!(&out[..len], &data[..], "{len}");
            assert!(out[len..].iter().all(|b| *b == 0), "{len}");
            assert_eq!((copied.padded, copied.grew), (0, false), "{len}");
            assert_eq!(sha, hex::encode(Sha256::digest(&data)), "{len}");
        }
    }

    #[test]
    fn a_source_longer_than_its_entry_is_cut_and_seen_to_have_grown() {
        // Longer by one byte and by a buffer, below and at a whole number of buffers.
        for (len, extra) in [
            (0, 1),
            (100, 1),
            (COPY_BUF, 1),
            (COPY_BUF, COPY_BUF),
            (2 * COPY_BUF - 7, 9),
        ] {
            let data = vec![7u8; len + extra];
            let (out, copied, sha) = copy(&data, len as u64, WhenShort::Pad);
            assert_eq!(out.len(), len.div_ceil(512) * 512, "{len}+{extra}");
            assert!(copied.grew, "{len}+{extra}");
            assert_eq!(
                sha,
                hex::encode(Sha256::digest(&data[..len])),
                "{len}+{extra}"
            );
        }
    }

    #[test]
    fn a_source_shorter_than_its_entry_is_padded_or_fails() {
        let data = vec![5u8; 1000];
        let (out, copied, sha) = copy(&data, 1500, WhenShort::Pad);
        assert_eq!(out.len(), 1536);
        assert_eq!(copied.padded, 500);
        let mut whole = data.clone();
        whole.resize(1500, 0);
        assert_eq!(&out[..1500], &whole[..]);
        assert_eq!(sha, hex::encode(Sha256::digest(&whole)));

        let mut sha = Sha256::new();
        let err = copy_entry(
            &mut &data[..],
            &mut Vec::new(),
            1500,
            &mut sha,
            WhenShort::Fail,
            &mut Vec::new(),
        );
        assert!(matches!(err, Err(CopyError::Read(e)) if e.kind() == io::ErrorKind::UnexpectedEof));
    }
}
