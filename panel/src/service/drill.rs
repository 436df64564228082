//! A restore drill (`aps-controller drill NAME --staging OTHER`): the newest good backup of
//! NAME restored into the staging instance and checked ([`crate::drill`]).

use aps_controller::Controller;
use camino::Utf8PathBuf;

use super::{Field, ServiceError, Words, check_instance_name, require_registered, words};
use crate::context::Panel;
use crate::drill::{DrillOptions, DrillReport};
use crate::engine::Engine;
use crate::progress::Progress;

/// A drill as a front end asks for it.
#[derive(Debug, Clone, Default)]
pub struct Request {
    pub instance: String,
    /// A registered instance of the same package; it is overwritten.
    pub staging: String,
    /// Else panel.toml's `identity-file`.
    pub identity: Option<Utf8PathBuf>,
    /// The off-machine copy instead of the local store.
    pub remote: bool,
}

impl Request {
    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        check_instance_name(Field::Instance, &self.instance)?;
        check_instance_name(Field::Staging, &self.staging)?;
        if self.instance == self.staging {
            return Err(ServiceError::usage(words![
                Field::Staging,
                format!(
                    " is {:?}, the instance being drilled: a drill overwrites the staging \
                     instance, so name another registered instance of the same package",
                    self.instance
                )
            ]));
        }
        Ok(())
    }

    /// Both instances registered; returns the warning for a staging instance not marked as
    /// one (drills set up before roles existed keep working, and the person is told before the
    /// restore starts).
    pub fn prepare(&self, ctl: &Controller) -> Result<Option<Words>, ServiceError> {
        require_registered(ctl, &self.instance)?;
        require_registered(ctl, &self.staging)?;
        let unmarked = ctl
            .store()
            .get(&self.staging)
            .is_ok_and(|i| !i.is_staging());
        Ok(unmarked.then(|| {
            words![
                Field::Staging,
                format!(
                    " {:?} is not marked as a staging instance: a drill overwrites its web \
                     folders and databases, and `run` backs it up like any other; if it is \
                     one, add `role = \"staging\"` to its INSTANCE.toml and register it again \
                     with ",
                    self.staging
                ),
                Field::Replace
            ]
        }))
    }
}

/// The drill; a drill that ran and failed is a report (`passed` false), not an error.
pub fn drill(
    panel: &Panel,
    engine: &Engine,
    request: &Request,
    progress: &dyn Progress,
) -> Result<DrillReport, ServiceError> {
    crate::drill::drill(
        panel,
        engine,
        &DrillOptions {
            instance: request.instance.clone(),
            staging: request.staging.clone(),
            identity: request.identity.clone(),
            remote: request.remote,
        },
        progress,
    )
    .map_err(ServiceError::from)
}
