//! SIGINT, SIGTERM and SIGHUP while an operation runs: the signal only sets the process's
//! cancellation token (the handler itself just writes to a pipe; a thread of ours reads it),
//! the running operation stops its script and rolls back through its normal failure path, and
//! the command exits with 128 + the signal's number. Further signals are ignored and said so:
//! a rollback is never cut short.

use std::process::ExitCode;

use aps_controller::cancel::{Cancel, signal_name};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;
use std::sync::atomic::{AtomicBool, Ordering};

/// Starts listening for the three signals; `on_first` runs once, on the first of them (after
/// the token is set), for a command that must also stop waiting for new work (`serve`).
pub fn install(on_first: impl Fn() + Send + 'static) {
    let mut signals = match Signals::new([SIGINT, SIGTERM, SIGHUP]) {
        Ok(s) => s,
        Err(e) => {
            // Without it the default action (exit at once) stays, and the journal covers that.
            crate::common::errln!("warning: cannot handle SIGINT/SIGTERM/SIGHUP: {e}");
            return;
        }
    };
    let spawned = std::thread::Builder::new()
        .name("aps-signals".into())
        .spawn(move || {
            let cancel = Cancel::process();
            for signal in signals.forever() {
                if cancel.is_requested() {
                    crate::common::errln!(
                        "aps-controller: {} received again: ignored, the rollback goes on until it is complete",
                        signal_name(signal)
                    );
                    continue;
                }
                let asked = if ONE_OPERATION.load(Ordering::SeqCst) {
                    cancel.request_unless_committed(signal)
                } else {
                    cancel.request(signal);
                    true
                };
                if !asked {
                    // The backup is already in place: rolling back would destroy a good
                    // backup, and claiming to would be false. The command finishes as usual.
                    crate::common::errln!(
                        "aps-controller: {} received after the backup was committed: the backup is kept, nothing is rolled back; finishing",
                        signal_name(signal)
                    );
                    continue;
                }
                crate::common::errln!(
                    "aps-controller: {} received: stopping and rolling back what the running operation did (further signals are ignored until that is done)",
                    signal_name(signal)
                );
                on_first();
            }
        });
    if let Err(e) = spawned {
        crate::common::errln!("warning: cannot handle SIGINT/SIGTERM/SIGHUP: {e}");
    }
}

/// Set by a command that runs one operation (`backup`): a signal that comes after the
/// operation committed its result is not a request to stop ([`Cancel::commit_with`]).
static ONE_OPERATION: AtomicBool = AtomicBool::new(false);

pub fn one_operation() {
    ONE_OPERATION.store(true, Ordering::SeqCst);
}

/// The exit code of an interrupted command: 128 + the signal (130 for SIGINT, 143 for SIGTERM,
/// 129 for SIGHUP), as shells report a process killed by it.
pub fn interrupted_exit_code(signal: Option<i32>) -> Option<ExitCode> {
    interrupted_exit_status(signal).map(ExitCode::from)
}

/// [`interrupted_exit_code`] as a number, for the envelope's `Failure`.
pub fn interrupted_exit_status(signal: Option<i32>) -> Option<u8> {
    let signal = signal.or_else(|| Cancel::process().signal())?;
    Some((128 + signal.clamp(1, 127)) as u8)
}
