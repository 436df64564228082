//! Install (`aps-controller instance install`, `POST /v1/instances`): a new instance made from
//! a package. The service reads what the front ends hand it as text — `ID=VALUE` settings, a
//! settings file, `ID=SERVER` / `ID=existing:FILE` databases — into the controller's typed
//! request; the controller checks and does the rest.

use std::collections::BTreeMap;

use aps_controller::Controller;
use aps_controller::database::Database;
use aps_controller::operation::install::{DatabaseChoice, InstallReport, InstallRequest};
use camino::{Utf8Path, Utf8PathBuf};

use super::{Field, ServiceError, check_instance_name, check_timeout, words};

/// An install as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// A package folder or `.app.zip`.
    pub package: Utf8PathBuf,
    pub name: String,
    pub base_url: String,
    pub web_root: Utf8PathBuf,
    pub user: Option<String>,
    /// `ID=VALUE`, in order; an id given more than once is a list.
    pub settings: Vec<String>,
    /// A TOML file of `ID = "value"` / `ID = ["a", "b"]`; `settings` win over it.
    pub settings_file: Option<Utf8PathBuf>,
    /// `ID=SERVER` or `ID=existing:FILE`.
    pub databases: Vec<String>,
    pub force: bool,
    pub dry_run: bool,
    pub timeout_secs: Option<u64>,
}

impl Request {
    /// What can be checked without reading anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Name, &self.name)?;
        check_timeout(self.timeout_secs)?;
        for (field, path) in [
            (Field::Package, Some(&self.package)),
            (Field::WebRoot, Some(&self.web_root)),
        ] {
            if path.is_some_and(|p| p.as_str().is_empty()) {
                return Err(ServiceError::usage(words![field, " must not be empty"]));
            }
        }
        for pair in &self.databases {
            split_pair(Field::Database, pair)?;
        }
        Ok(())
    }
}

/// Runs the install (or, with `dry_run`, its checks).
pub fn install(ctl: &Controller, request: &Request) -> Result<InstallReport, ServiceError> {
    let install = controller_request(request)?;
    ctl.install(&install).map_err(ServiceError::operation)
}

/// The request checked and read into the controller's (settings file, databases' files).
pub(crate) fn controller_request(request: &Request) -> Result<InstallRequest, ServiceError> {
    request.check()?;
    let mut install = InstallRequest::new(
        absolute(&request.package)?,
        request.name.clone(),
        request.base_url.clone(),
        absolute(&request.web_root)?,
    );
    install.user = request.user.clone();
    install.settings =
        super::configure::given_settings(&request.settings, request.settings_file.as_deref())?;
    install.databases = databases(request)?;
    install.force = request.force;
    install.dry_run = request.dry_run;
    install.timeout = request.timeout_secs.map(std::time::Duration::from_secs);
    Ok(install)
}

fn absolute(path: &Utf8Path) -> Result<Utf8PathBuf, ServiceError> {
    Ok(aps_controller::paths::absolute(path))
}

fn split_pair(field: Field, pair: &str) -> Result<(String, String), ServiceError> {
    match pair.split_once('=') {
        Some((id, value)) if !id.trim().is_empty() => Ok((id.trim().to_owned(), value.to_owned())),
        _ => Err(ServiceError::usage(words![
            field,
            format!(" {pair:?} is not ID=VALUE")
        ])),
    }
}

/// `ID=SERVER` or `ID=existing:FILE`.
fn databases(request: &Request) -> Result<BTreeMap<String, DatabaseChoice>, ServiceError> {
    let mut out = BTreeMap::new();
    for pair in &request.databases {
        let (id, value) = split_pair(Field::Database, pair)?;
        let choice = match value.strip_prefix("existing:") {
            Some(file) => DatabaseChoice::Existing(existing(&id, Utf8Path::new(file))?),
            None if value.is_empty() => {
                return Err(ServiceError::usage(words![
                    Field::Database,
                    format!(" {id}= names no server")
                ]));
            }
            None => DatabaseChoice::Server(value),
        };
        if out.insert(id.clone(), choice).is_some() {
            return Err(ServiceError::usage(words![
                Field::Database,
                format!(" {id} is given twice")
            ]));
        }
    }
    Ok(out)
}

fn existing(id: &str, file: &Utf8Path) -> Result<Database, ServiceError> {
    let refuse = |what: String| {
        ServiceError::usage(words![
            Field::Database,
            format!(
                " {id}=existing:{file}: {what} (the file holds the keys of INSTANCE.toml's [databases.{id}]: type, name, login, password, host, port)"
            )
        ])
    };
    let text = std::fs::read_to_string(file).map_err(|e| refuse(e.to_string()))?;
    aps_controller::registry::parse_database_table(&text).map_err(refuse)
}
