//! The layers around the tar stream: compression inside, age encryption outside (encrypted
//! bytes do not compress). Readers detect each layer by its magic bytes.

use std::io::{self, BufReader, BufWriter, Read, Write};
use std::str::FromStr;

use camino::Utf8Path;

use super::ArchiveError;

/// How the tar stream is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// zstd with a checksum on the frame; level 1–22 (3 is zstd's own default).
    Zstd {
        level: i32,
    },
    /// gzip, level 0–9.
    Gzip {
        level: u32,
    },
    None,
}

impl Compression {
    /// zstd at its own default level, 3: what backups use unless told otherwise.
    pub const ZSTD: Compression = Compression::Zstd { level: 3 };
    /// gzip at level 6, gzip's own default.
    pub const GZIP: Compression = Compression::Gzip { level: 6 };
}

/// How to write an archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ArchiveOptions {
    pub compression: Compression,
    /// age X25519 public keys (`age1…`); empty means no encryption. Writing needs no secret.
    pub recipients: Vec<String>,
    /// zstd worker threads; 0 = one per available core, at most 4 (leave the host its web
    /// server). 1 compresses on the writing thread.
    pub zstd_workers: u32,
}

impl Default for ArchiveOptions {
    fn default() -> Self {
        ArchiveOptions {
            compression: Compression::ZSTD,
            recipients: Vec::new(),
            zstd_workers: 0,
        }
    }
}

impl ArchiveOptions {
    /// No compression, no encryption: a plain tar (estimates, crafted test archives).
    pub fn plain() -> Self {
        ArchiveOptions {
            compression: Compression::None,
            recipients: Vec::new(),
            zstd_workers: 0,
        }
    }
}

const IO_BUF: usize = 256 * 1024;
/// Bytes of one multithreaded zstd job (see `open_sink`).
const ZSTD_JOB_BYTES: u32 = 4 << 20;

pub(super) enum Crypt<W: Write> {
    Plain(BufWriter<W>),
    Age(age::stream::StreamWriter<BufWriter<W>>),
}

impl<W: Write> Write for Crypt<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Crypt::Plain(w) => w.write(buf),
            Crypt::Age(w) => w.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Crypt::Plain(w) => w.flush(),
            Crypt::Age(w) => w.flush(),
        }
    }
}

impl<W: Write> Crypt<W> {
    fn finish(self) -> io::Result<W> {
        let buffered = match self {
            Crypt::Plain(w) => w,
            // The last age chunk is only written (and marked last) by finish.
            Crypt::Age(w) => w.finish()?,
        };
        buffered.into_inner().map_err(|e| e.into_error())
    }
}

pub(super) enum Compress<W: Write> {
    None(Crypt<W>),
    Zstd(zstd::stream::write::Encoder<'static, Crypt<W>>),
    Gzip(flate2::write::GzEncoder<Crypt<W>>),
}

impl<W: Write> Write for Compress<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Compress::None(w) => w.write(buf),
            Compress::Zstd(w) => w.write(buf),
            Compress::Gzip(w) => w.write(buf),
        }
    }
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        match self {
            Compress::None(w) => w.write_all(buf),
            Compress::Zstd(w) => w.write_all(buf),
            Compress::Gzip(w) => w.write_all(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        match self {
            Compress::None(w) => w.flush(),
            Compress::Zstd(w) => w.flush(),
            Compress::Gzip(w) => w.flush(),
        }
    }
}

impl<W: Write> Compress<W> {
    pub(super) fn finish(self) -> io::Result<W> {
        let crypt = match self {
            Compress::None(c) => c,
            Compress::Zstd(z) => z.finish()?,
            Compress::Gzip(g) => g.finish()?,
        };
        let mut out = crypt.finish()?;
        out.flush()?;
        Ok(out)
    }
}

pub(super) fn parse_recipients(
    recipients: &[String],
) -> Result<Vec<age::x25519::Recipient>, ArchiveError> {
    recipients
        .iter()
        .map(|r| {
            age::x25519::Recipient::from_str(r.trim()).map_err(|e| ArchiveError::InvalidRecipient {
                recipient: r.clone(),
                reason: e.to_string(),
            })
        })
        .collect()
}

