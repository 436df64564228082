//! The upgrade's files: the new package's content staged in a folder beside the web root,
//! the instance's own entries moved into it, then the two folders exchanged in one rename.
//!
//! What moves over from the old web root: every writable folder whole (with what users put
//! there), and every entry no version of the package brought (config files the scripts wrote,
//! the tenant's own files). What stays behind, and goes with the old folder: the old
//! package's files, so a file the new version dropped is gone and one it changed is the new
//! one. Both trees are the tenant's: each folder is opened by descriptor without following a
//! symlink, and an entry is moved by `renameat` of its name (a symlink moves as a symlink).

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{AtFlags, FileType, Mode, OFlags, RenameFlags};

use super::plan::{Plan, rel_join};
use crate::account::Account;
use crate::controller::{Controller, Operation};
use crate::error::{OperationError, Step};
use crate::journal::UndoAction;
use crate::operation::install::{FilesMade, copy_entry, set_owner_mode, sorted_names};

const DIR: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC);

/// The old version's folder, under the staging name once exchanged: removed on success.
pub(super) struct Leftover {
    parent: Utf8PathBuf,
    name: String,
}

/// Stages the new files, moves the instance's own over, and exchanges the folders.
pub(super) fn swap(
    ctl: &Controller,
    plan: &Plan,
    op: &mut Operation,
) -> Result<Leftover, OperationError> {
    let web_root = &plan.web_root;
    let step = Step::UpgradeFiles;
    let io_err =
        |what: &'static str, path: &Utf8Path| OperationError::io(step, what, path.to_owned());
    let parent = web_root
        .parent()
        .expect("checked: the web root has a parent");
    let root_name = web_root
        .file_name()
        .expect("checked: the web root has a name");
    let staging = format!(".{root_name}.aps-upgrade-{}", op.id());
    let staged_path = parent.join(&staging);
    let owner = plan.account.as_ref().filter(|a| !a.is_current());

    let parent_fd = crate::archive::open_dir_nofollow(parent.as_std_path())
        .map_err(io_err("cannot open the web root's parent folder", parent))?;
    let old_root = rustix::fs::openat(&parent_fd, root_name, DIR, Mode::empty())
        .map_err(|e| io_err("cannot open the web root", web_root)(e.into()))?;
    op.add_undo(
        UndoAction::RemoveEntry {
            dir: parent.to_owned(),
            name: staging.clone(),
        },
        step,
    )?;
    rustix::fs::mkdirat(&parent_fd, staging.as_str(), Mode::from_raw_mode(0o700))
        .map_err(|e| io_err("cannot create the staging folder", &staged_path)(e.into()))?;
    let staged = rustix::fs::openat(&parent_fd, staging.as_str(), DIR, Mode::empty())
        .map_err(|e| io_err("cannot open the staging folder", &staged_path)(e.into()))?;

    // 1. The new package's content.
    let mut made = FilesMade::default();
    let package_root = crate::archive::open_dir_nofollow(plan.package.root.as_std_path())
        .map_err(io_err("cannot open the package folder", &plan.package.root))?;
    if let Some(content) = &plan.content {
        let source = crate::archive::open_dir_beneath(package_root.as_fd(), content.as_std_path())
            .map_err(io_err(
                "cannot open the package's content folder",
                &plan.package.root.join(content),
            ))?;
        let names = sorted_names(source.as_fd())
            .map_err(io_err("cannot read the package's content folder", content))?;
        for name in names {
            ctl.check_cancel(step)?;
            copy_entry(source.as_fd(), staged.as_fd(), &name, owner, 0, &mut made).map_err(
                io_err(
                    "cannot stage the new package's file",
                    &staged_path.join(String::from_utf8_lossy(&name).as_ref()),
                ),
            )?;
        }
    }
    // 2. The instance's own entries, moved from the old web root.
    let old_package = crate::archive::open_dir_nofollow(plan.old_package.root.as_std_path())
        .map_err(io_err(
            "cannot open the installed package's folder",
            &plan.old_package.root,
        ))?;
    let old_content = match &plan.old_content {
        Some(c) => crate::archive::open_dir_beneath(old_package.as_fd(), c.as_std_path()).ok(),
        None => None,
    };
    let carry = Carry {
        ctl,
        writable: &plan.writable,
        owner,
    };
    carry
        .entries(
            old_root.as_fd(),
            old_content.as_ref().map(|f| f.as_fd()),
            staged.as_fd(),
            "",
        )
        .map_err(|e| match e {
            Moved::Stopped(error) => *error,
            Moved::Io(error) => {
                io_err("cannot move the instance's own files over to", &staged_path)(error)
            }
        })?;
    for rel in &plan.writable {
        make_writable(staged.as_fd(), rel, owner).map_err(io_err(
            "cannot make the writable folder",
            &staged_path.join(rel),
        ))?;
    }
    // The staged folder takes the web root's owner and mode, then the place of the web root.
    let stat = rustix::fs::fstat(&old_root)
        .map_err(|e| io_err("cannot read the web root's owner and mode", web_root)(e.into()))?;
    rustix::fs::fchown(
        &staged,
        Some(rustix::fs::Uid::from_raw(stat.st_uid)),
        Some(rustix::fs::Gid::from_raw(stat.st_gid)),
    )
    .and_then(|()| rustix::fs::fchmod(&staged, Mode::from_raw_mode(stat.st_mode & 0o7777)))
    .map_err(|e| {
        io_err(
            "cannot give the staged folder the web root's owner",
            &staged_path,
        )(e.into())
    })?;
    ctl.check_cancel(step)?;
    rustix::fs::renameat_with(
        &parent_fd,
        staging.as_str(),
        &parent_fd,
        root_name,
        RenameFlags::EXCHANGE,
    )
    .map_err(|e| {
        io_err(
            "cannot exchange the staged folder with the web root",
            web_root,
        )(e.into())
    })?;
    Ok(Leftover {
        parent: parent.to_owned(),
        name: staging,
    })
}

