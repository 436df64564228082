//! `aps-controller instance configure NAME [--setting ID=VALUE]… [--settings-file FILE]`: an
//! instance's settings changed through its package's `configure configure` (docs/lifecycle.md,
//! "Configure").

use std::process::ExitCode;

use aps_controller::operation::configure::ConfigureReport;
use aps_panel::service::configure as service;
use camino::Utf8PathBuf;

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct ConfigureArgs {
    /// The registered instance.
    pub name: String,
    /// A setting to change, ID=VALUE; repeat an id for a list setting. Settings not given keep
    /// their recorded values.
    #[arg(long, value_name = "ID=VALUE")]
    pub setting: Vec<String>,
    /// A TOML file of settings to change (`ID = "value"`, `ID = ["a", "b"]`); --setting wins
    /// over it.
    #[arg(long, value_name = "FILE")]
    pub settings_file: Option<Utf8PathBuf>,
    /// Timeout of the script, in seconds (default: controller.toml's).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing text.
pub const EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance configure blog --setting site_title=\"My Blog\"\n  aps-controller instance configure blog --settings-file blog-settings.toml --setting admin_name=editor --json\n  aps-controller instance configure blog   # runs `configure configure` again with the recorded settings";

pub fn run(args: ConfigureArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(configure(out, args))
}

fn configure(out: Out, args: ConfigureArgs) -> Result<ExitCode, Failure> {
    let request = service::Request {
        instance: args.name,
        settings: args.setting,
        settings_file: args.settings_file,
        timeout_secs: args.timeout,
    };
    request.check().map_err(cli_failure)?;
    let ctl = open_controller(&args.state)?;
    let report = service::configure(&ctl, &request).map_err(cli_failure)?;
    Ok(out.success(&report, || human(&report)))
}

fn human(r: &ConfigureReport) -> String {
    let name = escape(&r.instance);
    let changed = match r.changed.is_empty() {
        true => "no setting changed".to_owned(),
        false => format!("changed {}", escape(&r.changed.join(", "))),
    };
    let ran = match r.script_ran {
        true => "configure configure ran",
        false => "the package has no configuration script",
    };
    let mut text = format!(
        "configured instance {name}: {changed} ({ran}, {} ms)",
        r.duration_ms
    );
    for (id, old) in &r.old_settings {
        text += &format!(
            "\n  {} was {}",
            escape(id),
            escape(&serde_json::to_string(old).unwrap_or_default())
        );
    }
    for (id, value) in &r.computed_settings {
        text += &format!(
            "\n  {} set by the script: {}",
            escape(id),
            escape(&serde_json::to_string(value).unwrap_or_default())
        );
    }
    if !r.configure_output.is_empty() {
        text += &format!(
            "\n  configure configure said: {}",
            escape(&r.configure_output)
        );
    }
    text
}
