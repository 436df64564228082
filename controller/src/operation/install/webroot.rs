//! The install's web root: whose it is, and whether the install may write into it (not a
//! system folder, no other instance's, a real folder of the account or a new one, empty
//! unless forced, never holding a name of the package's own).

use camino::{Utf8Path, Utf8PathBuf};

use super::InstallRequest;
use super::plan::refused_at;
use crate::account::Account;
use crate::controller::Controller;
use crate::error::{InstallRefusal, OperationError, Step};
use crate::registry::Instance;

/// The account named by no `--user`: the owner of the web root, or of its parent when the
/// web root is new.
pub(super) fn web_root_owner(request: &InstallRequest) -> Result<String, String> {
    let dir = &request.web_root;
    let owned = if std::fs::symlink_metadata(dir).is_ok() {
        dir.clone()
    } else {
        dir.parent().unwrap_or(Utf8Path::new("/")).to_owned()
    };
    Account::owner_name_of(&owned).map_err(|e| {
        format!(
            "no {} given and the owner of {owned} is unknown: {e}",
            crate::overrides::Override::User
        )
    })
}

/// The web root: not a system folder, no other instance's, a real folder of the account (or
/// a new one in an existing folder), empty unless forced, and never holding a name of the
/// package's own.
pub(super) fn check_web_root(
    ctl: &Controller,
    request: &InstallRequest,
    instance: &Instance,
    account: Option<&Account>,
    content: Option<&Utf8Path>,
) -> Result<(), OperationError> {
    let dir = &request.web_root;
    let refuse = |refusal| refused_at(Step::CheckWebRoot, &request.name, refusal);
    let cannot = |reason: String| {
        refuse(InstallRefusal::WebRoot {
            dir: dir.clone(),
            reason,
        })
    };
    if !dir.is_absolute() {
        return Err(cannot("it is not an absolute path".into()));
    }
    let state = ctl.config().state.root();
    if let Some(reason) = crate::registry::trust::system_path_reason(dir, state) {
        return Err(cannot(reason));
    }
    let others = ctl.instances()?;
    let conflicts = crate::registry::check::conflicts(instance, &others);
    if !conflicts.is_empty() {
        let text = conflicts
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>();
        return Err(cannot(text.join("; ")));
    }
    let meta = match std::fs::symlink_metadata(dir) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let parent = dir.parent().unwrap_or(Utf8Path::new("/"));
            return match crate::archive::open_dir_nofollow(parent.as_std_path()) {
                Ok(_) => Ok(()),
                Err(e) => Err(cannot(format!(
                    "it does not exist and its parent folder {parent} cannot be used ({e}); create the parent first"
                ))),
            };
        }
        Err(e) => return Err(cannot(e.to_string())),
    };
    if meta.file_type().is_symlink() {
        return Err(cannot(
            "it is a symbolic link; name the folder itself".into(),
        ));
    }
    if !meta.is_dir() {
        return Err(cannot("it is not a folder".into()));
    }
    let fd =
        crate::archive::open_dir_nofollow(dir.as_std_path()).map_err(|e| cannot(e.to_string()))?;
    let stat = rustix::fs::fstat(&fd).map_err(|e| cannot(e.to_string()))?;
    if let Some(account) = account
        && stat.st_uid != account.uid
    {
        let owner = crate::account::user_name(stat.st_uid)
            .map_or_else(|| format!("uid {}", stat.st_uid), |n| format!("{n:?}"));
        return Err(cannot(format!(
            "it belongs to {owner}, not to the instance's account {:?}: chown it to the account, or name another folder",
            account.name
        )));
    }
    let entries = names_in(&fd).map_err(|e| cannot(e.to_string()))?;
    if entries.is_empty() {
        return Ok(());
    }
    if !request.force {
        return Err(refuse(InstallRefusal::WebRootOccupied {
            dir: dir.clone(),
            entries,
        }));
    }
    let own = match content {
        Some(content) => package_names(&instance_package_root(ctl, request)?, content)
            .map_err(|e| cannot(format!("cannot read the package's {content}: {e}")))?,
        None => Vec::new(),
    };
    let collisions: Vec<String> = own.into_iter().filter(|n| entries.contains(n)).collect();
    if !collisions.is_empty() {
        return Err(refuse(InstallRefusal::WebRootCollision {
            dir: dir.clone(),
            names: collisions,
        }));
    }
    Ok(())
}

fn instance_package_root(
    ctl: &Controller,
    request: &InstallRequest,
) -> Result<Utf8PathBuf, OperationError> {
    crate::registry::open_package(&ctl.config().state, &request.package)
        .map(|p| p.root)
        .map_err(|source| OperationError::Package {
            step: Step::CheckWebRoot,
            source,
        })
}

/// The names directly inside the package's `content` folder, sorted.
pub(super) fn package_names(root: &Utf8Path, content: &Utf8Path) -> std::io::Result<Vec<String>> {
    let root = crate::archive::open_dir_nofollow(root.as_std_path())?;
    let dir =
        crate::archive::open_dir_beneath(std::os::fd::AsFd::as_fd(&root), content.as_std_path())?;
    names_in(&dir)
}

/// The names directly inside `dir`, sorted; a name that is not UTF-8 is shown lossily.
pub(super) fn names_in(dir: &std::os::fd::OwnedFd) -> std::io::Result<Vec<String>> {
    let mut names = crate::archive::pending_names(std::os::fd::AsFd::as_fd(dir))?;
    names.reverse();
    Ok(names
        .iter()
        .map(|n| String::from_utf8_lossy(n).into_owned())
        .collect())
}
