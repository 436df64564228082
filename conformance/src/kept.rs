//! A kept sandbox taken away later: the instances its run left registered in the run's own
//! state (and so their databases and users on the host's servers), then the sandbox itself.

use camino::Utf8Path;

use aps_controller::Controller;
use aps_controller::config::ControllerConfig;
use aps_controller::registry::StateDir;

use crate::error::ConformanceError;
use crate::sandbox;

/// What [`remove_kept`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Removed {
    /// There was a sandbox of that name to remove.
    pub found: bool,
    /// What could not be removed of the run's instances (databases, users), for a person.
    pub left: Vec<String>,
}

/// Removes the sandbox `name` of `base`, kept or left by a killed run: first every instance
/// registered in its run's state, through a controller with the host's configuration
/// (`host`: its database servers), then the account, home and run folder.
pub fn remove_kept(
    base: &Utf8Path,
    name: &str,
    host: &ControllerConfig,
) -> Result<Removed, ConformanceError> {
    let mut removed = Removed::default();
    if !sandbox::is_sandbox_name(name) {
        return Ok(removed);
    }
    let state = sandbox::run_folder(base, name).join("state");
    if state.is_dir() {
        let mut config = host.clone();
        config.state = StateDir::at(state.clone());
        let controller = Controller::open(config).map_err(|e| ConformanceError::Controller {
            state,
            source: Box::new(e),
        })?;
        removed.left = crate::scenario::start::remove_instances(&controller);
    }
    removed.found = sandbox::remove_named(base, name)?;
    Ok(removed)
}
