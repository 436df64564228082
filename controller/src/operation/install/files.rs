//! The install's files: the root url-mapping's content copied into the web root by
//! descriptor, and the folders the package declares writable.
//!
//! Both sides are hostile: the package (a tenant may have uploaded it) and the web root (the
//! tenant owns it). The package folder is opened beneath its root with no symlink followed;
//! the web root is opened once without following an untrusted symlink, and everything below
//! is made relative to descriptors with `O_NOFOLLOW`/`O_EXCL`: a name the tenant makes first,
//! or a folder it swaps for a symlink, fails the install rather than sending a write
//! elsewhere. Each entry is owned by the instance's account once written; a symlink of the
//! package is copied as a symlink (the tenant could make it itself), never followed.
//!
//! The undo: a new web root is registered whole before it is made; in an existing one, each
//! top-level name is registered before it is made. Nothing the install did not make is ever
//! removed.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::Utf8Path;
use rustix::fs::{AtFlags, FileType, Mode, OFlags};
use serde::Serialize;

use super::plan::Plan;
use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::error::{OperationError, Step};
use crate::journal::UndoAction;

/// What the install put into the web root.
#[derive(Debug, Clone, Default, Serialize)]
pub struct FilesMade {
    /// The names made directly in the web root (with a dry run: those it would make).
    pub top_level: Vec<String>,
    pub files: u64,
    pub folders: u64,
    pub symlinks: u64,
    /// Bytes of file content written.
    pub bytes: u64,
    /// The web root itself was made.
    #[serde(skip)]
    pub web_root_created: bool,
}

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// Deep enough for any real package; deeper is refused rather than recursed into.
const MAX_DEPTH: usize = 128;

/// Copies the package's root content into the web root and makes the writable folders.
pub(super) fn deploy(
    ctl: &Controller,
    plan: &Plan,
    op: &mut Operation,
) -> Result<FilesMade, OperationError> {
    let web_root = &plan.web_root;
    let io_err = |what: &'static str, path: &Utf8Path| {
        OperationError::io(Step::DeployFiles, what, path.to_owned())
    };
    let owner = plan.account.as_ref().filter(|a| !a.is_current());
    let mut made = FilesMade::default();
    let root = if plan.web_root_exists {
        crate::archive::open_dir_nofollow(web_root.as_std_path())
            .map_err(io_err("cannot open the web root", web_root))?
    } else {
        let parent = web_root.parent().unwrap_or(Utf8Path::new("/"));
        let name = web_root.file_name().unwrap_or_default();
        let parent_fd = crate::archive::open_dir_nofollow(parent.as_std_path())
            .map_err(io_err("cannot open the web root's parent folder", parent))?;
        op.add_undo(
            UndoAction::RemoveEntry {
                dir: parent.to_owned(),
                name: name.to_owned(),
            },
            Step::DeployFiles,
        )?;
        rustix::fs::mkdirat(&parent_fd, name, Mode::from_raw_mode(0o700))
            .map_err(|e| io_err("cannot create the web root", web_root)(e.into()))?;
        made.web_root_created = true;
        let fd = rustix::fs::openat(&parent_fd, name, DIR, Mode::empty())
            .map_err(|e| io_err("cannot open the web root just made", web_root)(e.into()))?;
        set_owner_mode(fd.as_fd(), owner, 0o755).map_err(io_err(
            "cannot give the web root to the instance's account",
            web_root,
        ))?;
        fd
    };
    if let Some(content) = &plan.content {
        let package_root = crate::archive::open_dir_nofollow(plan.package.root.as_std_path())
            .map_err(io_err("cannot open the package folder", &plan.package.root))?;
        let source = crate::archive::open_dir_beneath(package_root.as_fd(), content.as_std_path())
            .map_err(io_err(
                "cannot open the package's content folder",
                &plan.package.root.join(content),
            ))?;
        let names = sorted_names(source.as_fd())
            .map_err(io_err("cannot read the package's content folder", content))?;
        for name in names {
            ctl.check_cancel(Step::DeployFiles)?;
            let shown = String::from_utf8_lossy(&name).into_owned();
            if !made.web_root_created {
                op.add_undo(
                    UndoAction::RemoveEntry {
                        dir: web_root.clone(),
                        name: shown.clone(),
                    },
                    Step::DeployFiles,
                )?;
            }
            copy_entry(source.as_fd(), root.as_fd(), &name, owner, 0, &mut made).map_err(
                io_err(
                    "cannot write the package's file into the web root",
                    &web_root.join(&shown),
                ),
            )?;
            made.top_level.push(shown);
        }
    }
    for rel in &plan.writable {
        make_writable(op, &root, web_root, rel, owner, &mut made)?;
    }
    Ok(made)
}

