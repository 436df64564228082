//! What every command shares: the state folder option, opening the controller and the panel,
//! and the one output shape — a human line, or with `--json` one envelope object:
//! `{"ok":true,…}` or `{"ok":false,"error":{"kind","step"?,"message",…}}` (docs/json.md,
//! docs/envelope.schema.json). Long-running commands print JSON lines, each with a `type`.

use std::process::ExitCode;

use aps_controller::controller::{Controller, ControllerConfig};
use aps_controller::error::{ErrorKind, OperationError};
use aps_controller::registry::StateDir;
use aps_panel::service::{Field, ServiceError, Wording, worded};
use aps_panel::{Panel, PanelError};
use camino::Utf8PathBuf;
use serde::Serialize;
use serde_json::{Map, Value};

/// `--state-dir`, else `APS_CONTROLLER_STATE_DIR`, else the default of root or of a user.
/// The variable is read by [`StateDir::resolve_explained`], not by clap, so that `config show`
/// can say which of the two chose the folder.
#[derive(clap::Args, Debug, Clone)]
pub struct StateArgs {
    /// State folder (instances, journal, locks, panel.toml, the default backup store).
    /// Default: $APS_CONTROLLER_STATE_DIR, else for root /var/lib/aps-controller, else
    /// $XDG_STATE_HOME/aps-controller, else ~/.local/state/aps-controller
    /// (`aps-controller config show` says which).
    #[arg(long, value_name = "DIR")]
    pub state_dir: Option<Utf8PathBuf>,
}

/// When the command started (first called at the top of `main`): reported durations cover
/// the whole command — opening the state, recovery, the stores — not only the operation.
pub fn command_started() -> std::time::Instant {
    static STARTED: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *STARTED.get_or_init(std::time::Instant::now)
}

/// Milliseconds since [`command_started`].
pub fn command_ms() -> u64 {
    command_started().elapsed().as_millis() as u64
}

/// Exit code when the command itself could not run (bad arguments, unreadable state).
pub const EXIT_USAGE: u8 = 2;

/// One failure, as every command reports it: a kind of the README's exit-code table (or, for
/// `serve` only, one of its HTTP refusals), the step once, and a message saying what to do.
#[derive(Debug, Clone)]
pub struct Failure {
    pub kind: &'static str,
    pub exit: u8,
    pub step: Option<String>,
    pub message: String,
    /// More fields of the error object (`stderr_tail`, `problems`, …).
    pub details: Map<String, Value>,
}