/// Builds the writing layers over `out`. Recipients must already be parsed.
pub(super) fn open_sink<W: Write>(
    out: W,
    opts: &ArchiveOptions,
    recipients: &[age::x25519::Recipient],
) -> io::Result<Compress<W>> {
    let buffered = BufWriter::with_capacity(IO_BUF, out);
    let crypt = if recipients.is_empty() {
        Crypt::Plain(buffered)
    } else {
        let encryptor =
            age::Encryptor::with_recipients(recipients.iter().map(|r| r as &dyn age::Recipient))
                .map_err(io::Error::other)?;
        Crypt::Age(encryptor.wrap_output(buffered)?)
    };
    Ok(match opts.compression {
        Compression::None => Compress::None(crypt),
        Compression::Gzip { level } => Compress::Gzip(flate2::write::GzEncoder::new(
            crypt,
            flate2::Compression::new(level.min(9)),
        )),
        Compression::Zstd { level } => {
            let mut enc = zstd::stream::write::Encoder::new(crypt, level)?;
            enc.include_checksum(true)?;
            let workers = match opts.zstd_workers {
                0 => std::thread::available_parallelism()
                    .map(|n| n.get() as u32)
                    .unwrap_or(1)
                    .min(4),
                n => n,
            };
            if workers > 1 {
                enc.multithread(workers)?;
                // zstd's own job size at level 3 is 8 MiB: with the jobs in flight and their
                // output, ~70 MiB of buffers. 4 MiB jobs halve that; what they lose in ratio
                // (each job starts from a shorter overlap) is well under 1% here.
                enc.set_parameter(zstd::stream::raw::CParameter::JobSize(ZSTD_JOB_BYTES))?;
            }
            Compress::Zstd(enc)
        }
    })
}

const AGE_MAGIC: &[u8] = b"age-encryption.org/v1\n";
const AGE_ARMOR: &[u8] = b"-----BEGIN AGE ENCRYPTED FILE-----";
const ZSTD_MAGIC: &[u8] = &[0x28, 0xb5, 0x2f, 0xfd];
const GZIP_MAGIC: &[u8] = &[0x1f, 0x8b];

