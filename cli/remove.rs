//! `aps-controller instance remove N [--keep-data] [--no-final-backup]`: an instance taken
//! away, after a final backup into the store (docs/lifecycle.md, "Remove").

use std::process::ExitCode;

use aps_panel::service::remove::{self as service, FinalBackup, Removed};

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller, open_panel};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct RemoveArgs {
    /// The registered instance.
    pub name: String,
    /// Remove the record only: no script runs, its web folders, databases and backups are
    /// kept, and no final backup is taken (what `instance remove` did before installs).
    #[arg(long)]
    pub keep_data: bool,
    /// Remove without taking the final backup first.
    #[arg(long)]
    pub no_final_backup: bool,
    /// Timeout of `configure remove` and of the final backup, in seconds (default:
    /// controller.toml's).
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<u64>,
    /// Print one JSON object (docs/json.md).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing text.
pub const EXAMPLES: &str = "EXAMPLES:\n  aps-controller instance remove blog\n  aps-controller instance remove blog-staging --keep-data\n  aps-controller instance remove demo --no-final-backup --json";

pub fn run(args: RemoveArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(remove(out, args))
}

fn remove(out: Out, args: RemoveArgs) -> Result<ExitCode, Failure> {
    let request = service::Request {
        instance: args.name,
        keep_data: args.keep_data,
        no_final_backup: args.no_final_backup,
        timeout_secs: args.timeout,
    };
    request.check().map_err(cli_failure)?;
    let ctl = open_controller(&args.state)?;
    let removed = if request.keep_data {
        // No backup: panel.toml is not needed.
        service::remove_keeping_data(&ctl, &request).map_err(cli_failure)?
    } else {
        let panel = open_panel(&args.state)?;
        service::remove(&ctl, &panel, &request).map_err(cli_failure)?
    };
    Ok(out.success(&removed, || human(&removed)))
}

fn human(r: &Removed) -> String {
    let report = &r.report;
    if report.keep_data {
        return format!(
            "removed instance {} (its record only: web folders, databases and backups kept)",
            escape(&report.instance)
        );
    }
    let mut text = format!("removed instance {}", escape(&report.instance));
    match &r.final_backup {
        Some(FinalBackup::Archive { file, .. }) => {
            text += &format!("\n  final backup: {}", escape(file.as_str()));
        }
        Some(FinalBackup::Snapshot {
            repository,
            snapshot,
        }) => {
            text += &format!(
                "\n  final backup: snapshot {} in {}",
                escape(snapshot),
                escape(repository)
            );
        }
        None => text += "\n  no final backup",
    }
    if report.configure_ran {
        text += "\n  configure remove ran";
    }
    if let Some(web_root) = &report.web_root {
        text += &format!(
            "\n  {} entries removed from {}{}",
            report.files_removed.len(),
            escape(web_root.as_str()),
            if report.web_root_removed {
                ", and the folder itself"
            } else {
                ""
            }
        );
    }
    for name in &report.kept {
        text += &format!("\n  kept (not the install's): {}", escape(name));
    }
    for db in &report.databases {
        text += &format!(
            "\n  database {}: {} {}",
            escape(&db.id),
            escape(&db.name),
            if db.dropped {
                "dropped with its user"
            } else {
                "kept"
            }
        );
    }
    text
}
