//! A state capture of an instance, taken by the controller (not by the package): every web
//! folder's entries with their kind, mode, owner and content hash, and every database's
//! tables and views with their schema, row count and a checksum of their rows. Two captures
//! [`diff`] into the list of what differs, each item naming its file or table.

mod diff;
mod files;
mod tables;

use std::collections::BTreeMap;
use std::time::Duration;

use camino::Utf8PathBuf;
use serde::{Deserialize, Serialize};

use aps_controller::database::Database;
use aps_controller::registry::Instance;

use crate::error::ConformanceError;

pub use diff::{Difference, diff};
pub use files::{FileKind, FileState, FolderState, Owner};
pub use tables::{Column, DatabaseState, TableKind, TableState};

/// How to capture.
#[derive(Debug, Clone)]
pub struct CaptureOptions {
    /// The instance's account: entries it owns are recorded as [`Owner::Account`], so that
    /// captures of two instances with different accounts (a migration) compare equal.
    pub account_uid: Option<u32>,
    /// Time each database's queries may take together.
    pub timeout: Duration,
}

impl Default for CaptureOptions {
    fn default() -> Self {
        CaptureOptions {
            account_uid: None,
            timeout: Duration::from_secs(300),
        }
    }
}

/// What an instance holds at one moment.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Capture {
    /// url-mapping path (`/`, `/cache`) → what its folder holds.
    pub folders: BTreeMap<String, FolderState>,
    /// db requirement id → what its database holds.
    pub databases: BTreeMap<String, DatabaseState>,
}

impl Capture {
    /// Captures the given web folders (url path → absolute folder or file) and databases (id →
    /// record).
    pub fn take(
        web_dirs: &BTreeMap<String, Utf8PathBuf>,
        databases: &BTreeMap<String, Database>,
        options: &CaptureOptions,
    ) -> Result<Capture, ConformanceError> {
        let mut capture = Capture::default();
        for (url, path) in web_dirs {
            capture.folders.insert(
                url.clone(),
                files::capture_folder(path, options.account_uid)?,
            );
        }
        drop_nested(&mut capture.folders);
        for (id, db) in databases {
            capture
                .databases
                .insert(id.clone(), tables::capture_database(db, options.timeout)?);
        }
        Ok(capture)
    }

    /// [`Capture::take`] of a registered instance's web folders and databases.
    pub fn of_instance(
        instance: &Instance,
        options: &CaptureOptions,
    ) -> Result<Capture, ConformanceError> {
        Capture::take(&instance.web_dirs, &instance.databases, options)
    }
}

/// Leaves out of each folder what lies in another captured folder nested in it (`/` holds
/// `/cache`): every file is captured once, under the folder closest to it.
fn drop_nested(folders: &mut BTreeMap<String, FolderState>) {
    let paths: Vec<Utf8PathBuf> = folders.values().map(|f| f.path.clone()).collect();
    for folder in folders.values_mut() {
        let nested: Vec<String> = paths
            .iter()
            .filter(|p| *p != &folder.path)
            .filter_map(|p| p.strip_prefix(&folder.path).ok())
            .map(|rel| rel.as_str().to_owned())
            .collect();
        folder.entries.retain(|rel, _| {
            !nested.iter().any(|n| {
                rel == n
                    || rel
                        .strip_prefix(n.as_str())
                        .is_some_and(|r| r.starts_with('/'))
            })
        });
    }
}
