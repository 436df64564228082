//! Folders by descriptor: how the controller opens, empties and removes folders a tenant
//! controls without ever following a symlink, present before or swapped in meanwhile.
//!
//! A web folder's own path is opened once, component by component from `/`, each component
//! with `O_NOFOLLOW`. A symlink among the components above it is followed only when nobody but
//! root (or the controller's own user) can have placed it: the link and the folder holding it
//! belong to root or the controller, and that folder is not writable by group or others. The
//! folder itself must not be a symlink. From the descriptor so opened everything else is
//! relative (`openat` with `O_NOFOLLOW`, `openat2` with `RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS`,
//! `unlinkat`, `mkdirat`), so renaming a folder or swapping it for a symlink while the
//! controller works cannot send it anywhere else. Paths are never canonicalised.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags};

/// At most this many trusted symlinks on the way to a folder (as the kernel's own limit).
const MAX_LINKS: usize = 40;

pub(crate) fn is_dir(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode as _) == FileType::Directory
}

fn is_symlink(st: &rustix::fs::Stat) -> bool {
    FileType::from_raw_mode(st.st_mode as _) == FileType::Symlink
}

fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// A symlink nobody but root or the controller can have made or replaced.
fn trusted_link(folder: &rustix::fs::Stat, link: &rustix::fs::Stat) -> bool {
    trusted_owner(link.st_uid)
        && trusted_owner(folder.st_uid)
        && (folder.st_mode & 0o022 == 0
            // Sticky (like /tmp): others may add names but not replace this link.
            || folder.st_mode & 0o1000 != 0)
}

fn refused(path: &Path, why: String) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} {why}; refusing to follow it", path.display()),
    )
}

/// Opens the folder `path` (absolute, or relative to the current folder) for reading, refusing
/// it when it is a symlink or lies under a symlink someone other than root or the controller
/// could have placed (module documentation). The error names the symlink.
pub fn open_dir_nofollow(path: &Path) -> io::Result<OwnedFd> {
    let start = if path.is_absolute() { "/" } else { "." };
    let mut fd = rustix::fs::open(
        start,
        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let mut walked = PathBuf::from(start);
    // Components still to walk, in reverse (popped from the end).
    let mut pending: Vec<Vec<u8>> = components_rev(path);
    let mut links = 0;
    while let Some(comp) = pending.pop() {
        if comp == b".." {
            fd = rustix::fs::openat(
                &fd,
                "..",
                OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            walked.push("..");
            continue;
        }
        let name = OsStr::from_bytes(&comp);
        let here = walked.join(name);
        let st = rustix::fs::statat(&fd, name, AtFlags::SYMLINK_NOFOLLOW).map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", here.display()),
            )
        })?;
        if is_symlink(&st) {
            let target = rustix::fs::readlinkat(&fd, name, Vec::new())?;
            let target = target.as_bytes();
            let shown = String::from_utf8_lossy(target);
            if pending.is_empty() {
                return Err(refused(
                    &here,
                    format!("is a symlink (to {shown:?}), not a folder"),
                ));
            }
            let folder = rustix::fs::fstat(&fd)?;
            if !trusted_link(&folder, &st) {
                return Err(refused(
                    &here,
                    format!(
                        "is a symlink (to {shown:?}) that someone other than root could have placed (owner uid {}, in a folder of uid {} with mode {:o}) on the way to {}",
                        st.st_uid,
                        folder.st_uid,
                        folder.st_mode & 0o7777,
                        path.display()
                    ),
                ));
            }
            links += 1;
            if links > MAX_LINKS {
                return Err(io::Error::from(rustix::io::Errno::LOOP));
            }
            let target_path = Path::new(OsStr::from_bytes(target));
            if target_path.is_absolute() {
                fd = rustix::fs::open(
                    "/",
                    OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                walked = PathBuf::from("/");
            }
            pending.extend(components_rev(target_path));
            continue;
        }
        if !is_dir(&st) {
            return Err(io::Error::new(
                io::ErrorKind::NotADirectory,
                format!("{} is not a folder", here.display()),
            ));
        }
        // O_NOFOLLOW: if the name was swapped for a symlink since the stat, this fails.
        fd = rustix::fs::openat(
            &fd,
            name,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            io::Error::new(
                io::Error::from(e).kind(),
                format!("{}: {e}", here.display()),
            )
        })?;
        walked = here;
    }
    Ok(rustix::fs::openat(
        &fd,
        ".",
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}

fn components_rev(path: &Path) -> Vec<Vec<u8>> {
    let mut out: Vec<Vec<u8>> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.as_bytes().to_vec()),
            Component::ParentDir => Some(b"..".to_vec()),
            Component::RootDir | Component::CurDir | Component::Prefix(_) => None,
        })
        .collect();
    out.reverse();
    out
}

/// [`open_dir_nofollow`], creating the folder (and missing folders above it, mode 0755) when
/// it does not exist. Returns the descriptor and whether the folder itself was created.
pub fn open_or_create_dir(path: &Path) -> io::Result<(OwnedFd, bool)> {
    match open_dir_nofollow(path) {
        Ok(fd) => Ok((fd, false)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
                return Err(e);
            };
            let parent = if parent.as_os_str().is_empty() {
                Path::new(".")
            } else {
                parent
            };
            let (parent_fd, _) = open_or_create_dir(parent)?;
            let created = match rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o755)) {
                Ok(()) => true,
                Err(rustix::io::Errno::EXIST) => false,
                Err(e) => return Err(e.into()),
            };
            let fd =
                open_child_dir(parent_fd.as_fd(), name.as_bytes()).map_err(|e| named(e, path))?;
            Ok((fd, created))
        }
        Err(e) => Err(e),
    }
}

