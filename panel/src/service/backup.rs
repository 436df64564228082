//! A manual backup (`aps-controller backup NAME`, `POST /v1/instances/NAME/backup`): into the
//! store panel.toml chose — an archive file, or one snapshot of the repository store — or
//! into the file `to`; or, with `dry_run`, only its plan.

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::archive::check_recipients;
use camino::{Utf8Path, Utf8PathBuf};

use super::{Field, ServiceError, Words, check_instance_name, check_timeout, words};
use crate::context::Panel;
use crate::manual::{self, ManualRequest};
use crate::naming::Compression;
use crate::store::{ManualBackup, ManualKind};

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

/// What a manual backup made: the store's outcome, whatever its kind.
pub use crate::store::outcome::{ArchiveBackup, Outcome, SnapshotBackup};

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
    /// Whether the backup writes an archive file through the controller (not a plan, not
    /// what panel.toml's store makes itself): its progress is the controller's, and an
    /// interrupted one leaves a partial file that the rollback deletes.
    pub fn writes_archive(&self, panel: &Panel) -> bool {
        !self.dry_run && (self.to.is_some() || panel.store.manual_writes_archive())
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

/// The backup the request asks for: checked, then into `to` (planned, made and recorded) or
/// into the store panel.toml chose, which decides what a manual backup into it is.
pub fn backup(ctl: &Controller, panel: &Panel, request: &Request) -> Result<Outcome, ServiceError> {
    let (compression, recipients) = request.check()?;
    let Some(to) = &request.to else {
        return Ok(panel.store.manual_backup(
            &panel.cx(),
            ctl,
            &ManualBackup {
                instance: &request.instance,
                kind: ManualKind::Manual,
                timeout: request.timeout_secs.map(Duration::from_secs),
                compression,
                recipients,
                dry_run: request.dry_run,
            },
        )?);
    };
    // A file of the operator's choice is not the store's: refused inside the web folders,
    // named and recorded in the archive folder.
    let instance = ctl
        .store()
        .get(&request.instance)
        .map_err(|e| super::not_found(e.to_string()))?;
    refuse_inside_web_dirs(to, &instance.web_dirs, words![Field::To])?;
    let plan = manual::plan(
        &panel.local,
        panel.archive_choice(),
        &ManualRequest {
            instance: request.instance.clone(),
            kind: ManualKind::Manual,
            to: Some(to.clone()),
            compression,
            recipients,
        },
        jiff::Timestamp::now(),
    )?;
    Ok(manual::carry_out(
        ctl,
        &panel.local,
        &request.instance,
        plan,
        (
            request.force,
            request.timeout_secs.map(Duration::from_secs),
            request.dry_run,
        ),
    )?)
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
