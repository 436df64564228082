//! The upgrade round: an older package of the same application installed in a sandbox of its
//! own, seeded, upgraded to the package under test, and its data compared after.
//!
//! Four rows per old package, `upgrade from VERSION-RELEASE: install | upgrade | compare |
//! remove`. An old package that is another application, or not older, fails its install row
//! before anything is installed. The compare looks only at what the seed put there (the
//! markers, the seed tables and view): the package's own files and tables are the upgrade's
//! to change.

use std::cmp::Ordering;

use camino::Utf8Path;

use aps_controller::lifecycle::given::GivenSettings;
use aps_controller::lifecycle::is_same_application;
use aps_controller::operation::upgrade::UpgradeRequest;
use aps_meta::model::AppMeta;
use aps_meta::version_match::compare_versions;

use super::migrate::{is_seeded, remove_row};
use super::sandboxed::{self, Sandboxed};
use super::steps::{self, UpgradePhase};
use super::{Context, StepFailure};
use crate::capture::{Capture, diff};
use crate::seed;

pub(super) fn upgrade_round(cx: &mut Context<'_>, old_package: &Utf8Path) {
    let old_meta = sandboxed::package_meta(cx, old_package);
    let label = match &old_meta {
        Ok(meta) => format!("{}-{}", meta.version, meta.release),
        Err(_) => old_package
            .file_name()
            .unwrap_or(old_package.as_str())
            .to_owned(),
    };
    let row = |phase| steps::upgrade_phase(&label, phase);
    let mut extra: Option<Sandboxed> = None;
    let installed = cx.step(&row(UpgradePhase::Install), |cx| {
        let old = old_meta?;
        let new = sandboxed::package_meta(cx, &cx.package)?;
        check_older(old_package, &old, &new)?;
        let settings = sandboxed::settings_for(&old, &cx.options.settings)?;
        let instance = extra.insert(sandboxed::install(cx, old_package, settings)?);
        let before = seeded_capture(cx, &old, instance)?;
        Ok((old, new, before))
    });
    let Some((old, new, before)) = installed else {
        let why = "the old version could not be installed";
        cx.skip(&row(UpgradePhase::Upgrade), why);
        cx.skip(&row(UpgradePhase::Compare), why);
        finish(cx, &row(UpgradePhase::Remove), extra);
        return;
    };
    let name = extra.as_ref().map(|e| e.name.clone()).unwrap_or_default();
    let upgraded = cx.step(&row(UpgradePhase::Upgrade), |cx| {
        let mut request = UpgradeRequest::new(name.as_str(), cx.package.clone());
        request.settings = new_settings(&old, &new, &cx.options.settings)?;
        request.timeout = cx.options.timeout;
        cx.controller
            .upgrade(&request)
            .map_err(|e| sandboxed::operation_failed("upgrading", &e))
    });
    if upgraded.is_some() {
        let uid = extra
            .as_ref()
            .map(|e| e.sandbox.account().uid)
            .unwrap_or_default();
        cx.step(&row(UpgradePhase::Compare), |cx| {
            let after = sandboxed::capture(cx, &name, uid)?;
            let differences: Vec<_> = diff(&before, &after)
                .into_iter()
                .filter(is_seeded)
                .collect();
            if differences.is_empty() {
                return Ok(());
            }
            Err(StepFailure {
                differences,
                section: Some("§8.5"),
                ..StepFailure::new("the upgrade did not keep the data seeded before it")
            })
        });
    } else {
        cx.skip(&row(UpgradePhase::Compare), "the upgrade failed");
    }
    finish(cx, &row(UpgradePhase::Remove), extra);
}

fn finish(cx: &mut Context<'_>, step: &str, extra: Option<Sandboxed>) {
    match extra {
        Some(extra) => remove_row(cx, step, extra),
        None => cx.skip(step, "nothing was installed"),
    }
}

/// Refuses an old package that is not an older version of the package under test.
fn check_older(path: &Utf8Path, old: &AppMeta, new: &AppMeta) -> Result<(), StepFailure> {
    let app = |m: &AppMeta| match &m.id {
        Some(id) => format!("{} ({id})", m.name),
        None => m.name.clone(),
    };
    if !is_same_application(old, new) {
        return Err(StepFailure {
            section: Some("§3.3"),
            ..StepFailure::new(format!(
                "{path} is the application {}, not {}, the package under test: an upgrade is \
                 only from an older version of the same application",
                app(old),
                app(new)
            ))
        });
    }
    let order = compare_versions(&old.version, &new.version)
        .then_with(|| compare_versions(&old.release, &new.release));
    if order != Ordering::Less {
        return Err(StepFailure {
            section: Some("§3.3"),
            ..StepFailure::new(format!(
                "{path} is version {}-{}, not older than the package under test's {}-{}",
                old.version, old.release, new.version, new.release
            ))
        });
    }
    Ok(())
}

/// Seeds the old instance (a marker in each writable folder, the seed tables in each
/// database) and captures it.
fn seeded_capture(
    cx: &Context<'_>,
    old: &AppMeta,
    extra: &Sandboxed,
) -> Result<Capture, StepFailure> {
    let instance = sandboxed::instance(&cx.controller, &extra.name)?;
    let timeout = cx.options.timeout.unwrap_or(sandboxed::CAPTURE_TIMEOUT);
    seed::seed(
        &sandboxed::writable_dirs(old, &instance),
        &instance.databases,
        Some(extra.sandbox.account()),
        timeout,
    )
    .map_err(|e| StepFailure::new(format!("seeding the old version failed: {e}")))?;
    sandboxed::capture(cx, &extra.name, extra.sandbox.account().uid)
}

/// Values for the settings the new version declares and the old one did not: the run's given
/// values, else generated ones. The instance keeps its values of the others.
fn new_settings(
    old: &AppMeta,
    new: &AppMeta,
    given: &GivenSettings,
) -> Result<GivenSettings, StepFailure> {
    let old_ids: Vec<String> = old
        .service
        .all_settings()
        .into_iter()
        .chain(old.all_global_settings())
        .map(|s| s.id.to_string())
        .collect();
    let filled = sandboxed::settings_for(new, given)?;
    let mut out = GivenSettings::new();
    for (id, value) in filled.iter() {
        if !old_ids.iter().any(|o| o == id) {
            out.insert(id, value.clone());
        }
    }
    Ok(out)
}
