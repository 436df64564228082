//! Waiting for a child: its timeout, the cancellation token, and the end of its whole process
//! group (SIGTERM, then SIGKILL after the grace period).

use std::io;
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use super::ProcessSpec;

impl ProcessSpec {
    /// Waits for the group leader, enforcing the timeout and the cancellation token armed on
    /// this thread ([`crate::cancel`]); then kills what is left of the group and reaps the
    /// leader. Returns whether the timeout or a cancellation stopped it.
    pub(super) fn wait(&self, child: &mut Child) -> io::Result<(Stopped, ExitStatus)> {
        let pid = child.id();
        // A helper thread waits *without reaping* (WNOWAIT): the leader stays a zombie, so its
        // pid, which is also the group id, cannot be reused while we signal the group.
        let (exit_tx, exit_rx) = mpsc::channel::<io::Result<()>>();
        thread::Builder::new()
            .name(format!("aps-wait-{pid}"))
            .spawn(move || {
                let _ = exit_tx.send(wait_no_reap(pid));
            })?;

        let cancel = crate::cancel::current();
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut stopped = Stopped::No;
        let exited = loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // With a token to watch, wake up often enough to answer a signal at once.
            let slice = match (&cancel, left) {
                (Some(_), Some(left)) => left.min(CANCEL_POLL),
                (Some(_), None) => CANCEL_POLL,
                (None, Some(left)) => left,
                (None, None) => break exit_rx.recv().ok(),
            };
            match exit_rx.recv_timeout(slice) {
                Ok(r) => break Some(r),
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(signal) = cancel.as_ref().and_then(crate::cancel::Cancel::signal) {
                stopped = Stopped::Interrupted(signal);
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped = Stopped::TimedOut;
            } else {
                continue;
            }
            kill_group(pid, libc::SIGTERM);
            match exit_rx.recv_timeout(self.kill_grace) {
                Ok(r) => break Some(r),
                Err(_) => {
                    kill_group(pid, libc::SIGKILL);
                    break exit_rx.recv().ok();
                }
            }
        };
        if let Some(Err(e)) = exited {
            return Err(e);
        }
        // Leftovers (daemonized helpers, `sleep &`) must not outlive the script.
        kill_group(pid, libc::SIGKILL);
        let status = child.wait()?;
        Ok((stopped, status))
    }
}

/// How often the wait for a process checks the cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Why the runner stopped a process before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stopped {
    No,
    TimedOut,
    Interrupted(i32),
}

/// Waits until `pid` has exited, leaving it a zombie (not reaped).
fn wait_no_reap(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: `info` is a plain C struct that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

pub(super) fn kill_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: plain system call; ESRCH (group already empty) is fine.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}
