//! Upgrade: an instance moved to a newer version of its package (§8.5), put back whole from a
//! safety snapshot when any step fails, now or after a `kill -9` (the next start).
//!
//! 1. checks, nothing changed ([`plan`]): the new package as `package check` checks it, the
//!    same application, an `upgrade`/`patch` rule that matches the installed version-release,
//!    the new requirements, the new settings (kept, defaulted, given, dropped);
//! 2. the safety snapshot: the controller's archive of the instance, as a restore takes it;
//! 3. files ([`swap`]): the new package's content staged beside the web root, the instance's
//!    own entries (writable folders, files no package brought) moved over, then the two
//!    folders exchanged in one rename;
//! 4. `configure upgrade OLD_VERSION OLD_RELEASE` as the instance's account;
//! 5. the record: package, settings.
//!
//! The journal holds, in order: the work folder, the snapshot's put-back, the staged
//! folder's removal and, before the record is replaced, the old record's put-back. Undone in
//! reverse, that leaves the old record, files and databases.

mod plan;
mod swap;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use crate::controller::{Controller, Operation};
use crate::error::{OperationError, Step};
use crate::journal::{OperationKind, UndoAction};
use crate::lifecycle::GivenSettings;
use crate::operation::install::PhaseTime;
use crate::registry::{FileStore, InstanceStore, SettingValue, StateDir};

/// What to upgrade, to which package.
#[derive(Debug, Clone)]
pub struct UpgradeRequest {
    pub instance: String,
    /// The new package: a folder or `.app.zip`, absolute.
    pub package: Utf8PathBuf,
    /// Values for the new version's settings (new ones, or changed ones).
    pub settings: GivenSettings,
    /// Run every check and change nothing.
    pub dry_run: bool,
    /// Timeout of `configure upgrade`; `None` means the configured default.
    pub timeout: Option<Duration>,
}

impl UpgradeRequest {
    pub fn new(instance: impl Into<String>, package: impl Into<Utf8PathBuf>) -> Self {
        UpgradeRequest {
            instance: instance.into(),
            package: package.into(),
            settings: GivenSettings::new(),
            dry_run: false,
            timeout: None,
        }
    }
}

/// The outcome of an upgrade (or, with `dry_run`, what it would do).
#[derive(Debug, Clone, Serialize)]
pub struct UpgradeReport {
    pub instance: String,
    pub package: Utf8PathBuf,
    pub application: String,
    pub from_version: String,
    pub from_release: String,
    pub to_version: String,
    pub to_release: String,
    /// The rule of the new package that allowed it (`upgrade match="…"`).
    pub rule: String,
    /// Only the checks ran; nothing changed.
    pub dry_run: bool,
    /// Files and symlinks of the new package the old one did not have (web-root-relative).
    pub files_added: Vec<String>,
    /// Files and symlinks of the old package the new one does not have: removed.
    pub files_removed: Vec<String>,
    /// Files both packages have: replaced by the new package's.
    pub files_replaced: u64,
    /// Writable folders kept with what the instance's users put there.
    pub writable_kept: Vec<String>,
    /// Settings of the new version the record did not have (default or given).
    pub settings_added: Vec<String>,
    /// Settings the new version no longer declares: dropped from the record.
    pub settings_dropped: Vec<String>,
    /// Every setting as recorded after the upgrade; password settings show `***`.
    pub settings: BTreeMap<String, SettingValue>,
    /// The tail of what `configure upgrade` printed on stdout, trimmed.
    pub configure_output: String,
    pub phases: Vec<PhaseTime>,
    pub duration_ms: u64,
}

/// [`Controller::upgrade`].
pub fn upgrade(
    ctl: &Controller,
    request: &UpgradeRequest,
) -> Result<UpgradeReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let mut clock = Clock::new();
    let plan = plan::check(ctl, request)?;
    clock.lap(Step::UpgradeCheck);
    let mut report = plan.report(request);
    if request.dry_run {
        report.phases = clock.phases;
        report.duration_ms = millis(started.elapsed());
        return Ok(report);
    }
    ctl.check_cancel(Step::SafetySnapshot)?;
    crate::database::as_account(plan.account.as_ref(), || {
        carry_out(ctl, request, &plan, &mut report, &mut clock)
    })?;
    report.phases = clock.phases;
    report.duration_ms = millis(started.elapsed());
    Ok(report)
}

