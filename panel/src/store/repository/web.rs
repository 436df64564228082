//! A web folder as the repository engine's entries, walked by descriptor.
//!
//! The engine's own local source walks and opens files by path, so a tenant who swaps a folder
//! of their site for a symlink while a backup runs could have root read another customer's
//! files (or `/etc`) into their own snapshot, and get them back with a restore. This walk is
//! the archive store's (`aps_controller::archive`): the root is opened with
//! `open_dir_nofollow` (a root that is a symlink, or lies under one a tenant could have placed,
//! is refused), every folder below is opened relative to its parent's descriptor with
//! `O_NOFOLLOW`, and each file is opened, when the engine gets to it, relative to its folder's
//! descriptor with `O_NOFOLLOW` and checked to be a regular file. A name swapped for a symlink
//! meanwhile is left out, never followed.
//!
//! It is bounded as the archive's walk is, by the instance's [`WalkPolicy`] (controller.toml's
//! `[limits]`): every entry counts toward `max-files`, and every file the engine reads counts
//! its size toward `max-instance-size` when it is opened, before a byte of it is read. The
//! size, not only the data: the engine chunks and hashes a sparse file's holes as zeros, so
//! what it costs follows the size. The holes are never read from the disk, though: the engine
//! gets a [`HoleAwareFile`], which makes their zeros in memory.
//!
//! What it offers matches the archive store too: folders, regular files and symlinks (kept as
//! symlinks); sockets, FIFOs and devices are left out; a file that vanishes between the walk
//! and its reading is left out. Extended attributes are not kept (the archive store does not
//! keep them either).

use std::ffi::OsStr;
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use aps_controller::archive::{
    ArchiveError, HoleAwareFile, WalkCount, WalkPolicy, open_dir_nofollow, open_walked_dir,
    pending_names,
};
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::jiff::Timestamp;
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};
use sha2::{Digest, Sha256};

use crate::store::repository::seen::{CheckedFile, Seen, WalkDigest};
use crate::store::repository::state::record;

/// One entry of the walk: where it goes in the snapshot, its node, and (files) how to open it.
pub(super) struct WebEntry {
    pub path: PathBuf,
    pub node: Node,
    pub file: Option<WebFile>,
}

/// A walk error: what went wrong at which web path, or a bound of the walk crossed.
#[derive(Debug)]
pub(super) enum WalkError {
    Io {
        path: Utf8PathBuf,
        source: io::Error,
    },
    /// `[limits]` crossed, or a hard link not the instance's account's: the message.
    Refused(String),
    /// A file is not the one the walk saw any more (written, or replaced since).
    Changed { path: Utf8PathBuf },
}

impl WalkError {
    /// For the engine, which takes I/O errors.
    pub fn into_io(self) -> io::Error {
        match self {
            WalkError::Io { source, .. } => source,
            WalkError::Refused(e) => io::Error::other(e),
            changed @ WalkError::Changed { .. } => io::Error::other(changed.to_string()),
        }
    }
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            WalkError::Io { path, source } => write!(f, "cannot read {path}: {source}"),
            WalkError::Refused(e) => f.write_str(e),
            WalkError::Changed { path } => write!(
                f,
                "web file {path} changed while it was backed up (written, or replaced); run \
                 the backup again"
            ),
        }
    }
}

/// The bounds of one backup's walk (every web folder of the instance together) and what it
/// has taken so far.
#[derive(Debug, Default)]
pub(super) struct WalkBudget {
    policy: WalkPolicy,
    count: Mutex<WalkCount>,
    /// The first bound crossed: every later entry and file is refused with it (the engine
    /// goes on asking; nothing more is read, and the error names where it happened).
    crossed: std::sync::OnceLock<String>,
}

impl WalkBudget {
    pub fn new(policy: WalkPolicy) -> Arc<Self> {
        Arc::new(WalkBudget {
            policy,
            count: Mutex::default(),
            crossed: std::sync::OnceLock::new(),
        })
    }

    fn count(&self) -> std::sync::MutexGuard<'_, WalkCount> {
        self.count.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn check(&self, counted: Result<(), ArchiveError>) -> Result<(), WalkError> {
        if let Some(first) = self.crossed.get() {
            return Err(WalkError::Refused(first.clone()));
        }
        counted.map_err(|e| WalkError::Refused(self.crossed.get_or_init(|| e.to_string()).clone()))
    }

