//! Remove: an instance taken away in the standard's order (§8.6), journaled so that a kill
//! leaves either the whole instance or a removal the next start finishes.
//!
//! 1. checks, nothing changed: the instance, its account, its lock, its package and
//!    configuration script, what its install made (the record's [`Installed`]) and the
//!    servers of the databases it created;
//! 2. `configure remove` as the instance's account; a failure (or a kill) stops here with
//!    nothing deleted;
//! 3. the point of no return: the whole list of what to take away is written to the journal
//!    in one write, as the entry's undo list, so that recovery *finishes* the removal;
//! 4. the install's top-level names in the root web folder (by descriptor, nothing followed),
//!    the folder itself when the install made it and it is empty, the databases and users it
//!    created, and the record, last.
//!
//! With `keep_data` only the record is removed: no script runs, nothing is freed.

use std::os::fd::AsFd;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::controller::Controller;
use crate::environment::{ScriptOperation, build_environment_with};
use crate::error::{OperationError, RemoveRefusal, Step};
use crate::journal::{OperationKind, UndoAction};
use crate::operation::script_run::{self, ScriptRun};
use crate::operation::tenant::{HandOver, TenantDir};
use crate::registry::{Installed, Instance};

/// What to remove.
#[derive(Debug, Clone)]
pub struct RemoveRequest {
    pub name: String,
    /// Remove the record only: no script, files and databases kept.
    pub keep_data: bool,
    /// Timeout of `configure remove`; `None` means the configured default.
    pub timeout: Option<Duration>,
}

impl RemoveRequest {
    pub fn new(name: impl Into<String>) -> Self {
        RemoveRequest {
            name: name.into(),
            keep_data: false,
            timeout: None,
        }
    }
}

/// A database of the removed instance and what became of it.
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseRemoved {
    pub id: String,
    pub name: String,
    pub login: String,
    /// `true`: the install created it and it was dropped with its user; `false`: an
    /// `existing:` one (or `keep_data`), left as it is.
    pub dropped: bool,
}

/// The outcome of a removal.
#[derive(Debug, Clone, Serialize)]
pub struct RemoveReport {
    pub instance: String,
    pub keep_data: bool,
    /// The root web folder.
    pub web_root: Option<Utf8PathBuf>,
    /// Whether `configure remove` ran.
    pub configure_ran: bool,
    /// The names taken out of the root web folder (what the install made there).
    pub files_removed: Vec<String>,
    /// The root web folder itself was removed (the install made it and nothing else was in it).
    pub web_root_removed: bool,
    /// Names in the root web folder the install did not make: the tenant's, left in place.
    pub kept: Vec<String>,
    pub databases: Vec<DatabaseRemoved>,
    pub duration_ms: u64,
}

