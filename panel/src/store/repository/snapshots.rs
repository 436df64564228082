//! The snapshots of the repository: listing (sorted), finding one by id prefix, forgetting one;
//! each read from its tags.

use rustic_core::repofile::SnapshotFile;

use crate::store::repository::PackageTags;
use crate::store::repository::{
    RepositoryError, RepositoryStore, SnapshotInfo, TAG_INSTANCE, TAG_PACKAGE, TAG_PERIODICITY,
    TAG_RELEASE, TAG_VERSION,
};

impl RepositoryStore {
    /// The snapshots of `instance` (or of every instance), older to newer: this controller's
    /// host's only, so that servers sharing a repository never see, restore or thin each
    /// other's.
    pub fn snapshots(&self, instance: Option<&str>) -> Result<Vec<SnapshotInfo>, RepositoryError> {
        let host = self.host();
        let mut all: Vec<SnapshotInfo> = self
            .repo
            .get_all_snapshots()
            .map_err(self.err())?
            .iter()
            .filter(|snap| snap.hostname == host)
            .filter_map(info_of)
            .filter(|s| instance.is_none_or(|i| s.instance == i))
            .collect();
        // The engine lists in no particular order.
        all.sort_by(|a, b| a.time.cmp(&b.time).then_with(|| a.id.cmp(&b.id)));
        Ok(all)
    }

    /// Every snapshot with our tags, of every host, with the host and the backup's duration.
    pub fn every_host(&self) -> Result<Vec<crate::store::HostSnapshot>, RepositoryError> {
        Ok(self
            .repo
            .get_all_snapshots()
            .map_err(self.err())?
            .iter()
            .filter_map(|snap| {
                let duration = snap.summary.as_ref().map(|s| s.backup_duration);
                Some(crate::store::HostSnapshot {
                    host: snap.hostname.clone(),
                    duration_ms: duration
                        .filter(|d| d.is_finite() && *d > 0.0)
                        .map(|d| (d * 1000.0) as u64),
                    snapshot: info_of(snap)?,
                })
            })
            .collect())
    }

    /// The newest snapshot of `instance`.
    pub fn latest(&self, instance: &str) -> Result<Option<SnapshotInfo>, RepositoryError> {
        Ok(self.snapshots(Some(instance))?.pop())
    }

    /// Snapshot `id` (or a unique prefix of it) of `instance`, or with `None` its newest.
    pub fn snapshot(
        &self,
        instance: &str,
        id: Option<&str>,
    ) -> Result<SnapshotInfo, RepositoryError> {
        match id {
            Some(id) => self.find(instance, id),
            None => self
                .latest(instance)?
                .ok_or_else(|| RepositoryError::NoSnapshots {
                    repository: self.describe(),
                    instance: instance.to_owned(),
                }),
        }
    }

    pub(super) fn find(&self, instance: &str, id: &str) -> Result<SnapshotInfo, RepositoryError> {
        let mut found: Vec<SnapshotInfo> = self
            .snapshots(Some(instance))?
            .into_iter()
            .filter(|s| !id.is_empty() && s.id.starts_with(id))
            .collect();
        match found.len() {
            1 => Ok(found.remove(0)),
            0 => Err(RepositoryError::NoSnapshot {
                repository: self.describe(),
                instance: instance.to_owned(),
                id: id.to_owned(),
            }),
            _ => Err(RepositoryError::AmbiguousSnapshot {
                repository: self.describe(),
                instance: instance.to_owned(),
                id: id.to_owned(),
                candidates: found.iter().map(|s| s.id[..8].to_owned()).collect(),
            }),
        }
    }

    /// Removes one snapshot of `instance` (its data goes at the next prune).
    pub fn forget(&self, instance: &str, id: &str) -> Result<(), RepositoryError> {
        let snap = self.find(instance, id)?;
        let full: rustic_core::Id = snap.id.parse().map_err(self.err())?;
        self.repo
            .delete_snapshots(&[rustic_core::repofile::SnapshotId::from(full)])
            .map_err(self.err())
    }
}

pub(super) fn info_of(snap: &SnapshotFile) -> Option<SnapshotInfo> {
    let tag = |prefix: &str| {
        snap.tags
            .iter()
            .find_map(|t| t.strip_prefix(prefix))
            .map(str::to_owned)
    };
    let instance = tag(TAG_INSTANCE)?;
    let package = tag(TAG_PACKAGE).map(|id| PackageTags {
        id,
        version: tag(TAG_VERSION).unwrap_or_default(),
        release: tag(TAG_RELEASE).unwrap_or_default(),
    });
    let summary = snap.summary.as_ref();
    Some(SnapshotInfo {
        // In full: the id's Display is its 8-digit short form.
        id: String::from(&*snap.id.to_hex()),
        instance,
        periodicity: tag(TAG_PERIODICITY).and_then(|p| p.parse().ok()),
        time: snap.time.timestamp(),
        package,
        files: summary.map_or(0, |s| s.total_files_processed),
        files_unchanged: summary.map_or(0, |s| s.files_unmodified),
        bytes_read: summary.map_or(0, |s| s.total_bytes_processed),
        bytes_added: summary.map_or(0, |s| s.data_added_packed),
    })
}
