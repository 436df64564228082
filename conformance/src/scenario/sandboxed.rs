//! The instances the rounds make besides the one under test (the migration's copy, each
//! upgrade's old version): each installed into a sandbox of its own by the run's controller,
//! its scripts watched as its own account's, captured with that account as the owner, and
//! removed with its sandbox at the end of its round.

use camino::Utf8Path;

use aps_controller::lifecycle::generate_missing;
use aps_controller::lifecycle::given::GivenSettings;
use aps_controller::operation::install::InstallRequest;
use aps_controller::operation::remove::RemoveRequest;
use aps_controller::registry::{Instance, SettingValue, open_package};
use aps_controller::{Controller, OperationError};
use aps_meta::model::Setting;
use aps_meta::validate_setting_value;

use super::life::{Subject, random_seed};
use super::watch::{failure_of, watched};
use super::{Context, StepFailure};
use crate::capture::{Capture, CaptureOptions, Difference};
use crate::sandbox::Sandbox;
use crate::seed;

/// An instance of the run in a sandbox of its own.
pub(super) struct Sandboxed {
    pub sandbox: Sandbox,
    /// The instance's name: the sandbox's (unique on the host, valid as an instance name).
    pub name: String,
    /// `scripts/NAME` of its package's configuration script, for the findings of its runs.
    pub configure_script: String,
}

/// The package at `path` (a folder or `.app.zip`) as its metadata describes it.
pub(super) fn package(cx: &Context<'_>, path: &Utf8Path) -> Result<Subject, StepFailure> {
    open_package(&cx.controller.config().state, path)
        .map(|opened| Subject { package: opened })
        .map_err(|e| StepFailure::new(format!("cannot open the package: {e}")))
}

/// The settings an extra instance of `package` is installed with: what the run was given for
/// the settings the package declares, except those it declares `uniq` (an instance's own,
/// which a second instance on the same controller may not share), then a generated value for
/// every required setting still missing. A generated `uniq` value that an instance of the
/// controller already holds (a pattern's first match is the same for every seed) is made
/// distinct with random hex digits.
pub(super) fn settings_for(
    cx: &Context<'_>,
    package: &Subject,
    given: &GivenSettings,
) -> Result<GivenSettings, StepFailure> {
    let meta = package.meta();
    let declared: Vec<&Setting> = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .collect();
    let mut kept = GivenSettings::new();
    for (id, value) in given.iter() {
        if declared.iter().any(|s| s.id == id && s.uniq.is_none()) {
            kept.insert(id, value.clone());
        }
    }
    let seed = random_seed()?;
    let mut settings = generate_missing(meta, &kept, &seed).map_err(|e| StepFailure {
        section: Some("§3.7"),
        ..StepFailure::new(format!("cannot fill in the settings: {e}"))
    })?;
    let taken: Vec<SettingValue> = cx
        .controller
        .instances()
        .map_err(|e| StepFailure::new(format!("cannot list the run's instances: {e}")))?
        .into_iter()
        .flat_map(|i| i.settings.into_values())
        .collect();
    for setting in declared.iter().filter(|s| s.uniq.is_some()) {
        let Some(SettingValue::Single(value)) = settings.get(&setting.id) else {
            continue;
        };
        if !taken.contains(&SettingValue::Single(value.clone())) {
            continue;
        }
        let tag = hex::encode(&seed[..6]);
        let max = setting.max_length.map_or(usize::MAX, |m| m as usize);
        let distinct = [format!("{value}{tag}"), format!("aps{tag}"), tag.clone()]
            .into_iter()
            .map(|v| v.chars().take(max).collect::<String>())
            .find(|v| validate_setting_value(setting, v).is_ok())
            .ok_or_else(|| {
                StepFailure::new(format!(
                    "setting `{}` is unique among instances and no second value could be made \
                     for the copy; give one in the settings file",
                    setting.id
                ))
            })?;
        settings.insert(setting.id.as_str(), SettingValue::Single(distinct));
    }
    Ok(settings)
}

