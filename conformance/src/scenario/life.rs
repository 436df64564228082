//! The lifecycle half of the main round: package check, install (settings given, else the
//! package's defaults, else generated), configure (one changeable setting changed), disable
//! and enable where the package declares `status-control`, and remove with its final backup,
//! each checked against the controller's record and the database servers.

use std::io::Read;

use aps_controller::database::provision;
use aps_controller::lifecycle::{GivenSettings, generate_missing};
use aps_controller::operation::BackupRequest;
use aps_controller::operation::configure::ConfigureRequest;
use aps_controller::operation::enable::EnableRequest;
use aps_controller::operation::install::InstallRequest;
use aps_controller::operation::remove::RemoveRequest;
use aps_controller::registry::{InstanceStatus, OpenedPackage, SettingValue, open_package};
use aps_meta::model::{AppMeta, Setting, SettingType};

use super::{Context, StepFailure, steps};
use crate::error::ConformanceError;
use crate::report::FindingKind;

/// Warnings of `package check` that mean the controller read the metadata as it guessed the
/// author meant it (aps-meta/DIAGNOSTICS.md).
const GUESSES: &[&str] = &[
    "unknown-aps-version",
    "missing-namespace",
    "invalid-value",
    "placeholder-value",
    "installed-size-not-numeric",
    "legacy-script-language",
    "unknown-setting-type",
    "match-unparsable",
    "default-value-invalid",
];

/// The package under test as its metadata describes it.
pub(super) struct Subject {
    /// The package as the controller opened it (a zip unpacked).
    pub package: OpenedPackage,
}

impl Subject {
    pub fn meta(&self) -> &AppMeta {
        &self.package.meta
    }

    /// `scripts/NAME` of the configuration script, or words saying there is none.
    pub fn configure_script_name(&self) -> String {
        match &self.package.meta.service.provision.configuration_script {
            Some(s) => format!("scripts/{}", s.name),
            None => "(no configuration script)".to_owned(),
        }
    }

    /// `scripts/NAME` of the backup-script, or words saying the controller works alone.
    pub fn backup_script_name(&self) -> String {
        match &self.package.meta.service.provision.backup_script {
            Some(s) => format!("scripts/{}", s.name),
            None => "(no backup-script: the controller's own backup)".to_owned(),
        }
    }

    /// Web-root-relative folders of the url-mappings the package declares writable.
    pub fn writable_folders(&self) -> Vec<String> {
        aps_controller::operation::install::writable_folders(&self.package)
    }
}

/// `package check`: its errors fail the row; its warnings of guessed metadata are findings
/// naming the element. Returns the package's metadata when it can be installed.
pub(super) fn package_check(cx: &mut Context<'_>) -> Option<Subject> {
    cx.step(steps::PACKAGE_CHECK, |cx| {
        let report = aps_meta::check_package(&cx.package, &aps_meta::Limits::default())
            .map_err(|e| StepFailure::new(e.to_string()))?;
        for d in &report.diagnostics {
            if !d.is_error() && GUESSES.contains(&d.code) {
                cx.find(
                    FindingKind::GuessedMetadata,
                    steps::PACKAGE_CHECK,
                    format!("{}: {}", d.code, d.message),
                    Some(d.location.to_string()),
                );
            }
        }
        let errors: Vec<_> = report.diagnostics.iter().filter(|d| d.is_error()).collect();
        if let Some(first) = errors.first() {
            let more = match errors.len() {
                1 => String::new(),
                n => format!(" (and {} more errors)", n - 1),
            };
            return Err(StepFailure {
                why: format!(
                    "{}: {}: {}{more}",
                    first.location, first.code, first.message
                ),
                section: Some("§3"),
                ..StepFailure::default()
            });
        }
        let opened = open_package(&cx.controller.config().state, &cx.package)
            .map_err(|e| StepFailure::new(e.to_string()))?;
        cx.report.version = Some(format!("{}-{}", opened.meta.version, opened.meta.release));
        Ok(Subject { package: opened })
    })
}

/// Installs the package into the sandbox's web root as the sandbox's account: the settings
/// given, the package's defaults, generated values for the rest; each database on a server of
/// the host's configuration that meets its requirement (the controller picks it and says why
/// none does).
pub(super) fn install(cx: &mut Context<'_>, subject: &Subject) -> bool {
    let name = cx.sandbox.name().to_owned();
    let installed = cx.step(steps::INSTALL, |cx| {
        let seed = random_seed()?;
        let settings =
            generate_missing(subject.meta(), &cx.options.settings, &seed).map_err(|e| {
                StepFailure {
                    why: e.to_string(),
                    section: Some("§3.7"),
                    ..StepFailure::default()
                }
            })?;
        let mut request = InstallRequest::new(
            cx.package.clone(),
            &name,
            format!("http://{name}.conformance.invalid/"),
            cx.sandbox.web_root(),
        );
        request.user = Some(name.clone());
        request.settings = settings;
        request.timeout = cx.options.timeout;
        let script = subject.configure_script_name();
        cx.operate(steps::INSTALL, &script, Some("§8.2"), |c| {
            c.install(&request)
        })?;
        Ok(())
    });
    if installed.is_some() {
        cx.instance = Some(name);
    }
    installed.is_some()
}

