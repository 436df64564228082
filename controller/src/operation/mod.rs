//! Operations on instances, one file each, each a top-down sequence of the standard's steps:
//! [`backup`], [`restore`], [`migrate`], [`verify`], and the lifecycle's [`install`],
//! [`configure`] and [`enable`] (enable and disable). Request and report types are the library's
//! API.

pub mod backup;
pub mod configure;
pub mod enable;
pub mod import;
pub mod install;
pub mod migrate;
pub mod new_instance;
pub mod record;
pub mod remove;
pub mod restore;
pub mod script_file;
mod script_run;
pub(crate) mod tenant;
pub mod upgrade;
pub mod verify;

use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;

use aps_meta::model::{AppMeta, ApsVersion};

use crate::archive::{ArchiveOptions, ManifestHeader};

pub use verify::VerifyReport;

/// The manifest header of a backup of `instance`, a package `meta`, made now. Packages without
/// an `id` (before 1.2) are identified by their name.
pub fn manifest_header(meta: &AppMeta, instance: &str) -> ManifestHeader {
    let aps = match meta.aps_version {
        ApsVersion::V1_0 => "1.0",
        ApsVersion::V1_1 => "1.1",
        ApsVersion::V1_2 => "1.2",
    };
    ManifestHeader::new(
        meta.id.clone().unwrap_or_default(),
        meta.name.clone(),
        meta.version.clone(),
        meta.release.clone(),
        aps,
        instance,
    )
}

/// The archive part (and the work file) holding the dump of database requirement `db_id`:
/// `db-<id>.sql`, the id made file-name-safe.
pub fn dump_part_name(db_id: &str) -> String {
    format!("db-{}.sql", file_safe(db_id))
}

/// A file-name-safe form of a db id (APP-META.xml ids may hold any character), for part and
/// work-file names.
pub(crate) fn file_safe(id: &str) -> String {
    id.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// What to back up and where. The destination is named by the caller (the control panel).
#[derive(Debug, Clone)]
pub struct BackupRequest {
    pub instance: String,
    pub destination: Utf8PathBuf,
    /// Replace an existing destination file.
    pub force: bool,
    /// Script timeout; `None` means the configured default.
    pub timeout: Option<Duration>,
    /// Compression and encryption of the controller's archive. (A `sufficient` script's file
    /// is written by the script and kept exactly as it wrote it.)
    pub archive: ArchiveOptions,
}

impl BackupRequest {
    /// A request with the defaults: no force, default timeout, zstd archive, no encryption.
    pub fn new(instance: impl Into<String>, destination: impl Into<Utf8PathBuf>) -> Self {
        BackupRequest {
            instance: instance.into(),
            destination: destination.into(),
            force: false,
            timeout: None,
            archive: ArchiveOptions::default(),
        }
    }
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
    /// age identity file, for encrypted archives.
    pub identity: Option<Utf8PathBuf>,
    /// The backup may be another instance's (a migration, a drill into a staging instance,
    /// `restore --from-other-instance`); without it such a backup is refused before anything
    /// changes, since it would overwrite this instance with another's site.
    pub from_other_instance: bool,
}

impl RestoreRequest {
    pub fn new(instance: impl Into<String>, source: impl Into<Utf8PathBuf>) -> Self {
        RestoreRequest {
            instance: instance.into(),
            source: source.into(),
            timeout: None,
            no_safety_snapshot: false,
            identity: None,
            from_other_instance: false,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct RestoreReport {
    pub instance: String,
    pub file: Utf8PathBuf,
    /// The instance the backup was made of (its manifest, or the record of a `sufficient`
    /// script's file): `instance` itself unless the restore allowed another's.
    pub source_instance: String,
    /// When the backup was made (UTC); `None` only for an old record whose time is unreadable.
    pub backup_created: Option<jiff::Timestamp>,
    /// The version and release of the package the backup was made with. When they differ
    /// from the instance's (an older version its update rules accept), the control panel runs
    /// the configuration script's `upgrade FROM_VERSION FROM_RELEASE` next.
    pub from_version: String,
    pub from_release: String,
    /// Whether a safety snapshot was taken (and would have been put back on failure).
    pub safety_snapshot: bool,
    pub duration_ms: u64,
    /// The restored archive's verified manifest (`None` for a `sufficient` script's own
    /// file), so a caller comparing the result with it needs no second pass over the file.
    #[serde(skip)]
    pub manifest: Option<crate::archive::Manifest>,
}

/// Backup `source`, restore into `target`.
#[derive(Debug, Clone)]
pub struct MigrateRequest {
    pub source: String,
    pub target: String,
    /// Keep the intermediate backup at this path (else it is removed afterwards).
    pub keep: Option<Utf8PathBuf>,
    pub timeout: Option<Duration>,
    pub no_safety_snapshot: bool,
    pub archive: ArchiveOptions,
    pub identity: Option<Utf8PathBuf>,
}

impl MigrateRequest {
    pub fn new(source: impl Into<String>, target: impl Into<String>) -> Self {
        MigrateRequest {
            source: source.into(),
            target: target.into(),
            keep: None,
            timeout: None,
            no_safety_snapshot: false,
            archive: ArchiveOptions::default(),
            identity: None,
        }
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct MigrateReport {
    pub source: String,
    pub target: String,
    pub backup: BackupReport,
    pub restore: RestoreReport,
    pub kept: Option<Utf8PathBuf>,
    pub duration_ms: u64,
}