impl Failure {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Failure {
            kind: kind.as_str(),
            exit: kind.exit_code(),
            step: None,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Usage, message)
    }

    /// A kind outside the exit-code table (HTTP refusals of `serve`).
    pub fn http(kind: &'static str, message: impl Into<String>) -> Self {
        Failure {
            kind,
            exit: EXIT_USAGE,
            step: None,
            message: message.into(),
            details: Map::new(),
        }
    }

    pub fn at(mut self, step: impl Into<String>) -> Self {
        self.step = Some(step.into());
        self
    }

    pub fn with(mut self, key: &str, value: impl Into<Value>) -> Self {
        self.details.insert(key.to_owned(), value.into());
        self
    }

    /// Exit code other than the kind's own (the README's exceptions: `package check` and
    /// `run`/`drill` answer 1 when what they checked failed).
    pub fn exit_with(mut self, code: u8) -> Self {
        self.exit = code;
        self
    }

    pub fn from_operation(e: &OperationError) -> Self {
        let mut f =
            Self::new(e.kind(), aps_panel::problem::operation_message(e)).at(e.step().as_str());
        if let Some(tail) = e.script_stderr() {
            f = f.with("stderr_tail", tail);
        }
        // The error's own fields (the signal of an interruption, the place that filled up).
        if let Value::Object(more) = e.to_json() {
            for (k, v) in more {
                if !matches!(k.as_str(), "kind" | "step" | "message" | "stderr_tail") {
                    f.details.insert(k, v);
                }
            }
        }
        // An interrupted operation exits with 128 + the signal (130 SIGINT, 143 SIGTERM).
        if e.kind() == ErrorKind::Interrupted
            && let Some(code) = crate::signals::interrupted_exit_status(e.signal())
        {
            f.exit = code;
        }
        f
    }

    pub fn from_problem(p: &aps_panel::problem::Problem) -> Self {
        let mut f = Failure {
            kind: p.kind,
            exit: 1,
            step: p.step.clone(),
            message: p.message.clone(),
            details: Map::new(),
        };
        f.exit = kind_exit(p.kind);
        // An interrupted operation names its signal and exits with 128 + it, as
        // `from_operation` does.
        if p.kind == ErrorKind::Interrupted.as_str() {
            let signal = aps_controller::cancel::Cancel::process().signal();
            if let Some(signal) = signal {
                f = f.with("signal", aps_controller::cancel::signal_name(signal));
            }
            if let Some(code) = crate::signals::interrupted_exit_status(signal) {
                f.exit = code;
            }
        }
        f
    }

    pub fn from_panel(e: &PanelError) -> Self {
        use aps_panel::StoreError;
        match e {
            PanelError::Config(_) | PanelError::Usage(_) | PanelError::NoBackup { .. } => {
                Self::usage(e.to_string())
            }
            PanelError::Store(StoreError::Missing { .. }) => Self::usage(e.to_string()),
            PanelError::Store(_) | PanelError::Scratch { .. } => {
                Self::new(ErrorKind::Internal, e.to_string())
            }
            PanelError::Engine(engine) => {
                let p = engine.problem();
                Self::from_problem(&p)
            }
        }
    }

    /// A refusal or failure of the service layer, its fields named by `wording` (the CLI's
    /// flags, or `serve`'s JSON fields) — the controller's overrides too.
    pub fn from_service(e: &ServiceError, wording: &dyn Wording) -> Self {
        worded(wording, || Self::from_service_worded(e, wording))
    }

    fn from_service_worded(e: &ServiceError, wording: &dyn Wording) -> Self {
        let (mut f, hint) = match e {
            ServiceError::Refused {
                kind,
                step,
                message,
                hint,
            } => {
                let f = Self::new(*kind, message.say(wording));
                (step.map_or(f.clone(), |s| f.at(s)), hint)
            }
            ServiceError::Operation { error, .. } => (Self::from_operation(error), &None),
            ServiceError::Problem { problem, hint } => (Self::from_problem(problem), hint),
            ServiceError::Unverified { file, error } => {
                (Self::from_panel(error).with("file", file.as_str()), &None)
            }
            ServiceError::Unchecked {
                problem,
                repository,
            } => {
                let f = Self::from_problem(problem);
                match repository {
                    Some(r) => (f.with("repository", r.clone()), &None),
                    None => (f, &None),
                }
            }
            ServiceError::Damaged {
                repository,
                errors,
                warnings,
            } => (
                Self::new(ErrorKind::InvalidBackup, e.to_string())
                    .at("check-repository")
                    .with("repository", repository.clone())
                    .with("errors", errors.clone())
                    .with("warnings", warnings.clone()),
                &None,
            ),
            ServiceError::Panel { error, hint } => (Self::from_panel(error), hint),
        };
        if let Some(hint) = hint {
            f = f.with("hint", hint.clone());
        }
        f
    }

    /// The error object: `{"kind","step"?,"message",…details}`.
    pub fn error_json(&self) -> Value {
        let mut obj = Map::new();
        obj.insert("kind".into(), self.kind.into());
        if let Some(step) = &self.step {
            obj.insert("step".into(), step.clone().into());
        }
        obj.insert("message".into(), self.message.clone().into());
        for (k, v) in &self.details {
            obj.insert(k.clone(), v.clone());
        }
        Value::Object(obj)
    }

    /// The whole envelope `{"ok":false,"error":{…}}`.
    pub fn envelope(&self) -> Value {
        envelope(
            false,
            Map::from_iter([("error".to_owned(), self.error_json())]),
        )
    }

    /// The human line: `error [kind] at step S: message`.
    pub fn human(&self) -> String {
        match &self.step {
            Some(step) => format!("error [{}] at step {step}: {}", self.kind, self.message),
            None => format!("error [{}]: {}", self.kind, self.message),
        }
    }
}

