//! The start and the end of a run: the sandbox, and beside it the run's root-only folder with
//! a controller of its own (the host's database servers, interpreters and limits, but a
//! throwaway state, so the host's registry never sees a sandbox instance); at the end every
//! instance the run left is removed with its databases, then the sandbox.

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::time::Duration;

use camino::Utf8PathBuf;

use aps_controller::Controller;
use aps_controller::database::provision;
use aps_controller::operation::remove::RemoveRequest;
use aps_controller::registry::StateDir;

use super::{Context, RunOptions, steps};
use crate::error::ConformanceError;
use crate::report::StepRow;
use crate::sandbox::Sandbox;

/// What a run starts with: its sandbox, its controller and its work folder.
pub(super) struct Started {
    pub sandbox: Sandbox,
    pub controller: Controller,
    pub work: Utf8PathBuf,
}

/// Removes what crashed runs left, makes the sandbox and the run folder
/// (`base/.NAME.run/{state,work}`, root's, 0700) and opens the run's controller.
pub(super) fn start(options: &RunOptions) -> Result<Started, ConformanceError> {
    crate::sandbox::sweep(&options.sandbox.base)?;
    let sandbox = Sandbox::create(&options.sandbox)?;
    // From here on a failure drops `sandbox`, which removes it and the run folder.
    let run = sandbox.run_folder();
    let (state, work) = (run.join("state"), run.join("work"));
    for dir in [&run, &state, &work] {
        std::fs::DirBuilder::new()
            .mode(0o700)
            .create(dir)
            .map_err(ConformanceError::io("create", dir))?;
        // The umask may have taken bits; root's only, whatever it is.
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(ConformanceError::io("set the mode of", dir))?;
    }
    let mut config = options.host.clone();
    config.state = StateDir::at(state.clone());
    if let Some(timeout) = options.timeout {
        config.default_timeout = timeout;
    }
    let controller = Controller::open(config).map_err(|e| ConformanceError::Controller {
        state,
        source: Box::new(e),
    })?;
    Ok(Started {
        sandbox,
        controller,
        work,
    })
}

/// Ends a run: unless the sandbox is kept, every instance still registered (the install
/// passed but the remove did not run or failed, or a round left one) is removed, or at least
/// its databases and users dropped; then the sandbox ends. What could not be removed is a
/// failed row of its own. Fills `sandbox` and `duration_ms` of the report.
pub(super) fn finish(cx: Context<'_>, started: std::time::Instant) -> crate::report::Report {
    let Context {
        controller,
        sandbox,
        mut report,
        progress,
        ..
    } = cx;
    let cleaning = std::time::Instant::now();
    let mut left = Vec::new();
    if !sandbox.keep() {
        left = remove_instances(&controller);
    }
    drop(controller);
    match sandbox.finish() {
        Ok(ending) => report.sandbox = Some(ending),
        Err(e) => left.push(format!("the sandbox: {e}")),
    }
    if !left.is_empty() {
        progress(super::Event::Started {
            step: steps::CLEANUP,
        });
        report.rows.push(StepRow::fail(
            steps::CLEANUP,
            cleaning.elapsed(),
            format!("left behind: {}", left.join("; ")),
            None,
        ));
        if let Some(row) = report.rows.last() {
            progress(super::Event::Finished { row });
        }
    }
    report.duration_ms = started.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    report
}

/// Removes every instance of the run's controller; returns what it could not remove.
pub(crate) fn remove_instances(controller: &Controller) -> Vec<String> {
    let mut left = Vec::new();
    let instances = match controller.instances() {
        Ok(instances) => instances,
        Err(e) => return vec![format!("the run's instances could not be listed: {e}")],
    };
    for instance in instances {
        let mut request = RemoveRequest::new(&instance.name);
        request.timeout = Some(Duration::from_secs(600).min(controller.config().default_timeout));
        if controller.remove(&request).is_ok() {
            continue;
        }
        // The package's remove failed: its databases and users go all the same.
        let created = instance
            .installed
            .as_ref()
            .map(|i| i.created_databases.clone())
            .unwrap_or_default();
        for (id, db) in created {
            let dropped = controller
                .config()
                .database_server(&db.server)
                .map_err(|e| e.to_string())
                .and_then(|server| provision::drop(server, &db).map_err(|e| e.to_string()));
            if let Err(e) = dropped {
                left.push(format!(
                    "database `{}` and user `{}` of instance {} ({id}): {e}",
                    db.database, db.login, instance.name
                ));
            }
        }
    }
    left
}
