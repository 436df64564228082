//! Steps shared by backup and restore around the package's backup-script: checking the script
//! file, resolving its interpreter (1.2) and running it with the standard's arguments (3.2).

use std::time::Duration;

use aps_meta::model::Script;

use crate::controller::Controller;
use crate::environment::ScriptEnvironment;
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::registry::{Instance, OpenedPackage};
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

/// 1.1: the declared script must be a file inside the package's `scripts/` folder.
pub(crate) fn check_script_file(
    instance: &Instance,
    package: &OpenedPackage,
    script: &Script,
) -> Result<(), OperationError> {
    let scripts = package.root.join("scripts");
    let path = scripts.join(&script.name);
    let inside =
        !script.name.is_empty() && !script.name.contains("..") && !script.name.starts_with('/');
    if !inside || !path.is_file() {
        return Err(OperationError::PackageUnusable {
            step: Step::FindBackupScript,
            instance: instance.name.clone(),
            reason: format!(
                "backup-script {:?} is declared in APP-META.xml but {path} is not a file",
                script.name
            ),
        });
    }
    Ok(())
}

/// 3.2: `INTERPRETER scripts/NAME <argument>` from `scripts/`, with `env` and nothing else.
/// With `structured-output`, the script's stdout is read as the standard's output XML and the
/// errors it reports become the operation's error.
pub(crate) fn run_backup_script(
    ctl: &Controller,
    package: &OpenedPackage,
    (script, interpreter): (&Script, &ResolvedInterpreter),
    env: &ScriptEnvironment,
    argument: &str,
    timeout: Option<Duration>,
    work: &camino::Utf8Path,
) -> Result<(), OperationError> {
    let scripts = package.root.join("scripts");
    let path = scripts.join(&script.name);
    let spec = interpreter
        .script_command(&path, [argument])
        .current_dir(scripts.clone())
        .envs(env.iter())
        .timeout(ctl.timeout(timeout))
        .kill_grace(ctl.config().kill_grace)
        .home_parent(work.to_owned());
    let outcome = spec.run();
    let (output, failure) = match outcome {
        Ok(output) => (Some(output), None),
        Err(e) => (e.output().cloned(), Some(e)),
    };
    if script.structured_output
        && let Some(out) = &output
        && !out.stdout_tail.is_empty()
    {
        match parse_configure_output(&out.stdout_tail) {
            Ok(parsed) if !parsed.errors.is_empty() => {
                return Err(OperationError::ScriptReported {
                    step: Step::RunScript,
                    script: path,
                    errors: parsed.errors,
                });
            }
            Ok(_) => {}
            // Unreadable output of a script that failed anyway: its exit is the better error.
            Err(source) if failure.is_none() => {
                return Err(OperationError::ScriptOutput {
                    step: Step::RunScript,
                    script: path,
                    source,
                });
            }
            Err(_) => {}
        }
    }
    match failure {
        None => Ok(()),
        Some(source) => Err(OperationError::Script {
            step: Step::RunScript,
            script: path,
            source,
        }),
    }
}
