//! Reading a snapshot back, one entry at a time: [`write_out`] writes it into a
//! (controller-owned, empty) folder for `store restore --to DIR`; [`stream_tree`] hands it,
//! entry by entry with each file's content, to the archive writer that stages a restore.
//!
//! Why not the engine's own restore: it reads packs with 20 threads and queues every decrypted
//! blob for writing, so its memory grows with the data (618–822 MB peak on an 800 MB site);
//! and it panics on a read error (its pack reads are unwrapped); snapshots written before our
//! engine fix (third_party/rustic_core/PATCHED.md) also record size 0 for a streamed dump,
//! which the engine's restore writes empty. Here the snapshot's tree is streamed in order and
//! each file's content is read with the engine's `dump` (which reads one file's blobs, a few
//! at a time): memory stays bounded by a few blobs whatever the size of the site, every error
//! is an error, and a file gets exactly the bytes its content holds.
//!
//! Modes (permission, setuid, setgid and sticky bits) and modification times are restored, as
//! the archive store keeps them; owners are not (the staging folder is the controller's, and
//! the controller's restore gives what it writes to the instance's account).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Component, Path, PathBuf};

use camino::Utf8Path;
use rustic_core::repofile::{Node, NodeType};
use rustic_core::{IndexedFull, LsOptions, Repository, RusticError};
use rustix::fs::{AtFlags, Mode, Timespec, Timestamps, UTIME_OMIT};

/// What went wrong writing a snapshot out, and at which path of the snapshot.
#[derive(Debug, thiserror::Error)]
pub enum WriteOutError {
    #[error("reading {path} from the repository failed: {source}")]
    Read {
        path: String,
        #[source]
        source: Box<RusticError>,
    },
    #[error("writing {path} into the staging folder failed: {source}")]
    Write {
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("the snapshot holds an entry with an unusable path: {path:?}")]
    BadPath { path: String },
}

/// Writes the tree below `root` (a folder node of a snapshot) into `target`, which must exist
/// and be empty: [`stream_tree`] with a sink that makes each entry.
pub(super) fn write_out<S: IndexedFull>(
    repo: &Repository<S>,
    root: &Node,
    target: &Utf8Path,
) -> Result<(), StreamError<WriteOutError>>
where
    Repository<S>: Sync,
{
    let write_err = |path: &Path| {
        let path = path.display().to_string();
        move |source| WriteOutError::Write { path, source }
    };
    // Folders get their mode and time once everything inside them is written (writing a file
    // changes its folder's mtime): each folder, set when the stream leaves it. The root is the
    // staging folder itself, which stays private.
    let mut open_dirs: Vec<(PathBuf, Node)> = Vec::new();
    let close_left = |open_dirs: &mut Vec<(PathBuf, Node)>, rel: Option<&Path>| {
        while let Some((dir, _)) = open_dirs.last() {
            if rel.is_some_and(|rel| rel.starts_with(dir) && rel != *dir) {
                break;
            }
            let (dir, dir_node) = open_dirs.pop().expect("just looked");
            finish(target, &dir, &dir_node).map_err(write_err(&dir))?;
        }
        Ok::<_, WriteOutError>(())
    };
    stream_tree(repo, root, |item| {
        let (rel, node) = item.entry();
        close_left(&mut open_dirs, Some(rel))?;
        let dest = target.as_std_path().join(rel);
        match item {
            Streamed::Dir { .. } => {
                std::fs::DirBuilder::new()
                    .mode(0o700)
                    .create(&dest)
                    .map_err(write_err(rel))?;
                open_dirs.push((rel.to_owned(), node.clone()));
            }
            Streamed::File { content, .. } => {
                let file = std::fs::OpenOptions::new()
                    .write(true)
                    .create_new(true)
                    .mode(0o600)
                    .custom_flags(libc::O_NOFOLLOW)
                    .open(&dest)
                    .map_err(write_err(rel))?;
                let mut out = BufWriter::with_capacity(256 * 1024, file);
                io::copy(content, &mut out).map_err(write_err(rel))?;
                let file = out
                    .into_inner()
                    .map_err(|e| write_err(rel)(e.into_error()))?;
                set_mode_fd(&file, node).map_err(write_err(rel))?;
                drop(file);
                set_times(target, rel, node).map_err(write_err(rel))?;
            }
            Streamed::Symlink { .. } => {
                std::os::unix::fs::symlink(node.node_type.to_link(), &dest)
                    .map_err(write_err(rel))?;
                set_times(target, rel, node).map_err(write_err(rel))?;
            }
        }
        Ok(())
    })?;
    close_left(&mut open_dirs, None).map_err(StreamError::Sink)
}

