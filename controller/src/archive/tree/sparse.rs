//! Sparse files: finding a file's data extents, writing them as GNU sparse entries, and
//! reading such entries back with holes where the zeros were.

use std::fs::File;
use std::io::{self, Read, Write};

use sha2::Sha256;

use super::{format::*, hash::*};

/// The data extents of a file with fewer allocated blocks than its size (`SEEK_DATA` /
/// `SEEK_HOLE`), or `None` to read it whole: not sparse, a file system without hole
/// reporting, too many extents, or a file changing under the walk. The file's offset is left
/// at 0.
#[allow(clippy::unnecessary_cast)]
pub(in crate::archive) fn data_extents(
    file: &mut File,
    st: &rustix::fs::Stat,
) -> io::Result<Option<Vec<Extent>>> {
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
pub(in crate::archive) fn pax_record(out: &mut Vec<u8>, key: &str, value: &[u8]) {
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
pub(in crate::archive) fn sparse_map(extents: &[Extent]) -> Vec<u8> {
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
pub(in crate::archive) fn write_sparse<W: Write>(
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
        extents,
        next: 0,
        // Sized per extent as the read reaches it.
        take: HashingTake::new(file, 0, sha, WhenShort::Pad),
    };
    if let Err(e) = builder.append(&h, &mut src) {
        return Err(match src.take.error.take() {
            Some(e) => CopyError::Read(e),
            None => CopyError::Write(e),
        });
    }
    Ok(src.take.padded)
}

/// The data of a sparse entry: its map, then each extent read at its offset and hashed by the
/// same [`HashingTake`] a dense web file goes through (a source that ends early is padded with
/// zeros, as a dense web file is).
pub(in crate::archive) struct SparseSource<'a> {
    pub(in crate::archive) map: io::Cursor<Vec<u8>>,
    pub(in crate::archive) extents: &'a [Extent],
    pub(in crate::archive) next: usize,
    pub(in crate::archive) take: HashingTake<'a, File>,
}

impl Read for SparseSource<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use std::io::Seek;
        let n = self.map.read(buf)?;
        if n > 0 || buf.is_empty() {
            return Ok(n);
        }
        while self.take.remaining == 0 {
            let Some(e) = self.extents.get(self.next) else {
                return Ok(0);
            };
            self.next += 1;
            self.take.remaining = e.len;
            if let Err(err) = self.take.inner.seek(io::SeekFrom::Start(e.offset)) {
                let copy = io::Error::new(err.kind(), err.to_string());
                self.take.error = Some(err);
                return Err(copy);
            }
        }
        self.take.read(buf)
    }
}

// ---------------------------------------------------------------------------------------------
// Reading

/// Writes at its own position, seeking over every aligned block of zeros instead of writing
/// it: the file gets holes there once its length is set. The file is new (every byte not
/// written reads as zero), so zeros are never written at all, even those of a block that a
/// write only begins or ends: the block stays a hole when the rest of it is zeros too, however
/// the reader above cut its buffers (a decompressor's are not block-aligned).
pub(in crate::archive) struct HoleWriter {
    pub(in crate::archive) file: File,
    pub(in crate::archive) pos: u64,
}

pub(in crate::archive) const HOLE_BLOCK: usize = 4096;

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
pub(in crate::archive) fn sparse_size<R: Read>(
    entry: &mut tar::Entry<'_, R>,
    name: &[u8],
) -> Result<Option<u64>, String> {
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

pub(in crate::archive) fn decimal(text: &[u8]) -> Option<u64> {
    if text.is_empty() || text.len() > 20 || !text.iter().all(u8::is_ascii_digit) {
        return None;
    }
    std::str::from_utf8(text).ok()?.parse().ok()
}

pub(in crate::archive) enum SparseMapError {
    Read(io::Error),
    Bad(String),
}

/// Reads a sparse entry's map (whole 512-byte blocks) and checks it: at most
/// [`MAX_EXTENTS`] extents, in order, not overlapping, within the real size. Returns the
/// extents and the map's length in the entry.
pub(in crate::archive) fn read_sparse_map(
    src: &mut dyn Read,
    real: u64,
) -> Result<(Vec<Extent>, u64), SparseMapError> {
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
