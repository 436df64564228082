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
use crate::periodicity::Periodicity;
use crate::problem::Problem;
use crate::progress::{Event, Progress};
pub use crate::store::Step;
use crate::store::snapshot::RunRetention;
use crate::store::{Made, Upload};
use aps_controller::ErrorKind;

#[derive(Debug, Clone)]
pub struct RunOptions {
    pub periodicity: Periodicity,
    /// Empty: every registered instance.
    pub instances: Vec<String>,
    pub jobs: usize,
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
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repository_retention: Option<RunRetention>,
    /// Outcomes that could not be written to the backup status (`aps-controller status`); the
    /// backups themselves are unaffected.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub status_errors: Vec<String>,
}

impl RunSummary {
    pub fn success(&self) -> bool {
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
    progress: &dyn Progress,
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
    // The store, opened once for every instance (for the repository store, retention and
    // off-machine copies of snapshots are not part of `run` yet: docs/repository.md).
    panel.store.open(&panel.cx()).map_err(|p| {
        if p.kind == ErrorKind::RemoteUnreachable.as_str() {
            PanelError::Engine(crate::engine::EngineError::Store { problem: p })
        } else {
            PanelError::Usage(p.message)
        }
    })?;
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
    let status_errors: Mutex<Vec<String>> = Mutex::new(Vec::new());
    let jobs = options.jobs.clamp(1, wanted.len().max(1));
    // The workers format their errors as the caller's front end spells the overrides.
    let spelling = aps_controller::error::current_spelling();
    std::thread::scope(|s| {
        for _ in 0..jobs {
            s.spawn(|| {
                aps_controller::error::spelled_as(spelling, || loop {
                    let Some((i, instance)) = queue.lock().expect("queue").pop_front() else {
                        break;
                    };
                    progress.emit(Event::ItemStart { item: instance });
                    let outcome = if registered.binary_search(instance).is_ok() {
                        let outcome =
                            back_up_one(panel, engine, instance, options.periodicity, clock);
                        if let Err(e) = record_status(panel, &outcome, options.periodicity, clock)
                        {
                            status_errors.lock().expect("status errors").push(e.to_string());
                        }
                        outcome
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
                })
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
    // Retention the store does once every backup of the run ended, over those that succeeded.
    let ok: Vec<String> = instances
        .iter()
        .filter(|o| o.ok)
        .map(|o| o.instance.clone())
        .collect();
    let repository_retention = if ok.is_empty() {
        None
    } else {
        panel.store.after_run(&panel.cx(), &ok, clock.now())
    };
    let succeeded = instances.iter().filter(|o| o.ok).count();
    Ok(RunSummary {
        periodicity: options.periodicity,
        started,
        succeeded,
        failed: instances.len() - succeeded,
        instances,
        staging_left_out,
        repository_retention,
        status_errors: status_errors.into_inner().expect("status errors"),
    })
}

/// One instance's outcome into its backup status file ([`crate::status`]).
fn record_status(
    panel: &Panel,
    outcome: &InstanceOutcome,
    periodicity: Periodicity,
    clock: &dyn Clock,
) -> Result<(), crate::status::StatusError> {
    use crate::status::{Recorded, Success, record};
    let now = clock.now();
    // A backup made before a later step (the upload, retention) failed is still a good one.
    if outcome.file.is_some() || outcome.snapshot.is_some() {
        let made = Success {
            time: now,
            size: outcome.size.unwrap_or(0),
            duration_ms: outcome.duration_ms,
            file: outcome.file.clone(),
            snapshot: outcome.snapshot.clone(),
        };
        record(
            &panel.state_dir,
            &outcome.instance,
            periodicity,
            Recorded::Success(made),
        )?;
    }
    if let Some(problem) = &outcome.error {
        let failed = Recorded::Failure {
            at: now,
            duration_ms: outcome.duration_ms,
            problem,
        };
        record(&panel.state_dir, &outcome.instance, periodicity, failed)?;
    }
    Ok(())
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

/// One instance into the store: the backup, then what the store does after it.
fn back_up_one(
    panel: &Panel,
    engine: &Engine,
    instance: &str,
    periodicity: Periodicity,
    clock: &dyn Clock,
) -> InstanceOutcome {
    let t0 = std::time::Instant::now();
    let ms = |t0: std::time::Instant| t0.elapsed().as_millis() as u64;
    let cx = panel.cx();
    let ctl = engine.controller();
    let made = match panel.store.backup(&cx, ctl, instance, periodicity, clock) {
        Ok(made) => made,
        Err(e) => return InstanceOutcome::failed(instance, Step::Backup, e, ms(t0)),
    };
    let mut outcome = InstanceOutcome {
        instance: instance.to_owned(),
        ok: true,
        failed_step: None,
        error: None,
        file: None,
        size: None,
        sha256: None,
        snapshot: None,
        duration_ms: 0,
        upload: None,
        pruned: Vec::new(),
    };
    match &made {
        Made::File(report) => {
            outcome.file = Some(report.file.clone());
            outcome.size = Some(report.size);
            outcome.sha256 = Some(report.sha256.clone());
        }
        Made::Snapshot(snap) => {
            outcome.size = Some(snap.bytes_added);
            outcome.snapshot = Some(snap.id.clone());
        }
    }
    let after = panel.store.after_backup(&cx, ctl, instance, &made, clock);
    outcome.pruned = after.pruned;
    outcome.upload = after.upload;
    if let Some((step, e)) = after.failed {
        outcome.ok = false;
        outcome.failed_step = Some(step);
        outcome.error = Some(e);
    }
    outcome.duration_ms = ms(t0);
    outcome
}
