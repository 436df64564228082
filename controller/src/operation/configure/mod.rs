//! Configure: a registered instance's settings changed through its package's configuration
//! script (§8.3), the new settings recorded only once the script succeeded.
//!
//! 1. checks, nothing run ([`run::prepare`]): the instance, its lock, account, package, the
//!    configuration script and its interpreter; then the changes, resolved against the package
//!    as at install ([`crate::lifecycle::resolve_configure`]: unknown ids, `installation-only`,
//!    types, `uniq`), every problem in one refusal;
//! 2. `configure configure` as the instance's account with the new settings and, for changed
//!    `track-old-value` settings, `OLDSETTINGS_<id>`; with `structured-output` the errors it
//!    reports fail it and the settings it returns are kept;
//! 3. the record, last. A failure before it leaves the old record; what the script itself
//!    changed before failing is the package's (the standard has no undo for configure).
//!
//! The run is journaled so that a killed controller's script is ended and its run folder
//! removed by the next start; there is nothing else to undo, since the record is written last.
//! [`enable`](crate::operation::enable) shares [`run`].

pub(crate) mod run;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde::Serialize;

use crate::controller::Controller;
use crate::environment::ScriptOperation;
use crate::error::{ConfigureRefusal, OperationError, Step};
use crate::journal::OperationKind;
use crate::lifecycle::{GivenSettings, resolve_configure};
use crate::registry::SettingValue;

/// The changes to make to an instance's settings.
#[derive(Debug, Clone)]
pub struct ConfigureRequest {
    pub instance: String,
    /// The values to change; every other setting keeps its recorded value.
    pub settings: GivenSettings,
    /// Timeout of the script; `None` means the configured default.
    pub timeout: Option<Duration>,
}

impl ConfigureRequest {
    pub fn new(instance: impl Into<String>, settings: GivenSettings) -> Self {
        ConfigureRequest {
            instance: instance.into(),
            settings,
            timeout: None,
        }
    }
}

/// The outcome of a configure.
#[derive(Debug, Clone, Serialize)]
pub struct ConfigureReport {
    pub instance: String,
    /// The ids whose value the request changed, sorted.
    pub changed: Vec<String>,
    /// The previous values of the changed `track-old-value` settings, which the script got
    /// as `OLDSETTINGS_<id>` (password settings show `***`).
    pub old_settings: BTreeMap<String, SettingValue>,
    /// Every setting as now recorded (password settings show `***`).
    pub settings: BTreeMap<String, SettingValue>,
    /// The values the script returned in its configure-output `<settings>`, stored in the
    /// record (password settings show `***`).
    pub computed_settings: BTreeMap<String, SettingValue>,
    /// Whether `configure configure` ran (a package without a configuration script has
    /// none: its settings are only recorded).
    pub script_ran: bool,
    /// The tail of what the script printed on stdout, trimmed.
    pub configure_output: String,
    pub duration_ms: u64,
}

/// [`Controller::configure`].
pub fn configure(
    ctl: &Controller,
    request: &ConfigureRequest,
) -> Result<ConfigureReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let target = run::prepare(ctl, &request.instance, "configure")?;
    let others = target.others(ctl)?;
    let configured = resolve_configure(
        &target.package.meta,
        &target.instance,
        &request.settings,
        &others,
    )
    .map_err(|refused| OperationError::ConfigureRefused {
        step: Step::ConfigureSettings,
        operation: "configure",
        instance: target.instance.name.clone(),
        refusal: ConfigureRefusal::Settings {
            problems: refused.problems.iter().map(ToString::to_string).collect(),
        },
    })?;
    let mut instance = target.instance.clone();
    instance.settings = configured.settings.values;
    instance.secret_settings = configured.settings.secret;
    let old_settings = run::masked(&configured.old_values, &target.instance.secret_settings);
    ctl.check_cancel(Step::ConfigureScript)?;

    let op = ctl.begin_operation(
        OperationKind::Configure,
        &instance.name,
        Step::ConfigureScript,
        |_| Vec::new(),
    )?;
    let script = (
        ScriptOperation::Configure {
            old_settings: configured.old_values,
        },
        "configure",
        Step::ConfigureScript,
    );
    let result = target
        .run_script(ctl, &op, &instance, script, request.timeout)
        .and_then(|output| {
            let returned = match &output {
                Some(output) => target.returned_settings(output, Step::ConfigureScript)?,
                None => run::Returned::default(),
            };
            instance.settings.extend(returned.values.clone());
            instance.secret_settings.extend(returned.secret);
            ctl.check_cancel(Step::ConfigureRecord)?;
            run::record(ctl, &instance, Step::ConfigureRecord)?;
            Ok((output, returned.values))
        });
    let (output, computed) = match result {
        Ok(done) => done,
        Err(error) => return Err(op.fail(error.interrupted_by(ctl.cancel().signal()))),
    };
    op.succeed();
    Ok(ConfigureReport {
        instance: instance.name.clone(),
        changed: configured.changed.into_iter().collect(),
        old_settings,
        settings: run::masked(&instance.settings, &instance.secret_settings),
        computed_settings: run::masked(&computed, &instance.secret_settings),
        script_ran: output.is_some(),
        configure_output: run::stdout_excerpt(output.as_ref()),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
