//! One operation per instance at a time (docs/scripts.md, "Destination and rollback").
//!
//! The lock is the file `<state>/locks/<instance>.lock`. Exclusion comes from the operating
//! system (`flock` through [`File::try_lock`]), which a dead process cannot keep: when the
//! holder dies, the kernel releases its lock with it. The file's *content* — owner pid, start
//! time, host name, operation — only serves messages: "busy since … by pid …", and, when a file
//! is found whose lock is free, "taken over from dead pid …" (restic/borg users' stale-lock
//! trouble cannot happen: there is no lock to break by hand).
//!
//! The file is removed when the lock is released (on drop). Because another process may have
//! opened the file just before it was removed, a taker checks after locking that the path
//! still names the file it locked, and starts again if not.

use std::fs::{File, OpenOptions, TryLockError};
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::process::hostname;

/// Who holds (or held) a lock, as recorded in the lock file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockOwner {
    pub pid: u32,
    pub since: Timestamp,
    pub hostname: String,
    /// What the owner is doing (`backup`, `restore`, …).
    pub operation: String,
}

/// A lock file found with no live holder: its previous owner died (or was killed) holding it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleLock {
    /// What the file said, if it said anything readable.
    pub previous_owner: Option<LockOwner>,
}

/// The held lock of one instance; released (and its file removed) on drop.
#[derive(Debug)]
pub struct InstanceLock {
    file: File,
    path: Utf8PathBuf,
    instance: String,
    owner: LockOwner,
    takeover: Option<StaleLock>,
}

impl InstanceLock {
    /// Takes the lock of `instance` under `<state_dir>/locks/`, or fails at once with
    /// [`LockError::Busy`] when a live process holds it.
    ///
    /// When a lock left by a dead process was taken over, [`InstanceLock::takeover`] says so:
    /// the caller logs it (docs/scripts.md: "the takeover is logged").
    pub fn acquire(
        state_dir: &Utf8Path,
        instance: &str,
        operation: &str,
    ) -> Result<InstanceLock, LockError> {
        validate_instance(instance)?;
        let dir = state_dir.join("locks");
        std::fs::create_dir_all(&dir).map_err(|source| LockError::Io {
            path: dir.clone(),
            source,
        })?;
        let path = dir.join(format!("{instance}.lock"));
        let io_err = |source| LockError::Io {
            path: path.clone(),
            source,
        };

        // Bounded: each round only repeats when a holder removed the file between our open and
        // our lock, which needs a new holder each time.
        for _ in 0..100 {
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(io_err)?;
            match file.try_lock() {
                Ok(()) => {}
                Err(TryLockError::WouldBlock) => {
                    let owner = read_owner(&mut file);
                    return Err(LockError::Busy {
                        instance: instance.to_owned(),
                        path,
                        owner_pid: owner.as_ref().map(|o| o.pid),
                        since: owner.as_ref().map(|o| o.since),
                        operation: owner.map(|o| o.operation),
                    });
                }
                Err(TryLockError::Error(source)) => return Err(io_err(source)),
            }
            if !same_file(&file, &path) {
                continue;
            }

            // We hold it. Anything already written there belongs to a holder that is gone.
            let previous = read_owner(&mut file);
            let takeover = match read_len(&file) {
                0 => None,
                _ => Some(StaleLock {
                    previous_owner: previous,
                }),
            };
            let owner = LockOwner {
                pid: std::process::id(),
                since: Timestamp::now(),
                hostname: hostname(),
                operation: operation.to_owned(),
            };
            write_owner(&mut file, &owner).map_err(io_err)?;
            return Ok(InstanceLock {
                file,
                path,
                instance: instance.to_owned(),
                owner,
                takeover,
            });
        }
        Err(io_err(io::Error::other(
            "the lock file kept being replaced while taking it",
        )))
    }

    /// The previous owner's record when a dead process's lock was taken over.
    pub fn takeover(&self) -> Option<&StaleLock> {
        self.takeover.as_ref()
    }

    /// The instance this lock is for.
    pub fn instance(&self) -> &str {
        &self.instance
    }

    /// The lock file.
    pub fn path(&self) -> &Utf8Path {
        &self.path
    }

    /// What this process recorded in the lock file.
    pub fn owner(&self) -> &LockOwner {
        &self.owner
    }
}

impl Drop for InstanceLock {
    fn drop(&mut self) {
        // Remove while still holding the lock: a taker that opened the old file sees the path
        // now names another file (or none) and starts again.
        let _ = std::fs::remove_file(&self.path);
        let _ = self.file.unlock();
    }
}

/// Whether `instance`'s lock is free right now (nobody holds it). A free lock may have a file
/// left by a dead holder. Used by journal recovery to decide an entry is abandoned.
pub fn is_free(state_dir: &Utf8Path, instance: &str) -> Result<bool, LockError> {
    validate_instance(instance)?;
    let path = state_dir.join("locks").join(format!("{instance}.lock"));
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(true),
        Err(source) => return Err(LockError::Io { path, source }),
    };
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            Ok(true)
        }
        Err(TryLockError::WouldBlock) => Ok(false),
        Err(TryLockError::Error(source)) => Err(LockError::Io { path, source }),
    }
}

