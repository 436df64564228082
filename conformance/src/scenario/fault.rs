//! The fault round: the backup and the restore each interrupted once (SIGTERM, while the
//! package's script runs), and the instance compared with its state before.
//!
//! The stop is sent as soon as the package's script runs (a process of the instance's account
//! running a file of the package's `scripts/`). When the operation ended before one was seen
//! (no script, or one too quick to catch), it runs once more with the stop asked for from its
//! start, so the controller's own phases are what is interrupted: the row never depends on a
//! race. Either way the operation
//! must fail as `interrupted`, leave no process of the account and no file in the backup's
//! folder, and the instance must equal its state before.

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use aps_controller::operation::{BackupRequest, RestoreRequest};
use aps_controller::{Controller, ErrorKind, OperationError};

use super::interrupt::{self, Landed};
use super::sandboxed;
use super::steps;
use super::{Context, StepFailure};
use crate::capture::diff;
use crate::findings;

/// How long the account's processes may take to go after an interrupted operation returned.
const PROCESS_GRACE: Duration = Duration::from_secs(5);

pub(super) fn fault_round(cx: &mut Context<'_>) {
    let Some(instance) = cx.instance.clone() else {
        let why = "the install failed: there is no instance to interrupt";
        cx.skip(steps::FAULT_BACKUP, why);
        cx.skip(steps::FAULT_RESTORE, why);
        return;
    };
    cx.step(steps::FAULT_BACKUP, |cx| backup_interrupted(cx, &instance));
    cx.step(steps::FAULT_RESTORE, |cx| {
        restore_interrupted(cx, &instance)
    });
}

fn backup_interrupted(cx: &mut Context<'_>, instance: &str) -> Result<(), StepFailure> {
    let uid = cx.sandbox.account().uid;
    let folder = fresh_folder(&cx.work, "fault-backup")?;
    let destination = folder.join(format!("{instance}.aps"));
    let before = sandboxed::capture(cx, instance, uid)?;
    let mut request = BackupRequest::new(instance, destination.clone());
    request.timeout = cx.options.timeout;
    let backup = |ctl: &Controller| ctl.backup(&request);
    let (mut result, mut landed) = interrupt::while_running(cx, uid, backup);
    if result.is_ok() {
        // Ended before the stop: a whole backup, not a half-written one. Once more, stopped
        // from its start.
        remove_file(&destination)?;
        (result, landed) = interrupt::at_start(cx, backup);
    }
    let checked = check_interrupted("the backup", result.map(|_| ()), landed, uid);
    let left = entries_of(&folder)?;
    let after = sandboxed::capture(cx, instance, uid)?;
    let _ = std::fs::remove_dir_all(&folder);
    checked?;
    if !left.is_empty() {
        return Err(StepFailure {
            section: Some("§8.8"),
            ..StepFailure::new(format!(
                "the interrupted backup ({}) left {} in the backup's folder {folder}",
                landed.describe(),
                left.join(", ")
            ))
        });
    }
    sandboxed::compared(
        diff(&before, &after),
        "the interrupted backup changed the instance",
        "§8.8",
    )
}

fn restore_interrupted(cx: &mut Context<'_>, instance: &str) -> Result<(), StepFailure> {
    let uid = cx.sandbox.account().uid;
    let folder = fresh_folder(&cx.work, "fault-restore")?;
    let good = folder.join(format!("{instance}.aps"));
    let mut request = BackupRequest::new(instance, good.clone());
    request.timeout = cx.options.timeout;
    let made = cx.controller.backup(&request);
    if let Err(e) = made {
        let _ = std::fs::remove_dir_all(&folder);
        return Err(sandboxed::operation_failed(
            "the backup to restore from",
            &e,
            Some("§8.8"),
        ));
    }
    let before = sandboxed::capture(cx, instance, uid)?;
    let mut request = RestoreRequest::new(instance, good.clone());
    request.timeout = cx.options.timeout;
    let restore = |ctl: &Controller| ctl.restore(&request);
    let (mut result, mut landed) = interrupt::while_running(cx, uid, restore);
    if result.is_ok() {
        // Restored whole from the backup just made: the instance is as before. Once more,
        // stopped from its start.
        (result, landed) = interrupt::at_start(cx, restore);
    }
    let checked = check_interrupted("the restore", result.map(|_| ()), landed, uid);
    let after = sandboxed::capture(cx, instance, uid);
    let _ = std::fs::remove_dir_all(&folder);
    checked?;
    sandboxed::compared(
        diff(&before, &after?),
        "the interrupted restore did not put the instance back as it was",
        "§8.9",
    )
}

/// The operation failed as interrupted and left no process of the account behind.
fn check_interrupted(
    what: &str,
    result: Result<(), OperationError>,
    landed: Landed,
    uid: u32,
) -> Result<(), StepFailure> {
    match result {
        Ok(()) => {
            return Err(StepFailure::new(format!(
                "{what} finished although SIGTERM was asked for before it began"
            )));
        }
        Err(e) if e.kind() != ErrorKind::Interrupted => {
            let mut failure = sandboxed::operation_failed(what, &e, None);
            failure.why = format!(
                "{what}, {}, failed as `{}`, not as `interrupted`: {e}",
                landed.describe(),
                e.kind().as_str()
            );
            return Err(failure);
        }
        Err(_) => {}
    }
    let deadline = Instant::now() + PROCESS_GRACE;
    loop {
        let left = findings::processes_of(uid);
        if left.is_empty() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            let commands: Vec<String> = left
                .iter()
                .map(|p| format!("{} ({})", p.pid, p.command))
                .collect();
            return Err(StepFailure::new(format!(
                "{what}, {}, left processes of the instance's account running: {}",
                landed.describe(),
                commands.join(", ")
            )));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// An empty root-only folder `name` in the run's work folder.
fn fresh_folder(work: &Utf8Path, name: &str) -> Result<Utf8PathBuf, StepFailure> {
    let folder = work.join(name);
    let _ = std::fs::remove_dir_all(&folder);
    std::os::unix::fs::DirBuilderExt::mode(&mut std::fs::DirBuilder::new(), 0o700)
        .create(&folder)
        .map_err(|e| StepFailure::new(format!("cannot create {folder}: {e}")))?;
    Ok(folder)
}

fn remove_file(path: &Utf8Path) -> Result<(), StepFailure> {
    std::fs::remove_file(path).map_err(|e| StepFailure::new(format!("cannot remove {path}: {e}")))
}

/// The names in `folder`, sorted.
fn entries_of(folder: &Utf8Path) -> Result<Vec<String>, StepFailure> {
    let mut names: Vec<String> = folder
        .read_dir_utf8()
        .map_err(|e| StepFailure::new(format!("cannot read {folder}: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.file_name().to_owned()))
        .collect();
    names.sort();
    Ok(names)
}
