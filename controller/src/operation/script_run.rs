//! Steps shared by the operations that run a package script (backup and restore around the
//! backup-script, verify around the verification-script): checking the script file, resolving
//! its interpreter (1.2) and running it with the standard's arguments (3.2).

use std::time::Duration;

use aps_meta::model::Script;

use crate::account::Account;
use crate::controller::Controller;
use crate::environment::{ScriptEnvironment, ScriptOperation, build_environment_with};
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::operation::tenant::{HandOver, TenantDir};
use crate::registry::{Instance, OpenedPackage};
use crate::runner::ProcessOutput;
use crate::structured_output::parse_configure_output;

/// 1.2: an interpreter for `script-language`, or the operation is refused.
pub(crate) fn resolve_interpreter(
    ctl: &Controller,
    script: &Script,
) -> Result<ResolvedInterpreter, OperationError> {
    ctl.config()
        .interpreters
        .resolve(&script.language)
        .map_err(|source| OperationError::Interpreter {
            step: Step::ResolveInterpreter,
            source,
        })
}

/// 1.1: the root service's backup-script, if it declares one, checked to be a file inside the
/// package's `scripts/` folder.
pub(crate) fn find_backup_script(
    instance: &Instance,
    package: &OpenedPackage,
) -> Result<Option<Script>, OperationError> {
    find_declared_script(
        instance,
        package,
        package.meta.service.provision.backup_script.as_ref(),
        "backup-script",
        Step::FindBackupScript,
    )
}

/// 1.1 + 1.2: the backup-script, if the package declares one, with its interpreter.
pub(crate) fn backup_script_with_interpreter(
    ctl: &Controller,
    instance: &Instance,
    package: &OpenedPackage,
) -> Result<Option<(Script, ResolvedInterpreter)>, OperationError> {
    let Some(script) = find_backup_script(instance, package)? else {
        return Ok(None);
    };
    let interpreter = resolve_interpreter(ctl, &script)?;
    Ok(Some((script, interpreter)))
}

/// The root service's verification-script, if it declares one, checked the same way.
pub(crate) fn find_verification_script(
    instance: &Instance,
    package: &OpenedPackage,
) -> Result<Option<Script>, OperationError> {
    find_declared_script(
        instance,
        package,
        package.meta.service.provision.verification_script.as_ref(),
        "verification-script",
        Step::FindVerificationScript,
    )
}

/// The root service's configuration script, if it declares one, checked the same way.
pub(crate) fn find_configuration_script(
    instance: &Instance,
    package: &OpenedPackage,
    step: Step,
) -> Result<Option<Script>, OperationError> {
    find_declared_script(
        instance,
        package,
        package.meta.service.provision.configuration_script.as_ref(),
        "configuration-script",
        step,
    )
}

/// The declared `element` must be a file inside the package's `scripts/` folder; else the
/// package is unusable at `step`.
fn find_declared_script(
    instance: &Instance,
    package: &OpenedPackage,
    script: Option<&Script>,
    element: &str,
    step: Step,
) -> Result<Option<Script>, OperationError> {
    let Some(script) = script else {
        return Ok(None);
    };
    let scripts = package.root.join("scripts");
    let path = scripts.join(&script.name);
    let inside =
        !script.name.is_empty() && !script.name.contains("..") && !script.name.starts_with('/');
    if !inside || !path.is_file() {
        return Err(OperationError::PackageUnusable {
            step,
            instance: instance.name.clone(),
            reason: format!(
                "{element} {:?} is declared in APP-META.xml but {path} is not a file",
                script.name
            ),
        });
    }
    Ok(Some(script.clone()))
}

