//! The upgrade's checks, in order, before anything changes: the new package, the same
//! application, an update rule matching the installed version-release, the requirements, the
//! settings, the web root. A dry run stops here.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use aps_meta::model::{AppMeta, Script, SettingType};
use camino::{Utf8Path, Utf8PathBuf};

use super::{UpgradeReport, UpgradeRequest};
use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::environment::ScriptOperation;
use crate::error::{OperationError, Step, UpgradeRefusal};
use crate::interpreter::ResolvedInterpreter;
use crate::lifecycle::{
    DatabaseChoice, GivenSettings, HostOffer, is_same_application, resolve_install,
};
use crate::lock::InstanceLock;
use crate::operation::script_run::{LifecycleRun, run_lifecycle_script};
use crate::registry::{Instance, OpenedPackage, SettingValue};

/// Everything the checks found, for the steps that change things.
pub(super) struct Plan {
    /// The record as it is, and the package it names.
    pub(super) old: Instance,
    pub(super) old_package: OpenedPackage,
    /// The record to be: the new package, the new settings.
    pub(super) new: Instance,
    pub(super) package: OpenedPackage,
    pub(super) account: Option<Account>,
    pub(super) configure: Option<(Script, ResolvedInterpreter)>,
    pub(super) rule: String,
    pub(super) web_root: Utf8PathBuf,
    /// The root mapping's folders of the old and the new package (package-relative).
    pub(super) old_content: Option<Utf8PathBuf>,
    pub(super) content: Option<Utf8PathBuf>,
    /// The files of each package's root mapping (web-root-relative), walked once.
    old_files: BTreeSet<String>,
    new_files: BTreeSet<String>,
    /// Web-root-relative writable folders of either version: kept whole.
    pub(super) writable: Vec<String>,
    settings_added: Vec<String>,
    settings_dropped: Vec<String>,
    /// Held until the upgrade ends: no other operation on this instance meanwhile.
    _lock: InstanceLock,
}

fn refused(step: Step, name: &str, refusal: UpgradeRefusal) -> OperationError {
    OperationError::UpgradeRefused {
        step,
        instance: name.to_owned(),
        refusal,
    }
}

/// Every check of the upgrade, in order; nothing changes.
pub(super) fn check(ctl: &Controller, request: &UpgradeRequest) -> Result<Plan, OperationError> {
    let old = ctl.find_instance(&request.instance)?;
    let name = old.name.clone();
    let refuse = |step, refusal| refused(step, &name, refusal);
    let account = ctl.instance_account(&old)?;
    let lock = ctl.lock_instance(&name, "upgrade")?;
    let old_package = ctl.open_package(&old)?;
    let package = check_package(ctl, request, &name)?;
    let (was, meta) = (&old_package.meta, &package.meta);
    if !is_same_application(was, meta) {
        return Err(refuse(
            Step::UpgradeCheck,
            UpgradeRefusal::OtherApplication {
                package: request.package.clone(),
                installed: shown(was),
                new: shown(meta),
            },
        ));
    }
    let rule = matching_rule(meta, &was.version, &was.release).map_err(|rules| {
        refuse(
            Step::UpgradeCheck,
            UpgradeRefusal::NoRuleMatches {
                package: request.package.clone(),
                installed: shown(was),
                new: shown(meta),
                rules,
            },
        )
    })?;

    let web_root = old.root_web_dir().cloned().ok_or_else(|| {
        refuse(
            Step::UpgradeCheck,
            UpgradeRefusal::WebRoot {
                dir: Utf8PathBuf::from("/"),
                reason: "the instance has no web folder for the root url-mapping".into(),
            },
        )
    })?;
    let configure = check_requirements(ctl, &old, meta, &web_root).map_err(|problems| {
        refuse(
            Step::UpgradeCheck,
            UpgradeRefusal::Requirements { problems },
        )
    })?;

    let (new, settings_added, settings_dropped) =
        new_record(ctl, &old, meta, &request.settings, &request.package).map_err(|problems| {
            refuse(Step::UpgradeCheck, UpgradeRefusal::Settings { problems })
        })?;

    match std::fs::symlink_metadata(&web_root) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => {
            return Err(refuse(
                Step::UpgradeCheck,
                UpgradeRefusal::WebRoot {
                    dir: web_root,
                    reason: "it is not a folder (a symlink is never followed)".into(),
                },
            ));
        }
        Err(e) => {
            return Err(refuse(
                Step::UpgradeCheck,
                UpgradeRefusal::WebRoot {
                    dir: web_root,
                    reason: e.to_string(),
                },
            ));
        }
    }
    if web_root.parent().is_none() || web_root.file_name().is_none() {
        return Err(refuse(
            Step::UpgradeCheck,
            UpgradeRefusal::WebRoot {
                dir: web_root,
                reason: "the new files are staged beside it, so it must have a parent folder"
                    .into(),
            },
        ));
    }
    let mut writable = crate::operation::install::writable_folders(&package);
    for rel in crate::operation::install::writable_folders(&old_package) {
        if !writable.contains(&rel) {
            writable.push(rel);
        }
    }
    let old_content = crate::operation::install::root_content(&old_package);
    let content = crate::operation::install::root_content(&package);
    let old_files = package_files(&old_package.root, old_content.as_deref());
    let new_files = package_files(&package.root, content.as_deref());
    let mut new = new;
    if let Some(installed) = new.installed.as_mut() {
        // A removal takes away the names the install made: after an upgrade those are the
        // new version's own, not the old one's that it dropped.
        let was = top_level(&old_files);
        let now = top_level(&new_files);
        installed
            .top_level
            .retain(|name| now.contains(name) || !was.contains(name));
        for name in now {
            if !installed.top_level.contains(&name) {
                installed.top_level.push(name);
            }
        }
    }
    Ok(Plan {
        old_content,
        content,
        old_files,
        new_files,
        old,
        old_package,
        new,
        package,
        account,
        configure,
        rule,
        web_root,
        writable,
        settings_added,
        settings_dropped,
        _lock: lock,
    })
}

