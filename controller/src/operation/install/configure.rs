//! `configure install` as the instance's account with the standard's environment, its
//! configure-output read, then the verification-script.

use std::collections::BTreeMap;
use std::time::Duration;

use super::plan::Plan;
use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::operation::configure::run::{excerpt, returned_settings};
use crate::operation::script_run::{LifecycleRun, run_lifecycle_script};
use crate::registry::SettingValue;

/// What the scripts said.
pub(super) struct Ran {
    /// The tail of `configure install`'s stdout, trimmed.
    pub(super) stdout: String,
    /// The settings its configure-output returned (stored in the record).
    pub(super) computed: BTreeMap<String, SettingValue>,
    pub(super) verified: bool,
}

/// Runs `configure install`, stores the settings it returned, then runs the
/// verification-script when the package declares one.
pub(super) fn run(
    ctl: &Controller,
    plan: &mut Plan,
    op: &mut Operation,
    account: Option<&Account>,
    timeout: Option<Duration>,
) -> Result<Ran, OperationError> {
    let account = account.filter(|a| !a.is_current());
    let mut computed = BTreeMap::new();
    let mut stdout = String::new();
    if let Some((script, interpreter)) = plan.configure.clone() {
        let output = run_script(
            ctl,
            plan,
            op,
            account,
            (&script, &interpreter),
            ScriptOperation::Install,
            "install",
            Step::RunConfigure,
            timeout,
        )?;
        if script.structured_output && !output.stdout_tail.is_empty() {
            computed = store_computed(plan, &script, &output.stdout_tail)?;
        }
        stdout = excerpt(&output.stdout_lossy());
    }
    let mut verified = false;
    if let Some((script, interpreter)) = plan.verification.clone() {
        ctl.check_cancel(Step::RunVerificationScript)?;
        run_script(
            ctl,
            plan,
            op,
            account,
            (&script, &interpreter),
            ScriptOperation::Verify,
            crate::operation::verify::VERIFY_ARGUMENT,
            Step::RunVerificationScript,
            timeout,
        )?;
        verified = true;
    }
    Ok(Ran {
        stdout,
        computed,
        verified,
    })
}

/// The settings a structured configure-output returned, stored into the instance to be (only
/// those the package declares: any other would never reach a script).
fn store_computed(
    plan: &mut Plan,
    script: &aps_meta::model::Script,
    stdout: &[u8],
) -> Result<BTreeMap<String, SettingValue>, OperationError> {
    // Errors were already turned into the install's failure by the runner.
    let returned = returned_settings(&plan.package.meta, stdout).map_err(|source| {
        OperationError::ScriptOutput {
            step: Step::RunConfigure,
            script: plan.package.root.join("scripts").join(&script.name),
            source,
        }
    })?;
    plan.instance.secret_settings.extend(returned.secret);
    plan.instance.settings.extend(returned.values.clone());
    Ok(returned.values)
}

/// One package script against the instance to be, as its account, from a fresh run folder.
#[allow(clippy::too_many_arguments)]
fn run_script(
    ctl: &Controller,
    plan: &Plan,
    op: &Operation,
    account: Option<&Account>,
    script: (
        &aps_meta::model::Script,
        &crate::interpreter::ResolvedInterpreter,
    ),
    operation: ScriptOperation,
    argument: &str,
    step: Step,
    timeout: Option<Duration>,
) -> Result<crate::runner::ProcessOutput, OperationError> {
    let what = LifecycleRun {
        operation,
        argument,
        more: &[],
        step,
        timeout,
    };
    run_lifecycle_script(
        ctl,
        op,
        &plan.package,
        &plan.instance,
        account,
        script,
        what,
    )
}
