//! A manual backup (`aps-controller backup NAME`, `POST /v1/instances/NAME/backup`): into the
//! store panel.toml chose — an archive file, or one snapshot of the repository store — or
//! into the file `to`; or, with `dry_run`, only its plan.

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::archive::check_recipients;
use aps_controller::operation::BackupReport;
use aps_controller::operation::backup::BackupPlan;
use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use super::{Field, ServiceError, Words, check_instance_name, check_timeout, words};
use crate::context::Panel;
use crate::manual::{self, ManualPlan, ManualRequest};
use crate::naming::Compression;
use crate::store::repository::SnapshotInfo;

/// A manual backup as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// Exactly this file instead of the store.
    pub to: Option<Utf8PathBuf>,
    /// Replace `to` when it exists.
    pub force: bool,
    pub timeout_secs: Option<u64>,
    /// `zstd`, `gzip` or `none`; `None` takes panel.toml's.
    pub compression: Option<String>,
    /// age public keys; none takes panel.toml's.
    pub recipients: Vec<String>,
    /// Only check and estimate: the plan is the answer.
    pub dry_run: bool,
    /// `to` must be absolute (a server's front end: a relative path would depend on its
    /// working folder).
    pub absolute_paths: bool,
}

/// What a manual backup made.
#[derive(Debug)]
pub enum Outcome {
    /// An archive file, in the archive store or at `to`.
    Archive(ArchiveBackup),
    /// One snapshot in the repository store.
    Snapshot(SnapshotBackup),
    /// `dry_run`: nothing was written.
    Plan(Box<BackupPlan>),
}

/// An archive backup: the controller's report, the store's name for it and, for `to`, the
/// record that makes the store list it.
#[derive(Debug, Serialize)]
pub struct ArchiveBackup {
    #[serde(flatten)]
    pub report: BackupReport,
    pub stored_as: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub record: Option<Utf8PathBuf>,
    /// Things the person may want to know that did not stop the backup.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// A backup into the repository store.
#[derive(Debug, Serialize)]
pub struct SnapshotBackup {
    pub instance: String,
    /// The repository's folder, or `s3://bucket/prefix/`.
    pub repository: String,
    pub snapshot: SnapshotInfo,
    pub duration_ms: u64,
}

/// `zstd`, `gzip` or `none` as the front ends name them.
pub fn compression_named(name: &str) -> Result<Compression, String> {
    match name {
        "zstd" => Ok(Compression::Zstd),
        "gzip" => Ok(Compression::Gzip),
        "none" => Ok(Compression::None),
        other => Err(format!(
            "unknown compression {other:?}: expected zstd, gzip or none"
        )),
    }
}

impl Request {
    /// Whether the backup is a snapshot the store makes itself: no `to` and panel.toml's
    /// store keeps snapshots (the repository).
    pub fn goes_to_repository(&self, panel: &Panel) -> bool {
        self.to.is_none() && panel.store.keeps_snapshots()
    }

    /// Everything that can be checked without touching anything.
    pub fn check(&self) -> Result<(Option<Compression>, Option<Vec<String>>), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_timeout(self.timeout_secs)?;
        let compression = self
            .compression
            .as_deref()
            .map(compression_named)
            .transpose()
            .map_err(|m| ServiceError::usage(words![Field::Compression, format!(": {m}")]))?;
        if let Err(e) = check_recipients(&self.recipients) {
            return Err(ServiceError::usage(words![
                Field::Recipients,
                format!(
                    ": {e}; an age public key starts with age1 (`aps-controller key generate` \
                     makes one)"
                )
            ]));
        }
        // The CLI's parser refuses --force without --to; the same mistake over HTTP too.
        if self.force && self.to.is_none() {
            return Err(ServiceError::usage(words![
                Field::Force,
                " replaces an existing ",
                Field::To,
                " file; without it nothing is replaced"
            ]));
        }
        if let Some(to) = &self.to
            && self.absolute_paths
            && !to.is_absolute()
        {
            return Err(ServiceError::usage(words![
                Field::To,
                format!(" is {to:?}; expected an absolute path")
            ]));
        }
        let recipients = (!self.recipients.is_empty()).then(|| self.recipients.clone());
        Ok((compression, recipients))
    }
}

