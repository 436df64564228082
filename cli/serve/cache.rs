//! The read routes' answers (`GET /v1/instances`, `/v1/status`, `/metrics`), made once and
//! kept while the folders they are read from are unchanged: every request would otherwise read
//! every instance record.
//!
//! A folder is unchanged while its device, inode, mtime and ctime are. Every write of the
//! registry and of the status files is a rename into the folder (or a removal), which changes
//! the folder's mtime — whichever process wrote, the CLI or another `serve`. An answer made
//! less than [`RACY`] after a folder last changed is not kept: a write within the same tick of
//! the file system's clock could leave the same mtime (the racy case git's index knows).

use std::collections::HashMap;
use std::os::unix::fs::MetadataExt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use camino::Utf8Path;

use super::http::{Body, Reply};

/// How long after a folder's last change an answer made from it is kept.
const RACY: Duration = Duration::from_secs(1);
/// Answers kept at most (one per route and query); beyond it the cache starts empty again.
const MAX_ENTRIES: usize = 64;

/// A folder's identity and last change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    dev: u64,
    ino: u64,
    mtime_ns: i128,
    ctime_ns: i128,
}

impl Stamp {
    /// `None` for a folder that is not there (yet): that is a state too.
    fn of(folder: &Utf8Path) -> Option<Stamp> {
        let m = std::fs::symlink_metadata(folder).ok()?;
        Some(Stamp {
            dev: m.dev(),
            ino: m.ino(),
            mtime_ns: m.mtime() as i128 * 1_000_000_000 + m.mtime_nsec() as i128,
            ctime_ns: m.ctime() as i128 * 1_000_000_000 + m.ctime_nsec() as i128,
        })
    }

    /// Changed less than [`RACY`] before `now`.
    fn is_recent(self, now: SystemTime) -> bool {
        let now_ns = now
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as i128);
        let last = self.mtime_ns.max(self.ctime_ns);
        now_ns - last < RACY.as_nanos() as i128
    }
}

struct Entry {
    stamps: Vec<Option<Stamp>>,
    epoch: i64,
    status: u16,
    content_type: &'static str,
    bytes: Arc<Vec<u8>>,
}

/// One value made from `folders` (the registry's records and the status files read), kept
/// while they are unchanged: the answers that change with the clock alone (`/v1/status`'s
/// ages) are made from it anew without reading a file.
pub struct Stamped<T> {
    slot: Mutex<Option<Kept<T>>>,
}

/// A value and the folders' stamps it was made at.
type Kept<T> = (Vec<Option<Stamp>>, Arc<T>);

impl<T> Default for Stamped<T> {
    fn default() -> Self {
        Stamped {
            slot: Mutex::new(None),
        }
    }
}

impl<T> Stamped<T> {
    /// The value kept while `folders` are unchanged, else `make`'s (kept unless it failed or
    /// a folder just changed).
    pub fn get<E>(
        &self,
        folders: &[&Utf8Path],
        make: impl FnOnce() -> Result<T, E>,
    ) -> Result<Arc<T>, E> {
        let now = SystemTime::now();
        let stamps: Vec<Option<Stamp>> = folders.iter().map(|f| Stamp::of(f)).collect();
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((kept, value)) = slot.as_ref()
            && *kept == stamps
        {
            return Ok(Arc::clone(value));
        }
        let value = Arc::new(make()?);
        let settled = stamps.iter().flatten().all(|s| !s.is_recent(now));
        *slot = settled.then(|| (stamps, Arc::clone(&value)));
        Ok(value)
    }
}

/// What a route made: its status, content type and bytes, and whether it may be kept (a
/// failure to read is not).
pub struct Made {
    pub status: u16,
    pub content_type: &'static str,
    pub bytes: Vec<u8>,
    pub keep: bool,
}

/// The kept answers, by key (the route and what of its query matters).
#[derive(Default)]
pub struct ReadCache {
    entries: Mutex<HashMap<String, Entry>>,
}

impl ReadCache {
    /// The answer kept under `key` while `folders` are unchanged and `epoch` is the same
    /// (the second an answer that counts ages was made in; 0 for the others), else `make`'s,
    /// which replaces it. One request makes it while the others wait for it, so that fifty
    /// clients arriving after a change read the folders once, not fifty times.
    pub fn get(
        &self,
        key: &str,
        epoch: i64,
        folders: &[&Utf8Path],
        make: impl FnOnce() -> Made,
    ) -> Reply {
        let now = SystemTime::now();
        let stamps: Vec<Option<Stamp>> = folders.iter().map(|f| Stamp::of(f)).collect();
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(e) = entries
            .get(key)
            .filter(|e| e.stamps == stamps && e.epoch == epoch)
        {
            return Reply {
                status: e.status,
                body: Body::Bytes {
                    content_type: e.content_type,
                    bytes: Arc::clone(&e.bytes),
                },
            };
        }
        let made = make();
        let bytes = Arc::new(made.bytes);
        let settled = stamps.iter().flatten().all(|s| !s.is_recent(now));
        if made.keep && settled {
            if entries.len() >= MAX_ENTRIES {
                entries.clear();
            }
            entries.insert(
                key.to_owned(),
                Entry {
                    stamps,
                    epoch,
                    status: made.status,
                    content_type: made.content_type,
                    bytes: Arc::clone(&bytes),
                },
            );
        } else {
            entries.remove(key);
        }
        Reply {
            status: made.status,
            body: Body::Bytes {
                content_type: made.content_type,
                bytes,
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn made(text: &str) -> Made {
        Made {
            status: 200,
            content_type: "text/plain",
            bytes: text.as_bytes().to_vec(),
            keep: true,
        }
    }

    fn text(r: Reply) -> String {
        match r.body {
            Body::Bytes { bytes, .. } => String::from_utf8(bytes.to_vec()).unwrap(),
            Body::Json(v) => v.to_string(),
        }
    }

    #[test]
    fn an_answer_is_kept_until_its_folder_changes_and_never_while_it_just_changed() {
        let dir = tempfile::tempdir().unwrap();
        let folder = Utf8Path::from_path(dir.path()).unwrap().join("records");
        std::fs::create_dir(&folder).unwrap();
        let cache = ReadCache::default();
        // Just made: not kept, every request makes it anew.
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("a"))), "a");
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("b"))), "b");
        // Settled (mtime set into the past): kept.
        let past =
            std::fs::FileTimes::new().set_modified(SystemTime::now() - Duration::from_secs(60));
        std::fs::File::open(&folder)
            .unwrap()
            .set_times(past)
            .unwrap();
        // ctime moved with set_times: wait out the racy second.
        std::thread::sleep(RACY + Duration::from_millis(50));
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("c"))), "c");
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("d"))), "c");
        // A file renamed into the folder is seen at the next request.
        std::fs::write(folder.join(".tmp"), "x").unwrap();
        std::fs::rename(folder.join(".tmp"), folder.join("new.json")).unwrap();
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("e"))), "e");
        // A failure is never kept.
        std::thread::sleep(RACY + Duration::from_millis(50));
        let failed = Made {
            keep: false,
            ..made("f")
        };
        assert_eq!(text(cache.get("k", 0, &[&folder], || failed)), "f");
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("g"))), "g");
        assert_eq!(text(cache.get("k", 0, &[&folder], || made("h"))), "g");
    }
}
