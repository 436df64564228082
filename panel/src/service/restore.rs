//! A restore (`aps-controller restore NAME`, `POST /v1/instances/NAME/restore`): from a backup
//! file, or from a backup panel.toml's store finds and stages (the archive store's newest good
//! file, a snapshot of the repository store), through the controller's restore (safety
//! snapshot, rollback).

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::operation::{RestoreReport, RestoreRequest};
use camino::Utf8PathBuf;
use serde::Serialize;

use super::{
    Field, ServiceError, check_instance_name, check_timeout, require_instance, unsupported, words,
};
use crate::context::Panel;
use crate::store::{SnapshotInfo, Wanted};

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
    /// Install a new instance from the backup's package and restore into it; `instance` then
    /// names the backup's instance in the store (with `latest`/`snapshot`) and may be empty
    /// with `from`. Its `package`, when empty, is the one a registered instance runs at the
    /// backup's version.
    pub as_new: Option<super::install::Request>,
}

/// What a restore did: the controller's report, and the snapshot it came from when it came
/// from the repository store.
#[derive(Debug)]
pub struct Restored {
    pub report: RestoreReport,
    pub from_snapshot: Option<FromSnapshot>,
    /// With `as_new`: what the install of the new instance made.
    pub installed: Option<aps_controller::operation::install::InstallReport>,
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
        if let Some(installed) = &self.installed {
            v["installed"] = serde_json::to_value(installed).map_err(serde::ser::Error::custom)?;
        }
        v.serialize(s)
    }
}

impl Request {
    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        if !(self.as_new.is_some() && self.from.is_some() && self.instance.is_empty()) {
            check_instance_name(Field::Instance, &self.instance)?;
        }
        if let Some(new) = &self.as_new {
            check_instance_name(Field::AsNew, &new.name)?;
            super::new_instance::check_web_root(&new.web_root)?;
            if self.no_safety_snapshot || self.from_other_instance {
                return Err(ServiceError::usage(words![
                    Field::AsNew,
                    " restores into an instance it makes: it takes neither ",
                    Field::NoSafetySnapshot,
                    " nor ",
                    Field::FromOtherInstance
                ]));
            }
        }
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

    /// The mistakes panel.toml's store shows before anything is opened (a snapshot of a store
    /// of archive files, an age identity for a snapshot). `panel` is `None` only with a file.
    pub fn check_store(&self, panel: Option<&Panel>) -> Result<(), ServiceError> {
        let Some(panel) = panel.filter(|_| self.from.is_none()) else {
            return Ok(());
        };
        panel
            .store
            .check_wanted(&Wanted {
                id: self.snapshot.as_deref(),
                identity: self.identity.is_some(),
                migration: false,
            })
            .map_err(unsupported)
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

/// The restore the request asks for: from the file, or from the backup panel.toml's store
/// finds and stages (a snapshot is made into a tagged archive in a private folder of the state
/// folder, its manifest's tag checked first, removed in every case). Every mistake is refused
/// before anything is staged or restored. `panel` is `None` only with a file.
pub fn restore(
    ctl: &Controller,
    panel: Option<&Panel>,
    request: &Request,
) -> Result<Restored, ServiceError> {
    request.check()?;
    request.check_store(panel)?;
    if let Some(new) = &request.as_new {
        let done = super::new_instance::restore_as_new(ctl, panel, request, new)?;
        return Ok(Restored {
            report: done.report,
            from_snapshot: done.from_snapshot,
            installed: Some(done.installed),
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
        (None, Some(panel)) => {
            let (from_snapshot, report) = restore_from_store(
                ctl,
                panel,
                (&request.instance, request.snapshot.as_deref()),
                &request.instance,
                (request.timeout_secs, request.no_safety_snapshot),
                (request.identity.clone(), request.from_other_instance),
            )?;
            return Ok(Restored {
                report,
                from_snapshot,
                installed: None,
            });
        }
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
        installed: None,
    })
}

/// Backup `id` of instance `from` (`None`: its newest) taken from panel.toml's store and
/// restored into instance `into` through the controller's restore (`timeout_secs`,
/// `no_safety_snapshot`; `identity`, and whether the request allows another instance's
/// backup). The snapshot it came from, if it was one. The staging folder is gone when this
/// returns.
pub(crate) fn restore_from_store(
    ctl: &Controller,
    panel: &Panel,
    (from, id): (&str, Option<&str>),
    into: &str,
    (timeout_secs, no_safety_snapshot): (Option<u64>, bool),
    (identity, from_other_instance): (Option<Utf8PathBuf>, bool),
) -> Result<(Option<FromSnapshot>, RestoreReport), ServiceError> {
    let cx = panel.cx();
    let mut staged = panel.store.take(&cx, ctl, from, id)?;
    let request = RestoreRequest {
        instance: into.to_owned(),
        source: staged.archive.clone(),
        timeout: timeout_secs.map(Duration::from_secs),
        no_safety_snapshot,
        identity,
        from_other_instance: staged.from_other_instance(from, into, from_other_instance),
    };
    let report = staged
        .restore(ctl, &request)
        .map_err(ServiceError::operation)?;
    let from_snapshot = staged.snapshot.clone().map(|snapshot| FromSnapshot {
        repository: panel.store.describe(&cx),
        snapshot,
    });
    Ok((from_snapshot, report))
}
