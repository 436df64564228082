//! Remove (`aps-controller instance remove`, `DELETE /v1/instances/N`): the panel's part is
//! the final backup into the store, before the controller removes anything; a failed backup
//! refuses the removal with nothing removed.

use std::time::Duration;

use aps_controller::operation::remove::{RemoveReport, RemoveRequest};
use aps_controller::{Controller, ErrorKind};
use serde::Serialize;

use super::{Field, ServiceError, check_instance_name, check_timeout, words};
use crate::context::Panel;
use crate::store::outcome::Outcome;
use crate::store::{ManualBackup, ManualKind};

/// A removal as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// Remove the record only: no script, files and databases kept, no final backup.
    pub keep_data: bool,
    /// Remove without the final backup.
    pub no_final_backup: bool,
    pub timeout_secs: Option<u64>,
}

/// What the removal did, with the final backup it took first.
#[derive(Debug, Serialize)]
pub struct Removed {
    /// The instance's name (the key `instance remove --json` has always had).
    pub removed: String,
    #[serde(flatten)]
    pub report: RemoveReport,
    /// The final backup; `None` with `keep_data` or `no_final_backup`.
    pub final_backup: Option<FinalBackup>,
}

/// Where the final backup went: a file of the archive store, or a snapshot.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum FinalBackup {
    Archive {
        file: camino::Utf8PathBuf,
        stored_as: String,
        size: u64,
        sha256: String,
    },
    Snapshot {
        repository: String,
        snapshot: String,
    },
}

impl FinalBackup {
    fn of(outcome: Outcome) -> Option<Self> {
        match outcome {
            Outcome::Archive(a) => Some(FinalBackup::Archive {
                file: a.report.file,
                stored_as: a.stored_as,
                size: a.report.size,
                sha256: a.report.sha256,
            }),
            Outcome::Snapshot(s) => Some(FinalBackup::Snapshot {
                repository: s.repository,
                snapshot: s.snapshot.id,
            }),
            Outcome::Plan(_) => None,
        }
    }
}

impl Request {
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_timeout(self.timeout_secs)
    }
}

/// With `keep_data`: the record only, no backup (and no panel.toml needed).
pub fn remove_keeping_data(ctl: &Controller, request: &Request) -> Result<Removed, ServiceError> {
    request.check()?;
    let mut remove = RemoveRequest::new(request.instance.clone());
    remove.keep_data = true;
    let report = ctl.remove(&remove).map_err(ServiceError::operation)?;
    Ok(Removed {
        removed: report.instance.clone(),
        report,
        final_backup: None,
    })
}

/// The final backup (unless `keep_data` or `no_final_backup`), then the controller's removal.
pub fn remove(ctl: &Controller, panel: &Panel, request: &Request) -> Result<Removed, ServiceError> {
    request.check()?;
    let timeout = request.timeout_secs.map(Duration::from_secs);
    // The instance must exist before a backup of it is tried: an unknown name is a 404.
    ctl.store()
        .get(&request.instance)
        .map_err(|e| super::not_found(e.to_string()))?;
    // Refused before a backup is taken of an instance that cannot be removed.
    if !request.keep_data {
        ctl.check_remove(&request.instance)
            .map_err(ServiceError::operation)?;
    }
    let final_backup = if request.keep_data || request.no_final_backup {
        None
    } else {
        let outcome = panel.store.manual_backup(
            &panel.cx(),
            ctl,
            &ManualBackup {
                instance: &request.instance,
                kind: ManualKind::Final,
                timeout,
                compression: None,
                recipients: None,
                dry_run: false,
            },
        );
        match outcome {
            Ok(outcome) => FinalBackup::of(outcome),
            Err(refusal) => {
                let error = ServiceError::from(refusal);
                let kind = match &error {
                    ServiceError::Refused { kind, .. } => *kind,
                    ServiceError::Operation { error, .. } => error.kind(),
                    _ => ErrorKind::ResourceFailed,
                };
                return Err(ServiceError::Refused {
                    kind,
                    step: Some("remove-final-backup"),
                    message: words![
                        format!(
                            "the final backup of {} failed, so nothing was removed: {error}; fix the backup, or give ",
                            request.instance
                        ),
                        Field::NoFinalBackup,
                        " to remove without one"
                    ],
                    hint: None,
                });
            }
        }
    };
    let mut remove = RemoveRequest::new(request.instance.clone());
    remove.keep_data = request.keep_data;
    remove.timeout = timeout;
    let report = ctl.remove(&remove).map_err(ServiceError::operation)?;
    Ok(Removed {
        removed: report.instance.clone(),
        report,
        final_backup,
    })
}
