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

use super::life::Subject;
use super::migrate::{is_seeded, remove_row};
use super::sandboxed::{self, Sandboxed};
use super::steps::{self, UpgradePhase};
use super::{Context, StepFailure};
use crate::capture::diff;

pub(super) fn upgrade_round(cx: &mut Context<'_>, old_package: &Utf8Path) {
    let old = sandboxed::package(cx, old_package);
    let label = match &old {
        Ok(old) => format!("{}-{}", old.meta().version, old.meta().release),
        Err(_) => old_package
            .file_name()
            .unwrap_or(old_package.as_str())
            .to_owned(),
    };
    let row = |phase| steps::upgrade_phase(&label, phase);
    let mut extra: Option<Sandboxed> = None;
    let install_row = row(UpgradePhase::Install);
    let installed = cx.step(&install_row, |cx| {
        let old = old?;
        let path = cx.package.clone();
        let new = sandboxed::package(cx, &path)?;
        check_older(old_package, old.meta(), new.meta())?;
        let settings = sandboxed::settings_for(cx, &old, &cx.options.settings)?;
        let instance = extra.insert(sandboxed::install(
            cx,
            &install_row,
            (old_package, &old),
            settings,
        )?);
        sandboxed::seed(cx, &old, instance)?;
        let before = sandboxed::capture(cx, &instance.name, instance.sandbox.account().uid)?;
        Ok((old, new, before))
    });
    // `extra` is there whenever the install row passed; the second test only names it.
    let (Some((old, new, before)), Some(instance)) = (installed, extra.as_ref()) else {
        let why = "the old version could not be installed and seeded";
        cx.skip(&row(UpgradePhase::Upgrade), why);
        cx.skip(&row(UpgradePhase::Compare), why);
        finish(cx, &row(UpgradePhase::Remove), extra);
        return;
    };
    let upgrade_row = row(UpgradePhase::Upgrade);
    let upgraded = cx.step(&upgrade_row, |cx| {
        let mut request = UpgradeRequest::new(instance.name.as_str(), cx.package.clone());
        request.settings = new_settings(cx, &old, &new, &cx.options.settings)?;
        request.timeout = cx.options.timeout;
        let script = new.configure_script_name();
        sandboxed::operate(cx, instance, (&upgrade_row, &script), |c| {
            c.upgrade(&request)
        })
        .map_err(|e| sandboxed::operation_failed("upgrading", &e, Some("§8.5")))
    });
    if upgraded.is_some() {
        cx.step(&row(UpgradePhase::Compare), |cx| {
            let after = sandboxed::capture(cx, &instance.name, instance.sandbox.account().uid)?;
            let differences = diff(&before, &after).into_iter().filter(is_seeded);
            sandboxed::compared(
                differences.collect(),
                "the upgrade did not keep the data seeded before it",
                "§8.5",
            )
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

/// Values for the settings the new version declares and the old one did not: the run's given
/// values, else generated ones. The instance keeps its values of the others.
fn new_settings(
    cx: &Context<'_>,
    old: &Subject,
    new: &Subject,
    given: &GivenSettings,
) -> Result<GivenSettings, StepFailure> {
    let old = old.meta();
    let old_ids: Vec<String> = old
        .service
        .all_settings()
        .into_iter()
        .chain(old.all_global_settings())
        .map(|s| s.id.to_string())
        .collect();
    let filled = sandboxed::settings_for(cx, new, given)?;
    let mut out = GivenSettings::new();
    for (id, value) in filled.iter() {
        if !old_ids.iter().any(|o| o == id) {
            out.insert(id, value.clone());
        }
    }
    Ok(out)
}
