//! The local folder store: `<root>/<instance>/<backup file>`.
//!
//! A backup the operator sent elsewhere (`backup NAME --to FILE`) is recorded here as
//! `<root>/<instance>/<backup name>.aps-ref`, a one-line file holding that path, so that
//! listing, `verify --instance`, `restore --latest` and drills see it. Retention removes only
//! such a record, never a file outside the store.
//!
//! Names are handed out by [`LocalStore::reserve`]: it creates the marker
//! `.<name>.aps-partial-reserved` with `O_EXCL`, so two backups started in the same second
//! (in one process or two) get different names (`.2`, `.3` … after the time).

use std::io;

use camino::{Utf8Path, Utf8PathBuf};

pub use super::files::RECORD_SUFFIX;
use super::files::{ArchiveFiles, StoreError, StoredFile};
use crate::naming::BackupName;

/// Suffix of a reservation marker; it contains the partial marker, so listings show it as a
/// backup being written.
const RESERVED_SUFFIX: &str = ".aps-partial-reserved";
/// A record holds one path; anything longer is not ours.
const MAX_RECORD_BYTES: u64 = 4096;

/// A backup name held for one backup; the marker is removed when this is dropped.
#[derive(Debug)]
pub struct Reservation {
    pub name: BackupName,
    /// `<root>/<instance>/<file name>`: where a backup into the store is written.
    pub path: Utf8PathBuf,
    marker: Utf8PathBuf,
    /// The marker, open and `flock`ed for the reservation's life: a marker whose lock can be
    /// taken was left by a process that is gone (the kernel drops a dead process's locks).
    _held: std::fs::File,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.marker);
    }
}

/// Whether `name` is a reservation marker (or the file one is made from): never a backup, so
/// never listed.
fn is_reservation(name: &str) -> bool {
    name.starts_with('.') && name.ends_with(RESERVED_SUFFIX)
}

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Utf8PathBuf,
    /// The default store (`<state>/backups`) is made when first written; a store named in
    /// panel.toml must exist, so that a typo never fills a folder nobody looks at.
    create_root: bool,
}

