//! `aps-controller instance upgrade NAME --package NEW`: an instance moved to a newer version
//! of its package (docs/lifecycle.md, "Upgrade").

use std::process::ExitCode;

use aps_controller::operation::upgrade::UpgradeReport;
use aps_panel::service::upgrade as service;
use camino::Utf8PathBuf;

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct UpgradeArgs {
    /// The registered instance.
    pub name: String,
    /// The new version's package: a folder or a `.app.zip` of the same application, with an
    /// `upgrade` or `patch` rule matching the installed version.
    #[arg(long, value_name = "PACKAGE")]
    pub package: Utf8PathBuf,
    /// A setting of the new version, ID=VALUE (recorded values are kept otherwise, new
    /// settings take their default); repeat an id for a list setting.
    #[arg(long, value_name = "ID=VALUE")]
    pub setting: Vec<String>,
    /// Run every check (package, rule, requirements, settings) and change nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Timeout of `configure upgrade`, in seconds (default: controller.toml's).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing text.
pub const EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance upgrade blog --package blog-1.1.app.zip --dry-run\n  aps-controller instance upgrade blog --package /srv/packages/blog-1.1 --setting show_slugs=false --json";

pub fn run(args: UpgradeArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(upgrade(out, args))
}

fn upgrade(out: Out, args: UpgradeArgs) -> Result<ExitCode, Failure> {
    let request = service::Request {
        instance: args.name,
        package: args.package,
        settings: args.setting,
        dry_run: args.dry_run,
        timeout_secs: args.timeout,
    };
    request.check().map_err(cli_failure)?;
    let ctl = open_controller(&args.state)?;
    let report = service::upgrade(&ctl, &request).map_err(cli_failure)?;
    Ok(out.success(&report, || human(&report)))
}

fn human(r: &UpgradeReport) -> String {
    let what = format!(
        "instance {} of {} from {}-{} to {}-{} (by {})",
        escape(&r.instance),
        escape(&r.application),
        escape(&r.from_version),
        escape(&r.from_release),
        escape(&r.to_version),
        escape(&r.to_release),
        escape(&r.rule),
    );
    let mut text = if r.dry_run {
        format!("dry run: {what} can be upgraded; nothing was changed")
    } else {
        format!("upgraded {what} in {} ms", r.duration_ms)
    };
    let list = |names: &[String]| {
        names
            .iter()
            .map(|n| escape(n).into_owned())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let verb = |now: &'static str, later: &'static str| if r.dry_run { later } else { now };
    if !r.files_added.is_empty() {
        text += &format!(
            "\n  files {}: {}",
            verb("added", "to add"),
            list(&r.files_added)
        );
    }
    if !r.files_removed.is_empty() {
        text += &format!(
            "\n  files {}: {}",
            verb("removed", "to remove"),
            list(&r.files_removed)
        );
    }
    text += &format!(
        "\n  files {}: {}",
        verb("replaced", "to replace"),
        r.files_replaced
    );
    if !r.writable_kept.is_empty() {
        text += &format!("\n  writable folders kept: {}", list(&r.writable_kept));
    }
    if !r.settings_added.is_empty() {
        text += &format!("\n  new settings: {}", list(&r.settings_added));
    }
    if !r.settings_dropped.is_empty() {
        text += &format!("\n  settings dropped: {}", list(&r.settings_dropped));
    }
    if !r.dry_run && !r.configure_output.is_empty() {
        text += &format!(
            "\n  configure upgrade said: {}",
            escape(&r.configure_output)
        );
    }
    text
}