/// Changes one setting the package lets a person change and checks the record holds the new
/// value (and, for a `track-old-value` setting, that the script was given the old one).
pub(super) fn configure(cx: &mut Context<'_>, subject: &Subject) {
    let Ok(record) = cx.instance_record() else {
        cx.skip(steps::CONFIGURE, "the instance's record cannot be read");
        return;
    };
    let Some((setting, value)) = changeable(subject.meta(), &record.settings) else {
        cx.skip(
            steps::CONFIGURE,
            "the package declares no setting a configure may change (all are hidden, \
             installation-only, or have one possible value)",
        );
        return;
    };
    cx.step(steps::CONFIGURE, |cx| {
        let id = setting.id.to_string();
        let mut changes = GivenSettings::new();
        changes.insert(&id, SettingValue::Single(value.clone()));
        let mut request = ConfigureRequest::new(&record.name, changes);
        request.timeout = cx.options.timeout;
        let script = subject.configure_script_name();
        let report = cx.operate(steps::CONFIGURE, &script, Some("§8.3"), |c| {
            c.configure(&request)
        })?;
        let after = cx.instance_record()?;
        let recorded = after.settings.get(&id);
        if !matches!(recorded, Some(SettingValue::Single(v)) if *v == value) {
            return Err(StepFailure {
                why: format!(
                    "setting `{id}` was changed to {value:?}, but the record holds {recorded:?}"
                ),
                section: Some("§8.3"),
                ..StepFailure::default()
            });
        }
        if setting.track_old_value && !report.old_settings.contains_key(&id) {
            return Err(StepFailure {
                why: format!(
                    "setting `{id}` is `track-old-value`, but the script was not given \
                     OLDSETTINGS_{id}"
                ),
                section: Some("§5.2"),
                ..StepFailure::default()
            });
        }
        Ok(())
    });
}

/// A setting to change and its new value: a `track-old-value` one first (so that
/// `OLDSETTINGS_*` is exercised), then text-like ones, numbers, booleans, enums last. Never a
/// hidden, installation-only, secret or `uniq` one.
fn changeable<'m>(
    meta: &'m AppMeta,
    current: &std::collections::BTreeMap<String, SettingValue>,
) -> Option<(&'m Setting, String)> {
    let rank = |s: &Setting| -> u8 {
        let by_kind = match s.kind {
            SettingType::String | SettingType::Email | SettingType::DomainName => 1,
            SettingType::HostName | SettingType::Integer | SettingType::Float => 2,
            SettingType::Boolean => 3,
            _ => 4,
        };
        if s.track_old_value { 0 } else { by_kind }
    };
    let mut candidates: Vec<&Setting> = meta
        .service
        .all_settings()
        .into_iter()
        .filter(|s| {
            !s.hidden
                && !s.installation_only
                && !s.is_secret()
                && s.uniq.is_none()
                && s.value_of_setting.is_none()
                && !matches!(
                    s.kind,
                    SettingType::StaticText | SettingType::Hidden | SettingType::List { .. }
                )
        })
        .collect();
    candidates.sort_by_key(|s| rank(s));
    candidates.into_iter().find_map(|s| {
        let old = match current.get(s.id.as_str()) {
            Some(SettingValue::Single(v)) => Some(v.as_str()),
            _ => s.default_value.as_deref(),
        };
        new_value(s, old).map(|v| (s, v))
    })
}

/// A valid value of `s` other than `old`.
fn new_value(s: &Setting, old: Option<&str>) -> Option<String> {
    let valid = |v: &str| Some(v) != old && aps_meta::validate_setting_value(s, v).is_ok();
    match s.kind {
        SettingType::Enum => s
            .choices
            .iter()
            .map(|c| c.id.to_string())
            .find(|c| valid(c)),
        SettingType::Boolean => ["true", "false"]
            .into_iter()
            .find(|v| valid(v))
            .map(str::to_owned),
        _ => (0u8..8).find_map(|n| {
            let v = aps_meta::generate_setting_value(s, &[n.wrapping_add(1); 32]).ok()?;
            valid(&v).then_some(v)
        }),
    }
}

