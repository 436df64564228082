//! restic's repository locks, so that servers sharing a repository (and the `restic` tool) keep
//! out of each other's way: a backup holds a shared lock, a prune an exclusive one.
//!
//! A lock is restic's: the file `locks/<id>` beside `config`, the JSON `{time, exclusive,
//! hostname, username, pid, uid, gid}` encrypted with the repository's key, `<id>` the SHA-256
//! of the encrypted bytes. It is refreshed (a new file, the old one removed) every
//! [`REFRESH`], and a lock older than [`STALE`] or of a process of this machine that is gone is
//! stale and ignored, as restic decides it. The engine itself takes no locks.
//!
//! Only a repository in a bucket, where several servers meet, is locked: a local folder's is
//! one controller's (and its two-phase prune already keeps a concurrent backup's data).
//!
//! A shared lock waits while an exclusive one is held. An exclusive lock is written first and
//! then waits for the shared ones to go, so that backups starting meanwhile wait behind it
//! instead of starving it; two exclusive ones both step back and try again after a random
//! pause. Either waits at most `lock-wait`, then removes its own lock and refuses, naming the
//! holder.

use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use futures::StreamExt;
use object_store::ObjectStore;
use object_store::path::Path;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::config::RepositoryLocation;
use crate::store::repository::{RepositoryError, RepositoryStore};

/// A lock older than this is stale (restic's `staleTimeout`).
const STALE: Duration = Duration::from_secs(30 * 60);
/// How often a held lock is written again (restic's `refreshInterval`).
const REFRESH: Duration = Duration::from_secs(5 * 60);
/// How often a waiting lock looks again.
const POLL: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LockKind {
    /// A backup: any number at a time, none while an exclusive lock is held.
    Shared,
    /// A prune: alone.
    Exclusive,
}

/// restic's lock file.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct LockFile {
    time: jiff::Timestamp,
    exclusive: bool,
    hostname: String,
    #[serde(default)]
    username: String,
    pid: i64,
    #[serde(default)]
    uid: u32,
    #[serde(default)]
    gid: u32,
}

impl LockFile {
    fn stale(&self, now: jiff::Timestamp) -> bool {
        let age = now.duration_since(self.time);
        if age > jiff::SignedDuration::try_from(STALE).unwrap_or(jiff::SignedDuration::MAX) {
            return true;
        }
        // A process of this machine can be asked whether it still runs; another machine's
        // only ages out.
        self.hostname == machine_host()
            && i32::try_from(self.pid).is_ok_and(|pid| {
                // SAFETY: signal 0 only checks that the process exists.
                let rc = unsafe { libc::kill(pid, 0) };
                rc != 0 && std::io::Error::last_os_error().raw_os_error() == Some(libc::ESRCH)
            })
    }

    fn describe(&self) -> String {
        format!(
            "{} lock of process {} on {} (user {}) since {}",
            if self.exclusive {
                "an exclusive"
            } else {
                "a shared"
            },
            self.pid,
            self.hostname,
            self.username,
            self.time
        )
    }
}

/// This machine's host name, as restic and the engine take it (`gethostname`).
pub fn machine_host() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is writable for its whole length.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "localhost".to_owned();
    }
    let end = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

/// Where lock files are: `<folder>/locks/` or `<prefix>locks/` in the bucket.
#[derive(Debug)]
enum Place {
    Folder(Utf8PathBuf),
    S3 {
        store: object_store::aws::AmazonS3,
        prefix: String,
    },
}

impl Place {
    fn of(location: &RepositoryLocation) -> Result<Place, String> {
        Ok(match location {
            RepositoryLocation::Folder(path) => Place::Folder(path.join("locks")),
            RepositoryLocation::S3(s3) => Place::S3 {
                store: crate::store::s3::client(s3, "store.s3")
                    .map_err(|e| format!("invalid [store.s3] settings: {e}"))?,
                prefix: format!("{}locks/", s3.key_prefix()),
            },
        })
    }

