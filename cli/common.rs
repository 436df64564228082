//! What every command shares: the state folder option, opening the controller, and printing
//! an operation's outcome (human text, or one JSON object with `--json`).

use std::process::ExitCode;

use aps_controller::controller::{Controller, ControllerConfig};
use aps_controller::error::OperationError;
use aps_controller::registry::StateDir;
use camino::Utf8PathBuf;
use serde::Serialize;

/// `--state-dir`, else `APS_CONTROLLER_STATE_DIR`, else the per-user default.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// State folder (instances, journal, locks). Default: $APS_CONTROLLER_STATE_DIR, else
    /// $XDG_STATE_HOME/aps-controller, else ~/.local/state/aps-controller.
    #[arg(long, value_name = "DIR", env = "APS_CONTROLLER_STATE_DIR")]
    pub state_dir: Option<Utf8PathBuf>,
}

/// Exit code when the command itself could not run (bad arguments, unreadable state).
pub const EXIT_USAGE: u8 = 2;

pub fn open_controller(state: &StateArgs) -> Result<Controller, ExitCode> {
    let dir = StateDir::resolve(state.state_dir.clone()).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let config = ControllerConfig::load(dir).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_USAGE)
    })?;
    let controller = Controller::open(config).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(e.kind().exit_code())
    })?;
    report_recovered(controller.recovered());
    Ok(controller)
}

/// What opening the controller rolled back, as the JSON envelope's `recovered` array holds it.
static RECOVERED: std::sync::OnceLock<Vec<serde_json::Value>> = std::sync::OnceLock::new();

/// Says what recovery rolled back: a line on stderr per entry (always, also with `--json`:
/// a cron user reads stderr), and the entries for the JSON envelope.
pub fn report_recovered(report: &aps_controller::journal::RecoveryReport) {
    for entry in &report.entries {
        eprintln!("note: {entry}");
    }
    for unreadable in &report.unreadable {
        eprintln!(
            "warning: unreadable journal entry {} left for a person: {}",
            unreadable.path, unreadable.error
        );
    }
    let _ = RECOVERED.set(report.entries.iter().map(recovered_json).collect());
}

/// One rolled-back entry: what it was, when, and what was undone.
pub fn recovered_json(entry: &aps_controller::journal::RecoveredEntry) -> serde_json::Value {
    let r = &entry.record;
    serde_json::json!({
        "id": r.id,
        "operation": r.kind,
        "instance": r.instance,
        "started": r.started,
        "fully_undone": entry.fully_undone(),
        "undone": r.undone,
        "message": entry.to_string(),
    })
}

/// The `recovered` array of this command's envelope.
pub fn recovered_array() -> serde_json::Value {
    serde_json::Value::Array(RECOVERED.get().cloned().unwrap_or_default())
}

/// The exit code of a failed operation: the kind's, except that an interrupted one exits with
/// 128 + the signal (130 SIGINT, 143 SIGTERM, 129 SIGHUP).
pub fn exit_code(error: &OperationError) -> ExitCode {
    if error.kind() == aps_controller::ErrorKind::Interrupted
        && let Some(code) = crate::signals::interrupted_exit_code(error.signal())
    {
        return code;
    }
    ExitCode::from(error.kind().exit_code())
}

/// `{"ok":true, …report}`: an operation's report as `--json` prints it and `serve` answers it.
pub fn success_json<T: Serialize>(report: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(report).expect("reports serialize");
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ok".into(), true.into());
        obj.insert("recovered".into(), recovered_array());
    }
    v
}

/// `{"ok":false,"error":{kind,step,message[,stderr_tail]}}`, for `--json` and `serve`.
pub fn failure_json(error: &OperationError) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": error.to_json(), "recovered": recovered_array()})
}

/// Prints `{"ok":true, …report}` or a human line, and returns exit 0.
pub fn print_success<T: Serialize>(
    json: bool,
    report: &T,
    human: impl FnOnce() -> String,
) -> ExitCode {
    if json {
        println!("{}", success_json(report));
    } else {
        println!("{}", human());
    }
    ExitCode::SUCCESS
}

/// Prints `{"ok":false,"error":{kind,step,message}}` on stdout with `--json`, else the error
/// and the script's stderr tail on stderr; returns the kind's exit code.
pub fn print_failure(json: bool, error: &OperationError) -> ExitCode {
    if json {
        println!("{}", failure_json(error));
    } else {
        eprintln!(
            "error [{}] at step {}: {error}",
            error.kind().as_str(),
            error.step()
        );
    }
    exit_code(error)
}

/// After an interrupted operation, in text mode: what the rollback did (`undone`).
pub fn print_rolled_back(json: bool, error: &OperationError, undone: impl FnOnce() -> String) {
    if !json && error.kind() == aps_controller::ErrorKind::Interrupted {
        eprintln!("rolled back: {}; the lock is released", undone());
    }
}
