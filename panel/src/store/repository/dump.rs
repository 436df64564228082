//! Reading a database dump from its tool: full buffers, and a non-zero exit as a read error (so a
//! failed dump fails the backup).

use std::io::{self, Read};
use std::time::Duration;

use aps_controller::account::Account;
use aps_controller::database::{self, Database};
use sha2::{Digest, Sha256};

use crate::store::repository::Problems;
use crate::store::repository::manifest::DumpSlot;

/// One database dump to stream: the database, the account its tool runs as, its bound, and
/// where its result goes.
pub(super) struct DumpJob {
    pub(super) id: String,
    pub(super) db: Database,
    pub(super) account: Option<Account>,
    pub(super) timeout: Duration,
    pub(super) problems: Problems,
    pub(super) slot: DumpSlot,
}

/// A file reader that records its errors.
pub(super) struct Watched<R> {
    pub(super) inner: R,
    pub(super) what: String,
    pub(super) problems: Problems,
}

impl<R: Read> Read for Watched<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.inner.read(buf).inspect_err(|e| {
            self.problems
                .push(format!("cannot read {}: {e}", self.what));
        })
    }
}

/// Reads a dump tool's stdout through a pipe while the controller's runner runs the tool (as
/// the instance's account, confined, under a timeout, stopped by SIGINT/SIGTERM). Each read
/// fills the caller's buffer (a pipe returns at most 64 KiB per read, and the engine's
/// chunker slows down on short reads); end of stream is only reported after the tool exited
/// 0, so a failed dump is a read error, never a short file in a saved snapshot. The bytes are
/// counted and hashed for the manifest.
pub(super) struct DumpReader {
    pub(super) label: String,
    pub(super) pipe: io::PipeReader,
    pub(super) run: Option<std::thread::JoinHandle<Result<(), String>>>,
    pub(super) problems: Problems,
    pub(super) slot: DumpSlot,
    pub(super) size: u64,
    pub(super) sha: Sha256,
    pub(super) finished: bool,
}

impl DumpReader {
    pub(super) fn start(job: DumpJob) -> Result<Self, (String, Problems)> {
        let DumpJob {
            id,
            db,
            account,
            timeout,
            problems,
            mut slot,
        } = job;
        let label = format!("database {id} ({}, {})", db.name, db.server());
        let started = (|| {
            let (spec, program) =
                database::as_account(account.as_ref(), || database::dump_process(&db))
                    .map_err(|e| e.to_string())?;
            let (pipe, writer) =
                io::pipe().map_err(|e| format!("cannot dump {label}: no pipe: {e}"))?;
            let spec = spec.timeout(timeout).stdout_to_pipe(writer);
            let what = format!("{program} ({label})");
            let run = std::thread::Builder::new()
                .name(format!("dump-{id}"))
                .spawn(move || {
                    let result = spec.run().map(|_| ()).map_err(|e| {
                        let tail = e.stderr_tail();
                        format!(
                            "{e}{}",
                            if tail.is_empty() {
                                String::new()
                            } else {
                                format!(": {tail}")
                            }
                        )
                    });
                    // The spec holds the pipe's write end: the reader's end of stream.
                    drop(spec);
                    result
                })
                .map_err(|e| format!("cannot run {what}: {e}"))?;
            Ok::<_, String>((pipe, run))
        })();
        match started {
            Ok((pipe, run)) => Ok(DumpReader {
                label,
                pipe,
                run: Some(run),
                problems,
                slot,
                size: 0,
                sha: Sha256::new(),
                finished: false,
            }),
            Err(message) => {
                slot.finish(Err(message.clone()));
                Err((message, problems))
            }
        }
    }

    pub(super) fn fail(&mut self, message: String) -> io::Error {
        self.problems.push(message.clone());
        self.slot.finish(Err(message.clone()));
        io::Error::other(message)
    }
}

impl Read for DumpReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.finished {
            return Ok(0);
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.pipe.read(&mut buf[filled..]) {
                Ok(0) => break,
                Ok(n) => filled += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    let label = self.label.clone();
                    return Err(self.fail(format!("reading the dump of {label} failed: {e}")));
                }
            }
        }
        self.sha.update(&buf[..filled]);
        self.size += filled as u64;
        if filled == 0 {
            self.finished = true;
            let ran = self
                .run
                .take()
                .map(|h| {
                    h.join()
                        .unwrap_or_else(|_| Err("the dump's thread panicked".into()))
                })
                .unwrap_or(Ok(()));
            if let Err(e) = ran {
                let label = self.label.clone();
                return Err(self.fail(format!("the dump of {label} failed: {e}")));
            }
            let sha = hex::encode(std::mem::take(&mut self.sha).finalize());
            self.slot.finish(Ok((self.size, sha)));
        }
        Ok(filled)
    }
}