/// Permission, setuid, setgid and sticky bits from the restic format's Go file mode.
pub(super) fn posix_mode(node: &Node) -> Option<u32> {
    let go = node.meta.mode?;
    let mut mode = go & 0o777;
    if go & (1 << 23) != 0 {
        mode |= 0o4000;
    }
    if go & (1 << 22) != 0 {
        mode |= 0o2000;
    }
    if go & (1 << 20) != 0 {
        mode |= 0o1000;
    }
    Some(mode)
}

fn set_mode_fd(file: &File, node: &Node) -> io::Result<()> {
    if let Some(mode) = posix_mode(node) {
        rustix::fs::fchmod(file.as_fd(), Mode::from_raw_mode(mode))?;
    }
    Ok(())
}

fn set_times(target: &Utf8Path, rel: &Path, node: &Node) -> io::Result<()> {
    let Some(mtime) = node.meta.mtime else {
        return Ok(());
    };
    let omit = Timespec {
        tv_sec: 0,
        tv_nsec: UTIME_OMIT,
    };
    let times = Timestamps {
        last_access: omit,
        last_modification: Timespec {
            tv_sec: mtime.as_second(),
            tv_nsec: i64::from(mtime.subsec_nanosecond()),
        },
    };
    let path = if rel.as_os_str().is_empty() {
        target.as_std_path().to_owned()
    } else {
        target.as_std_path().join(rel)
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        path.as_os_str(),
        &times,
        AtFlags::SYMLINK_NOFOLLOW,
    )?;
    Ok(())
}

/// A folder is complete: give it its mode and time.
fn finish(target: &Utf8Path, rel: &Path, node: &Node) -> io::Result<()> {
    let path = if rel.as_os_str().is_empty() {
        target.as_std_path().to_owned()
    } else {
        target.as_std_path().join(rel)
    };
    if let Some(mode) = posix_mode(node) {
        rustix::fs::chmod(
            OsStr::from_bytes(path.as_os_str().as_bytes()),
            Mode::from_raw_mode(mode),
        )?;
    }
    set_times(target, rel, node)
}

/// One entry of a snapshot's tree as [`stream_tree`] hands it over, in the tree's order
/// (pre-order, siblings sorted by name); paths are relative to the streamed folder.
pub(super) enum Streamed<'a> {
    Dir {
        rel: &'a Path,
        node: &'a Node,
    },
    File {
        rel: &'a Path,
        node: &'a Node,
        content: &'a mut dyn io::Read,
    },
    Symlink {
        rel: &'a Path,
        node: &'a Node,
    },
}

impl<'a> Streamed<'a> {
    /// Its path and its node.
    pub(super) fn entry(&self) -> (&'a Path, &'a Node) {
        match *self {
            Streamed::Dir { rel, node }
            | Streamed::File { rel, node, .. }
            | Streamed::Symlink { rel, node } => (rel, node),
        }
    }
}

/// A node's permission, setuid, setgid and sticky bits (`default` when it records none).
pub(super) fn mode_or(node: &Node, default: u32) -> u32 {
    posix_mode(node).unwrap_or(default)
}

