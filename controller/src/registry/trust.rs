//! What a registration may ask for. The controller runs as root and does what a record says:
//! reads its web folders into backups, empties and refills them on restore and hands every file
//! to the record's account, runs scripts with its groups. So a record is judged by what it
//! says, never by who owns the INSTANCE.toml it came from (a tenant can get root to write a
//! file of its choosing, e.g. as a backup). The same checks run at registration (CLI, library
//! and HTTP) and again when an operation starts, for records registered before them.

use std::os::unix::fs::MetadataExt;

use camino::Utf8Path;

use super::instance::Instance;
use super::validate::Problem;
use crate::account::{Account, Membership, group_name};
use crate::paths::resolve_existing;

/// Groups that give their members rights over the system or over every tenant: reading
/// `/etc/shadow` (shadow) or logs (adm, systemd-journal), raw disks and memory (disk, kmem),
/// root by another door (sudo, wheel, admin, docker, lxd, incus-admin, libvirt, kvm, lpadmin,
/// staff, which writes /usr/local), terminals (tty, utmp), private TLS keys (ssl-cert), and the
/// accounts of the services every tenant's data passes through (www-data, mysql, postgres,
/// backup). Refused as an instance's group and as any group its user belongs to.
pub const PRIVILEGED_GROUPS: &[&str] = &[
    "root",
    "shadow",
    "disk",
    "kmem",
    "adm",
    "systemd-journal",
    "sudo",
    "wheel",
    "admin",
    "staff",
    "docker",
    "lxd",
    "incus-admin",
    "libvirt",
    "kvm",
    "lpadmin",
    "tty",
    "utmp",
    "ssl-cert",
    "www-data",
    "mysql",
    "postgres",
    "backup",
    "operator",
];

/// Groups below this id belong to the system (Debian's and most distributions' `GID_MIN`):
/// a `group =` below it is refused unless it is the user's own primary group.
pub const FIRST_ORDINARY_GID: u32 = 1000;

/// Folders that are never an instance's web folder, nor anything inside them: the system's
/// programs, configuration, kernel interfaces, root's home and the state of system services.
pub const SYSTEM_TREES: &[&str] = &[
    "/bin",
    "/boot",
    "/dev",
    "/etc",
    "/lib",
    "/lib32",
    "/lib64",
    "/libx32",
    "/proc",
    "/root",
    "/run",
    "/sbin",
    "/sys",
    "/usr",
    "/var/lib",
    "/var/log",
    "/var/spool",
    "/var/mail",
    "/var/cache",
    "/var/backups",
];

/// Folders that hold other people's folders: refused themselves (and so is `/` and every
/// folder holding one of [`SYSTEM_TREES`]), while a folder inside them is fine.
pub const SHARED_PARENTS: &[&str] = &[
    "/home", "/srv", "/tmp", "/var/tmp", "/var/www", "/opt", "/mnt", "/media",
];

/// Why `dir` can never be a web folder, or `None`. `state` is the controller's state folder:
/// it, anything inside it and every folder holding it are refused too.
pub fn system_path_reason(dir: &Utf8Path, state: &Utf8Path) -> Option<String> {
    let mut forms = vec![dir.to_owned()];
    if let Some(real) = resolve_existing(dir)
        && real != dir
    {
        forms.push(real);
    }
    let states = [state.to_owned()]
        .into_iter()
        .chain(resolve_existing(state))
        .collect::<Vec<_>>();
    for d in &forms {
        let shown = if d == dir {
            String::new()
        } else {
            format!(" (it resolves to {d})")
        };
        if let Some(tree) = SYSTEM_TREES
            .iter()
            .find(|t| d.starts_with(t) || Utf8Path::new(t).starts_with(d))
        {
            return Some(format!(
                "is a system folder{shown}: nothing in or above {tree} is ever a web folder"
            ));
        }
        if SHARED_PARENTS.iter().any(|p| d == Utf8Path::new(p)) {
            return Some(format!(
                "is a system folder{shown} that holds other folders; name a folder inside it"
            ));
        }
        if let Some(s) = states.iter().find(|s| d.starts_with(s) || s.starts_with(d)) {
            return Some(format!(
                "is, holds or lies in the controller's state folder {s}{shown}"
            ));
        }
    }
    None
}

fn is_privileged_group(gid: u32) -> Option<String> {
    let name = group_name(gid);
    let listed = name
        .as_deref()
        .is_some_and(|n| PRIVILEGED_GROUPS.contains(&n));
    (gid == 0 || listed).then(|| describe_group(gid, name.as_deref()))
}

fn describe_group(gid: u32, name: Option<&str>) -> String {
    match name {
        Some(n) => format!("{n:?} (gid {gid})"),
        None => format!("gid {gid}"),
    }
}

