//! The last outcome of each instance's periodic backups, kept in the state folder for
//! `aps-controller status`, `GET /v1/status` and `GET /metrics`: per instance one file
//! `<state>/status/<instance>.json`, per periodicity the last good backup (time, size,
//! duration, file or snapshot), the last failure (time, kind, step, message) and the failures
//! counted by kind since the file was made. `run` writes it after each instance.
//!
//! Why a file of its own and not the journal: the journal's history is rotated away (a
//! thousand instances fill it in days), and it keeps neither sizes, periodicities nor kinds.

use std::collections::BTreeMap;
use std::fs::File;

use camino::{Utf8Path, Utf8PathBuf};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};

use crate::periodicity::Periodicity;
use crate::problem::Problem;

/// The folder under the state folder.
pub const STATUS_DIR: &str = "status";
const LOCK_FILE: &str = ".lock";
const TMP_PREFIX: &str = ".tmp-";

/// The status folder of a state folder.
pub fn status_dir(state_dir: &Utf8Path) -> Utf8PathBuf {
    state_dir.join(STATUS_DIR)
}

/// One instance's file.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub instance: String,
    #[serde(default)]
    pub periodicities: BTreeMap<Periodicity, PeriodicityStatus>,
}

/// One periodicity of one instance.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PeriodicityStatus {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_success: Option<Success>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_failure: Option<Failure>,
    /// Failures by kind since the file was made (a Prometheus counter: it only grows).
    #[serde(default)]
    pub failures: BTreeMap<String, u64>,
}

/// A backup that was made and kept by the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Success {
    /// When it ended.
    pub time: Timestamp,
    /// The archive's bytes, or the bytes a snapshot added to the repository.
    pub size: u64,
    pub duration_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file: Option<Utf8PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// A backup (or the store's step after it) that failed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Failure {
    pub time: Timestamp,
    /// The README's error kind.
    pub kind: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
    pub duration_ms: u64,
}

/// One outcome to record.
#[derive(Debug, Clone)]
pub enum Recorded<'a> {
    Success(Success),
    Failure {
        at: Timestamp,
        duration_ms: u64,
        problem: &'a Problem,
    },
}

/// The status folder could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum StatusError {
    #[error("backup status {path}: {source}")]
    Io {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "backup status {path} is damaged ({message}); remove it and the next run writes it anew"
    )]
    Corrupt { path: Utf8PathBuf, message: String },
}

fn io(path: &Utf8Path) -> impl FnOnce(std::io::Error) -> StatusError + '_ {
    move |source| StatusError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Adds one outcome to the instance's file, under the folder's lock (two runs of different
/// periodicities may end the same instance at once).
pub fn record(
    state_dir: &Utf8Path,
    instance: &str,
    periodicity: Periodicity,
    outcome: Recorded<'_>,
) -> Result<(), StatusError> {
    let dir = status_dir(state_dir);
    std::fs::create_dir_all(&dir).map_err(io(&dir))?;
    let lock_path = dir.join(LOCK_FILE);
    let lock = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io(&lock_path))?;
    lock.lock().map_err(io(&lock_path))?;
    let path = file_of(&dir, instance);
    // A damaged file is started anew rather than blocking every later record.
    let mut status = read_file(&path).ok().flatten().unwrap_or_default();
    status.instance = instance.to_owned();
    let entry = status.periodicities.entry(periodicity).or_default();
    match outcome {
        Recorded::Success(s) => entry.last_success = Some(s),
        Recorded::Failure {
            at,
            duration_ms,
            problem,
        } => {
            *entry.failures.entry(problem.kind.to_owned()).or_default() += 1;
            entry.last_failure = Some(Failure {
                time: at,
                kind: problem.kind.to_owned(),
                step: problem.step.clone(),
                message: problem.message.clone(),
                duration_ms,
            });
        }
    }
    let mut bytes = serde_json::to_vec_pretty(&status).expect("a status serialises");
    bytes.push(b'\n');
    let temp = aps_controller::durable::TempName {
        prefix: TMP_PREFIX,
        suffix: "",
    };
    aps_controller::durable::write_atomic(&path, &bytes, 0o600, temp).map_err(|e| StatusError::Io {
        path: e.path,
        source: e.source,
    })
}

