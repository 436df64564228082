//! `run`: back up every registered instance (or the named ones) for one periodicity, with
//! bounded parallelism, carrying on past failures; then, per successful backup, copy it off the
//! machine and apply retention to that instance.

use std::collections::VecDeque;
use std::sync::Mutex;

use camino::Utf8PathBuf;
use jiff::Timestamp;
use serde::Serialize;

use crate::clock::Clock;
use crate::context::{Panel, PanelError};
use crate::engine::Engine;
use crate::naming::BackupName;
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use crate::progress::{Event, Progress};
use crate::prune::{StorePrune, prune_store};
use crate::store::Upload;
use aps_controller::ErrorKind;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub periodicity: Periodicity,
    /// Empty: every registered instance.
    pub instances: Vec<String>,
    pub jobs: usize,
}

/// The step an instance failed at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Step {
    Backup,
    Upload,
    Prune,
}

#[derive(Debug, Clone, Serialize)]
pub struct InstanceOutcome {
    pub instance: String,
    pub ok: bool,
    /// The first step that failed; later steps of the same instance are skipped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub failed_step: Option<Step>,
    /// Kind, controller step and message of the failure.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<Utf8PathBuf>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The repository store's snapshot (full id); `size` is then the bytes it added.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub upload: Option<Upload>,
    /// Files removed by retention, local then remote.
    pub pruned: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct RunSummary {
    pub periodicity: Periodicity,
    pub started: Timestamp,
    /// Instances whose every step succeeded.
    pub succeeded: usize,
    pub failed: usize,
    pub instances: Vec<InstanceOutcome>,
    /// Instances marked `role = "staging"` that this run did not back up (a run of every
    /// instance leaves them out; one named with `--instance` is backed up).
    pub staging_left_out: Vec<String>,
    /// With the repository store: retention over the repository once every backup ended.
    #[cfg(feature = "repository")]
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_retention: Option<crate::store::repository::retention::RunRetention>,
}

impl RunSummary {
    pub fn success(&self) -> bool {
        #[cfg(feature = "repository")]
        if self
            .repository_retention
            .as_ref()
            .is_some_and(|r| r.error.is_some())
        {
            return false;
        }
        self.failed == 0
    }
}

/// Runs the backups. Errors only when the work cannot even be listed (e.g. the registry is
/// unreadable); a failing instance is reported in the summary instead.
pub fn run(
    panel: &Panel,
    engine: &Engine,
    options: &RunOptions,
    clock: &dyn Clock,
    progress: &Progress,
) -> Result<RunSummary, PanelError> {
    let started = clock.now();
    let records =
        engine
            .controller()
            .instances()
            .map_err(|e| crate::engine::EngineError::Instances {
                message: e.to_string(),
            })?;
    let mut registered: Vec<String> = records.iter().map(|i| i.name.clone()).collect();
    registered.sort();
    let mut staging_left_out: Vec<String> = records
        .iter()
        .filter(|i| i.is_staging())
        .map(|i| i.name.clone())
        .collect();
    staging_left_out.sort();
    // The repository store, opened once for every instance (retention and off-machine copies
    // of snapshots are not part of `run` yet: docs/repository.md).
    let repository = crate::repository::open(panel).map_err(|p| PanelError::Usage(p.message))?;
    // Every instance but the staging ones (a drill overwrites those), or what was named.
    let mut wanted: Vec<String> = if options.instances.is_empty() {
        registered
            .iter()
            .filter(|n| staging_left_out.binary_search(n).is_err())
            .cloned()
            .collect()
    } else {
        staging_left_out.clear();
        options.instances.clone()
    };
    wanted.sort();
    wanted.dedup();
    progress.emit(Event::Start {
        operation: "backup",
        total: wanted.len() as u64,
    });

    let queue = Mutex::new(wanted.iter().enumerate().collect::<VecDeque<_>>());
    let results: Mutex<Vec<Option<InstanceOutcome>>> = Mutex::new(vec![None; wanted.len()]);
    let jobs = options.jobs.clamp(1, wanted.len().max(1));
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                loop {
                    let Some((i, instance)) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    progress.emit(Event::ItemStart { item: instance });
                    let outcome = if let (Ok(_), Some(store)) =
                        (registered.binary_search(instance), &repository)
                    {
                        snapshot_one(panel, engine, store, instance, options.periodicity)
                    } else if registered.binary_search(instance).is_ok() {
                        back_up_one(panel, engine, instance, options.periodicity, clock)
                    } else {
                        InstanceOutcome::failed(
                            instance,
                            Step::Backup,
                            Problem::new(
                                ErrorKind::InstanceNotFound,
                                None,
                                format!(
                                    "no registered instance named {instance:?}; `aps-controller instance list` shows them"
                                ),
                            ),
                            0,
                        )
                    };
                    progress.emit(Event::ItemDone {
                        item: instance,
                        ok: outcome.ok,
                        error: outcome.error.as_ref().map(|p| p.message.as_str()),
                    });
                    results.lock().expect("results")[i] = Some(outcome);
                }
            });
        }
    });
    progress.finish();
    let instances: Vec<InstanceOutcome> = results
        .into_inner()
        .expect("results")
        .into_iter()
        .map(|o| o.expect("every item ran"))
        .collect();
    // The repository is pruned once, after every backup of the run: a prune never runs beside
    // a backup of this run (and its two-phase deletion covers backups of other processes).
    #[cfg(feature = "repository")]
    let repository_retention = panel
        .config
        .repository(&panel.state_dir)
        .and_then(|settings| {
            let ok: Vec<String> = instances
                .iter()
                .filter(|o| o.ok)
                .map(|o| o.instance.clone())
                .collect();
            (!ok.is_empty()).then(|| {
                crate::store::repository::retention::after_run(
                    &settings,
                    &ok,
                    &panel.policy,
                    clock.now(),
                )
            })
        });
    let succeeded = instances.iter().filter(|o| o.ok).count();
    Ok(RunSummary {
        periodicity: options.periodicity,
        started,
        succeeded,
        failed: instances.len() - succeeded,
        instances,
        staging_left_out,
        #[cfg(feature = "repository")]
        repository_retention,
    })
}

