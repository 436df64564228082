//! The local folder store: `<root>/<instance>/<backup file>`.

use std::io;

use camino::{Utf8Path, Utf8PathBuf};

use super::{Store, StoreError, StoredFile};
use crate::naming::BackupName;

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Utf8PathBuf,
}

impl LocalStore {
    pub fn new(root: impl Into<Utf8PathBuf>) -> Self {
        LocalStore { root: root.into() }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn instance_dir(&self, instance: &str) -> Utf8PathBuf {
        self.root.join(instance)
    }

    /// Where the controller is to write `name`; creates the instance folder.
    pub fn destination(&self, name: &BackupName) -> Result<Utf8PathBuf, StoreError> {
        let dir = self.instance_dir(&name.instance);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        Ok(dir.join(name.file_name()))
    }

    pub fn path_of(&self, file: &StoredFile) -> Utf8PathBuf {
        self.root.join(&file.instance).join(&file.file_name)
    }

    fn list_dir(&self, instance: &str, out: &mut Vec<StoredFile>) -> io::Result<()> {
        let dir = self.instance_dir(instance);
        let entries = match std::fs::read_dir(&dir) {
            Ok(e) => e,
            // An instance never backed up has no folder: no backups, not an error.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        for entry in entries {
            let entry = entry?;
            let meta = entry.metadata()?;
            if !meta.is_file() {
                continue;
            }
            // Non-UTF-8 names cannot be ours.
            if let Ok(name) = entry.file_name().into_string() {
                out.push(StoredFile::classify(instance, &name, meta.len()));
            }
        }
        Ok(())
    }
}

impl Store for LocalStore {
    fn describe(&self) -> String {
        self.root.to_string()
    }

    fn list(&self, instance: Option<&str>) -> Result<Vec<StoredFile>, StoreError> {
        let err = |source| StoreError::List {
            store: self.describe(),
            source,
        };
        let mut out = Vec::new();
        match instance {
            Some(i) => self.list_dir(i, &mut out).map_err(err)?,
            None => {
                let entries = match std::fs::read_dir(&self.root) {
                    Ok(e) => e,
                    Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
                    Err(e) => return Err(err(e)),
                };
                for entry in entries {
                    let entry = entry.map_err(err)?;
                    if entry.file_type().map_err(err)?.is_dir()
                        && let Ok(name) = entry.file_name().into_string()
                    {
                        self.list_dir(&name, &mut out).map_err(err)?;
                    }
                }
            }
        }
        out.sort_by(|a, b| a.key.cmp(&b.key));
        Ok(out)
    }

    fn remove(&self, file: &StoredFile) -> Result<(), StoreError> {
        let path = self.path_of(file);
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(()),
            // Someone else pruned it first: the goal is reached.
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(source) => Err(StoreError::Remove {
                store: self.describe(),
                key: file.key.clone(),
                source,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::BackupStatus;

    #[test]
    fn lists_what_is_on_disk() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let store = LocalStore::new(root);
        assert!(
            store.list(None).unwrap().is_empty(),
            "missing root is an empty store"
        );
        for (dir, name, body) in [
            ("blog", "blog_daily_2026-01-02-03-04-05.aps.tar.zst", "x"),
            (
                "blog",
                ".blog_daily_2026-01-03-03-04-05.aps.tar.zst.aps-partial-1",
                "x",
            ),
            ("blog", "blog_daily_2026-01-04-03-04-05.aps.tar.zst", ""),
            ("shop", "shop_all_2026-01-02-03-04-05.aps.tar", "xx"),
        ] {
            std::fs::create_dir_all(root.join(dir)).unwrap();
            std::fs::write(root.join(dir).join(name), body).unwrap();
        }
        let all = store.list(None).unwrap();
        let got: Vec<_> = all
            .iter()
            .map(|f| (f.key.as_str(), f.status, f.size))
            .collect();
        assert_eq!(
            got,
            [
                (
                    "blog/.blog_daily_2026-01-03-03-04-05.aps.tar.zst.aps-partial-1",
                    BackupStatus::Partial,
                    1
                ),
                (
                    "blog/blog_daily_2026-01-02-03-04-05.aps.tar.zst",
                    BackupStatus::Good,
                    1
                ),
                (
                    "blog/blog_daily_2026-01-04-03-04-05.aps.tar.zst",
                    BackupStatus::Empty,
                    0
                ),
                (
                    "shop/shop_all_2026-01-02-03-04-05.aps.tar",
                    BackupStatus::Good,
                    2
                ),
            ]
        );
        assert_eq!(store.list(Some("shop")).unwrap().len(), 1);
        assert!(store.list(Some("nobody")).unwrap().is_empty());
        store.remove(&all[3]).unwrap();
        store.remove(&all[3]).unwrap();
        assert!(store.list(Some("shop")).unwrap().is_empty());
    }
}
