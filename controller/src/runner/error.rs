//! Why a child did not succeed: [`RunError`], naming the command line and working directory,
//! never environment values.

use std::io;
use std::time::Duration;

use super::{ERROR_STDERR_LIMIT, ProcessOutput};

/// Why a process did not succeed. Every variant names the command line (shell-quoted) and the
/// working directory; none holds environment values.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started (not found, not executable, bad working directory).
    #[error("could not start `{command}` in {cwd}: {source}")]
    Spawn {
        command: String,
        cwd: String,
        #[source]
        source: io::Error,
    },
    /// Something around the process failed: opening the stdin file, creating the stdout file
    /// or the private HOME, waiting.
    #[error("could not {what} for `{command}` in {cwd}: {source}")]
    Setup {
        command: String,
        cwd: String,
        what: String,
        #[source]
        source: io::Error,
    },
    /// The process exited with a non-zero status.
    #[error("`{command}` in {cwd} failed with exit code {code}{}", stderr_suffix(.output))]
    Exit {
        command: String,
        cwd: String,
        code: i32,
        output: Box<ProcessOutput>,
    },
    /// The process was killed by a signal it did not get from our timeout.
    #[error("`{command}` in {cwd} was killed by {}{}", signal_name(*.signal), stderr_suffix(.output))]
    Signal {
        command: String,
        cwd: String,
        signal: i32,
        output: Box<ProcessOutput>,
    },
    /// A signal to the controller (SIGINT, SIGTERM, SIGHUP) asked the operation to stop: the
    /// process's whole group got SIGTERM, then SIGKILL after the grace period.
    #[error("`{command}` in {cwd} was stopped because the controller got {}{}", crate::cancel::signal_name(*.signal), stderr_suffix(.output))]
    Interrupted {
        command: String,
        cwd: String,
        signal: i32,
        output: Box<ProcessOutput>,
    },
    /// The process ran past its timeout; its whole process group was killed.
    #[error("`{command}` in {cwd} timed out after {timeout:?} and was killed{}", stderr_suffix(.output))]
    Timeout {
        command: String,
        cwd: String,
        timeout: Duration,
        output: Box<ProcessOutput>,
    },
}

impl RunError {
    /// The shell-quoted command line.
    pub fn command(&self) -> &str {
        match self {
            RunError::Spawn { command, .. }
            | RunError::Setup { command, .. }
            | RunError::Exit { command, .. }
            | RunError::Signal { command, .. }
            | RunError::Timeout { command, .. }
            | RunError::Interrupted { command, .. } => command,
        }
    }

    /// The working directory the process ran (or was to run) in.
    pub fn cwd(&self) -> &str {
        match self {
            RunError::Spawn { cwd, .. }
            | RunError::Setup { cwd, .. }
            | RunError::Exit { cwd, .. }
            | RunError::Signal { cwd, .. }
            | RunError::Timeout { cwd, .. }
            | RunError::Interrupted { cwd, .. } => cwd,
        }
    }

    /// What the process printed, when it ran at all.
    pub fn output(&self) -> Option<&ProcessOutput> {
        match self {
            RunError::Exit { output, .. }
            | RunError::Signal { output, .. }
            | RunError::Timeout { output, .. }
            | RunError::Interrupted { output, .. } => Some(output),
            RunError::Spawn { .. } | RunError::Setup { .. } => None,
        }
    }

    /// The stderr tail (lossy UTF-8), empty when the process never ran.
    pub fn stderr_tail(&self) -> String {
        self.output()
            .map(ProcessOutput::stderr_lossy)
            .unwrap_or_default()
    }
}

fn excerpt(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim_end();
    if text.is_empty() {
        String::new()
    } else if start > 0 {
        format!("; stderr (last {limit} bytes):\n…{text}")
    } else {
        format!("; stderr:\n{text}")
    }
}

fn stderr_suffix(output: &ProcessOutput) -> String {
    excerpt(&output.stderr_tail, ERROR_STDERR_LIMIT)
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string.
    let ptr = unsafe { libc::strsignal(signal) };
    if ptr.is_null() {
        return format!("signal {signal}");
    }
    let name = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy();
    format!("signal {signal} ({name})")
}
