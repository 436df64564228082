//! What configure, enable and disable share: a registered instance found and locked, its
//! package's configuration script and interpreter, the script run as the instance's account
//! from a fresh run folder, and what its structured output returned.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aps_meta::model::{AppMeta, Script, SettingType};

use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::lifecycle::is_same_application;
use crate::lock::InstanceLock;
use crate::operation::script_run::{
    LifecycleRun, find_configuration_script, resolve_interpreter, run_lifecycle_script,
};
use crate::registry::{Instance, OpenedPackage, SettingValue};
use crate::runner::ProcessOutput;
use crate::structured_output::parse_configure_output;

/// At most this much of the script's stdout goes into a report.
const EXCERPT: usize = 4096;

/// A registered instance, locked for one operation, with what running its configuration
/// script needs.
pub(crate) struct Target {
    /// The record as it was when the lock was taken.
    pub(crate) instance: Instance,
    /// `None`: the controller's own account (it is not root).
    pub(crate) account: Option<Account>,
    pub(crate) package: OpenedPackage,
    /// `None`: the package declares no configuration script.
    pub(crate) script: Option<(Script, ResolvedInterpreter)>,
    /// Held until the operation ends: no other operation on this instance meanwhile.
    _lock: InstanceLock,
}

/// Finds `name`, takes its lock for `operation`, and reads the record again under the lock
/// (an operation that ended meanwhile may have changed it). Refused before anything runs: an
/// account that is root or gone, a package that cannot be opened, a configuration script
/// that is not a file of the package or whose interpreter is missing.
pub(crate) fn prepare(
    ctl: &Controller,
    name: &str,
    operation: &str,
) -> Result<Target, OperationError> {
    // An unknown name is refused before a lock file is made for it.
    ctl.find_instance(name)?;
    let lock = ctl.lock_instance(name, operation)?;
    let instance = ctl.find_instance(name)?;
    let account = ctl.instance_account(&instance)?;
    let package = ctl.open_package(&instance)?;
    let script = match find_configuration_script(&instance, &package, Step::ParseMetadata)? {
        Some(script) => {
            let interpreter = resolve_interpreter(ctl, &script)?;
            Some((script, interpreter))
        }
        None => None,
    };
    Ok(Target {
        instance,
        account,
        package,
        script,
        _lock: lock,
    })
}

impl Target {
    /// This controller's other instances of the same application, for `uniq`.
    pub(crate) fn others(&self, ctl: &Controller) -> Result<Vec<Instance>, OperationError> {
        let meta = &self.package.meta;
        Ok(ctl
            .instances()?
            .into_iter()
            .filter(|other| other.name != self.instance.name)
            .filter(|other| {
                crate::registry::open_package(&ctl.config().state, &other.package)
                    .is_ok_and(|p| is_same_application(meta, &p.meta))
            })
            .collect())
    }

    /// `configure ARGUMENT` against `instance` (the record to be, for a configure) as the
    /// instance's account, with the standard's variables for `operation`; failures are
    /// reported at `step`. Its process group is recorded in the operation's work folder, so a
    /// killed controller's script is ended by the next start.
    pub(crate) fn run_script(
        &self,
        ctl: &Controller,
        op: &Operation,
        instance: &Instance,
        (operation, argument, step): (ScriptOperation, &str, Step),
        timeout: Option<Duration>,
    ) -> Result<Option<ProcessOutput>, OperationError> {
        let Some((script, interpreter)) = &self.script else {
            return Ok(None);
        };
        let account = self.account.as_ref().filter(|a| !a.is_current());
        let what = LifecycleRun {
            operation,
            argument,
            more: &[],
            step,
            timeout,
        };
        run_lifecycle_script(
            ctl,
            op,
            &self.package,
            instance,
            account,
            (script, interpreter),
            what,
        )
        .map(Some)
    }

    /// The settings a structured configure-output returned (only those the package declares:
    /// any other would never reach a script), and which of them are secret. The errors it
    /// reported were already the run's failure.
    pub(crate) fn returned_settings(
        &self,
        output: &ProcessOutput,
        step: Step,
    ) -> Result<Returned, OperationError> {
        let Some((script, _)) = &self.script else {
            return Ok(Returned::default());
        };
        if !script.structured_output || output.stdout_tail.is_empty() {
            return Ok(Returned::default());
        }
        returned_settings(&self.package.meta, &output.stdout_tail).map_err(|source| {
            OperationError::ScriptOutput {
                step,
                script: self.package.root.join("scripts").join(&script.name),
                source,
            }
        })
    }
}

/// Setting values a configuration script returned in its configure-output `<settings>`.
#[derive(Debug, Default)]
pub(crate) struct Returned {
    pub(crate) values: BTreeMap<String, SettingValue>,
    pub(crate) secret: BTreeSet<String>,
}

/// [`Target::returned_settings`] for a package's metadata and a script's stdout.
pub(crate) fn returned_settings(
    meta: &AppMeta,
    stdout: &[u8],
) -> Result<Returned, crate::structured_output::OutputError> {
    let parsed = parse_configure_output(stdout)?;
    let declared: Vec<_> = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .collect();
    let mut returned = Returned::default();
    for (id, values) in parsed.settings {
        let Some(setting) = declared.iter().find(|s| s.id.as_str() == id) else {
            continue;
        };
        let value = match (&setting.kind, values.as_slice()) {
            (SettingType::List { .. }, _) => SettingValue::List(values.clone()),
            (_, [one]) => SettingValue::Single(one.clone()),
            (_, _) => SettingValue::Single(values.concat()),
        };
        if setting.is_secret() {
            returned.secret.insert(id.clone());
        }
        returned.values.insert(id, value);
    }
    Ok(returned)
}

/// `values` as a report shows them: secret ones as `***`.
pub(crate) fn masked(
    values: &BTreeMap<String, SettingValue>,
    secret: &BTreeSet<String>,
) -> BTreeMap<String, SettingValue> {
    values
        .iter()
        .map(|(id, value)| {
            let shown = match secret.contains(id) {
                true => SettingValue::Single("***".into()),
                false => value.clone(),
            };
            (id.clone(), shown)
        })
        .collect()
}

/// The last [`EXCERPT`] bytes of `text`, trimmed, cut at a character boundary: what a
/// report keeps of a script's stdout.
pub(crate) fn excerpt(text: &str) -> String {
    let text = text.trim();
    let mut start = text.len().saturating_sub(EXCERPT);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    text[start..].to_owned()
}

/// [`excerpt`] of a script's stdout; empty when no script ran.
pub(crate) fn stdout_excerpt(output: Option<&ProcessOutput>) -> String {
    output.map_or_else(String::new, |o| excerpt(&o.stdout_lossy()))
}

/// Stores `instance` over its record, the operation's last step: until then the record is
/// the old one.
pub(crate) fn record(
    ctl: &Controller,
    instance: &Instance,
    step: Step,
) -> Result<(), OperationError> {
    ctl.store()
        .put(instance, true)
        .map_err(|source| OperationError::Registry { step, source })
}
