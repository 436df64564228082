//! `backups NAME`: what a store holds for one instance, newest first.

use jiff::Timestamp;
use serde::Serialize;

use crate::naming::ArchiveFormat;
use crate::periodicity::Periodicity;
use crate::store::{BackupStatus, Store, StoreError, StoredFile};

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
    fn new(store: &dyn Store, f: StoredFile) -> Self {
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
pub fn list_backups(store: &dyn Store, instance: &str) -> Result<Vec<BackupEntry>, StoreError> {
    let mut files = store.list(Some(instance))?;
    files.sort_by(|a, b| b.cmp_age(a));
    Ok(files
        .into_iter()
        .map(|f| BackupEntry::new(store, f))
        .collect())
}

/// The newest good backup of `instance`, if any.
pub fn newest_good(store: &dyn Store, instance: &str) -> Result<Option<StoredFile>, StoreError> {
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
