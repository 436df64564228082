//! Running a child to its end and collecting what it left: the sequence (home, command,
//! confinement, spawn, capture, wait), the concurrent capture of stdout and stderr tails, and
//! [`ProcessOutput`].

use std::collections::VecDeque;
use std::io::{self, Read};
use std::process::{Child, ExitStatus};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use camino::Utf8PathBuf;

use super::wait::{Stopped, kill_group};
use super::{PIPE_DRAIN_LIMIT, ProcessSpec, RunError, TAIL_LIMIT};
use crate::process::Confinement;

impl ProcessSpec {
    /// Runs the process to the end and returns its output whatever its exit status; only a
    /// failure to start, an I/O failure while setting up, or a timeout is an error.
    pub fn output(&self) -> Result<ProcessOutput, RunError> {
        let started = Instant::now();
        let drop_to = self.account_to_switch_to();
        // Held until the output is collected: dropping it removes the private HOME.
        let home = self.private_home_dir(drop_to)?;
        let (mut cmd, stdout_path) = self.command(home.as_ref())?;
        let confinement = Confinement::new();
        self.confine(&mut cmd, &confinement, drop_to)?;
        let (mut child, unregister) = self.spawn_registered(&mut cmd)?;
        let capture = Capture::start(&mut child);

        let waited = self.wait(&mut child).map_err(|e| {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            self.setup_err("wait for the child".to_owned(), e)
        });
        unregister();
        // Whatever the child started, in its group or not, ends with it.
        confinement.end_all();
        drop(confinement);
        let (stopped, status) = waited?;

        let output = self.collect(capture, status, stdout_path, started)?;
        drop(home);
        self.judge_stop(stopped, output)
    }

    /// The output once the group is gone: the tails (after the pipes closed, or the drain
    /// limit) and the size of the stdout file.
    fn collect(
        &self,
        capture: Capture,
        status: ExitStatus,
        stdout_path: Option<Utf8PathBuf>,
        started: Instant,
    ) -> Result<ProcessOutput, RunError> {
        let ((stdout_tail, stdout_truncated), (stderr_tail, stderr_truncated)) = capture.finish();
        let stdout_file_len = match &stdout_path {
            Some(path) => Some(
                std::fs::metadata(path)
                    .map_err(|e| self.setup_err(format!("read the size of {path}"), e))?
                    .len(),
            ),
            None => None,
        };
        Ok(ProcessOutput {
            status,
            stdout_tail,
            stdout_truncated,
            stderr_tail,
            stderr_truncated,
            stdout_file: stdout_path,
            stdout_file_len,
            duration: started.elapsed(),
        })
    }

    /// A run the runner stopped (cancellation, timeout) is an error; any other is the output.
    fn judge_stop(
        &self,
        stopped: Stopped,
        output: ProcessOutput,
    ) -> Result<ProcessOutput, RunError> {
        if let Stopped::Interrupted(signal) = stopped {
            return Err(RunError::Interrupted {
                command: self.command_line(),
                cwd: self.cwd_display(),
                signal,
                output: Box::new(output),
            });
        }
        if stopped == Stopped::TimedOut {
            return Err(RunError::Timeout {
                command: self.command_line(),
                cwd: self.cwd_display(),
                timeout: self.timeout.unwrap_or_default(),
                output: Box::new(output),
            });
        }
        Ok(output)
    }
}

/// The readers of the child's stdout (when captured) and stderr.
struct Capture {
    pub(super) done: mpsc::Receiver<()>,
    pub(super) readers: usize,
    pub(super) stdout: Arc<Mutex<Tail>>,
    pub(super) stderr: Arc<Mutex<Tail>>,
}

impl Capture {
    fn start(child: &mut Child) -> Self {
        let (pipe_tx, done) = mpsc::channel::<()>();
        let stdout = Arc::new(Mutex::new(Tail::default()));
        let stderr = Arc::new(Mutex::new(Tail::default()));
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Arc::clone(&stdout), pipe_tx.clone());
            readers += 1;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Arc::clone(&stderr), pipe_tx.clone());
            readers += 1;
        }
        Capture {
            done,
            readers,
            stdout,
            stderr,
        }
    }

    /// The stdout and stderr tails, each with whether it was cut.
    fn finish(self) -> ((Vec<u8>, bool), (Vec<u8>, bool)) {
        // Wait for the pipes to close: once they do, every group member that held them is gone.
        let drain_deadline = Instant::now() + PIPE_DRAIN_LIMIT;
        for _ in 0..self.readers {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            if self.done.recv_timeout(left).is_err() {
                break;
            }
        }
        (take_tail(&self.stdout), take_tail(&self.stderr))
    }
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// Exit status of the group leader.
    pub status: ExitStatus,
    /// Last [`TAIL_LIMIT`] bytes of stdout (empty when stdout went to a file).
    pub stdout_tail: Vec<u8>,
    /// Whether stdout was longer than what `stdout_tail` holds.
    pub stdout_truncated: bool,
    /// Last [`TAIL_LIMIT`] bytes of stderr.
    pub stderr_tail: Vec<u8>,
    /// Whether stderr was longer than what `stderr_tail` holds.
    pub stderr_truncated: bool,
    /// The file stdout went to, if [`ProcessSpec::stdout_to_file`] was used.
    pub stdout_file: Option<Utf8PathBuf>,
    /// Size of that file after the run.
    pub stdout_file_len: Option<u64>,
    /// Wall-clock time from start to reaping.
    pub duration: Duration,
}

impl ProcessOutput {
    /// stdout tail as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout_tail).into_owned()
    }

    /// stderr tail as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr_tail).into_owned()
    }
}
#[derive(Default)]
struct Tail {
    pub(super) buf: VecDeque<u8>,
    pub(super) truncated: bool,
}

impl Tail {
    pub(super) fn push(&mut self, chunk: &[u8]) {
        self.buf.extend(chunk);
        if self.buf.len() > TAIL_LIMIT {
            let excess = self.buf.len() - TAIL_LIMIT;
            self.buf.drain(..excess);
            self.truncated = true;
        }
    }
}

fn take_tail(tail: &Mutex<Tail>) -> (Vec<u8>, bool) {
    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    let truncated = tail.truncated;
    (std::mem::take(&mut tail.buf).into(), truncated)
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    tail: Arc<Mutex<Tail>>,
    done: mpsc::Sender<()>,
) {
    // The thread is detached: if a process that escaped the group keeps the pipe open, `output`
    // stops waiting after PIPE_DRAIN_LIMIT and this thread ends whenever that process does.
    let _ = thread::Builder::new()
        .name("aps-pipe-reader".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => tail
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; TAIL_LIMIT]);
        assert!(!tail.truncated);
        tail.push(b"xyz");
        assert!(tail.truncated);
        assert_eq!(tail.buf.len(), TAIL_LIMIT);
        let v: Vec<u8> = tail.buf.into();
        assert!(v.ends_with(b"axyz"));
    }
}
