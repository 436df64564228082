//! Operations on instances, one file each, each a top-down sequence of the standard's steps:
//! backup, restore, migrate. (Bodies being written; the request/report types are the API.)

use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;

/// What to back up and where. The destination is named by the caller (the control panel).
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub instance: String,
    pub destination: Utf8PathBuf,
    /// Replace an existing destination file.
    pub force: bool,
    /// Script timeout; `None` means the configured default.
    pub timeout: Option<Duration>,
}

/// The outcome of a successful backup.
#[derive(Debug, Clone, Serialize)]
pub struct BackupReport {
    pub instance: String,
    pub file: Utf8PathBuf,
    pub size: u64,
    pub sha256: String,
    pub duration_ms: u64,
}

/// What to restore, from where.
#[derive(Debug, Clone)]
pub struct RestoreRequest {
    pub instance: String,
    pub source: Utf8PathBuf,
    pub timeout: Option<Duration>,
    /// Skip the safety snapshot taken before anything changes.
    pub no_safety_snapshot: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub instance: String,
    pub file: Utf8PathBuf,
    pub duration_ms: u64,
}
