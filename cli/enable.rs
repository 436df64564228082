//! `aps-controller instance enable NAME` and `instance disable NAME`: an instance switched on
//! or off by its package's `configure enable|disable`, where the package declares
//! `status-control` (docs/lifecycle.md, "Enable and disable").

use std::process::ExitCode;

use aps_controller::operation::enable::EnableReport;
use aps_panel::service::enable as service;

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct EnableArgs {
    /// The registered instance.
    pub name: String,
    /// Timeout of the script, in seconds (default: controller.toml's).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing texts.
pub const ENABLE_EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance enable blog\n  aps-controller instance enable blog --json";
pub const DISABLE_EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance disable blog\n  aps-controller instance disable blog --timeout 60 --json";

pub fn run(args: EnableArgs, enabled: bool) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(set_enabled(out, args, enabled))
}

fn set_enabled(out: Out, args: EnableArgs, enabled: bool) -> Result<ExitCode, Failure> {
    let request = service::Request {
        instance: args.name,
        enabled,
        timeout_secs: args.timeout,
    };
    request.check().map_err(cli_failure)?;
    let ctl = open_controller(&args.state)?;
    let report = service::set_enabled(&ctl, &request).map_err(cli_failure)?;
    Ok(out.success(&report, || human(&report)))
}

fn human(r: &EnableReport) -> String {
    let word = match r.status.is_enabled() {
        true => "enable",
        false => "disable",
    };
    let mut text = format!(
        "{word}d instance {} (configure {word} ran in {} ms; it was {})",
        escape(&r.instance),
        r.duration_ms,
        r.previous.as_str()
    );
    if !r.configure_output.is_empty() {
        text += &format!("\n  configure {word} said: {}", escape(&r.configure_output));
    }
    text
}