/// A writable mapping's folder, made when the package has none there, then mode 0775 (what
/// the open controllers give `php:permissions writable="true"`).
fn make_writable(
    op: &mut Operation,
    root: &OwnedFd,
    web_root: &Utf8Path,
    rel: &str,
    owner: Option<&Account>,
    made: &mut FilesMade,
) -> Result<(), OperationError> {
    let path = web_root.join(rel);
    let fail = |e: io::Error| {
        OperationError::io(Step::DeployFiles, "cannot make the writable folder", &path)(e)
    };
    let mut dir = rustix::fs::openat(root, ".", DIR, Mode::empty()).map_err(|e| fail(e.into()))?;
    let parts: Vec<&str> = rel.split('/').filter(|s| !s.is_empty()).collect();
    for (i, part) in parts.iter().enumerate() {
        let next = match rustix::fs::openat(&dir, *part, DIR, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                if i == 0 && !made.web_root_created && !made.top_level.iter().any(|n| n == part) {
                    op.add_undo(
                        UndoAction::RemoveEntry {
                            dir: web_root.to_owned(),
                            name: (*part).to_owned(),
                        },
                        Step::DeployFiles,
                    )?;
                    made.top_level.push((*part).to_owned());
                }
                rustix::fs::mkdirat(&dir, *part, Mode::from_raw_mode(0o700))
                    .map_err(|e| fail(e.into()))?;
                let fd = rustix::fs::openat(&dir, *part, DIR, Mode::empty())
                    .map_err(|e| fail(e.into()))?;
                set_owner_mode(fd.as_fd(), owner, 0o755).map_err(fail)?;
                made.folders += 1;
                fd
            }
            // A file mapping (`config.php`) or a symlink: nothing to make writable.
            Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => return Ok(()),
            Err(e) => return Err(fail(e.into())),
        };
        dir = next;
    }
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o775)).map_err(|e| fail(e.into()))
}

/// Copies `name` of `from` into `to` (which must not hold it), with everything under it.
pub(crate) fn copy_entry(
    from: BorrowedFd<'_>,
    to: BorrowedFd<'_>,
    name: &[u8],
    owner: Option<&Account>,
    depth: usize,
    made: &mut FilesMade,
) -> io::Result<()> {
    if depth > MAX_DEPTH {
        return Err(io::Error::other(format!(
            "the package's content is nested more than {MAX_DEPTH} folders deep"
        )));
    }
    let os = std::ffi::OsStr::from_bytes(name);
    let stat = rustix::fs::statat(from, os, AtFlags::SYMLINK_NOFOLLOW)?;
    match FileType::from_raw_mode(stat.st_mode) {
        FileType::Directory => {
            let src = rustix::fs::openat(from, os, DIR, Mode::empty())?;
            rustix::fs::mkdirat(to, os, Mode::from_raw_mode(0o700))?;
            let dst = rustix::fs::openat(to, os, DIR, Mode::empty())?;
            made.folders += 1;
            for child in sorted_names(src.as_fd())? {
                copy_entry(src.as_fd(), dst.as_fd(), &child, owner, depth + 1, made)?;
            }
            set_owner_mode(dst.as_fd(), owner, 0o755)?;
        }
        FileType::RegularFile => {
            let src = rustix::fs::openat(
                from,
                os,
                OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            if FileType::from_raw_mode(rustix::fs::fstat(&src)?.st_mode) != FileType::RegularFile {
                return Ok(());
            }
            let dst = rustix::fs::openat(
                to,
                os,
                OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::from_raw_mode(0o600),
            )?;
            let (mut src, mut dst) = (File::from(src), File::from(dst));
            made.bytes += io::copy(&mut src, &mut dst)?;
            made.files += 1;
            // Executable bits are kept (CGI scripts); nothing else of the package's mode.
            let mode = if stat.st_mode & 0o111 != 0 {
                0o755
            } else {
                0o644
            };
            set_owner_mode(dst.as_fd(), owner, mode)?;
        }
        FileType::Symlink => {
            let target = rustix::fs::readlinkat(from, os, Vec::new())?;
            rustix::fs::symlinkat(target.as_c_str(), to, os)?;
            if let Some(a) = owner {
                rustix::fs::chownat(
                    to,
                    os,
                    Some(rustix::fs::Uid::from_raw(a.uid)),
                    Some(rustix::fs::Gid::from_raw(a.gid)),
                    AtFlags::SYMLINK_NOFOLLOW,
                )?;
            }
            made.symlinks += 1;
        }
        // Devices, fifos and sockets have no place in a web root.
        _ => {}
    }
    Ok(())
}

/// Gives the entry to the account (when the work runs as another one), then its mode: the
/// mode last, so the tenant never holds an entry with root's permissions meanwhile.
pub(crate) fn set_owner_mode(
    fd: BorrowedFd<'_>,
    owner: Option<&Account>,
    mode: u32,
) -> io::Result<()> {
    if let Some(a) = owner {
        rustix::fs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(a.uid)),
            Some(rustix::fs::Gid::from_raw(a.gid)),
        )?;
    }
    rustix::fs::fchmod(fd, Mode::from_raw_mode(mode))?;
    Ok(())
}

/// The names in `dir`, in ascending byte order.
pub(crate) fn sorted_names(dir: BorrowedFd<'_>) -> io::Result<Vec<Vec<u8>>> {
    let mut names = crate::archive::pending_names(dir)?;
    names.reverse();
    Ok(names)
}
