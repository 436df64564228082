//! `configure install` as the instance's account with the standard's environment, its
//! configure-output read, then the verification-script.

use std::collections::BTreeMap;
use std::time::Duration;

use aps_meta::model::SettingType;

use super::plan::Plan;
use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::environment::{ScriptOperation, build_environment_with};
use crate::error::{OperationError, Step};
use crate::operation::script_run::{ScriptRun, run_package_script};
use crate::operation::tenant::{HandOver, TenantDir};
use crate::registry::SettingValue;
use crate::structured_output::parse_configure_output;

/// What the scripts said.
pub(super) struct Ran {
    /// The tail of `configure install`'s stdout, trimmed.
    pub(super) stdout: String,
    /// The settings its configure-output returned (stored in the record).
    pub(super) computed: BTreeMap<String, SettingValue>,
    pub(super) verified: bool,
}

/// At most this much of the script's stdout goes into the report.
const EXCERPT: usize = 4096;

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
    let parsed = parse_configure_output(stdout).map_err(|source| OperationError::ScriptOutput {
        step: Step::RunConfigure,
        script: plan.package.root.join("scripts").join(&script.name),
        source,
    })?;
    let meta = &plan.package.meta;
    let declared: Vec<_> = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .collect();
    let mut computed = BTreeMap::new();
    for (id, values) in parsed.settings {
        let Some(setting) = declared.iter().find(|s| s.id.as_str() == id) else {
            continue;
        };
        let value = match (&setting.kind, values.as_slice()) {
            (SettingType::List { .. }, _) => SettingValue::List(values.clone()),
            (_, [one]) => SettingValue::Single(one.clone()),
            (_, _) => SettingValue::Single(values.concat()),
        };
        if setting.is_secret() {
            plan.instance.secret_settings.insert(id.clone());
        }
        plan.instance.settings.insert(id.clone(), value.clone());
        computed.insert(id, value);
    }
    Ok(computed)
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
    let env = build_environment_with(
        &plan.instance,
        &plan.package.meta,
        operation,
        &ctl.config().host,
    )
    .map_err(|source| OperationError::Environment { step, source })?;
    let scripts = plan.package.root.join("scripts");
    let tenant = match account {
        Some(a) => Some(TenantDir::new(a, &scripts, HandOver::None).map_err(
            OperationError::io(
                step,
                "cannot prepare the run folder of the instance's account for the scripts in",
                &scripts,
            ),
        )?),
        None => None,
    };
    let run = ScriptRun {
        argument,
        timeout,
        work: op.work(),
        step,
        account,
        tenant: tenant.as_ref(),
        instance: &plan.instance.name,
    };
    run_package_script(ctl, &plan.package, script, &env, &run)
}

/// The last [`EXCERPT`] bytes of `text`, trimmed, cut at a character boundary.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(EXCERPT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}
