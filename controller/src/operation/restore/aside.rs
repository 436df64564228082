//! The web folders of a restore's safety snapshot kept aside instead of copied: each web
//! folder's entries are renamed into a folder of the restore's own work folder (root-only,
//! on the same file system) and renamed back when the restore fails, so a snapshot costs a
//! few renames, not a copy of the site. A folder whose entries cannot be renamed there (another
//! file system) is archived as before.
//!
//! Crash safety rests on `aside.json` beside the snapshot, written before anything moves:
//! until it says `restoring`, the web folders hold nothing of the restore (entries not yet
//! moved are the instance's own, and go nowhere); once it says `restoring`, everything was
//! moved and synced, and a web folder is emptied before its kept entries go back.

use std::ffi::OsStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};
use rustix::fs::{Mode, RenameFlags, Timespec, Timestamps};
use serde::{Deserialize, Serialize};

use crate::account::Account;
use crate::durable::{TempName, write_atomic};
use crate::error::{OperationError, Step};
use crate::registry::Instance;

/// The plan's file name, beside the snapshot archive in the work folder.
const PLAN: &str = "aside.json";
/// The folder of the work folder that holds one folder per kept web folder.
const ASIDE: &str = "aside";
/// Rounds of moving a web folder's entries: a live site may add files meanwhile.
const ROUNDS: usize = 4;

/// What was (or is being) kept aside, and whether the restore may have written since.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AsidePlan {
    /// Every entry was moved and synced: from now on a web folder holds the restore's files.
    pub(super) restoring: bool,
    pub(super) folders: Vec<AsideFolder>,
}

/// One web folder whose entries are kept aside, and its own mode and time to put back.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct AsideFolder {
    pub(super) mapping_url: String,
    pub(super) dir: Utf8PathBuf,
    /// Its folder's name under `<work>/aside/`.
    pub(super) aside: String,
    pub(super) mode: u32,
    pub(super) mtime: i64,
    pub(super) mtime_nsec: u32,
}

fn plan_path(work: &Utf8Path) -> Utf8PathBuf {
    work.join(PLAN)
}

fn io_err(what: &'static str, path: &Utf8Path) -> impl FnOnce(io::Error) -> OperationError {
    OperationError::io(Step::SafetySnapshot, what, path)
}

impl AsidePlan {
    /// The web folders that could be kept aside: every archived web folder that `replaced`
    /// names (the restore empties and refills it), that exists and opens by descriptor (a
    /// symlinked one is left to the archive, which refuses it by name). Written to the work
    /// folder before anything moves; the caller journals the snapshot after this and before
    /// [`move_all`](Self::move_all).
    pub(super) fn write(
        instance: &Instance,
        work: &Utf8Path,
        replaced: &dyn Fn(&str) -> bool,
    ) -> Result<Self, OperationError> {
        let mut folders = Vec::new();
        for (i, (url, dir)) in instance.archived_web_dirs().into_iter().enumerate() {
            if !replaced(url) {
                continue;
            }
            let Ok(fd) = crate::archive::open_dir_nofollow(dir.as_std_path()) else {
                continue;
            };
            let st = rustix::fs::fstat(&fd).map_err(|e| io_err("cannot stat", dir)(e.into()))?;
            folders.push(AsideFolder {
                mapping_url: url.clone(),
                dir: dir.clone(),
                aside: i.to_string(),
                mode: st.st_mode & 0o7777,
                mtime: st.st_mtime,
                mtime_nsec: st.st_mtime_nsec as u32,
            });
        }
        let plan = AsidePlan {
            restoring: false,
            folders,
        };
        plan.save(work)?;
        Ok(plan)
    }

    fn save(&self, work: &Utf8Path) -> Result<(), OperationError> {
        let path = plan_path(work);
        let json = serde_json::to_vec_pretty(self).expect("a plan serialises");
        let temp = TempName {
            prefix: ".aside-",
            suffix: ".tmp",
        };
        write_atomic(&path, &json, 0o600, temp).map_err(|e| OperationError::Io {
            step: Step::SafetySnapshot,
            what: "cannot write",
            path: e.path,
            source: e.source,
        })
    }

