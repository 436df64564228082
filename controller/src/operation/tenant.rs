//! The folder a script runs in when it runs as the instance's account.
//!
//! The controller's own folders (the state folder, its work folders, a panel's backup store)
//! are closed to the tenant, and the package may sit anywhere. So each run gets a fresh folder
//! in the system temp folder, `aps-run-XXXXXX/`, holding:
//!
//! - `scripts/`: a copy of the package's `scripts/` folder (the script's working directory),
//!   copied by descriptor: symlinks are copied as symlinks, never followed, so a package cannot
//!   make the controller copy a file only root may read into a place the tenant reads;
//! - `home/`: the script's private, empty `HOME`;
//! - `backup-file`: `BACKUP_FILE` — for a backup an empty file the script fills, for a restore
//!   a copy of the file to restore from.
//!
//! Everything is made while the folder is still root's (0700), then handed to the account,
//! the folder itself last: the tenant never sees a half-made folder to play tricks in. After
//! the script, the controller takes `backup-file` back through the folder's descriptor opened
//! at creation, with `O_NOFOLLOW`, and only if it is a regular file of the account with one
//! link: whatever the tenant put there instead (a symlink to `/etc/shadow`, a hard link to
//! another tenant's file) is refused. The folder is removed when the value is dropped, after
//! the runner has ended every process of the run.

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{FileType, Mode, OFlags};

use crate::account::Account;

/// Name of the hand-over file inside the run folder.
const BACKUP_FILE: &str = "backup-file";

/// What `BACKUP_FILE` starts as.
pub(crate) enum HandOver<'a> {
    /// No `BACKUP_FILE` (verification-script).
    None,
    /// An empty file the script writes (backup).
    Empty,
    /// A copy of this file (restore).
    CopyOf(&'a Utf8Path),
}

/// The run folder; dropping it removes it (without following symlinks).
pub(crate) struct TenantDir {
    _dir: tempfile::TempDir,
    path: Utf8PathBuf,
    fd: OwnedFd,
    account: Account,
}

impl TenantDir {
    /// Makes the run folder for `account` with a copy of `scripts` and the hand-over file.
    pub(crate) fn new(
        account: &Account,
        scripts: &Utf8Path,
        hand_over: HandOver<'_>,
    ) -> io::Result<Self> {
        // The controller's pid in the name: a controller killed during the run cannot remove
        // it, the next one to start does (`remove_stale`).
        let dir = tempfile::Builder::new()
            .prefix(&format!("aps-run-{}-", std::process::id()))
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .tempdir()?;
        let path = Utf8PathBuf::from_path_buf(dir.path().to_owned())
            .map_err(|p| io::Error::other(format!("temp folder {} is not UTF-8", p.display())))?;
        let fd = rustix::fs::open(
            path.as_std_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        std::fs::DirBuilder::new().create(path.join("home"))?;
        let scripts_fd = rustix::fs::open(
            scripts.as_std_path(),
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        rustix::fs::mkdirat(&fd, "scripts", Mode::from_raw_mode(0o700))?;
        let copy = rustix::fs::openat(
            &fd,
            "scripts",
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        copy_tree(scripts_fd.as_fd(), copy.as_fd(), 0)?;
        match hand_over {
            HandOver::None => {}
            HandOver::Empty => {
                create_file(&fd, BACKUP_FILE)?;
            }
            HandOver::CopyOf(source) => {
                let mut from = File::open(source)?;
                let mut to = create_file(&fd, BACKUP_FILE)?;
                io::copy(&mut from, &mut to)?;
            }
        }
        let tenant = TenantDir {
            _dir: dir,
            path,
            fd,
            account: account.clone(),
        };
        // Still root's own folder: nobody else can have changed anything in it.
        crate::account::chown_tree(&tenant.path, account)?;
        rustix::fs::fchown(
            &tenant.fd,
            Some(rustix::fs::Uid::from_raw(account.uid)),
            Some(rustix::fs::Gid::from_raw(account.gid)),
        )?;
        Ok(tenant)
    }

    pub(crate) fn home(&self) -> Utf8PathBuf {
        self.path.join("home")
    }

    pub(crate) fn scripts(&self) -> Utf8PathBuf {
        self.path.join("scripts")
    }

    pub(crate) fn backup_file(&self) -> Utf8PathBuf {
        self.path.join(BACKUP_FILE)
    }

    /// The file the script wrote as `BACKUP_FILE`, opened for reading if it is still a
    /// regular file of the account with a single link (see the module documentation).
    pub(crate) fn take_back(&self) -> io::Result<File> {
        let fd = rustix::fs::openat(
            &self.fd,
            BACKUP_FILE,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) != FileType::RegularFile
            || stat.st_uid != self.account.uid
            || stat.st_nlink != 1
        {
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                format!(
                    "{} is no longer a regular file of {} with a single link; refused",
                    self.backup_file(),
                    self.account.name
                ),
            ));
        }
        Ok(File::from(fd))
    }

    /// Copies what the script wrote into `dest` (created 0600 or truncated, never followed).
    pub(crate) fn take_back_into(&self, dest: &Utf8Path) -> io::Result<()> {
        use std::os::unix::fs::OpenOptionsExt;
        let mut from = self.take_back()?;
        let mut to = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW)
            .open(dest)?;
        io::copy(&mut from, &mut to)?;
        Ok(())
    }
}

