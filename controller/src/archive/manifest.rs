//! The manifest: what the archive claims to hold, written as the archive's last entry (its
//! hashes are only known once every part has been streamed) and its header repeated as the
//! first entry (so a reader can refuse an unknown format version before reading gigabytes).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Version of the layout described in `docs/backup-format.md`. Readers refuse a higher one.
/// 2 added the `manifest.tag` entry after the manifest (a version-1 reader would take it for
/// a stray entry); version 1 files are still read, and have no tag. 3 added sparse files
/// (GNU's PAX sparse format 1.0 and the `s` record of the canonical stream): a version-2
/// reader would take such an archive for a damaged one.
pub const FORMAT_VERSION: u32 = 3;

/// The `format` field of every manifest, so a stray JSON file is never taken for one.
pub const FORMAT_NAME: &str = "aps-controller-backup";

/// Who and what the backup is of. `format_version` is set by the writer, whatever the caller put.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestHeader {
    pub format_version: u32,
    /// The package's `id` URI from APP-META.xml.
    pub package_id: String,
    pub package_name: String,
    pub version: String,
    pub release: String,
    /// The APS version of the package's metadata (`1.0`, `1.1`, `1.2`).
    pub aps_version: String,
    pub instance: String,
    /// UTC, serialised as RFC 3339.
    pub created: jiff::Timestamp,
    pub controller_version: String,
}

impl ManifestHeader {
    /// A header stamped now, with this crate's version as the controller version.
    pub fn new(
        package_id: impl Into<String>,
        package_name: impl Into<String>,
        version: impl Into<String>,
        release: impl Into<String>,
        aps_version: impl Into<String>,
        instance: impl Into<String>,
    ) -> Self {
        ManifestHeader {
            format_version: FORMAT_VERSION,
            package_id: package_id.into(),
            package_name: package_name.into(),
            version: version.into(),
            release: release.into(),
            aps_version: aps_version.into(),
            instance: instance.into(),
            created: jiff::Timestamp::now(),
            controller_version: env!("CARGO_PKG_VERSION").to_owned(),
        }
    }
}

/// What a part holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PartKind {
    /// The file the package's backup-script wrote to `BACKUP_FILE`.
    ScriptBackup,
    /// A dump of one database requirement, produced elsewhere.
    DatabaseDump {
        /// The requirement id (`main`), case kept.
        db_id: String,
        /// `mysql` or `postgresql`.
        kind: String,
        /// Rows per table when the dumper reported them; for restore drills.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        row_counts: Option<BTreeMap<String, u64>>,
    },
    /// One url-mapping's web folder.
    WebDir { mapping_url: String },
}

/// One part as the writer saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartInfo {
    /// Unique within the archive. File parts: the caller's name; web folders: `web/<n>`.
    pub name: String,
    pub kind: PartKind,
    /// The tar entry (`files/<name>`) or entry prefix (`web/<n>/`) holding the part.
    pub entry: String,
    /// File parts: bytes of the file. Web folders: bytes of all regular files.
    pub size: u64,
    /// Lowercase hex SHA-256. File parts: of the bytes. Web folders: of the canonical record
    /// stream described in docs/backup-format.md (paths, types, modes, mtimes, contents).
    pub sha256: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub file_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dir_count: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub symlink_count: Option<u64>,
}

impl PartInfo {
    /// A file part (a dump, a script's file) named `name`, in the tar entry `files/<name>`.
    pub fn file(name: &str, kind: PartKind, size: u64, sha256: String) -> Self {
        PartInfo {
            name: name.to_owned(),
            kind,
            entry: format!("files/{name}"),
            size,
            sha256,
            file_count: None,
            dir_count: None,
            symlink_count: None,
        }
    }
}

/// The archive's table of contents.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Manifest {
    /// Always [`FORMAT_NAME`].
    pub format: String,
    pub header: ManifestHeader,
    /// In archive order.
    pub parts: Vec<PartInfo>,
}

impl Manifest {
    pub fn part(&self, name: &str) -> Option<&PartInfo> {
        self.parts.iter().find(|p| p.name == name)
    }

    pub fn web_dir(&self, mapping_url: &str) -> Option<&PartInfo> {
        self.parts
            .iter()
            .find(|p| matches!(&p.kind, PartKind::WebDir { mapping_url: m } if m == mapping_url))
    }
}