/// The CLI's names of the service requests' fields: its arguments and flags.
pub struct Flags;

impl Wording for Flags {
    fn field(&self, field: Field) -> &'static str {
        match field {
            Field::Instance => "NAME",
            Field::To => "--to",
            Field::ToFile => "--to FILE",
            Field::Force => "--force",
            Field::Timeout => "--timeout",
            Field::Compression => "--compression",
            Field::Recipients => "--recipient",
            Field::DryRun => "--dry-run",
            Field::From => "--from",
            Field::FromFile => "--from FILE",
            Field::Latest => "--latest",
            Field::Snapshot => "--snapshot",
            Field::SnapshotId => "--snapshot ID",
            Field::Identity => "--identity",
            Field::IdentityFile => "--identity FILE",
            Field::NoSafetySnapshot => "--no-safety-snapshot",
            Field::FromOtherInstance => "--from-other-instance",
            Field::Replace => "--replace",
            Field::NoConnect => "--no-connect",
            Field::ToInstance => "--to-instance",
            Field::Keep => "--keep",
            Field::Staging => "--staging",
            Field::InstanceOption => "--instance",
            Field::File => "FILE",
            Field::Package => "PACKAGE",
            Field::Name => "--name",
            Field::BaseUrl => "--base-url",
            Field::WebRoot => "--web-root",
            Field::User => "--user",
            Field::Setting => "--setting",
            Field::SettingsFile => "--settings-file",
            Field::Database => "--database",
            Field::KeepData => "--keep-data",
            Field::NoFinalBackup => "--no-final-backup",
            Field::ToNew => "--to-new",
            Field::AsNew => "--as-new",
            Field::PackageOption => "--package",
        }
    }
}

/// A service error as the CLI says it.
pub fn cli_failure(e: ServiceError) -> Failure {
    Failure::from_service(&e, &Flags)
}

/// The exit code of a kind named in the README's table (1 for anything else).
pub fn kind_exit(kind: &str) -> u8 {
    ErrorKind::named(kind).map_or(1, ErrorKind::exit_code)
}

/// The one place envelopes are made: `{"ok":…, …fields}`. Fields common to every envelope
/// (such as what was recovered on start) are added here.
pub fn envelope(ok: bool, fields: Map<String, Value>) -> Value {
    let mut obj = Map::new();
    obj.insert("ok".into(), ok.into());
    for (k, v) in fields {
        if k != "ok" {
            obj.insert(k, v);
        }
    }
    obj.entry("recovered").or_insert_with(recovered_array);
    Value::Object(obj)
}

/// `{"ok":true, …report}`: a report (a JSON object) as `--json` prints it and `serve` answers it.
pub fn success_json<T: Serialize>(report: &T) -> Value {
    match serde_json::to_value(report).expect("reports serialize") {
        Value::Object(m) => envelope(true, m),
        other => envelope(true, Map::from_iter([("result".to_owned(), other)])),
    }
}

// Every text printer escapes what a terminal would act on (cli/terminal.rs).
pub(crate) use crate::terminal::{errln, outln};

/// How a command prints: `--json` or text.
#[derive(Debug, Clone, Copy)]
pub struct Out {
    pub json: bool,
}

impl Out {
    pub fn new(json: bool) -> Self {
        Out { json }
    }

    /// Prints the success envelope (`fields` must serialize to an object) or the human text.
    pub fn success<T: Serialize>(&self, fields: &T, human: impl FnOnce() -> String) -> ExitCode {
        if self.json {
            outln!("{}", success_json(fields));
        } else {
            let text = human();
            if !text.is_empty() {
                outln!("{text}");
            }
        }
        ExitCode::SUCCESS
    }

    /// Prints the failure envelope on stdout with `--json` (else the human line on stderr) and
    /// returns its exit code.
    pub fn failure(&self, f: &Failure) -> ExitCode {
        if self.json {
            outln!("{}", f.envelope());
        } else {
            errln!("{}", f.human());
            if let Some(Value::String(tail)) = f.details.get("stderr_tail") {
                // The script's own lines stay lines; each is escaped (errln!).
                errln!("script stderr (last lines):\n{tail}");
            }
            // What to do next is for the person too, not only for programs reading JSON.
            if let Some(Value::String(hint)) = f.details.get("hint") {
                errln!("hint: {hint}");
            }
        }
        ExitCode::from(f.exit)
    }