/// Every instance's file in the folder, by instance name (none when nothing was recorded).
pub fn read_all(state_dir: &Utf8Path) -> Result<BTreeMap<String, InstanceStatus>, StatusError> {
    let dir = status_dir(state_dir);
    let entries = match dir.read_dir_utf8() {
        Ok(rd) => rd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(io(&dir)(e)),
    };
    let mut all = BTreeMap::new();
    for entry in entries {
        let entry = entry.map_err(io(&dir))?;
        let Some(name) = entry.file_name().strip_suffix(".json") else {
            continue;
        };
        if !aps_controller::registry::is_valid_instance_name(name) {
            continue;
        }
        if let Some(status) = read_file(entry.path())? {
            all.insert(name.to_owned(), status);
        }
    }
    Ok(all)
}

fn file_of(dir: &Utf8Path, instance: &str) -> Utf8PathBuf {
    dir.join(format!("{instance}.json"))
}

fn read_file(path: &Utf8Path) -> Result<Option<InstanceStatus>, StatusError> {
    let bytes = match std::fs::read(path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io(path)(e)),
    };
    serde_json::from_slice(&bytes)
        .map(Some)
        .map_err(|e| StatusError::Corrupt {
            path: path.to_owned(),
            message: e.to_string(),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use aps_controller::ErrorKind;

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn successes_replace_and_failures_count_per_kind_and_periodicity() {
        let dir = tempfile::tempdir().unwrap();
        let state = Utf8Path::from_path(dir.path()).unwrap();
        let ok = |t: &str, size| {
            Recorded::Success(Success {
                time: at(t),
                size,
                duration_ms: 1500,
                file: None,
                snapshot: Some("ab".into()),
            })
        };
        let failed = Problem::new(ErrorKind::ScriptFailed, Some("backup"), "exit 3");
        record(
            state,
            "blog",
            Periodicity::Daily,
            ok("2026-12-01T01:00:00Z", 10),
        )
        .unwrap();
        record(
            state,
            "blog",
            Periodicity::Daily,
            ok("2026-12-02T01:00:00Z", 20),
        )
        .unwrap();
        for _ in 0..2 {
            let f = Recorded::Failure {
                at: at("2026-12-03T01:00:00Z"),
                duration_ms: 7,
                problem: &failed,
            };
            record(state, "blog", Periodicity::Daily, f).unwrap();
        }
        record(
            state,
            "blog",
            Periodicity::Weekly,
            ok("2026-11-30T02:00:00Z", 5),
        )
        .unwrap();
        let all = read_all(state).unwrap();
        let daily = &all["blog"].periodicities[&Periodicity::Daily];
        assert_eq!(daily.last_success.as_ref().unwrap().size, 20);
        assert_eq!(daily.failures["script-failed"], 2);
        assert_eq!(daily.last_failure.as_ref().unwrap().message, "exit 3");
        let weekly = &all["blog"].periodicities[&Periodicity::Weekly];
        assert!(weekly.failures.is_empty() && weekly.last_failure.is_none());
        // Nothing but instance files is read: the lock file and strangers are skipped.
        std::fs::write(status_dir(state).join("NOT A NAME.json"), "{").unwrap();
        assert_eq!(read_all(state).unwrap().len(), 1);
    }

    #[test]
    fn a_damaged_file_is_named_when_read_and_replaced_when_written() {
        let dir = tempfile::tempdir().unwrap();
        let state = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(status_dir(state)).unwrap();
        std::fs::write(status_dir(state).join("blog.json"), "{not json").unwrap();
        let e = read_all(state).unwrap_err();
        assert!(e.to_string().contains("blog.json"), "{e}");
        let problem = Problem::new(ErrorKind::Busy, None, "held");
        let f = Recorded::Failure {
            at: at("2026-12-03T01:00:00Z"),
            duration_ms: 0,
            problem: &problem,
        };
        record(state, "blog", Periodicity::Hourly, f).unwrap();
        assert_eq!(
            read_all(state).unwrap()["blog"].periodicities[&Periodicity::Hourly].failures["busy"],
            1
        );
    }
}