impl LocalStore {
    /// A store whose root is created when first written.
    pub fn new(root: impl Into<Utf8PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            create_root: true,
        }
    }

    /// A store whose root must already exist.
    pub fn configured(root: impl Into<Utf8PathBuf>) -> Self {
        LocalStore {
            root: root.into(),
            create_root: false,
        }
    }

    /// Refuses a configured store whose root does not exist.
    pub fn check_exists(&self) -> Result<(), StoreError> {
        if self.create_root || self.root.is_dir() {
            Ok(())
        } else {
            Err(StoreError::Missing {
                store: self.describe(),
            })
        }
    }

    pub fn root(&self) -> &Utf8Path {
        &self.root
    }

    pub fn instance_dir(&self, instance: &str) -> Utf8PathBuf {
        self.root.join(instance)
    }

    /// Reserves `name`, or the same name with the next free sequence number, for one backup;
    /// creates the instance folder. The store's root must exist.
    pub fn reserve(&self, name: &BackupName) -> Result<Reservation, StoreError> {
        self.check_exists()?;
        let dir = self.instance_dir(&name.instance);
        std::fs::create_dir_all(&dir).map_err(|source| StoreError::CreateDir {
            path: dir.clone(),
            source,
        })?;
        static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let write_err = |path: &Utf8Path| {
            let path = path.to_owned();
            move |source| StoreError::Write { path, source }
        };
        for seq in name.seq.max(1)..=u32::MAX {
            let name = name.with_seq(seq);
            let file = name.file_name();
            let marker = dir.join(format!(".{file}{RESERVED_SUFFIX}"));
            // The marker appears already locked: made and locked under a name of this
            // process's own, then linked (which fails when the name is taken), so a sweep of
            // stale markers can never take a live one for a dead one's.
            let n = COUNTER.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let making = dir.join(format!(
                ".aps-reserving-{}-{n}{RESERVED_SUFFIX}",
                std::process::id()
            ));
            let held = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&making)
                .map_err(write_err(&making))?;
            let linked = held
                .lock()
                .and_then(|()| std::fs::hard_link(&making, &marker));
            let _ = std::fs::remove_file(&making);
            match linked {
                Ok(()) => {}
                // Taken, or (NotFound) our file swept before we locked it: the next name.
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::AlreadyExists | io::ErrorKind::NotFound
                    ) =>
                {
                    continue;
                }
                Err(source) => return Err(write_err(&marker)(source)),
            }
            let path = dir.join(&file);
            let record = dir.join(format!("{file}{RECORD_SUFFIX}"));
            if path.symlink_metadata().is_ok() || record.symlink_metadata().is_ok() {
                let _ = std::fs::remove_file(&marker);
                continue;
            }
            return Ok(Reservation {
                name,
                path,
                marker,
                _held: held,
            });
        }
        Err(StoreError::Write {
            path: dir,
            source: io::Error::other("no free backup name left for this second"),
        })
    }

    /// Removes the reservation markers whose process is gone (killed during a backup: a
    /// marker is `flock`ed by its live owner, and the kernel drops a dead one's lock); returns
    /// what was removed. Markers of live backups are left alone.
    pub fn remove_stale_reservations(&self) -> Vec<Utf8PathBuf> {
        use std::os::unix::fs::OpenOptionsExt as _;
        let mut removed = Vec::new();
        let Ok(instances) = std::fs::read_dir(&self.root) else {
            return removed;
        };
        for dir in instances.flatten() {
            if !dir.file_type().is_ok_and(|t| t.is_dir()) {
                continue;
            }
            let Ok(entries) = std::fs::read_dir(dir.path()) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(name) = entry.file_name().into_string() else {
                    continue;
                };
                let Ok(path) = Utf8PathBuf::from_path_buf(entry.path()) else {
                    continue;
                };
                if !is_reservation(&name) {
                    continue;
                }
                let Ok(file) = std::fs::OpenOptions::new()
                    .read(true)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&path)
                else {
                    continue;
                };
                // Removed while we hold its lock, so no owner can be in between.
                if file.try_lock().is_ok() && std::fs::remove_file(&path).is_ok() {
                    removed.push(path);
                }
            }
        }
        removed
    }

    /// Records a backup written to `location` (outside the store) under the reserved name;
    /// returns the record's path.
    pub fn record_external(
        &self,
        reservation: &Reservation,
        location: &Utf8Path,
    ) -> Result<Utf8PathBuf, StoreError> {
        let record = Utf8PathBuf::from(format!("{}{RECORD_SUFFIX}", reservation.path));
        let write = || -> io::Result<()> {
            use std::io::Write as _;
            let mut f = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .open(&record)?;
            writeln!(f, "{location}")?;
            f.sync_all()
        };
        write().map_err(|source| StoreError::Write {
            path: record.clone(),
            source,
        })?;
        Ok(record)
    }

    /// The backup file itself: in the store, or where a record points.
    pub fn path_of(&self, file: &StoredFile) -> Utf8PathBuf {
        file.location
            .clone()
            .unwrap_or_else(|| self.entry_path(file))
    }

    /// The store's own entry: the backup file, or the record of an external one.
    fn entry_path(&self, file: &StoredFile) -> Utf8PathBuf {
        self.root.join(&file.instance).join(&file.file_name)
    }

    fn read_record(path: &Utf8Path) -> io::Result<Utf8PathBuf> {
        use std::io::Read as _;
        let mut text = String::new();
        std::fs::File::open(path)?
            .take(MAX_RECORD_BYTES)
            .read_to_string(&mut text)?;
        Ok(Utf8PathBuf::from(text.trim_end_matches('\n')))
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
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if is_reservation(&name) {
                // A name held for a backup, not a backup (the backup's own partial file shows
                // while it is written).
                continue;
            }
            if name.ends_with(RECORD_SUFFIX) && !name.starts_with('.') {
                let location = Self::read_record(&dir.join(&name))?;
                // Not followed: a symlink there is not the file the controller wrote.
                let size = location
                    .symlink_metadata()
                    .ok()
                    .filter(|m| m.is_file())
                    .map(|m| m.len());
                out.push(StoredFile::external(instance, &name, location, size));
            } else {
                out.push(StoredFile::classify(instance, &name, meta.len()));
            }
        }
        Ok(())
    }
}

