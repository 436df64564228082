//! The conformance scenario: a package's whole life, run by the controller in a throwaway
//! sandbox against the host's real database servers, each step a row of the [`Report`]
//! (docs/conformance.md lists the steps and what each checks).
//!
//! [`run`] strings the steps together; each step is a function of one of the submodules and
//! records itself through [`Context::step`], which times it, turns its failure into a row and
//! tells the caller's progress sink. A step that needs an earlier one that failed is skipped,
//! with why.

// A step's failure carries the script's output, and the controller's errors are large too
// (the controller allows the same); failures are rare and never on a hot path.
#![allow(clippy::result_large_err)]

mod data;
mod fault;
mod interrupt;
mod life;
mod migrate;
mod sandboxed;
pub(crate) mod start;
pub mod steps;
mod upgrade;
pub mod watch;

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use aps_controller::Controller;
use aps_controller::config::ControllerConfig;
use aps_controller::lifecycle::given::GivenSettings;
use aps_controller::runner::ProcessOutput;

use crate::capture::Difference;
use crate::error::ConformanceError;
use crate::report::{Report, StepRow};
use crate::sandbox::{Sandbox, SandboxOptions};

/// What a conformance run is given besides the package.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// The host's controller configuration: its `[database-servers]`, interpreters and limits.
    /// Its state folder is not touched: the run keeps its own throwaway state in the sandbox.
    pub host: ControllerConfig,
    /// Setting values for the install; the package's defaults and generated values of the
    /// right type fill the rest.
    pub settings: GivenSettings,
    /// Older packages of the same application: each is installed, seeded and upgraded to the
    /// package under test, its data compared after.
    pub upgrade_from: Vec<Utf8PathBuf>,
    /// Where the sandboxes are made, and whether they are kept at the end.
    pub sandbox: SandboxOptions,
    /// Each script's timeout; `None`: the host configuration's default.
    pub timeout: Option<Duration>,
}

/// What the progress sink hears: a step starting, then its row.
#[derive(Debug, Clone, Copy)]
pub enum Event<'a> {
    Started { step: &'a str },
    Finished { row: &'a StepRow },
}

/// Why a step failed, as [`Context::step`] turns it into a row.
#[derive(Debug, Default)]
pub struct StepFailure {
    pub why: String,
    /// The standard's section the failure breaks (`§6.2`), when it breaks one.
    pub section: Option<&'static str>,
    /// The script's output, when a script ran.
    pub output: Option<ProcessOutput>,
    /// What a compare found.
    pub differences: Vec<Difference>,
}

impl StepFailure {
    pub fn new(why: impl Into<String>) -> StepFailure {
        StepFailure {
            why: why.into(),
            ..StepFailure::default()
        }
    }
}

impl From<ConformanceError> for StepFailure {
    fn from(e: ConformanceError) -> StepFailure {
        StepFailure::new(e.to_string())
    }
}

/// The state of one run, handed from step to step.
pub struct Context<'r> {
    pub options: &'r RunOptions,
    /// The package under test, absolute.
    pub package: Utf8PathBuf,
    /// The controller of the run, with its throwaway state.
    pub controller: Controller,
    /// The first sandbox: the instance under test lives here.
    pub sandbox: Sandbox,
    /// The instance under test, once installed.
    pub instance: Option<String>,
    /// A root-only folder of the run for backup files and the like.
    pub work: Utf8PathBuf,
    pub report: Report,
    progress: &'r mut dyn FnMut(Event<'_>),
}

impl Context<'_> {
    /// Runs one step: tells the sink it started, times it, records its row (a pass, or a
    /// failure with what `f` said) and tells the sink. Returns `f`'s value when it passed.
    pub fn step<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> Result<T, StepFailure>,
    ) -> Option<T> {
        (self.progress)(Event::Started { step: name });
        let started = Instant::now();
        let result = f(self);
        let took = started.elapsed();
        let (row, value) = match result {
            Ok(value) => (StepRow::pass(name, took), Some(value)),
            Err(failure) => {
                let mut row = if failure.differences.is_empty() {
                    StepRow::fail(name, took, failure.why, failure.section)
                } else {
                    StepRow::compared(name, took, failure.differences, failure.section)
                };
                if let Some(output) = &failure.output {
                    row = row.with_output(output);
                }
                (row, None)
            }
        };
        self.push(row);
        value
    }

    /// Records a step that did not run, and why.
    pub fn skip(&mut self, name: &str, why: impl Into<String>) {
        (self.progress)(Event::Started { step: name });
        self.push(StepRow::skipped(name, why));
    }

    /// Records a finished row and tells the sink.
    pub fn push(&mut self, row: StepRow) {
        self.report.rows.push(row);
        let row = self.report.rows.last().expect("just pushed");
        (self.progress)(Event::Finished { row });
    }
}

