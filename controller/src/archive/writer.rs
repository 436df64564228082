//! Writing an archive: header entry, parts streamed one by one (hashed as they go), manifest last.

use std::fs::File;
use std::io::{self, BufReader, Read, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::Utf8Path;
use sha2::{Digest, Sha256};

use super::codec::{self, ArchiveOptions, Compress};
use super::tag::{ArchiveTag, ManifestSeal, TagKey};
use super::tree::{self, HashingTake, TreeStats, WhenShort};
use super::{
    ArchiveError, FORMAT_NAME, FORMAT_VERSION, HEADER_ENTRY, MANIFEST_ENTRY, Manifest,
    ManifestHeader, PartInfo, PartKind, TAG_ENTRY, check_part_name,
};

/// Streams one backup archive into `W`. Nothing is held in memory but buffers.
///
/// If any call fails the stream is left mid-entry: the writer refuses further calls and the
/// caller must discard what it wrote (the destination only ever receives a finished file).
pub struct ArchiveWriter<W: Write> {
    tar: Option<tar::Builder<Compress<W>>>,
    header: ManifestHeader,
    parts: Vec<PartInfo>,
    web_count: usize,
    warnings: Vec<String>,
    tag_key: Option<TagKey>,
    walk: tree::WalkPolicy,
    walked: tree::WalkCount,
}

impl<W: Write> ArchiveWriter<W> {
    /// Starts an archive: sets up encryption and compression and writes the header entry.
    /// `header.format_version` is overwritten with [`FORMAT_VERSION`].
    pub fn create(
        out: W,
        opts: &ArchiveOptions,
        mut header: ManifestHeader,
    ) -> Result<Self, ArchiveError> {
        header.format_version = FORMAT_VERSION;
        let recipients = codec::parse_recipients(&opts.recipients)?;
        let sink =
            codec::open_sink(out, opts, &recipients).map_err(|e| ArchiveError::WriteArchive {
                part: HEADER_ENTRY.into(),
                source: e,
            })?;
        let mut builder = tar::Builder::new(sink);
        // Only our own entries go in; nothing is read from disk by the builder itself.
        builder.follow_symlinks(false);
        let mut w = ArchiveWriter {
            tar: Some(builder),
            header,
            parts: Vec::new(),
            web_count: 0,
            warnings: Vec::new(),
            tag_key: None,
            walk: tree::WalkPolicy::default(),
            walked: tree::WalkCount::default(),
        };
        let json = serde_json::to_vec_pretty(&w.header).expect("header serialises");
        w.append_bytes(HEADER_ENTRY, &json)?;
        Ok(w)
    }

    fn builder(&mut self) -> Result<&mut tar::Builder<Compress<W>>, ArchiveError> {
        self.tar.as_mut().ok_or(ArchiveError::WriterPoisoned)
    }

    fn mtime(&self) -> u64 {
        self.header.created.as_second().max(0) as u64
    }

    fn append_bytes(&mut self, entry: &str, data: &[u8]) -> Result<(), ArchiveError> {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_mtime(self.mtime());
        h.set_size(data.len() as u64);
        let res = self.builder()?.append_data(&mut h, entry, data);
        self.check(res, entry)
    }

    /// Poisons the writer on failure: the stream is mid-entry and cannot be continued.
    fn check<T>(&mut self, res: io::Result<T>, part: &str) -> Result<T, ArchiveError> {
        res.map_err(|e| {
            self.tar = None;
            ArchiveError::WriteArchive {
                part: part.to_owned(),
                source: e,
            }
        })
    }

    fn name_is_free(&self, name: &str) -> Result<(), ArchiveError> {
        if self.parts.iter().any(|p| p.name == name) {
            return Err(ArchiveError::DuplicatePart {
                name: name.to_owned(),
            });
        }
        Ok(())
    }

    fn web_url_is_free(&self, mapping_url: &str) -> Result<(), ArchiveError> {
        if self
            .parts
            .iter()
            .any(|p| matches!(&p.kind, PartKind::WebDir { mapping_url: m } if m == mapping_url))
        {
            return Err(ArchiveError::DuplicatePart {
                name: mapping_url.to_owned(),
            });
        }
        Ok(())
    }

    /// A file part's name and kind, before anything is written.
    fn check_file_part(&mut self, name: &str, kind: &PartKind) -> Result<(), ArchiveError> {
        check_part_name(name)?;
        if matches!(kind, PartKind::WebDir { .. }) {
            return Err(ArchiveError::InvalidPartName {
                name: name.to_owned(),
                reason: "web folders are added with add_web_dir",
            });
        }
        self.name_is_free(name)?;
        self.builder()?;
        Ok(())
    }

    /// Adds a regular file (the script's backup file, a database dump) as part `name`
    /// (letters, digits, `.`, `_`, `-`; at most 100 bytes), streamed and hashed.
    pub fn add_file_part(
        &mut self,
        name: &str,
        kind: PartKind,
        path: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        self.check_file_part(name, &kind)?;
        let src_err = |e| ArchiveError::ReadSource {
            part: name.to_owned(),
            path: path.to_owned(),
            source: e,
        };
        let file = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits() as i32)
            .open(path)
            .map_err(src_err)?;
        let meta = file.metadata().map_err(src_err)?;
        if !meta.is_file() {
            return Err(src_err(io::Error::other("not a regular file")));
        }
        let mut reader = BufReader::with_capacity(256 * 1024, file);
        self.add_read_part(name, kind, meta.len(), &mut reader, path)
    }

    /// Adds a file part read from `content`, which must yield exactly `size` bytes (a dump or
    /// script file kept elsewhere, e.g. in a repository snapshot); `shown` names the source in
    /// errors. A source that ends early or goes on longer fails the part.
    pub fn add_stream_part(
        &mut self,
        name: &str,
        kind: PartKind,
        size: u64,
        content: &mut dyn Read,
        shown: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        self.check_file_part(name, &kind)?;
        self.add_read_part(name, kind, size, content, shown)?;
        match ended(content, name, shown.as_str(), size) {
            Ok(()) => Ok(self.parts.last().expect("just pushed")),
            Err(e) => {
                self.tar = None;
                Err(e)
            }
        }
    }

    fn add_read_part(
        &mut self,
        name: &str,
        kind: PartKind,
        size: u64,
        content: &mut dyn Read,
        path: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        let entry = format!("files/{name}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_mtime(self.mtime());
        h.set_size(size);
        let mut sha = Sha256::new();
        let mut reader = HashingTake::new(content, size, &mut sha, WhenShort::Fail);
        let res =
            self.tar
                .as_mut()
                .expect("checked above")
                .append_data(&mut h, &entry, &mut reader);
        let (short, source_error) = (reader.short, reader.error.take());
        if let Some(e) = source_error {
            self.tar = None;
            return Err(ArchiveError::ReadSource {
                part: name.to_owned(),
                path: path.to_owned(),
                source: e,
            });
        }
        if short {
            // Padding a dump would silently corrupt it; a dump must be complete before it is added.
            self.tar = None;
            return Err(ArchiveError::SourceChanged {
                part: name.to_owned(),
                path: path.to_string(),
                detail: format!("it shrank below the {size} bytes it had when opened"),
            });
        }
        self.check(res, name)?;
        self.parts.push(PartInfo::file(
            name,
            kind,
            size,
            hex::encode(sha.finalize()),
        ));
        Ok(self.parts.last().expect("just pushed"))
    }

    /// Adds one url-mapping's web folder as part `web/<n>`: every folder (empty ones too),
    /// regular file and symlink (kept as a symlink, never followed) with modes and mtimes.
    pub fn add_web_dir(
        &mut self,
        mapping_url: &str,
        dir: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        self.web_url_is_free(mapping_url)?;
        let name = format!("web/{}", self.web_count);
        let prefix = format!("{name}/");
        let builder = self.tar.as_mut().ok_or(ArchiveError::WriterPoisoned)?;
        let stats: TreeStats = match tree::write_tree(
            builder,
            dir,
            prefix.as_bytes(),
            &name,
            &self.walk,
            &mut self.walked,
        ) {
            Ok(s) => s,
            Err(e) => {
                // A source error can come after entries were written: the stream is unusable.
                self.tar = None;
                return Err(e);
            }
        };
        self.web_count += 1;
        self.warnings
            .extend(stats.warnings.iter().map(|w| format!("{mapping_url}: {w}")));
        self.parts.push(PartInfo {
            name,
            kind: PartKind::WebDir {
                mapping_url: mapping_url.to_owned(),
            },
            entry: prefix,
            size: stats.bytes,
            sha256: stats.sha256,
            file_count: Some(stats.files),
            dir_count: Some(stats.dirs),
            symlink_count: Some(stats.symlinks),
        });
        Ok(self.parts.last().expect("just pushed"))
    }

    /// Starts one url-mapping's web folder as part `web/<n>`, its entries given one by one by
    /// the caller ([`WebPart`]) instead of walked on disk: a tree kept elsewhere (a repository
    /// snapshot) becomes the part an archive backup of the same tree would hold. `mode` and
    /// `mtime` (seconds) are the root folder's.
    pub fn begin_web_part(
        &mut self,
        mapping_url: &str,
        mode: u32,
        mtime: i64,
    ) -> Result<WebPart<'_, W>, ArchiveError> {
        self.web_url_is_free(mapping_url)?;
        self.builder()?;
        let name = format!("web/{}", self.web_count);
        let mut part = WebPart {
            prefix: format!("{name}/").into_bytes(),
            name,
            mapping_url: mapping_url.to_owned(),
            hasher: tree::TreeHasher::new(),
            writer: self,
            finished: false,
        };
        part.dir(b"", mode, mtime)?;
        Ok(part)
    }

    /// The rule and bounds of the instance's walk ([`WalkPolicy`](super::WalkPolicy)) for the
    /// web folders added from now on; its bounds count across all of them.
    pub fn walk_policy(&mut self, policy: super::WalkPolicy) {
        self.walk = policy;
    }

    /// Tag the archive with `key` when it is finished (a `manifest.tag` entry after the
    /// manifest): the controller's proof that it made the file. Without a key the archive has
    /// no tag, and restore refuses it unless it is imported.
    pub fn tag_with(&mut self, key: TagKey) {
        self.tag_key = Some(key);
    }

    /// Files that changed while being archived (grew or shrank); the backup is still
    /// consistent with its manifest, but those files may be torn.
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// Writes the manifest and closes every layer (tar trailer, compression frame, age's last
    /// chunk). Returns the manifest and the output (e.g. to fsync a file).
    pub fn finish_into_inner(self) -> Result<(Manifest, W), ArchiveError> {
        self.finish_sealed()
            .map(|(manifest, _, out)| (manifest, out))
    }

    /// [`finish_into_inner`](Self::finish_into_inner), with the manifest's seal (its exact
    /// bytes and tag) as a reader of the finished archive would read it: with
    /// [`ArchiveReader::written`](super::ArchiveReader::written) the archive can be restored
    /// without a second verification pass.
    pub fn finish_sealed(mut self) -> Result<(Manifest, ManifestSeal, W), ArchiveError> {
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            header: self.header.clone(),
            parts: std::mem::take(&mut self.parts),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        self.append_bytes(MANIFEST_ENTRY, &json)?;
        let mut archive_tag = None;
        if let Some(key) = self.tag_key.take() {
            let made = ArchiveTag::new(&key, &json);
            let tag = serde_json::to_vec_pretty(&made).expect("tag serialises");
            self.append_bytes(TAG_ENTRY, &tag)?;
            archive_tag = Some(made);
        }
        let builder = self.tar.take().ok_or(ArchiveError::WriterPoisoned)?;
        let close = |e| ArchiveError::WriteArchive {
            part: MANIFEST_ENTRY.into(),
            source: e,
        };
        let sink = builder.into_inner().map_err(close)?;
        let out = sink.finish().map_err(close)?;
        Ok((manifest, ManifestSeal::new(json, archive_tag), out))
    }

    /// [`finish_into_inner`](Self::finish_into_inner), dropping the output.
    pub fn finish(self) -> Result<Manifest, ArchiveError> {
        self.finish_into_inner().map(|(m, _)| m)
    }
}

