//! Backup stores: a local folder (where the controller writes) and, optionally, an
//! S3-compatible bucket (the off-machine copy). Both hold `<instance>/<backup file name>`.
//!
//! A store is the source of truth: nothing else records which backups exist, so listing it
//! and parsing the names rebuilds everything retention and `backups` need.

pub mod local;
#[cfg(feature = "repository")]
pub mod repository;
#[cfg(feature = "repository")]
mod repository_restore;
#[cfg(feature = "repository")]
mod repository_web;
#[cfg(feature = "s3")]
pub mod s3;

use serde::Serialize;

use crate::naming::{self, BackupName};

pub use local::LocalStore;

/// What a listed file is, as far as the name and size tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum BackupStatus {
    /// A complete backup: parsed name, non-empty, in its instance's folder.
    Good,
    /// A controller temp file (`.<name>.aps-partial-*`): being written, or left by a crash.
    Partial,
    /// A final name holding zero bytes: never a valid archive.
    Empty,
    /// Not a backup name (or in another instance's folder): left alone.
    Unrecognized,
    /// A backup written elsewhere (`backup --to FILE`) whose file is no longer there.
    Missing,
}

/// One file found in a store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoredFile {
    /// `<instance>/<file name>`: what the store needs to find the file again.
    pub key: String,
    /// The folder it was found in.
    pub instance: String,
    pub file_name: String,
    /// Parsed name, when the status is `good` or `empty` (and partials whose inner name parses).
    pub name: Option<BackupName>,
    pub size: u64,
    pub status: BackupStatus,
    /// For a backup written outside the store (`backup NAME --to FILE`): that file. The store
    /// keeps only a record of it, `<instance>/<backup name>.aps-ref`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub location: Option<camino::Utf8PathBuf>,
}

impl StoredFile {
    /// Classifies a file found as `<instance>/<file_name>`.
    pub fn classify(instance: &str, file_name: &str, size: u64) -> Self {
        let (name, status) = if naming::is_partial(file_name) {
            let inner = file_name[1..]
                .split(naming::PARTIAL_MARKER)
                .next()
                .and_then(|n| BackupName::parse(n).ok());
            (inner, BackupStatus::Partial)
        } else {
            match BackupName::parse(file_name) {
                Ok(n) if n.instance == instance && size == 0 => (Some(n), BackupStatus::Empty),
                Ok(n) if n.instance == instance => (Some(n), BackupStatus::Good),
                _ => (None, BackupStatus::Unrecognized),
            }
        };
        StoredFile {
            key: format!("{instance}/{file_name}"),
            instance: instance.to_owned(),
            file_name: file_name.to_owned(),
            name,
            size,
            status,
            location: None,
        }
    }

    /// A record `<instance>/<record_name>` of a backup written to `location`; `size` is `None`
    /// when that file is gone (or is no longer a regular file).
    pub fn external(
        instance: &str,
        record_name: &str,
        location: camino::Utf8PathBuf,
        size: Option<u64>,
    ) -> Self {
        let name = record_name
            .strip_suffix(local::RECORD_SUFFIX)
            .and_then(|n| BackupName::parse(n).ok())
            .filter(|n| n.instance == instance);
        let status = match (&name, size) {
            (None, _) => BackupStatus::Unrecognized,
            (Some(_), None) => BackupStatus::Missing,
            (Some(_), Some(0)) => BackupStatus::Empty,
            (Some(_), Some(_)) => BackupStatus::Good,
        };
        StoredFile {
            key: format!("{instance}/{record_name}"),
            instance: instance.to_owned(),
            file_name: record_name.to_owned(),
            name,
            size: size.unwrap_or(0),
            status,
            location: Some(location),
        }
    }

    pub fn is_good(&self) -> bool {
        self.status == BackupStatus::Good
    }

    /// Older to newer: by the time in the name and its sequence number (two backups of one
    /// second), then by file name.
    pub fn cmp_age(&self, other: &Self) -> std::cmp::Ordering {
        let time = |f: &Self| f.name.as_ref().map(|n| (n.time, n.seq));
        time(self)
            .cmp(&time(other))
            .then_with(|| self.file_name.cmp(&other.file_name))
    }
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot list backup store {store}: {source}")]
    List {
        store: String,
        source: std::io::Error,
    },
    #[error("cannot remove {key} from backup store {store}: {source}")]
    Remove {
        store: String,
        key: String,
        source: std::io::Error,
    },
    #[error("cannot create folder {path} in the backup store: {source}")]
    CreateDir {
        path: camino::Utf8PathBuf,
        source: std::io::Error,
    },
    #[error("backup store {store}: {message}")]
    Remote { store: String, message: String },
    #[error(
        "backup store {store} does not exist; create it (`mkdir -p {store}`) or change `store` in panel.toml"
    )]
    Missing { store: String },
    #[error("cannot write {path} in the backup store: {source}")]
    Write {
        path: camino::Utf8PathBuf,
        source: std::io::Error,
    },
}

/// What retention and listing need from any store.
pub trait Store: Send + Sync {
    /// A human name for messages: a path or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Every file of `instance`, or of every instance; sorted by key.
    fn list(&self, instance: Option<&str>) -> Result<Vec<StoredFile>, StoreError>;
    fn remove(&self, file: &StoredFile) -> Result<(), StoreError>;
    /// Where a listed file is, in full: a path, or `s3://bucket/prefix/key`.
    fn location(&self, file: &StoredFile) -> String;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_names() {
        let good = StoredFile::classify("blog", "blog_daily_2026-01-02-03-04-05.aps.tar.zst", 10);
        assert_eq!(good.status, BackupStatus::Good);
        assert_eq!(good.key, "blog/blog_daily_2026-01-02-03-04-05.aps.tar.zst");
        let empty = StoredFile::classify("blog", "blog_daily_2026-01-02-03-04-05.aps.tar.zst", 0);
        assert_eq!(empty.status, BackupStatus::Empty);
        let partial = StoredFile::classify(
            "blog",
            ".blog_daily_2026-01-02-03-04-05.aps.tar.zst.aps-partial-Ab12",
            10,
        );
        assert_eq!(partial.status, BackupStatus::Partial);
        assert_eq!(partial.name.unwrap().instance, "blog");
        let elsewhere = StoredFile::classify("shop", "blog_daily_2026-01-02-03-04-05.aps.tar", 10);
        assert_eq!(elsewhere.status, BackupStatus::Unrecognized);
        let junk = StoredFile::classify("blog", "notes.txt", 10);
        assert_eq!(junk.status, BackupStatus::Unrecognized);
    }
}

/// A store that receives copies of local backups.
pub trait Remote: Store {
    /// Uploads `local` as `key` (`<instance>/<file>`) and checks the stored copy against
    /// `sha256` (lowercase hex of the local file) before returning.
    fn upload(
        &self,
        local: &camino::Utf8Path,
        key: &str,
        sha256: &str,
    ) -> Result<Upload, StoreError>;
    /// Downloads `key` to `to` (written via temp + rename).
    fn download(&self, key: &str, to: &camino::Utf8Path) -> Result<(), StoreError>;
}

/// A checked upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Upload {
    pub key: String,
    pub size: u64,
    pub sha256: String,
    /// Parts used; 1 for a single PUT.
    pub parts: u64,
}
