//! Stores of archive files: what a listed file is ([`StoredFile`]), the listing every such
//! store answers ([`ArchiveFiles`]: the local folder and the S3 off-machine copy), the upload
//! the off-machine copy adds ([`Remote`]), and `backups NAME`'s entries over them.

use serde::Serialize;

use jiff::Timestamp;

use crate::naming::{self, ArchiveFormat, BackupName};
use crate::periodicity::Periodicity;

/// Suffix of the record of a backup written outside the store (`backup NAME --to FILE`).
pub const RECORD_SUFFIX: &str = ".aps-ref";

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
            .strip_suffix(RECORD_SUFFIX)
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

impl StoreError {
    /// As a failed step reports it: a missing configured store is the user's to fix.
    pub fn problem(&self) -> crate::problem::Problem {
        let kind = match self {
            StoreError::Missing { .. } => aps_controller::ErrorKind::Usage,
            _ => aps_controller::ErrorKind::Internal,
        };
        crate::problem::Problem::new(kind, None, self.to_string())
    }
}

/// What retention and listing need from a store of archive files.
pub trait ArchiveFiles: Send + Sync {
    /// A human name for messages: a path or `s3://bucket/prefix`.
    fn describe(&self) -> String;
    /// Every file of `instance`, or of every instance; sorted by key.
    fn list(&self, instance: Option<&str>) -> Result<Vec<StoredFile>, StoreError>;
    fn remove(&self, file: &StoredFile) -> Result<(), StoreError>;
    /// Where a listed file is, in full: a path, or `s3://bucket/prefix/key`.
    fn location(&self, file: &StoredFile) -> String;
}

/// A store that receives copies of local backups.
pub trait Remote: ArchiveFiles {
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackupEntry {
    /// Where it is, in full: what `restore --from` and `verify` take (for a remote store,
    /// `s3://bucket/prefix/key`).
    pub path: String,
    /// The store's file name (for a backup written with `--to`, its record's name).
    pub file: String,
    /// Written outside the store (`backup --to FILE`); the store holds a record of it.
    pub external: bool,
    pub periodicity: Option<Periodicity>,
    pub time: Option<Timestamp>,
    pub size: u64,
    pub status: BackupStatus,
    pub format: Option<ArchiveFormat>,
}

impl BackupEntry {
    fn new(store: &dyn ArchiveFiles, f: StoredFile) -> Self {
        BackupEntry {
            path: store.location(&f),
            external: f.location.is_some(),
            periodicity: f.name.as_ref().map(|n| n.periodicity),
            time: f.name.as_ref().map(|n| n.time),
            format: f.name.as_ref().map(|n| n.format),
            file: f.file_name,
            size: f.size,
            status: f.status,
        }
    }
}

/// Every file of `instance`, newest first; files without a time (unrecognised) last.
pub fn list_backups(
    store: &dyn ArchiveFiles,
    instance: &str,
) -> Result<Vec<BackupEntry>, StoreError> {
    let mut files = store.list(Some(instance))?;
    files.sort_by(|a, b| b.cmp_age(a));
    Ok(files
        .into_iter()
        .map(|f| BackupEntry::new(store, f))
        .collect())
}

/// The newest good backup of `instance`, if any.
pub fn newest_good(
    store: &dyn ArchiveFiles,
    instance: &str,
) -> Result<Option<StoredFile>, StoreError> {
    Ok(store
        .list(Some(instance))?
        .into_iter()
        .filter(StoredFile::is_good)
        .max_by(StoredFile::cmp_age))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use camino::Utf8Path;

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

    #[test]
    fn newest_first_and_newest_good_skips_partial_and_empty() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("blog")).unwrap();
        for (name, body) in [
            ("blog_daily_2026-06-01-02-00-00.aps.tar.zst", "aa"),
            ("blog_manual_2026-06-03-02-00-00.aps.tar.zst", "a"),
            ("blog_daily_2026-06-04-02-00-00.aps.tar.zst", ""),
            (
                ".blog_daily_2026-06-05-02-00-00.aps.tar.zst.aps-partial-Q",
                "a",
            ),
            ("notes", "a"),
        ] {
            std::fs::write(root.join("blog").join(name), body).unwrap();
        }
        let store = LocalStore::new(root);
        let listed: Vec<(String, BackupStatus)> = list_backups(&store, "blog")
            .unwrap()
            .into_iter()
            .map(|e| (e.file, e.status))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    ".blog_daily_2026-06-05-02-00-00.aps.tar.zst.aps-partial-Q".to_owned(),
                    BackupStatus::Partial
                ),
                (
                    "blog_daily_2026-06-04-02-00-00.aps.tar.zst".to_owned(),
                    BackupStatus::Empty
                ),
                (
                    "blog_manual_2026-06-03-02-00-00.aps.tar.zst".to_owned(),
                    BackupStatus::Good
                ),
                (
                    "blog_daily_2026-06-01-02-00-00.aps.tar.zst".to_owned(),
                    BackupStatus::Good
                ),
                ("notes".to_owned(), BackupStatus::Unrecognized),
            ]
        );
        assert_eq!(
            newest_good(&store, "blog").unwrap().unwrap().file_name,
            "blog_manual_2026-06-03-02-00-00.aps.tar.zst"
        );
        assert_eq!(newest_good(&store, "shop").unwrap(), None);
    }
}
