//! Install: a new instance made from a package, in the standard's order (§8.2), every step
//! journaled as it is made so that a failure, a signal or a `kill -9` undoes all of it.
//!
//! 1. checks, nothing made ([`plan`], the web root in [`webroot`]): the package as `package
//!    check` checks it, the name, the account, the requirements, the settings, the database
//!    choices, the web root;
//! 2. files ([`files`]): the root url-mapping's content unpacked into the web root by
//!    descriptor, owned by the instance's account;
//! 3. databases ([`databases`]);
//! 4. `configure install` as the instance's account, then the verification-script
//!    ([`configure`]);
//! 5. the record, last: until it is stored nothing of the install is an instance.
//!
//! The undo is the journal's ([`crate::journal::UndoAction`]): each entry the install makes
//! in the web root, each database, and the record are registered before they are made, so the
//! same list serves an undo now ([`crate::controller`]'s `undo_now`) and the next start's
//! recovery.

mod configure;
mod databases;
mod files;
mod plan;
mod webroot;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;
use serde::Serialize;

use crate::controller::{Controller, Operation};
use crate::database::Database;
use crate::error::{OperationError, Step};
use crate::journal::{OperationKind, UndoAction};
use crate::lifecycle::GivenSettings;
use crate::registry::SettingValue;

pub use files::FilesMade;
pub(crate) use files::{copy_entry, set_owner_mode, sorted_names};
pub use plan::writable_folders;
pub(crate) use plan::{package_problems, root_content};

/// Where a `db` requirement's database comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DatabaseChoice {
    /// Created on this server of controller.toml's `[database-servers]`.
    Server(String),
    /// One that already exists, with its login (never dropped by an undo).
    Existing(Database),
}

/// What to install, and where.
#[derive(Debug, Clone)]
pub struct InstallRequest {
    /// A package folder or `.app.zip`, absolute.
    pub package: Utf8PathBuf,
    pub name: String,
    /// `http[s]://host[:port][/path]`.
    pub base_url: String,
    /// The folder of the root url-mapping, absolute; made when it does not exist (its parent
    /// must).
    pub web_root: Utf8PathBuf,
    /// The account the instance's work runs as; `None`: the owner of the web root (or of its
    /// parent when the web root is new).
    pub user: Option<String>,
    /// The setting values the person gave; the package's defaults fill the rest.
    pub settings: GivenSettings,
    /// `db` requirement id → where its database comes from.
    pub databases: BTreeMap<String, DatabaseChoice>,
    /// Install into a web root that already holds files (never over them).
    pub force: bool,
    /// Run every check and make nothing.
    pub dry_run: bool,
    /// Timeout of each script; `None` means the configured default.
    pub timeout: Option<Duration>,
}

impl InstallRequest {
    pub fn new(
        package: impl Into<Utf8PathBuf>,
        name: impl Into<String>,
        base_url: impl Into<String>,
        web_root: impl Into<Utf8PathBuf>,
    ) -> Self {
        InstallRequest {
            package: package.into(),
            name: name.into(),
            base_url: base_url.into(),
            web_root: web_root.into(),
            user: None,
            settings: GivenSettings::new(),
            databases: BTreeMap::new(),
            force: false,
            dry_run: false,
            timeout: None,
        }
    }
}

/// How long one phase took.
#[derive(Debug, Clone, Serialize)]
pub struct PhaseTime {
    /// The step's name ([`Step::as_str`]).
    pub phase: &'static str,
    pub duration_ms: u64,
}

/// A database the instance uses, as recorded (no password).
#[derive(Debug, Clone, Serialize)]
pub struct DatabaseMade {
    pub id: String,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub name: String,
    pub login: String,
    pub host: String,
    pub port: u16,
    /// Made (with a dry run: to be made) by the install; `false` for an `existing:` one,
    /// which the install did not make and nothing drops.
    pub created: bool,
}

/// The outcome of an install (or, with `dry_run`, of its checks).
#[derive(Debug, Clone, Serialize)]
pub struct InstallReport {
    pub instance: String,
    pub package: Utf8PathBuf,
    pub application: String,
    pub version: String,
    pub release: String,
    pub base_url: String,
    pub web_root: Utf8PathBuf,
    /// The account the instance's work runs as (`None`: the controller's own).
    pub account: Option<String>,
    /// Only the checks ran; nothing was made.
    pub dry_run: bool,
    /// The web root did not exist and the install made it.
    pub web_root_created: bool,
    pub files: FilesMade,
    pub databases: Vec<DatabaseMade>,
    /// Every setting as recorded; password settings show `***`.
    pub settings: BTreeMap<String, SettingValue>,
    /// The values `configure install` returned in its configure-output `<settings>`, stored in
    /// the record (password settings show `***`).
    pub computed_settings: BTreeMap<String, SettingValue>,
    /// The tail of what `configure install` printed on stdout, trimmed.
    pub configure_output: String,
    /// Whether a verification-script ran (and passed).
    pub verified: bool,
    pub phases: Vec<PhaseTime>,
    pub duration_ms: u64,
}

