//! A backup from elsewhere accepted (`aps-controller backup import FILE`): checked end to end,
//! what it holds shown, and recorded as trusted (docs/backup-format.md, "Backups from
//! elsewhere").

use aps_controller::Controller;
use aps_controller::operation::import::{ImportReport, ImportRequest};

use super::ServiceError;

/// The controller's request as it is: the file, its identity, the instance of a `sufficient`
/// script's file, and whether to record nothing.
pub type Request = ImportRequest;

/// The import the request asks for.
pub fn import(ctl: &Controller, request: &Request) -> Result<ImportReport, ServiceError> {
    ctl.import_backup(request).map_err(ServiceError::operation)
}