fn carry_out(
    ctl: &Controller,
    request: &UpgradeRequest,
    plan: &plan::Plan,
    report: &mut UpgradeReport,
    clock: &mut Clock,
) -> Result<(), OperationError> {
    let name = &plan.old.name;
    let mut op = ctl.begin_operation(OperationKind::Upgrade, name, Step::SafetySnapshot, |_| {
        Vec::new()
    })?;
    let snapshot = op.work().join("safety-snapshot.aps.tar.zst");
    ctl.report_part("upgrade", name, "safety-snapshot", "", None);
    // Persisted once taken: from here on a killed controller is put back from it.
    let taken =
        crate::operation::restore::take_snapshot(ctl, &plan.old, &plan.old_package.meta, &snapshot)
            .and_then(|()| {
                op.add_undo(
                    UndoAction::RestoreSnapshot {
                        snapshot: snapshot.clone(),
                        instance: name.clone(),
                    },
                    Step::SafetySnapshot,
                )
            })
            .and_then(|()| ctl.check_cancel(Step::SafetySnapshot));
    if let Err(error) = taken {
        return Err(op.fail(error));
    }
    clock.lap(Step::SafetySnapshot);
    match change(ctl, request, plan, &mut op, report, clock) {
        Ok(()) => {
            op.succeed();
            Ok(())
        }
        Err(error) => {
            let error = error.interrupted_by(ctl.cancel().signal());
            ctl.report_part("upgrade", name, "rollback", "", None);
            // A second signal must not cut the put-back short.
            let leftovers = crate::cancel::shielded(|| op.undo_now(ctl));
            if leftovers.is_empty() {
                return Err(op.fail(error));
            }
            // Keep the snapshot (and the journal entry) for a person to act on.
            let error = OperationError::InstallUndoFailed {
                original: Box::new(error),
                leftovers,
            };
            op.fail_keeping_work(&error.to_string());
            Err(error)
        }
    }
}

/// Steps 3 to 5: the files, the script, the record.
fn change(
    ctl: &Controller,
    request: &UpgradeRequest,
    plan: &plan::Plan,
    op: &mut Operation,
    report: &mut UpgradeReport,
    clock: &mut Clock,
) -> Result<(), OperationError> {
    let name = &plan.old.name;
    ctl.report_part("upgrade", name, "files", "", None);
    let leftover = swap::swap(ctl, plan, op)?;
    clock.lap(Step::UpgradeFiles);
    ctl.check_cancel(Step::UpgradeConfigure)?;

    ctl.report_part("upgrade", name, "configure", "upgrade", None);
    report.configure_output = plan.run_configure(ctl, op, request.timeout)?;
    clock.lap(Step::UpgradeConfigure);
    ctl.check_cancel(Step::UpgradeRecord)?;

    // The old record is saved beside the snapshot, and its put-back journaled, before the
    // new one replaces it.
    let copy = op.work().join("old-record");
    save_record(&plan.old, &copy)?;
    op.add_undo(
        UndoAction::RestoreRecord {
            instance: name.clone(),
            copy,
        },
        Step::UpgradeRecord,
    )?;
    ctl.store()
        .put(&plan.new, true)
        .map_err(|source| OperationError::Registry {
            step: Step::UpgradeRecord,
            source,
        })?;
    clock.lap(Step::UpgradeRecord);
    // The old version's files: nothing to put back any more once the record is the new one.
    swap::remove_leftover(&leftover);
    ctl.check_cancel(Step::Finish)
}

/// The old record, in a one-record store of its own (the same files the registry writes).
fn save_record(old: &crate::registry::Instance, copy: &Utf8Path) -> Result<(), OperationError> {
    let store = FileStore::new(StateDir::at(copy));
    store
        .put(old, true)
        .map_err(|source| OperationError::Registry {
            step: Step::UpgradeRecord,
            source,
        })
}

/// [`UndoAction::RestoreRecord`]: the saved record put back into the registry.
pub(crate) fn restore_record(
    store: &dyn InstanceStore,
    instance: &str,
    copy: &Utf8Path,
) -> Result<(), String> {
    let saved = FileStore::new(StateDir::at(copy));
    let old = match saved.get(instance) {
        Ok(old) => old,
        // Journaled before it was written: a copy never made means the record never changed.
        Err(crate::registry::StoreError::NotFound { .. }) => return Ok(()),
        Err(e) => return Err(e.to_string()),
    };
    store.put(&old, true).map_err(|e| e.to_string())
}

/// Phase durations, measured from one lap to the next.
struct Clock {
    last: Instant,
    phases: Vec<PhaseTime>,
}

impl Clock {
    fn new() -> Self {
        Clock {
            last: Instant::now(),
            phases: Vec::new(),
        }
    }

    fn lap(&mut self, step: Step) {
        let now = Instant::now();
        self.phases.push(PhaseTime {
            phase: step.as_str(),
            duration_ms: millis(now - self.last),
        });
        self.last = now;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
