//! The data half of the main round: seed (and the capture of what a backup must keep), backup,
//! damage, restore, and the compare after restore, which the controller makes itself from
//! the two captures: a package does not report its own success.

use std::collections::BTreeMap;
use std::time::Duration;

use camino::Utf8PathBuf;

use aps_controller::operation::{BackupRequest, RestoreRequest};
use aps_controller::registry::Instance;

use super::life::Subject;
use super::{Context, StepFailure, steps};
use crate::capture::{self, Capture, CaptureOptions};
use crate::report::FindingKind;
use crate::seed;

/// Time the seed's, the damage's and the capture's SQL may take when the run names none.
const DATA_TIMEOUT: Duration = Duration::from_secs(300);

impl Context<'_> {
    /// The record of the instance under test, as the run's controller keeps it now.
    pub fn instance_record(&self) -> Result<Instance, StepFailure> {
        let name = self
            .instance
            .as_deref()
            .ok_or_else(|| StepFailure::new("no instance is installed"))?;
        self.controller
            .store()
            .get(name)
            .map_err(|e| StepFailure::new(format!("the record of {name}: {e}")))
    }

    /// How long the run's own SQL (seed, damage, capture) may take.
    pub fn data_timeout(&self) -> Duration {
        self.options.timeout.unwrap_or(DATA_TIMEOUT)
    }

    /// How captures of the instance under test are taken: its files owned by the sandbox
    /// account recorded as the account's.
    pub fn capture_options(&self) -> CaptureOptions {
        CaptureOptions {
            account_uid: Some(self.sandbox.account().uid),
            timeout: self.data_timeout(),
        }
    }
}

/// The folders of `subject`'s writable url-mappings in `instance` (url path → folder): where
/// the seed puts its markers.
pub(super) fn writable_dirs(
    instance: &Instance,
    subject: &Subject,
) -> Result<BTreeMap<String, Utf8PathBuf>, StepFailure> {
    let root = instance
        .root_web_dir()
        .ok_or_else(|| StepFailure::new("the instance has no web folder"))?;
    Ok(subject
        .writable_folders()
        .into_iter()
        .map(|rel| (format!("/{rel}"), root.join(&rel)))
        .collect())
}

/// Seeds the instance (a marker in each writable url-mapping's folder, the awkward tables in
/// each database) and captures it: the state a backup must bring back.
pub(super) fn seed(cx: &mut Context<'_>, subject: &Subject) -> Option<Capture> {
    cx.step(steps::SEED, |cx| {
        let instance = cx.instance_record()?;
        let writable = writable_dirs(&instance, subject)?;
        let account = cx.sandbox.account().clone();
        seed::seed(
            &writable,
            &instance.databases,
            Some(&account),
            cx.data_timeout(),
        )?;
        Ok(Capture::of_instance(&instance, &cx.capture_options())?)
    })
}

/// Backs the instance up into the run's work folder; returns the file. A backup-script that
/// left `BACKUP_FILE` empty is a finding.
pub(super) fn backup(cx: &mut Context<'_>, subject: &Subject) -> Option<Utf8PathBuf> {
    let file = cx.work.join("backup.aps");
    cx.step(steps::BACKUP, |cx| {
        let mut request = BackupRequest::new(cx.instance.clone().unwrap_or_default(), &file);
        request.timeout = cx.options.timeout;
        let script = subject.backup_script_name();
        cx.operate(steps::BACKUP, &script, Some("§8.8"), |c| {
            c.backup(&request)
        })?;
        if let Some(why) = ignored_backup_file(subject, &file) {
            cx.find(
                FindingKind::IgnoresBackupFile,
                steps::BACKUP,
                why,
                Some(script),
            );
        }
        Ok(file.clone())
    })
}

/// Why the backup at `file` shows that the backup-script did not fill `BACKUP_FILE`, if it
/// does: a `sufficient` script's file (the whole backup) is empty, or the archive's
/// `script-backup` part is missing or empty.
fn ignored_backup_file(subject: &Subject, file: &Utf8PathBuf) -> Option<String> {
    let script = subject.meta().service.provision.backup_script.as_ref()?;
    if script.sufficient {
        let size = std::fs::metadata(file).map(|m| m.len()).unwrap_or(0);
        return (size == 0).then(|| {
            "the backup-script is `sufficient` but left BACKUP_FILE empty: the backup holds nothing"
                .to_owned()
        });
    }
    let manifest = aps_controller::archive::verify(file, None).ok()?;
    match manifest.part("script-backup") {
        None => Some("the archive holds no part from the backup-script".to_owned()),
        Some(part) if part.size == 0 => Some(
            "the backup-script exited 0 but left BACKUP_FILE empty (§5.6: it writes its backup there)"
                .to_owned(),
        ),
        Some(_) => None,
    }
}

/// Damages the instance (`seed::damage`) after its capture `before`.
pub(super) fn damage(cx: &mut Context<'_>, before: &Capture) -> bool {
    cx.step(steps::DAMAGE, |cx| {
        let instance = cx.instance_record()?;
        let account = cx.sandbox.account().clone();
        seed::damage(
            before,
            &instance.databases,
            Some(&account),
            cx.data_timeout(),
        )?;
        Ok(())
    })
    .is_some()
}

/// Restores the instance from `file`.
pub(super) fn restore(cx: &mut Context<'_>, subject: &Subject, file: &Utf8PathBuf) -> bool {
    cx.step(steps::RESTORE, |cx| {
        let mut request = RestoreRequest::new(cx.instance.clone().unwrap_or_default(), file);
        request.timeout = cx.options.timeout;
        let script = subject.backup_script_name();
        cx.operate(steps::RESTORE, &script, Some("§8.9"), |c| {
            c.restore(&request)
        })?;
        Ok(())
    })
    .is_some()
}

/// Captures the restored instance and compares it with `before`: equal, or the row names
/// what differs. When the package's own backup-script took part and both its runs exited 0,
/// a difference is also a finding: the script said it succeeded when it had not.
pub(super) fn compare_after_restore(cx: &mut Context<'_>, subject: &Subject, before: &Capture) {
    let mut differed = false;
    cx.step(steps::COMPARE_RESTORE, |cx| {
        let instance = cx.instance_record()?;
        let after = Capture::of_instance(&instance, &cx.capture_options())?;
        let differences = capture::diff(before, &after);
        if differences.is_empty() {
            return Ok(());
        }
        differed = true;
        Err(StepFailure {
            why: String::new(),
            section: Some("§8.9"),
            differences,
            ..StepFailure::default()
        })
    });
    if differed && let Some(script) = &subject.meta().service.provision.backup_script {
        cx.find(
            FindingKind::ExitZeroOnFailure,
            steps::COMPARE_RESTORE,
            "the backup and the restore exited 0, but the restored instance differs from the \
             one backed up",
            Some(format!("scripts/{}", script.name)),
        );
    }
}
