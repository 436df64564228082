//! `aps-controller run|prune|verify|backups|drill`: the control panel's side (aps-panel).
//! Thin glue: arguments → aps_panel options → print. Exit 0 on success, 1 when an instance or
//! check failed, 2 when the command could not run at all (usage, config, unreadable store).

use std::process::ExitCode;

use aps_controller::Controller;
use aps_controller::error::human_bytes;

use aps_panel::drill::{DrillOptions, drill};
use aps_panel::listing::list_backups;
use aps_panel::progress::OperationProgress;
use aps_panel::prune::StorePrune;
use aps_panel::run::{RunOptions, run as run_backups};
use aps_panel::{ArchiveFiles, Engine, Panel, PanelError, Periodicity, SystemClock};
use camino::Utf8PathBuf;

use aps_controller::ErrorKind;
use serde_json::{Map, Value, json};

use crate::common::{Failure, Out, StateArgs, check_instance_name, envelope, open_panel, outln};

#[derive(clap::Subcommand)]
pub enum PolicyCommand {
    /// Back up every registered instance but the staging ones (or the named ones) for a
    /// periodicity into the backup store, then copy off the machine and apply retention. Meant
    /// for systemd timers and cron.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller run --periodicity daily\n  \
        aps-controller run --periodicity hourly --instance blog --instance shop --jobs 4\n  \
        aps-controller run --periodicity daily --json   # JSON lines, the last one the summary")]
    Run {
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
    },
    /// Apply retention (panel.toml [retention]) to the backup store and the remote, and to the
    /// repository store's snapshots (then prune its data) when panel.toml chooses it.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller prune --dry-run\n  \
        aps-controller prune --json")]
    Prune {
        /// Show what would be removed; remove nothing.
        #[arg(long)]
        dry_run: bool,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Check a backup end to end (format, manifest, every part's hash), or the repository
    /// store (--repository); exit 17 when damaged.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller verify --instance blog\n  \
        aps-controller verify --repository\n  \
        aps-controller verify --repository --read-sample daily/week --json\n  \
        aps-controller verify --repository --read-all\n  \
        aps-controller verify /srv/backups/blog.aps.tar.zst.age --identity key.txt --json")]
    Verify {
        /// The backup file; or use --instance for an instance's newest good backup, or
        /// --repository.
        #[arg(
            required_unless_present_any = ["instance", "repository"],
            conflicts_with_all = ["instance", "repository"]
        )]
        file: Option<Utf8PathBuf>,
        /// Verify the newest good backup of this registered instance in the backup store.
        #[arg(long, value_name = "NAME", conflicts_with = "repository")]
        instance: Option<String>,
        /// Check the repository store (panel.toml [store] kind = "repository"): its structure
        /// (config, keys, indexes, every snapshot's trees) and a random tenth of its pack files
        /// read back and checked against their ids; exit 17 when anything is damaged.
        #[arg(long)]
        repository: bool,
        /// With --repository: which pack files to read back instead of a random tenth:
        /// `25%`, `1/7` (the first of 7 disjoint parts; `daily/week` takes today's part, so a
        /// week of runs reads everything), `500MiB`, or `none` (structure only).
        #[arg(
            long,
            value_name = "SUBSET",
            requires = "repository",
            conflicts_with = "read_all"
        )]
        read_sample: Option<String>,
        /// With --repository: read every pack file back (the whole repository).
        #[arg(long, requires = "repository")]
        read_all: bool,
        /// age identity file (AGE-SECRET-KEY-…), for encrypted backups.
        #[arg(long, value_name = "FILE")]
        identity: Option<Utf8PathBuf>,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// List an instance's backups, newest first: periodicity, time, size, status, full path
    /// (with the repository store: its snapshots, with id, time, periodicity and package).
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller backups blog\n  \
        aps-controller backups blog --remote --json")]
    Backups {
        /// The instance (registered, or removed but with backups left in the store).
        name: String,
        /// List the remote copy (panel.toml [remote]) instead of the local store.
        #[arg(long)]
        remote: bool,
        /// Print one JSON object (docs/json.md).
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        state: StateArgs,
    },
    /// Restore the newest good backup of NAME into the staging instance and check it.
    #[command(after_help = "EXAMPLES:\n  \
        aps-controller drill blog --staging blog-staging\n  \
        aps-controller drill blog --staging blog-staging --remote --identity key.txt --json")]
    Drill {
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
    },
}