impl InstanceOutcome {
    fn failed(instance: &str, step: Step, error: Problem, duration_ms: u64) -> Self {
        InstanceOutcome {
            instance: instance.to_owned(),
            ok: false,
            failed_step: Some(step),
            error: Some(error),
            file: None,
            size: None,
            sha256: None,
            snapshot: None,
            duration_ms,
            upload: None,
            pruned: Vec::new(),
        }
    }
}

/// One instance into the repository store: one snapshot.
fn snapshot_one(
    panel: &Panel,
    engine: &Engine,
    store: &crate::store::repository::RepositoryStore,
    instance: &str,
    periodicity: Periodicity,
) -> InstanceOutcome {
    let t0 = std::time::Instant::now();
    match crate::repository::backup(panel, engine.controller(), store, instance, periodicity) {
        Ok(snap) => InstanceOutcome {
            instance: instance.to_owned(),
            ok: true,
            failed_step: None,
            error: None,
            file: None,
            size: Some(snap.bytes_added),
            sha256: None,
            snapshot: Some(snap.id),
            duration_ms: t0.elapsed().as_millis() as u64,
            upload: None,
            pruned: Vec::new(),
        },
        Err(e) => {
            InstanceOutcome::failed(instance, Step::Backup, e, t0.elapsed().as_millis() as u64)
        }
    }
}

