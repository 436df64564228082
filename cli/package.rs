//! `aps-controller package check PATH [--json] [--limits FILE]`: lint a package folder or
//! `.app.zip`. See docs/package-check.md.
//!
//! Exit status: 0 the package is valid (warnings allowed), 1 it has errors, 2 the check could
//! not run (path missing, unreadable, bad `--limits` file).
use std::process::ExitCode;

use aps_meta::{CheckError, CheckReport, Limits, Severity, check_package};
use camino::{Utf8Path, Utf8PathBuf};

use crate::common::EXIT_USAGE;

#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Check a package (folder or .app.zip): metadata, scripts, settings, APP-LIST.xml.
    Check {
        /// Package folder or .app.zip.
        path: Utf8PathBuf,
        /// Print one JSON object `{"ok":bool,"path":…,"aps_version":…,"errors":n,"warnings":n,
        /// "diagnostics":[…]}` instead of text.
        #[arg(long)]
        json: bool,
        /// JSON file overriding some of the reading bounds, e.g. `{"max_zip_members": 5000}`
        /// (names and defaults: aps-meta's `Limits`, listed in docs/package-check.md).
        #[arg(long, value_name = "FILE")]
        limits: Option<Utf8PathBuf>,
    },
}

pub fn run(c: PackageCommand) -> ExitCode {
    match c {
        PackageCommand::Check { path, json, limits } => check(&path, json, limits.as_deref()),
    }
}

/// Why the check could not run (exit 2), as a kind for `--json` and a message.
fn cannot_run(json: bool, kind: &str, message: &str) -> ExitCode {
    if json {
        println!(
            "{}",
            serde_json::json!({"ok": false, "error": {"kind": kind, "message": message}})
        );
    } else {
        eprintln!("error: {message}");
    }
    ExitCode::from(EXIT_USAGE)
}

fn read_limits(path: &Utf8Path) -> Result<Limits, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{path}: {e}"))?;
    serde_json::from_str(&text).map_err(|e| {
        format!("{path}: {e}; expected a JSON object of Limits fields such as {{\"max_zip_members\": 5000}}")
    })
}

/// `{"ok":bool,"path":…,"aps_version":…,"errors":n,"warnings":n,"diagnostics":[…]}`, for
/// `--json` and `serve`.
pub fn report_json(report: &CheckReport) -> serde_json::Value {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    serde_json::json!({
        "ok": report.ok(),
        "path": report.path,
        "aps_version": report.aps_version,
        "errors": errors,
        "warnings": report.diagnostics.len() - errors,
        "diagnostics": report.diagnostics,
    })
}

/// `kind` of a check that could not run, for `--json` and `serve`.
pub fn check_error_kind(e: &CheckError) -> &'static str {
    match e {
        CheckError::NotFound { .. } => "not-found",
        CheckError::NotAPackage { .. } => "not-a-package",
        CheckError::Io { .. } => "io",
    }
}

fn check(path: &Utf8Path, json: bool, limits_file: Option<&Utf8Path>) -> ExitCode {
    let limits = match limits_file.map(read_limits).transpose() {
        Ok(l) => l.unwrap_or_default(),
        Err(message) => return cannot_run(json, "bad-limits", &message),
    };
    let report = match check_package(path, &limits) {
        Ok(r) => r,
        Err(e) => return cannot_run(json, check_error_kind(&e), &e.to_string()),
    };
    let ok = report.ok();
    if json {
        println!("{}", report_json(&report));
    } else {
        let errors = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = report.diagnostics.len() - errors;
        for d in &report.diagnostics {
            println!("{d}");
        }
        println!(
            "{path}: {} ({errors} error(s), {warnings} warning(s))",
            if ok { "ok" } else { "has errors" }
        );
    }
    if ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}