/// The backup the request asks for: checked, planned (the store's name, or `to`), made and
/// recorded; with the repository store (and no `to`), one snapshot, periodicity manual.
pub fn backup(ctl: &Controller, panel: &Panel, request: &Request) -> Result<Outcome, ServiceError> {
    let (compression, recipients) = request.check()?;
    if request.goes_to_repository(panel) {
        return repository_backup(ctl, panel, request).map(Outcome::Snapshot);
    }
    let (plan, controller_request) = prepare(ctl, panel, request, compression, recipients)?;
    if request.dry_run {
        // The store's name is held only for this answer: dropping the plan releases it.
        return ctl
            .plan_backup(&controller_request)
            .map(|p| Outcome::Plan(Box::new(p)))
            .map_err(ServiceError::operation);
    }
    let report = ctl
        .backup(&controller_request)
        .map_err(ServiceError::operation)?;
    let stored_as = plan.name().file_name();
    let warnings = plan.warnings.clone();
    let record = plan.finish(panel).map_err(|e| ServiceError::Refused {
        kind: ErrorKind::Internal,
        step: None,
        message: words![format!(
            "the backup was written to {} but could not be recorded in the store: {e}",
            report.file
        )],
        hint: None,
    })?;
    Ok(Outcome::Archive(ArchiveBackup {
        report,
        stored_as,
        record,
        warnings,
    }))
}

/// Where a manual backup goes and how (the request already checked), with the store's name
/// held for it.
fn prepare(
    ctl: &Controller,
    panel: &Panel,
    request: &Request,
    compression: Option<Compression>,
    recipients: Option<Vec<String>>,
) -> Result<(ManualPlan, aps_controller::operation::BackupRequest), ServiceError> {
    let instance = ctl
        .store()
        .get(&request.instance)
        .map_err(|e| super::not_found(e.to_string()))?;
    match &request.to {
        Some(to) => refuse_inside_web_dirs(to, &instance.web_dirs, words![Field::To])?,
        None => refuse_inside_web_dirs(
            &panel.local.instance_dir(&request.instance),
            &instance.web_dirs,
            words!["the backup store (panel.toml `store`)"],
        )?,
    }
    let plan = manual::plan(
        panel,
        &ManualRequest {
            instance: request.instance.clone(),
            to: request.to.clone(),
            compression,
            recipients,
        },
        jiff::Timestamp::now(),
    )?;
    let controller_request = aps_controller::operation::BackupRequest {
        instance: request.instance.clone(),
        destination: plan.destination.clone(),
        force: request.force,
        timeout: request.timeout_secs.map(Duration::from_secs),
        archive: plan.archive.options(0),
    };
    Ok((plan, controller_request))
}

fn refuse_inside_web_dirs(
    path: &Utf8Path,
    web_dirs: &std::collections::BTreeMap<String, Utf8PathBuf>,
    what: Words,
) -> Result<(), ServiceError> {
    match manual::web_dir_containing(path, web_dirs) {
        None => Ok(()),
        Some((mapping, dir)) => {
            let mut message = what;
            message.push_text(&manual::inside_web_dir_message("", path, &mapping, &dir));
            Err(ServiceError::Refused {
                kind: ErrorKind::DestinationRefused,
                step: Some("3.1-check-destination"),
                message,
                hint: None,
            })
        }
    }
}

/// A backup into the repository store: the archive-only options refused before any work,
/// then one snapshot, periodicity manual (docs/repository.md).
fn repository_backup(
    ctl: &Controller,
    panel: &Panel,
    request: &Request,
) -> Result<SnapshotBackup, ServiceError> {
    let refuse = |what: Words| {
        let mut message = what;
        message.push_text(
            " applies to archive files; panel.toml's store is a repository, which compresses \
             and encrypts by itself (give ",
        );
        message.push_field(Field::ToFile);
        message.push_text(" for an archive)");
        Err(ServiceError::usage(message))
    };
    if request.dry_run {
        return refuse(words![Field::DryRun]);
    }
    if request.compression.is_some() || !request.recipients.is_empty() {
        return refuse(words![Field::Compression, "/", Field::Recipients]);
    }
    let started = std::time::Instant::now();
    let cx = panel.cx();
    panel.store.open(&cx)?;
    let made = panel.store.backup(
        &cx,
        ctl,
        &request.instance,
        crate::Periodicity::Manual,
        &crate::SystemClock,
    )?;
    let crate::store::Made::Snapshot(snapshot) = made else {
        return Err(ServiceError::Refused {
            kind: ErrorKind::Internal,
            step: None,
            message: words!["the store made a file, not a snapshot"],
            hint: None,
        });
    };
    Ok(SnapshotBackup {
        instance: request.instance.clone(),
        repository: panel.store.describe(&cx),
        snapshot,
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