/// A node's modification time in whole seconds (0 when it records none).
pub(super) fn mtime_seconds(node: &Node) -> i64 {
    node.meta.mtime.map_or(0, |t| t.as_second())
}

/// What the reader thread sends: an entry, then for a file its content and its end.
enum Message {
    Entry(PathBuf, Box<Node>),
    Data(Vec<u8>),
    End,
}

/// A failure of [`stream_tree`]: reading the snapshot, or what the caller's sink said.
pub(super) enum StreamError<E> {
    Read(WriteOutError),
    Sink(E),
    /// SIGINT, SIGTERM or SIGHUP (the signal's number) stopped it.
    Cancelled(i32),
}

/// The signal that asked this operation to stop, if any (the token armed on this thread, else
/// the process's, which the CLI's signal handling sets).
fn stop_signal() -> Option<i32> {
    aps_controller::cancel::current()
        .unwrap_or_else(|| aps_controller::cancel::Cancel::process().clone())
        .signal()
}

/// Streams the folder `root` of a snapshot (or, when `root` is a file, that one file, with an
/// empty path) to `sink`, entry by entry, with each file's content: a reader thread lists the
/// tree and reads each file through the engine (its blobs decrypted and decompressed, a few at
/// a time) while the calling thread consumes it. Memory stays bounded by a few blobs in
/// flight; nothing is written to disk here. Modes are POSIX modes, times whole seconds.
pub(super) fn stream_tree<S: IndexedFull, E>(
    repo: &Repository<S>,
    root: &Node,
    mut sink: impl FnMut(Streamed<'_>) -> Result<(), E>,
) -> Result<(), StreamError<E>>
where
    Repository<S>: Sync,
{
    let failed: std::sync::Mutex<Option<WriteOutError>> = std::sync::Mutex::new(None);
    // Set when the consumer stopped: the reader's failure to send is then not a read error.
    let stopped = std::sync::atomic::AtomicBool::new(false);
    let (tx, rx) = std::sync::mpsc::sync_channel::<Message>(4);
    std::thread::scope(|scope| {
        let failed = &failed;
        let stopped = &stopped;
        scope.spawn(move || {
            let fail = |e: WriteOutError| {
                if !stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    *failed.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
                }
            };
            let read_err = |path: &Path, source| WriteOutError::Read {
                path: path.display().to_string(),
                source,
            };
            let entries: Box<dyn Iterator<Item = rustic_core::RusticResult<(PathBuf, Node)>>> =
                if root.node_type == NodeType::File {
                    Box::new(std::iter::once(Ok((PathBuf::new(), root.clone()))))
                } else {
                    match repo.ls(root, &LsOptions::default()) {
                        Ok(it) => Box::new(it),
                        Err(e) => return fail(read_err(Path::new("/"), e)),
                    }
                };
            for entry in entries {
                let (rel, node) = match entry {
                    Ok(e) => e,
                    Err(e) => return fail(read_err(Path::new("/"), e)),
                };
                let is_file = node.node_type == NodeType::File;
                let path = rel.clone();
                if tx
                    .send(Message::Entry(rel, Box::new(node.clone())))
                    .is_err()
                {
                    return; // the consumer stopped
                }
                if is_file {
                    let mut out = Sender { tx: &tx };
                    if let Err(e) = repo.dump(&node, &mut out) {
                        return fail(read_err(&path, e));
                    }
                    if tx.send(Message::End).is_err() {
                        return;
                    }
                }
            }
        });
        let result = consume(&rx, root, &mut sink);
        if result.is_err() {
            stopped.store(true, std::sync::atomic::Ordering::SeqCst);
        }
        // Unblocks the reader thread if the consumer stopped early.
        drop(rx);
        result
    })
    .map_err(|e| match e {
        // A stop of the stream is the reader's failure when it recorded one.
        StreamError::Sink(sink_error) => {
            match failed.lock().unwrap_or_else(|p| p.into_inner()).take() {
                Some(read) => StreamError::Read(read),
                None => StreamError::Sink(sink_error),
            }
        }
        read => read,
    })
    .and_then(
        |()| match failed.into_inner().unwrap_or_else(|p| p.into_inner()) {
            Some(read) => Err(StreamError::Read(read)),
            None => Ok(()),
        },
    )
}

