//! Enable and disable (`aps-controller instance enable|disable`, `POST
//! /v1/instances/N/enable|disable`): an instance switched on or off by its package's
//! `configure enable|disable`, where the package declares `status-control`.

use aps_controller::Controller;
use aps_controller::operation::enable::{EnableReport, EnableRequest};

use super::{Field, ServiceError, check_instance_name, check_timeout};

/// An enable or a disable as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// `true` to enable, `false` to disable.
    pub enabled: bool,
    pub timeout_secs: Option<u64>,
}

impl Request {
    /// What can be checked without reading anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_timeout(self.timeout_secs)
    }
}

/// Runs `configure enable` or `configure disable`.
pub fn set_enabled(ctl: &Controller, request: &Request) -> Result<EnableReport, ServiceError> {
    request.check()?;
    let mut enable = EnableRequest::new(request.instance.clone(), request.enabled);
    enable.timeout = request.timeout_secs.map(std::time::Duration::from_secs);
    ctl.set_enabled(&enable).map_err(ServiceError::operation)
}
