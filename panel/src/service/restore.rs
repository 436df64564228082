//! A restore (`aps-controller restore NAME`, `POST /v1/instances/NAME/restore`): from a backup
//! file, from the archive store's newest good backup, or from a snapshot of the repository
//! store, through the controller's restore (safety snapshot, rollback).

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::operation::{RestoreReport, RestoreRequest};
use camino::Utf8PathBuf;
use serde::Serialize;

use super::{Field, ServiceError, check_instance_name, check_timeout, require_instance, words};
use crate::context::Panel;
use crate::store::Staged;
use crate::store::repository::SnapshotInfo;

/// A restore as a front end asks for it: exactly one of a file, the newest backup, or a
/// repository snapshot.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    pub from: Option<Utf8PathBuf>,
    pub latest: bool,
    pub snapshot: Option<String>,
    pub timeout_secs: Option<u64>,
    pub no_safety_snapshot: bool,
    pub identity: Option<Utf8PathBuf>,
    /// The backup may be another instance's.
    pub from_other_instance: bool,
}

/// What a restore did: the controller's report, and the snapshot it came from when it came
/// from the repository store.
#[derive(Debug)]
pub struct Restored {
    pub report: RestoreReport,
    pub from_snapshot: Option<FromSnapshot>,
}

/// The repository snapshot a restore or migration took.
#[derive(Debug, Clone, Serialize)]
pub struct FromSnapshot {
    /// The repository's folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub snapshot: SnapshotInfo,
}

// The controller's report, and from a snapshot: `snapshot`, and the repository as `file` (the
// staged archive is gone; the snapshot is what was restored).
impl Serialize for Restored {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut v = serde_json::to_value(&self.report).map_err(serde::ser::Error::custom)?;
        if let Some(from) = &self.from_snapshot {
            v["snapshot"] =
                serde_json::to_value(&from.snapshot).map_err(serde::ser::Error::custom)?;
            v["file"] = from.repository.clone().into();
        }
        v.serialize(s)
    }
}

impl Request {
    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        let sources = usize::from(self.from.is_some())
            + usize::from(self.latest)
            + usize::from(self.snapshot.is_some());
        if sources != 1 {
            return Err(ServiceError::usage(words![
                "give exactly one of ",
                Field::FromFile,
                ", ",
                Field::Latest,
                " and ",
                Field::SnapshotId
            ]));
        }
        check_timeout(self.timeout_secs)
    }

    /// panel.toml's store is needed: no file was given.
    pub fn needs_panel(&self) -> bool {
        self.from.is_none()
    }

    /// The mistakes panel.toml's store kind shows: a snapshot of the archive store, an age
    /// identity for a repository snapshot. `panel` is `None` only with a file.
    pub fn check_store(&self, panel: Option<&Panel>) -> Result<(), ServiceError> {
        let repository = panel.is_some_and(|p| p.store.keeps_snapshots());
        if self.snapshot.is_some() && !repository {
            return Err(ServiceError::usage(words![
                Field::Snapshot,
                " names a snapshot of the repository store, but panel.toml's store is the \
                 archive store: give ",
                Field::FromFile,
                " or ",
                Field::Latest
            ]));
        }
        if repository && self.from.is_none() && self.identity.is_some() {
            return Err(ServiceError::usage(words![
                Field::Identity,
                " decrypts archive files; a repository snapshot needs none"
            ]));
        }
        Ok(())
    }

    fn controller_request(&self, source: Utf8PathBuf) -> RestoreRequest {
        RestoreRequest {
            instance: self.instance.clone(),
            source,
            timeout: self.timeout_secs.map(Duration::from_secs),
            no_safety_snapshot: self.no_safety_snapshot,
            identity: self.identity.clone(),
            from_other_instance: self.from_other_instance,
        }
    }
}