    fn put(&self, name: &str, data: Vec<u8>) -> Result<(), Failed> {
        match self {
            Place::Folder(dir) => {
                std::fs::create_dir_all(dir)
                    .map_err(|e| Failed::from(format!("cannot create {dir}: {e}")))?;
                // Whole or not at all: a reader never sees half a lock.
                let tmp = dir.join(format!(".{name}.tmp"));
                std::fs::write(&tmp, data)
                    .and_then(|()| std::fs::rename(&tmp, dir.join(name)))
                    .map_err(|e| Failed::from(format!("cannot write lock {dir}/{name}: {e}")))
            }
            Place::S3 { store, prefix } => {
                let path = Path::from(format!("{prefix}{name}"));
                super::backend::runtime()
                    .block_on(store.put(&path, data.into()))
                    .map(drop)
                    .map_err(|e| Failed::s3(format!("cannot write lock {path}"), &e))
            }
        }
    }

    /// The names of the lock files (64 hex digits); a failed listing is an error, never "none".
    fn list(&self) -> Result<Vec<String>, Failed> {
        let is_id = |n: &str| n.len() == 64 && n.bytes().all(|b| b.is_ascii_hexdigit());
        match self {
            Place::Folder(dir) => match std::fs::read_dir(dir) {
                Ok(entries) => Ok(entries
                    .filter_map(|e| e.ok()?.file_name().into_string().ok())
                    .filter(|n| is_id(n))
                    .collect()),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
                Err(e) => Err(format!("cannot list the locks in {dir}: {e}").into()),
            },
            Place::S3 { store, prefix } => {
                let dir = Path::from(prefix.as_str());
                let metas: Vec<_> =
                    super::backend::runtime().block_on(store.list(Some(&dir)).collect::<Vec<_>>());
                let mut out = Vec::new();
                for meta in metas {
                    let meta = meta
                        .map_err(|e| Failed::s3(format!("cannot list the locks in {dir}"), &e))?;
                    if let Some(name) = meta.location.filename().filter(|n| is_id(n)) {
                        out.push(name.to_owned());
                    }
                }
                Ok(out)
            }
        }
    }

    /// A lock's bytes; `None` when it went meanwhile (its holder released it).
    fn get(&self, name: &str) -> Result<Option<Vec<u8>>, Failed> {
        match self {
            Place::Folder(dir) => match std::fs::read(dir.join(name)) {
                Ok(b) => Ok(Some(b)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(e) => Err(format!("cannot read lock {dir}/{name}: {e}").into()),
            },
            Place::S3 { store, prefix } => {
                let path = Path::from(format!("{prefix}{name}"));
                match super::backend::runtime()
                    .block_on(async { store.get(&path).await?.bytes().await })
                {
                    Ok(b) => Ok(Some(b.to_vec())),
                    Err(object_store::Error::NotFound { .. }) => Ok(None),
                    Err(e) => Err(Failed::s3(format!("cannot read lock {path}"), &e)),
                }
            }
        }
    }

    fn remove(&self, name: &str) -> Result<(), Failed> {
        match self {
            Place::Folder(dir) => match std::fs::remove_file(dir.join(name)) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(format!("cannot remove lock {dir}/{name}: {e}").into())
                }
                _ => Ok(()),
            },
            Place::S3 { store, prefix } => {
                let path = Path::from(format!("{prefix}{name}"));
                super::backend::runtime()
                    .block_on(store.delete(&path))
                    .map_err(|e| Failed::s3(format!("cannot remove lock {path}"), &e))
            }
        }
    }
}

/// A request about lock files that failed, and whether the store did not serve it.
#[derive(Debug)]
struct Failed {
    message: String,
    unreachable: bool,
}

impl Failed {
    fn s3(what: String, e: &object_store::Error) -> Failed {
        Failed {
            message: format!("{what}: {e}"),
            unreachable: crate::store::s3::unreachable(e),
        }
    }

    fn into_error(self, repository: String) -> RepositoryError {
        if self.unreachable {
            RepositoryError::Unreachable {
                repository,
                message: self.message,
            }
        } else {
            RepositoryError::Engine {
                repository,
                message: self.message,
            }
        }
    }
}

impl From<String> for Failed {
    fn from(message: String) -> Failed {
        Failed {
            message,
            unreachable: false,
        }
    }
}