/// `id version-release`, for refusals.
fn shown(meta: &AppMeta) -> String {
    format!(
        "{} {}-{}",
        meta.id.as_deref().unwrap_or(&meta.name),
        meta.version,
        meta.release
    )
}

/// The package as `package check` checks it (errors refuse; warnings pass), then opened.
fn check_package(
    ctl: &Controller,
    request: &UpgradeRequest,
    name: &str,
) -> Result<OpenedPackage, OperationError> {
    let path = &request.package;
    let problems = crate::operation::install::package_problems(path);
    if !problems.is_empty() {
        return Err(refused(
            Step::UpgradeCheck,
            name,
            UpgradeRefusal::PackageInvalid {
                package: path.clone(),
                problems,
            },
        ));
    }
    crate::registry::open_package(&ctl.config().state, path).map_err(|source| {
        OperationError::Package {
            step: Step::UpgradeCheck,
            source,
        }
    })
}

/// The first `upgrade` or `patch` rule of `meta` (or APS 1.0 `upgradable-from`) that holds
/// for the installed version-release, as the package writes it; else each rule with why it
/// does not hold.
pub(super) fn matching_rule(
    meta: &AppMeta,
    version: &str,
    release: &str,
) -> Result<String, Vec<String>> {
    let mut failed = Vec::new();
    let rules = (meta.upgrades.iter().map(|r| ("upgrade", r)))
        .chain(meta.patches.iter().map(|r| ("patch", r)));
    for (kind, rule) in rules {
        let text = format!("{kind} match=\"{}\"", rule.match_expr);
        match aps_meta::version_match::matches(&rule.match_expr, version, release) {
            Ok(true) => return Ok(text),
            Ok(false) => failed.push(format!(
                "{text}: false for version {version} release {release}"
            )),
            Err(e) => failed.push(format!("{text}: cannot be read ({e})")),
        }
    }
    for from in &meta.upgradable_from {
        let text = match &from.release {
            Some(r) => format!(
                "upgradable-from version=\"{}\" release=\"{r}\"",
                from.version
            ),
            None => format!("upgradable-from version=\"{}\"", from.version),
        };
        if from.version == version && from.release.as_deref().is_none_or(|r| r == release) {
            return Ok(text);
        }
        failed.push(format!("{text}: not version {version} release {release}"));
    }
    Err(failed)
}

