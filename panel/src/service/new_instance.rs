//! A restore onto a new instance (`aps-controller restore … --as-new N`, `"as_new"`): the
//! backup's package installed as N, then the backup restored into it, inside the install's
//! journal entry so that a failure of either removes N whole. The migration's counterpart
//! (`--to-new`) is in [`super::migrate`]; both share the web root rule here.

use std::time::Duration;

use aps_controller::Controller;
use aps_controller::operation::install::InstallReport;
use aps_controller::operation::new_instance;
use aps_controller::operation::{RestoreReport, RestoreRequest};
use camino::{Utf8Path, Utf8PathBuf};

use super::restore::{FromSnapshot, Request};
use super::{Field, ServiceError, words};
use crate::context::Panel;
use crate::store::Staged;

/// A new instance's web root must not exist yet: the undo of a failure removes it whole, and
/// a restore may put names into it the install did not make (which an existing folder's undo
/// could not tell from the tenant's own).
pub(crate) fn check_web_root(web_root: &Utf8Path) -> Result<(), ServiceError> {
    if web_root.as_str().is_empty() {
        return Err(ServiceError::usage(words![
            Field::WebRoot,
            " must not be empty"
        ]));
    }
    if std::fs::symlink_metadata(web_root).is_ok() {
        return Err(ServiceError::usage(words![
            Field::WebRoot,
            format!(
                " {web_root} exists: a new instance's web root is made by the operation, so \
                 that a failure can remove it whole; name a folder that does not exist yet \
                 (its parent must)"
            )
        ]));
    }
    Ok(())
}

/// What a restore onto a new instance did: the install, then the restore.
#[derive(Debug)]
pub struct RestoredAsNew {
    pub installed: InstallReport,
    pub report: RestoreReport,
    pub from_snapshot: Option<FromSnapshot>,
}

/// The backup the request names (a file, or one panel.toml's store stages), its package (the
/// request's, else the one a registered instance runs at the backup's version), installed as
/// the new instance, then restored into it.
// The controller's own error type, as `Controller::restore` returns it.
#[allow(clippy::result_large_err)]
pub(crate) fn restore_as_new(
    ctl: &Controller,
    panel: Option<&Panel>,
    request: &Request,
    new: &super::install::Request,
) -> Result<RestoredAsNew, ServiceError> {
    let mut staged = match (&request.from, panel) {
        (Some(from), _) => {
            if std::fs::symlink_metadata(from).is_err() {
                return Err(ServiceError::usage(words![
                    Field::From,
                    format!(" {from}: no such file")
                ]));
            }
            Staged::file(from.clone())
        }
        (None, Some(panel)) => panel.store.take(
            &panel.cx(),
            ctl,
            &request.instance,
            request.snapshot.as_deref(),
        )?,
        (None, None) => {
            return Err(ServiceError::Refused {
                kind: aps_controller::ErrorKind::Internal,
                step: None,
                message: words![
                    "a restore without a file needs panel.toml's store, which was not opened"
                ],
                hint: None,
            });
        }
    };
    let header = new_instance::backup_header(ctl, &staged.archive, request.identity.as_deref())
        .map_err(ServiceError::operation)?;
    let package = if new.package.as_str().is_empty() {
        new_instance::registered_package(ctl, &header)
            .map_err(ServiceError::operation)?
            .ok_or_else(|| {
                ServiceError::usage(words![
                    format!(
                        "the backup is of package {} ({}) version {}-{}, which no registered \
                         instance runs: give its folder or .app.zip with ",
                        header.package_name, header.package_id, header.version, header.release
                    ),
                    Field::PackageOption
                ])
            })?
    } else {
        new.package.clone()
    };
    let mut install = super::install::Request {
        package: absolute(&package),
        ..new.clone()
    };
    install.timeout_secs = install.timeout_secs.or(request.timeout_secs);
    let install = super::install::controller_request(&install)?;
    let restore = RestoreRequest {
        instance: new.name.clone(),
        source: staged.archive.clone(),
        timeout: request.timeout_secs.map(Duration::from_secs),
        // The undo of a failure is the new instance's removal, not a snapshot of it.
        no_safety_snapshot: true,
        identity: request.identity.clone(),
        // Nothing of another site is overwritten: the instance is new.
        from_other_instance: true,
    };
    let snapshot = staged.snapshot.clone();
    let (installed, report) = ctl
        .install_then(&install, |_| staged.restore(ctl, &restore))
        .map_err(ServiceError::operation)?;
    let report = report.ok_or_else(|| ServiceError::Refused {
        kind: aps_controller::ErrorKind::Internal,
        step: None,
        message: words!["the install of the new instance was a dry run"],
        hint: None,
    })?;
    Ok(RestoredAsNew {
        installed,
        report,
        from_snapshot: snapshot.zip(panel).map(|(snapshot, panel)| FromSnapshot {
            repository: panel.store.describe(&panel.cx()),
            snapshot,
        }),
    })
}

fn absolute(path: &Utf8Path) -> Utf8PathBuf {
    aps_controller::paths::absolute(path)
}