/// One web folder part being written from entries its caller gives
/// ([`ArchiveWriter::begin_web_part`]). Entries must come as a walk of the folder gives them:
/// pre-order, siblings sorted by their names' bytes; paths are relative to the folder, `/`
/// separated. Any failure poisons the archive, and so does dropping an unfinished part.
pub struct WebPart<'a, W: Write> {
    writer: &'a mut ArchiveWriter<W>,
    name: String,
    prefix: Vec<u8>,
    mapping_url: String,
    hasher: tree::TreeHasher,
    finished: bool,
}

impl<W: Write> WebPart<'_, W> {
    fn entry_name(&self, rel: &[u8], dir: bool) -> Vec<u8> {
        let mut name = self.prefix.clone();
        if !rel.is_empty() {
            name.extend_from_slice(rel);
            if dir {
                name.push(b'/');
            }
        }
        name
    }

    fn header(kind: tar::EntryType, mode: u32, mtime: i64) -> (tar::Header, u32, i64) {
        let mode = mode & 0o7777;
        let mtime = tree::tar_mtime(mtime);
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_mtime(mtime as u64);
        h.set_size(0);
        (h, mode, mtime)
    }

    fn checked_rel<'r>(&mut self, rel: &'r [u8]) -> Result<&'r [u8], ArchiveError> {
        match tree::check_rel(rel) {
            Ok(r) if r.len() == rel.len() => Ok(r),
            Ok(_) => Err(self.poison_bad(rel, "trailing `/`")),
            Err(reason) => Err(self.poison_bad(rel, reason)),
        }
    }

    fn poison_bad(&mut self, rel: &[u8], reason: &'static str) -> ArchiveError {
        self.writer.tar = None;
        ArchiveError::SourceChanged {
            part: self.name.clone(),
            path: String::from_utf8_lossy(rel).into_owned(),
            detail: format!("unusable path: {reason}"),
        }
    }

    fn written<T>(&mut self, res: io::Result<T>) -> Result<T, ArchiveError> {
        let part = self.name.clone();
        self.writer.check(res, &part)
    }

    /// A folder (the root is written by `begin_web_part`).
    pub fn dir(&mut self, rel: &[u8], mode: u32, mtime: i64) -> Result<(), ArchiveError> {
        let rel = if rel.is_empty() {
            rel
        } else {
            self.checked_rel(rel)?
        };
        let (mut h, mode, mtime) = Self::header(tar::EntryType::Directory, mode, mtime);
        let entry = self.entry_name(rel, true);
        let res = self
            .writer
            .builder()?
            .append_data(&mut h, tree::os(&entry), io::empty());
        self.written(res)?;
        self.hasher.dir(rel, mode, mtime);
        Ok(())
    }

    /// A regular file of exactly `size` bytes read from `content`; one that ends early or goes
    /// on longer fails the part.
    pub fn file(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        size: u64,
        content: &mut dyn Read,
    ) -> Result<(), ArchiveError> {
        let rel = self.checked_rel(rel)?;
        let (mut h, mode, mtime) = Self::header(tar::EntryType::Regular, mode, mtime);
        h.set_size(size);
        self.hasher.file(rel, mode, mtime, size);
        let entry = self.entry_name(rel, false);
        let shown = || String::from_utf8_lossy(rel).into_owned();
        let builder = self
            .writer
            .tar
            .as_mut()
            .ok_or(ArchiveError::WriterPoisoned)?;
        let mut reader =
            HashingTake::new(&mut *content, size, &mut self.hasher.sha, WhenShort::Fail);
        let res = builder.append_data(&mut h, tree::os(&entry), &mut reader);
        let (short, source_error) = (reader.short, reader.error.take());
        let failure = match (source_error, short) {
            (Some(source), _) => Some(ArchiveError::ReadSource {
                part: self.name.clone(),
                path: shown().into(),
                source,
            }),
            (None, true) => Some(ArchiveError::SourceChanged {
                part: self.name.clone(),
                path: shown(),
                detail: format!("it ended before the {size} bytes announced"),
            }),
            (None, false) => None,
        };
        if let Some(e) = failure {
            self.writer.tar = None;
            return Err(e);
        }
        self.written(res)?;
        ended(content, &self.name, &shown(), size).inspect_err(|_| self.writer.tar = None)
    }

    /// A symlink, kept as one.
    pub fn symlink(
        &mut self,
        rel: &[u8],
        mode: u32,
        mtime: i64,
        target: &[u8],
    ) -> Result<(), ArchiveError> {
        let rel = self.checked_rel(rel)?;
        let (mut h, mode, mtime) = Self::header(tar::EntryType::Symlink, mode, mtime);
        let entry = self.entry_name(rel, false);
        let res = self
            .writer
            .builder()?
            .append_link(&mut h, tree::os(&entry), tree::os(target));
        self.written(res)?;
        self.hasher.symlink(rel, mode, mtime, target);
        Ok(())
    }

    /// The part is complete: it goes into the manifest.
    pub fn finish(mut self) -> Result<PartInfo, ArchiveError> {
        self.finished = true;
        self.writer.builder()?;
        let hasher = std::mem::replace(&mut self.hasher, tree::TreeHasher::new());
        let stats = hasher.finish();
        self.writer.web_count += 1;
        let info = PartInfo {
            name: self.name.clone(),
            kind: PartKind::WebDir {
                mapping_url: self.mapping_url.clone(),
            },
            entry: String::from_utf8(self.prefix.clone()).expect("web/<n>/ is ASCII"),
            size: stats.bytes,
            sha256: stats.sha256,
            file_count: Some(stats.files),
            dir_count: Some(stats.dirs),
            symlink_count: Some(stats.symlinks),
        };
        self.writer.parts.push(info.clone());
        Ok(info)
    }
}

impl<W: Write> Drop for WebPart<'_, W> {
    fn drop(&mut self) {
        if !self.finished {
            // Entries of a part the manifest will not list: the archive cannot be finished.
            self.writer.tar = None;
        }
    }
}

/// A source that gave the `size` bytes announced must end there: one that goes on longer (or
/// fails on the last read) fails its part.
fn ended(content: &mut dyn Read, part: &str, shown: &str, size: u64) -> Result<(), ArchiveError> {
    let mut probe = [0u8; 1];
    match content.read(&mut probe) {
        Ok(0) => Ok(()),
        Ok(_) => Err(ArchiveError::SourceChanged {
            part: part.to_owned(),
            path: shown.to_owned(),
            detail: format!("it holds more than the {size} bytes announced"),
        }),
        Err(source) => Err(ArchiveError::ReadSource {
            part: part.to_owned(),
            path: shown.into(),
            source,
        }),
    }
}
