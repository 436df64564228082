//! What the control panel's commands (`run`, `prune`, `verify`, `backups`, `drill`: one file
//! each) share: opening panel.toml and the engine after recovery, the journal entry of the
//! long-running ones, their summary line and their exit code. Exit 0 on success, 1 when an
//! instance or check failed, 2 when the command could not run at all (usage, config,
//! unreadable store).

use std::process::ExitCode;

use aps_controller::Controller;
use aps_controller::journal::OperationKind;
use aps_panel::{Engine, Panel, PanelError};
use serde_json::{Map, Value};

use crate::common::{Failure, Out, StateArgs, envelope, open_panel};

/// The command's result printed, its exit code — or, stopped by a signal, 128 + the signal:
/// whatever ran was rolled back.
pub fn finish(out: Out, result: Result<ExitCode, Failure>) -> ExitCode {
    let code = out.finish(result);
    aps_controller::cancel::Cancel::process()
        .signal()
        .and_then(|s| crate::signals::interrupted_exit_code(Some(s)))
        .unwrap_or(code)
}

/// panel.toml and its stores, after the controller rolled back what a killed one left and
/// said so (stderr, and `recovered` in the JSON envelope): every command recovers first.
pub fn open(state: &StateArgs) -> Result<(Panel, Option<Controller>), Failure> {
    // A controller that cannot open is reported by the command's own next step.
    let controller = crate::common::open_controller(state).ok();
    Ok((open_panel(state)?, controller))
}

/// The engine over the controller [`open`] already opened (and recovered), else opened anew
/// for its error.
pub fn engine(panel: &Panel, controller: Option<Controller>) -> Result<Engine, Failure> {
    match controller {
        Some(c) => Ok(Engine::with_controller(c)),
        None => {
            Engine::open(&panel.state_dir).map_err(|e| Failure::from_panel(&PanelError::Engine(e)))
        }
    }
}

/// A long-running command's last JSON line: the envelope with `type` `summary`.
pub fn summary_line(ok: bool, summary: Value, error: Option<&Failure>) -> Value {
    let mut summary = summary;
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("recovered".into(), crate::common::recovered_array());
    }
    let mut fields = Map::new();
    fields.insert("type".into(), "summary".into());
    fields.insert("summary".into(), summary);
    if let Some(f) = error {
        fields.insert("error".into(), f.error_json());
    }
    envelope(ok, fields)
}

/// `run`, `prune` (not `--dry-run`) and `drill` each leave one entry in the journal's history,
/// shown by `aps-controller log`: open while they run (`what`: the kind, the instances, the
/// state folder), then `ok` or `failed` with the `note` the command leaves. The backups,
/// restores and uploads they run are entries of their own.
pub fn logged(
    what: Option<(OperationKind, String, &StateArgs)>,
    command: impl FnOnce(&mut Option<String>) -> Result<ExitCode, Failure>,
) -> Result<ExitCode, Failure> {
    // Bad arguments are refused before an entry is opened; a state folder that cannot be
    // opened fails the command itself the same way.
    let entry = what.and_then(|(kind, instance, state)| {
        crate::common::open_controller(state)
            .ok()?
            .journal()
            .begin(kind, &instance)
            .ok()
    });
    let mut note = None;
    let result = command(&mut note);
    if let Some(entry) = entry {
        let _ = match (&result, note) {
            (Ok(code), note) if *code == ExitCode::SUCCESS => {
                entry.finish_ok_saying(note.as_deref())
            }
            (Ok(_), note) => entry.finish_failed(note.as_deref().unwrap_or("failed")),
            (Err(f), _) => entry.finish_failed(&f.message),
        };
    }
    result
}
