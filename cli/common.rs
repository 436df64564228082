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
    for entry in &controller.recovered().entries {
        eprintln!("note: {entry}");
    }
    Ok(controller)
}

/// `{"ok":true, …report}`: an operation's report as `--json` prints it and `serve` answers it.
pub fn success_json<T: Serialize>(report: &T) -> serde_json::Value {
    let mut v = serde_json::to_value(report).expect("reports serialize");
    if let Some(obj) = v.as_object_mut() {
        obj.insert("ok".into(), true.into());
    }
    v
}

/// `{"ok":false,"error":{kind,step,message[,stderr_tail]}}`, for `--json` and `serve`.
pub fn failure_json(error: &OperationError) -> serde_json::Value {
    serde_json::json!({"ok": false, "error": error.to_json()})
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
    ExitCode::from(error.kind().exit_code())
}
