//! One operation of the run's controller stopped on purpose, by the path a SIGTERM to the
//! CLI takes: the controller's cancellation token set from another thread.
//!
//! The operation runs with a token of its own ([`Controller::replace_cancel`]), never the
//! process's: a token cannot be cleared, and the operations after it must run. A signal the
//! run itself gets meanwhile is passed on to that token.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use aps_controller::cancel::Cancel;
use aps_controller::{Controller, OperationError};

use super::Context;
use crate::findings;

/// How often the watcher looks for the account's processes.
const POLL: Duration = Duration::from_millis(2);

/// What the command line of a package's script holds: the controller runs each from the
/// `scripts/` folder of the package's copy (`INTERPRETER …/scripts/NAME OPERATION`).
const SCRIPTS_FOLDER: &str = "/scripts/";

/// Where the stop landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Landed {
    /// While the package's script ran.
    InScript,
    /// As the operation started: in the controller's own phases.
    AtStart,
    /// Nowhere: the operation ended before the watcher saw a process of the account.
    Missed,
}

impl Landed {
    pub(super) fn describe(self) -> &'static str {
        match self {
            Landed::InScript => "stopped while the package's script ran",
            Landed::AtStart => "stopped as it started",
            Landed::Missed => "not stopped",
        }
    }
}

/// Runs `op` on the run's controller and sends SIGTERM as soon as a process of `uid` runs a
/// script of the package (the controller runs them from a `scripts/` folder of its own);
/// [`Landed::Missed`] when `op` ended first.
pub(super) fn while_running<T>(
    cx: &mut Context<'_>,
    uid: u32,
    op: impl FnOnce(&Controller) -> Result<T, OperationError>,
) -> (Result<T, OperationError>, Landed) {
    let token = Cancel::new();
    let previous = cx.controller.replace_cancel(token.clone());
    let done = AtomicBool::new(false);
    let seen = AtomicBool::new(false);
    let result = std::thread::scope(|scope| {
        scope.spawn(|| {
            while !done.load(Ordering::SeqCst) {
                if let Some(signal) = previous.signal() {
                    token.request(signal);
                    return;
                }
                if findings::processes_of(uid)
                    .iter()
                    .any(|p| p.command.contains(SCRIPTS_FOLDER))
                {
                    token.request(libc_sigterm());
                    seen.store(true, Ordering::SeqCst);
                    return;
                }
                std::thread::sleep(POLL);
            }
        });
        let result = op(&cx.controller);
        done.store(true, Ordering::SeqCst);
        result
    });
    cx.controller.replace_cancel(previous);
    let landed = if seen.load(Ordering::SeqCst) {
        Landed::InScript
    } else {
        Landed::Missed
    };
    (result, landed)
}

/// Runs `op` on the run's controller with SIGTERM already asked for: the stop lands in the
/// controller's first check, before any script.
pub(super) fn at_start<T>(
    cx: &mut Context<'_>,
    op: impl FnOnce(&Controller) -> Result<T, OperationError>,
) -> (Result<T, OperationError>, Landed) {
    let token = Cancel::new();
    token.request(libc_sigterm());
    let previous = cx.controller.replace_cancel(token);
    let result = op(&cx.controller);
    cx.controller.replace_cancel(previous);
    (result, Landed::AtStart)
}

fn libc_sigterm() -> i32 {
    rustix::process::Signal::TERM.as_raw()
}