/// [`Controller::remove`].
pub fn remove(ctl: &Controller, request: &RemoveRequest) -> Result<RemoveReport, OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let instance = ctl.find_instance(&request.name)?;
    let _lock = ctl.lock_instance(&instance.name, "remove")?;
    let mut report = RemoveReport {
        instance: instance.name.clone(),
        keep_data: request.keep_data,
        web_root: instance.root_web_dir().cloned(),
        configure_ran: false,
        files_removed: Vec::new(),
        web_root_removed: false,
        kept: Vec::new(),
        databases: instance
            .databases
            .iter()
            .map(|(id, db)| DatabaseRemoved {
                id: id.clone(),
                name: db.name.clone(),
                login: db.login.clone(),
                dropped: false,
            })
            .collect(),
        duration_ms: 0,
    };
    if request.keep_data {
        let op = ctl.begin_operation(
            OperationKind::Remove,
            &instance.name,
            Step::RemoveData,
            |_| {
                vec![UndoAction::Unregister {
                    instance: instance.name.clone(),
                }]
            },
        )?;
        return match op.do_action(
            ctl,
            &UndoAction::Unregister {
                instance: instance.name.clone(),
            },
        ) {
            Ok(()) => {
                op.succeed();
                report.duration_ms = started.elapsed().as_millis() as u64;
                Ok(report)
            }
            Err(e) => Err(op.fail(OperationError::RemoveIncomplete {
                instance: instance.name.clone(),
                leftovers: vec![format!("the record: {e}")],
            })),
        };
    }

    // 1. Checks: nothing changes until all of them pass.
    let installed = removable(ctl, &instance)?;
    let account = ctl.instance_account(&instance)?;
    let package = ctl.open_package(&instance)?;
    let script = script_run::find_configuration_script(&instance, &package, Step::RemoveConfigure)?;
    let interpreter = match &script {
        Some(s) => Some(script_run::resolve_interpreter(ctl, s)?),
        None => None,
    };
    let env = build_environment_with(
        &instance,
        &package.meta,
        ScriptOperation::Remove,
        &ctl.config().host,
    )
    .map_err(|source| OperationError::Environment {
        step: Step::BuildEnvironment,
        source,
    })?;
    let finish = finishing_actions(&instance, &installed);
    ctl.check_cancel(Step::RemoveConfigure)?;

    // 2. `configure remove`: a failure or a kill leaves the whole instance.
    let mut op = ctl.begin_operation(
        OperationKind::Remove,
        &instance.name,
        Step::RemoveConfigure,
        |_| Vec::new(),
    )?;
    if let (Some(script), Some(interpreter)) = (&script, &interpreter) {
        let account = account.as_ref().filter(|a| !a.is_current());
        let scripts = package.root.join("scripts");
        let tenant = match account {
            Some(a) => match TenantDir::new(a, &scripts, HandOver::None) {
                Ok(t) => Some(t),
                Err(e) => {
                    return Err(op.fail(OperationError::io(
                        Step::RemoveConfigure,
                        "cannot prepare the run folder of the instance's account for the scripts in",
                        scripts,
                    )(e)));
                }
            },
            None => None,
        };
        let run = ScriptRun {
            argument: "remove",
            timeout: request.timeout,
            work: op.work(),
            step: Step::RemoveConfigure,
            account,
            tenant: tenant.as_ref(),
            instance: &instance.name,
        };
        if let Err(error) =
            script_run::run_package_script(ctl, &package, (script, interpreter), &env, &run)
        {
            let error = error.interrupted_by(ctl.cancel().signal());
            return Err(op.fail(error));
        }
        report.configure_ran = true;
    }
    if let Err(error) = ctl.check_cancel(Step::RemoveData) {
        return Err(op.fail(error));
    }

    // 3. The point of no return: from here on recovery finishes the removal.
    if let Err(error) = op.add_undos(finish.clone(), Step::RemoveData) {
        return Err(op.fail(error));
    }

    // 4. Taken away in the order recovery would: files, databases, the record last. A
    //    signal no longer stops it: what is left is for the next start anyway.
    let mut leftovers = Vec::new();
    let mut record = None;
    for action in finish.iter().rev() {
        if let UndoAction::Unregister { .. } = action {
            record = Some(action);
            continue;
        }
        match op.do_action(ctl, action) {
            Ok(()) => match action {
                UndoAction::RemoveEntry { name, .. } => report.files_removed.push(name.clone()),
                UndoAction::RemoveEmptyDir { .. } => {
                    report.web_root_removed = report
                        .web_root
                        .as_ref()
                        .is_some_and(|w| std::fs::symlink_metadata(w).is_err());
                }
                UndoAction::DropDatabase(created) => {
                    for db in &mut report.databases {
                        if db.name == created.database && db.login == created.login {
                            db.dropped = true;
                        }
                    }
                }
                _ => {}
            },
            Err(e) => leftovers.push(format!("{action}: {e}")),
        }
    }
    // Read after `configure remove`, which deletes the files its `install` wrote.
    report.kept = tenant_names(&instance, &installed);
    if !leftovers.is_empty() {
        // The record stays so that the removal can run again; the entry is closed so that
        // the next start does not unregister what still has leftovers.
        let error = OperationError::RemoveIncomplete {
            instance: instance.name.clone(),
            leftovers,
        };
        op.fail_keeping_work(&error.to_string());
        return Err(error);
    }
    if let Some(action) = record
        && let Err(e) = op.do_action(ctl, action)
    {
        let error = OperationError::RemoveIncomplete {
            instance: instance.name.clone(),
            leftovers: vec![format!("{action}: {e}")],
        };
        op.fail_keeping_work(&error.to_string());
        return Err(error);
    }
    op.succeed();
    report.duration_ms = started.elapsed().as_millis() as u64;
    Ok(report)
}

/// [`Controller::check_remove`]: whether a removal (not `keep_data`) of `name` would pass
/// its refusals, for a caller that does something first (the panel's final backup).
pub fn check_remove(ctl: &Controller, name: &str) -> Result<(), OperationError> {
    removable(ctl, &ctl.find_instance(name)?).map(|_| ())
}

/// The refusals: an instance this controller did not install, a database server gone.
fn removable(ctl: &Controller, instance: &Instance) -> Result<Installed, OperationError> {
    let refused = |refusal| OperationError::RemoveRefused {
        step: Step::FindInstance,
        instance: instance.name.clone(),
        refusal,
    };
    let Some(installed) = instance.installed.clone() else {
        return Err(refused(RemoveRefusal::NotInstalled));
    };
    for (id, created) in &installed.created_databases {
        if let Err(e) = ctl.config().database_server(&created.server) {
            return Err(refused(RemoveRefusal::ServerGone {
                id: id.clone(),
                server: created.server.clone(),
                reason: e.to_string(),
            }));
        }
    }
    Ok(installed)
}

/// What finishes the removal, in the journal's order (done newest first): the record, the
/// databases, the web root when empty, then each top-level name the install made.
fn finishing_actions(instance: &Instance, installed: &Installed) -> Vec<UndoAction> {
    let mut actions = vec![UndoAction::Unregister {
        instance: instance.name.clone(),
    }];
    for created in installed.created_databases.values() {
        actions.push(UndoAction::DropDatabase(created.clone()));
    }
    let Some(web_root) = instance.root_web_dir() else {
        return actions;
    };
    if installed.web_root_created
        && let (Some(parent), Some(name)) = (web_root.parent(), web_root.file_name())
    {
        actions.push(UndoAction::RemoveEmptyDir {
            dir: parent.to_owned(),
            name: name.to_owned(),
        });
    }
    for name in &installed.top_level {
        actions.push(UndoAction::RemoveEntry {
            dir: web_root.clone(),
            name: name.clone(),
        });
    }
    actions
}

/// The names in the root web folder the install did not make, read by descriptor.
fn tenant_names(instance: &Instance, installed: &Installed) -> Vec<String> {
    let Some(web_root) = instance.root_web_dir() else {
        return Vec::new();
    };
    let Ok(fd) = crate::archive::open_dir_nofollow(web_root.as_std_path()) else {
        return Vec::new();
    };
    let mut names: Vec<String> = crate::archive::pending_names(fd.as_fd())
        .unwrap_or_default()
        .into_iter()
        .map(|n| String::from_utf8_lossy(&n).into_owned())
        .filter(|n| !installed.top_level.contains(n))
        .collect();
    names.sort();
    names
}
