//! Migration (controller guide, "Application Data Retention"): a backup of the source instance
//! followed by a restore into the target instance, which is registered with its own URL, web
//! folders and databases; the restore script sees the target's environment.

use std::time::Instant;

use crate::controller::{Controller, absolute};
use crate::error::{OperationError, Step};
use crate::operation::{BackupRequest, MigrateReport, MigrateRequest, RestoreRequest};

pub fn migrate(
    ctl: &Controller,
    request: &MigrateRequest,
) -> Result<MigrateReport, OperationError> {
    let started = Instant::now();
    if request.source == request.target {
        return Err(OperationError::BackupMismatch {
            step: Step::FindInstance,
            file: Default::default(),
            instance: request.target.clone(),
            reason: "the target of a migration must be another instance".into(),
        });
    }
    // Both must exist before any work (the restore would find out only after the backup).
    ctl.find_instance(&request.source)?;
    ctl.find_instance(&request.target)?;

    let (file, keep) = match &request.keep {
        Some(path) => (absolute(path), true),
        None => {
            let dir = ctl.work_dir("migrations");
            std::fs::create_dir_all(&dir).map_err(OperationError::io(
                Step::CheckDestination,
                "cannot create",
                &dir,
            ))?;
            let stamp = jiff::Timestamp::now().as_millisecond();
            (
                dir.join(format!(
                    "{}-to-{}-{stamp}.aps",
                    request.source, request.target
                )),
                false,
            )
        }
    };
    let backup = ctl.backup(&BackupRequest {
        instance: request.source.clone(),
        destination: file.clone(),
        force: false,
        timeout: request.timeout,
        archive: request.archive.clone(),
    })?;
    let restored = ctl.restore(&RestoreRequest {
        instance: request.target.clone(),
        source: file.clone(),
        timeout: request.timeout,
        no_safety_snapshot: request.no_safety_snapshot,
        identity: request.identity.clone(),
    });
    if !keep {
        let _ = std::fs::remove_file(&file);
    }
    let restore = restored?;
    Ok(MigrateReport {
        source: request.source.clone(),
        target: request.target.clone(),
        backup,
        restore,
        kept: keep.then_some(file),
        duration_ms: started.elapsed().as_millis() as u64,
    })
}
