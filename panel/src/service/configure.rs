//! Configure (`aps-controller instance configure`, `PATCH /v1/instances/N/settings`): an
//! instance's settings changed through its package's `configure configure`. The service reads
//! the `ID=VALUE`s and the settings file the front ends hand it into the controller's typed
//! request; the controller checks the changes and does the rest.

use aps_controller::Controller;
use aps_controller::lifecycle::GivenSettings;
use aps_controller::operation::configure::{ConfigureReport, ConfigureRequest};
use camino::{Utf8Path, Utf8PathBuf};

use super::{Field, ServiceError, Words, check_instance_name, check_timeout, words};

/// A configure as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// `ID=VALUE`, in order; an id given more than once is a list.
    pub settings: Vec<String>,
    /// A TOML file of `ID = "value"` / `ID = ["a", "b"]`; `settings` win over it.
    pub settings_file: Option<Utf8PathBuf>,
    pub timeout_secs: Option<u64>,
}

impl Request {
    /// What can be checked without reading anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_timeout(self.timeout_secs)
    }
}

/// Runs the configure.
pub fn configure(ctl: &Controller, request: &Request) -> Result<ConfigureReport, ServiceError> {
    request.check()?;
    let settings = given_settings(&request.settings, request.settings_file.as_deref())?;
    let mut configure = ConfigureRequest::new(request.instance.clone(), settings);
    configure.timeout = request.timeout_secs.map(std::time::Duration::from_secs);
    ctl.configure(&configure).map_err(ServiceError::operation)
}

/// The settings file first, then the `ID=VALUE`s over it (an id given twice is a list): what
/// install and configure are given.
pub(crate) fn given_settings(
    settings: &[String],
    file: Option<&Utf8Path>,
) -> Result<GivenSettings, ServiceError> {
    let from_file = match file {
        Some(file) => {
            let refuse = |e: &dyn std::fmt::Display| {
                ServiceError::usage(words![Field::SettingsFile, format!(" {file}: {e}")])
            };
            let text = std::fs::read_to_string(file).map_err(|e| refuse(&e))?;
            GivenSettings::from_toml(&text).map_err(|e| refuse(&e))?
        }
        None => GivenSettings::new(),
    };
    let given = GivenSettings::from_arguments(settings)
        .map_err(|e| ServiceError::usage(Words::from(e.to_string().as_str())))?;
    Ok(from_file.overridden_by(given))
}
