//! Records of backups made by `sufficient` scripts. Such a file is exactly what the script
//! wrote, with no manifest of ours, so the controller keeps, in its state folder, the file's
//! SHA-256 and the package it belongs to; restore looks the file up by its SHA-256.
//! Each record carries an HMAC of its fields under the backup key (`tag`), so that a record
//! is only believed when this controller (or one sharing its key) wrote it.

use std::io::{self, Write};

use aps_meta::model::AppMeta;
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::archive::TagKey;
use crate::destination::CommittedFile;
use crate::durable::sync_dir;

/// The domain of a record's tag (see [`TagKey::record_tag`]).
const RECORD_DOMAIN: &str = "script-backup-record";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct BackupRecord {
    pub sha256: String,
    pub size: u64,
    pub instance: String,
    pub package_id: Option<String>,
    pub package_name: String,
    pub version: String,
    pub release: String,
    /// Where it was written (informative: the file may have been moved since).
    pub file: String,
    pub created: String,
    /// HMAC-SHA-256 of the fields above (all but `file`, which is informative) under the
    /// backup key; absent in records written before tags existed, which are not believed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
}

impl BackupRecord {
    pub fn for_script_backup(meta: &AppMeta, instance: &str, file: &CommittedFile) -> Self {
        Self::for_file(meta, instance, &file.path, file.size, &file.sha256)
    }

    /// The record of a `sufficient` script's file of the backup `header` describes (also for
    /// one kept in a repository snapshot, once its manifest's tag has been checked).
    pub fn for_header(
        header: &crate::archive::ManifestHeader,
        path: &Utf8Path,
        size: u64,
        sha256: &str,
    ) -> Self {
        BackupRecord {
            sha256: sha256.to_owned(),
            size,
            instance: header.instance.clone(),
            // Packages without an `id` (before 1.2) have an empty one in the header.
            package_id: Some(header.package_id.clone()).filter(|id| !id.is_empty()),
            package_name: header.package_name.clone(),
            version: header.version.clone(),
            release: header.release.clone(),
            file: path.to_string(),
            created: jiff::Timestamp::now().to_string(),
            tag: None,
        }
    }

    /// The record of a file of `size` bytes with SHA-256 `sha256` at `path`.
    pub fn for_file(
        meta: &AppMeta,
        instance: &str,
        path: &Utf8Path,
        size: u64,
        sha256: &str,
    ) -> Self {
        let header = crate::operation::manifest_header(meta, instance);
        Self::for_header(&header, path, size, sha256)
    }

    fn tagged_fields(&self) -> [Vec<u8>; 8] {
        [
            self.sha256.clone().into_bytes(),
            self.size.to_string().into_bytes(),
            self.instance.clone().into_bytes(),
            self.package_id.clone().unwrap_or_default().into_bytes(),
            self.package_name.clone().into_bytes(),
            self.version.clone().into_bytes(),
            self.release.clone().into_bytes(),
            self.created.clone().into_bytes(),
        ]
    }

    /// Sets `tag` to `key`'s HMAC of the record.
    pub fn sign(mut self, key: &TagKey) -> Self {
        let fields = self.tagged_fields();
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        self.tag = Some(key.record_tag(RECORD_DOMAIN, &refs));
        self
    }

    /// Whether `tag` is `key`'s HMAC of the record (compared in constant time).
    pub fn is_authentic(&self, key: &TagKey) -> bool {
        let Some(tag) = &self.tag else {
            return false;
        };
        let fields = self.tagged_fields();
        let refs: Vec<&[u8]> = fields.iter().map(Vec::as_slice).collect();
        key.check_record_tag(RECORD_DOMAIN, &refs, tag)
    }

    /// Writes `<dir>/<sha256>.json` atomically.
    pub fn save(&self, dir: &Utf8Path) -> io::Result<()> {
        std::fs::create_dir_all(dir)?;
        let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut tmp, self)?;
        tmp.as_file_mut().flush()?;
        tmp.as_file().sync_all()?;
        tmp.persist(dir.join(format!("{}.json", self.sha256)))
            .map_err(|e| e.error)?;
        sync_dir(dir)
    }

    /// Whether any record is of a file of `size` bytes: restore hashes a file (a whole extra
    /// read) only when it could be a recorded one.
    pub fn any_with_size(dir: &Utf8Path, size: u64) -> io::Result<bool> {
        let entries = match std::fs::read_dir(dir) {
            Ok(e) => e,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let path = entry?.path();
            if path.extension().is_none_or(|x| x != "json") {
                continue; // temporary files of a concurrent `save`
            }
            let Ok(bytes) = std::fs::read(&path) else {
                continue; // removed meanwhile
            };
            if serde_json::from_slice::<BackupRecord>(&bytes).is_ok_and(|r| r.size == size) {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Forgets the record of `sha256` (a migration's intermediate file, deleted afterwards).
    pub fn remove(dir: &Utf8Path, sha256: &str) -> io::Result<()> {
        if !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(());
        }
        match std::fs::remove_file(dir.join(format!("{sha256}.json"))) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }

    /// The record of the file whose SHA-256 is `sha256`, if the controller made it.
    pub fn find(dir: &Utf8Path, sha256: &str) -> io::Result<Option<Self>> {
        if !sha256.chars().all(|c| c.is_ascii_hexdigit()) {
            return Ok(None);
        }
        match std::fs::read(dir.join(format!("{sha256}.json"))) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e),
        }
    }
}