/// A held lock: removed when dropped, refreshed meanwhile.
#[derive(Debug)]
pub struct RepositoryLock {
    shared: Arc<Held>,
    refresher: Option<JoinHandle<()>>,
}

#[derive(Debug)]
struct Held {
    place: Place,
    /// The current lock file's name.
    name: Mutex<String>,
    /// Set when the lock is dropped: the refresher stops.
    done: Mutex<bool>,
    wake: Condvar,
}

impl Drop for RepositoryLock {
    fn drop(&mut self) {
        *self.shared.done.lock().unwrap_or_else(|e| e.into_inner()) = true;
        self.shared.wake.notify_all();
        if let Some(t) = self.refresher.take() {
            let _ = t.join();
        }
        let name = self.shared.name.lock().unwrap_or_else(|e| e.into_inner());
        // Left behind, a lock only ages out (stale after 30 minutes, or at once for a process
        // of this machine that is gone).
        let _ = self.shared.place.remove(&name);
    }
}

impl RepositoryStore {
    /// Takes the repository's lock of `kind`, waiting at most panel.toml's `lock-wait` for the
    /// locks it conflicts with to go.
    /// A repository in a local folder is one controller's, and takes none (`None`): a
    /// controller killed meanwhile would leave a lock `restic` refuses to work under until
    /// `restic unlock`.
    pub fn lock(&self, kind: LockKind) -> Result<Option<RepositoryLock>, RepositoryError> {
        if matches!(self.settings.location, RepositoryLocation::Folder(_)) {
            return Ok(None);
        }
        let fail = |f: Failed| f.into_error(self.describe());
        let place = Place::of(&self.settings.location).map_err(|m| fail(m.into()))?;
        let wait = self.settings.sharing.lock_wait;
        let started = Instant::now();
        loop {
            let name = self.write_lock(&place, kind)?;
            match self.await_others(&place, &name, kind, started, wait) {
                Ok(()) => return Ok(Some(self.hold(place, name, kind))),
                Err(Conflict::StepBack) => {
                    place.remove(&name).map_err(fail)?;
                    std::thread::sleep(POLL + jitter());
                }
                Err(Conflict::Refused(holder)) => {
                    place.remove(&name).map_err(fail)?;
                    return Err(RepositoryError::Locked {
                        repository: self.describe(),
                        holder,
                        waited: started.elapsed(),
                    });
                }
                Err(Conflict::Failed(failed)) => {
                    let _ = place.remove(&name);
                    return Err(fail(failed));
                }
            }
        }
    }

    fn lock_file(&self, kind: LockKind) -> LockFile {
        LockFile {
            time: jiff::Timestamp::now(),
            exclusive: kind == LockKind::Exclusive,
            hostname: machine_host(),
            username: std::env::var("USER").unwrap_or_default(),
            pid: i64::from(std::process::id()),
            uid: rustix::process::geteuid().as_raw(),
            gid: rustix::process::getegid().as_raw(),
        }
    }

    /// Writes a new lock file of `kind` and returns its name.
    fn write_lock(&self, place: &Place, kind: LockKind) -> Result<String, RepositoryError> {
        let json = serde_json::to_vec(&self.lock_file(kind)).expect("a lock serialises");
        let data = self.repo.encrypt_raw(&json).map_err(self.err())?;
        let name = hex::encode(Sha256::digest(&data));
        place
            .put(&name, data)
            .map_err(|f| f.into_error(self.describe()))?;
        Ok(name)
    }

