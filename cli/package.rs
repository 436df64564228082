//! `aps-controller package check PATH [--json]`: lint a package folder or `.app.zip`.
//!
//! Exit status: 0 the package is valid (warnings allowed), 1 it has errors, 2 the check could
//! not run (path missing, unreadable).
use std::process::ExitCode;

use aps_meta::{Limits, Severity, check_package};
use camino::Utf8PathBuf;

#[derive(clap::Subcommand)]
pub enum PackageCommand {
    /// Check a package (folder or .app.zip): metadata, scripts, settings, APP-LIST.xml.
    Check {
        /// Package folder or .app.zip.
        path: Utf8PathBuf,
        /// Print `{"ok":bool,"diagnostics":[...]}` instead of text.
        #[arg(long)]
        json: bool,
    },
}

pub fn run(c: PackageCommand) -> ExitCode {
    match c {
        PackageCommand::Check { path, json } => check(&path, json),
    }
}

fn check(path: &camino::Utf8Path, json: bool) -> ExitCode {
    let report = match check_package(path, &Limits::default()) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let ok = report.ok();
    if json {
        let out = serde_json::json!({ "ok": ok, "diagnostics": report.diagnostics });
        println!("{out}");
    } else {
        for d in &report.diagnostics {
            println!("{d}");
        }
        let errors = report
            .diagnostics
            .iter()
            .filter(|d| d.severity == Severity::Error)
            .count();
        let warnings = report.diagnostics.len() - errors;
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