/// Reads up to 512 bytes (one tar block, enough for every magic) and gives them back in front
/// of the rest of the stream.
fn peek(mut r: Box<dyn Read + Send>) -> io::Result<(Vec<u8>, Box<dyn Read + Send>)> {
    let mut head = vec![0u8; 512];
    let mut n = 0;
    while n < head.len() {
        match r.read(&mut head[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(n);
    let front = io::Cursor::new(head.clone());
    Ok((head, Box::new(front.chain(r))))
}

/// ustar/GNU magic, or else a valid header checksum (pre-POSIX v7 tars have no magic).
fn is_tar(head: &[u8]) -> bool {
    if head.len() < 512 {
        return false;
    }
    if &head[257..262] == b"ustar" {
        return true;
    }
    let field = &head[148..156];
    let digits: String = field
        .iter()
        .map(|b| *b as char)
        .take_while(|c| c.is_digit(8) || *c == ' ')
        .filter(|c| *c != ' ')
        .collect();
    let Ok(stored) = u32::from_str_radix(&digits, 8) else {
        return false;
    };
    let sum: u32 = head[..512]
        .iter()
        .enumerate()
        .map(|(i, b)| {
            if (148..156).contains(&i) {
                32
            } else {
                u32::from(*b)
            }
        })
        .sum();
    head[0] != 0 && sum == stored
}

/// Unwraps encryption and compression, whatever the writer chose, down to the tar stream.
pub(super) fn open_source(
    input: Box<dyn Read + Send>,
    archive: &Utf8Path,
    identity: Option<&Utf8Path>,
) -> Result<Box<dyn Read + Send>, ArchiveError> {
    let io_err = |e: io::Error| read_error(archive, None, e);
    let (head, mut stream) = peek(input).map_err(io_err)?;
    if head.starts_with(AGE_ARMOR) {
        return Err(ArchiveError::Decrypt {
            archive: archive.to_owned(),
            reason: "ASCII-armoured age files are not supported; de-armour it with `age -d` first"
                .into(),
        });
    }
    if head.starts_with(AGE_MAGIC) {
        let Some(identity) = identity else {
            return Err(ArchiveError::IdentityRequired {
                archive: archive.to_owned(),
            });
        };
        let identities = load_identities(identity)?;
        let decryptor = age::Decryptor::new(BufReader::with_capacity(IO_BUF, stream))
            .map_err(|e| decrypt_error(archive, identity, e))?;
        let plain = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| decrypt_error(archive, identity, e))?;
        stream = Box::new(plain);
        let (head2, s) = peek(stream).map_err(io_err)?;
        return decompress(head2, s, archive);
    }
    decompress(head, stream, archive)
}

fn decompress(
    head: Vec<u8>,
    stream: Box<dyn Read + Send>,
    archive: &Utf8Path,
) -> Result<Box<dyn Read + Send>, ArchiveError> {
    if head.starts_with(ZSTD_MAGIC) {
        let mut dec =
            zstd::stream::read::Decoder::with_buffer(BufReader::with_capacity(IO_BUF, stream))
                .map_err(|e| read_error(archive, None, e))?;
        // Large windows are legal zstd; refuse nothing a `zstd --long` could have produced.
        let _ = dec.window_log_max(31);
        return Ok(Box::new(BufReader::with_capacity(IO_BUF, dec)));
    }
    if head.starts_with(GZIP_MAGIC) {
        let dec = flate2::bufread::GzDecoder::new(BufReader::with_capacity(IO_BUF, stream));
        return Ok(Box::new(BufReader::with_capacity(IO_BUF, dec)));
    }
    if is_tar(&head) {
        return Ok(Box::new(BufReader::with_capacity(IO_BUF, stream)));
    }
    Err(ArchiveError::NotAnArchive {
        archive: archive.to_owned(),
    })
}

type Identities = Vec<Box<dyn age::Identity + Send + Sync>>;

fn load_identities(identity: &Utf8Path) -> Result<Identities, ArchiveError> {
    let bad = |reason: String| ArchiveError::IdentityFile {
        identity: identity.to_owned(),
        reason,
    };
    let file =
        age::IdentityFile::from_file(identity.to_string()).map_err(|e| bad(e.to_string()))?;
    let ids = file.into_identities().map_err(|e| bad(e.to_string()))?;
    if ids.is_empty() {
        return Err(bad("it holds no identity".into()));
    }
    Ok(ids)
}

fn decrypt_error(archive: &Utf8Path, identity: &Utf8Path, e: age::DecryptError) -> ArchiveError {
    match e {
        age::DecryptError::NoMatchingKeys => ArchiveError::WrongIdentity {
            archive: archive.to_owned(),
            identity: identity.to_owned(),
        },
        other => ArchiveError::Decrypt {
            archive: archive.to_owned(),
            reason: other.to_string(),
        },
    }
}

/// Turns a read failure into Truncated (the stream ended early) or Corrupt (anything else:
/// zstd/gzip checksum, age authentication tag, tar header checksum).
pub(super) fn read_error(archive: &Utf8Path, part: Option<&str>, e: io::Error) -> ArchiveError {
    let msg = e.to_string();
    let truncated = e.kind() == io::ErrorKind::UnexpectedEof
        || msg.contains("incomplete frame")
        || msg.contains("unexpected end")
        || msg.contains("failed to fill whole buffer");
    if truncated {
        ArchiveError::Truncated {
            archive: archive.to_owned(),
            part: part.map(str::to_owned),
            detail: msg,
        }
    } else {
        ArchiveError::Corrupt {
            archive: archive.to_owned(),
            part: part.map(str::to_owned),
            detail: msg,
        }
    }
}

/// Encrypts the whole file `src` to age `recipients` into `out`, unchanged otherwise: how a
/// `sufficient` backup-script's own file is protected (its format is the script's, so it gets
/// no compression or tar of ours). Reading it back is [`decrypt_file`].
pub fn encrypt_file(
    src: &Utf8Path,
    out: impl Write,
    recipients: &[String],
) -> Result<(), ArchiveError> {
    let parsed = parse_recipients(recipients)?;
    let write_err = |source| ArchiveError::WriteArchive {
        part: src.to_string(),
        source,
    };
    let mut input = std::fs::File::open(src).map_err(|source| ArchiveError::Open {
        archive: src.to_owned(),
        source,
    })?;
    let mut sink = open_sink(out, &ArchiveOptions::plain(), &parsed).map_err(write_err)?;
    io::copy(&mut input, &mut sink).map_err(|e| read_error(src, None, e))?;
    sink.finish().map_err(write_err)?;
    Ok(())
}

/// Checks age recipients without writing anything (to refuse a bad key before any work).
pub fn check_recipients(recipients: &[String]) -> Result<(), ArchiveError> {
    parse_recipients(recipients).map(drop)
}

/// Whether `path` starts with age's header (binary or armoured).
pub fn is_encrypted(path: &Utf8Path) -> Result<bool, ArchiveError> {
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Open {
        archive: path.to_owned(),
        source,
    })?;
    let (head, _) = peek(Box::new(file)).map_err(|e| read_error(path, None, e))?;
    Ok(head.starts_with(AGE_MAGIC) || head.starts_with(AGE_ARMOR))
}

/// What can be checked of an age file without its identity: that it is a binary age file
/// whose header (its recipients' stanzas) is well formed and made for X25519 recipients, as
/// the controller encrypts. `Ok(false)`: the file is not encrypted. Everything else — the
/// header's MAC, the payload, the archive's tag and manifest inside — needs the identity.
pub fn check_age_header(path: &Utf8Path) -> Result<bool, ArchiveError> {
    let file = std::fs::File::open(path).map_err(|source| ArchiveError::Open {
        archive: path.to_owned(),
        source,
    })?;
    let (head, stream) = peek(Box::new(file)).map_err(|e| read_error(path, None, e))?;
    if head.starts_with(AGE_ARMOR) {
        return Err(ArchiveError::Decrypt {
            archive: path.to_owned(),
            reason: "it is ASCII-armoured: the controller writes binary age files".into(),
        });
    }
    if !head.starts_with(AGE_MAGIC) {
        return Ok(false);
    }
    let decryptor = age::Decryptor::new(BufReader::with_capacity(IO_BUF, stream)).map_err(|e| {
        ArchiveError::Decrypt {
            archive: path.to_owned(),
            reason: format!("its age header is damaged: {e}"),
        }
    })?;
    if decryptor.is_scrypt() {
        return Err(ArchiveError::Decrypt {
            archive: path.to_owned(),
            reason: "it is encrypted with a passphrase, not to age recipients as the \
                     controller encrypts"
                .into(),
        });
    }
    Ok(true)
}

/// Decrypts the age file `src` with `identity` into `dest` (created 0600); the reverse of
/// [`encrypt_file`]. On failure `dest` is removed.
pub fn decrypt_file(
    src: &Utf8Path,
    identity: Option<&Utf8Path>,
    dest: &Utf8Path,
) -> Result<(), ArchiveError> {
    let result = (|| {
        let file = std::fs::File::open(src).map_err(|source| ArchiveError::Open {
            archive: src.to_owned(),
            source,
        })?;
        let (head, stream) = peek(Box::new(file)).map_err(|e| read_error(src, None, e))?;
        if head.starts_with(AGE_ARMOR) || !head.starts_with(AGE_MAGIC) {
            return Err(ArchiveError::Decrypt {
                archive: src.to_owned(),
                reason: "it is not a binary age file".into(),
            });
        }
        let identity = identity.ok_or_else(|| ArchiveError::IdentityRequired {
            archive: src.to_owned(),
        })?;
        let identities = load_identities(identity)?;
        let decryptor = age::Decryptor::new(BufReader::with_capacity(IO_BUF, stream))
            .map_err(|e| decrypt_error(src, identity, e))?;
        let mut plain = decryptor
            .decrypt(identities.iter().map(|i| i.as_ref() as &dyn age::Identity))
            .map_err(|e| decrypt_error(src, identity, e))?;
        let extract_err = |source| ArchiveError::Extract {
            archive: src.to_owned(),
            part: "whole file".into(),
            path: dest.to_string(),
            source,
        };
        let mut out = {
            use std::os::unix::fs::OpenOptionsExt;
            std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(dest)
                .map_err(extract_err)?
        };
        // The age stream authenticates every chunk: a tampered file fails here.
        io::copy(&mut plain, &mut out).map_err(|e| read_error(src, None, e))?;
        out.sync_all().map_err(extract_err)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(dest);
    }
    result
}
