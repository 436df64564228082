//! A migration (`aps-controller migrate NAME --to-instance OTHER`,
//! `POST /v1/instances/NAME/migrate`): a live backup of NAME restored into OTHER by the
//! controller, or one of NAME's snapshots in the repository store restored into OTHER.

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::operation::{MigrateReport, MigrateRequest, RestoreReport};
use camino::Utf8PathBuf;
use serde::Serialize;

use super::restore::restore_from_store;
use super::{Field, ServiceError, check_instance_name, check_timeout, words};
use crate::context::Panel;
use crate::store::{SnapshotInfo, Unsupported, Wanted};

/// A migration as a front end asks for it: from a live backup of the source (the default), or
/// from one of its snapshots in the repository store.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub source: String,
    pub target: String,
    /// Keep the intermediate backup file here (a live migration only).
    pub keep: Option<Utf8PathBuf>,
    pub timeout_secs: Option<u64>,
    pub no_safety_snapshot: bool,
    /// A snapshot of the source (id or unique prefix) instead of a live backup.
    pub snapshot: Option<String>,
    /// The source's newest snapshot instead of a live backup.
    pub latest: bool,
}

/// What a migration did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Migrated {
    /// From a live backup: the controller's report.
    Live(MigrateReport),
    /// From a snapshot of the repository store.
    Snapshot(SnapshotMigration),
}

/// A migration from a snapshot of the repository store.
#[derive(Debug, Serialize)]
pub struct SnapshotMigration {
    pub source: String,
    pub target: String,
    pub repository: String,
    pub snapshot: SnapshotInfo,
    pub restore: RestoreReport,
    pub duration_ms: u64,
}

impl Request {
    /// From a snapshot of the repository store rather than a live backup.
    pub fn uses_snapshot(&self) -> bool {
        self.snapshot.is_some() || self.latest
    }

    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.source)?;
        check_instance_name(Field::ToInstance, &self.target)?;
        if self.source == self.target {
            return Err(ServiceError::usage(words![
                Field::ToInstance,
                format!(
                    " is {0:?}, the instance being migrated: name another registered \
                     instance (register one with `aps-controller instance register --file …`)",
                    self.source
                )
            ]));
        }
        check_timeout(self.timeout_secs)?;
        if self.snapshot.is_some() && self.latest {
            return Err(ServiceError::usage(words![
                "give one of ",
                Field::SnapshotId,
                " and ",
                Field::Latest
            ]));
        }
        if self.uses_snapshot() && self.keep.is_some() {
            return Err(ServiceError::usage(words![
                Field::Keep,
                " keeps the intermediate backup of a live migration; a migration from a \
                 snapshot makes none (the snapshot stays in the repository)"
            ]));
        }
        Ok(())
    }
}

/// The migration the request asks for. Every mistake — a snapshot with the archive store, an
/// unknown instance, the same instance twice, another package, an unknown snapshot — is refused
/// before anything is staged. `panel` is needed only with a snapshot.
pub fn migrate(
    ctl: &Controller,
    panel: Option<&Panel>,
    request: &Request,
) -> Result<Migrated, ServiceError> {
    request.check()?;
    if request.uses_snapshot() {
        return snapshot_migrate(ctl, panel, request).map(Migrated::Snapshot);
    }
    let mut live = MigrateRequest::new(request.source.clone(), request.target.clone());
    live.keep = request.keep.clone();
    live.timeout = request.timeout_secs.map(Duration::from_secs);
    live.no_safety_snapshot = request.no_safety_snapshot;
    ctl.migrate(&live)
        .map(Migrated::Live)
        .map_err(ServiceError::operation)
}

fn snapshot_migrate(
    ctl: &Controller,
    panel: Option<&Panel>,
    request: &Request,
) -> Result<SnapshotMigration, ServiceError> {
    let started = std::time::Instant::now();
    let internal = |message: &'static str| ServiceError::Refused {
        kind: aps_controller::ErrorKind::Internal,
        step: None,
        message: words![message],
        hint: None,
    };
    let Some(panel) = panel else {
        return Err(internal(
            "a migration from a snapshot needs panel.toml's store, which was not opened",
        ));
    };
    let wanted = Wanted {
        id: request.snapshot.as_deref(),
        identity: false,
        migration: true,
    };
    if let Err(refused) = panel.store.check_wanted(&wanted) {
        return Err(match refused {
            Unsupported::Snapshots { store_is } => ServiceError::usage(words![
                if request.snapshot.is_some() {
                    Field::Snapshot
                } else {
                    Field::Latest
                },
                format!(
                    " names a snapshot of the repository store, but panel.toml's store is \
                     {store_is}: without it, migrate makes a live backup of {}",
                    request.source
                )
            ]),
            other => super::unsupported(other),
        });
    }
    // The checks of a live migration, before anything is staged.
    ctl.check_migration(&request.source, &request.target)
        .map_err(ServiceError::operation)?;
    let (from, restore) = restore_from_store(
        ctl,
        panel,
        (&request.source, request.snapshot.as_deref()),
        &request.target,
        (request.timeout_secs, request.no_safety_snapshot),
        (None, false),
    )?;
    let from = from.ok_or_else(|| internal("the store staged a file, not a snapshot"))?;
    Ok(SnapshotMigration {
        source: request.source.clone(),
        target: request.target.clone(),
        repository: from.repository,
        snapshot: from.snapshot,
        restore,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
