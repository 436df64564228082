//! A migration (`aps-controller migrate NAME --to-instance OTHER`,
//! `POST /v1/instances/NAME/migrate`): a live backup of NAME restored into OTHER by the
//! controller, or one of NAME's snapshots in the repository store restored into OTHER.

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::operation::new_instance;
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
    /// Install a new instance from the source's package (its settings, but for `uniq` ones,
    /// under those given here) and migrate into it, instead of a registered `target` (which
    /// is then empty). Its `package` is left empty: it is the source's.
    pub to_new: Option<super::install::Request>,
}

/// What a migration did.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Migrated {
    /// From a live backup: the controller's report.
    Live(MigrateReport),
    /// From a snapshot of the repository store.
    Snapshot(SnapshotMigration),
    /// Into a new instance: its install, then the live migration into it.
    ToNew(Box<NewMigration>),
}

/// A migration into a new instance: what its install made, then the migration's report.
#[derive(Debug, Serialize)]
pub struct NewMigration {
    pub installed: aps_controller::operation::install::InstallReport,
    #[serde(flatten)]
    pub migration: MigrateReport,
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
        if let Some(new) = &self.to_new {
            return self.check_to_new(new);
        }
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

impl Request {
    fn check_to_new(&self, new: &super::install::Request) -> Result<(), ServiceError> {
        if !self.target.is_empty() {
            return Err(ServiceError::usage(words![
                "give one of ",
                Field::ToInstance,
                " and ",
                Field::ToNew
            ]));
        }
        check_instance_name(Field::ToNew, &new.name)?;
        if new.name == self.source {
            return Err(ServiceError::usage(words![
                Field::ToNew,
                format!(" is {:?}, the instance being migrated", self.source)
            ]));
        }
        if self.uses_snapshot() {
            return Err(ServiceError::usage(words![
                Field::ToNew,
                " copies a live backup of the source; it takes no ",
                if self.latest {
                    Field::Latest
                } else {
                    Field::Snapshot
                }
            ]));
        }
        if !new.package.as_str().is_empty() {
            return Err(ServiceError::usage(words![
                Field::ToNew,
                " installs the source's own package; it takes no ",
                Field::PackageOption
            ]));
        }
        super::new_instance::check_web_root(&new.web_root)?;
        check_timeout(self.timeout_secs)
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
    if let Some(new) = &request.to_new {
        return migrate_to_new(ctl, request, new).map(|m| Migrated::ToNew(Box::new(m)));
    }
    let mut live = MigrateRequest::new(request.source.clone(), request.target.clone());
    live.keep = request.keep.clone();
    live.timeout = request.timeout_secs.map(Duration::from_secs);
    live.no_safety_snapshot = request.no_safety_snapshot;
    ctl.migrate(&live)
        .map(Migrated::Live)
        .map_err(ServiceError::operation)
}

/// The source's package installed as the new instance with the source's settings under the
/// ones given, then the live migration into it; either failing removes the new instance.
// The controller's own error type, as `Controller::migrate` returns it.
#[allow(clippy::result_large_err)]
fn migrate_to_new(
    ctl: &Controller,
    request: &Request,
    new: &super::install::Request,
) -> Result<NewMigration, ServiceError> {
    let (package, copied) =
        new_instance::copy_settings(ctl, &request.source).map_err(ServiceError::operation)?;
    let mut install = super::install::Request {
        package,
        ..new.clone()
    };
    install.timeout_secs = install.timeout_secs.or(request.timeout_secs);
    let mut install = super::install::controller_request(&install)?;
    install.settings = copied.overridden_by(std::mem::take(&mut install.settings));
    let mut live = MigrateRequest::new(request.source.clone(), new.name.clone());
    live.keep = request.keep.clone();
    live.timeout = request.timeout_secs.map(Duration::from_secs);
    // The undo of a failure is the new instance's removal, not a snapshot of it.
    live.no_safety_snapshot = true;
    let (installed, migration) = ctl
        .install_then(&install, |_| ctl.migrate(&live))
        .map_err(ServiceError::operation)?;
    let migration = migration.ok_or_else(|| ServiceError::Refused {
        kind: aps_controller::ErrorKind::Internal,
        step: None,
        message: words!["the install of the new instance was a dry run"],
        hint: None,
    })?;
    Ok(NewMigration {
        installed,
        migration,
    })
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
