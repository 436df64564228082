//! Records of backups made by `sufficient` scripts. Such a file is exactly what the script
//! wrote, with no manifest of ours, so the controller keeps, in its state folder, the file's
//! SHA-256 and the package it belongs to; restore looks the file up by its SHA-256.

use std::io::{self, Write};

use aps_meta::model::AppMeta;
use camino::Utf8Path;
use serde::{Deserialize, Serialize};

use crate::destination::{CommittedFile, sync_dir};

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
}

impl BackupRecord {
    pub fn for_script_backup(meta: &AppMeta, instance: &str, file: &CommittedFile) -> Self {
        BackupRecord {
            sha256: file.sha256.clone(),
            size: file.size,
            instance: instance.to_owned(),
            package_id: meta.id.clone(),
            package_name: meta.name.clone(),
            version: meta.version.clone(),
            release: meta.release.clone(),
            file: file.path.to_string(),
            created: jiff::Timestamp::now().to_string(),
        }
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