    /// The plan a restore left in `work`, if it got as far as writing one.
    pub(super) fn read(work: &Utf8Path) -> Result<Option<Self>, OperationError> {
        let path = plan_path(work);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(OperationError::io(Step::Rollback, "cannot read", path)(e)),
        };
        serde_json::from_slice(&bytes).map(Some).map_err(|e| {
            OperationError::io(Step::Rollback, "cannot read", path)(io::Error::other(e))
        })
    }

    /// Moves every planned folder's entries aside. A folder whose entries cannot be renamed
    /// into the work folder (another file system) gets its moved entries back and leaves the
    /// plan: it is archived instead. The plan is saved with the folders kept.
    pub(super) fn move_all(&mut self, work: &Utf8Path) -> Result<(), OperationError> {
        let root = work.join(ASIDE);
        std::fs::create_dir(&root).map_err(io_err("cannot create", &root))?;
        let root_fd = crate::archive::open_dir_nofollow(root.as_std_path())
            .map_err(io_err("cannot open", &root))?;
        let mut kept = Vec::new();
        for folder in &self.folders {
            if move_folder(folder, root_fd.as_fd(), &root)? {
                kept.push(folder.clone());
            }
        }
        if kept.len() != self.folders.len() {
            self.folders = kept;
            self.save(work)?;
        }
        Ok(())
    }

    /// The point after which the web folders hold the restore's files: the moves are synced
    /// first, so a crash after it never finds a kept entry back in its web folder.
    pub(super) fn begin_restoring(&mut self, work: &Utf8Path) -> Result<(), OperationError> {
        let root = work.join(ASIDE);
        for folder in &self.folders {
            let aside = root.join(&folder.aside);
            for dir in [&folder.dir, &aside] {
                let fd = crate::archive::open_dir_nofollow(dir.as_std_path())
                    .map_err(io_err("cannot open", dir))?;
                rustix::fs::fsync(&fd).map_err(|e| io_err("cannot sync", dir)(e.into()))?;
            }
        }
        self.restoring = true;
        self.save(work)
    }

    /// The URLs of the folders kept aside (the snapshot archive holds none of them).
    pub(super) fn urls(&self) -> impl Iterator<Item = &str> {
        self.folders.iter().map(|f| f.mapping_url.as_str())
    }

    /// Puts every kept folder back: emptied first when the restore may have written into it,
    /// then its own entries renamed back, then its mode and time. `owner` gets a web folder
    /// that has to be made again.
    pub(super) fn put_back(
        &self,
        work: &Utf8Path,
        owner: Option<&Account>,
    ) -> Result<(), OperationError> {
        let root = work.join(ASIDE);
        for folder in &self.folders {
            put_back_folder(folder, self.restoring, &root, owner)?;
        }
        Ok(())
    }
}

/// Moves `folder`'s entries into `<root>/<aside>`; `false` when they cannot be renamed there
/// (then none is moved).
fn move_folder(
    folder: &AsideFolder,
    root: BorrowedFd<'_>,
    root_path: &Utf8Path,
) -> Result<bool, OperationError> {
    let web = crate::archive::open_dir_nofollow(folder.dir.as_std_path())
        .map_err(io_err("cannot open web folder", &folder.dir))?;
    let aside_path = root_path.join(&folder.aside);
    rustix::fs::mkdirat(root, folder.aside.as_str(), Mode::from_raw_mode(0o700))
        .map_err(|e| io_err("cannot create", &aside_path)(e.into()))?;
    let aside = crate::archive::open_dir_nofollow(aside_path.as_std_path())
        .map_err(io_err("cannot open", &aside_path))?;
    let mut moved: Vec<Vec<u8>> = Vec::new();
    for _ in 0..ROUNDS {
        let names = crate::archive::pending_names(web.as_fd())
            .map_err(io_err("cannot read web folder", &folder.dir))?;
        let mut any = false;
        for name in names {
            let os = OsStr::from_bytes(&name);
            match rustix::fs::renameat_with(&web, os, &aside, os, RenameFlags::NOREPLACE) {
                Ok(()) => {
                    moved.push(name);
                    any = true;
                }
                // Gone meanwhile; or made again after its namesake moved (the extraction
                // empties the folder anyway).
                Err(rustix::io::Errno::NOENT | rustix::io::Errno::EXIST) => {}
                Err(rustix::io::Errno::XDEV) => {
                    move_back(&aside, &web, &moved, &folder.dir)?;
                    return Ok(false);
                }
                Err(e) => {
                    let path = folder.dir.join(String::from_utf8_lossy(&name).as_ref());
                    return Err(io_err("cannot move aside", &path)(e.into()));
                }
            }
        }
        if !any {
            break;
        }
    }
    Ok(true)
}

fn move_back(
    aside: &OwnedFd,
    web: &OwnedFd,
    names: &[Vec<u8>],
    dir: &Utf8Path,
) -> Result<(), OperationError> {
    for name in names {
        rename_back(aside.as_fd(), web.as_fd(), name).map_err(|e| {
            OperationError::io(Step::SafetySnapshot, "cannot move back into", dir)(e)
        })?;
    }
    Ok(())
}