pub fn run(c: PolicyCommand) -> ExitCode {
    let out = Out::new(match &c {
        PolicyCommand::Run { json, .. }
        | PolicyCommand::Prune { json, .. }
        | PolicyCommand::Verify { json, .. }
        | PolicyCommand::Backups { json, .. }
        | PolicyCommand::Drill { json, .. } => *json,
    });
    let code = out.finish(logged(out, c));
    // Stopped by a signal: whatever ran was rolled back; say so in the exit code.
    aps_controller::cancel::Cancel::process()
        .signal()
        .and_then(|s| crate::signals::interrupted_exit_code(Some(s)))
        .unwrap_or(code)
}

/// panel.toml and its stores, after the controller rolled back what a killed one left and
/// said so (stderr, and `recovered` in the JSON envelope): every command recovers first.
fn open(state: &StateArgs) -> Result<(Panel, Option<Controller>), Failure> {
    // A controller that cannot open is reported by the command's own next step.
    let controller = crate::common::open_controller(state).ok();
    Ok((open_panel(state)?, controller))
}

/// The engine over the controller [`open`] already opened (and recovered), else opened anew
/// for its error.
fn engine(panel: &Panel, controller: Option<Controller>) -> Result<Engine, Failure> {
    match controller {
        Some(c) => Ok(Engine::with_controller(c)),
        None => {
            Engine::open(&panel.state_dir).map_err(|e| Failure::from_panel(&PanelError::Engine(e)))
        }
    }
}

/// `backups NAME [--remote]` (the CLI, and `serve`'s `GET …/backups`): NAME's backups in
/// the store, newest first, or with the repository store its snapshots. A name that is not
/// registered and has none is `instance-not-found`.
pub fn backups_of(
    ctl: &Controller,
    panel: &Panel,
    name: &str,
    remote: bool,
) -> Result<crate::backup::Done, Failure> {
    check_instance_name("NAME", name)?;
    let (store, snapshots, entries) = if remote {
        let store = panel.files(remote).map_err(|e| Failure::from_panel(&e))?;
        let entries = list_backups(store, name).map_err(|e| Failure::from_panel(&e.into()))?;
        (store.describe(), None, entries)
    } else {
        let listing = panel
            .store
            .list(&panel.cx(), name)
            .map_err(|p| Failure::from_problem(&p))?;
        // A removed instance's backups are still listed; an unknown name without any is a
        // mistake worth saying so.
        if listing.is_empty() {
            require_registered(ctl, name)?;
        }
        (listing.store, listing.snapshots, listing.archives)
    };
    if let Some(snapshots) = snapshots {
        return Ok(list_snapshots(panel, &store, snapshots, entries, name));
    }
    if remote && entries.is_empty() {
        require_registered(ctl, name)?;
    }
    let mut text = format!("{} backups of {name} in {store}", entries.len());
    text += &archive_lines(&entries);
    Ok(crate::backup::Done {
        json: json!({
            "instance": name,
            "store": store,
            "backups": entries,
        }),
        text,
    })
}

/// One line per backup file: periodicity, time, size, status, full path.
fn archive_lines(entries: &[aps_panel::listing::BackupEntry]) -> String {
    let mut text = String::new();
    for e in entries {
        text += &format!(
            "\n  {:<10} {:<20} {:>10}  {:<12} {}",
            e.periodicity
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            e.time
                .map(|t| t.strftime("%Y-%m-%d %H:%M:%SZ").to_string())
                .unwrap_or_else(|| "-".into()),
            human_bytes(e.size),
            serde_json::to_value(e.status)
                .ok()
                .and_then(|v| v.as_str().map(str::to_owned))
                .unwrap_or_default(),
            e.path
        );
    }
    text
}

