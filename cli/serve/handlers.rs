//! The handlers: each takes a request's body, checks its paths ([`super::guard`]) and calls the
//! service layer (or, for the registry and package checks, the libraries) — never the CLI's
//! commands.

use std::collections::BTreeMap;

use aps_controller::registry::{self, RegisterError, view};
use aps_meta::{Limits, check_package};
use aps_panel::service::{backup, backups, configure, enable, install, migrate, remove, restore};
use camino::Utf8PathBuf;
use serde::Deserialize;
use serde_json::{Value, json};

use super::App;
use super::answer::{Answer, Handled, failure_answer, parse, service_answer, store_problem};
use super::guard::{absolute, owned_by_us};
use crate::common::{Failure, open_panel, success_json};

/// A service error as HTTP clients read it, for the failure paths that also carry failures of
/// opening panel.toml.
fn service_failure(e: aps_panel::service::ServiceError) -> Failure {
    Failure::from_service(&e, &super::answer::JsonFields)
}

impl App {
    pub(super) fn show(&self, name: &str) -> Answer {
        match self.ctl.store().get(name) {
            Ok(instance) => {
                let mut v = view::masked_json(&instance);
                v["ok"] = true.into();
                (200, v)
            }
            Err(e) => store_problem(e),
        }
    }

    /// `POST /v1/instances`: a body naming a `package` installs one; a body naming a `file`
    /// (an INSTANCE.toml) registers one, as before.
    pub(super) fn create(&self, body: &[u8]) -> Handled {
        let installs = serde_json::from_slice::<Value>(body)
            .ok()
            .is_some_and(|v| v.get("package").is_some());
        if installs {
            self.install(body)
        } else {
            self.register(body)
        }
    }

