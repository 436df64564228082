//! The report of a conformance run: one row per step (pass, fail with the standard's section,
//! or skipped with why; its duration; the script's output excerpt), the findings, and three
//! renderings of it: JSON (serde, for the envelope), a terminal table and JUnit XML.

mod junit;

use std::time::Duration;

use camino::Utf8Path;
use serde::Serialize;

use aps_controller::runner::ProcessOutput;

use crate::capture::Difference;
use crate::error::ConformanceError;
use crate::sandbox::Ending;

/// The longest excerpt of a script's stdout or stderr a row keeps (its tail).
pub const EXCERPT_LIMIT: usize = 2048;

/// How a step ended.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "status")]
pub enum Outcome {
    Pass,
    Fail {
        /// What went wrong, for a person.
        why: String,
        /// The standard's section the step checks (`§8.3`), when the failure breaks it.
        #[serde(skip_serializing_if = "Option::is_none")]
        section: Option<String>,
    },
    Skipped {
        why: String,
    },
}

/// One row of the report: one step of the scenario.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StepRow {
    /// The step's name (`install`, `backup`, `compare after restore`).
    pub step: String,
    #[serde(flatten)]
    pub outcome: Outcome,
    pub duration_ms: u64,
    /// The tail of the script's stdout, when a script ran and said something.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stdout: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stderr: Option<String>,
    /// What a compare found (empty for other steps).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub differences: Vec<Difference>,
}

impl StepRow {
    pub fn pass(step: impl Into<String>, duration: Duration) -> StepRow {
        StepRow::new(step, Outcome::Pass, duration)
    }

    pub fn fail(
        step: impl Into<String>,
        duration: Duration,
        why: impl Into<String>,
        section: Option<&str>,
    ) -> StepRow {
        let outcome = Outcome::Fail {
            why: why.into(),
            section: section.map(str::to_owned),
        };
        StepRow::new(step, outcome, duration)
    }

    pub fn skipped(step: impl Into<String>, why: impl Into<String>) -> StepRow {
        StepRow::new(step, Outcome::Skipped { why: why.into() }, Duration::ZERO)
    }

    /// A compare step: a pass when `differences` is empty, else a failure naming them.
    pub fn compared(
        step: impl Into<String>,
        duration: Duration,
        differences: Vec<Difference>,
        section: Option<&str>,
    ) -> StepRow {
        let mut row = if differences.is_empty() {
            StepRow::pass(step, duration)
        } else {
            let first = differences[0].to_string();
            let why = match differences.len() {
                1 => first,
                n => format!("{first} (and {} more)", n - 1),
            };
            StepRow::fail(step, duration, why, section)
        };
        row.differences = differences;
        row
    }

    /// The row with the tails of a script's output.
    pub fn with_output(mut self, output: &ProcessOutput) -> StepRow {
        self.stdout = excerpt(&output.stdout_tail);
        self.stderr = excerpt(&output.stderr_tail);
        self
    }

    fn new(step: impl Into<String>, outcome: Outcome, duration: Duration) -> StepRow {
        StepRow {
            step: step.into(),
            outcome,
            duration_ms: duration.as_millis().try_into().unwrap_or(u64::MAX),
            stdout: None,
            stderr: None,
            differences: Vec::new(),
        }
    }

    fn status_word(&self) -> &'static str {
        match self.outcome {
            Outcome::Pass => "pass",
            Outcome::Fail { .. } => "FAIL",
            Outcome::Skipped { .. } => "skipped",
        }
    }
}

/// The last [`EXCERPT_LIMIT`] bytes of `bytes` as text, trimmed; `None` when empty.
pub fn excerpt(bytes: &[u8]) -> Option<String> {
    let start = bytes.len().saturating_sub(EXCERPT_LIMIT);
    let text = String::from_utf8_lossy(&bytes[start..]).trim().to_owned();
    (!text.is_empty()).then_some(text)
}

/// What a finding is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum FindingKind {
    /// Processes of the instance's account still ran after the script ended.
    ProcessLeftBehind,
    /// The script wrote outside the instance's folders.
    WroteOutside,
    /// The script read an environment variable the standard does not define.
    UndefinedVariable,
    NeedsRoot,
    IgnoresBackupFile,
    ExitZeroOnFailure,
    Timeout,
    /// Metadata the controller had to guess.
    GuessedMetadata,
}

