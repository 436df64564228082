//! The history of operations (`aps-controller log [NAME] [--since WHEN]`): the journal's log,
//! rotated files included, and the entries still open.

use aps_controller::Controller;
use aps_controller::ErrorKind;
use aps_controller::journal::{EntryRecord, OperationKind, Outcome, UndoOutcome};
use jiff::Timestamp;
use serde::Serialize;

use super::{ServiceError, words};

/// Which operations: of one instance (a migration is listed under its source), since a time.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: Option<String>,
    pub since: Option<Timestamp>,
}

/// The operations, oldest first; the ones still running (or left by a controller on another
/// host) last.
#[derive(Debug, Serialize)]
pub struct History {
    pub operations: Vec<Operation>,
}

/// One operation of the journal.
#[derive(Debug, Serialize)]
pub struct Operation {
    pub id: String,
    pub operation: OperationKind,
    pub instance: String,
    pub started: Timestamp,
    pub finished: Option<Timestamp>,
    pub duration_ms: Option<i64>,
    pub outcome: Outcome,
    /// Closed by the recovery of a later command (the controller had been killed).
    pub recovered: bool,
    pub message: Option<String>,
    pub undone: Vec<UndoOutcome>,
}

impl From<EntryRecord> for Operation {
    fn from(r: EntryRecord) -> Self {
        Operation {
            duration_ms: r
                .finished
                .map(|f| f.duration_since(r.started).as_millis() as i64),
            recovered: r.outcome == Outcome::Interrupted && !r.undone.is_empty(),
            id: r.id,
            operation: r.kind,
            instance: r.instance,
            started: r.started,
            finished: r.finished,
            outcome: r.outcome,
            message: r.message,
            undone: r.undone,
        }
    }
}

/// The operations the request asks for.
pub fn log(ctl: &Controller, request: &Request) -> Result<History, ServiceError> {
    if let Some(name) = &request.instance {
        super::check_instance_name(super::Field::Instance, name)?;
    }
    let journal = ctl.journal();
    let mut records = journal.history().map_err(|e| ServiceError::Refused {
        kind: ErrorKind::Internal,
        step: None,
        message: words![e.to_string()],
        hint: None,
    })?;
    // Still running (or left by a controller on another host): shown last, as `running`.
    if let Ok(open) = journal.open_entries() {
        records.extend(open.into_iter().flatten());
    }
    records.retain(|r| {
        request.instance.as_deref().is_none_or(|n| r.instance == n)
            && request.since.is_none_or(|s| r.started >= s)
    });
    records.sort_by_key(|r| r.started);
    Ok(History {
        operations: records.into_iter().map(Operation::from).collect(),
    })
}