/// Makes a sandbox and installs `package` (found at `path`) into its web root as its
/// account, with `settings`, in the row `step`; the databases go to servers of the host's
/// configuration that suit the package.
pub(super) fn install(
    cx: &mut Context<'_>,
    step: &str,
    (path, package): (&Utf8Path, &Subject),
    settings: GivenSettings,
) -> Result<Sandboxed, StepFailure> {
    let sandbox = Sandbox::create(&cx.options.sandbox)?;
    let name = sandbox.name().to_owned();
    let mut request = InstallRequest::new(
        path,
        name.as_str(),
        format!("http://{name}.conformance.invalid/"),
        sandbox.web_root(),
    );
    request.user = Some(name.clone());
    request.settings = settings;
    request.timeout = cx.options.timeout;
    let extra = Sandboxed {
        sandbox,
        name,
        configure_script: package.configure_script_name(),
    };
    let script = extra.configure_script.clone();
    operate(cx, &extra, (step, &script), |c| c.install(&request))
        .map_err(|e| operation_failed("installing", &e, Some("§8.2")))?;
    Ok(extra)
}

/// The registered instance `name`.
pub(super) fn instance(controller: &Controller, name: &str) -> Result<Instance, StepFailure> {
    controller
        .store()
        .get(name)
        .map_err(|e| StepFailure::new(format!("cannot read the record of `{name}`: {e}")))
}

/// A capture of the instance `name`, whose files the account `uid` owns.
pub(super) fn capture(cx: &Context<'_>, name: &str, uid: u32) -> Result<Capture, StepFailure> {
    let instance = instance(&cx.controller, name)?;
    let options = CaptureOptions {
        account_uid: Some(uid),
        timeout: cx.data_timeout(),
    };
    Ok(Capture::of_instance(&instance, &options)?)
}

/// Seeds the extra instance of `package` as the main round seeds the instance under test: a
/// marker in each writable url-mapping's folder, the awkward tables in each database.
pub(super) fn seed(
    cx: &Context<'_>,
    package: &Subject,
    extra: &Sandboxed,
) -> Result<(), StepFailure> {
    let instance = instance(&cx.controller, &extra.name)?;
    let writable = super::data::writable_dirs(&instance, package)?;
    seed::seed(
        &writable,
        &instance.databases,
        Some(extra.sandbox.account()),
        cx.data_timeout(),
    )
    .map_err(|e| StepFailure::new(format!("seeding failed: {e}")))?;
    Ok(())
}

/// Ends an extra instance in the row `step`: removes it (its files, databases and users),
/// then its sandbox.
pub(super) fn finish(
    cx: &mut Context<'_>,
    step: &str,
    extra: Sandboxed,
) -> Result<(), StepFailure> {
    let mut request = RemoveRequest::new(extra.name.as_str());
    request.timeout = cx.options.timeout;
    let script = extra.configure_script.clone();
    operate(cx, &extra, (step, &script), |c| c.remove(&request))
        .map_err(|e| operation_failed("removing", &e, Some("§8.6")))?;
    extra.sandbox.finish()?;
    Ok(())
}

/// A compare's outcome: a pass when nothing differs, else a failure naming the differences.
pub(super) fn compared(
    differences: Vec<Difference>,
    why: &str,
    section: &'static str,
) -> Result<(), StepFailure> {
    if differences.is_empty() {
        return Ok(());
    }
    Err(StepFailure {
        differences,
        section: Some(section),
        ..StepFailure::new(why)
    })
}

/// A failed operation, as a row's failure: what was being done, then the controller's words
/// and the script's output.
pub(super) fn operation_failed(
    doing: &str,
    e: &OperationError,
    section: Option<&'static str>,
) -> StepFailure {
    let mut failure = failure_of(e, section);
    failure.why = format!("{doing} failed ({}): {}", e.kind().as_str(), failure.why);
    failure
}

/// Runs `op`, which runs `script` of the package as the account of `extra`'s sandbox in the
/// row `step`, watching it as [`Context::operate`] watches the instance under test's.
pub(super) fn operate<T>(
    cx: &mut Context<'_>,
    extra: &Sandboxed,
    (step, script): (&str, &str),
    op: impl FnOnce(&Controller) -> Result<T, OperationError>,
) -> Result<T, OperationError> {
    watched(
        &extra.sandbox,
        &cx.controller,
        &mut cx.report.findings,
        (step, script),
        op,
    )
}