    /// Waits until no other lock conflicts with ours (`own`), within `wait` of `started`.
    fn await_others(
        &self,
        place: &Place,
        own: &str,
        kind: LockKind,
        started: Instant,
        wait: Duration,
    ) -> Result<(), Conflict> {
        loop {
            let mut holder = None;
            for name in place.list().map_err(Conflict::Failed)? {
                if name == own {
                    continue;
                }
                let Some(data) = place.get(&name).map_err(Conflict::Failed)? else {
                    continue;
                };
                let lock = match self.read_lock(&data) {
                    Ok(lock) => lock,
                    // Not ours to judge: a lock nobody can read is held until removed by hand.
                    Err(reason) => {
                        holder = Some(format!("lock file locks/{name}, which {reason}"));
                        break;
                    }
                };
                if lock.stale(jiff::Timestamp::now()) {
                    // What `restic unlock` does: restic itself would refuse to work under it.
                    let _ = place.remove(&name);
                    continue;
                }
                match (kind, lock.exclusive) {
                    (LockKind::Shared, false) => {}
                    // Two exclusive locks: both step back, a random pause decides.
                    (LockKind::Exclusive, true) if started.elapsed() < wait => {
                        return Err(Conflict::StepBack);
                    }
                    (LockKind::Shared, true) if started.elapsed() < wait => {
                        // Behind a prune: out of its way while waiting.
                        return Err(Conflict::StepBack);
                    }
                    _ => {
                        holder = Some(lock.describe());
                        break;
                    }
                }
            }
            match holder {
                None => return Ok(()),
                Some(holder) if started.elapsed() >= wait => {
                    return Err(Conflict::Refused(holder));
                }
                Some(_) => std::thread::sleep(POLL),
            }
        }
    }

    fn read_lock(&self, data: &[u8]) -> Result<LockFile, String> {
        let plain = self
            .repo
            .decrypt_raw(data)
            .map_err(|_| "cannot be decrypted with this repository's key".to_owned())?;
        // restic compresses the files of a version 2 repository: a leading 2, then zstd.
        let json = match plain.first() {
            Some(2) => {
                zstd::decode_all(&plain[1..]).map_err(|e| format!("cannot be decompressed: {e}"))?
            }
            _ => plain,
        };
        serde_json::from_slice(&json).map_err(|e| format!("is not a lock ({e})"))
    }

    /// Keeps the lock `name` fresh until it is dropped.
    fn hold(&self, place: Place, name: String, kind: LockKind) -> RepositoryLock {
        let shared = Arc::new(Held {
            place,
            name: Mutex::new(name),
            done: Mutex::new(false),
            wake: Condvar::new(),
        });
        let held = Arc::clone(&shared);
        let file = self.lock_file(kind);
        let (location, key) = (self.settings.location.clone(), self.key.clone());
        // The thread's own handle is opened only when a refresh is due: most locks are
        // released long before.
        let open = move || {
            super::keys::unopened(&location)
                .ok()?
                .open(&rustic_core::Credentials::Masterkey(key))
                .ok()
        };
        let refresher = Some(std::thread::spawn(move || refresh(open, &held, file)));
        RepositoryLock { shared, refresher }
    }
}

/// Every [`REFRESH`], writes the lock again with a new time and removes the old file.
fn refresh(
    open: impl FnOnce() -> Option<rustic_core::Repository<rustic_core::OpenStatus>>,
    held: &Held,
    mut file: LockFile,
) {
    let mut open = Some(open);
    let mut repo = None;
    let mut done = held.done.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let (d, timeout) = held
            .wake
            .wait_timeout_while(done, REFRESH, |d| !*d)
            .unwrap_or_else(|e| e.into_inner());
        done = d;
        if *done || !timeout.timed_out() {
            return;
        }
        if let Some(open) = open.take() {
            repo = open();
        }
        let Some(repo) = &repo else {
            // Without a handle the lock only ages out; the work it guards goes on.
            continue;
        };
        file.time = jiff::Timestamp::now();
        let json = serde_json::to_vec(&file).expect("a lock serialises");
        let Ok(data) = repo.encrypt_raw(&json) else {
            continue;
        };
        let new = hex::encode(Sha256::digest(&data));
        if held.place.put(&new, data).is_ok() {
            let mut name = held.name.lock().unwrap_or_else(|e| e.into_inner());
            let old = std::mem::replace(&mut *name, new);
            let _ = held.place.remove(&old);
        }
    }
}

enum Conflict {
    /// Remove our lock, pause, try again.
    StepBack,
    /// Waited long enough: the holder that is still there.
    Refused(String),
    Failed(Failed),
}

/// 0–1 s, different in each process: two stepping back rarely meet again.
fn jitter() -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    Duration::from_millis(u64::from(
        (nanos ^ std::process::id().wrapping_mul(2_654_435_761)) % 1000,
    ))
}