    fn entry(&self, path: &Utf8Path) -> Result<(), WalkError> {
        let counted = self.policy.count_entry(&mut self.count(), path);
        self.check(counted)
    }

    fn bytes(&self, bytes: u64, path: &Utf8Path) -> Result<(), WalkError> {
        let counted = self.policy.count_bytes(&mut self.count(), bytes, path);
        self.check(counted)
    }
}

/// Files offered to the engine so far (files and symlinks: every node but folders, as the
/// engine counts them), less those left out when they could not be opened any more. The
/// snapshot must hold exactly this many.
#[derive(Clone, Default)]
pub(super) struct Offered(Arc<AtomicU64>);

impl Offered {
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::SeqCst)
    }
    pub fn add(&self) {
        self.0.fetch_add(1, Ordering::SeqCst);
    }
    fn remove(&self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A regular file seen by the walk, opened when the engine reads it: relative to its folder's
/// descriptor, never through a symlink.
pub(super) struct WebFile {
    dir: Arc<OwnedFd>,
    name: Vec<u8>,
    seen: Seen,
    /// The file's path, for messages.
    pub shown: Utf8PathBuf,
    offered: Offered,
    budget: Arc<WalkBudget>,
}

impl WebFile {
    /// Opens the file, its size counted toward `max-instance-size`. `Ok(None)` when it is
    /// gone or is no longer a regular file (it is then left out of the snapshot and of the
    /// count, as the archive store leaves it out). A file that is not the one the walk saw
    /// (another inode, size or time) is an error, and so is one that changes while it is read
    /// (checked when the reader reaches its end): the snapshot must hold what the walk, and
    /// so the manifest, describe.
    pub fn open(self) -> Result<Option<CheckedFile>, WalkError> {
        let io_err = |source: io::Error| WalkError::Io {
            path: self.shown.clone(),
            source,
        };
        let opened = rustix::fs::openat(
            self.dir.as_fd(),
            OsStr::from_bytes(&self.name),
            // NONBLOCK: a name swapped for a FIFO must not hang the backup before the check.
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NOCTTY | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        );
        let fd = match opened {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP) => {
                self.offered.remove();
                return Ok(None);
            }
            Err(e) => return Err(io_err(e.into())),
        };
        let st = rustix::fs::fstat(&fd).map_err(|e| io_err(e.into()))?;
        if file_type(&st) != FileType::RegularFile {
            self.offered.remove();
            return Ok(None);
        }
        // Checked on what was opened: a hard link to a file the tenant cannot read (another
        // tenant's, root's) would otherwise be read as root into the tenant's snapshot.
        #[allow(clippy::unnecessary_cast)]
        if let Some(account) = self.budget.policy.account_uid
            && st.st_nlink as u64 > 1
            && st.st_uid != account
        {
            return Err(WalkError::Refused(
                ArchiveError::ForeignHardLink {
                    instance: self.budget.policy.instance.clone(),
                    path: self.shown.clone(),
                    links: st.st_nlink as u64,
                    owner: st.st_uid,
                    account,
                }
                .to_string(),
            ));
        }
        if Seen::of(&st) != self.seen {
            return Err(WalkError::Changed { path: self.shown });
        }
        // The size the engine will read (holes included), counted before any of it is read;
        // the reader stops there even if the file grows meanwhile.
        #[allow(clippy::unnecessary_cast)]
        self.budget.bytes(st.st_size as u64, &self.shown)?;
        // Reads of a regular file never block; clear NONBLOCK anyway so a read is a plain read.
        rustix::fs::fcntl_setfl(&fd, OFlags::RDONLY).map_err(|e| io_err(e.into()))?;
        let check = fd.try_clone().map_err(io_err)?;
        let inner = HoleAwareFile::new(File::from(fd), &st).map_err(io_err)?;
        Ok(Some(CheckedFile::new(inner, check, self.seen, self.shown)))
    }
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode as _)
}

/// One folder being walked: its descriptor (shared with the files offered from it), its path
/// below the root, and the names not yet offered (sorted, popped from the end).
struct Frame {
    fd: Arc<OwnedFd>,
    rel: PathBuf,
    pending: Vec<Vec<u8>>,
}