    /// The install, as `instance install --json` does it, its paths inside `--allow-dir`.
    fn install(&self, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            package: Utf8PathBuf,
            name: String,
            base_url: String,
            web_root: Utf8PathBuf,
            user: Option<String>,
            #[serde(default)]
            settings: BTreeMap<String, SettingBody>,
            settings_file: Option<Utf8PathBuf>,
            /// Requirement id → `SERVER` or `existing:/abs/file`.
            #[serde(default)]
            databases: std::collections::BTreeMap<String, String>,
            #[serde(default)]
            force: bool,
            #[serde(default)]
            dry_run: bool,
            timeout_secs: Option<u64>,
        }
        let b: Body = parse(body)?;
        self.allowed("package", &b.package)?;
        self.allowed("web_root", &b.web_root)?;
        if let Some(file) = &b.settings_file {
            self.allowed("settings_file", file)?;
        }
        for value in b.databases.values() {
            if let Some(file) = value.strip_prefix("existing:") {
                self.allowed("databases", &Utf8PathBuf::from(file))?;
            }
        }
        let settings = setting_pairs(&b.settings);
        let request = install::Request {
            package: b.package,
            name: b.name,
            base_url: b.base_url,
            web_root: b.web_root,
            user: b.user,
            settings,
            settings_file: b.settings_file,
            databases: b
                .databases
                .iter()
                .map(|(id, v)| format!("{id}={v}"))
                .collect(),
            force: b.force,
            dry_run: b.dry_run,
            timeout_secs: b.timeout_secs,
        };
        request.check().map_err(service_answer)?;
        let status = if request.dry_run { 200 } else { 201 };
        Ok(match install::install(&self.ctl, &request) {
            Ok(report) => (status, success_json(&report)),
            Err(e) => failure_answer(service_failure(e)),
        })
    }

    pub(super) fn register(&self, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            file: Utf8PathBuf,
            #[serde(default)]
            replace: bool,
            /// As `--no-connect`: the databases' logins are not tried.
            #[serde(default)]
            no_connect: bool,
        }
        let b: Body = parse(body)?;
        absolute("file", &b.file)?;
        self.registrable(&b.file)?;
        owned_by_us("file", &b.file)?;
        if let Ok(file) = registry::InstanceFile::load(&b.file) {
            // Relative paths were resolved against the file's folder; symlinks are resolved
            // here, so that what is checked is what will be opened.
            let package = file
                .package
                .canonicalize_utf8()
                .unwrap_or_else(|_| file.package.clone());
            owned_by_us("package", &package)?;
        }
        let config = self.ctl.config();
        let options = registry::RegisterOptions {
            replace: b.replace,
            connect: (!b.no_connect).then_some(config),
        };
        Ok(
            match registry::register_with(self.ctl.store(), &config.state, &b.file, &options) {
                Ok(instance) => (
                    201,
                    json!({"ok": true, "instance": view::summary_json(&instance)}),
                ),
                Err(RegisterError::Store(e)) => store_problem(e),
                // The file is the client's mistake: 422 with every problem (`problems`).
                Err(e) => (422, crate::failures::register_failure(e).envelope()),
            },
        )
    }

    /// `DELETE /v1/instances/N`: as `instance remove N`; the body (optional) carries
    /// `keep_data`, `no_final_backup` and `timeout_secs`.
    pub(super) fn remove(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default)]
            keep_data: bool,
            #[serde(default)]
            no_final_backup: bool,
            timeout_secs: Option<u64>,
        }
        let b: Body = parse(body)?;
        let request = remove::Request {
            instance: name.to_owned(),
            keep_data: b.keep_data,
            no_final_backup: b.no_final_backup,
            timeout_secs: b.timeout_secs,
        };
        request.check().map_err(service_answer)?;
        let removed = if request.keep_data {
            remove::remove_keeping_data(&self.ctl, &request).map_err(service_failure)
        } else {
            self.panel().and_then(|panel| {
                remove::remove(&self.ctl, &panel, &request).map_err(service_failure)
            })
        };
        Ok(removed
            .map(|r| (200, success_json(&r)))
            .unwrap_or_else(failure_answer))
    }

    /// NAME's backups in the store, or its snapshots with the repository store, as
    /// `backups NAME --json` lists them.
    pub(super) fn backups(&self, name: &str) -> Answer {
        let request = backups::Request {
            instance: name.to_owned(),
            remote: false,
        };
        self.panel()
            .and_then(|panel| {
                backups::backups(&self.ctl, &panel, &request).map_err(service_failure)
            })
            .map(|list| (200, success_json(&list)))
            .unwrap_or_else(failure_answer)
    }

    pub(super) fn backup(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            /// Absent: into the backup store, as `aps-controller backup NAME` does.
            to: Option<Utf8PathBuf>,
            #[serde(default)]
            force: bool,
            timeout_secs: Option<u64>,
            compression: Option<String>,
            #[serde(default)]
            recipients: Vec<String>,
        }
        let b: Body = parse(body)?;
        if let Some(to) = &b.to {
            self.allowed("to", to)?;
            self.never_configuration("to", to)?;
        }
        let request = backup::Request {
            instance: name.to_owned(),
            to: b.to,
            force: b.force,
            timeout_secs: b.timeout_secs,
            compression: b.compression,
            recipients: b.recipients,
            dry_run: false,
            absolute_paths: true,
        };
        // Without "to", into the store panel.toml chose: with the repository, one snapshot, as
        // `aps-controller backup NAME` makes.
        let answer = self
            .panel()
            .and_then(|panel| {
                match backup::backup(&self.ctl, &panel, &request).map_err(service_failure)? {
                    backup::Outcome::Archive(done) => Ok(success_json(&done)),
                    backup::Outcome::Snapshot(done) => Ok(success_json(&done)),
                    backup::Outcome::Plan(plan) => Ok(success_json(&plan)),
                }
            })
            .map(|v| (200, v))
            .unwrap_or_else(failure_answer);
        Ok(answer)
    }

    /// panel.toml, read per request so that a change applies without a restart.
    fn panel(&self) -> Result<aps_panel::Panel, Failure> {
        open_panel(&crate::common::StateArgs {
            state_dir: Some(self.ctl.config().state.root().to_owned()),
        })
    }

    pub(super) fn restore(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            from: Option<Utf8PathBuf>,
            /// A snapshot of the repository store (id or unique prefix).
            snapshot: Option<String>,
            /// The newest good backup of the store (the repository: its newest snapshot).
            #[serde(default)]
            latest: bool,
            timeout_secs: Option<u64>,
            #[serde(default)]
            no_safety_snapshot: bool,
            identity: Option<Utf8PathBuf>,
            /// The file may be a backup of another instance (`--from-other-instance`).
            #[serde(default)]
            from_other_instance: bool,
            /// A new instance to install from the backup's package and restore into.
            as_new: Option<String>,
            /// With `as_new`: the package, when no registered instance runs the backup's.
            package: Option<Utf8PathBuf>,
            base_url: Option<String>,
            web_root: Option<Utf8PathBuf>,
            user: Option<String>,
            #[serde(default)]
            settings: std::collections::BTreeMap<String, OneOrMany>,
            #[serde(default)]
            databases: std::collections::BTreeMap<String, String>,
        }
        let b: Body = parse(body)?;
        let request = restore::Request {
            instance: name.to_owned(),
            from: b.from,
            latest: b.latest,
            snapshot: b.snapshot,
            timeout_secs: b.timeout_secs,
            no_safety_snapshot: b.no_safety_snapshot,
            identity: b.identity,
            from_other_instance: b.from_other_instance,
            as_new: b.as_new.map(|name| {
                new_instance(
                    name,
                    (b.base_url, b.web_root, b.user, b.package),
                    &b.settings,
                    b.databases,
                )
            }),
        };
        request.check().map_err(service_answer)?;
        let new = request.as_new.as_ref();
        let paths = [
            request.from.as_ref().map(|p| ("from", p)),
            request.identity.as_ref().map(|p| ("identity", p)),
        ];
        if let Some(new) = new {
            self.new_instance_allowed(new)?;
        }
        for (field, path) in paths.into_iter().flatten() {
            self.allowed(field, path)?;
        }
        let panel = if request.needs_panel() {
            Some(self.panel().map_err(failure_answer)?)
        } else {
            None
        };
        request
            .check_store(panel.as_ref())
            .map_err(service_answer)?;
        Ok(restore::restore(&self.ctl, panel.as_ref(), &request)
            .map(|done| (200, success_json(&done)))
            .unwrap_or_else(service_answer))
    }

    pub(super) fn migrate(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default)]
            to_instance: String,
            /// A new instance to install from the source's package and migrate into.
            to_new: Option<String>,
            base_url: Option<String>,
            web_root: Option<Utf8PathBuf>,
            user: Option<String>,
            #[serde(default)]
            settings: std::collections::BTreeMap<String, OneOrMany>,
            #[serde(default)]
            databases: std::collections::BTreeMap<String, String>,
            keep: Option<Utf8PathBuf>,
            timeout_secs: Option<u64>,
            #[serde(default)]
            no_safety_snapshot: bool,
            /// A snapshot of the source in the repository store instead of a live backup.
            snapshot: Option<String>,
            /// The source's newest snapshot instead of a live backup.
            #[serde(default)]
            latest: bool,
        }
        let b: Body = parse(body)?;
        let request = migrate::Request {
            source: name.to_owned(),
            target: b.to_instance,
            keep: b.keep,
            timeout_secs: b.timeout_secs,
            no_safety_snapshot: b.no_safety_snapshot,
            snapshot: b.snapshot,
            latest: b.latest,
            to_new: b.to_new.map(|name| {
                new_instance(
                    name,
                    (b.base_url, b.web_root, b.user, None),
                    &b.settings,
                    b.databases,
                )
            }),
        };
        request.check().map_err(service_answer)?;
        if let Some(new) = &request.to_new {
            self.new_instance_allowed(new)?;
        }
        if let Some(keep) = &request.keep {
            self.allowed("keep", keep)?;
            self.never_configuration("keep", keep)?;
        }
        let panel = if request.uses_snapshot() {
            Some(self.panel().map_err(failure_answer)?)
        } else {
            None
        };
        Ok(migrate::migrate(&self.ctl, panel.as_ref(), &request)
            .map(|done| (200, success_json(&done)))
            .unwrap_or_else(service_answer))
    }

    /// The folders a new instance of `to_new`/`as_new` names: its web root, its package, and
    /// each `existing:` database's file, inside the allowed folders.
    fn new_instance_allowed(&self, new: &install::Request) -> Result<(), Answer> {
        self.allowed("web_root", &new.web_root)?;
        if !new.package.as_str().is_empty() {
            self.allowed("package", &new.package)?;
        }
        for pair in &new.databases {
            if let Some((_, file)) = pair.split_once("=existing:") {
                self.allowed("databases", &Utf8PathBuf::from(file))?;
            }
        }
        Ok(())
    }

    pub(super) fn check(&self, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            path: Utf8PathBuf,
            limits: Option<Limits>,
        }
        let b: Body = parse(body)?;
        self.allowed("path", &b.path)?;
        Ok(
            match check_package(&b.path, &b.limits.unwrap_or_default()) {
                // The check ran: 200 whatever it found; `ok` says whether the package is valid.
                Ok(report) => (200, crate::failures::report_json(&report)),
                Err(e) => (422, crate::failures::check_failure(&e).envelope()),
            },
        )
    }

    /// `PATCH /v1/instances/NAME/settings`: the configure, as `instance configure --json`
    /// does it; a settings file inside `--allow-dir`.
    pub(super) fn configure(&self, name: &str, body: &[u8]) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            #[serde(default)]
            settings: BTreeMap<String, SettingBody>,
            settings_file: Option<Utf8PathBuf>,
            timeout_secs: Option<u64>,
        }
        let b: Body = parse(body)?;
        if let Some(file) = &b.settings_file {
            self.allowed("settings_file", file)?;
        }
        let request = configure::Request {
            instance: name.to_owned(),
            settings: setting_pairs(&b.settings),
            settings_file: b.settings_file,
            timeout_secs: b.timeout_secs,
        };
        request.check().map_err(service_answer)?;
        Ok(configure::configure(&self.ctl, &request)
            .map(|done| (200, success_json(&done)))
            .unwrap_or_else(service_answer))
    }

    /// `POST /v1/instances/NAME/enable` and `…/disable`, as `instance enable|disable --json`.
    pub(super) fn set_enabled(&self, name: &str, body: &[u8], enabled: bool) -> Handled {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Body {
            timeout_secs: Option<u64>,
        }
        let b: Body = parse(body)?;
        let request = enable::Request {
            instance: name.to_owned(),
            enabled,
            timeout_secs: b.timeout_secs,
        };
        request.check().map_err(service_answer)?;
        Ok(enable::set_enabled(&self.ctl, &request)
            .map(|done| (200, success_json(&done)))
            .unwrap_or_else(service_answer))
    }
}

