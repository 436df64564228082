//! What a store of snapshots reports, whatever its kind: one snapshot, and what retention and
//! a prune did to them. Service, `run`, `prune` and the front ends use these without knowing
//! which store made them.

use serde::Serialize;

use crate::engine::PackageTags;
use crate::periodicity::Periodicity;
use crate::retention::KeepReason;

/// One snapshot, as `backups` shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SnapshotInfo {
    /// Full id (64 hex digits); any unique prefix names it too.
    pub id: String,
    pub instance: String,
    pub periodicity: Option<Periodicity>,
    pub time: jiff::Timestamp,
    pub package: Option<PackageTags>,
    /// Files in the snapshot (web files and dumps).
    pub files: u64,
    /// Files the engine took as unchanged from the instance's previous snapshot (same size,
    /// mtime and ctime), without reading them; never a dump or the manifest.
    pub files_unchanged: u64,
    /// Bytes read from the instance for this snapshot.
    pub bytes_read: u64,
    /// Bytes this snapshot added to the repository, after deduplication and compression.
    pub bytes_added: u64,
}

/// A snapshot with the host that made it: a repository several servers share holds every
/// server's snapshots (`status --repository`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HostSnapshot {
    pub host: String,
    /// How long the backup took, when the snapshot says.
    pub duration_ms: Option<u64>,
    pub snapshot: SnapshotInfo,
}

/// One kept snapshot and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeptSnapshot {
    pub snapshot: SnapshotInfo,
    pub reasons: Vec<KeepReason>,
}

/// What a prune did to the repository's pack files.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PruneReport {
    /// Packs deleted now: marked by an earlier prune at least 23 h ago.
    pub deleted_packs: u64,
    pub deleted_bytes: u64,
    /// Packs no snapshot needs any more, marked now; a later prune deletes them.
    pub marked_packs: u64,
    /// Packs whose still-used part was copied into new packs.
    pub repacked_packs: u64,
    /// Pack files no index lists (left by an interrupted backup), marked too.
    pub unindexed_packs: u64,
}

/// What `aps-controller prune` did to the repository (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct RepositoryPrune {
    pub repository: String,
    pub dry_run: bool,
    pub kept: Vec<KeptSnapshot>,
    pub forgotten: Vec<SnapshotInfo>,
    /// Snapshots without our tags, left alone.
    pub ignored: Vec<String>,
    /// `None` on a dry run.
    pub prune: Option<PruneReport>,
}

/// Retention after `run`, in the summary: what was forgotten and what the prune did.
#[derive(Debug, Clone, Serialize)]
pub struct RunRetention {
    pub repository: String,
    /// The instances whose backup succeeded in this run: only they are thinned (a run of
    /// failures never thins a repository).
    pub instances: Vec<String>,
    pub forgotten: Vec<SnapshotInfo>,
    pub kept: usize,
    /// `None` when retention stopped before the prune (see `error`).
    pub prune: Option<PruneReport>,
    /// Why retention did not finish; the snapshots forgotten before it stay forgotten.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}
