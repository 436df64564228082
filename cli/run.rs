//! `aps-controller run --periodicity P`: the periodic backups of every instance (or the named
//! ones) into the backup store, the off-machine copy and retention (aps_panel::run).

use std::process::ExitCode;

use aps_controller::ErrorKind;
use aps_controller::error::human_bytes;
use aps_controller::journal::OperationKind;
use aps_panel::progress::OperationProgress;
use aps_panel::service::run;
use aps_panel::{Periodicity, SystemClock};

use crate::common::{Failure, Out, StateArgs, cli_failure, outln};
use crate::policy::{engine, finish, logged, open, summary_line};

#[derive(clap::Args)]
pub struct RunArgs {
    /// hourly, daily, weekly, monthly, bimonthly, shutdown, manual or all: the name of the
    /// backups, and which retention count applies to them.
    #[arg(long)]
    periodicity: Periodicity,
    /// Only this registered instance (repeatable); all of them when not given.
    #[arg(long = "instance", value_name = "NAME")]
    instances: Vec<String>,
    /// Backups at once, at least 1 (default: panel.toml `jobs`, else 2).
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=256))]
    jobs: Option<u64>,
    /// JSON lines on stdout, each with a `type`: `progress` events, then one `summary`
    /// envelope (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: RunArgs) -> ExitCode {
    let out = Out::new(args.json);
    let instance = if args.instances.is_empty() {
        "all".to_owned()
    } else {
        args.instances.join(",")
    };
    let state = args.state.clone();
    finish(
        out,
        logged(Some((OperationKind::Run, instance, &state)), |note| {
            run_periodic(out, args, note)
        }),
    )
}