/// `backups NAME` of the repository store: its snapshots, newest first, then the archives
/// still in the archive store's folder (made before the switch to the repository), newest
/// first, so that a switch hides none of them.
fn list_snapshots(
    panel: &Panel,
    repository: &str,
    snapshots: Vec<aps_panel::store::repository::SnapshotInfo>,
    archives: Vec<aps_panel::listing::BackupEntry>,
    name: &str,
) -> crate::backup::Done {
    let mut text = format!(
        "{} snapshots of {name} in repository {repository}",
        snapshots.len()
    );
    for s in &snapshots {
        text += &format!(
            "\n  {}  {:<10} {:<20} {:<40} {:>10} added",
            &s.id[..8],
            s.periodicity
                .map(|p| p.to_string())
                .unwrap_or_else(|| "-".into()),
            s.time.strftime("%Y-%m-%d %H:%M:%SZ"),
            s.package
                .as_ref()
                .map(|p| format!("{} {}-{}", p.id, p.version, p.release))
                .unwrap_or_else(|| "-".into()),
            human_bytes(s.bytes_added)
        );
    }
    if !archives.is_empty() {
        text += &format!(
            "\n{} archives of {name} in {} (the archive store, from before the repository; \
             restore one with --from PATH)",
            archives.len(),
            panel.local.describe()
        );
        text += &archive_lines(&archives);
    }
    crate::backup::Done {
        json: json!({
            "instance": name,
            "store": repository,
            "snapshots": snapshots,
            "archive_store": panel.local.describe(),
            "archives": archives,
        }),
        text,
    }
}

