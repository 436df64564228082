//! The periodic backups (`aps-controller run --periodicity P`): every instance but the staging
//! ones (or the named ones) into the backup store, the off-machine copy, retention
//! ([`crate::run`]).

use aps_controller::ErrorKind;

use super::{Field, ServiceError, check_instance_name, words};
use crate::clock::Clock;
use crate::context::{Panel, PanelError};
use crate::engine::Engine;
use crate::periodicity::Periodicity;
use crate::progress::Progress;
use crate::run::{RunOptions, RunSummary};

/// A run as a front end asks for it.
#[derive(Debug, Clone)]
pub struct Request {
    pub periodicity: Periodicity,
    /// Empty: every registered instance but the staging ones.
    pub instances: Vec<String>,
    /// Backups at once; `None` takes panel.toml's `jobs`, else 2.
    pub jobs: Option<usize>,
}

impl Request {
    /// Everything that can be checked without opening anything.
    pub fn check(&self) -> Result<(), ServiceError> {
        // A run of `final` backups would make backups that retention never removes.
        if self.periodicity == Periodicity::Final {
            return Err(ServiceError::usage(words![
                "periodicity final is the backup `instance remove` takes before removing, never a \
                 periodic one; a run takes hourly, daily, weekly, monthly, bimonthly, shutdown, \
                 manual or all"
            ]));
        }
        for name in &self.instances {
            check_instance_name(Field::InstanceOption, name)?;
        }
        Ok(())
    }

    /// Unknown names are refused before any backup starts. Returns the registered instances
    /// (none: the caller may say that the state folder holds nothing to back up).
    pub fn prepare(&self, engine: &Engine) -> Result<Vec<String>, ServiceError> {
        let registered = engine.instances().map_err(PanelError::Engine)?;
        let unknown: Vec<String> = self
            .instances
            .iter()
            .filter(|i| registered.binary_search(i).is_err())
            .map(|u| format!("{u:?}"))
            .collect();
        if !unknown.is_empty() {
            return Err(ServiceError::Refused {
                kind: ErrorKind::InstanceNotFound,
                step: None,
                message: words![
                    Field::InstanceOption,
                    format!(
                        " names no registered instance: {}; `aps-controller instance list` \
                         shows them",
                        unknown.join(", ")
                    )
                ],
                hint: None,
            });
        }
        Ok(registered)
    }
}

/// The run; instances that failed are in the summary, not an error.
pub fn run(
    panel: &Panel,
    engine: &Engine,
    request: &Request,
    clock: &dyn Clock,
    progress: &dyn Progress,
) -> Result<RunSummary, ServiceError> {
    let options = RunOptions {
        periodicity: request.periodicity,
        instances: request.instances.clone(),
        jobs: request.jobs.or(panel.config.jobs).unwrap_or(2),
    };
    crate::run::run(panel, engine, &options, clock, progress).map_err(ServiceError::from)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_of_final_backups_is_refused() {
        let request = |periodicity| Request {
            periodicity,
            instances: vec!["blog".to_owned()],
            jobs: None,
        };
        let e = request(Periodicity::Final).check().unwrap_err();
        let ServiceError::Refused { kind, .. } = &e else {
            panic!("a refusal: {e}")
        };
        assert_eq!(*kind, ErrorKind::Usage);
        assert!(e.to_string().contains("instance remove"), "{e}");
        for p in Periodicity::EVERY {
            if p != Periodicity::Final {
                assert!(request(p).check().is_ok(), "{p}");
            }
        }
    }
}