/// 2 + 3.2: the standard's environment for `operation` (backup or restore, with its
/// `BACKUP_FILE`), then `INTERPRETER scripts/NAME backup|restore` from `scripts/`, with that
/// environment and nothing else. With `structured-output`, the script's stdout is read as the
/// standard's output XML and the errors it reports become the operation's error.
///
/// With `account` (not the controller's own), the script runs as that account in its own
/// run folder ([`TenantDir`]): `BACKUP_FILE` is a file there, a copy of the file to restore
/// from, or for a backup an empty file whose content the controller copies into the
/// operation's `BACKUP_FILE` path once the script succeeded.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run_backup_script(
    ctl: &Controller,
    instance: &Instance,
    package: &OpenedPackage,
    script: (&Script, &ResolvedInterpreter),
    operation: ScriptOperation,
    timeout: Option<Duration>,
    work: &camino::Utf8Path,
    account: Option<&Account>,
) -> Result<(), OperationError> {
    let (argument, backup_file) = match &operation {
        ScriptOperation::Backup { backup_file } => ("backup", backup_file.clone()),
        ScriptOperation::Restore { backup_file } => ("restore", backup_file.clone()),
        other => unreachable!("the backup-script is run for backup and restore, not {other:?}"),
    };
    let account = account.filter(|a| !a.is_current());
    let tenant = match account {
        Some(a) => {
            let hand_over = match &operation {
                ScriptOperation::Backup { .. } => HandOver::Empty,
                _ => HandOver::CopyOf(&backup_file),
            };
            let scripts = package.root.join("scripts");
            Some(
                TenantDir::new(a, &scripts, hand_over).map_err(OperationError::io(
                    Step::RunScript,
                    "cannot prepare the run folder of the instance's account for the scripts in",
                    scripts,
                ))?,
            )
        }
        None => None,
    };
    let operation = match (&tenant, operation) {
        (Some(t), ScriptOperation::Backup { .. }) => ScriptOperation::Backup {
            backup_file: t.backup_file(),
        },
        (Some(t), ScriptOperation::Restore { .. }) => ScriptOperation::Restore {
            backup_file: t.backup_file(),
        },
        (_, operation) => operation,
    };
    let env = build_environment_with(instance, &package.meta, operation, &ctl.config().host)
        .map_err(|source| OperationError::Environment {
            step: Step::BuildEnvironment,
            source,
        })?;
    let run = ScriptRun {
        argument,
        timeout,
        work,
        step: Step::RunScript,
        account,
        tenant: tenant.as_ref(),
        instance: &instance.name,
    };
    run_package_script(ctl, package, script, &env, &run)?;
    let limit = ctl.config().limits_for(&instance.name).max_file_size_mb;
    let written = match &tenant {
        Some(t) => t.take_back().and_then(|f| f.metadata()).map(|m| m.len()),
        None => std::fs::metadata(&backup_file).map(|m| m.len()),
    };
    // A child of the script killed by the bound may go unnoticed by a careless script: a
    // file that reached the bound is taken to be cut short.
    if argument == "backup"
        && let (Some(limit_mb), Ok(len)) = (limit, written)
        && len >= limit_mb.saturating_mul(1024 * 1024)
    {
        return Err(OperationError::FileSizeBound {
            step: Step::RunScript,
            script: package.root.join("scripts").join(&script.0.name),
            limit_mb,
        });
    }
    if let Some(tenant) = &tenant
        && argument == "backup"
    {
        // The destination stays the controller's: the content is copied, never the file.
        tenant
            .take_back_into(&backup_file)
            .map_err(OperationError::io(
                Step::RunScript,
                "cannot take back the file the backup-script wrote as BACKUP_FILE into",
                backup_file,
            ))?;
    }
    Ok(())
}

/// How one package script is run: its argument, timeout, the parent of its private HOME, and
/// the step its failures are reported at.
pub(crate) struct ScriptRun<'a> {
    pub argument: &'a str,
    pub timeout: Option<Duration>,
    pub work: &'a camino::Utf8Path,
    pub step: Step,
    /// Run as this account (when it is not the controller's own).
    pub account: Option<&'a Account>,
    /// The account's run folder: the script runs from its copy of `scripts/`, with its HOME.
    pub tenant: Option<&'a TenantDir>,
    /// The instance, whose resource bounds apply.
    pub instance: &'a str,
}