fn back_up_one(
    panel: &Panel,
    engine: &Engine,
    instance: &str,
    periodicity: Periodicity,
    clock: &dyn Clock,
) -> InstanceOutcome {
    let t0 = std::time::Instant::now();
    let ms = |t0: std::time::Instant| t0.elapsed().as_millis() as u64;
    let name = BackupName::new(
        instance,
        periodicity,
        clock.now(),
        panel.config.archive_format(),
    );
    // A store inside the instance's own web folder: refused, as `backup` refuses it.
    let store_file = panel.local.instance_dir(instance).join(name.file_name());
    match engine.web_dirs(instance) {
        Ok(dirs) => {
            if let Some((mapping, dir)) = crate::manual::web_dir_containing(&store_file, &dirs) {
                let message = crate::manual::inside_web_dir_message(
                    "the backup store (panel.toml `store`)",
                    panel.local.root(),
                    &mapping,
                    &dir,
                );
                return InstanceOutcome::failed(
                    instance,
                    Step::Backup,
                    Problem::new(
                        ErrorKind::DestinationRefused,
                        Some("3.1-check-destination"),
                        message,
                    ),
                    ms(t0),
                );
            }
        }
        Err(e) => return InstanceOutcome::failed(instance, Step::Backup, e.problem(), ms(t0)),
    }
    // Held until the backup is written, so a second run in the same second takes `.2`.
    let report = panel
        .local
        .reserve(&name)
        .map_err(|e| store_problem(&e))
        .and_then(|reserved| {
            engine
                .backup(instance, &reserved.path, &panel.archive_choice())
                .map(|r| (r, reserved.name.clone()))
                .map_err(|e| e.problem())
        });
    let (report, name) = match report {
        Ok(r) => r,
        Err(e) => return InstanceOutcome::failed(instance, Step::Backup, e, ms(t0)),
    };
    let mut outcome = InstanceOutcome {
        instance: instance.to_owned(),
        ok: true,
        failed_step: None,
        error: None,
        file: Some(report.file.clone()),
        size: Some(report.size),
        sha256: Some(report.sha256.clone()),
        snapshot: None,
        duration_ms: 0,
        upload: None,
        pruned: Vec::new(),
    };
    let fail = |o: &mut InstanceOutcome, step, e: Problem| {
        o.ok = false;
        o.failed_step = Some(step);
        o.error = Some(e);
    };
    // Retention only after a successful backup, so a run of failures never thins the store.
    match prune_store(
        &panel.local,
        Some(instance),
        &panel.policy,
        clock.now(),
        false,
    ) {
        Ok(p) => outcome.pruned.extend(removed_keys(&p)),
        Err(e) => fail(&mut outcome, Step::Prune, store_problem(&e)),
    }
    if let Some(remote) = &panel.remote {
        let key = format!("{instance}/{}", name.file_name());
        // In the history that `aps-controller log` shows; a journal that cannot be written
        // does not stop the copy (the backup before it would have failed already).
        let logged = engine
            .controller()
            .journal()
            .begin(aps_controller::journal::OperationKind::Upload, instance)
            .ok();
        let uploaded = remote.upload(&report.file, &key, &report.sha256);
        if let Some(entry) = logged {
            let _ = match &uploaded {
                Ok(u) => entry.finish_ok_saying(Some(&format!(
                    "{}{} ({})",
                    remote.describe(),
                    u.key,
                    aps_controller::error::human_bytes(u.size)
                ))),
                Err(e) => entry.finish_failed(&e.to_string()),
            };
        }
        match uploaded {
            Ok(u) => {
                outcome.upload = Some(u);
                // The remote is pruned only once it holds this backup.
                match prune_store(
                    remote.as_ref(),
                    Some(instance),
                    &panel.policy,
                    clock.now(),
                    false,
                ) {
                    Ok(p) => outcome
                        .pruned
                        .extend(removed_keys(&p).map(|k| format!("remote:{k}"))),
                    Err(e) if outcome.ok => fail(&mut outcome, Step::Prune, store_problem(&e)),
                    Err(_) => {}
                }
            }
            Err(e) => fail(
                &mut outcome,
                Step::Upload,
                Problem::new(ErrorKind::ResourceFailed, None, e.to_string()),
            ),
        }
    }
    outcome.duration_ms = ms(t0);
    outcome
}

/// A store that cannot be written or pruned: a missing configured store is the user's to fix.
fn store_problem(e: &crate::store::StoreError) -> Problem {
    let kind = match e {
        crate::store::StoreError::Missing { .. } => ErrorKind::Usage,
        _ => ErrorKind::Internal,
    };
    Problem::new(kind, None, e.to_string())
}

fn removed_keys(p: &StorePrune) -> impl Iterator<Item = String> + '_ {
    p.removed.iter().cloned()
}