/// The walk of one web folder, in the order the engine needs: pre-order, siblings sorted by
/// name bytes. Lazy: folders are listed as the engine asks for more.
pub(super) struct WebWalk {
    root: Utf8PathBuf,
    to: PathBuf,
    first: Option<Result<WebEntry, WalkError>>,
    stack: Vec<Frame>,
    offered: Offered,
    budget: Arc<WalkBudget>,
    /// The digest of what the walk saw so far (taken when it ends, into `digest`).
    sha: Option<Sha256>,
    digest: WalkDigest,
}

impl WebWalk {
    /// Opens the web folder `root` (refused when it is a symlink or lies under one a tenant
    /// could have placed) to be stored at `to` in the snapshot, within `budget` (shared by
    /// the instance's web folders): the root counts as an entry.
    pub fn open(
        root: &Utf8Path,
        to: PathBuf,
        offered: Offered,
        budget: Arc<WalkBudget>,
    ) -> Result<Self, WalkError> {
        let err = |source| WalkError::Io {
            path: root.to_owned(),
            source,
        };
        budget.entry(root)?;
        let fd = open_dir_nofollow(root.as_std_path()).map_err(err)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
        let pending = pending_names(fd.as_fd()).map_err(err)?;
        let mut sha = Sha256::new();
        record(&mut sha, b"", &st);
        let name = to.file_name().unwrap_or(OsStr::new("/")).to_owned();
        let first = WebEntry {
            path: to.clone(),
            node: Node::new_node(&name, NodeType::Dir, metadata(&st)),
            file: None,
        };
        Ok(WebWalk {
            root: root.to_owned(),
            to,
            first: Some(Ok(first)),
            stack: vec![Frame {
                fd: Arc::new(fd),
                rel: PathBuf::new(),
                pending,
            }],
            offered,
            budget,
            sha: Some(sha),
            digest: WalkDigest::default(),
        })
    }

    /// The digest of the walk, set when it has ended.
    pub fn digest(&self) -> WalkDigest {
        self.digest.clone()
    }

    /// Something the walk saw is not what the digest has recorded (an entry replaced between
    /// its `stat` and its opening): the digest can no longer match the one taken before.
    fn saw_change(sha: &mut Option<Sha256>) {
        if let Some(sha) = sha {
            sha.update(b"\0changed during the walk");
        }
    }

    fn shown(&self, rel: &Path) -> Utf8PathBuf {
        self.root.join(rel.to_string_lossy().as_ref())
    }