/// The new package's requirements against this host and the instance's databases (an upgrade
/// keeps them: a requirement the record has no database for is refused). Returns the
/// configuration script and its interpreter.
fn check_requirements(
    ctl: &Controller,
    old: &Instance,
    meta: &AppMeta,
    web_root: &Utf8Path,
) -> Result<Option<(Script, ResolvedInterpreter)>, Vec<String>> {
    let config = ctl.config();
    let mut offer = HostOffer::from_config(config, Vec::new(), web_root);
    let mut problems = Vec::new();
    for db in meta.service.all_databases() {
        if old.databases.contains_key(db.id.as_str()) {
            offer
                .database_choices
                .insert(db.id.to_string(), DatabaseChoice::Existing);
        } else {
            problems.push(format!(
                "database requirement {:?}: the instance has no such database, and an upgrade does not make one (install the new version as a new instance and migrate into it)",
                db.id
            ));
        }
    }
    let report = match crate::lifecycle::check_requirements(meta, &offer) {
        Ok(report) => Some(report),
        Err(refused) => {
            problems.extend(refused.unmet.iter().map(ToString::to_string));
            None
        }
    };
    let Some(report) = report.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    let configure = meta
        .service
        .provision
        .configuration_script
        .as_ref()
        .and_then(|script| {
            let found = report
                .interpreters
                .iter()
                .find(|(n, _)| *n == script.name)?;
            Some((script.clone(), found.1.clone()))
        });
    Ok(configure)
}

/// The record after the upgrade: the new package, the settings the new version declares
/// (the recorded value kept, else given, else its default), the others dropped. Returns it
/// with the ids added and dropped.
fn new_record(
    ctl: &Controller,
    old: &Instance,
    meta: &AppMeta,
    given: &GivenSettings,
    package: &Utf8Path,
) -> Result<(Instance, Vec<String>, Vec<String>), Vec<String>> {
    let declared: Vec<_> = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .collect();
    let settable = |id: &str| {
        declared.iter().any(|s| {
            s.id.as_str() == id
                && !s.hidden
                && !matches!(s.kind, SettingType::Hidden | SettingType::StaticText)
        })
    };
    let mut problems = Vec::new();
    // The recorded values stand for what a person gave at install; what is given now wins,
    // except on an installation-only setting, which keeps the value it was installed with.
    let mut merged = GivenSettings::new();
    for (id, value) in &old.settings {
        if settable(id) {
            merged.insert(id.clone(), value.clone());
        }
    }
    for (id, value) in given.iter() {
        let fixed = declared
            .iter()
            .any(|s| s.id.as_str() == id && s.installation_only);
        if fixed && old.settings.get(id).is_some_and(|v| v != value) {
            problems.push(format!(
                "setting {id} is installation-only: it keeps the value the instance was installed with"
            ));
            continue;
        }
        merged.insert(id.to_owned(), value.clone());
    }
    let others: Vec<Instance> = ctl
        .instances()
        .map_err(|e| vec![e.to_string()])?
        .into_iter()
        .filter(|other| other.name != old.name)
        .filter(|other| {
            crate::registry::open_package(&ctl.config().state, &other.package)
                .is_ok_and(|p| is_same_application(meta, &p.meta))
        })
        .collect();
    let resolved = match resolve_install(meta, &merged, old.user.as_deref(), &others) {
        Ok(resolved) => Some(resolved),
        Err(refused) => {
            problems.extend(refused.problems.iter().map(ToString::to_string));
            None
        }
    };
    let Some(resolved) = resolved.filter(|_| problems.is_empty()) else {
        return Err(problems);
    };
    let mut settings = resolved.values;
    let mut secret = resolved.secret;
    // Values the package keeps itself (hidden settings a script computed) stay as recorded.
    for s in &declared {
        let id = s.id.as_str();
        if let Some(value) = old.settings.get(id)
            && !settings.contains_key(id)
        {
            settings.insert(id.to_owned(), value.clone());
            if s.is_secret() || old.secret_settings.contains(id) {
                secret.insert(id.to_owned());
            }
        }
    }
    let added: Vec<String> = settings
        .keys()
        .filter(|id| !old.settings.contains_key(*id))
        .cloned()
        .collect();
    let dropped: Vec<String> = old
        .settings
        .keys()
        .filter(|id| !settings.contains_key(*id))
        .cloned()
        .collect();
    let mut new = old.clone();
    new.package = package.to_owned();
    new.settings = settings;
    new.secret_settings = secret;
    Ok((new, added, dropped))
}

