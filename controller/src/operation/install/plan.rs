//! The install's checks, in order, before anything is made: package, requirements, settings,
//! account, web root. Each refusal lists every problem of its step. A dry run stops here.

use std::collections::BTreeMap;

use aps_meta::model::{Mapping, Script};
use camino::{Utf8Path, Utf8PathBuf};

use super::{Clock, DatabaseChoice, DatabaseMade, FilesMade, InstallReport, InstallRequest};
use crate::account::Account;
use crate::controller::Controller;
use crate::error::{InstallRefusal, OperationError, Step};
use crate::interpreter::ResolvedInterpreter;
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
    pub(super) configure: (Script, ResolvedInterpreter),
    pub(super) verification: Option<(Script, ResolvedInterpreter)>,
    pub(super) web_root: Utf8PathBuf,
    pub(super) web_root_exists: bool,
    /// The package folder whose content the web root receives (the root mapping's `path`).
    pub(super) content: Option<Utf8PathBuf>,
    /// Web-root-relative folders the package declares writable.
    pub(super) writable: Vec<String>,
    /// The requirement ids whose database the install creates (none until provisioning).
    pub(super) created_databases: Vec<String>,
    /// Held until the install ends: no other operation on this name meanwhile.
    _lock: InstanceLock,
}

fn refused(step: Step, name: &str, refusal: InstallRefusal) -> OperationError {
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
    let refuse = |step, refusal| refused(step, name, refusal);
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
    let mut unmet = Vec::new();
    let configure = match meta.service.provision.configuration_script.clone() {
        Some(script) => Some(script),
        None => {
            unmet.push(
                "the package declares no configuration-script, which every APS package has".into(),
            );
            None
        }
    };
    let mut interpreter =
        |script: &Script, role: &str| match ctl.config().interpreters.resolve(&script.language) {
            Ok(i) => Some(i),
            Err(e) => {
                unmet.push(format!(
                    "the {role}'s script-language {:?}: {e}",
                    script.language
                ));
                None
            }
        };
    let configure = configure.and_then(|s| interpreter(&s, "configuration-script").map(|i| (s, i)));
    let verification = meta
        .service
        .provision
        .verification_script
        .clone()
        .map(|s| interpreter(&s, "verification-script").map(|i| (s, i)));
    let mut databases = BTreeMap::new();
    for (id, choice) in &request.databases {
        match choice {
            DatabaseChoice::Existing(db) => {
                databases.insert(id.clone(), db.clone());
            }
            // SEAM(w-engine): a server of controller.toml's [database-servers] is looked up
            // here and its type and version checked against the requirement.
            DatabaseChoice::Server(server) => {
                return Err(refuse(
                    Step::CheckRequirements,
                    InstallRefusal::Database {
                        id: id.clone(),
                        reason: format!(
                            "controller.toml names no database server {server:?} (this controller has no [database-servers] yet)"
                        ),
                    },
                ));
            }
        }
    }
    // SEAM(w-settings): the PHP version and extensions, and db server versions, are checked
    // here by the requirement checks.
    if let Some(size) = installed_size(meta)
        && let Some((place, free)) = free_space_near(&request.web_root)
        && free < size
    {
        unmet.push(format!(
            "installed-size: the package needs about {} and {place} has {} free",
            crate::error::human_bytes(size),
            crate::error::human_bytes(free)
        ));
    }
    let file = instance_file(request, meta, &databases);
    let validated = crate::registry::validate(&file, Some(meta));
    let (database_problems, setting_problems): (Vec<Problem>, Vec<Problem>) = match &validated {
        Ok(_) => (Vec::new(), Vec::new()),
        Err(problems) => problems.iter().cloned().partition(is_database_problem),
    };
    unmet.extend(database_problems.iter().map(ToString::to_string));
    if !unmet.is_empty() {
        return Err(refuse(
            Step::CheckRequirements,
            InstallRefusal::Requirements { problems: unmet },
        ));
    }
    // Each interpreter resolved above, or its problem refused the install.
    let (Some(configure), verification) = (configure, verification.map(Option::unwrap)) else {
        unreachable!("an unresolved script was refused with the requirements");
    };
    clock.lap(Step::CheckRequirements);

    let mut instance = match validated {
        Ok(instance) => instance,
        Err(_) => {
            return Err(refuse(
                Step::ResolveSettings,
                InstallRefusal::Settings {
                    problems: setting_problems.iter().map(ToString::to_string).collect(),
                },
            ));
        }
    };
    clock.lap(Step::ResolveSettings);

    let web_root = request.web_root.clone();
    let web_root_exists = std::fs::symlink_metadata(&web_root).is_ok();
    instance.user = Some(match &request.user {
        Some(user) => user.clone(),
        None => {
            let owned = if web_root_exists {
                web_root.clone()
            } else {
                web_root.parent().unwrap_or(Utf8Path::new("/")).to_owned()
            };
            Account::owner_name_of(&owned).map_err(|e| {
                refuse(
                    Step::CheckWebRoot,
                    InstallRefusal::WebRoot {
                        dir: web_root.clone(),
                        reason: format!("no --user given and the owner of {owned} is unknown: {e}"),
                    },
                )
            })?
        }
    });
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
    let problems = match aps_meta::check_package(path, &aps_meta::Limits::default()) {
        Ok(report) => report
            .diagnostics
            .iter()
            .filter(|d| d.is_error())
            .map(|d| format!("{} {}", d.code, d.message))
            .collect(),
        Err(e) => vec![e.to_string()],
    };
    if !problems.is_empty() {
        return Err(refused(
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

/// The request as an INSTANCE.toml would say it, so registration's own checks judge it.
fn instance_file(
    request: &InstallRequest,
    meta: &aps_meta::AppMeta,
    databases: &BTreeMap<String, crate::database::Database>,
) -> InstanceFile {
    let is_list = |id: &str| {
        meta.service
            .all_settings()
            .into_iter()
            .chain(meta.all_global_settings())
            .any(|s| s.id.as_str() == id && matches!(s.kind, aps_meta::SettingType::List { .. }))
    };
    let settings = request
        .settings
        .iter()
        .map(|(id, value)| {
            let value = match value {
                // One value given for a list setting is a list of one.
                SettingValue::Single(s) if is_list(id) => {
                    toml::Value::Array(vec![toml::Value::String(s.clone())])
                }
                SettingValue::Single(s) => toml::Value::String(s.clone()),
                SettingValue::List(items) => {
                    toml::Value::Array(items.iter().cloned().map(toml::Value::String).collect())
                }
            };
            (id.clone(), value)
        })
        .collect();
    InstanceFile {
        name: request.name.clone(),
        package: request.package.clone(),
        base_url: request.base_url.clone(),
        web_dirs: BTreeMap::from([("/".to_owned(), request.web_root.clone())]),
        settings,
        databases: databases.clone(),
        user: request.user.clone(),
        group: None,
        role: None,
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

/// `installed-size` when it is a number of bytes (real packages hold template text there).
fn installed_size(meta: &aps_meta::AppMeta) -> Option<u64> {
    let mapping = meta.service.provision.url_mapping.as_ref()?;
    mapping.installed_size.as_deref()?.trim().parse().ok()
}

/// The free space of the file system the web root will be on (its nearest existing folder).
fn free_space_near(dir: &Utf8Path) -> Option<(Utf8PathBuf, u64)> {
    let place = dir.ancestors().find(|p| p.exists())?;
    let free = crate::estimate::free_space(place).ok()?;
    Some((place.to_owned(), free))
}

/// The root mapping's package folder: `path` of `url="/"`, when it is a folder.
fn root_content(package: &OpenedPackage) -> Option<Utf8PathBuf> {
    let mapping = package.meta.service.provision.url_mapping.as_ref()?;
    let root = mapping
        .mappings
        .iter()
        .find(|m| m.url.trim_matches('/').is_empty())?;
    let path = root.path.as_deref()?.trim_matches('/');
    (!path.is_empty() && !path.split('/').any(|s| s == ".." || s == ".")).then(|| path.into())
}

/// Web-root-relative folders of the mappings the package declares `writable`.
fn writable_folders(package: &OpenedPackage) -> Vec<String> {
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

/// The web root: not a system folder, no other instance's, a real folder of the account (or
/// a new one in an existing folder), empty unless forced, and never holding a name of the
/// package's own.
fn check_web_root(
    ctl: &Controller,
    request: &InstallRequest,
    instance: &Instance,
    account: Option<&Account>,
    content: Option<&Utf8Path>,
) -> Result<(), OperationError> {
    let dir = &request.web_root;
    let refuse = |refusal| refused(Step::CheckWebRoot, &request.name, refusal);
    let cannot = |reason: String| {
        refuse(InstallRefusal::WebRoot {
            dir: dir.clone(),
            reason,
        })
    };
    if !dir.is_absolute() {
        return Err(cannot("it is not an absolute path".into()));
    }
    let state = ctl.config().state.root();
    if let Some(reason) = crate::registry::trust::system_path_reason(dir, state) {
        return Err(cannot(reason));
    }
    let others = ctl.instances()?;
    let conflicts = crate::registry::check::conflicts(instance, &others);
    if !conflicts.is_empty() {
        let text = conflicts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        return Err(cannot(text.join("; ")));
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Utf8Path::new("/"));
            return match crate::archive::open_dir_nofollow(parent.as_std_path()) {
                Ok(_) => Ok(()),
                Err(e) => Err(cannot(format!(
                    "it does not exist and its parent folder {parent} cannot be used ({e}); create the parent first"
                ))),
            };
        }
        Err(e) => return Err(cannot(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(cannot(
            "it is a symbolic link; name the folder itself".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(cannot("it is not a folder".into()));
    }
    let fd =
        crate::archive::open_dir_nofollow(dir.as_std_path()).map_err(|e| cannot(e.to_string()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| cannot(e.to_string()))?;
    if let Some(account) = account
        && stat.st_uid != account.uid
    {
        let owner = crate::account::user_name(stat.st_uid)
            .map_or_else(|| format!("uid {}", stat.st_uid), |n| format!("{n:?}"));
        return Err(cannot(format!(
            "it belongs to {owner}, not to the instance's account {:?}: chown it to the account, or name another folder",
            account.name
        )));
    }
    let entries = names_in(&fd).map_err(|e| cannot(e.to_string()))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !request.force {
        return Err(refuse(InstallRefusal::WebRootOccupied {
            dir: dir.clone(),
            entries,
        }));
    }
    let own = match content {
        Some(content) => package_names(&instance_package_root(ctl, request)?, content)
            .map_err(|e| cannot(format!("cannot read the package's {content}: {e}")))?,
        None => Vec::new(),
    };
    let collisions: Vec<String> = own.into_iter().filter(|n| entries.contains(n)).collect();
    if !collisions.is_empty() {
        return Err(refuse(InstallRefusal::WebRootCollision {
            dir: dir.clone(),
            names: collisions,
        }));
    }
    Ok(())
}

fn instance_package_root(
    ctl: &Controller,
    request: &InstallRequest,
) -> Result<Utf8PathBuf, OperationError> {
    crate::registry::open_package(&ctl.config().state, &request.package)
        .map(|p| p.root)
        .map_err(|source| OperationError::Package {
            step: Step::CheckWebRoot,
            source,
        })
}

/// The names directly inside the package's `content` folder, sorted.
pub(super) fn package_names(root: &Utf8Path, content: &Utf8Path) -> std::io::Result<Vec<String>> {
    let root = crate::archive::open_dir_nofollow(root.as_std_path())?;
    let dir =
        crate::archive::open_dir_beneath(std::os::fd::AsFd::as_fd(&root), content.as_std_path())?;
    names_in(&dir)
}

/// The names directly inside `dir`, sorted; a name that is not UTF-8 is shown lossily.
fn names_in(dir: &std::os::fd::OwnedFd) -> std::io::Result<Vec<String>> {
    let mut names: Vec<String> = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(String::from_utf8_lossy(name).into_owned());
        }
    }
    names.sort();
    Ok(names)
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
            databases: self
                .instance
                .databases
                .iter()
                .map(|(id, db)| DatabaseMade {
                    id: id.clone(),
                    kind: db.kind.as_str(),
                    name: db.name.clone(),
                    login: db.login.clone(),
                    host: db.host.clone(),
                    port: db.port,
                    created: self.created_databases.contains(id),
                })
                .collect(),
            settings: self.masked(&self.instance.settings),
            computed_settings: BTreeMap::new(),
            configure_output: String::new(),
            verified: false,
            phases: Vec::new(),
            duration_ms: 0,
        }
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