/// The restore the request asks for. From a snapshot of the repository store, it is made into
/// a tagged archive in a private folder of the state folder (its manifest's tag checked first)
/// that the controller's own restore then takes; the folder is removed in every case. Every
/// mistake is refused before anything is staged or restored. `panel` is `None` only with a
/// file.
pub fn restore(
    ctl: &Controller,
    panel: Option<&Panel>,
    request: &Request,
) -> Result<Restored, ServiceError> {
    request.check()?;
    request.check_store(panel)?;
    if let Some(panel) = panel
        && request.from.is_none()
        && panel.store.keeps_snapshots()
    {
        require_instance(ctl, &request.instance)?;
        let (from_snapshot, report) = restore_snapshot_into(
            ctl,
            panel,
            (&request.instance, request.snapshot.as_deref()),
            &request.instance,
            (request.timeout_secs, request.no_safety_snapshot),
        )?;
        return Ok(Restored {
            report,
            from_snapshot: Some(from_snapshot),
        });
    }
    // An unknown instance is named as such (exit 4), before its backups are looked for.
    require_instance(ctl, &request.instance)?;
    let source = match (&request.from, panel) {
        (Some(from), _) => {
            // A file that is not there is a wrong argument, not a damaged backup.
            if let Err(e) = from.symlink_metadata()
                && e.kind() == std::io::ErrorKind::NotFound
            {
                return Err(ServiceError::usage(words![
                    Field::From,
                    format!(" {from}: no such file")
                ])
                .with_hint(format!(
                    "`aps-controller backups {}` lists its backups with their paths",
                    request.instance
                )));
            }
            from.clone()
        }
        (None, Some(panel)) => crate::manual::latest(panel, &request.instance).map_err(|e| {
            ServiceError::from(e).with_hint(format!(
                "`aps-controller backups {}` lists its backups",
                request.instance
            ))
        })?,
        (None, None) => {
            return Err(ServiceError::Refused {
                kind: ErrorKind::Internal,
                step: None,
                message: words![
                    "a restore without a file needs panel.toml's store, which was not opened"
                ],
                hint: None,
            });
        }
    };
    let report = ctl
        .restore(&request.controller_request(source))
        .map_err(ServiceError::operation)?;
    Ok(Restored {
        report,
        from_snapshot: None,
    })
}

/// Snapshot `id` of instance `from` (`None`: its newest) staged from the repository store and
/// restored into instance `into` through the controller's restore (`timeout_secs`,
/// `no_safety_snapshot`). The staging folder is gone when this returns.
pub(crate) fn restore_snapshot_into(
    ctl: &Controller,
    panel: &Panel,
    (from, id): (&str, Option<&str>),
    into: &str,
    (timeout_secs, no_safety_snapshot): (Option<u64>, bool),
) -> Result<(FromSnapshot, RestoreReport), ServiceError> {
    let mut staged = stage_snapshot(ctl, panel, from, id)?;
    let request = RestoreRequest {
        instance: into.to_owned(),
        source: staged.archive.clone(),
        timeout: timeout_secs.map(Duration::from_secs),
        no_safety_snapshot,
        identity: None,
        // A migration's (`from` is the source); a restore stages only its own snapshots.
        from_other_instance: from != into,
    };
    let report = staged
        .restore(ctl, &request)
        .map_err(ServiceError::operation)?;
    let snapshot = staged
        .snapshot
        .clone()
        .ok_or_else(|| ServiceError::Refused {
            kind: ErrorKind::Internal,
            step: None,
            message: words!["the store staged a file, not a snapshot"],
            hint: None,
        })?;
    Ok((
        FromSnapshot {
            repository: panel.store.describe(&panel.cx()),
            snapshot,
        },
        report,
    ))
}

/// Snapshot `id` of `instance` (`None`: its newest) staged as a tagged archive; a snapshot
/// that is not there says how to list them.
fn stage_snapshot(
    ctl: &Controller,
    panel: &Panel,
    instance: &str,
    id: Option<&str>,
) -> Result<Staged, ServiceError> {
    let cx = panel.cx();
    panel.store.open(&cx)?;
    panel
        .store
        .find(&cx, instance, id)
        .and_then(|found| panel.store.stage(&cx, ctl, instance, &found))
        .map_err(|p| {
            let usage = p.kind == ErrorKind::Usage.as_str();
            let e = ServiceError::from(p);
            if usage {
                e.with_hint(format!(
                    "`aps-controller backups {instance}` lists its snapshots"
                ))
            } else {
                e
            }
        })
}
