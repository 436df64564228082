//! Cancellation of running operations (SIGINT, SIGTERM, SIGHUP).
//!
//! A [`Cancel`] token holds the number of the signal that asked the operations to stop (0 while
//! none did). The program that embeds the controller sets it — the CLI from its signal
//! handling, which only stores the number — and the controller checks it where work can be
//! cut short: in the runner's wait for a script or a dump tool (whose whole process group is
//! then stopped with the usual grace period), between the steps of an operation, and in the
//! streams an archive is read from or written to. The operation then fails through its normal
//! failure path, which rolls back everything it did, and the error's kind is `interrupted`.
//!
//! The token an operation checks is *armed* on the operation's thread for its duration
//! ([`Cancel::arm`]); a rollback runs [`shielded`], so that a second signal never cuts a
//! rollback short. Threads of other operations are not affected by either.

use std::cell::RefCell;
use std::io;
use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicUsize, Ordering};

use crate::progress::Meter;

/// Asks running operations to stop; cheap to clone (clones share the flag).
#[derive(Debug, Clone, Default)]
pub struct Cancel {
    signal: Arc<AtomicUsize>,
    /// Whether an operation of this token has made its result final ([`Cancel::commit_with`]);
    /// the lock orders a commit against a signal's request.
    committed: Arc<std::sync::Mutex<bool>>,
}

impl Cancel {
    pub fn new() -> Self {
        Cancel::default()
    }

    /// The token of the process: what the `Controller` uses unless told
    /// otherwise, and what the CLI's signal handling sets.
    pub fn process() -> &'static Cancel {
        static PROCESS: OnceLock<Cancel> = OnceLock::new();
        PROCESS.get_or_init(Cancel::new)
    }

    /// The shared flag, for a signal handler that only stores a number
    /// (`signal_hook::flag::register_usize(SIGTERM, cancel.flag(), SIGTERM as usize)`).
    pub fn flag(&self) -> Arc<AtomicUsize> {
        Arc::clone(&self.signal)
    }

    /// Asks the operations to stop because of `signal` (the first request wins).
    pub fn request(&self, signal: i32) {
        let _ = self.signal.compare_exchange(
            0,
            signal.max(1) as usize,
            Ordering::SeqCst,
            Ordering::SeqCst,
        );
    }

    /// Runs `commit`, the step that makes an operation's result final (a rename into place),
    /// unless a stop was asked first (`Err(signal)`: the operation rolls back as usual). Once
    /// it succeeded, [`Cancel::request_unless_committed`] no longer asks anything to stop:
    /// there is nothing left to roll back.
    pub fn commit_with<T, E>(
        &self,
        commit: impl FnOnce() -> Result<T, E>,
    ) -> Result<Result<T, E>, i32> {
        let mut committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(signal) = self.signal() {
            return Err(signal);
        }
        let result = commit();
        if result.is_ok() {
            *committed = true;
        }
        Ok(result)
    }

    /// Whether an operation of this token committed its result.
    pub fn is_committed(&self) -> bool {
        *self.committed.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// [`Cancel::request`], unless an operation of this token already committed its result
    /// (then `false`, and nothing is asked to stop). For a command that runs one operation.
    pub fn request_unless_committed(&self, signal: i32) -> bool {
        let committed = self.committed.lock().unwrap_or_else(|e| e.into_inner());
        if *committed {
            return false;
        }
        self.request(signal);
        true
    }

    /// The signal that asked to stop, if any did.
    pub fn signal(&self) -> Option<i32> {
        match self.signal.load(Ordering::SeqCst) {
            0 => None,
            n => Some(n as i32),
        }
    }

    pub fn is_requested(&self) -> bool {
        self.signal().is_some()
    }

    /// Makes this token the one checked on the current thread until the guard is dropped.
    pub fn arm(&self) -> Armed {
        self.arm_with(None)
    }

    /// [`Cancel::arm`], and the streams made meanwhile count their bytes into `meter`.
    pub fn arm_with(&self, meter: Option<Meter>) -> Armed {
        let previous = ARMED.with(|a| a.replace(Some((self.clone(), meter))));
        Armed { previous }
    }
}

thread_local! {
    static ARMED: RefCell<Option<(Cancel, Option<Meter>)>> = const { RefCell::new(None) };
}