/// Removes run folders of controllers that no longer run (killed during a run), in the
/// system temp folder. Best effort; symlinks are not followed.
pub(crate) fn remove_stale() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for entry in entries.flatten() {
        if crate::process::left_by_dead_controller(&entry.file_name())
            && entry.file_type().is_ok_and(|t| t.is_dir())
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

fn create_file(dir: &OwnedFd, name: &str) -> io::Result<File> {
    let fd = rustix::fs::openat(
        dir,
        name,
        OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )?;
    Ok(File::from(fd))
}

/// Copies the folder `from` into the empty folder `to`: folders, regular files (mode kept,
/// at most 0755) and symlinks (as symlinks); anything else is skipped.
fn copy_tree(
    from: std::os::fd::BorrowedFd<'_>,
    to: std::os::fd::BorrowedFd<'_>,
    depth: usize,
) -> io::Result<()> {
    if depth > 64 {
        return Err(io::Error::other(
            "scripts/ is nested more than 64 folders deep",
        ));
    }
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(from)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let stat =
            rustix::fs::statat(from, name.as_c_str(), rustix::fs::AtFlags::SYMLINK_NOFOLLOW)?;
        let mode = (stat.st_mode & 0o755) | 0o600;
        match FileType::from_raw_mode(stat.st_mode) {
            FileType::Directory => {
                let sub = rustix::fs::openat(
                    from,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                rustix::fs::mkdirat(to, name.as_c_str(), Mode::from_raw_mode(0o700))?;
                let sub_to = rustix::fs::openat(
                    to,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                copy_tree(sub.as_fd(), sub_to.as_fd(), depth + 1)?;
                rustix::fs::fchmod(&sub_to, Mode::from_raw_mode(mode | 0o100))?;
            }
            FileType::RegularFile => {
                let src = rustix::fs::openat(
                    from,
                    name.as_c_str(),
                    OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC,
                    Mode::empty(),
                )?;
                if FileType::from_raw_mode(rustix::fs::fstat(&src)?.st_mode)
                    != FileType::RegularFile
                {
                    continue;
                }
                let dst = rustix::fs::openat(
                    to,
                    name.as_c_str(),
                    OFlags::WRONLY
                        | OFlags::CREATE
                        | OFlags::EXCL
                        | OFlags::NOFOLLOW
                        | OFlags::CLOEXEC,
                    Mode::from_raw_mode(0o600),
                )?;
                let (mut src, mut dst) = (File::from(src), File::from(dst));
                io::copy(&mut src, &mut dst)?;
                rustix::fs::fchmod(&dst, Mode::from_raw_mode(mode))?;
            }
            FileType::Symlink => {
                let target = rustix::fs::readlinkat(from, name.as_c_str(), Vec::new())?;
                rustix::fs::symlinkat(target.as_c_str(), to, name.as_c_str())?;
            }
            _ => {}
        }
    }
    Ok(())
}