impl ArchiveFiles for LocalStore {
    fn describe(&self) -> String {
        self.root.to_string()
    }

    fn location(&self, file: &StoredFile) -> String {
        self.path_of(file).into_string()
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
        // For an external backup, its record: files outside the store are the operator's.
        let path = self.entry_path(file);
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

    fn name_at(time: &str) -> BackupName {
        BackupName::new(
            "blog",
            crate::Periodicity::Manual,
            time.parse().unwrap(),
            crate::ArchiveFormat::default(),
        )
    }

    #[test]
    fn reservations_in_one_second_get_different_names() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let store = LocalStore::new(root);
        let name = name_at("2026-01-02T03:04:05Z");
        let a = store.reserve(&name).unwrap();
        let b = store.reserve(&name).unwrap();
        std::fs::write(&a.path, "x").unwrap();
        drop(a);
        // The first name is now a file, the second still reserved: the third gets `.3`.
        let c = store.reserve(&name).unwrap();
        let names: Vec<String> = [&b, &c]
            .iter()
            .map(|r| r.path.file_name().unwrap().to_owned())
            .collect();
        assert_eq!(
            names,
            [
                "blog_manual_2026-01-02-03-04-05.2.aps.tar.zst",
                "blog_manual_2026-01-02-03-04-05.3.aps.tar.zst"
            ]
        );
        let listed = store.list(Some("blog")).unwrap();
        assert_eq!(
            listed
                .iter()
                .filter(|f| f.status == BackupStatus::Partial)
                .count(),
            0,
            "reserved names are never listed (issue 23): {listed:?}"
        );
        assert_eq!(store.remove_stale_reservations(), Vec::<Utf8PathBuf>::new());
        drop((b, c));
        assert_eq!(store.list(Some("blog")).unwrap().len(), 1);
    }

    #[test]
    fn missing_root_is_refused_when_reserving() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap().join("nonexistent");
        let err = LocalStore::configured(&root)
            .reserve(&name_at("2026-01-02T03:04:05Z"))
            .unwrap_err();
        assert!(matches!(err, StoreError::Missing { .. }), "{err}");
        assert!(!root.exists(), "the store is not created silently");
    }

    #[test]
    fn external_backups_are_listed_by_their_record_and_pruned_by_it() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        let store = LocalStore::new(root.join("store"));
        std::fs::create_dir(root.join("store")).unwrap();
        let outside = root.join("elsewhere.aps.tar.zst");
        std::fs::write(&outside, "backup").unwrap();
        let r = store.reserve(&name_at("2026-01-02T03:04:05Z")).unwrap();
        store.record_external(&r, &outside).unwrap();
        drop(r);
        let listed = store.list(Some("blog")).unwrap();
        assert_eq!(listed.len(), 1, "{listed:?}");
        let f = &listed[0];
        assert_eq!(f.status, BackupStatus::Good);
        assert_eq!(f.size, 6);
        assert_eq!(store.path_of(f), outside);
        assert_eq!(store.location(f), outside.as_str());
        // The file moved away: the record stays, and says so.
        std::fs::rename(&outside, root.join("moved")).unwrap();
        let f = store.list(Some("blog")).unwrap().remove(0);
        assert_eq!(f.status, BackupStatus::Missing);
        std::fs::rename(root.join("moved"), &outside).unwrap();
        store.remove(&f).unwrap();
        assert!(store.list(Some("blog")).unwrap().is_empty());
        assert!(
            outside.exists(),
            "retention never deletes a file outside the store"
        );
    }
}
