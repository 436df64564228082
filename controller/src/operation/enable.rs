//! Enable and disable: a registered instance switched on or off by its package's
//! configuration script (`configure enable|disable`, §8.4), only where the package declares
//! `status-control`; the new status recorded only once the script succeeded.
//!
//! The script gets the settings (minus `installation-only` ones), the URL and web folder
//! variables and the databases, as for every operation after install. The status is kept in
//! the record ([`InstanceStatus`]) and shown by `instance list`. A disabled instance is still
//! backed up: its data is as much the tenant's as an enabled one's. Asking for the status the
//! record already holds runs the script again (the package makes it so, whatever a person
//! changed by hand); the report says what the record held before.
//!
//! Journaled as configure is ([`crate::operation::configure`]): a killed controller's script
//! is ended by the next start and the record keeps the old status.

use std::time::{Duration, Instant};

use serde::Serialize;

use super::configure::run;
use crate::controller::Controller;
use crate::environment::ScriptOperation;
use crate::error::{ConfigureRefusal, OperationError, Step};
use crate::journal::OperationKind;
use crate::registry::InstanceStatus;

/// Switch an instance on or off.
#[derive(Debug, Clone)]
pub struct EnableRequest {
    pub instance: String,
    /// `true`: `configure enable`; `false`: `configure disable`.
    pub enabled: bool,
    /// Timeout of the script; `None` means the configured default.
    pub timeout: Option<Duration>,
}

impl EnableRequest {
    pub fn new(instance: impl Into<String>, enabled: bool) -> Self {
        EnableRequest {
            instance: instance.into(),
            enabled,
            timeout: None,
        }
    }
}

/// The outcome of an enable or a disable.
#[derive(Debug, Clone, Serialize)]
pub struct EnableReport {
    pub instance: String,
    /// The status now recorded.
    pub status: InstanceStatus,
    /// The status the record held before.
    pub previous: InstanceStatus,
    /// The tail of what the script printed on stdout, trimmed.
    pub configure_output: String,
    pub duration_ms: u64,
}

/// [`Controller::set_enabled`].
pub fn set_enabled(
    ctl: &Controller,
    request: &EnableRequest,
) -> Result<EnableReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let (word, status, kind, operation) = match request.enabled {
        true => (
            "enable",
            InstanceStatus::Enabled,
            OperationKind::Enable,
            ScriptOperation::Enable,
        ),
        false => (
            "disable",
            InstanceStatus::Disabled,
            OperationKind::Disable,
            ScriptOperation::Disable,
        ),
    };
    let target = run::prepare(ctl, &request.instance, word)?;
    let declared = target
        .script
        .as_ref()
        .is_some_and(|(script, _)| script.status_control);
    if !declared {
        return Err(OperationError::ConfigureRefused {
            step: Step::StatusControl,
            operation: word,
            instance: target.instance.name.clone(),
            refusal: ConfigureRefusal::NoStatusControl {
                application: target.package.meta.name.clone(),
                package: target.instance.package.clone(),
            },
        });
    }
    ctl.check_cancel(Step::StatusScript)?;
    let previous = target.instance.status;
    let mut instance = target.instance.clone();
    instance.status = status;

    let op = ctl.begin_operation(kind, &instance.name, Step::StatusScript, |_| Vec::new())?;
    let script = (operation, word, Step::StatusScript);
    let result = target
        .run_script(ctl, &op, &target.instance, script, request.timeout)
        .and_then(|output| {
            ctl.check_cancel(Step::StatusRecord)?;
            run::record(ctl, &instance, Step::StatusRecord)?;
            Ok(output)
        });
    let output = match result {
        Ok(output) => output,
        Err(error) => return Err(op.fail(error.interrupted_by(ctl.cancel().signal()))),
    };
    op.succeed();
    Ok(EnableReport {
        instance: instance.name.clone(),
        status,
        previous,
        configure_output: run::stdout_excerpt(output.as_ref()),
        duration_ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
    })
}
