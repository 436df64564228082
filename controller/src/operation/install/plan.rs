//! The install's checks, in order, before anything is made: package, requirements, settings,
//! account, web root. Each refusal lists every problem of its step. A dry run stops here.

use std::collections::BTreeMap;

use aps_meta::model::{Mapping, Script};
use camino::Utf8PathBuf;

use super::webroot::{check_web_root, package_names, web_root_owner};
use super::{Clock, DatabaseChoice, DatabaseMade, FilesMade, InstallReport, InstallRequest};
use crate::account::Account;
use crate::controller::Controller;
use crate::error::{InstallRefusal, OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
use crate::lifecycle::{
    DatabaseChoice as HostChoice, DatabaseServerFact, HostOffer, RequirementReport,
    is_same_application, resolve_install,
};
use crate::lock::InstanceLock;
use crate::registry::file::InstanceFile;
use crate::registry::validate::Problem;
use crate::registry::{Instance, OpenedPackage, SettingValue, StoreError, is_valid_instance_name};

/// Everything the checks found, for the steps that make things.
pub(super) struct Plan {
    pub(super) package: OpenedPackage,
    /// The record to be: settings resolved, web folders, databases, account.
    pub(super) instance: Instance,
    pub(super) account: Option<Account>,
    pub(super) configure: Option<(Script, ResolvedInterpreter)>,
    pub(super) verification: Option<(Script, ResolvedInterpreter)>,
    pub(super) web_root: Utf8PathBuf,
    pub(super) web_root_exists: bool,
    /// The package folder whose content the web root receives (the root mapping's `path`).
    pub(super) content: Option<Utf8PathBuf>,
    /// Web-root-relative folders the package declares writable.
    pub(super) writable: Vec<String>,
    /// Requirement id → the server of controller.toml its database is created on.
    pub(super) to_create: Vec<(String, String)>,
    /// The requirement ids whose database the install created.
    pub(super) created_databases: Vec<String>,
    /// Held until the install ends: no other operation on this name meanwhile.
    _lock: InstanceLock,
}

pub(super) fn refused_at(step: Step, name: &str, refusal: InstallRefusal) -> OperationError {
    OperationError::InstallRefused {
        step,
        instance: name.to_owned(),
        refusal,
    }
}

/// Every check of the install, in order; nothing is made.
pub(super) fn check(
    ctl: &Controller,
    request: &InstallRequest,
    clock: &mut Clock,
) -> Result<Plan, OperationError> {
    clock.start();
    let name = request.name.as_str();
    let refuse = |step, refusal| refused_at(step, name, refusal);
    if !is_valid_instance_name(name) {
        return Err(refuse(
            Step::CheckPackage,
            InstallRefusal::InvalidName { name: name.into() },
        ));
    }
    let lock = ctl.lock_instance(name, "install")?;
    match ctl.store().get(name) {
        Ok(_) => {
            return Err(refuse(
                Step::CheckPackage,
                InstallRefusal::NameTaken { name: name.into() },
            ));
        }
        Err(StoreError::NotFound { .. }) => {}
        Err(source) => {
            return Err(OperationError::Registry {
                step: Step::CheckPackage,
                source,
            });
        }
    }
    let package = check_package(ctl, request)?;
    clock.lap(Step::CheckPackage);

    let meta = &package.meta;
    let requirements = check_requirements(ctl, request, meta)?;
    let interpreter = |script: Option<&Script>| {
        let script = script?;
        let found = requirements
            .interpreters
            .iter()
            .find(|(name, _)| *name == script.name)?;
        Some((script.clone(), found.1.clone()))
    };
    // A package without one runs no script at install (docs/lifecycle.md, "Requirements").
    let configure = interpreter(meta.service.provision.configuration_script.as_ref());
    let verification = interpreter(meta.service.provision.verification_script.as_ref());
    let mut databases = BTreeMap::new();
    for (id, choice) in &request.databases {
        if let DatabaseChoice::Existing(db) = choice {
            databases.insert(id.clone(), db.clone());
        }
    }
    // The databases to create, each on the server the requirements check chose (the one
    // named, or the first suitable one).
    let mut to_create = Vec::new();
    for (id, server) in &requirements.databases {
        let Some(server) = server else { continue };
        let server = ctl.config().database_server(server).map_err(|e| {
            refuse(
                Step::CheckRequirements,
                InstallRefusal::Requirements {
                    problems: vec![e.to_string()],
                },
            )
        })?;
        // Stands in for the database until it is made, so registration's checks see it given.
        databases.insert(
            id.clone(),
            crate::database::Database {
                kind: server.kind,
                name: "(made by the install)".into(),
                login: "(made by the install)".into(),
                password: crate::secret::Secret::new(""),
                host: server.host.clone(),
                port: server.port,
                version: None,
                prefix: None,
            },
        );
        to_create.push((id.clone(), server.name.clone()));
    }
    // Registration's checks judge what the settings do not: the base URL, the web folders
    // of the mappings, the databases given against the requirements. The settings are left
    // out of it (`bare`): they are resolved below, with `uniq` and hidden settings.
    let mut bare = meta.clone();
    bare.global_settings.clear();
    bare.service.settings.clear();
    let file = instance_file(request, &databases);
    let instance = crate::registry::validate(&file, Some(&bare)).map_err(|problems| {
        let (databases, others): (Vec<Problem>, Vec<Problem>) =
            problems.into_iter().partition(is_database_problem);
        match databases.is_empty() {
            false => refuse(
                Step::CheckRequirements,
                InstallRefusal::Requirements {
                    problems: databases.iter().map(ToString::to_string).collect(),
                },
            ),
            true => refuse(
                Step::ResolveSettings,
                InstallRefusal::Settings {
                    problems: others.iter().map(ToString::to_string).collect(),
                },
            ),
        }
    })?;
    clock.lap(Step::CheckRequirements);

    let user = match &request.user {
        Some(user) => user.clone(),
        None => web_root_owner(request).map_err(|reason| {
            refuse(
                Step::CheckWebRoot,
                InstallRefusal::WebRoot {
                    dir: request.web_root.clone(),
                    reason,
                },
            )
        })?,
    };
    let given = &request.settings;
    let others: Vec<Instance> = ctl
        .instances()?
        .into_iter()
        .filter(|other| {
            crate::registry::open_package(&ctl.config().state, &other.package)
                .is_ok_and(|p| is_same_application(meta, &p.meta))
        })
        .collect();
    let resolved = resolve_install(meta, given, Some(&user), &others).map_err(|refused| {
        refuse(
            Step::ResolveSettings,
            InstallRefusal::Settings {
                problems: refused.problems.iter().map(ToString::to_string).collect(),
            },
        )
    })?;
    let mut instance = instance;
    instance.settings = resolved.values;
    instance.secret_settings = resolved.secret;
    clock.lap(Step::ResolveSettings);

    let web_root = request.web_root.clone();
    let web_root_exists = std::fs::symlink_metadata(&web_root).is_ok();
    instance.user = Some(user);
    // The web root is judged first, against the account named: its refusal says what to do
    // about the folder, which the account's own check would only call a bad record.
    let named = match (&instance.user, crate::account::controller_is_root()) {
        (Some(user), true) => {
            Some(
                Account::lookup(user, None).map_err(|e| OperationError::AccountRefused {
                    step: Step::CheckWebRoot,
                    instance: name.to_owned(),
                    reason: format!("its account cannot be used: {e}"),
                })?,
            )
        }
        _ => None,
    };
    let content = root_content(&package);
    check_web_root(ctl, request, &instance, named.as_ref(), content.as_deref())?;
    let account = ctl.instance_account(&instance).map_err(|e| match e {
        OperationError::AccountRefused {
            instance, reason, ..
        } => OperationError::AccountRefused {
            step: Step::CheckWebRoot,
            instance,
            reason,
        },
        other => other,
    })?;
    let content = root_content(&package);
    check_web_root(
        ctl,
        request,
        &instance,
        account.as_ref(),
        content.as_deref(),
    )?;
    // An `existing:` database's login is tried as the scripts will use it: as the account.
    let unreachable: Vec<String> = request
        .databases
        .iter()
        .filter_map(|(id, choice)| match choice {
            DatabaseChoice::Existing(db) => {
                let check = crate::registry::check::connect(
                    db,
                    account.as_ref(),
                    crate::registry::check::CONNECT_TIMEOUT,
                );
                check
                    .err()
                    .map(|e| crate::registry::check::connect_message(id, db, &e))
            }
            DatabaseChoice::Server(_) => None,
        })
        .collect();
    if !unreachable.is_empty() {
        return Err(refuse(
            Step::CheckRequirements,
            InstallRefusal::Requirements {
                problems: unreachable,
            },
        ));
    }
    // An interpreter the controller can run may still be out of the account's reach (a
    // program under /root, a 0700 folder on its path): found now, not after the files.
    if let Some(account) = &account {
        let unreachable: Vec<String> = [&configure, &verification]
            .into_iter()
            .flatten()
            .filter(|(_, found)| !runnable_by(account, &found.program))
            .map(|(script, found)| {
                format!(
                    "the {} interpreter {} of {} cannot be run by the account {}: install one \
                     it can run, or name one in controller.toml's [interpreters]",
                    found.language, found.program, script.name, account.name
                )
            })
            .collect();
        if !unreachable.is_empty() {
            return Err(refuse(
                Step::CheckRequirements,
                InstallRefusal::Requirements {
                    problems: unreachable,
                },
            ));
        }
    }
    clock.lap(Step::CheckWebRoot);
    let writable = writable_folders(&package);
    Ok(Plan {
        package,
        instance,
        account,
        configure,
        verification,
        web_root,
        web_root_exists,
        content,
        writable,
        to_create,
        created_databases: Vec::new(),
        _lock: lock,
    })
}

/// The package as `package check` checks it (errors refuse; warnings pass), then opened.
fn check_package(
    ctl: &Controller,
    request: &InstallRequest,
) -> Result<OpenedPackage, OperationError> {
    let path = &request.package;
    let problems = package_problems(path);
    if !problems.is_empty() {
        return Err(refused_at(
            Step::CheckPackage,
            &request.name,
            InstallRefusal::PackageInvalid {
                package: path.clone(),
                problems,
            },
        ));
    }
    crate::registry::open_package(&ctl.config().state, path).map_err(|source| {
        OperationError::Package {
            step: Step::CheckPackage,
            source,
        }
    })
}

/// The errors `package check` reports of the package at `path` (its warnings pass).
pub(crate) fn package_problems(path: &camino::Utf8Path) -> Vec<String> {
    match aps_meta::check_package(path, &aps_meta::Limits::default()) {
        Ok(report) => report
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{} {}", d.code, d.message))
            .collect(),
        Err(e) => vec![e.to_string()],
    }
}

/// The request as an INSTANCE.toml would say it (without its settings), so registration's
/// own checks judge it.
fn instance_file(
    request: &InstallRequest,
    databases: &BTreeMap<String, crate::database::Database>,
) -> InstanceFile {
    InstanceFile {
        name: request.name.clone(),
        package: request.package.clone(),
        base_url: request.base_url.clone(),
        web_dirs: BTreeMap::from([("/".to_owned(), request.web_root.clone())]),
        settings: BTreeMap::new(),
        databases: databases.clone(),
        user: request.user.clone(),
        group: None,
        role: None,
    }
}

/// This host's offer to the package: interpreters, PHP, database servers, free space.
fn check_requirements(
    ctl: &Controller,
    request: &InstallRequest,
    meta: &aps_meta::AppMeta,
) -> Result<RequirementReport, OperationError> {
    let config = ctl.config();
    let mut offer = HostOffer::from_config(config, Vec::new(), &request.web_root);
    offer.database_choices = request
        .databases
        .iter()
        .map(|(id, choice)| {
            let choice = match choice {
                DatabaseChoice::Server(server) => HostChoice::Server(server.clone()),
                DatabaseChoice::Existing(_) => HostChoice::Existing,
            };
            (id.clone(), choice)
        })
        .collect();
    let declared: Vec<&str> = meta
        .service
        .all_databases()
        .into_iter()
        .map(|r| r.id.as_str())
        .collect();
    let mut problems = Vec::new();
    // Each server's version, asked only when the package needs a database at all (it checks
    // the admin login too).
    if !declared.is_empty() {
        for server in config.database_servers.values() {
            match crate::database::provision::server_version(server) {
                Ok(version) => offer.database_servers.push(DatabaseServerFact {
                    name: server.name.clone(),
                    kind: server.kind.as_str().to_owned(),
                    version,
                }),
                Err(e) => problems.push(format!("database server {}: {e}", server.name)),
            }
        }
    }
    // A database given for no requirement is a typo that must not pass silently.
    problems.extend(
        request
            .databases
            .keys()
            .filter(|id| !declared.contains(&id.as_str()))
            .map(|id| {
                format!(
                    "{} {id}: the package has no database requirement {id:?}{}",
                    crate::overrides::Override::Database,
                    crate::registry::validate::unknown_id_hint(id, &declared)
                )
            }),
    );
    let report = crate::lifecycle::check_requirements(meta, &offer);
    if let Err(refused) = &report {
        problems.extend(refused.unmet.iter().map(ToString::to_string));
    }
    match report {
        Ok(report) if problems.is_empty() => Ok(report),
        _ => Err(refused_at(
            Step::CheckRequirements,
            &request.name,
            InstallRefusal::Requirements { problems },
        )),
    }
}

/// Database problems belong to the requirements; the rest (settings, base URL) to the
/// settings step.
fn is_database_problem(problem: &Problem) -> bool {
    matches!(
        problem,
        Problem::MissingDatabase(_)
            | Problem::MissingDatabaseChoice(_)
            | Problem::UnknownDatabase { .. }
            | Problem::DatabaseType { .. }
            | Problem::DatabasePrefixNotAllowed(_)
            | Problem::DatabaseFieldEmpty { .. }
    )
}

/// The root mapping's package folder: `path` of `url="/"`, when it is a folder.
pub(crate) fn root_content(package: &OpenedPackage) -> Option<Utf8PathBuf> {
    let mapping = package.meta.service.provision.url_mapping.as_ref()?;
    let root = mapping
        .mappings
        .iter()
        .find(|m| m.url.trim_matches('/').is_empty())?;
    let path = root.path.as_deref()?.trim_matches('/');
    (!path.is_empty() && !path.split('/').any(|s| s == ".." || s == ".")).then(|| path.into())
}

/// Web-root-relative folders of the mappings the package declares `writable`.
pub fn writable_folders(package: &OpenedPackage) -> Vec<String> {
    fn walk(m: &Mapping, parent: &str, out: &mut Vec<String>) {
        let rel = [parent, m.url.trim_matches('/')]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect::<Vec<_>>()
            .join("/");
        if m.writable == Some(true) && !m.is_virtual && !rel.is_empty() {
            out.push(rel.clone());
        }
        for child in &m.children {
            walk(child, &rel, out);
        }
    }
    let mut out = Vec::new();
    if let Some(mapping) = &package.meta.service.provision.url_mapping {
        for m in &mapping.mappings {
            walk(m, "", &mut out);
        }
    }
    out.retain(|rel| !rel.split('/').any(|s| s == ".." || s == "."));
    out
}

impl Plan {
    /// The report as far as the checks know it.
    pub(super) fn report(&self, request: &InstallRequest) -> InstallReport {
        let meta = &self.package.meta;
        let top_level = self
            .content
            .as_deref()
            .and_then(|c| package_names(&self.package.root, c).ok())
            .unwrap_or_default();
        InstallReport {
            instance: self.instance.name.clone(),
            package: request.package.clone(),
            application: meta.name.clone(),
            version: meta.version.clone(),
            release: meta.release.clone(),
            base_url: self.instance.base_url.to_string(),
            web_root: self.web_root.clone(),
            account: self.instance.user.clone(),
            dry_run: request.dry_run,
            web_root_created: false,
            files: FilesMade {
                top_level,
                ..FilesMade::default()
            },
            databases: self.databases_report(),
            settings: self.masked(&self.instance.settings),
            computed_settings: BTreeMap::new(),
            configure_output: String::new(),
            verified: false,
            phases: Vec::new(),
            duration_ms: 0,
        }
    }

    /// Every database of the instance to be, as the report shows it (no password).
    pub(super) fn databases_report(&self) -> Vec<DatabaseMade> {
        self.instance
            .databases
            .iter()
            .map(|(id, db)| DatabaseMade {
                id: id.clone(),
                kind: db.kind.as_str(),
                name: db.name.clone(),
                login: db.login.clone(),
                host: db.host.clone(),
                port: db.port,
                // Made by the install (or, before the databases step, to be made by it).
                created: self.created_databases.contains(id)
                    || self.to_create.iter().any(|(made, _)| made == id),
            })
            .collect()
    }

    /// `settings` with the values of password settings replaced by `***`.
    pub(super) fn masked(
        &self,
        settings: &BTreeMap<String, SettingValue>,
    ) -> BTreeMap<String, SettingValue> {
        settings
            .iter()
            .map(|(id, value)| {
                let value = if self.instance.secret_settings.contains(id) {
                    SettingValue::Single("***".into())
                } else {
                    value.clone()
                };
                (id.clone(), value)
            })
            .collect()
    }
}

/// Whether `account` can execute `program` (every folder on the way searchable, the file
/// executable), asked of the kernel as that account: `test -x` run as it.
fn runnable_by(account: &Account, program: &camino::Utf8Path) -> bool {
    crate::runner::ProcessSpec::for_tool("/bin/sh")
        .args(["-c", "test -x \"$1\"", "sh", program.as_str()])
        .timeout(std::time::Duration::from_secs(10))
        .run_as(account.clone())
        .run()
        .is_ok()
}