    /// The next entry of the top folder, `None` when the walk is over; entries that vanish
    /// or are specials are skipped inside.
    fn step(&mut self) -> Option<Result<WebEntry, WalkError>> {
        loop {
            let Some(frame) = self.stack.last_mut() else {
                if let Some(sha) = self.sha.take() {
                    self.digest.set(sha.finalize().into());
                }
                return None;
            };
            let Some(name) = frame.pending.pop() else {
                self.stack.pop();
                continue;
            };
            let dir = Arc::clone(&frame.fd);
            let rel = frame.rel.join(OsStr::from_bytes(&name));
            let os_name = OsStr::from_bytes(&name);
            let root = &self.root;
            let fail = |source: io::Error| {
                Some(Err(WalkError::Io {
                    path: root.join(rel.to_string_lossy().as_ref()),
                    source,
                }))
            };
            let st = match rustix::fs::statat(dir.as_fd(), os_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => {
                    // Vanished since the folder was listed.
                    Self::saw_change(&mut self.sha);
                    continue;
                }
                Err(e) => return fail(e.into()),
            };
            if let Some(sha) = &mut self.sha {
                record(sha, rel.as_os_str().as_bytes(), &st);
            }
            let path = self.to.join(&rel);
            if matches!(
                file_type(&st),
                FileType::Directory | FileType::RegularFile | FileType::Symlink
            ) && let Err(e) = self.budget.entry(&self.shown(&rel))
            {
                // Crossed: nothing more is walked.
                self.stack.clear();
                Self::saw_change(&mut self.sha);
                return Some(Err(e));
            }
            match file_type(&st) {
                FileType::Directory => {
                    let fd = match open_walked_dir(dir.as_fd(), os_name) {
                        Ok(Some(fd)) => fd,
                        // Not the folder that was seen: left out rather than followed.
                        Ok(None) => {
                            Self::saw_change(&mut self.sha);
                            continue;
                        }
                        Err(e) => return fail(e),
                    };
                    // Describe what was opened, not what the stat saw a moment before.
                    let st = match rustix::fs::fstat(&fd) {
                        Ok(st) => st,
                        Err(e) => return fail(e.into()),
                    };
                    let pending = match pending_names(fd.as_fd()) {
                        Ok(p) => p,
                        Err(e) => return fail(e),
                    };
                    self.stack.push(Frame {
                        fd: Arc::new(fd),
                        rel,
                        pending,
                    });
                    let node = Node::new_node(os_name, NodeType::Dir, metadata(&st));
                    return Some(Ok(WebEntry {
                        path,
                        node,
                        file: None,
                    }));
                }
                FileType::RegularFile => {
                    self.offered.add();
                    let node = Node::new_node(os_name, NodeType::File, metadata(&st));
                    let file = WebFile {
                        dir,
                        name,
                        seen: Seen::of(&st),
                        shown: self.shown(&rel),
                        offered: self.offered.clone(),
                        budget: Arc::clone(&self.budget),
                    };
                    return Some(Ok(WebEntry {
                        path,
                        node,
                        file: Some(file),
                    }));
                }
                FileType::Symlink => {
                    let target = match rustix::fs::readlinkat(dir.as_fd(), os_name, Vec::new()) {
                        Ok(t) => t.into_bytes(),
                        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => {
                            Self::saw_change(&mut self.sha);
                            continue;
                        }
                        Err(e) => return fail(e.into()),
                    };
                    if let Some(sha) = &mut self.sha {
                        sha.update(&target);
                    }
                    self.offered.add();
                    let node_type = NodeType::from_link(Path::new(OsStr::from_bytes(&target)));
                    let node = Node::new_node(os_name, node_type, metadata(&st));
                    return Some(Ok(WebEntry {
                        path,
                        node,
                        file: None,
                    }));
                }
                // Sockets, FIFOs and devices cannot be backed up (the archive store skips
                // them too); a tenant's FIFO must never be opened.
                _ => continue,
            }
        }
    }
}

impl Iterator for WebWalk {
    type Item = Result<WebEntry, WalkError>;

    fn next(&mut self) -> Option<Self::Item> {
        if let Some(first) = self.first.take() {
            return Some(first);
        }
        self.step()
    }
}

/// The node metadata the engine's local source would record for `st` (so that restic and
/// rustic show and restore the same modes, owners and times, and an unchanged file matches
/// its parent snapshot's node by size, mtime and ctime). Owner names are not looked up.
// `struct stat` field types differ between architectures; the casts are no-ops on x86_64.
#[allow(clippy::unnecessary_cast)]
fn metadata(st: &Stat) -> Metadata {
    let time = |secs: i64, nanos: i64| Timestamp::new(secs, nanos as i32).ok();
    let dir = file_type(st) == FileType::Directory;
    let mtime = time(st.st_mtime as i64, st.st_mtime_nsec as i64);
    Metadata {
        mode: Some(mode_to_go(st.st_mode as u32)),
        mtime,
        // The engine's default: atime is stored as mtime (reading must not change a node).
        atime: mtime,
        ctime: time(st.st_ctime as i64, st.st_ctime_nsec as i64),
        uid: Some(st.st_uid),
        gid: Some(st.st_gid),
        user: None,
        group: None,
        inode: st.st_ino as u64,
        // The engine's default: the device only for hard links, which it uses to find them.
        device_id: if !dir && st.st_nlink > 1 {
            st.st_dev as u64
        } else {
            0
        },
        size: if dir { 0 } else { st.st_size as u64 },
        links: if dir { 0 } else { st.st_nlink as u64 },
        extended_attributes: Vec::new(),
    }
}