fn run_periodic(out: Out, args: RunArgs, note: &mut Option<String>) -> Result<ExitCode, Failure> {
    let RunArgs {
        periodicity,
        instances,
        jobs,
        json,
        state,
    } = args;
    let request = run::Request {
        periodicity,
        instances,
        jobs: jobs.map(|j| j as usize),
    };
    request.check().map_err(cli_failure)?;
    let (panel, controller) = open(&state)?;
    let mut engine = engine(&panel, controller)?;
    let registered = request.prepare(&engine).map_err(cli_failure)?;
    let (state_dir, state_source) = crate::config::resolve(&state)?;
    let state_words = crate::config::describe_state(&state_dir, state_source);
    // A timer looking at another state folder than the one registrations went to
    // would otherwise back up nothing, every night, without a word (stderr: cron
    // mails it, the journal keeps it).
    if registered.is_empty() {
        out.warn(&format!(
            "no instance is registered in the {state_words}: nothing to back up \
             (register with the same --state-dir or APS_CONTROLLER_STATE_DIR; \
             `aps-controller config show` says which folder a command uses)"
        ));
    }
    let progress = crate::progress::for_panel(json);
    if !progress.is_hidden() {
        engine.set_progress(Some(std::sync::Arc::new(OperationProgress::new(
            std::sync::Arc::clone(&progress),
        ))));
    }
    let s = run::run(&panel, &engine, &request, &SystemClock, progress.as_ref())
        .map_err(cli_failure)?;
    *note = Some(format!(
        "{}: {} ok, {} failed{}{}",
        s.periodicity,
        s.succeeded,
        s.failed,
        s.instances
            .iter()
            .filter(|o| !o.ok)
            .map(|o| format!(
                "; {}: {}",
                o.instance,
                o.error.as_ref().map(|e| e.to_string()).unwrap_or_default()
            ))
            .collect::<String>(),
        if s.staging_left_out.is_empty() {
            String::new()
        } else {
            format!("; staging left out: {}", s.staging_left_out.join(", "))
        }
    ));
    let failure = (!s.success()).then(|| {
        let retention = s
            .repository_retention
            .as_ref()
            .and_then(|r| r.error.as_ref());
        match retention {
            Some(e) if s.failed == 0 => Failure::new(
                ErrorKind::Internal,
                format!("retention in the repository failed: {e}"),
            ),
            _ => Failure::new(
                ErrorKind::Internal,
                format!(
                    "{} of {} instances failed; `summary.instances[].error` says why",
                    s.failed,
                    s.instances.len()
                ),
            ),
        }
    });
    let mut summary = serde_json::to_value(&s).expect("reports serialise");
    if let Some(obj) = summary.as_object_mut() {
        obj.insert("state_dir".into(), state_dir.root().as_str().into());
        obj.insert("state_source".into(), state_source.as_str().into());
    }
    let mut line = summary_line(s.success(), summary, failure.as_ref());
    // `[notify]`: told with the summary line itself; a notification that fails is a warning
    // (stderr, the journal's note), never a failed run.
    let notified = panel.config.notify.as_ref().map_or_else(Vec::new, |n| {
        aps_panel::notify::notify(n, s.success(), line.to_string().as_bytes())
    });
    for n in notified.iter().filter(|n| !n.ok) {
        let error = n.error.as_deref().unwrap_or("failed");
        out.warn(&format!("notify {} {}: {error}", n.target, n.to));
        if let Some(note) = note.as_mut() {
            note.push_str(&format!("; notify {} failed: {error}", n.target));
        }
    }
    if json {
        if !notified.is_empty() {
            line["summary"]["notify"] = serde_json::to_value(&notified).expect("serialises");
        }
        outln!("{line}");
    } else {
        outln!(
            "backup {}: {} ok, {} failed ({state_words})",
            s.periodicity,
            s.succeeded,
            s.failed
        );
        let recovered = crate::common::recovered_array();
        if let Some(list) = recovered.as_array().filter(|l| !l.is_empty()) {
            outln!(
                "  recovered {} interrupted operation(s) first (details on stderr)",
                list.len()
            );
        }
        for o in &s.instances {
            match (&o.file, &o.error) {
                (_, Some(e)) => {
                    let step = o
                        .failed_step
                        .map(|s| format!("{s:?}").to_lowercase())
                        .unwrap_or_default();
                    outln!("  FAILED  {}  ({step})", o.instance);
                    crate::common::errln!("aps-controller: {}: {step} failed: {e}", o.instance);
                }
                (Some(f), None) => outln!(
                    "  ok      {}  {f}  {}  {:.1} s{}{}",
                    o.instance,
                    human_bytes(o.size.unwrap_or(0)),
                    o.duration_ms as f64 / 1000.0,
                    match (&o.upload, &panel.remote) {
                        (Some(u), Some(r)) => format!(
                            "  uploaded {}{}, {}",
                            r.describe(),
                            u.key,
                            human_bytes(u.size)
                        ),
                        _ => String::new(),
                    },
                    pruned_text(&o.pruned)
                ),
                (None, None) => match &o.snapshot {
                    Some(id) => outln!(
                        "  ok      {}  snapshot {}  {} added  {:.1} s",
                        o.instance,
                        &id[..id.len().min(8)],
                        human_bytes(o.size.unwrap_or(0)),
                        o.duration_ms as f64 / 1000.0
                    ),
                    None => outln!("  ok      {}", o.instance),
                },
            }
        }
        if !s.staging_left_out.is_empty() {
            outln!(
                "  left out {} staging instance{} (role = \"staging\"; name it with \
                 --instance to back it up): {}",
                s.staging_left_out.len(),
                if s.staging_left_out.len() == 1 {
                    ""
                } else {
                    "s"
                },
                s.staging_left_out.join(", ")
            );
        }
        if let Some(r) = &s.repository_retention {
            outln!("{}", repository_retention_text(r));
            if let Some(e) = &r.error {
                crate::common::errln!("aps-controller: retention in {} failed: {e}", r.repository);
            }
        }
        for n in &notified {
            let word = if n.ok { "ok" } else { "FAILED" };
            outln!("  notify  {} {} {word}", n.target, n.to);
        }
        for e in &s.status_errors {
            out.warn(&format!("the backup status could not be recorded: {e}"));
        }
    }
    // Exit 1 when an instance failed (README, "Exit codes").
    Ok(if s.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `  repository R: forgot 3 snapshots (blog 2, shop 1), kept 24; prune: …`.
fn repository_retention_text(r: &aps_panel::store::RunRetention) -> String {
    let mut per: std::collections::BTreeMap<&str, usize> = std::collections::BTreeMap::new();
    for s in &r.forgotten {
        *per.entry(s.instance.as_str()).or_default() += 1;
    }
    let per: Vec<String> = per.iter().map(|(i, n)| format!("{i} {n}")).collect();
    let mut text = format!(
        "  repository {}: forgot {} snapshot(s){}, kept {}",
        r.repository,
        r.forgotten.len(),
        if per.is_empty() {
            String::new()
        } else {
            format!(" ({})", per.join(", "))
        },
        r.kept
    );
    match (&r.prune, &r.error) {
        (Some(p), _) => text += &format!("; {}", crate::prune::pack_prune_text(p)),
        (None, Some(_)) => text += "; FAILED (details on stderr)",
        (None, None) => {}
    }
    text
}

/// `  pruned local 2, remote 1`: retention's removals, the remote's keys marked `remote:`.
fn pruned_text(pruned: &[String]) -> String {
    let remote = pruned.iter().filter(|k| k.starts_with("remote:")).count();
    let local = pruned.len() - remote;
    match (local, remote) {
        (0, 0) => String::new(),
        (l, 0) => format!("  pruned local {l}"),
        (0, r) => format!("  pruned remote {r}"),
        (l, r) => format!("  pruned local {l}, remote {r}"),
    }
}
