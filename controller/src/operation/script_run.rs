//! Steps shared by the operations that run a package script (backup and restore around the
//! backup-script, verify around the verification-script): checking the script file, resolving
//! its interpreter (1.2) and running it with the standard's arguments (3.2).

use std::time::Duration;

use aps_meta::model::Script;

use crate::controller::Controller;
use crate::environment::{ScriptEnvironment, ScriptOperation, build_environment_with};
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
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
pub(crate) fn run_backup_script(
    ctl: &Controller,
    instance: &Instance,
    package: &OpenedPackage,
    script: (&Script, &ResolvedInterpreter),
    operation: ScriptOperation,
    timeout: Option<Duration>,
    work: &camino::Utf8Path,
) -> Result<(), OperationError> {
    let argument = match &operation {
        ScriptOperation::Backup { .. } => "backup",
        ScriptOperation::Restore { .. } => "restore",
        other => unreachable!("the backup-script is run for backup and restore, not {other:?}"),
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
    };
    run_package_script(ctl, package, script, &env, &run).map(drop)
}

/// How one package script is run: its argument, timeout, the parent of its private HOME, and
/// the step its failures are reported at.
pub(crate) struct ScriptRun<'a> {
    pub argument: &'a str,
    pub timeout: Option<Duration>,
    pub work: &'a camino::Utf8Path,
    pub step: Step,
}

/// [`run_backup_script`] for any package script: returns what a successful script printed.
pub(crate) fn run_package_script(
    ctl: &Controller,
    package: &OpenedPackage,
    (script, interpreter): (&Script, &ResolvedInterpreter),
    env: &ScriptEnvironment,
    run: &ScriptRun<'_>,
) -> Result<ProcessOutput, OperationError> {
    let ScriptRun {
        argument,
        timeout,
        work,
        step,
    } = *run;
    let scripts = package.root.join("scripts");
    let path = scripts.join(&script.name);
    let spec = interpreter
        .script_command(&path, [argument])
        .current_dir(scripts.clone())
        .envs(env.iter())
        .timeout(ctl.timeout(timeout))
        .kill_grace(ctl.config().kill_grace)
        .home_parent(work.to_owned())
        .record_group_in(work.join(crate::journal::SCRIPT_GROUP_FILE));
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
