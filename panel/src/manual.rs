//! `backup NAME [--to FILE]`: one backup on demand, into the store or to a file of the
//! operator's choice, packed as panel.toml says unless the request says otherwise.
//!
//! Without `to` the backup goes into the local store under the standard name with periodicity
//! `manual`; with `to` it is written exactly there and recorded in the store
//! ([`crate::store::local`]), so that `backups`, `verify --instance`, `restore --latest` and
//! drills see it. [`carry_out`] runs the controller's backup on [`ManualPlan::destination`]
//! (its typed error reaches the user unchanged) and then [`ManualPlan::finish`]: the archive
//! store's manual backup and the service's backup into a file both end there.

use std::time::Duration;

use aps_controller::{Controller, ErrorKind};
use camino::Utf8PathBuf;
use jiff::Timestamp;

use crate::engine::ArchiveChoice;
use crate::error::PanelError;
use crate::naming::{ArchiveFormat, BackupName, Compression};
use crate::store::local::{LocalStore, Reservation};
use crate::store::outcome::{ArchiveBackup, ManualKind, Outcome, Refusal};
pub use crate::web_dirs::{inside_web_dir_message, web_dir_containing};

/// What the request names; `None` takes panel.toml's choice.
#[derive(Debug, Clone, Default)]
pub struct ManualRequest {
    pub instance: String,
    /// Manual, or the final backup before a removal: the name's periodicity.
    pub kind: ManualKind,
    pub to: Option<Utf8PathBuf>,
    pub compression: Option<Compression>,
    pub recipients: Option<Vec<String>>,
}

/// Where the backup goes and how it is packed, with the store's name held for it.
#[derive(Debug)]
pub struct ManualPlan {
    pub destination: Utf8PathBuf,
    pub archive: ArchiveChoice,
    /// Things the user may want to know but that do not stop the backup.
    pub warnings: Vec<String>,
    external: bool,
    reservation: Reservation,
}

impl ManualPlan {
    /// The name the store knows the backup by.
    pub fn name(&self) -> &BackupName {
        &self.reservation.name
    }

    /// After a successful backup: records a `--to` backup in the store (returns the record),
    /// and releases the name.
    pub fn finish(self, local: &LocalStore) -> Result<Option<Utf8PathBuf>, PanelError> {
        if !self.external {
            return Ok(None);
        }
        Ok(Some(
            local.record_external(&self.reservation, &self.destination)?,
        ))
    }
}

/// Decides destination, name and packing (`config`: panel.toml's), and reserves the name in
/// `local`; writes nothing else.
pub fn plan(
    local: &LocalStore,
    config: ArchiveChoice,
    request: &ManualRequest,
    now: Timestamp,
) -> Result<ManualPlan, PanelError> {
    let archive = ArchiveChoice {
        compression: request.compression.unwrap_or(config.compression),
        age_recipients: request.recipients.clone().unwrap_or(config.age_recipients),
    };
    let chosen = ArchiveFormat {
        compression: archive.compression,
        encrypted: !archive.age_recipients.is_empty(),
    };
    let mut warnings = Vec::new();
    let format = match &request.to {
        None => chosen,
        Some(to) => match ArchiveFormat::of_file_name(to.file_name().unwrap_or_default()) {
            Some(named) if named != chosen => {
                let file_name = to.file_name().unwrap_or_default();
                let stem = file_name
                    .strip_suffix(named.extension())
                    .unwrap_or(file_name);
                warnings.push(format!(
                    "{to} ends in {} but the archive is written as {} (compression {}{}); name it \
                     {stem}{} so that its name says what it holds",
                    named.extension(),
                    chosen.extension(),
                    serde_plain(archive.compression),
                    if chosen.encrypted { ", encrypted" } else { "" },
                    chosen.extension()
                ));
                chosen
            }
            _ => chosen,
        },
    };
    let name = BackupName::new(&request.instance, request.kind.periodicity(), now, format);
    let reservation = local.reserve(&name)?;
    Ok(ManualPlan {
        destination: request
            .to
            .clone()
            .unwrap_or_else(|| reservation.path.clone()),
        archive,
        warnings,
        external: request.to.is_some(),
        reservation,
    })
}

/// `plan` carried out for `instance`: the controller's backup on its destination (with
/// `dry_run` only its plan; dropping the plan then releases the name), then the record of a
/// backup into a file of the request's.
pub fn carry_out(
    ctl: &Controller,
    local: &LocalStore,
    instance: &str,
    plan: ManualPlan,
    (force, timeout, dry_run): (bool, Option<Duration>, bool),
) -> Result<Outcome, Refusal> {
    let controller_request = aps_controller::operation::BackupRequest {
        instance: instance.to_owned(),
        destination: plan.destination.clone(),
        force,
        timeout,
        archive: plan.archive.options(0),
    };
    if dry_run {
        return Ok(Outcome::Plan(Box::new(
            ctl.plan_backup(&controller_request)?,
        )));
    }
    let report = ctl.backup(&controller_request)?;
    let stored_as = plan.name().file_name();
    let warnings = plan.warnings.clone();
    let record = plan.finish(local).map_err(|e| Refusal::Refused {
        kind: ErrorKind::Internal,
        step: None,
        message: format!(
            "the backup was written to {} but could not be recorded in the store: {e}",
            report.file
        ),
    })?;
    Ok(Outcome::Archive(ArchiveBackup {
        report,
        stored_as,
        record,
        warnings,
    }))
}

fn serde_plain(c: Compression) -> &'static str {
    match c {
        Compression::Zstd => "zstd",
        Compression::Gzip => "gzip",
        Compression::None => "none",
    }
}

/// The newest good backup of `instance` in the local store (its full path), for
/// `restore --latest` and `verify --instance`.
pub fn latest(local: &LocalStore, instance: &str) -> Result<Utf8PathBuf, PanelError> {
    let newest =
        crate::store::files::newest_good(local, instance)?.ok_or_else(|| PanelError::NoBackup {
            instance: instance.to_owned(),
            store: local.root().to_string(),
        })?;
    Ok(local.path_of(&newest))
}
