//! Verify an installed instance with its package's verification-script — what a restore drill
//! runs after restoring a backup into a staging instance.
//!
//! The standard (1.2, 5.3.3) declares `verification-script` with a `script-language` and says it
//! checks an instance's settings; it is silent on the argument and on running it outside an
//! installation or reconfiguration. Our decisions:
//! - Command line `INTERPRETER SCRIPT configure`, from the package's `scripts/` folder: the
//!   instance exists and keeps its settings, which is a reconfiguration in which nothing
//!   changes, so the script checks the same thing it would check before a `configure`.
//! - Environment: what the configuration script gets for `configure`
//!   ([`ScriptOperation::Verify`]): current settings without `installation-only` ones, no
//!   `OLDSETTINGS_*`, URL, web folders and databases, `PHP_VERSION`; nothing else.
//! - Exit 0 passes, anything else fails (as for every script, docs/scripts.md); with
//!   `structured-output` the errors it reports fail it too.
//! - The instance is locked for the run (a backup or restore of it meanwhile would change what
//!   is being checked) and the run is journaled, so a killed controller still gets the script's
//!   private HOME removed by the next start.
//! - A package without a verification-script is not an error: the caller decides what else to
//!   check (the panel compares the backup manifest's counts).

use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::controller::Controller;
use crate::environment::{ScriptOperation, build_environment_with};
use crate::error::{OperationError, Step};
use crate::journal::OperationKind;
use crate::operation::script_run::{self, ScriptRun};

/// The argument the verification-script gets (see the module doc).
pub const VERIFY_ARGUMENT: &str = "configure";

/// A verification-script that exited 0.
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    pub instance: String,
    /// The script that ran, inside the package's `scripts/` folder.
    pub script: Utf8PathBuf,
    /// Its argument ([`VERIFY_ARGUMENT`]).
    pub argument: &'static str,
    /// The tail of what it printed on stdout, trimmed: a panel shows it to the person who asked
    /// (POA, too, shows a verification script's output only when it exits 0).
    pub stdout: String,
    pub duration_ms: u64,
}

/// Runs the verification-script of `instance`'s package against it. `Ok(None)`: the package
/// declares no verification-script. A script that fails is an
/// [`OperationError::Script`] (or `ScriptReported`) at [`Step::RunVerificationScript`], with
/// its stderr tail.
pub fn verify_instance(
    ctl: &Controller,
    instance: &str,
    timeout: Option<Duration>,
) -> Result<Option<VerifyReport>, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let instance = ctl.find_instance(instance)?;
    let account = ctl.instance_account(&instance)?;
    let _lock = ctl.lock_instance(&instance.name, "verify")?;
    let package = ctl.open_package(&instance)?;
    let Some(script) = script_run::find_verification_script(&instance, &package)? else {
        return Ok(None);
    };
    // Refused before anything runs when no interpreter can run the script.
    let interpreter = script_run::resolve_interpreter(ctl, &script)?;
    let env = build_environment_with(
        &instance,
        &package.meta,
        ScriptOperation::Verify,
        &ctl.config().host,
    )
    .map_err(|source| OperationError::Environment {
        step: Step::BuildEnvironment,
        source,
    })?;

    // The runner makes the script's private HOME inside the work folder.
    let operation = ctl.begin_operation(
        OperationKind::Verify,
        &instance.name,
        Step::RunVerificationScript,
        |_| Vec::new(),
    )?;
    let account = account.filter(|a| !a.is_current());
    let tenant = match &account {
        Some(a) => {
            let scripts = package.root.join("scripts");
            match super::tenant::TenantDir::new(a, &scripts, super::tenant::HandOver::None) {
                Ok(t) => Some(t),
                Err(e) => {
                    let error = OperationError::io(
                        Step::RunVerificationScript,
                        "cannot prepare the run folder of the instance's account for the scripts in",
                        scripts,
                    )(e);
                    return Err(operation.fail(error));
                }
            }
        }
        None => None,
    };
    let run = ScriptRun {
        argument: VERIFY_ARGUMENT,
        timeout,
        work: operation.work(),
        step: Step::RunVerificationScript,
        account: account.as_ref(),
        tenant: tenant.as_ref(),
        instance: &instance.name,
    };
    let result = script_run::run_package_script(ctl, &package, (&script, &interpreter), &env, &run);
    match result {
        Ok(output) => {
            operation.succeed();
            Ok(Some(VerifyReport {
                instance: instance.name.clone(),
                script: package.root.join("scripts").join(&script.name),
                argument: VERIFY_ARGUMENT,
                stdout: output.stdout_lossy().trim().to_owned(),
                duration_ms: started.elapsed().as_millis() as u64,
            }))
        }
        Err(error) => Err(operation.fail(error)),
    }
}