/// A setting's value in a JSON body: one string, or a list setting's elements.
#[derive(Deserialize)]
#[serde(untagged)]
enum SettingBody {
    One(String),
    Many(Vec<String>),
}

/// A body's `settings` as the service takes them: `ID=VALUE`, an id repeated for a list.
fn setting_pairs(settings: &BTreeMap<String, SettingBody>) -> Vec<String> {
    let mut pairs = Vec::new();
    for (id, value) in settings {
        match value {
            SettingBody::One(v) => pairs.push(format!("{id}={v}")),
            SettingBody::Many(vs) => pairs.extend(vs.iter().map(|v| format!("{id}={v}"))),
        }
    }
    pairs
}

/// A setting's JSON value: one string, or a list's strings.
#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(String),
    Many(Vec<String>),
}

/// The new instance of `to_new`/`as_new`, from the body's fields.
fn new_instance(
    name: String,
    (base_url, web_root, user, package): (
        Option<String>,
        Option<Utf8PathBuf>,
        Option<String>,
        Option<Utf8PathBuf>,
    ),
    settings: &std::collections::BTreeMap<String, OneOrMany>,
    databases: std::collections::BTreeMap<String, String>,
) -> install::Request {
    let mut given = Vec::new();
    for (id, value) in settings {
        match value {
            OneOrMany::One(v) => given.push(format!("{id}={v}")),
            OneOrMany::Many(vs) => given.extend(vs.iter().map(|v| format!("{id}={v}"))),
        }
    }
    install::Request {
        package: package.unwrap_or_default(),
        name,
        base_url: base_url.unwrap_or_default(),
        web_root: web_root.unwrap_or_default(),
        user,
        settings: given,
        databases: databases
            .into_iter()
            .map(|(id, v)| format!("{id}={v}"))
            .collect(),
        ..install::Request::default()
    }
}