/// Renames `name` from the kept folder back into the web folder. Whatever took its name
/// meanwhile (the restore's file, a file the live site made) is removed first, by descriptor.
fn rename_back(aside: BorrowedFd<'_>, web: BorrowedFd<'_>, name: &[u8]) -> io::Result<()> {
    let os = OsStr::from_bytes(name);
    for _ in 0..ROUNDS {
        match rustix::fs::renameat_with(aside, os, web, os, RenameFlags::NOREPLACE) {
            Ok(()) | Err(rustix::io::Errno::NOENT) => return Ok(()),
            Err(rustix::io::Errno::EXIST) => crate::archive::remove_at(web, name)?,
            Err(e) => return Err(e.into()),
        }
    }
    Err(io::Error::other(format!(
        "{} keeps being made again while it is put back",
        String::from_utf8_lossy(name)
    )))
}

fn put_back_folder(
    folder: &AsideFolder,
    restoring: bool,
    root: &Utf8Path,
    owner: Option<&Account>,
) -> Result<(), OperationError> {
    let err = |what| OperationError::io(Step::Rollback, what, &folder.dir);
    let aside_path = root.join(&folder.aside);
    // Renamed once the web folder is emptied: a put-back cut short and done again must not
    // empty the folder a second time, when it holds entries already moved back.
    let back_path = root.join(format!("{}.back", folder.aside));
    let open = |path: &Utf8Path| match crate::archive::open_dir_nofollow(path.as_std_path()) {
        Ok(fd) => Ok(Some(fd)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(OperationError::io(Step::Rollback, "cannot open", path)(e)),
    };
    let (web, created) = crate::archive::open_or_create_dir(folder.dir.as_std_path())
        .map_err(err("cannot open web folder"))?;
    let aside = match open(&aside_path)? {
        Some(_) => {
            if restoring {
                crate::archive::empty_dir_at(web.as_fd())
                    .map_err(err("cannot empty web folder"))?;
            }
            std::fs::rename(&aside_path, &back_path)
                .map_err(|e| OperationError::io(Step::Rollback, "cannot rename", &aside_path)(e))?;
            open(&back_path)?.ok_or_else(|| {
                OperationError::io(Step::Rollback, "cannot open", &back_path)(
                    io::ErrorKind::NotFound.into(),
                )
            })?
        }
        None => match open(&back_path)? {
            Some(fd) => fd,
            // Never made (the restore stopped before it moved anything of this folder), or
            // already put back whole.
            None => return Ok(()),
        },
    };
    if let (true, Some(a)) = (created, owner) {
        rustix::fs::fchown(
            &web,
            Some(rustix::fs::Uid::from_raw(a.uid)),
            Some(rustix::fs::Gid::from_raw(a.gid)),
        )
        .map_err(|e| err("cannot give the account")(e.into()))?;
    }
    let names = crate::archive::pending_names(aside.as_fd())
        .map_err(|e| OperationError::io(Step::Rollback, "cannot read", back_path.clone())(e))?;
    for name in names {
        rename_back(aside.as_fd(), web.as_fd(), &name).map_err(err("cannot move back into"))?;
    }
    rustix::fs::fchmod(&web, Mode::from_raw_mode(folder.mode))
        .map_err(|e| err("cannot set the mode of")(e.into()))?;
    let time = Timestamps {
        last_access: Timespec {
            tv_sec: 0,
            tv_nsec: rustix::fs::UTIME_OMIT,
        },
        last_modification: Timespec {
            tv_sec: folder.mtime,
            tv_nsec: folder.mtime_nsec.into(),
        },
    };
    rustix::fs::futimens(&web, &time).map_err(|e| err("cannot set the time of")(e.into()))?;
    drop(aside);
    match std::fs::remove_dir(&back_path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(OperationError::io(
            Step::Rollback,
            "cannot remove",
            back_path,
        )(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    fn utf8(p: &std::path::Path) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(p.to_owned()).unwrap()
    }

    /// (name, content, inode) of every file, and the folder's own mode.
    fn state(dir: &Utf8Path) -> (Vec<(String, String, u64)>, u32) {
        let mut files = Vec::new();
        for e in std::fs::read_dir(dir).unwrap() {
            let e = e.unwrap();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            let content = if meta.is_file() {
                std::fs::read_to_string(e.path()).unwrap()
            } else {
                String::new()
            };
            files.push((
                e.file_name().to_string_lossy().into_owned(),
                content,
                meta.ino(),
            ));
        }
        files.sort();
        let mode = std::fs::metadata(dir).unwrap().permissions().mode() & 0o7777;
        (files, mode)
    }

    fn setup() -> (tempfile::TempDir, Utf8PathBuf, Utf8PathBuf, AsidePlan) {
        let tmp = tempfile::tempdir().unwrap();
        let web = utf8(&tmp.path().join("www"));
        let work = utf8(&tmp.path().join("work"));
        std::fs::create_dir(&web).unwrap();
        std::fs::create_dir(&work).unwrap();
        std::fs::write(web.join("index.php"), "old index").unwrap();
        std::fs::create_dir(web.join("media")).unwrap();
        std::fs::write(web.join("media/a.jpg"), "old picture").unwrap();
        std::os::unix::fs::symlink("index.php", web.join("home.php")).unwrap();
        std::fs::set_permissions(&web, std::fs::Permissions::from_mode(0o750)).unwrap();
        let st = std::fs::metadata(&web).unwrap();
        let plan = AsidePlan {
            restoring: false,
            folders: vec![AsideFolder {
                mapping_url: "/".into(),
                dir: web.clone(),
                aside: "0".into(),
                mode: 0o750,
                mtime: st.mtime(),
                mtime_nsec: st.mtime_nsec() as u32,
            }],
        };
        plan.save(&work).unwrap();
        (tmp, web, work, plan)
    }

    /// What a restore writes once the old entries are aside.
    fn restore_writes(web: &Utf8Path) {
        std::fs::write(web.join("index.php"), "new index").unwrap();
        std::fs::write(web.join("only-new.txt"), "new").unwrap();
        std::fs::set_permissions(web, std::fs::Permissions::from_mode(0o777)).unwrap();
    }

    #[test]
    fn moved_aside_and_back_are_the_same_entries() {
        let (_tmp, web, work, mut plan) = setup();
        let before = state(&web);
        plan.move_all(&work).unwrap();
        assert!(
            state(&web).0.is_empty(),
            "the web folder is empty once moved"
        );
        plan.begin_restoring(&work).unwrap();
        assert_eq!(AsidePlan::read(&work).unwrap().as_ref(), Some(&plan));
        restore_writes(&web);
        plan.put_back(&work, None).unwrap();
        assert_eq!(state(&web), before, "same names, contents, inodes and mode");
        // Done again (a recovery after a put-back that was not journaled as done): nothing
        // more happens, the entries put back stay.
        AsidePlan::read(&work)
            .unwrap()
            .unwrap()
            .put_back(&work, None)
            .unwrap();
        assert_eq!(state(&web), before);
    }

    /// A put-back cut short after it emptied the folder and moved one entry back: done again,
    /// it must not empty the folder a second time (that entry would be lost).
    #[test]
    fn a_put_back_cut_short_and_done_again_loses_nothing() {
        let (_tmp, web, work, mut plan) = setup();
        let before = state(&web);
        plan.move_all(&work).unwrap();
        plan.begin_restoring(&work).unwrap();
        restore_writes(&web);
        // What the first try did before it stopped.
        crate::archive::empty_dir_at(
            crate::archive::open_dir_nofollow(web.as_std_path())
                .unwrap()
                .as_fd(),
        )
        .unwrap();
        std::fs::rename(work.join("aside/0"), work.join("aside/0.back")).unwrap();
        std::fs::rename(work.join("aside/0.back/index.php"), web.join("index.php")).unwrap();
        plan.put_back(&work, None).unwrap();
        assert_eq!(state(&web), before);
    }

    /// Stopped while moving aside (nothing of the restore written yet): entries not yet moved
    /// are the folder's own and stay; the moved ones come back beside them.
    #[test]
    fn stopped_while_moving_aside_puts_back_without_emptying() {
        let (_tmp, web, work, plan) = setup();
        let before = state(&web);
        std::fs::create_dir_all(work.join("aside/0")).unwrap();
        std::fs::rename(web.join("media"), work.join("aside/0/media")).unwrap();
        plan.put_back(&work, None).unwrap();
        assert_eq!(state(&web), before);
    }

    /// A web folder on another file system than the work folder is left to the archive:
    /// nothing of it moves, and the plan no longer lists it.
    #[test]
    fn another_file_system_is_left_in_place() {
        let (_tmp, web, _work, plan) = setup();
        let shm = std::path::Path::new("/dev/shm");
        if std::fs::metadata(shm).ok().map(|m| m.dev())
            == std::fs::metadata(&web).ok().map(|m| m.dev())
        {
            eprintln!("skipped: /dev/shm is on the same file system as the temporary folder");
            return;
        }
        let other = tempfile::tempdir_in(shm).unwrap();
        let work = utf8(other.path());
        plan.save(&work).unwrap();
        let before = state(&web);
        let mut plan = plan;
        plan.move_all(&work).unwrap();
        assert!(plan.folders.is_empty());
        assert_eq!(AsidePlan::read(&work).unwrap(), Some(plan));
        assert_eq!(state(&web), before);
    }
}
