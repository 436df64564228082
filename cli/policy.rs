//! `aps-controller run|prune|verify|backups|drill`: the control panel's side (aps-panel).
//! Thin glue: arguments → aps_panel options → print. Exit 0 on success, 1 when an instance or
//! check failed, 2 when the command could not run at all (usage, config, unreadable store).

use std::process::ExitCode;

use aps_panel::drill::{DrillOptions, drill};
use aps_panel::listing::{list_backups, newest_good};
use aps_panel::progress::{OperationProgress, Progress};
use aps_panel::prune::{StorePrune, prune_store};
use aps_panel::run::{RunOptions, run as run_backups};
use aps_panel::{Engine, Panel, PanelError, Periodicity, Store, SystemClock};
use camino::Utf8PathBuf;

use crate::common::StateArgs;

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Back up every registered instance (or the named ones) for a periodicity, then copy off
    /// the machine and apply retention. Meant for systemd timers and cron.
    Run {
        /// hourly, daily, weekly, monthly, bimonthly, shutdown, manual or all.
        #[arg(long)]
        periodicity: Periodicity,
        /// Only these instances (repeatable).
        #[arg(long = "instance", value_name = "NAME")]
        instances: Vec<String>,
        /// Backups at once (default: panel.toml `jobs`, else 2).
        #[arg(long)]
        jobs: Option<usize>,
        /// JSON-lines progress events and a final summary line on stdout.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Apply retention (panel.toml [retention]) to the backup store and the remote.
    Prune {
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check a backup archive end to end (format, manifest, every part's hash).
    Verify {
        /// The archive; or use --instance for an instance's newest good backup.
        #[arg(required_unless_present = "instance", conflicts_with = "instance")]
        file: Option<Utf8PathBuf>,
        #[arg(long, value_name = "NAME")]
        instance: Option<String>,
        /// age identity file, for encrypted archives.
        #[arg(long, value_name = "FILE")]
        identity: Option<Utf8PathBuf>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List an instance's backups: periodicity, time, size, status.
    Backups {
        name: String,
        /// List the remote copy instead of the local store.
        #[arg(long)]
        remote: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Restore the newest good backup of NAME into the staging instance and check it.
    Drill {
        name: String,
        /// A registered instance of the same package; it is overwritten.
        #[arg(long, value_name = "OTHER")]
        staging: String,
        #[arg(long, value_name = "FILE")]
        identity: Option<Utf8PathBuf>,
        /// Drill the newest good backup of the off-machine copy (panel.toml [remote]): it is
        /// downloaded, then restored; the local store is not used.
        #[arg(long)]
        remote: bool,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
}

pub fn run(c: PolicyCommand) -> ExitCode {
    let result = dispatch(c);
    // Stopped by a signal: whatever ran was rolled back; say so in the exit code.
    if let Some(code) = aps_controller::cancel::Cancel::process()
        .signal()
        .and_then(|s| crate::signals::interrupted_exit_code(Some(s)))
    {
        if let Err(e) = &result {
            eprintln!("aps-controller: {e}");
        }
        return code;
    }
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) => {
            eprintln!("aps-controller: {e}");
            ExitCode::from(2)
        }
    }
}

fn open(state: StateArgs) -> Result<Panel, PanelError> {
    // Every command first rolls back what a killed controller left, and says so (stderr, and
    // `recovered` in the JSON output where it is an object).
    if let Err(code) = crate::common::open_controller(&state) {
        let _ = code; // the reason is printed already; the panel's own open reports the rest
    }
    let dir = aps_panel::engine::resolve_state_dir(state.state_dir)?;
    Panel::open(&dir)
}

/// `println!` that survives a closed stdout (`… | head`): the work is done by then and the exit
/// code must still say how it went, instead of a panic.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

fn print_json(v: &impl serde::Serialize) {
    outln!("{}", serde_json::to_string(v).expect("reports serialise"));
}

/// Ok(true): everything succeeded; Ok(false): something failed and was reported.
fn dispatch(c: PolicyCommand) -> Result<bool, PanelError> {
    match c {
        PolicyCommand::Run {
            periodicity,
            instances,
            jobs,
            json,
            state,
        } => {
            let panel = open(state)?;
            let mut engine = Engine::open(&panel.state_dir)?;
            let jobs = jobs.or(panel.config.jobs).unwrap_or(2);
            if jobs == 0 {
                return Err(PanelError::Usage("--jobs must be at least 1".to_owned()));
            }
            let progress = std::sync::Arc::new(Progress::detect(json));
            if !matches!(*progress, Progress::Quiet) {
                engine.set_progress(Some(std::sync::Arc::new(OperationProgress::new(
                    std::sync::Arc::clone(&progress),
                ))));
            }
            let options = RunOptions {
                periodicity,
                instances,
                jobs,
            };
            let s = run_backups(&panel, &engine, &options, &SystemClock, &progress)?;
            if json {
                let mut summary = serde_json::to_value(&s).expect("summaries serialise");
                summary["recovered"] = crate::common::recovered_array();
                print_json(&serde_json::json!({"event": "summary", "summary": summary}));
            } else {
                outln!("backup {}: {} ok, {} failed", s.periodicity, s.ok, s.failed);
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
                            eprintln!("aps-controller: {}: {step} failed: {e}", o.instance);
                        }
                        (Some(f), None) => outln!(
                            "  ok      {}  {f}  {}  {:.1} s{}{}",
                            o.instance,
                            human_size(o.size.unwrap_or(0)),
                            o.duration_ms as f64 / 1000.0,
                            match (&o.upload, &panel.remote) {
                                (Some(u), Some(r)) => format!(
                                    "  uploaded {}{}, {}",
                                    r.describe(),
                                    u.key,
                                    human_size(u.size)
                                ),
                                _ => String::new(),
                            },
                            pruned_text(&o.pruned)
                        ),
                        (None, None) => outln!("  ok      {}", o.instance),
                    }
                }
            }
            Ok(s.success())
        }
        PolicyCommand::Prune {
            dry_run,
            json,
            state,
        } => {
            let panel = open(state)?;
            let now = jiff::Timestamp::now();
            let mut stores: Vec<&dyn Store> = vec![&panel.local];
            if let Some(r) = &panel.remote {
                stores.push(r.as_ref());
            }
            let mut ok = true;
            for store in stores {
                match prune_store(store, None, &panel.policy, now, dry_run) {
                    Ok(p) if json => {
                        let mut v = serde_json::to_value(&p).expect("reports serialise");
                        v["recovered"] = crate::common::recovered_array();
                        print_json(&v)
                    }
                    Ok(p) => print_prune(&p),
                    Err(e) => {
                        ok = false;
                        eprintln!("aps-controller: {e}");
                    }
                }
            }
            Ok(ok)
        }
        PolicyCommand::Verify {
            file,
            instance,
            identity,
            json,
            state,
        } => {
            let panel = open(state)?;
            let engine = Engine::open(&panel.state_dir)?;
            let file = match (file, instance) {
                (Some(f), _) => f,
                (None, Some(i)) => {
                    let newest =
                        newest_good(&panel.local, &i)?.ok_or_else(|| PanelError::NoBackup {
                            instance: i.clone(),
                            store: panel.local.root().to_string(),
                        })?;
                    panel.local.path_of(&newest)
                }
                (None, None) => {
                    return Err(PanelError::Usage("give FILE or --instance NAME".to_owned()));
                }
            };
            let result = engine.verify_archive(&file, identity.as_deref());
            let ok = result.is_ok();
            if json {
                let recovered = crate::common::recovered_array();
                print_json(&match &result {
                    Ok(detail) => {
                        serde_json::json!({"file": file, "ok": true, "detail": detail, "recovered": recovered})
                    }
                    Err(e) => {
                        serde_json::json!({"file": file, "ok": false, "error": e.to_string(), "recovered": recovered})
                    }
                });
            } else {
                match &result {
                    Ok(detail) => outln!(
                        "{file}: ok{}",
                        if detail.is_empty() {
                            String::new()
                        } else {
                            format!(" ({detail})")
                        }
                    ),
                    Err(e) => eprintln!("aps-controller: {e}"),
                }
            }
            Ok(ok)
        }
        PolicyCommand::Backups {
            name,
            remote,
            json,
            state,
        } => {
            let panel = open(state)?;
            let store = panel.store(remote)?;
            let entries = list_backups(store, &name)?;
            if json {
                print_json(&entries);
            } else {
                outln!(
                    "{} backups of {name} in {}",
                    entries.len(),
                    store.describe()
                );
                for e in &entries {
                    outln!(
                        "  {:<10} {:<20} {:>10}  {:<12} {}",
                        e.periodicity
                            .map(|p| p.to_string())
                            .unwrap_or_else(|| "-".into()),
                        e.time
                            .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                            .unwrap_or_else(|| "-".into()),
                        human_size(e.size),
                        serde_json::to_value(e.status)
                            .ok()
                            .and_then(|v| v.as_str().map(str::to_owned))
                            .unwrap_or_default(),
                        e.file
                    );
                }
            }
            Ok(true)
        }
        PolicyCommand::Drill {
            name,
            staging,
            identity,
            remote,
            json,
            state,
        } => {
            let panel = open(state)?;
            let engine = Engine::open(&panel.state_dir)?;
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
            )?;
            if json {
                print_json(
                    &serde_json::json!({"event": "summary", "summary": r, "recovered": crate::common::recovered_array()}),
                );
            } else {
                outln!(
                    "drill {} → {}: {} ({})",
                    r.instance,
                    r.staging,
                    if r.passed { "PASS" } else { "FAIL" },
                    r.backup
                );
                if let Some(v) = &r.verification {
                    outln!("  {}: {}", v.method, v.detail);
                }
                if let Some(e) = &r.error {
                    eprintln!(
                        "aps-controller: drill {}: {e}",
                        r.failed_step.unwrap_or("?")
                    );
                }
            }
            Ok(r.passed)
        }
    }
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

fn print_prune(p: &StorePrune) {
    let verb = if p.dry_run { "would remove" } else { "removed" };
    outln!(
        "{}: kept {}, {verb} {}, ignored {}",
        p.store,
        p.kept.len(),
        p.removed.len(),
        p.ignored.len()
    );
    for k in &p.removed {
        outln!("  {verb} {k}");
    }
}

fn human_size(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let (mut v, mut u) = (n as f64, 0);
    while v >= 1024.0 && u < UNITS.len() - 1 {
        v /= 1024.0;
        u += 1;
    }
    if u == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[u])
    }
}