/// `st_mode` in Go's `fs.FileMode` bits, as the restic format stores modes (the engine's own
/// mapping, which it does not export).
fn mode_to_go(mode: u32) -> u32 {
    const DIR: u32 = 1 << 31;
    const SYMLINK: u32 = 1 << 27;
    const DEVICE: u32 = 1 << 26;
    const FIFO: u32 = 1 << 25;
    const SOCKET: u32 = 1 << 24;
    const SETUID: u32 = 1 << 23;
    const SETGID: u32 = 1 << 22;
    const CHARDEV: u32 = 1 << 21;
    const STICKY: u32 = 1 << 20;
    const IRREGULAR: u32 = 1 << 19;
    let mut go = mode & 0o777;
    go |= match mode & 0o170_000 {
        0o140_000 => SOCKET,
        0o120_000 => SYMLINK,
        0o060_000 => DEVICE,
        0o040_000 => DIR,
        0o020_000 => CHARDEV & DEVICE,
        0o010_000 => FIFO,
        0o100_000 => 0,
        _ => IRREGULAR,
    };
    if mode & 0o4000 != 0 {
        go |= SETUID;
    }
    if mode & 0o2000 != 0 {
        go |= SETGID;
    }
    if mode & 0o1000 != 0 {
        go |= STICKY;
    }
    go
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::os::unix::fs::PermissionsExt;

    use test_support::tenant::{TENANT, stop_swapper, swapper, tenant};

    const SECRET: &[u8] = b"another customer's secret";

    /// The walk itself under attack: the tenant (`aps-test`, a real account) swaps `www/sub`
    /// with a symlink to another customer's folder holding the same names, as fast as it can,
    /// while root walks the site and reads every file the walk offers, over and over. A
    /// path-based walk reads the other customer's files here (the repository store's tests
    /// showed it with the engine's local source); this one never may.
    #[test]
    fn a_folder_swapped_for_a_symlink_is_never_followed_by_the_walk() {
        if !test_support::needs_root(&format!("running the tenant as {TENANT}")) {
            return;
        }
        let tmp = tempfile::Builder::new()
            .prefix("aps-walk-")
            .tempdir()
            .unwrap();
        let base = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
        std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
        let (www, outside) = (base.join("www"), base.join("outside"));
        for d in 0..8 {
            for (root, body) in [(&www, &b"<?php // mine\n"[..]), (&outside, SECRET)] {
                let dir = if *root == www {
                    root.join(format!("sub/d{d}"))
                } else {
                    root.join(format!("d{d}"))
                };
                std::fs::create_dir_all(&dir).unwrap();
                for f in 0..60 {
                    std::fs::write(dir.join(format!("f{f}.php")), body).unwrap();
                }
            }
        }
        let who = tenant();
        let (uid, gid) = (who.uid, who.gid);
        let status = std::process::Command::new("chown")
            .args(["-R", &format!("{uid}:{gid}"), www.as_str()])
            .status()
            .unwrap();
        assert!(status.success());
        let stop = base.join("stop");
        let attacker = swapper(&www.join("sub"), &www.join("bait"), &outside, &stop);
        let mut read_files = 0;
        for _ in 0..40 {
            let walk = WebWalk::open(
                &www,
                PathBuf::from("/web/%2F"),
                Offered::default(),
                WalkBudget::new(WalkPolicy::default()),
            )
            .unwrap();
            for entry in walk {
                let Ok(entry) = entry else { continue };
                let Some(file) = entry.file else { continue };
                let shown = file.shown.clone();
                if let Ok(Some(mut f)) = file.open() {
                    let mut body = Vec::new();
                    f.read_to_end(&mut body).unwrap();
                    assert_ne!(body, SECRET, "the walk read {shown} through the symlink");
                    read_files += 1;
                }
            }
        }
        let swaps = stop_swapper(attacker, &stop);
        assert!(
            swaps > 0,
            "the tenant never managed a swap: the race was not run"
        );
        assert!(
            read_files > 0,
            "the walk never read a file: nothing was checked"
        );
    }

    /// Bytes this process has read through read(2) and the like (`rchar` of /proc/self/io).
    fn bytes_read_by_syscalls() -> u64 {
        let io = std::fs::read_to_string("/proc/self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .unwrap()
            .parse()
            .unwrap()
    }

    /// The engine reads a 1 GiB sparse file (two small extents) through the walk's reader:
    /// every byte comes out, the holes as zeros, but only the data is read from the disk.
    #[test]
    fn a_sparse_file_is_read_without_reading_its_holes() {
        const GIB: u64 = 1 << 30;
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
        let big = std::fs::File::create(root.join("big.bin")).unwrap();
        big.set_len(GIB).unwrap();
        use std::os::unix::fs::FileExt;
        big.write_all_at(b"HEAD", 0).unwrap();
        big.write_all_at(b"TAIL", GIB - 4).unwrap();
        drop(big);
        let walk = WebWalk::open(
            &root,
            PathBuf::from("/web/%2F"),
            Offered::default(),
            WalkBudget::new(WalkPolicy::default()),
        )
        .unwrap();
        let file = walk
            .filter_map(|e| e.unwrap().file)
            .next()
            .expect("the walk offers the file");
        let mut reader = file.open().unwrap().expect("a regular file");
        let before = bytes_read_by_syscalls();
        let (mut total, mut head, mut tail, mut middle) = (0u64, Vec::new(), Vec::new(), None);
        let mut buf = vec![0u8; 1 << 20];
        loop {
            let n = reader.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            if total == 0 {
                head.extend_from_slice(&buf[..4]);
            }
            if total + n as u64 == GIB {
                tail.extend_from_slice(&buf[n - 4..n]);
            }
            if middle.is_none() && total >= GIB / 2 {
                middle = Some(buf[..n].iter().all(|b| *b == 0));
            }
            total += n as u64;
        }
        let read = bytes_read_by_syscalls() - before;
        assert_eq!(total, GIB);
        assert_eq!((&head[..], &tail[..]), (&b"HEAD"[..], &b"TAIL"[..]));
        assert_eq!(middle, Some(true), "a hole reads zeros");
        assert!(
            read < 1 << 20,
            "{read} bytes read from the disk for 8 bytes of data: the holes were read"
        );
    }

    /// `[limits]` hold inside the engine's walk itself (a tree that grew after the checks
    /// before it): entries count toward `max-files` as they are offered, a file's size toward
    /// `max-instance-size` when it is opened, before any of it is read; once crossed, every
    /// later entry and file is refused with the first error.
    #[test]
    fn the_walk_stops_at_its_bounds() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
        for name in ["a", "b", "c", "d"] {
            std::fs::write(root.join(name), [7u8; 1000]).unwrap();
        }
        let policy = |max_bytes, max_files| WalkPolicy {
            instance: "site".into(),
            max_bytes,
            max_files,
            ..Default::default()
        };
        let walk = |p| {
            WebWalk::open(
                &root,
                PathBuf::from("/web/%2F"),
                Offered::default(),
                WalkBudget::new(p),
            )
            .unwrap()
        };
        // The root and three files; the fourth crosses, and the walk ends there.
        let entries: Vec<_> = walk(policy(None, Some(4))).collect();
        assert_eq!(entries.len(), 5);
        let Err(e) = &entries[4] else {
            panic!("the fifth entry crossed max-files")
        };
        let message = e.to_string();
        assert!(message.contains("max-files = 4"), "{message}");
        assert!(message.contains(root.join("d").as_str()), "{message}");
        assert!(message.contains("\"site\""), "{message}");

        let files: Vec<WebFile> = walk(policy(Some(2500), None))
            .filter_map(|e| e.unwrap().file)
            .collect();
        let opened: Vec<String> = files
            .into_iter()
            .map(|f| match f.open() {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.to_string(),
            })
            .collect();
        assert_eq!(opened[..2], ["ok", "ok"]);
        assert!(
            opened[2].contains("max-instance-size = 2500"),
            "{}",
            opened[2]
        );
        assert!(opened[2].contains(root.join("c").as_str()), "{}", opened[2]);
        assert_eq!(opened[3], opened[2], "refused with the first error");
    }

    #[test]
    fn modes_map_as_the_engine_maps_them() {
        assert_eq!(mode_to_go(0o100644), 0o644);
        assert_eq!(mode_to_go(0o040755), (1 << 31) | 0o755);
        assert_eq!(mode_to_go(0o120777), (1 << 27) | 0o777);
        assert_eq!(mode_to_go(0o104755), (1 << 23) | 0o755);
        assert_eq!(mode_to_go(0o041777), (1 << 31) | (1 << 20) | 0o777);
    }
}
