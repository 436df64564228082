//! Putting an archive's web folders and databases onto an instance: the step a restore and
//! the put-back of a safety snapshot share.

use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;

use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::archive::{ArchiveReader, ExtractPlan, PartKind};
use crate::controller::Controller;
use crate::error::{OperationError, Step};

use crate::registry::Instance;

/// Makes the instance's web folders and databases what the archive holds, in one extraction
/// pass: every web folder is emptied and refilled, every database emptied and loaded. Parts
/// for mappings or databases the instance does not have are skipped (a migration target may
/// differ). Returns the extracted script part, if the archive has one.
pub(super) fn apply_archive(
    reader: &ArchiveReader,
    instance: &Instance,
    work: &Utf8Path,
    timeout: std::time::Duration,
    step: Step,
    owner: Option<&Account>,
    ctl: Option<&Controller>,
) -> Result<Option<Utf8PathBuf>, OperationError> {
    let arch = |source| OperationError::Archive { step, source };
    let mut plan = ExtractPlan::new();
    let mut dumps = Vec::new();
    let mut script_part = None;
    for part in &reader.manifest().parts {
        match &part.kind {
            PartKind::WebDir { mapping_url } => {
                if let Some(dir) = instance.web_dirs.get(mapping_url) {
                    empty_folder(dir, owner).map_err(OperationError::io(
                        step,
                        "cannot empty web folder",
                        dir,
                    ))?;
                    plan = plan.web_dir(mapping_url, dir.clone());
                }
            }
            PartKind::DatabaseDump { db_id, .. } => {
                if let Some(db) = instance.databases.get(db_id) {
                    let dump =
                        work.join(format!("load-{}.sql", crate::operation::file_safe(db_id)));
                    plan = plan.file(&part.name, dump.clone());
                    dumps.push((db_id.clone(), db, dump));
                }
            }
            PartKind::ScriptBackup => {
                let path = work.join("script-backup");
                plan = plan.file(&part.name, path.clone());
                script_part = Some(path);
            }
        }
    }
    // Restored files are the tenant's, never root's: given to the account through their
    // descriptors as they are created (symlinks not followed).
    let plan = plan.owner(owner.filter(|a| !a.is_current()));
    reader.extract(&plan).map_err(arch)?;
    for (db_id, db, dump) in dumps {
        if let Some(ctl) = ctl {
            ctl.check_cancel(step)?;
            // The load tool reads the dump itself: no byte count, only that it runs.
            ctl.report_part("restore", &instance.name, "database", &db_id, None);
        }
        crate::database::load(db, &dump, timeout).map_err(|source| OperationError::Database {
            step,
            db_id: db_id.clone(),
            source,
        })?;
        let _ = std::fs::remove_file(&dump);
    }
    Ok(script_part)
}

/// Mappings the archive has no part of because the backed-up instance kept their folder
/// inside a parent mapping's folder (`/media` → `<root>/media`), while this instance keeps it
/// apart (a migration target registered with `"/media" = "/data/media"`): their content came
/// back inside the parent's folder, at the mapping's relative URL. It is moved to the
/// mapping's own folder, which is emptied first, so the web server finds it where this
/// instance's `WEB_…_DIR` says. Same file system only (a rename); otherwise the restore fails
/// and is rolled back rather than copying half.
pub(super) fn relocate_separate_mappings(
    reader: &ArchiveReader,
    instance: &Instance,
) -> Result<(), OperationError> {
    let manifest = reader.manifest();
    for (url, dir) in instance.archived_web_dirs() {
        if manifest.web_dir(url).is_some() {
            continue;
        }
        // The nearest mapping above `url` whose folder the archive holds.
        let parent = instance
            .web_dirs
            .iter()
            .filter(|(u, _)| *u != url && manifest.web_dir(u).is_some())
            .filter_map(|(u, d)| {
                let rel = crate::archive::url_below(url, u)?;
                Some((u.len(), (d.clone(), rel)))
            })
            .max_by_key(|(len, _)| *len)
            .map(|(_, found)| found);
        let Some((parent_dir, rel)) = parent else {
            continue;
        };
        let io = |what| OperationError::io(Step::RestoreResources, what, dir);
        // The restored copy lies in the tenant's folder: reached from the parent mapping's
        // folder without following any symlink (a symlink there is never moved through).
        let parent_fd = crate::archive::open_dir_nofollow(parent_dir.as_std_path())
            .map_err(io("cannot open the parent mapping's folder for"))?;
        let rel = std::path::Path::new(rel);
        let inner = match crate::archive::open_dir_beneath(parent_fd.as_fd(), rel) {
            Ok(fd) => fd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io("cannot open the restored folder for")(e)),
        };
        let holder = crate::archive::open_dir_beneath(
            parent_fd.as_fd(),
            rel.parent().unwrap_or(std::path::Path::new("")),
        )
        .map_err(io("cannot open the restored folder for"))?;
        let (target, _) = crate::archive::open_or_create_dir(dir.as_std_path())
            .map_err(io("cannot open web folder"))?;
        crate::archive::empty_dir_at(target.as_fd()).map_err(io("cannot empty web folder"))?;
        let mut names = Vec::new();
        for entry in rustix::fs::Dir::read_from(&inner)
            .map_err(|e| io("cannot read the restored folder for")(e.into()))?
        {
            let entry = entry.map_err(|e| io("cannot read the restored folder for")(e.into()))?;
            let name = entry.file_name().to_bytes();
            if name != b"." && name != b".." {
                names.push(name.to_vec());
            }
        }
        for name in names {
            let name = std::ffi::OsStr::from_bytes(&name);
            rustix::fs::renameat(&inner, name, &target, name).map_err(|e| {
                io("cannot move restored content (another file system?) into")(e.into())
            })?;
        }
        drop(inner);
        let last = rel
            .file_name()
            .expect("a mapping below its parent has a name");
        rustix::fs::unlinkat(&holder, last, rustix::fs::AtFlags::REMOVEDIR)
            .map_err(|e| io("cannot remove the restored copy beside")(e.into()))?;
    }
    Ok(())
}

/// Removes everything inside `dir` but keeps the folder itself (it may be a mount point, or
/// carry ownership and mode set by the control panel); creates it when missing. By descriptor:
/// `dir` is refused when it is a symlink or lies under one a tenant could have placed, and
/// nothing inside is followed (`crate::archive::empty_dir_at`).
/// A folder it creates is given to `owner`: a web folder belongs to the instance's account.
pub(super) fn empty_folder(dir: &Utf8Path, owner: Option<&Account>) -> std::io::Result<()> {
    let (fd, created) = crate::archive::open_or_create_dir(dir.as_std_path())?;
    if let (true, Some(a)) = (created, owner) {
        rustix::fs::fchown(
            &fd,
            Some(rustix::fs::Uid::from_raw(a.uid)),
            Some(rustix::fs::Gid::from_raw(a.gid)),
        )?;
    }
    crate::archive::empty_dir_at(std::os::fd::AsFd::as_fd(&fd))
}