fn consume<E>(
    rx: &std::sync::mpsc::Receiver<Message>,
    root: &Node,
    sink: &mut impl FnMut(Streamed<'_>) -> Result<(), E>,
) -> Result<(), StreamError<E>> {
    let root_is_file = root.node_type == NodeType::File;
    while let Ok(message) = rx.recv() {
        if let Some(signal) = stop_signal() {
            return Err(StreamError::Cancelled(signal));
        }
        let Message::Entry(rel, node) = message else {
            continue; // content of a file the sink did not read to its end
        };
        if rel.as_os_str().is_empty() && !root_is_file {
            continue; // the folder itself: its caller knows it
        }
        if !root_is_file && !rel.components().all(|c| matches!(c, Component::Normal(_))) {
            return Err(StreamError::Read(WriteOutError::BadPath {
                path: rel.display().to_string(),
            }));
        }
        let item = match &node.node_type {
            NodeType::Dir => sink(Streamed::Dir {
                rel: &rel,
                node: &node,
            }),
            NodeType::File => {
                let mut content = Receiver {
                    rx,
                    buf: Vec::new(),
                    pos: 0,
                    ended: false,
                };
                let r = sink(Streamed::File {
                    rel: &rel,
                    node: &node,
                    content: &mut content,
                });
                if let Some(signal) = stop_signal() {
                    return Err(StreamError::Cancelled(signal));
                }
                if r.is_ok() && !content.ended {
                    // The sink read less than was sent: drain to the file's end.
                    while !content.ended {
                        if content.fill().is_err() {
                            break;
                        }
                    }
                }
                r
            }
            NodeType::Symlink { .. } => sink(Streamed::Symlink {
                rel: &rel,
                node: &node,
            }),
            // Our snapshots hold no devices, FIFOs or sockets; one from elsewhere is left out.
            _ => Ok(()),
        };
        item.map_err(StreamError::Sink)?;
    }
    Ok(())
}

/// The reader thread's side of a file's content.
struct Sender<'a> {
    tx: &'a std::sync::mpsc::SyncSender<Message>,
}

impl Write for Sender<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.tx
            .send(Message::Data(buf.to_vec()))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the consumer stopped"))?;
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

/// The consumer's side of a file's content: reads until the file's end marker.
struct Receiver<'a> {
    rx: &'a std::sync::mpsc::Receiver<Message>,
    buf: Vec<u8>,
    pos: usize,
    ended: bool,
}

impl Receiver<'_> {
    fn fill(&mut self) -> io::Result<()> {
        match self.rx.recv() {
            Ok(Message::Data(d)) => {
                // A large file stops within a blob, not at its end.
                if let Some(signal) = stop_signal() {
                    return Err(aps_controller::cancel::Cancelled::io_error(signal));
                }
                self.buf = d;
                self.pos = 0;
                Ok(())
            }
            Ok(Message::End) => {
                self.ended = true;
                Ok(())
            }
            Ok(Message::Entry(..)) => Err(io::Error::other("a file's content ended unmarked")),
            // The reader thread stopped: it recorded why.
            Err(_) => {
                self.ended = true;
                Err(io::Error::other("reading the snapshot failed"))
            }
        }
    }
}

impl io::Read for Receiver<'_> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        while self.pos == self.buf.len() {
            if self.ended {
                return Ok(0);
            }
            self.fill()?;
        }
        let n = out.len().min(self.buf.len() - self.pos);
        out[..n].copy_from_slice(&self.buf[self.pos..self.pos + n]);
        self.pos += n;
        Ok(n)
    }
}