/// Runs the whole scenario on `package` (a folder or `.app.zip`) and returns its report;
/// `Err` only when the run could not start (no root, no sandbox, no controller).
pub fn run(
    package: &Utf8Path,
    options: &RunOptions,
    progress: &mut dyn FnMut(Event<'_>),
) -> Result<Report, ConformanceError> {
    let started = Instant::now();
    let named = package;
    let package = aps_controller::paths::absolute(package);
    let start::Started {
        sandbox,
        controller,
        work,
    } = start::start(options)?;
    let mut cx = Context {
        options,
        report: Report::new(named.as_str()),
        package,
        controller,
        sandbox,
        instance: None,
        work,
        progress,
    };
    // A bug in a step must not skip the end: the instances' databases and the sandbox go.
    let ran = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| main_round(&mut cx)));
    if let Err(panic) = ran {
        let why = panic
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| panic.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "a panic".to_owned());
        let row = StepRow::fail(
            steps::INTERNAL,
            started.elapsed(),
            format!("the run stopped on an internal error: {why}"),
            None,
        );
        cx.push(row);
    }
    Ok(start::finish(cx, started))
}

/// The steps of the order, each skipped with why when one it needs failed.
fn main_round(cx: &mut Context<'_>) {
    let subject = life::package_check(cx);
    let installed = match &subject {
        Some(subject) => life::install(cx, subject),
        None => {
            cx.skip(steps::INSTALL, "the package check failed");
            false
        }
    };
    let (Some(subject), true) = (subject, installed) else {
        let why = "the install failed";
        for step in [
            steps::SEED,
            steps::BACKUP,
            steps::DAMAGE,
            steps::RESTORE,
            steps::COMPARE_RESTORE,
            steps::CONFIGURE,
            steps::DISABLE,
            steps::ENABLE,
        ] {
            cx.skip(step, why);
        }
        rounds(cx);
        cx.skip(steps::REMOVE, why);
        return;
    };
    restore_round(cx, &subject);
    life::configure(cx, &subject);
    life::disable_enable(cx, &subject);
    rounds(cx);
    life::remove(cx, &subject);
}

/// Seed, backup, damage, restore, compare.
fn restore_round(cx: &mut Context<'_>, subject: &life::Subject) {
    let Some(before) = data::seed(cx, subject) else {
        for step in [
            steps::BACKUP,
            steps::DAMAGE,
            steps::RESTORE,
            steps::COMPARE_RESTORE,
        ] {
            cx.skip(step, "the seed failed: there is no state to compare with");
        }
        return;
    };
    let Some(file) = data::backup(cx, subject) else {
        for step in [steps::DAMAGE, steps::RESTORE, steps::COMPARE_RESTORE] {
            cx.skip(step, "the backup failed: there is nothing to restore");
        }
        return;
    };
    // A damage that failed leaves less for the restore to undo; the restore still runs.
    data::damage(cx, &before);
    if !data::restore(cx, subject, &file) {
        cx.skip(steps::COMPARE_RESTORE, "the restore failed");
        return;
    }
    data::compare_after_restore(cx, subject, &before);
}

/// Runs the rounds of the second half, in order (called by [`run`]). Without an installed
/// instance there is nothing to migrate or interrupt; the upgrade rounds install their own.
fn rounds(cx: &mut Context<'_>) {
    let installed = cx.instance.is_some();
    if installed {
        migrate::migrate_round(cx);
    } else {
        cx.skip(steps::MIGRATE, "the install failed");
        cx.skip(steps::COMPARE_MIGRATE, "the install failed");
    }
    for old in cx.options.upgrade_from.clone() {
        upgrade::upgrade_round(cx, &old);
    }
    if installed {
        fault::fault_round(cx);
    } else {
        cx.skip(steps::FAULT_BACKUP, "the install failed");
        cx.skip(steps::FAULT_RESTORE, "the install failed");
    }
}
