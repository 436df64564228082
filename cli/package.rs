//! `aps-controller package check PATH [--json] [--limits FILE]`: lint a package folder or
//! `.app.zip`. See docs/package-check.md.
//!
//! Exit status: 0 the package is valid (warnings allowed), 1 it has errors, 2 the check could
//! not run (path missing, unreadable, bad `--limits` file).
use std::process::ExitCode;

use aps_meta::{Limits, Severity, check_package};
use camino::{Utf8Path, Utf8PathBuf};

use crate::common::{Failure, Out, outln};
use crate::failures::{check_failure, report_json};

#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Check a package (folder or .app.zip): metadata, scripts, settings, APP-LIST.xml.
    #[command(
        after_help = "EXAMPLES:\n  aps-controller package check fixtures/packages/sh-sample\n  aps-controller package check blog.app.zip --json\n  aps-controller package check big.app.zip --limits limits.json"
    )]
    Check {
        /// Package folder or .app.zip.
        path: Utf8PathBuf,
        /// Print one JSON object `{"ok":bool,"path":…,"aps_version":…,"errors":n,"warnings":n,
        /// "diagnostics":[…]}` (with errors also `error`, kind invalid-package) instead of text.
        #[arg(long)]
        json: bool,
        /// JSON file overriding some of the reading bounds, e.g. `{"max_zip_members": 5000}`
        /// (names and defaults: aps-meta's `Limits`, listed in docs/package-check.md).
        #[arg(long, value_name = "FILE")]
        limits: Option<Utf8PathBuf>,
        /// Accepted as by every command; a check reads no state.
        #[command(flatten)]
        state: crate::common::StateArgs,
    },
}

pub fn run(c: PackageCommand) -> ExitCode {
    match c {
        PackageCommand::Check {
            path, json, limits, ..
        } => check(&path, json, limits.as_deref()),
    }
}

fn read_limits(path: &Utf8Path) -> Result<Limits, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| {
        format!("{path}: {e}; expected a JSON object of Limits fields such as {{\"max_zip_members\": 5000}}")
    })
}

fn check(path: &Utf8Path, json: bool, limits_file: Option<&Utf8Path>) -> ExitCode {
    let out = Out::new(json);
    let limits = match limits_file.map(read_limits).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(message) => {
            return out.failure(&Failure::usage(message).with("reason", "bad-limits"));
        }
    };
    let report = match check_package(path, &limits) {
        Ok(r) => r,
        Err(e) => return out.failure(&check_failure(&e)),
    };
    let ok = report.ok();
    if json {
        outln!("{}", report_json(&report));
    } else {
        let errors = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = report.diagnostics.len() - errors;
        // One line per diagnostic: what it quotes from the package is escaped whole.
        for d in &report.diagnostics {
            outln!("{}", crate::terminal::escape(&d.to_string()));
        }
        outln!(
            "{path}: {} ({errors} error(s), {warnings} warning(s))",
            if ok { "ok" } else { "has errors" }
        );
    }
    // 1, not invalid-package's 10: the check ran and found errors (README, "Exit codes").
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