/// The token armed on this thread, if any (none inside [`shielded`]).
pub fn current() -> Option<Cancel> {
    ARMED.with(|a| a.borrow().as_ref().map(|(c, _)| c.clone()))
}

/// The progress meter armed with the token on this thread, if any.
pub fn current_meter() -> Option<Meter> {
    ARMED.with(|a| a.borrow().as_ref().and_then(|(_, m)| m.clone()))
}

/// The signal that interrupted the current thread's operation, if one did.
pub fn requested() -> Option<i32> {
    current().and_then(|c| c.signal())
}

/// Restores the previously armed token when dropped.
#[must_use = "the token is armed only while the guard lives"]
pub struct Armed {
    previous: Option<(Cancel, Option<Meter>)>,
}

impl Drop for Armed {
    fn drop(&mut self) {
        let previous = self.previous.take();
        ARMED.with(|a| *a.borrow_mut() = previous);
    }
}

/// Runs `f` with no token armed: a rollback is never interrupted.
pub fn shielded<T>(f: impl FnOnce() -> T) -> T {
    let previous = ARMED.with(|a| a.replace(None));
    let _restore = Armed { previous };
    f()
}

/// The error a cancelled stream returns: an `io::Error` of kind `Other` carrying this, so that
/// `write_all`/`read_exact` do not retry it (they retry `ErrorKind::Interrupted`), and
/// `OperationError::kind` finds it in the source chain.
#[derive(Debug, thiserror::Error)]
#[error("stopped by {}", signal_name(*.signal))]
pub struct Cancelled {
    pub signal: i32,
}

impl Cancelled {
    pub fn io_error(signal: i32) -> io::Error {
        io::Error::other(Cancelled { signal })
    }

    /// The cancellation carried by `error`, if it is one.
    pub fn in_io(error: &io::Error) -> Option<&Cancelled> {
        error.get_ref().and_then(|e| e.downcast_ref::<Cancelled>())
    }
}

/// `SIGINT`, `SIGTERM`, `SIGHUP`, else `signal N`.
pub fn signal_name(signal: i32) -> String {
    match signal {
        libc::SIGINT => "SIGINT".into(),
        libc::SIGTERM => "SIGTERM".into(),
        libc::SIGHUP => "SIGHUP".into(),
        n => format!("signal {n}"),
    }
}

/// A reader or writer that fails with [`Cancelled`] once the token armed when it was made is
/// set (the check is one atomic load per call), and reports the bytes that pass through it.
pub struct Guarded<S> {
    inner: S,
    cancel: Option<Cancel>,
    progress: Option<Meter>,
}

impl<S> Guarded<S> {
    /// Wraps `inner` with the token and meter armed on the current thread (if any).
    pub fn new(inner: S) -> Self {
        Guarded {
            inner,
            cancel: current(),
            progress: current_meter(),
        }
    }

    fn check(&self) -> io::Result<()> {
        match self.cancel.as_ref().and_then(Cancel::signal) {
            Some(signal) => Err(Cancelled::io_error(signal)),
            None => Ok(()),
        }
    }

    fn count(&self, n: usize) {
        if let Some(m) = &self.progress {
            m.add(n as u64);
        }
    }
}

impl<R: io::Read> io::Read for Guarded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.read(buf)?;
        self.count(n);
        Ok(n)
    }
}

impl<W: io::Write> io::Write for Guarded<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.check()?;
        let n = self.inner.write(buf)?;
        self.count(n);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn armed_token_stops_a_stream_and_shield_hides_it() {
        let cancel = Cancel::new();
        let _armed = cancel.arm();
        let mut out = Guarded::new(Vec::new());
        out.write_all(b"abc").unwrap();
        cancel.request(libc::SIGTERM);
        cancel.request(libc::SIGINT);
        assert_eq!(
            cancel.signal(),
            Some(libc::SIGTERM),
            "the first signal wins"
        );
        let err = out.write_all(b"def").unwrap_err();
        assert_eq!(Cancelled::in_io(&err).unwrap().signal, libc::SIGTERM);
        assert_eq!(requested(), Some(libc::SIGTERM));
        shielded(|| {
            assert_eq!(requested(), None);
            let mut during = Guarded::new(Vec::new());
            during.write_all(b"rollback").unwrap();
        });
        assert_eq!(requested(), Some(libc::SIGTERM));
    }
}
