//! The libraries' own failures and reports as the envelope carries them — the registry's
//! (registration, the instance store), the package check's and the backup status's — for the
//! commands and `serve`.

use aps_controller::ErrorKind;
use aps_controller::registry::{self, RegisterError, StoreError};
use aps_meta::{CheckError, CheckReport, Severity};

use aps_panel::service::status::StatusTable;
use serde_json::Value;

use crate::common::{Failure, envelope, success_json};

/// The failure of a registry call, with the README's kinds.
pub fn store_failure(e: StoreError) -> Failure {
    match e {
        StoreError::NotFound { .. } => Failure::new(
            ErrorKind::InstanceNotFound,
            format!("{e}; `aps-controller instance list` shows the registered instances"),
        ),
        StoreError::AlreadyExists { .. } | StoreError::InvalidName { .. } => {
            Failure::usage(e.to_string())
        }
        StoreError::Io { .. } | StoreError::Corrupt { .. } => {
            Failure::new(ErrorKind::Internal, e.to_string())
        }
    }
}

/// The failure of `register`: every problem of the file at once, also as `problems`.
pub fn register_failure(e: RegisterError) -> Failure {
    match e {
        RegisterError::Store(s) => store_failure(s),
        RegisterError::Invalid(problems) => {
            let list: Vec<String> = problems.iter().map(|p| p.to_string()).collect();
            Failure::usage(RegisterError::Invalid(problems).to_string()).with("problems", list)
        }
        RegisterError::Parse(registry::ParseError::Shape { path, problems }) => {
            let list = problems.clone();
            Failure::usage(
                RegisterError::Parse(registry::ParseError::Shape { path, problems }).to_string(),
            )
            .with("problems", list)
        }
        e @ RegisterError::Parse(_) => Failure::usage(e.to_string()),
    }
}

/// `{"ok":true,"path":…,"aps_version":…,"errors":0,"warnings":n,"diagnostics":[…]}`; with
/// errors `ok` is false and `error` (kind `invalid-package`) says how many. For `--json` and
/// `serve`.
pub fn report_json(report: &CheckReport) -> serde_json::Value {
    let errors = report
        .diagnostics
        .iter()
        .filter(|d| d.severity == Severity::Error)
        .count();
    let mut v = serde_json::json!({
        "ok": report.ok(),
        "path": report.path,
        "aps_version": report.aps_version,
        "errors": errors,
        "warnings": report.diagnostics.len() - errors,
        "diagnostics": report.diagnostics,
    });
    if !report.ok() {
        v["error"] = Failure::new(
            ErrorKind::InvalidPackage,
            format!(
                "the package has {errors} error(s); `diagnostics` lists them with their codes \
                 (aps-meta/DIAGNOSTICS.md)"
            ),
        )
        .error_json();
    }
    v
}

/// Why a check could not run, as the envelope's failure (kind `usage`, `reason` the detail).
pub fn check_failure(e: &CheckError) -> Failure {
    Failure::usage(e.to_string()).with("reason", check_error_kind(e))
}

/// `kind` of a check that could not run, for `--json` and `serve`.
pub fn check_error_kind(e: &CheckError) -> &'static str {
    match e {
        CheckError::NotFound { .. } => "not-found",
        CheckError::NotAPackage { .. } => "not-a-package",
        CheckError::Io { .. } => "io",
    }
}

/// The `stale` failure naming the instances, when there are any.
pub fn stale_failure(table: &StatusTable, max_age: &str) -> Option<Failure> {
    if table.stale.is_empty() {
        return None;
    }
    Some(
        Failure::new(
            ErrorKind::Stale,
            format!(
                "{} instance(s) without a good backup younger than {max_age}: {}",
                table.stale.len(),
                table.stale.join(", ")
            ),
        )
        .with("problems", table.stale.clone()),
    )
}

/// The envelope: the table, and with stale instances `ok` false and the `stale` error.
pub fn table_json(table: &StatusTable, stale: Option<&Failure>) -> Value {
    match stale {
        None => success_json(table),
        Some(f) => {
            let Value::Object(mut fields) = serde_json::to_value(table).expect("tables serialise")
            else {
                unreachable!("a table is an object")
            };
            fields.insert("error".into(), f.error_json());
            envelope(false, fields)
        }
    }
}