/// Something an author should fix, whether or not a step failed for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    pub kind: FindingKind,
    /// The step it was seen in.
    pub step: String,
    pub message: String,
    /// The element, script or script line it comes from, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
}

impl Finding {
    /// One line: the step, the message and where it comes from.
    pub fn line(&self) -> String {
        match &self.source {
            Some(source) => format!("{}: {} ({source})", self.step, self.message),
            None => format!("{}: {}", self.step, self.message),
        }
    }
}

/// Passed, failed and skipped rows.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub passed: usize,
    pub failed: usize,
    pub skipped: usize,
}

/// The whole report of one conformance run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Report {
    /// The package as named on the command line (or its name from APP-META.xml).
    pub package: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    pub rows: Vec<StepRow>,
    pub findings: Vec<Finding>,
    /// What became of the sandbox.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<Ending>,
    pub duration_ms: u64,
}

impl Report {
    pub fn new(package: impl Into<String>) -> Report {
        Report {
            package: package.into(),
            version: None,
            rows: Vec::new(),
            findings: Vec::new(),
            sandbox: None,
            duration_ms: 0,
        }
    }

    /// True when every row passed (skipped rows do not count against it): the exit status.
    pub fn passed(&self) -> bool {
        self.counts().failed == 0
    }

    pub fn counts(&self) -> Counts {
        let mut counts = Counts::default();
        for row in &self.rows {
            match row.outcome {
                Outcome::Pass => counts.passed += 1,
                Outcome::Fail { .. } => counts.failed += 1,
                Outcome::Skipped { .. } => counts.skipped += 1,
            }
        }
        counts
    }

    /// The report as a terminal table: one line per step (step, result, time, detail), the
    /// findings, then a summary line. Plain text: the front end escapes what it prints.
    pub fn table(&self) -> String {
        let detail = |row: &StepRow| match &row.outcome {
            Outcome::Pass => String::new(),
            Outcome::Fail { why, section } => match section {
                Some(s) => format!("{why} [{s}]"),
                None => why.clone(),
            },
            Outcome::Skipped { why } => why.clone(),
        };
        let width = |s: &str| s.chars().count();
        let step_w = self
            .rows
            .iter()
            .map(|r| width(&r.step))
            .chain([4])
            .max()
            .unwrap_or(4);
        let time = |ms: u64| format!("{}.{:03}s", ms / 1000, ms % 1000);
        let mut out = format!(
            "{:<step_w$}  {:<7}  {:>9}  DETAIL\n",
            "STEP", "RESULT", "TIME"
        );
        for row in &self.rows {
            let line = format!(
                "{:<step_w$}  {:<7}  {:>9}  {}",
                row.step,
                row.status_word(),
                time(row.duration_ms),
                detail(row)
            );
            out.push_str(line.trim_end());
            out.push('\n');
        }
        if !self.findings.is_empty() {
            out.push_str("\nFINDINGS\n");
            for f in &self.findings {
                out.push_str(&format!("- {}\n", f.line()));
            }
        }
        let c = self.counts();
        out.push_str(&format!(
            "\n{}: {} passed, {} failed, {} skipped in {}\n",
            self.package,
            c.passed,
            c.failed,
            c.skipped,
            time(self.duration_ms)
        ));
        if let Some(Ending::Kept { home, .. }) = &self.sandbox {
            out.push_str(&format!("sandbox kept in {home}\n"));
        }
        out
    }

    /// The report as JUnit XML: one `testsuite` (the package), one `testcase` per step.
    pub fn junit_xml(&self) -> String {
        junit::render(self)
    }

    /// Writes [`Report::junit_xml`] to `path` (replaced whole, never half-written).
    pub fn write_junit(&self, path: &Utf8Path) -> Result<(), ConformanceError> {
        aps_controller::durable::write_atomic(
            path,
            self.junit_xml().as_bytes(),
            0o644,
            aps_controller::durable::TempName {
                prefix: ".junit-",
                suffix: ".tmp",
            },
        )
        .map_err(|e| ConformanceError::Junit {
            path: path.to_owned(),
            source: e.source,
        })
    }
}