/// What one configuration or verification script run is: the operation the environment is
/// built for, the argument, and the step its failures are reported at.
pub(crate) struct LifecycleRun<'a> {
    pub operation: ScriptOperation,
    pub argument: &'a str,
    /// Arguments after `argument` (`upgrade`'s old version and release).
    pub more: &'a [&'a str],
    pub step: Step,
    pub timeout: Option<Duration>,
}

/// A package's script against `instance` (as it is, or as it is about to be recorded), as
/// `account`, from a fresh run folder of the account's: the one way install, configure,
/// enable/disable and upgrade run the configuration script.
pub(crate) fn run_lifecycle_script(
    ctl: &Controller,
    op: &crate::controller::Operation,
    package: &OpenedPackage,
    instance: &Instance,
    account: Option<&Account>,
    script: (&Script, &ResolvedInterpreter),
    what: LifecycleRun<'_>,
) -> Result<ProcessOutput, OperationError> {
    let LifecycleRun {
        operation,
        argument,
        more,
        step,
        timeout,
    } = what;
    let env = build_environment_with(instance, &package.meta, operation, &ctl.config().host)
        .map_err(|source| OperationError::Environment { step, source })?;
    let scripts = package.root.join("scripts");
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
        instance: &instance.name,
    };
    run_package_script_with(ctl, package, script, &env, &run, more)
}

/// [`run_backup_script`] for any package script: returns what a successful script printed.
pub(crate) fn run_package_script(
    ctl: &Controller,
    package: &OpenedPackage,
    script: (&Script, &ResolvedInterpreter),
    env: &ScriptEnvironment,
    run: &ScriptRun<'_>,
) -> Result<ProcessOutput, OperationError> {
    run_package_script_with(ctl, package, script, env, run, &[])
}

/// [`run_package_script`] with arguments after the operation's (`upgrade OLD_VERSION
/// OLD_RELEASE`).
pub(crate) fn run_package_script_with(
    ctl: &Controller,
    package: &OpenedPackage,
    (script, interpreter): (&Script, &ResolvedInterpreter),
    env: &ScriptEnvironment,
    run: &ScriptRun<'_>,
    more: &[&str],
) -> Result<ProcessOutput, OperationError> {
    let ScriptRun {
        argument,
        timeout,
        work,
        step,
        account,
        tenant,
        instance: _,
    } = *run;
    let scripts = package.root.join("scripts");
    let path = scripts.join(&script.name);
    let run_from = tenant.map(TenantDir::scripts).unwrap_or(scripts);
    let limits = ctl.config().limits_for(run.instance);
    let mut spec = interpreter
        .script_command(
            &run_from.join(&script.name),
            std::iter::once(argument).chain(more.iter().copied()),
        )
        .current_dir(run_from)
        .envs(env.iter())
        .timeout(ctl.timeout(timeout))
        .kill_grace(ctl.config().kill_grace)
        .limits(&limits)
        .home_parent(work.to_owned())
        .record_group_in(work.join(crate::journal::SCRIPT_GROUP_FILE));
    if let Some(tenant) = tenant {
        spec = spec.env("HOME", tenant.home().as_str());
    }
    if let Some(account) = account {
        spec = spec.run_as(account.clone());
    }
    let outcome = spec.run();
    let output = match &outcome {
        Ok(output) => Some(output),
        Err(e) => e.output(),
    };
    if script.structured_output
        && let Some(out) = output
        && !out.stdout_tail.is_empty()
    {
        match parse_configure_output(&out.stdout_tail) {
            Ok(parsed) if !parsed.errors.is_empty() => {
                return Err(OperationError::ScriptReported {
                    step,
                    script: path,
                    errors: parsed.errors,
                });
            }
            Ok(_) => {}
            // Unreadable output of a script that failed anyway: its exit is the better error.
            Err(source) if outcome.is_ok() => {
                return Err(OperationError::ScriptOutput {
                    step,
                    script: path,
                    source,
                });
            }
            Err(_) => {}
        }
    }
    outcome.map_err(|source| OperationError::Script {
        step,
        script: path,
        source,
    })
}
