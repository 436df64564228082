//! Writing an archive: header entry, parts streamed one by one (hashed as they go), manifest last.

use std::fs::File;
use std::io::{self, BufReader, Write};
use std::os::unix::fs::OpenOptionsExt;

use camino::Utf8Path;
use sha2::{Digest, Sha256};

use super::codec::{self, ArchiveOptions, Compress};
use super::tag::{ArchiveTag, TagKey};
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

    /// Adds a regular file (the script's backup file, a database dump) as part `name`
    /// (letters, digits, `.`, `_`, `-`; at most 100 bytes), streamed and hashed.
    pub fn add_file_part(
        &mut self,
        name: &str,
        kind: PartKind,
        path: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        check_part_name(name)?;
        if matches!(kind, PartKind::WebDir { .. }) {
            return Err(ArchiveError::InvalidPartName {
                name: name.to_owned(),
                reason: "web folders are added with add_web_dir",
            });
        }
        self.name_is_free(name)?;
        self.builder()?;
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
        let size = meta.len();
        let entry = format!("files/{name}");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Regular);
        h.set_mode(0o600);
        h.set_mtime(self.mtime());
        h.set_size(size);
        let mut sha = Sha256::new();
        let mut reader = HashingTake::new(
            BufReader::with_capacity(256 * 1024, file),
            size,
            &mut sha,
            WhenShort::Fail,
        );
        let res =
            self.tar
                .as_mut()
                .expect("checked above")
                .append_data(&mut h, &entry, &mut reader);
        let (short, source_error) = (reader.short, reader.error.take());
        if let Some(e) = source_error {
            self.tar = None;
            return Err(src_err(e));
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
        self.parts.push(PartInfo {
            name: name.to_owned(),
            kind,
            entry,
            size,
            sha256: hex::encode(sha.finalize()),
            file_count: None,
            dir_count: None,
            symlink_count: None,
        });
        Ok(self.parts.last().expect("just pushed"))
    }

    /// Adds one url-mapping's web folder as part `web/<n>`: every folder (empty ones too),
    /// regular file and symlink (kept as a symlink, never followed) with modes and mtimes.
    pub fn add_web_dir(
        &mut self,
        mapping_url: &str,
        dir: &Utf8Path,
    ) -> Result<&PartInfo, ArchiveError> {
        if self
            .parts
            .iter()
            .any(|p| matches!(&p.kind, PartKind::WebDir { mapping_url: m } if m == mapping_url))
        {
            return Err(ArchiveError::DuplicatePart {
                name: mapping_url.to_owned(),
            });
        }
        let name = format!("web/{}", self.web_count);
        let prefix = format!("{name}/");
        let builder = self.builder()?;
        let stats: TreeStats = match tree::write_tree(builder, dir, prefix.as_bytes(), &name) {
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
    pub fn finish_into_inner(mut self) -> Result<(Manifest, W), ArchiveError> {
        let manifest = Manifest {
            format: FORMAT_NAME.to_owned(),
            header: self.header.clone(),
            parts: std::mem::take(&mut self.parts),
        };
        let json = serde_json::to_vec_pretty(&manifest).expect("manifest serialises");
        self.append_bytes(MANIFEST_ENTRY, &json)?;
        if let Some(key) = self.tag_key.take() {
            let tag =
                serde_json::to_vec_pretty(&ArchiveTag::new(&key, &json)).expect("tag serialises");
            self.append_bytes(TAG_ENTRY, &tag)?;
        }
        let builder = self.tar.take().ok_or(ArchiveError::WriterPoisoned)?;
        let close = |e| ArchiveError::WriteArchive {
            part: MANIFEST_ENTRY.into(),
            source: e,
        };
        let sink = builder.into_inner().map_err(close)?;
        let out = sink.finish().map_err(close)?;
        Ok((manifest, out))
    }

    /// [`finish_into_inner`](Self::finish_into_inner), dropping the output.
    pub fn finish(self) -> Result<Manifest, ArchiveError> {
        self.finish_into_inner().map(|(m, _)| m)
    }
}
