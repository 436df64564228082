//! Stopping a repository backup on SIGINT, SIGTERM or SIGHUP. The engine has no way to be
//! told to stop, so the source it reads from stops instead: once the operation's cancellation
//! token is set, the walk ends, no further file or dump is opened, and every read in progress
//! fails (a running dump tool is then stopped by its reader). The stop is recorded as a problem,
//! so the snapshot the engine still saves is removed again, like the one of any incomplete
//! backup, and the backup ends as `interrupted`. Data already written stays unreferenced until
//! a prune removes it; the repository stays consistent.

use std::io::{self, Read};

use aps_controller::cancel::{self, Cancel, Cancelled, signal_name};
use rustic_core::{ReadSource, ReadSourceEntry, ReadSourceOpen, RusticResult};

use crate::store::repository::{Problems, rustic_io};

/// The token this backup obeys: the one armed on the calling thread, else the process's (the
/// CLI's signal handling sets it).
pub(super) fn token() -> Cancel {
    cancel::current().unwrap_or_else(|| Cancel::process().clone())
}

/// `S`, stopped by `cancel`.
pub(super) struct Cancellable<S> {
    inner: S,
    cancel: Cancel,
    problems: Problems,
}

impl<S> Cancellable<S> {
    pub(super) fn new(inner: S, cancel: Cancel, problems: &Problems) -> Self {
        Cancellable {
            inner,
            cancel,
            problems: problems.clone(),
        }
    }
}

/// Records the stop once (the first one to see it), and returns the error to give the engine.
fn stopped(cancel: &Cancel, problems: &Problems) -> Option<io::Error> {
    let signal = cancel.signal()?;
    problems.push_once(format!("stopped by {}", signal_name(signal)));
    Some(Cancelled::io_error(signal))
}

type Entry<O> = RusticResult<ReadSourceEntry<O>>;

impl<S> ReadSource for Cancellable<S>
where
    S: ReadSource,
    S::Iter: Send + 'static,
    S::Open: Send + 'static,
{
    type Open = CancellableOpen<S::Open>;
    type Iter = Box<dyn Iterator<Item = Entry<Self::Open>> + Send>;

    fn size(&self) -> RusticResult<Option<u64>> {
        self.inner.size()
    }

    fn entries(&self) -> Self::Iter {
        let (cancel, problems) = (self.cancel.clone(), self.problems.clone());
        Box::new(
            self.inner
                .entries()
                // The walk ends at the stop: what is left is never offered to the engine.
                .take_while({
                    let (cancel, problems) = (cancel.clone(), problems.clone());
                    move |_| stopped(&cancel, &problems).is_none()
                })
                .map(move |entry| {
                    entry.map(|e| ReadSourceEntry {
                        path: e.path,
                        node: e.node,
                        open: e.open.map(|inner| CancellableOpen {
                            inner,
                            cancel: cancel.clone(),
                            problems: problems.clone(),
                        }),
                    })
                }),
        )
    }
}

pub(super) struct CancellableOpen<O> {
    inner: O,
    cancel: Cancel,
    problems: Problems,
}

impl<O: ReadSourceOpen> ReadSourceOpen for CancellableOpen<O> {
    type Reader = CancellableReader<O::Reader>;

    fn open(self) -> RusticResult<Self::Reader> {
        if let Some(e) = stopped(&self.cancel, &self.problems) {
            return Err(rustic_io("the backup was stopped", e));
        }
        Ok(CancellableReader {
            inner: self.inner.open()?,
            cancel: self.cancel,
            problems: self.problems,
        })
    }
}

pub(super) struct CancellableReader<R> {
    inner: R,
    cancel: Cancel,
    problems: Problems,
}

impl<R: Read> Read for CancellableReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if let Some(e) = stopped(&self.cancel, &self.problems) {
            return Err(e);
        }
        self.inner.read(buf)
    }
}