/// Reads the owner record of `instance`'s lock file, if any (for status displays).
pub fn recorded_owner(state_dir: &Utf8Path, instance: &str) -> Option<LockOwner> {
    validate_instance(instance).ok()?;
    let path = state_dir.join("locks").join(format!("{instance}.lock"));
    let mut file = File::open(path).ok()?;
    read_owner(&mut file)
}

fn validate_instance(instance: &str) -> Result<(), LockError> {
    // The name becomes a file name: no separators, no hidden or special names.
    let bad = instance.is_empty()
        || instance.starts_with('.')
        || instance.contains(['/', '\0', '\n'])
        || instance.len() > 200;
    if bad {
        return Err(LockError::InvalidInstance {
            instance: instance.to_owned(),
        });
    }
    Ok(())
}

fn same_file(file: &File, path: &Utf8Path) -> bool {
    match (file.metadata(), std::fs::metadata(path)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

fn read_len(file: &File) -> u64 {
    file.metadata().map(|m| m.len()).unwrap_or(0)
}

fn read_owner(file: &mut File) -> Option<LockOwner> {
    let mut text = String::new();
    file.rewind().ok()?;
    file.read_to_string(&mut text).ok()?;
    serde_json::from_str(&text).ok()
}

fn write_owner(file: &mut File, owner: &LockOwner) -> io::Result<()> {
    let text = serde_json::to_string(owner).map_err(io::Error::other)?;
    file.set_len(0)?;
    file.rewind()?;
    file.write_all(text.as_bytes())?;
    file.write_all(b"\n")?;
    file.flush()
}

/// Why the lock of an instance could not be taken.
#[derive(Debug, thiserror::Error)]
pub enum LockError {
    #[error(
        "instance {instance} is busy: {}", busy_detail(*.owner_pid, .since.as_ref(), .operation.as_deref(), .path)
    )]
    Busy {
        instance: String,
        path: Utf8PathBuf,
        owner_pid: Option<u32>,
        since: Option<Timestamp>,
        operation: Option<String>,
    },
    #[error("`{instance}` cannot be used as an instance name in a lock file name")]
    InvalidInstance { instance: String },
    #[error("lock file {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: io::Error,
    },
}

fn busy_detail(
    pid: Option<u32>,
    since: Option<&Timestamp>,
    operation: Option<&str>,
    path: &Utf8Path,
) -> String {
    match (pid, since) {
        (Some(pid), Some(since)) => format!(
            "{} by pid {pid} since {since} (lock file {path})",
            operation.unwrap_or("an operation")
        ),
        _ => format!("another process holds lock file {path}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
        (dir, path)
    }

    #[test]
    fn second_taker_in_the_same_process_is_refused() {
        let (_keep, state) = tempdir();
        let lock = InstanceLock::acquire(&state, "blog", "backup").unwrap();
        assert!(lock.takeover().is_none());
        assert!(!is_free(&state, "blog").unwrap());
        let err = InstanceLock::acquire(&state, "blog", "restore").unwrap_err();
        match &err {
            LockError::Busy {
                owner_pid,
                operation,
                ..
            } => {
                assert_eq!(*owner_pid, Some(std::process::id()));
                assert_eq!(operation.as_deref(), Some("backup"));
            }
            other => panic!("expected Busy, got {other:?}"),
        }
        assert!(err.to_string().contains("blog"), "{err}");
        // Another instance is independent.
        let _other = InstanceLock::acquire(&state, "shop", "backup").unwrap();
        drop(lock);
        assert!(!state.join("locks/blog.lock").exists());
        assert!(is_free(&state, "blog").unwrap());
        let again = InstanceLock::acquire(&state, "blog", "restore").unwrap();
        assert!(again.takeover().is_none());
    }

    #[test]
    fn leftover_file_with_free_lock_is_a_takeover() {
        let (_keep, state) = tempdir();
        std::fs::create_dir_all(state.join("locks")).unwrap();
        let old = LockOwner {
            pid: 999_999,
            since: "2024-01-01T00:00:00Z".parse().unwrap(),
            hostname: "old".into(),
            operation: "backup".into(),
        };
        std::fs::write(
            state.join("locks/blog.lock"),
            serde_json::to_string(&old).unwrap(),
        )
        .unwrap();
        assert!(is_free(&state, "blog").unwrap());
        let lock = InstanceLock::acquire(&state, "blog", "restore").unwrap();
        assert_eq!(lock.takeover().unwrap().previous_owner, Some(old));
        assert_eq!(recorded_owner(&state, "blog").unwrap().operation, "restore");
    }

    #[test]
    fn bad_instance_names() {
        let (_keep, state) = tempdir();
        for name in ["", "../x", "a/b", ".hidden"] {
            let err = InstanceLock::acquire(&state, name, "backup").unwrap_err();
            assert!(matches!(err, LockError::InvalidInstance { .. }), "{name}");
        }
    }
}
