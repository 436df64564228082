//! What a package script did that it should not have, seen around one controller operation
//! that runs it: processes of the sandbox account still alive afterwards, files of the account
//! written outside the instance's folders, a run past its timeout, a failure for want of root.
//! Each becomes a [`Finding`] named with the step and the script.

use camino::{Utf8Path, Utf8PathBuf};

use aps_controller::runner::RunError;
use aps_controller::{Controller, ErrorKind, OperationError};

use super::{Context, StepFailure};
use crate::findings::{self, OutsideFiles};
use crate::report::{Finding, FindingKind};
use crate::sandbox::{SHARED_TEMP, Sandbox};

/// The account's files outside its web root, taken before a script runs; [`ScriptWatch::finish`]
/// compares them with the files after it and looks for processes left behind.
pub struct ScriptWatch {
    uid: u32,
    roots: Vec<Utf8PathBuf>,
    excluded: Vec<Utf8PathBuf>,
    before: OutsideFiles,
}

impl ScriptWatch {
    /// Starts watching the account of `sandbox`: its home (less its web root) and the shared
    /// temporary folders.
    pub fn start(sandbox: &Sandbox) -> ScriptWatch {
        let roots: Vec<Utf8PathBuf> = std::iter::once(sandbox.home().to_owned())
            .chain(SHARED_TEMP.iter().map(Utf8PathBuf::from))
            .collect();
        let excluded = vec![sandbox.web_root().to_owned()];
        let uid = sandbox.account().uid;
        let before = capture(&roots, uid, &excluded);
        ScriptWatch {
            uid,
            roots,
            excluded,
            before,
        }
    }

    /// The findings of the script `script` that ran in `step` since [`ScriptWatch::start`]:
    /// processes of the account still running (then ended) and files written outside.
    pub fn finish(self, step: &str, script: &str) -> Vec<Finding> {
        let finding = |kind, message| finding(kind, step, script, message);
        let mut out = Vec::new();
        let left = findings::processes_of(self.uid);
        for p in &left {
            out.push(finding(
                FindingKind::ProcessLeftBehind,
                format!(
                    "process {} (`{}`) still ran after the script ended; the run killed it",
                    p.pid, p.command
                ),
            ));
        }
        if !left.is_empty() {
            findings::end_processes_of(self.uid);
        }
        let after = capture(&self.roots, self.uid, &self.excluded);
        for w in self.before.written_since(&after) {
            out.push(finding(
                FindingKind::WroteOutside,
                format!("{} {} outside the instance's folders", w.what, w.path),
            ));
        }
        out
    }
}

fn finding(kind: FindingKind, step: &str, script: &str, message: String) -> Finding {
    Finding {
        kind,
        step: step.to_owned(),
        message,
        source: Some(script.to_owned()),
    }
}

fn capture(roots: &[Utf8PathBuf], uid: u32, excluded: &[Utf8PathBuf]) -> OutsideFiles {
    let roots: Vec<&Utf8Path> = roots.iter().map(|r| r.as_path()).collect();
    let excluded: Vec<&Utf8Path> = excluded.iter().map(|e| e.as_path()).collect();
    OutsideFiles::capture(&roots, uid, &excluded)
}

/// The runner's error inside an operation's error, when a script (or tool) ran and failed.
pub fn run_error(error: &OperationError) -> Option<&RunError> {
    let mut current: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = current {
        if let Some(run) = e.downcast_ref::<RunError>() {
            return Some(run);
        }
        current = e.source();
    }
    None
}

/// A failed operation as a step's failure: its message, the section of the standard, and
/// the script's output when one ran.
pub fn failure_of(error: &OperationError, section: Option<&'static str>) -> StepFailure {
    StepFailure {
        why: error.to_string(),
        section,
        output: run_error(error).and_then(RunError::output).cloned(),
        differences: Vec::new(),
    }
}

/// What a failed operation says about its script: a timeout, or a refusal the tenant's
/// account met where the script expected root's rights (named by the stderr line).
pub fn error_findings(step: &str, script: &str, error: &OperationError) -> Vec<Finding> {
    let finding = |kind, message| finding(kind, step, script, message);
    let mut out = Vec::new();
    if error.kind() == ErrorKind::TimedOut {
        out.push(finding(
            FindingKind::Timeout,
            "the script ran longer than its timeout and was killed".to_owned(),
        ));
    }
    let stderr = run_error(error)
        .map(RunError::stderr_tail)
        .unwrap_or_default();
    if let Some(line) = needs_root_line(&stderr) {
        out.push(finding(
            FindingKind::NeedsRoot,
            format!("the script needs rights the instance's account does not have: {line}"),
        ));
    }
    out
}

/// The first stderr line that reports the system refusing the account (`EACCES`, `EPERM`, as
/// programs print them). A database's own `permission denied for …` is not one.
fn needs_root_line(stderr: &str) -> Option<&str> {
    const SIGNS: &[&str] = &[
        "Permission denied",
        "Operation not permitted",
        "EACCES",
        "EPERM",
        "must be root",
        "must be run as root",
    ];
    stderr
        .lines()
        .map(str::trim)
        .find(|line| SIGNS.iter().any(|s| line.contains(s)))
}

impl Context<'_> {
    /// Runs `op`, a controller operation that runs the package's `script` as the sandbox's
    /// account in `step`, watching it ([`ScriptWatch`]); its findings go into the report. A
    /// failure becomes the step's, with `section` and the script's output.
    pub fn operate<T>(
        &mut self,
        step: &str,
        script: &str,
        section: Option<&'static str>,
        op: impl FnOnce(&Controller) -> Result<T, OperationError>,
    ) -> Result<T, StepFailure> {
        watched(
            &self.sandbox,
            &self.controller,
            &mut self.report.findings,
            (step, script),
            op,
        )
        .map_err(|e| failure_of(&e, section))
    }

    /// Records a finding of `step`.
    pub fn find(
        &mut self,
        kind: FindingKind,
        step: &str,
        message: impl Into<String>,
        source: Option<String>,
    ) {
        self.report.findings.push(Finding {
            kind,
            step: step.to_owned(),
            message: message.into(),
            source,
        });
    }
}

/// Runs `op`, a controller operation that runs the package's `script` as `sandbox`'s account
/// in the row `step`, watching it ([`ScriptWatch`]); what it finds goes into `findings`. The
/// one watch of the instance under test ([`Context::operate`]) and of the extra instances.
pub(super) fn watched<T>(
    sandbox: &Sandbox,
    controller: &Controller,
    findings: &mut Vec<Finding>,
    (step, script): (&str, &str),
    op: impl FnOnce(&Controller) -> Result<T, OperationError>,
) -> Result<T, OperationError> {
    let watch = ScriptWatch::start(sandbox);
    let result = op(controller);
    let mut found = watch.finish(step, script);
    if let Err(e) = &result {
        found.extend(error_findings(step, script, e));
    }
    findings.extend(found);
    result
}

#[cfg(test)]
mod tests {
    use super::needs_root_line;

    #[test]
    fn only_the_systems_refusals_read_as_needing_root() {
        assert_eq!(
            needs_root_line("x\nchown: changing ownership of 'a': Operation not permitted\n"),
            Some("chown: changing ownership of 'a': Operation not permitted")
        );
        assert_eq!(
            needs_root_line("sh: 1: cannot create /etc/x: Permission denied"),
            Some("sh: 1: cannot create /etc/x: Permission denied")
        );
        assert_eq!(
            needs_root_line("ERROR:  permission denied for schema public"),
            None
        );
    }
}
