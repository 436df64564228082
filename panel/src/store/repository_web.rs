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
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aps_controller::archive::{open_dir_nofollow, open_walked_dir, pending_names};
use camino::{Utf8Path, Utf8PathBuf};
use rustic_core::jiff::Timestamp;
use rustic_core::repofile::{Metadata, Node, NodeType};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat};

/// One entry of the walk: where it goes in the snapshot, its node, and (files) how to open it.
pub(super) struct WebEntry {
    pub path: PathBuf,
    pub node: Node,
    pub file: Option<WebFile>,
}

/// A walk error: the web path it happened at, and what went wrong.
#[derive(Debug)]
pub(super) struct WalkError {
    pub path: Utf8PathBuf,
    pub source: io::Error,
}

impl std::fmt::Display for WalkError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "cannot read {}: {}", self.path, self.source)
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
    /// The file's path, for messages.
    pub shown: Utf8PathBuf,
    offered: Offered,
    /// The instance's account: the only owner a file with several links may have.
    account_uid: Option<u32>,
}

impl WebFile {
    /// Opens the file. `Ok(None)` when it is gone or is no longer a regular file (it is then
    /// left out of the snapshot and of the count, as the archive store leaves it out).
    pub fn open(self) -> io::Result<Option<File>> {
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
            Err(e) => return Err(e.into()),
        };
        let st = rustix::fs::fstat(&fd)?;
        if file_type(&st) != FileType::RegularFile {
            self.offered.remove();
            return Ok(None);
        }
        // Checked on what was opened: a hard link to a file the tenant cannot read (another
        // tenant's, root's) would otherwise be read as root into the tenant's snapshot.
        #[allow(clippy::unnecessary_cast)]
        if let Some(account) = self.account_uid
            && st.st_nlink as u64 > 1
            && st.st_uid != account
        {
            return Err(io::Error::other(format!(
                "a hard link ({} links) owned by uid {}, not by the instance's account (uid \
                 {account}); refusing to read it (remove the link, or give the file to the account)",
                st.st_nlink, st.st_uid
            )));
        }
        // Reads of a regular file never block; clear NONBLOCK anyway so a read is a plain read.
        rustix::fs::fcntl_setfl(&fd, OFlags::RDONLY)?;
        Ok(Some(File::from(fd)))
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
    account_uid: Option<u32>,
}

impl WebWalk {
    /// Refuse files with more than one link unless `uid` (the instance's account) owns them.
    pub fn only_links_of(mut self, uid: Option<u32>) -> Self {
        self.account_uid = uid;
        self
    }

    /// Opens the web folder `root` (refused when it is a symlink or lies under one a tenant
    /// could have placed) to be stored at `to` in the snapshot.
    pub fn open(root: &Utf8Path, to: PathBuf, offered: Offered) -> Result<Self, WalkError> {
        let err = |source| WalkError {
            path: root.to_owned(),
            source,
        };
        let fd = open_dir_nofollow(root.as_std_path()).map_err(err)?;
        let st = rustix::fs::fstat(&fd).map_err(|e| err(e.into()))?;
        let pending = pending_names(fd.as_fd()).map_err(err)?;
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
            account_uid: None,
        })
    }

    fn shown(&self, rel: &Path) -> Utf8PathBuf {
        self.root.join(rel.to_string_lossy().as_ref())
    }

    /// The next entry of the top folder, `None` when the walk is over; entries that vanish
    /// or are specials are skipped inside.
    fn step(&mut self) -> Option<Result<WebEntry, WalkError>> {
        loop {
            let frame = self.stack.last_mut()?;
            let Some(name) = frame.pending.pop() else {
                self.stack.pop();
                continue;
            };
            let dir = Arc::clone(&frame.fd);
            let rel = frame.rel.join(OsStr::from_bytes(&name));
            let os_name = OsStr::from_bytes(&name);
            let fail = |source: io::Error| {
                Some(Err(WalkError {
                    path: self.shown(&rel),
                    source,
                }))
            };
            let st = match rustix::fs::statat(dir.as_fd(), os_name, AtFlags::SYMLINK_NOFOLLOW) {
                Ok(st) => st,
                Err(rustix::io::Errno::NOENT) => continue, // vanished
                Err(e) => return fail(e.into()),
            };
            let path = self.to.join(&rel);
            match file_type(&st) {
                FileType::Directory => {
                    let fd = match open_walked_dir(dir.as_fd(), os_name) {
                        Ok(Some(fd)) => fd,
                        // Not the folder that was seen: left out rather than followed.
                        Ok(None) => continue,
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
                        shown: self.shown(&rel),
                        offered: self.offered.clone(),
                        account_uid: self.account_uid,
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
                        Err(rustix::io::Errno::NOENT | rustix::io::Errno::INVAL) => continue,
                        Err(e) => return fail(e.into()),
                    };
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

    use aps_controller::tenant_testing::{TENANT, stop_swapper, swapper, tenant};

    const SECRET: &[u8] = b"another customer's secret";

    /// The walk itself under attack: the tenant (`aps-test`, a real account) swaps `www/sub`
    /// with a symlink to another customer's folder holding the same names, as fast as it can,
    /// while root walks the site and reads every file the walk offers, over and over. A
    /// path-based walk reads the other customer's files here (the repository store's tests
    /// showed it with the engine's local source); this one never may.
    #[test]
    fn a_folder_swapped_for_a_symlink_is_never_followed_by_the_walk() {
        if !rustix::process::geteuid().is_root() {
            eprintln!("not root: this test needs to run the tenant as {TENANT}; nothing checked");
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
            let walk = WebWalk::open(&www, PathBuf::from("/web/%2F"), Offered::default()).unwrap();
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

    #[test]
    fn modes_map_as_the_engine_maps_them() {
        assert_eq!(mode_to_go(0o100644), 0o644);
        assert_eq!(mode_to_go(0o040755), (1 << 31) | 0o755);
        assert_eq!(mode_to_go(0o120777), (1 << 27) | 0o777);
        assert_eq!(mode_to_go(0o104755), (1 << 23) | 0o755);
        assert_eq!(mode_to_go(0o041777), (1 << 31) | (1 << 20) | 0o777);
    }
}
