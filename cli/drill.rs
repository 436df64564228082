//! `aps-controller drill NAME --staging OTHER`: the newest good backup restored into the
//! staging instance and checked (aps_panel::drill).

use std::process::ExitCode;

use aps_controller::journal::OperationKind;
use aps_panel::service::drill;

use camino::Utf8PathBuf;

use crate::common::{Failure, Flags, Out, StateArgs, cli_failure, outln};
use crate::policy::{engine, finish, logged, open, summary_line};

#[derive(clap::Args)]
pub struct DrillArgs {
    /// The instance whose newest good backup is drilled.
    name: String,
    /// A registered instance of the same package; it is overwritten. Mark it `role =
    /// "staging"` in its INSTANCE.toml (the drill warns otherwise; `run` leaves it out).
    #[arg(long, value_name = "OTHER")]
    staging: String,
    /// age identity file (AGE-SECRET-KEY-…), for encrypted backups [default: panel.toml
    /// `identity-file`]. Without either, an encrypted backup's age header alone is checked
    /// and the drill is reported PARTIAL.
    #[arg(long, value_name = "FILE")]
    identity: Option<Utf8PathBuf>,
    /// Drill the newest good backup of the off-machine copy (panel.toml [remote]): it is
    /// downloaded, then restored; the local store is not used.
    #[arg(long)]
    remote: bool,
    /// JSON lines on stdout, each with a `type`: `progress` events, then one `summary`
    /// envelope (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: DrillArgs) -> ExitCode {
    let out = Out::new(args.json);
    let state = args.state.clone();
    let what = Some((OperationKind::Drill, args.name.clone(), &state));
    finish(out, logged(what, |note| run_drill(out, args, note)))
}

fn run_drill(out: Out, args: DrillArgs, note: &mut Option<String>) -> Result<ExitCode, Failure> {
    let DrillArgs {
        name,
        staging,
        identity,
        remote,
        json,
        state,
    } = args;
    let request = drill::Request {
        instance: name,
        staging,
        identity,
        remote,
    };
    request.check().map_err(cli_failure)?;
    let (panel, controller) = open(&state)?;
    let engine = engine(&panel, controller)?;
    let unmarked = request
        .prepare(engine.controller())
        .map_err(cli_failure)?
        .map(|w| w.say(&Flags));
    if let Some(w) = &unmarked {
        out.warn(w);
    }
    let progress = crate::progress::for_panel(json);
    let r = drill::drill(&panel, &engine, &request, progress.as_ref()).map_err(cli_failure)?;
    *note = Some(format!(
        "into {}: {} ({}){}",
        r.staging,
        if r.passed { "passed" } else { "FAILED" },
        r.backup,
        r.error
            .as_ref()
            .map(|e| format!("; {}: {e}", r.failed_step.unwrap_or("?")))
            .unwrap_or_default()
    ));
    // Exit 1 when the drill failed (README, "Exit codes"); `error.kind` says how.
    let failure = r
        .error
        .as_ref()
        .map(|p| Failure::from_problem(p).exit_with(1));
    if json {
        let mut line = summary_line(
            r.passed,
            serde_json::to_value(&r).expect("reports serialise"),
            failure.as_ref(),
        );
        if let Some(w) = unmarked {
            line["warnings"] = serde_json::json!([w]);
        }
        outln!("{line}");
    } else {
        outln!(
            "drill {} → {}: {} ({})",
            r.instance,
            r.staging,
            match (r.passed, r.complete) {
                (true, true) => "PASS",
                (true, false) => "PARTIAL",
                (false, _) => "FAIL",
            },
            r.backup
        );
        if let Some(v) = &r.verification {
            outln!("  {}: {}", v.method, v.detail);
        }
        if !r.unchecked.is_empty() {
            outln!(
                "  not checked without the identity: {}",
                r.unchecked.join("; ")
            );
        }
        if let Some(e) = &r.error {
            crate::common::errln!(
                "aps-controller: drill {}: {e}",
                r.failed_step.unwrap_or("?")
            );
        }
    }
    Ok(if r.passed {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