fn named(e: io::Error, path: &Path) -> io::Error {
    io::Error::new(e.kind(), format!("{}: {e}", path.display()))
}

/// Opens the folder `name` directly inside `dir` for reading, never through a symlink.
pub(crate) fn open_child_dir(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<OwnedFd> {
    match rustix::fs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(rustix::io::Errno::LOOP) => Err(io::Error::other(format!(
            "{} is a symlink where a folder was expected; refusing to follow it",
            String::from_utf8_lossy(name)
        ))),
        Err(e) => Err(e.into()),
    }
}

/// Opens `rel` (a relative path) below the folder `base`, refusing any symlink on the way and
/// anything that would leave `base`.
pub fn open_dir_beneath(base: BorrowedFd<'_>, rel: &Path) -> io::Result<OwnedFd> {
    let rel = if rel.as_os_str().is_empty() {
        Path::new(".")
    } else {
        rel
    };
    rustix::fs::openat2(
        base,
        rel,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
        ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS,
    )
    .map_err(|e| match e {
        rustix::io::Errno::LOOP | rustix::io::Errno::XDEV => io::Error::other(format!(
            "{} is or lies under a symlink; refusing to follow it",
            rel.display()
        )),
        e => io::Error::new(io::Error::from(e).kind(), format!("{}: {e}", rel.display())),
    })
}

/// Names in a folder, `.` and `..` left out.
pub(crate) fn names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_bytes();
        if name != b"." && name != b".." {
            names.push(name.to_vec());
        }
    }
    Ok(names)
}

/// Names in the folder `dir` in reverse byte order: popped from the end, a walk meets them in
/// ascending order (the order archives and snapshots list siblings in).
pub fn pending_names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = names(dir)?;
    names.sort_unstable_by(|a, b| b.cmp(a));
    Ok(names)
}

/// Opens the folder `name` that a walk of `dir` just saw: `None` when it vanished, or was
/// swapped for a symlink or a file since it was seen. It is then left out, never followed.
pub fn open_walked_dir(dir: BorrowedFd<'_>, name: &OsStr) -> io::Result<Option<OwnedFd>> {
    match rustix::fs::openat(
        dir,
        name,
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(rustix::io::Errno::NOENT | rustix::io::Errno::LOOP | rustix::io::Errno::NOTDIR) => {
            Ok(None)
        }
        Err(e) => Err(e.into()),
    }
}

/// Removes everything inside the folder `dir` (kept itself: it may be a mount point, or carry
/// an owner and mode the control panel set). Folders inside are opened with `O_NOFOLLOW` and
/// emptied through their descriptor; a symlink is removed, never followed.
pub fn empty_dir_at(dir: BorrowedFd<'_>) -> io::Result<()> {
    for name in names(dir)? {
        remove_at(dir, &name)?;
    }
    Ok(())
}

/// Removes `name` inside `dir`, with everything under it when it is a folder.
pub fn remove_at(dir: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let os = OsStr::from_bytes(name);
    // A few rounds: a tenant swapping the name between folder and symlink makes us retry,
    // never follow.
    for _ in 0..8 {
        match rustix::fs::unlinkat(dir, os, AtFlags::empty()) {
            Ok(()) => return Ok(()),
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::ISDIR) | Err(rustix::io::Errno::PERM) => {}
            Err(e) => return Err(e.into()),
        }
        let sub = match rustix::fs::openat(
            dir,
            os,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => return Ok(()),
            // Swapped for a symlink or a file meanwhile: unlink that instead.
            Err(rustix::io::Errno::LOOP) | Err(rustix::io::Errno::NOTDIR) => continue,
            Err(e) => return Err(e.into()),
        };
        empty_dir_at(sub.as_fd())?;
        drop(sub);
        match rustix::fs::unlinkat(dir, os, AtFlags::REMOVEDIR) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            // Refilled or swapped meanwhile: go round again.
            Err(rustix::io::Errno::NOTEMPTY) | Err(rustix::io::Errno::NOTDIR) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "{} keeps changing while being removed",
        String::from_utf8_lossy(name)
    )))
}

/// Removes the folder `path` and everything under it, by descriptor (see [`remove_at`]). The
/// folder itself must not be a symlink; a missing folder is fine.
pub fn remove_dir_all_nofollow(path: &Path) -> io::Result<()> {
    let (Some(parent), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(io::Error::other(format!(
            "{} names no folder to remove",
            path.display()
        )));
    };
    let parent_fd = match open_dir_nofollow(parent) {
        Ok(fd) => fd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    match rustix::fs::statat(&parent_fd, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if is_dir(&st) => remove_at(parent_fd.as_fd(), name.as_bytes()),
        Ok(_) => Err(refused(path, "is not a folder".into())),
        Err(rustix::io::Errno::NOENT) => Ok(()),
        Err(e) => Err(named(e.into(), path)),
    }
}