/// Removes the old version's folder; what cannot be removed is left (it holds only the old
/// package's files) and never fails a finished upgrade.
pub(super) fn remove_leftover(leftover: &Leftover) {
    if let Ok(parent) = crate::archive::open_dir_nofollow(leftover.parent.as_std_path()) {
        let _ = crate::archive::remove_at(parent.as_fd(), leftover.name.as_bytes());
    }
}

enum Moved {
    Stopped(Box<OperationError>),
    Io(io::Error),
}

impl From<io::Error> for Moved {
    fn from(e: io::Error) -> Self {
        Moved::Io(e)
    }
}

impl From<rustix::io::Errno> for Moved {
    fn from(e: rustix::io::Errno) -> Self {
        Moved::Io(e.into())
    }
}

struct Carry<'a> {
    ctl: &'a Controller,
    writable: &'a [String],
    owner: Option<&'a Account>,
}

impl Carry<'_> {
    /// Moves the entries of `old` (at web-root-relative `rel`) that are the instance's own
    /// into `staged`; `package` is the old package's folder at the same place, if it has one.
    fn entries(
        &self,
        old: BorrowedFd<'_>,
        package: Option<BorrowedFd<'_>>,
        staged: BorrowedFd<'_>,
        rel: &str,
    ) -> Result<(), Moved> {
        if rel.split('/').count() > 128 {
            return Err(Moved::Io(io::Error::other(
                "the web root is nested too deep",
            )));
        }
        for name in sorted_names(old)? {
            self.ctl
                .check_cancel(Step::UpgradeFiles)
                .map_err(|e| Moved::Stopped(Box::new(e)))?;
            let os = std::ffi::OsStr::from_bytes(&name);
            let here = rel_join(rel, &String::from_utf8_lossy(&name));
            let kind = |dir: BorrowedFd<'_>| {
                rustix::fs::statat(dir, os, AtFlags::SYMLINK_NOFOLLOW)
                    .ok()
                    .map(|s| FileType::from_raw_mode(s.st_mode))
            };
            let old_kind = kind(old);
            let in_package = package.and_then(kind);
            let in_staged = kind(staged);
            if self.writable.contains(&here) || in_package.is_none() {
                // The instance's own: it wins over a staged entry of the same name only in a
                // writable folder; elsewhere the new package's file wins.
                match in_staged {
                    None => rustix::fs::renameat(old, os, staged, os)?,
                    Some(_) if self.writable.contains(&here) => {
                        crate::archive::remove_at(staged, &name)?;
                        rustix::fs::renameat(old, os, staged, os)?;
                    }
                    Some(_) => {}
                }
                continue;
            }
            // A folder of the old package: its content may hold the instance's own files.
            if old_kind == Some(FileType::Directory) && in_package == Some(FileType::Directory) {
                let old_dir = rustix::fs::openat(old, os, DIR, Mode::empty())?;
                let pkg_dir =
                    rustix::fs::openat(package.expect("in the package"), os, DIR, Mode::empty())?;
                let made_here = in_staged.is_none();
                if made_here {
                    rustix::fs::mkdirat(staged, os, Mode::from_raw_mode(0o700))?;
                }
                let staged_dir = match rustix::fs::openat(staged, os, DIR, Mode::empty()) {
                    Ok(fd) => fd,
                    // The new package has a file there: the instance's files under it go.
                    Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => continue,
                    Err(e) => return Err(e.into()),
                };
                self.entries(
                    old_dir.as_fd(),
                    Some(pkg_dir.as_fd()),
                    staged_dir.as_fd(),
                    &here,
                )?;
                if made_here {
                    // A folder only the old version had stays only if something of the
                    // instance's own is in it.
                    if sorted_names(staged_dir.as_fd())?.is_empty() {
                        rustix::fs::unlinkat(staged, os, AtFlags::REMOVEDIR)?;
                    } else {
                        set_owner_mode(staged_dir.as_fd(), self.owner, 0o755)?;
                    }
                }
            }
            // Else a file of the old package: left behind.
        }
        Ok(())
    }
}

/// A writable folder in the staged tree: made when neither the package nor the instance
/// brought it, then mode 0775, as the install makes it.
fn make_writable(root: BorrowedFd<'_>, rel: &str, owner: Option<&Account>) -> io::Result<()> {
    let mut dir: OwnedFd = rustix::fs::openat(root, ".", DIR, Mode::empty())?;
    for part in rel.split('/').filter(|s| !s.is_empty()) {
        dir = match rustix::fs::openat(&dir, part, DIR, Mode::empty()) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => {
                rustix::fs::mkdirat(&dir, part, Mode::from_raw_mode(0o700))?;
                let fd = rustix::fs::openat(&dir, part, DIR, Mode::empty())?;
                set_owner_mode(fd.as_fd(), owner, 0o755)?;
                fd
            }
            // A file mapping or a symlink: nothing to make writable.
            Err(rustix::io::Errno::NOTDIR) | Err(rustix::io::Errno::LOOP) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
    }
    rustix::fs::fchmod(&dir, Mode::from_raw_mode(0o775))?;
    Ok(())
}
