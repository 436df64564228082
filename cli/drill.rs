//! `aps-controller drill NAME --staging OTHER`: the newest good backup restored into the
//! staging instance and checked (aps_panel::drill).

use std::process::ExitCode;

use aps_controller::journal::OperationKind;
use aps_panel::drill::{DrillOptions, drill};
use aps_panel::progress::Progress;

use camino::Utf8PathBuf;

use crate::common::{Failure, Out, StateArgs, check_instance_name, outln};
use crate::policy::{engine, finish, logged, open, require_registered, summary_line};

/// `drill`'s arguments.
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
    check_instance_name("NAME", &name)?;
    check_instance_name("--staging", &staging)?;
    if name == staging {
        return Err(Failure::usage(format!(
            "--staging is {name:?}, the instance being drilled: a drill overwrites the \
             staging instance, so name another registered instance of the same package"
        )));
    }
    let (panel, controller) = open(&state)?;
    let engine = engine(&panel, controller)?;
    require_registered(engine.controller(), &name)?;
    require_registered(engine.controller(), &staging)?;
    // Drills set up before roles existed keep working; the person is told before the
    // restore starts.
    let unmarked = engine
        .controller()
        .store()
        .get(&staging)
        .is_ok_and(|i| !i.is_staging())
        .then(|| {
            format!(
                "--staging {staging:?} is not marked as a staging instance: a drill \
                 overwrites its web folders and databases, and `run` backs it up like \
                 any other; if it is one, add `role = \"staging\"` to its \
                 INSTANCE.toml and register it again with --replace"
            )
        });
    if let Some(w) = &unmarked {
        out.warn(w);
    }
    let progress = Progress::detect(json);
    let r = drill(
        &panel,
        &engine,
        &DrillOptions {
            instance: name,
            staging,
            identity,
            remote,
        },
        &progress,
    )
    .map_err(|e| Failure::from_panel(&e))?;
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
