//! An instance's backups (`aps-controller backups NAME`, `GET /v1/instances/NAME/backups`):
//! the archive store's files newest first, or with the repository store its snapshots.

use aps_controller::Controller;
use serde::Serialize;

use super::{ServiceError, check_instance_name, require_registered};
use crate::context::Panel;
use crate::listing::{BackupEntry, list_backups};
use crate::store::{ArchiveFiles, SnapshotInfo};

/// Which backups: those of `instance`, in the local store or the remote copy.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// The remote copy (panel.toml [remote]) instead of the local store.
    pub remote: bool,
}

/// An instance's backups, newest first.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum BackupList {
    /// Archive files, in the archive store or the remote copy.
    Archives {
        instance: String,
        /// The store, as people read it.
        store: String,
        backups: Vec<BackupEntry>,
    },
    /// The repository store's snapshots, then the archives still in the archive store's
    /// folder (made before the switch to the repository), so that a switch hides none.
    Snapshots {
        instance: String,
        store: String,
        snapshots: Vec<SnapshotInfo>,
        archive_store: String,
        archives: Vec<BackupEntry>,
    },
}

/// The instance's backups. A name that is not registered and has none is
/// `instance-not-found`; a removed instance's backups are still listed.
pub fn backups(
    ctl: &Controller,
    panel: &Panel,
    request: &Request,
) -> Result<BackupList, ServiceError> {
    let name = request.instance.as_str();
    // Both front ends have always called it NAME here (HTTP too, unlike its other routes).
    check_instance_name("NAME", name)?;
    if request.remote {
        let files = panel.files(true)?;
        let backups = list_backups(files, name).map_err(crate::PanelError::from)?;
        if backups.is_empty() {
            require_registered(ctl, name)?;
        }
        return Ok(BackupList::Archives {
            instance: name.to_owned(),
            store: files.describe(),
            backups,
        });
    }
    let listing = panel.store.list(&panel.cx(), name)?;
    // A removed instance's backups are still listed; an unknown name without any is a
    // mistake worth saying so.
    if listing.is_empty() {
        require_registered(ctl, name)?;
    }
    Ok(match listing.snapshots {
        Some(snapshots) => BackupList::Snapshots {
            instance: name.to_owned(),
            store: listing.store,
            snapshots,
            archive_store: panel.local.describe(),
            archives: listing.archives,
        },
        None => BackupList::Archives {
            instance: name.to_owned(),
            store: listing.store,
            backups: listing.archives,
        },
    })
}
