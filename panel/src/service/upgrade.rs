//! Upgrade (`aps-controller instance upgrade`, `POST /v1/instances/N/upgrade`): an instance
//! moved to a newer version of its package. The service reads the front ends' `ID=VALUE`
//! settings into the controller's typed request; the controller checks and does the rest.

use aps_controller::Controller;
use aps_controller::lifecycle::GivenSettings;
use aps_controller::operation::upgrade::{UpgradeReport, UpgradeRequest};
use camino::Utf8PathBuf;

use super::{Field, ServiceError, Words, check_instance_name, check_timeout, words};

/// An upgrade as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// The new package: a folder or `.app.zip`.
    pub package: Utf8PathBuf,
    /// `ID=VALUE`, in order; an id given more than once is a list.
    pub settings: Vec<String>,
    pub dry_run: bool,
    pub timeout_secs: Option<u64>,
}

impl Request {
    /// What can be checked without reading anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_timeout(self.timeout_secs)?;
        if self.package.as_str().is_empty() {
            return Err(ServiceError::usage(words![
                Field::Package,
                " must not be empty"
            ]));
        }
        Ok(())
    }
}

/// Runs the upgrade (or, with `dry_run`, its checks).
pub fn upgrade(ctl: &Controller, request: &Request) -> Result<UpgradeReport, ServiceError> {
    request.check()?;
    let mut upgrade = UpgradeRequest::new(
        request.instance.clone(),
        aps_controller::paths::absolute(&request.package),
    );
    upgrade.settings = GivenSettings::from_arguments(&request.settings)
        .map_err(|e| ServiceError::usage(Words::from(e.to_string().as_str())))?;
    upgrade.dry_run = request.dry_run;
    upgrade.timeout = request.timeout_secs.map(std::time::Duration::from_secs);
    ctl.upgrade(&upgrade).map_err(ServiceError::operation)
}