    /// One command's result.
    pub fn finish(&self, result: Result<ExitCode, Failure>) -> ExitCode {
        result.unwrap_or_else(|f| self.failure(&f))
    }

    /// A warning: on stderr always (JSON carries it in the envelope's `warnings`).
    pub fn warn(&self, message: &str) {
        errln!("warning: {message}");
    }
}

pub fn state_dir(state: &StateArgs) -> Result<StateDir, Failure> {
    StateDir::resolve(state.state_dir.clone()).map_err(|e| Failure::usage(e.to_string()))
}

pub fn open_controller(state: &StateArgs) -> Result<Controller, Failure> {
    let dir = state_dir(state)?;
    let config = ControllerConfig::load(dir).map_err(|e| Failure::usage(e.to_string()))?;
    let controller = Controller::open(config)
        .map_err(|e| Failure::new(e.kind(), aps_panel::problem::operation_message(&e)))?;
    report_recovered(controller.recovered());
    Ok(controller)
}

/// What opening the controller rolled back, as the JSON envelope's `recovered` array holds it.
static RECOVERED: std::sync::OnceLock<Vec<Value>> = std::sync::OnceLock::new();

/// Says what recovery rolled back: a line on stderr per entry (always, also with `--json`:
/// a cron user reads stderr), and the entries for the JSON envelope.
pub fn report_recovered(report: &aps_controller::journal::RecoveryReport) {
    for entry in &report.entries {
        errln!("note: {entry}");
    }
    for unreadable in &report.unreadable {
        errln!(
            "warning: unreadable journal entry {} left for a person: {}",
            unreadable.path,
            unreadable.error
        );
    }
    let _ = RECOVERED.set(report.entries.iter().map(recovered_json).collect());
}

/// One rolled-back entry: what it was, when, and what was undone.
pub fn recovered_json(entry: &aps_controller::journal::RecoveredEntry) -> Value {
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

/// The `recovered` array of this command's envelope (empty when nothing was rolled back).
pub fn recovered_array() -> Value {
    Value::Array(RECOVERED.get().cloned().unwrap_or_default())
}

/// After an operation of the controller that a signal stopped, in text mode: what the
/// rollback did (`undone`).
pub fn print_rolled_back(out: Out, error: &ServiceError, undone: impl FnOnce() -> String) {
    if !out.json
        && matches!(error, ServiceError::Operation { error, .. } if error.kind() == ErrorKind::Interrupted)
    {
        errln!("rolled back: {}; the lock is released", undone());
    }
}

/// Runs `operation` on the controller with its progress drawn for this command (a bar on a
/// terminal, JSON lines with `--json`) when `draw`, the drawing finished after.
pub fn with_progress<T>(
    out: Out,
    ctl: &mut Controller,
    draw: bool,
    operation: impl FnOnce(&Controller) -> T,
) -> T {
    let progress = if draw {
        crate::progress::for_command(out.json)
    } else {
        None
    };
    ctl.set_progress(progress.clone());
    let result = operation(ctl);
    if let Some(p) = &progress {
        p.finish();
    }
    result
}

/// panel.toml and the stores it names (checked: a configured store must exist).
pub fn open_panel(state: &StateArgs) -> Result<Panel, Failure> {
    let dir = state_dir(state)?;
    let panel = Panel::open(dir.root()).map_err(|e| Failure::from_panel(&e))?;
    for marker in &panel.stale_reservations {
        errln!("note: removed {marker}, the name reservation of a backup that was killed");
    }
    Ok(panel)
}

/// Instance names as the registry takes them (the service's one rule); checked before
/// anything runs.
pub fn check_instance_name(flag: &str, name: &str) -> Result<(), Failure> {
    aps_panel::service::check_instance_name(flag, name).map_err(cli_failure)
}