/// Problems with the account an instance's work would run as (`user`, its groups, `group`).
/// Root is judged elsewhere (`allow-root-scripts`, when an operation starts).
pub fn account_problems(account: &Account, group: Option<&str>) -> Vec<Problem> {
    if account.is_root() {
        return Vec::new();
    }
    let mut problems = Vec::new();
    let membership = Membership::of(&account.name)
        .ok()
        .flatten()
        .unwrap_or_else(|| Membership {
            // A bare uid: its group is the same number, as `Account::lookup` takes it.
            uid: account.uid,
            primary_gid: account.uid,
            groups: vec![account.uid],
        });
    let primary = membership.primary_gid;
    let user = format!("{:?} (uid {})", account.name, account.uid);
    if let Some(g) = is_privileged_group(primary) {
        problems.push(Problem::Account(format!(
            "{user} has the privileged primary group {g}; a tenant's scripts never run with it: \
             give the instance an account of its own"
        )));
    }
    for gid in membership.groups.iter().filter(|g| **g != primary) {
        if let Some(g) = is_privileged_group(*gid) {
            problems.push(Problem::Account(format!(
                "{user} belongs to the privileged group {g}; a tenant's scripts never run with \
                 it: give the instance an account of its own"
            )));
        }
    }
    if let Some(given) = group {
        let gid = account.gid;
        let shown = describe_group(gid, group_name(gid).as_deref());
        if let Some(g) = is_privileged_group(gid) {
            problems.push(Problem::Group(format!(
                "{given:?} is the privileged group {g}: scripts would get its rights"
            )));
        } else if gid < FIRST_ORDINARY_GID && gid != primary {
            problems.push(Problem::Group(format!(
                "{given:?} is the system group {shown} (below {FIRST_ORDINARY_GID}, and not the \
                 user's own primary group): scripts would get its rights"
            )));
        }
        if gid != primary && !membership.groups.contains(&gid) {
            problems.push(Problem::Group(format!(
                "user {user} is not a member of {shown}; add it to the group (`usermod -aG`) or \
                 leave `group` out"
            )));
        }
    }
    problems
}

/// Problems with the web folders of `instance` whose work runs as `account` (`None` when the
/// controller is not root and everything runs as itself): system folders are refused, and an
/// existing folder must be a real folder (not a symlink) owned by the account, because a restore
/// gives everything in it to the account and a backup reads it into the tenant's reach.
/// `refuse_symlinks`: at registration; when an operation starts, a symlink planted since is
/// left to the walk, which never follows it.
pub fn web_dir_problems(
    instance: &Instance,
    account: Option<&Account>,
    state: &Utf8Path,
    refuse_symlinks: bool,
) -> Vec<Problem> {
    let mut problems = Vec::new();
    for (url, dir) in &instance.web_dirs {
        let problem = |reason: String| Problem::WebDirNotAllowed {
            url: url.clone(),
            path: dir.clone(),
            reason,
        };
        if let Some(reason) = system_path_reason(dir, state) {
            problems.push(problem(reason));
            continue;
        }
        let Some(account) = account else {
            continue;
        };
        let Ok(meta) = std::fs::symlink_metadata(dir) else {
            // Not there yet: made by the controller, as the account's, when restored.
            continue;
        };
        if meta.file_type().is_symlink() {
            if !refuse_symlinks {
                continue;
            }
            problems.push(problem(
                "is a symbolic link; name the folder itself".to_owned(),
            ));
        } else if meta.uid() != account.uid {
            let owner = crate::account::user_name(meta.uid())
                .map_or_else(|| format!("uid {}", meta.uid()), |n| format!("{n:?}"));
            problems.push(problem(format!(
                "belongs to {owner}, not to the instance's account {:?}; a restore would hand \
                 its files to that account and a backup would copy them into its reach: chown \
                 the folder to the account, or name another folder",
                account.name
            )));
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn system_paths() {
        let state = Utf8Path::new("/var/lib/aps-controller");
        for bad in [
            "/",
            "/etc",
            "/etc/x",
            "/root",
            "/usr/share/x",
            "/var",
            "/var/lib",
            "/home",
            "/srv",
            "/tmp",
        ] {
            assert!(
                system_path_reason(Utf8Path::new(bad), state).is_some(),
                "{bad}"
            );
        }
        let state = Utf8Path::new("/srv/state");
        assert!(system_path_reason(Utf8Path::new("/srv/state/x"), state).is_some());
        for ok in ["/srv/www/blog", "/home/alice/site", "/var/www/a", "/tmp/x"] {
            assert_eq!(system_path_reason(Utf8Path::new(ok), state), None, "{ok}");
        }
    }
}
