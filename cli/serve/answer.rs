//! Answers: an HTTP status with the JSON envelope, the statuses of the error kinds, and the
//! requests' fields as HTTP clients name them (JSON fields, where the CLI names flags).

use aps_controller::error::ErrorKind;
use aps_controller::registry::StoreError;
use aps_panel::service::{Field, ServiceError, Wording};
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::common::Failure;

/// An HTTP status and the JSON body that goes with it.
pub type Answer = (u16, Value);
/// A route's answer; `Err` when the request was refused before anything ran.
pub type Handled = Result<Answer, Answer>;

/// A refusal of the adapter itself (`kind` one of the HTTP kinds of docs/json.md, or
/// `usage` for a body that is not what the route takes).
pub fn problem(status: u16, kind: &'static str, message: impl Into<String>) -> Answer {
    let f = if kind == "bad-request" {
        Failure::usage(message)
    } else {
        Failure::http(kind, message)
    };
    (status, f.envelope())
}

/// A failure of the service, its fields named as JSON fields, with the status of its kind.
pub fn service_answer(e: ServiceError) -> Answer {
    failure_answer(Failure::from_service(&e, &JsonFields))
}

/// A failure, with the status of its kind.
pub fn failure_answer(f: Failure) -> Answer {
    let status = status_of_kind(f.kind);
    (status, f.envelope())
}

/// The service requests' fields as an HTTP client sends them.
pub struct JsonFields;

impl Wording for JsonFields {
    fn field(&self, field: Field) -> &'static str {
        match field {
            Field::Instance => "the instance",
            Field::To | Field::ToFile => "\"to\"",
            Field::Force => "\"force\": true",
            Field::Timeout => "\"timeout_secs\"",
            Field::Compression => "\"compression\"",
            Field::Recipients => "\"recipients\"",
            Field::DryRun => "\"dry_run\": true",
            Field::From | Field::FromFile => "\"from\"",
            Field::Latest => "\"latest\": true",
            Field::Snapshot | Field::SnapshotId => "\"snapshot\"",
            Field::Identity => "\"identity\"",
            Field::IdentityFile => "\"identity\": FILE",
            Field::NoSafetySnapshot => "\"no_safety_snapshot\": true",
            Field::FromOtherInstance => "\"from_other_instance\": true",
            Field::Replace => "\"replace\": true",
            Field::NoConnect => "\"no_connect\": true",
            Field::ToInstance => "\"to_instance\"",
            Field::Keep => "\"keep\"",
            Field::Staging => "\"staging\"",
            Field::InstanceOption => "\"instance\"",
            Field::File => "\"file\"",
            Field::Package => "\"package\"",
            Field::Name => "\"name\"",
            Field::BaseUrl => "\"base_url\"",
            Field::WebRoot => "\"web_root\"",
            Field::User => "\"user\"",
            Field::Setting => "\"settings\"",
            Field::SettingsFile => "\"settings_file\"",
            Field::Database => "\"databases\"",
            Field::KeepData => "\"keep_data\": true",
            Field::NoFinalBackup => "\"no_final_backup\": true",
            Field::ToNew => "\"to_new\"",
            Field::AsNew => "\"as_new\"",
            Field::PackageOption => "\"package\"",
        }
    }
}

/// A JSON object body; an empty body is `{}`.
pub fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Answer> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        &b"{}"[..]
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        problem(
            400,
            "bad-request",
            format!("the body is not the JSON object this route takes: {e}"),
        )
    })
}

/// The status of a kind named in the README's table (500 for anything else).
fn status_of_kind(kind: &str) -> u16 {
    ErrorKind::named(kind).map_or(500, status_of)
}

/// The HTTP status of an operation's error; `error.kind` in the body is the precise answer.
fn status_of(kind: ErrorKind) -> u16 {
    match kind {
        ErrorKind::InstanceNotFound => 404,
        ErrorKind::Busy | ErrorKind::InstanceExists => 409,
        ErrorKind::DestinationRefused
        | ErrorKind::InvalidBackup
        | ErrorKind::UntrustedBackup
        | ErrorKind::AccountRefused
        | ErrorKind::InvalidPackage
        | ErrorKind::RequirementUnmet
        | ErrorKind::InvalidSettings
        | ErrorKind::ConformanceFailed => 422,
        ErrorKind::PathNotAllowed => 403,
        ErrorKind::Usage => 400,
        ErrorKind::NoSpace => 507,
        // A monitoring check reads the status code: stale backups are the service unavailable.
        ErrorKind::Interrupted | ErrorKind::Stale | ErrorKind::RemoteUnreachable => 503,
        ErrorKind::InterpreterMissing
        | ErrorKind::ScriptFailed
        | ErrorKind::TimedOut
        | ErrorKind::ResourceFailed
        | ErrorKind::RollbackFailed
        | ErrorKind::Internal => 500,
    }
}

pub fn store_problem(e: StoreError) -> Answer {
    let status = match e {
        StoreError::NotFound { .. } => 404,
        StoreError::AlreadyExists { .. } => 409,
        StoreError::InvalidName { .. } => 400,
        StoreError::Io { .. } | StoreError::Corrupt { .. } => 500,
    };
    (status, crate::failures::store_failure(e).envelope())
}
