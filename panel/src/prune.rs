//! `prune`: apply retention to a store, or just show what it would do.

use jiff::Timestamp;
use serde::Serialize;

use crate::retention::{Kept, RetentionPolicy, plan_retention};
use crate::store::files::{ArchiveFiles, Remote, StoreError, StoredFile};
use crate::store::snapshot::RepositoryPrune;

#[derive(Debug, Clone, Serialize)]
pub struct StorePrune {
    pub store: String,
    pub dry_run: bool,
    pub kept: Vec<Kept>,
    /// Keys removed (or, in a dry run, that would be).
    pub removed: Vec<String>,
    pub ignored: Vec<StoredFile>,
}

/// Plans retention over `instance` (or every instance) of `store` and removes what the plan
/// says, unless `dry_run`. Stops at the first removal that fails.
pub fn prune_store(
    store: &dyn ArchiveFiles,
    instance: Option<&str>,
    policy: &RetentionPolicy,
    now: Timestamp,
    dry_run: bool,
) -> Result<StorePrune, StoreError> {
    let files = store.list(instance)?;
    let plan = plan_retention(&files, policy, now);
    let mut removed = Vec::with_capacity(plan.remove.len());
    for f in &plan.remove {
        if !dry_run {
            store.remove(f)?;
        }
        removed.push(f.key.clone());
    }
    Ok(StorePrune {
        store: store.describe(),
        dry_run,
        kept: plan.keep,
        removed,
        ignored: plan.ignored,
    })
}

/// What `prune` did to the store panel.toml chose (or, on a dry run, would do).
#[derive(Debug, Clone, Serialize)]
pub struct Pruned {
    /// The stores of archive files: the local folder, then the off-machine copy.
    pub stores: Vec<StorePrune>,
    /// The repository store: its snapshots, then one prune.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository: Option<RepositoryPrune>,
}

/// A `prune` that stopped: why, what it did before, and the repository it stopped at.
#[derive(Debug)]
pub struct PruneFailure {
    /// `busy` for a repository another process holds locked, `remote-unreachable` for a
    /// bucket that did not answer; else `internal`.
    pub kind: aps_controller::ErrorKind,
    pub message: String,
    pub done: Vec<StorePrune>,
    pub repository: Option<String>,
}

/// Retention over every instance of the local folder, then of the off-machine copy; stops at
/// the first store that fails.
pub fn prune_files(
    local: &dyn ArchiveFiles,
    remote: Option<&dyn Remote>,
    policy: &RetentionPolicy,
    now: Timestamp,
    dry_run: bool,
) -> Result<Vec<StorePrune>, PruneFailure> {
    let mut stores: Vec<&dyn ArchiveFiles> = vec![local];
    if let Some(r) = remote {
        stores.push(r);
    }
    let mut done = Vec::new();
    for store in stores {
        match prune_store(store, None, policy, now, dry_run) {
            Ok(p) => done.push(p),
            Err(e) => {
                return Err(PruneFailure {
                    kind: aps_controller::ErrorKind::Internal,
                    message: e.to_string(),
                    done,
                    repository: None,
                });
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::LocalStore;
    use camino::Utf8Path;

    #[test]
    fn dry_run_removes_nothing_and_real_run_removes_the_plan() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("blog")).unwrap();
        for d in 1..=9 {
            std::fs::write(
                root.join(format!(
                    "blog/blog_daily_2026-06-{d:02}-02-00-00.aps.tar.zst"
                )),
                "x",
            )
            .unwrap();
        }
        std::fs::write(
            root.join("blog/.blog_daily_2026-06-01-01-00-00.aps.tar.zst.aps-partial-1"),
            "x",
        )
        .unwrap();
        let store = LocalStore::new(root);
        let now = "2026-06-30T00:00:00Z".parse().unwrap();
        let policy = RetentionPolicy::default();
        let dry = prune_store(&store, None, &policy, now, true).unwrap();
        assert_eq!(
            dry.removed,
            [
                "blog/blog_daily_2026-06-02-02-00-00.aps.tar.zst",
                "blog/blog_daily_2026-06-01-02-00-00.aps.tar.zst"
            ]
        );
        assert_eq!(
            store.list(None).unwrap().len(),
            10,
            "dry run leaves every file"
        );
        let real = prune_store(&store, Some("blog"), &policy, now, false).unwrap();
        assert_eq!(real.removed, dry.removed);
        let left: Vec<String> = store
            .list(None)
            .unwrap()
            .into_iter()
            .map(|f| f.file_name)
            .collect();
        assert_eq!(left.len(), 8, "7 kept + the partial file: {left:?}");
        assert!(left[0].contains("aps-partial"));
        assert!(
            !left
                .iter()
                .any(|f| f.contains("06-01-02") || f.contains("06-02-02"))
        );
    }
}
