//! Retention in the repository store: which snapshots go is decided by the archive store's own
//! rules ([`crate::retention::plan_retention`], panel.toml `[retention]`), over the snapshots
//! instead of files — the same counts per periodicity, `keep-within`, and the newest snapshot
//! of an instance always kept. The engine then forgets those snapshots and prunes the data no
//! snapshot uses any more.
//!
//! Pruning is two-phase (the engine's default): a pack that is no longer needed is first
//! *marked* in the index and only deleted by a later prune at least [`KEEP_MARKED`] after,
//! so a backup running meanwhile (another process, another instance) that reuses its data
//! never loses it — the engine takes no locks. The space of forgotten snapshots is therefore
//! freed by the next day's prune, not by this one.

use std::collections::BTreeMap;

use jiff::Timestamp;
use rustic_core::{PruneOptions, repofile::SnapshotId};
use serde::Serialize;

use crate::config::RepositorySettings;
use crate::naming::{ArchiveFormat, BackupName};
use crate::retention::{RetentionPolicy, plan_retention};
use crate::store::files::{BackupStatus, StoredFile};
use crate::store::repository::{RepositoryError, RepositoryStore, SnapshotInfo};
use crate::store::snapshot::{KeptSnapshot, PruneReport, RepositoryPrune, RunRetention};

/// How long a pack marked for deletion stays before a prune deletes it: longer than any backup
/// runs (the engine's default).
pub const KEEP_MARKED_HOURS: i64 = 23;

/// What retention decided (and, unless a dry run, did).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct SnapshotRetention {
    pub keep: Vec<KeptSnapshot>,
    /// Forgotten (on a dry run: would be).
    pub forget: Vec<SnapshotInfo>,
    /// Snapshots without an instance or periodicity tag of ours: never counted, never removed.
    pub ignored: Vec<String>,
}

/// A snapshot in the shape retention ranks: its time, the periodicity from its tag, and a
/// name that orders two snapshots of one second by their time's fraction, then by id.
fn as_ranked(s: &SnapshotInfo) -> StoredFile {
    let periodicity = s.periodicity.expect("filtered before");
    let name = BackupName::new(&s.instance, periodicity, s.time, ArchiveFormat::default());
    // Any non-zero size: an unchanged snapshot adds 0 bytes and is still good.
    let mut f = StoredFile::classify(&s.instance, &name.file_name(), 1);
    debug_assert_eq!(f.status, BackupStatus::Good);
    f.key = s.id.clone();
    f.file_name = format!("{:09}-{}", s.time.subsec_nanosecond(), s.id);
    f
}

/// Plans retention over `snapshots` (any instances) with the archive store's rules.
pub fn plan(
    snapshots: &[SnapshotInfo],
    policy: &RetentionPolicy,
    now: Timestamp,
) -> SnapshotRetention {
    let by_id: BTreeMap<&str, &SnapshotInfo> =
        snapshots.iter().map(|s| (s.id.as_str(), s)).collect();
    let (ours, ignored): (Vec<&SnapshotInfo>, Vec<&SnapshotInfo>) =
        snapshots.iter().partition(|s| s.periodicity.is_some());
    let ranked: Vec<StoredFile> = ours.into_iter().map(as_ranked).collect();
    let p = plan_retention(&ranked, policy, now);
    let back = |f: &StoredFile| (*by_id[f.key.as_str()]).clone();
    let mut planned = SnapshotRetention {
        keep: p
            .keep
            .iter()
            .map(|k| KeptSnapshot {
                snapshot: back(&k.file),
                reasons: k.reasons.clone(),
            })
            .collect(),
        forget: p.remove.iter().map(back).collect(),
        ignored: ignored.iter().map(|s| s.id.clone()).collect(),
    };
    // Older to newer, as snapshots are listed everywhere else.
    let age = |s: &SnapshotInfo| (s.instance.clone(), s.time, s.id.clone());
    planned.keep.sort_by_key(|k| age(&k.snapshot));
    planned.forget.sort_by_key(age);
    planned
}

impl RepositoryStore {
    /// Applies retention to the snapshots of `instances` (all instances when `None`): forgets
    /// what the policy does not keep. Nothing is removed on a dry run. Data goes at [`Self::prune`].
    pub fn forget_by_policy(
        &self,
        instances: Option<&[String]>,
        policy: &RetentionPolicy,
        now: Timestamp,
        dry_run: bool,
    ) -> Result<SnapshotRetention, RepositoryError> {
        let all = self.snapshots(None)?;
        let wanted: Vec<SnapshotInfo> = all
            .into_iter()
            .filter(|s| instances.is_none_or(|i| i.contains(&s.instance)))
            .collect();
        let planned = plan(&wanted, policy, now);
        if !dry_run && !planned.forget.is_empty() {
            let ids = planned
                .forget
                .iter()
                .map(|s| s.id.parse::<SnapshotId>())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| RepositoryError::Engine {
                    repository: self.describe(),
                    message: format!("a listed snapshot id does not parse: {e}"),
                })?;
            self.repo.delete_snapshots(&ids).map_err(self.err())?;
        }
        Ok(planned)
    }

    /// Removes the data no snapshot uses any more (two-phase, see the module documentation).
    pub fn prune(&self) -> Result<PruneReport, RepositoryError> {
        // restic's exclusive lock: no backup runs (here or on another server) while packs go.
        let _lock = self.lock(crate::store::repository::lock::LockKind::Exclusive)?;
        let opts = PruneOptions::default();
        let plan = self.repo.prune_plan(&opts).map_err(self.err())?;
        let s = &plan.stats;
        let report = PruneReport {
            deleted_packs: s.packs_to_delete.remove,
            deleted_bytes: s.size_to_delete.remove,
            marked_packs: s.packs.unused,
            repacked_packs: s.packs.repack,
            unindexed_packs: s.packs_unref,
        };
        self.repo.prune(&opts, plan).map_err(self.err())?;
        Ok(report)
    }
}

/// Retention over every instance's snapshots, then one prune (none on a dry run).
pub fn prune_all(
    settings: &RepositorySettings,
    policy: &RetentionPolicy,
    now: Timestamp,
    dry_run: bool,
) -> Result<RepositoryPrune, RepositoryError> {
    let store = RepositoryStore::open(settings)?;
    let done = store.forget_by_policy(None, policy, now, dry_run)?;
    let prune = if dry_run { None } else { Some(store.prune()?) };
    Ok(RepositoryPrune {
        repository: store.describe(),
        dry_run,
        kept: done.keep,
        forgotten: done.forget,
        ignored: done.ignored,
        prune,
    })
}

/// Forgets the snapshots of `instances` that `policy` does not keep, then prunes once. Called
/// when every backup of the run has ended, so no backup of this run is writing meanwhile.
pub fn after_run(
    settings: &RepositorySettings,
    instances: &[String],
    policy: &RetentionPolicy,
    now: Timestamp,
) -> RunRetention {
    let mut report = RunRetention {
        repository: settings.location.describe(),
        instances: instances.to_vec(),
        forgotten: Vec::new(),
        kept: 0,
        prune: None,
        error: None,
    };
    let result = RepositoryStore::open(settings).and_then(|store| {
        let done = store.forget_by_policy(Some(instances), policy, now, false)?;
        report.kept = done.keep.len();
        report.forgotten = done.forget;
        report.prune = Some(store.prune()?);
        Ok(())
    });
    if let Err(e) = result {
        report.error = Some(e.to_string());
    }
    report
}
