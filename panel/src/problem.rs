//! [`Problem`]: one failure inside a report (an instance of `run`, the step of a drill), in
//! the shape of the CLI's JSON error object: `kind` from the README's exit-code table, the
//! `step` that failed, and a message that does not repeat the step.

use aps_controller::ErrorKind;
use aps_controller::error::OperationError;
use serde::Serialize;

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Problem {
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

impl Problem {
    pub fn new(kind: ErrorKind, step: Option<&str>, message: impl Into<String>) -> Self {
        Problem {
            kind: kind.as_str(),
            step: step.map(str::to_owned),
            message: message.into(),
        }
    }

    /// An operation's error: its kind, its step and its message without the step.
    pub fn from_operation(e: &OperationError) -> Self {
        Problem::new(e.kind(), Some(e.step().as_str()), operation_message(e))
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.step {
            Some(step) => write!(f, "[{}] at step {step}: {}", self.kind, self.message),
            None => write!(f, "[{}] {}", self.kind, self.message),
        }
    }
}

/// An operation error's message without its leading `step X: `, which the error object
/// carries as `step` (so that nothing says the step twice).
pub fn operation_message(e: &OperationError) -> String {
    let text = e.to_string();
    let prefix = format!("step {}: ", e.step().as_str());
    match text.strip_prefix(&prefix) {
        Some(rest) => rest.to_owned(),
        None => text,
    }
}