/// [`Controller::install`].
pub fn install(
    ctl: &Controller,
    request: &InstallRequest,
) -> Result<InstallReport, OperationError> {
    install_then(ctl, request, |_| Ok(())).map(|(report, _)| report)
}

/// [`Controller::install_then`]: the install, then `fill` on the recorded instance inside the
/// install's journal entry, so that a failure of either (or a kill -9 in either) undoes the
/// install whole. `fill` is not called on a dry run (`None`).
pub fn install_then<T>(
    ctl: &Controller,
    request: &InstallRequest,
    fill: impl FnOnce(&InstallReport) -> Result<T, OperationError>,
) -> Result<(InstallReport, Option<T>), OperationError> {
    let started = Instant::now();
    let _armed = ctl.arm_cancel();
    let mut clock = Clock::default();
    let mut plan = plan::check(ctl, request, &mut clock)?;
    let mut report = plan.report(request);
    if request.dry_run {
        report.phases = clock.phases;
        report.duration_ms = millis(started.elapsed());
        return Ok((report, None));
    }
    ctl.check_cancel(Step::DeployFiles)?;
    let mut op = ctl.begin_operation(
        OperationKind::Install,
        &request.name,
        Step::DeployFiles,
        |_| Vec::new(),
    )?;
    let made = make(ctl, request, &mut plan, &mut op, &mut report, &mut clock);
    // The plan holds the instance's lock, which the operations `fill` runs take themselves.
    drop(plan);
    report.phases = std::mem::take(&mut clock.phases);
    report.duration_ms = millis(started.elapsed());
    let filled = made.and_then(|()| fill(&report)).and_then(|filled| {
        ctl.check_cancel(Step::Finish)?;
        Ok(filled)
    });
    match filled {
        Ok(filled) => {
            op.succeed();
            Ok((report, Some(filled)))
        }
        Err(error) => {
            let error = error.interrupted_by(ctl.cancel().signal());
            // A second signal must not cut the undo short.
            let leftovers = crate::cancel::shielded(|| op.undo_now(ctl));
            let error = if leftovers.is_empty() {
                error
            } else {
                OperationError::InstallUndoFailed {
                    original: Box::new(error),
                    leftovers,
                }
            };
            Err(op.fail(error))
        }
    }
}

/// Steps 2 to 5: everything that makes something, each registered with the journal first.
fn make(
    ctl: &Controller,
    request: &InstallRequest,
    plan: &mut plan::Plan,
    op: &mut Operation,
    report: &mut InstallReport,
    clock: &mut Clock,
) -> Result<(), OperationError> {
    let account = plan.account.clone();
    let files = files::deploy(ctl, plan, op)?;
    // What a removal will take away, and nothing else (a tenant's own files stay).
    plan.instance.installed = Some(crate::registry::Installed {
        web_root_created: files.web_root_created,
        top_level: files.top_level.clone(),
        created_databases: BTreeMap::new(),
    });
    report.web_root_created = files.web_root_created;
    report.files = files;
    clock.lap(Step::DeployFiles);
    ctl.check_cancel(Step::CreateDatabases)?;

    let made = databases::provide(ctl, plan, op)?;
    report.databases = made;
    clock.lap(Step::CreateDatabases);
    ctl.check_cancel(Step::RunConfigure)?;

    let ran = configure::run(ctl, plan, op, account.as_ref(), request.timeout)?;
    report.configure_output = ran.stdout;
    report.verified = ran.verified;
    report.computed_settings = plan.masked(&ran.computed);
    report.settings = plan.masked(&plan.instance.settings);
    clock.lap(Step::RunConfigure);
    ctl.check_cancel(Step::RecordInstance)?;

    op.add_undo(
        UndoAction::Unregister {
            instance: plan.instance.name.clone(),
        },
        Step::RecordInstance,
    )?;
    ctl.store()
        .put(&plan.instance, false)
        .map_err(|source| OperationError::Registry {
            step: Step::RecordInstance,
            source,
        })?;
    clock.lap(Step::RecordInstance);
    Ok(())
}

/// Phase durations, measured from one lap to the next.
#[derive(Default)]
pub(crate) struct Clock {
    last: Option<Instant>,
    phases: Vec<PhaseTime>,
}

impl Clock {
    pub(crate) fn lap(&mut self, step: Step) {
        let now = Instant::now();
        let since = self.last.unwrap_or(now);
        self.phases.push(PhaseTime {
            phase: step.as_str(),
            duration_ms: millis(now - since),
        });
        self.last = Some(now);
    }

    pub(crate) fn start(&mut self) {
        self.last = Some(Instant::now());
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
