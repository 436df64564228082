//! The error as the envelope's `"error"` object: kind, step and message, and the fields a
//! kind adds (the script's stderr tail, problems, leftovers).

use super::OperationError;

impl OperationError {
    /// The JSON object the CLI prints under `"error"`.
    pub fn to_json(&self) -> serde_json::Value {
        let mut v = serde_json::json!({
            "kind": self.kind().as_str(),
            "step": self.step().as_str(),
            "message": self.to_string(),
        });
        if let Some(stderr) = self.script_stderr() {
            v["stderr_tail"] = stderr.into();
        }
        // Where the disk filled up, and how much room there was and was needed.
        let space = match self {
            OperationError::NoSpace {
                place,
                free,
                needed,
                ..
            } => Some((place, *free, *needed)),
            OperationError::NotEnoughSpace {
                place,
                free,
                needed,
                ..
            } => Some((place, *free, Some(*needed))),
            _ => None,
        };
        if let Some((place, free, needed)) = space {
            v["place"] = place.as_str().into();
            v["free_bytes"] = free.into();
            if let Some(n) = needed {
                v["needed_bytes"] = n.into();
            }
        }
        if let Some(signal) = self.signal() {
            v["signal"] = crate::cancel::signal_name(signal).into();
        }
        // What the failed restore began with, kept for a person to put back.
        if let OperationError::RollbackFailed {
            original, snapshot, ..
        } = self
        {
            v["snapshot"] = snapshot.as_str().into();
            v["original_kind"] = original.kind().as_str().into();
        }
        match self {
            OperationError::InstallRefused { refusal, .. } => {
                v["problems"] = refusal.problems().into();
            }
            OperationError::ConfigureRefused { refusal, .. } => {
                v["problems"] = refusal.problems().into();
            }
            OperationError::UpgradeRefused { refusal, .. } => {
                v["problems"] = refusal.problems().into();
            }
            OperationError::InstallUndoFailed {
                original,
                leftovers,
            } => {
                v["leftovers"] = leftovers.clone().into();
                v["original_kind"] = original.kind().as_str().into();
            }
            OperationError::RemoveIncomplete { leftovers, .. } => {
                v["leftovers"] = leftovers.clone().into();
            }
            _ => {}
        }
        v
    }
}