/// A long-running command's last JSON line: the envelope with `type` `summary`.
fn summary_line(ok: bool, summary: Value, error: Option<&Failure>) -> Value {
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
/// shown by `aps-controller log`: open while they run, then `ok` or `failed` with what they
/// did. The backups, restores and uploads they run are entries of their own.
fn logged(out: Out, c: PolicyCommand) -> Result<ExitCode, Failure> {
    use aps_controller::journal::OperationKind;
    let what = match &c {
        PolicyCommand::Run {
            instances, state, ..
        } => Some((
            OperationKind::Run,
            if instances.is_empty() {
                "all".to_owned()
            } else {
                instances.join(",")
            },
            state,
        )),
        PolicyCommand::Prune {
            dry_run: false,
            state,
            ..
        } => Some((OperationKind::Prune, "all".to_owned(), state)),
        PolicyCommand::Drill { name, state, .. } => {
            Some((OperationKind::Drill, name.clone(), state))
        }
        _ => None,
    };
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
    let result = dispatch(out, c, &mut note);
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

fn dispatch(out: Out, c: PolicyCommand, note: &mut Option<String>) -> Result<ExitCode, Failure> {
    match c {
        PolicyCommand::Run {
            periodicity,
            instances,
            jobs,
            json,
            state,
        } => {
            for name in &instances {
                check_instance_name("--instance", name)?;
            }
            let (panel, controller) = open(&state)?;
            let mut engine = engine(&panel, controller)?;
            // Unknown names are refused before any backup starts.
            let registered = engine
                .instances()
                .map_err(|e| Failure::from_panel(&PanelError::Engine(e)))?;
            let unknown: Vec<String> = instances
                .iter()
                .filter(|i| registered.binary_search(i).is_err())
                .map(|u| format!("{u:?}"))
                .collect();
            if !unknown.is_empty() {
                return Err(Failure::new(
                    ErrorKind::InstanceNotFound,
                    format!(
                        "--instance names no registered instance: {}; `aps-controller instance list` shows them",
                        unknown.join(", ")
                    ),
                ));
            }
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
            let jobs = jobs.map(|j| j as usize).or(panel.config.jobs).unwrap_or(2);
            let progress = crate::progress::for_panel(json);
            if !progress.is_hidden() {
                engine.set_progress(Some(std::sync::Arc::new(OperationProgress::new(
                    std::sync::Arc::clone(&progress),
                ))));
            }
            let options = RunOptions {
                periodicity,
                instances,
                jobs,
            };
            let s = run_backups(&panel, &engine, &options, &SystemClock, progress.as_ref())
                .map_err(|e| Failure::from_panel(&e))?;
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
            if json {
                let mut summary = serde_json::to_value(&s).expect("reports serialise");
                if let Some(obj) = summary.as_object_mut() {
                    obj.insert("state_dir".into(), state_dir.root().as_str().into());
                    obj.insert("state_source".into(), state_source.as_str().into());
                }
                outln!("{}", summary_line(s.success(), summary, failure.as_ref()));
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
                            crate::common::errln!(
                                "aps-controller: {}: {step} failed: {e}",
                                o.instance
                            );
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
                        crate::common::errln!(
                            "aps-controller: retention in {} failed: {e}",
                            r.repository
                        );
                    }
                }
            }
            // Exit 1 when an instance failed (README, "Exit codes").
            Ok(if s.success() {
                ExitCode::SUCCESS
            } else {
                ExitCode::from(1)
            })
        }
        PolicyCommand::Prune {
            dry_run,
            json: _,
            state,
        } => {
            let (panel, _) = open(&state)?;
            let now = jiff::Timestamp::now();
            let pruned = panel.store.prune(&panel.cx(), now, dry_run).map_err(|e| {
                let mut f = Failure::new(ErrorKind::Internal, e.message);
                if let Some(r) = e.repository {
                    f = f.with("repository", r);
                }
                f.with("stores", serde_json::to_value(&e.done).expect("serialise"))
            })?;
            let (done, repository) = (pruned.stores, pruned.repository);
            *note = Some(
                done.iter()
                    .map(print_prune)
                    .chain(repository.as_ref().map(print_repository_prune))
                    .collect::<Vec<_>>()
                    .join("; "),
            );
            let mut report = json!({ "dry_run": dry_run, "stores": done });
            if let Some(r) = &repository {
                report["repository"] = serde_json::to_value(r).expect("serialise");
            }
            Ok(out.success(&report, || {
                let mut lines: Vec<String> = done.iter().map(print_prune).collect();
                lines.extend(repository.as_ref().map(print_repository_prune));
                lines.join("\n")
            }))
        }
        PolicyCommand::Verify {
            repository: true,
            read_sample,
            read_all,
            state,
            ..
        } => verify_repository(out, &state, read_sample.as_deref(), read_all),
        PolicyCommand::Verify {
            file,
            instance,
            identity,
            json: _,
            state,
            ..
        } => {
            if let Some(i) = &instance {
                check_instance_name("--instance", i)?;
            }
            let (panel, controller) = open(&state)?;
            let engine = engine(&panel, controller)?;
            let file = match (file, instance) {
                (Some(f), _) => f,
                (None, Some(i)) => {
                    require_registered(engine.controller(), &i)?;
                    aps_panel::manual::latest(&panel, &i).map_err(|e| Failure::from_panel(&e))?
                }
                (None, None) => {
                    return Err(Failure::usage("give FILE or --instance NAME"));
                }
            };
            // `--identity`, else panel.toml's `identity-file`.
            let identity = identity.or_else(|| panel.config.identity_file(&panel.state_dir));
            let detail = engine
                .verify_archive(&file, identity.as_deref())
                .map_err(|e| {
                    Failure::from_panel(&PanelError::Engine(e)).with("file", file.as_str())
                })?;
            Ok(out.success(&json!({ "file": file, "detail": detail }), || {
                format!(
                    "{file}: ok{}",
                    if detail.is_empty() {
                        String::new()
                    } else {
                        format!(" ({detail})")
                    }
                )
            }))
        }
        PolicyCommand::Backups {
            name,
            remote,
            json: _,
            state,
        } => {
            check_instance_name("NAME", &name)?;
            let (panel, controller) = open(&state)?;
            let engine = engine(&panel, controller)?;
            let done = backups_of(engine.controller(), &panel, &name, remote)?;
            Ok(out.success(&done.json, || done.text))
        }
        PolicyCommand::Drill {
            name,
            staging,
            identity,
            remote,
            json,
            state,
        } => {
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
            let progress = crate::progress::for_panel(json);
            let r = drill(
                &panel,
                &engine,
                &DrillOptions {
                    instance: name,
                    staging,
                    identity,
                    remote,
                },
                progress.as_ref(),
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
    }
}

/// Exit 4 with `instance-not-found` for a name that is not registered.
fn require_registered(ctl: &Controller, name: &str) -> Result<(), Failure> {
    let registered = ctl.instances().map_err(|e| {
        Failure::from_panel(&PanelError::Engine(
            aps_panel::engine::EngineError::Instances {
                message: e.to_string(),
            },
        ))
    })?;
    if registered.iter().any(|r| r.name == name) {
        Ok(())
    } else {
        Err(Failure::new(
            ErrorKind::InstanceNotFound,
            format!(
                "no registered instance named {name:?}; `aps-controller instance list` shows them"
            ),
        ))
    }
}

/// `verify --repository`: the engine's check plus packs read back; damage is exit 17
/// (`invalid-backup`) with every finding in `error.errors`.
fn verify_repository(
    out: Out,
    state: &StateArgs,
    read_sample: Option<&str>,
    read_all: bool,
) -> Result<ExitCode, Failure> {
    use aps_panel::store::repository::verify::ReadData;
    let read = match (read_all, read_sample) {
        (true, _) => ReadData::All,
        (false, Some(s)) => ReadData::parse_sample(s).map_err(Failure::usage)?,
        (false, None) => ReadData::Sample(ReadData::DEFAULT_SAMPLE.to_owned()),
    };
    let (panel, _) = open(state)?;
    let report = panel.store.verify(&panel.cx(), &read).map_err(|e| {
        let f = Failure::from_problem(&e.problem);
        match e.repository {
            Some(r) => f.with("repository", r),
            None => f,
        }
    })?;
    if !report.is_ok() {
        return Err(Failure::new(
            ErrorKind::InvalidBackup,
            format!(
                "repository {} is damaged: {}",
                report.repository,
                report.errors.join("; ")
            ),
        )
        .at("check-repository")
        .with("repository", report.repository.clone())
        .with("errors", report.errors.clone())
        .with("warnings", report.warnings.clone()));
    }
    Ok(out.success(&report, || {
        let read = match &report.read_data {
            ReadData::None => "structure only".to_owned(),
            ReadData::All => "every pack read back".to_owned(),
            ReadData::Sample(s) => format!("packs read back: {s}"),
        };
        let mut text = format!(
            "repository {}: ok, {} snapshot(s), {read}",
            report.repository, report.snapshots
        );
        for w in &report.warnings {
            text += &format!("\n  note: {w}");
        }
        text
    }))
}

/// `  repository R: forgot 3 snapshots (blog 2, shop 1), kept 24; prune: …`.
fn repository_retention_text(r: &aps_panel::store::repository::retention::RunRetention) -> String {
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
        (Some(p), _) => {
            text += &format!(
                "; prune: {} pack(s) deleted ({}), {} marked for the next prune, {} repacked",
                p.deleted_packs,
                human_bytes(p.deleted_bytes),
                p.marked_packs + p.unindexed_packs,
                p.repacked_packs
            );
        }
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

fn print_repository_prune(p: &aps_panel::store::repository::retention::RepositoryPrune) -> String {
    let verb = if p.dry_run { "would forget" } else { "forgot" };
    let mut text = format!(
        "repository {}: kept {} snapshot(s), {verb} {}, ignored {}",
        p.repository,
        p.kept.len(),
        p.forgotten.len(),
        p.ignored.len()
    );
    for s in &p.forgotten {
        text += &format!("\n  {verb} {} {} {}", &s.id[..8], s.instance, s.time);
    }
    if let Some(r) = &p.prune {
        text += &format!(
            "\n  prune: {} pack(s) deleted ({}), {} marked for the next prune, {} repacked",
            r.deleted_packs,
            human_bytes(r.deleted_bytes),
            r.marked_packs + r.unindexed_packs,
            r.repacked_packs
        );
    }
    text
}

fn print_prune(p: &StorePrune) -> String {
    let verb = if p.dry_run { "would remove" } else { "removed" };
    let mut text = format!(
        "{}: kept {}, {verb} {}, ignored {}",
        p.store,
        p.kept.len(),
        p.removed.len(),
        p.ignored.len()
    );
    for k in &p.removed {
        text += &format!("\n  {verb} {k}");
    }
    text
}