impl Plan {
    /// The report as far as the checks know it.
    pub(super) fn report(&self, request: &UpgradeRequest) -> UpgradeReport {
        let (was, meta) = (&self.old_package.meta, &self.package.meta);
        let (old_files, new_files) = (&self.old_files, &self.new_files);
        UpgradeReport {
            instance: self.old.name.clone(),
            package: request.package.clone(),
            application: meta.name.clone(),
            from_version: was.version.clone(),
            from_release: was.release.clone(),
            to_version: meta.version.clone(),
            to_release: meta.release.clone(),
            rule: self.rule.clone(),
            dry_run: request.dry_run,
            files_added: new_files.difference(old_files).cloned().collect(),
            files_removed: old_files.difference(new_files).cloned().collect(),
            files_replaced: new_files.intersection(old_files).count() as u64,
            writable_kept: self.writable.clone(),
            settings_added: self.settings_added.clone(),
            settings_dropped: self.settings_dropped.clone(),
            settings: self.masked(),
            configure_output: String::new(),
            phases: Vec::new(),
            duration_ms: 0,
        }
    }

    fn masked(&self) -> BTreeMap<String, SettingValue> {
        self.new
            .settings
            .iter()
            .map(|(id, value)| {
                let value = if self.new.secret_settings.contains(id) {
                    SettingValue::Single("***".into())
                } else {
                    value.clone()
                };
                (id.clone(), value)
            })
            .collect()
    }

    /// `configure upgrade OLD_VERSION OLD_RELEASE` as the instance's account, with the new
    /// version's environment; returns the tail of its stdout.
    pub(super) fn run_configure(
        &self,
        ctl: &Controller,
        op: &Operation,
        timeout: Option<Duration>,
    ) -> Result<String, OperationError> {
        let Some((script, interpreter)) = &self.configure else {
            return Ok(String::new());
        };
        let was = &self.old_package.meta;
        let account = self.account.as_ref().filter(|a| !a.is_current());
        let what = LifecycleRun {
            operation: ScriptOperation::Upgrade,
            argument: "upgrade",
            more: &[was.version.as_str(), was.release.as_str()],
            step: Step::UpgradeConfigure,
            timeout,
        };
        let output = run_lifecycle_script(
            ctl,
            op,
            &self.package,
            &self.new,
            account,
            (script, interpreter),
            what,
        )?;
        Ok(crate::operation::configure::run::excerpt(
            &output.stdout_lossy(),
        ))
    }
}

/// The web-root-relative paths of the files and symlinks under the package's `content`
/// folder (the package is read without following a symlink).
/// The first component of each relative path: the names a package puts directly into the
/// root web folder.
fn top_level(files: &BTreeSet<String>) -> BTreeSet<String> {
    files
        .iter()
        .filter_map(|path| path.split('/').next())
        .map(str::to_owned)
        .collect()
}

fn package_files(root: &Utf8Path, content: Option<&Utf8Path>) -> BTreeSet<String> {
    fn walk(dir: &Utf8Path, rel: &str, out: &mut BTreeSet<String>, depth: usize) {
        let Ok(read) = dir.read_dir_utf8() else {
            return;
        };
        for entry in read.flatten() {
            let path = rel_join(rel, entry.file_name());
            match entry.file_type() {
                Ok(t) if t.is_dir() && depth < 128 => walk(entry.path(), &path, out, depth + 1),
                Ok(t) if t.is_dir() => {}
                Ok(_) => {
                    out.insert(path);
                }
                Err(_) => {}
            }
        }
    }
    let mut out = BTreeSet::new();
    if let Some(content) = content {
        walk(&root.join(content), "", &mut out, 0);
    }
    out
}

pub(super) fn rel_join(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}/{name}")
    }
}