/// `configure disable`, then `configure enable`, where the package declares `status-control`;
/// each checked against the status the record holds afterwards.
pub(super) fn disable_enable(cx: &mut Context<'_>, subject: &Subject) {
    let controls = subject
        .meta()
        .service
        .provision
        .configuration_script
        .as_ref()
        .is_some_and(|s| s.status_control);
    if !controls {
        let why = "the configuration script declares no status-control";
        cx.skip(steps::DISABLE, why);
        cx.skip(steps::ENABLE, why);
        return;
    }
    let disabled = switch(cx, subject, steps::DISABLE, false);
    if disabled {
        switch(cx, subject, steps::ENABLE, true);
    } else {
        cx.skip(steps::ENABLE, "the disable failed");
    }
}

fn switch(cx: &mut Context<'_>, subject: &Subject, step: &str, enabled: bool) -> bool {
    cx.step(step, |cx| {
        let mut request = EnableRequest::new(cx.instance.clone().unwrap_or_default(), enabled);
        request.timeout = cx.options.timeout;
        let script = subject.configure_script_name();
        cx.operate(step, &script, Some("§8.4"), |c| c.set_enabled(&request))?;
        let want = if enabled {
            InstanceStatus::Enabled
        } else {
            InstanceStatus::Disabled
        };
        let status = cx.instance_record()?.status;
        if status != want {
            return Err(StepFailure {
                why: format!("the record holds the status {status:?} afterwards, not {want:?}"),
                section: Some("§8.4"),
                ..StepFailure::default()
            });
        }
        Ok(())
    })
    .is_some()
}

/// The final backup, then the removal; then checked: the final backup is there, the record,
/// the files the install made and every database and user it created are gone (asked of
/// each server with its admin login).
pub(super) fn remove(cx: &mut Context<'_>, subject: &Subject) {
    let removed = cx.step(steps::REMOVE, |cx| {
        let record = cx.instance_record()?;
        let final_backup = cx.work.join("final-backup.aps");
        let mut backup = BackupRequest::new(&record.name, &final_backup);
        backup.timeout = cx.options.timeout;
        cx.operate(
            steps::REMOVE,
            &subject.backup_script_name(),
            Some("§8.6"),
            |c| c.backup(&backup),
        )?;
        let mut request = RemoveRequest::new(&record.name);
        request.timeout = cx.options.timeout;
        let report = cx.operate(
            steps::REMOVE,
            &subject.configure_script_name(),
            Some("§8.6"),
            |c| c.remove(&request),
        )?;
        // What the controller kept as not the install's: in a sandbox only the scripts (or the
        // seed's marker, which a writable root mapping holds) can have made it.
        let mut left: Vec<String> = report
            .kept
            .iter()
            .filter(|name| name.as_str() != crate::seed::MARKER_NAME)
            .map(|name| format!("{name} (made by a script, not removed by it)"))
            .collect();
        if cx.controller.store().get(&record.name).is_ok() {
            left.push(format!("the record of {}", record.name));
        }
        let installed = record.installed.clone().unwrap_or_default();
        if let Some(root) = record.root_web_dir() {
            for name in &installed.top_level {
                if std::fs::symlink_metadata(root.join(name)).is_ok() {
                    left.push(format!("{}", root.join(name)));
                }
            }
        }
        for (id, db) in &installed.created_databases {
            let existence = cx
                .controller
                .config()
                .database_server(&db.server)
                .map_err(|e| e.to_string())
                .and_then(|server| provision::exists(server, db).map_err(|e| e.to_string()));
            match existence {
                Ok(e) if e.is_gone() => {}
                Ok(e) => {
                    if e.database {
                        left.push(format!("database `{}` ({id})", db.database));
                    }
                    if e.user {
                        left.push(format!("database user `{}` ({id})", db.login));
                    }
                }
                Err(why) => left.push(format!("database {id}: cannot ask its server: {why}")),
            }
        }
        // Whether it holds anything is the backup row's finding; here: that it is there.
        if !final_backup.is_file() {
            left.push(format!("(missing) the final backup {final_backup}"));
        }
        if !left.is_empty() {
            return Err(StepFailure {
                why: format!("still there after the removal: {}", left.join(", ")),
                section: Some("§8.6"),
                ..StepFailure::default()
            });
        }
        Ok(())
    });
    if removed.is_some() {
        cx.instance = None;
    }
}

/// 32 random bytes for the generated settings: fresh passwords on every run.
pub(super) fn random_seed() -> Result<[u8; 32], ConformanceError> {
    let mut seed = [0u8; 32];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut seed))
        .map_err(ConformanceError::io("read", "/dev/urandom"))?;
    Ok(seed)
}
