//! The system account that a tenant's work runs as.
//!
//! The controller runs as root on servers shared by many customers; everything done on an
//! instance's behalf (its package's scripts, the database client tools, reading and writing its
//! web folders) runs as, or is owned by, the instance's own account. This module holds the
//! account as the rest of the controller passes it around: numeric ids, resolved once, from
//! the system's user database (`getpwnam_r`, `getgrnam_r`, `getgrouplist`: `/etc/passwd` and
//! whatever NSS adds).

use std::ffi::{CStr, CString};
use std::os::fd::AsFd;

use camino::Utf8Path;
use serde::{Deserialize, Serialize};

/// A resolved system account: what `setgroups`/`setgid`/`setuid` and `fchown` need.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// The user name, for messages (`uid` is what counts).
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups, set with `setgroups` before `setgid`/`setuid`.
    #[serde(default)]
    pub groups: Vec<u32>,
}

/// An account could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    #[error("no system user {0:?} (create it, or name another with `user = \"…\"`)")]
    NoSuchUser(String),
    #[error("no system group {0:?}")]
    NoSuchGroup(String),
    #[error("cannot read the owner of {path}: {source}")]
    Owner {
        path: camino::Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot look up {what}: {source}")]
    Lookup {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

impl Account {
    /// The account the controller itself runs as (effective ids, no supplementary groups).
    pub fn current() -> Self {
        let uid = rustix::process::geteuid().as_raw();
        let gid = rustix::process::getegid().as_raw();
        Account {
            name: user_name(uid).unwrap_or_else(|| uid.to_string()),
            uid,
            gid,
            groups: Vec::new(),
        }
    }

    pub fn is_root(&self) -> bool {
        self.uid == 0
    }

    /// Whether this is the account the controller runs as (then nothing is switched).
    pub fn is_current(&self) -> bool {
        self.uid == rustix::process::geteuid().as_raw()
            && self.gid == rustix::process::getegid().as_raw()
    }

    /// The user `user` (a name, or a numeric uid without a name), with its primary group or
    /// `group` instead, and its supplementary groups from the group database.
    pub fn lookup(user: &str, group: Option<&str>) -> Result<Self, AccountError> {
        let entry = match passwd_by_name(user)? {
            Some(e) => Some(e),
            None => match user.parse::<u32>() {
                Ok(uid) => passwd_by_uid(uid)?.or(Some(Passwd {
                    name: user.to_owned(),
                    uid,
                    gid: uid,
                })),
                Err(_) => None,
            },
        };
        let Some(entry) = entry else {
            return Err(AccountError::NoSuchUser(user.to_owned()));
        };
        let gid = match group {
            None => entry.gid,
            Some(g) => match group_by_name(g)? {
                Some(gid) => gid,
                None => g
                    .parse::<u32>()
                    .map_err(|_| AccountError::NoSuchGroup(g.to_owned()))?,
            },
        };
        let mut groups = supplementary_groups(&entry.name, gid);
        if !groups.contains(&gid) {
            groups.insert(0, gid);
        }
        Ok(Account {
            name: entry.name,
            uid: entry.uid,
            gid,
            groups,
        })
    }

    /// The owner of `path`, opened without following a symlink there (a tenant may replace
    /// its web folder by a link to someone else's). Returns the user name, or the uid in
    /// decimal when it has none.
    pub fn owner_name_of(path: &Utf8Path) -> Result<String, AccountError> {
        let err = |source| AccountError::Owner {
            path: path.to_owned(),
            source,
        };
        let fd = rustix::fs::open(
            path.as_std_path(),
            rustix::fs::OFlags::PATH | rustix::fs::OFlags::NOFOLLOW | rustix::fs::OFlags::CLOEXEC,
            rustix::fs::Mode::empty(),
        )
        .map_err(|e| err(e.into()))?;
        let stat = rustix::fs::fstat(fd.as_fd()).map_err(|e| err(e.into()))?;
        Ok(user_name(stat.st_uid).unwrap_or_else(|| stat.st_uid.to_string()))
    }
}

/// The user database's facts about `user` that privilege checks need: its uid, its primary
/// group (from its passwd entry) and every group it belongs to (`getgrouplist`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Membership {
    pub uid: u32,
    pub primary_gid: u32,
    pub groups: Vec<u32>,
}

impl Membership {
    /// `None` when the user database does not know `user` (a bare uid has no groups).
    pub fn of(user: &str) -> Result<Option<Self>, AccountError> {
        let entry = match passwd_by_name(user)? {
            Some(e) => Some(e),
            None => match user.parse::<u32>() {
                Ok(uid) => passwd_by_uid(uid)?,
                Err(_) => None,
            },
        };
        Ok(entry.map(|e| Membership {
            uid: e.uid,
            primary_gid: e.gid,
            groups: supplementary_groups(&e.name, e.gid),
        }))
    }
}

/// The name of group `gid`, if the group database has one.
pub fn group_name(gid: u32) -> Option<String> {
    let mut found = None;
    with_buffer(|buf| {
        // SAFETY: every pointer is valid for the call; the result points into `buf`.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc =
            unsafe { libc::getgrgid_r(gid, &mut grp, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == 0 && !result.is_null() {
            // SAFETY: getgrgid_r succeeded, so gr_name is a NUL-terminated string in `buf`.
            found = Some(
                unsafe { CStr::from_ptr(grp.gr_name) }
                    .to_string_lossy()
                    .into_owned(),
            );
        }
        rc
    })
    .ok()?;
    found
}

/// Gives everything below `dir` (not `dir` itself, whose owner and mode the control panel
/// set) to `account`, walking by descriptor: no symlink is followed (a symlink itself is
/// re-owned), a name swapped during the walk is never chowned through, and a file with more
/// than one hard link is left alone (it may be a link to someone else's file that the tenant
/// planted; our restore creates only single links).
pub fn chown_tree(dir: &Utf8Path, account: &Account) -> std::io::Result<()> {
    use rustix::fs::{Mode, OFlags};
    let top = rustix::fs::open(
        dir.as_std_path(),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    chown_below(top.as_fd(), account)
}

fn chown_below(dir: std::os::fd::BorrowedFd<'_>, account: &Account) -> std::io::Result<()> {
    use rustix::fs::{FileType, Mode, OFlags};
    let mut names = Vec::new();
    for entry in rustix::fs::Dir::read_from(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        if name != c"." && name != c".." {
            names.push(name.to_owned());
        }
    }
    for name in names {
        let fd = match rustix::fs::openat(
            dir,
            name.as_c_str(),
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        ) {
            Ok(fd) => fd,
            Err(rustix::io::Errno::NOENT) => continue,
            Err(e) => return Err(e.into()),
        };
        let stat = rustix::fs::fstat(&fd)?;
        if FileType::from_raw_mode(stat.st_mode) == FileType::Directory {
            let sub = rustix::fs::openat(
                dir,
                name.as_c_str(),
                OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
                Mode::empty(),
            )?;
            let again = rustix::fs::fstat(&sub)?;
            if (again.st_dev, again.st_ino) != (stat.st_dev, stat.st_ino) {
                continue;
            }
            chown_below(sub.as_fd(), account)?;
            chown_fd(sub.as_fd(), account)?;
        } else if stat.st_nlink == 1 {
            chown_fd(fd.as_fd(), account)?;
        }
    }
    Ok(())
}

/// `fchownat(fd, "", AT_EMPTY_PATH)`: the inode the descriptor holds, symlinks included.
fn chown_fd(fd: std::os::fd::BorrowedFd<'_>, account: &Account) -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: a valid descriptor and a NUL-terminated empty path.
    let rc = unsafe {
        libc::fchownat(
            fd.as_raw_fd(),
            c"".as_ptr(),
            account.uid,
            account.gid,
            libc::AT_EMPTY_PATH | libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Whether the controller process runs as root (then tenant work must drop to an account).
pub fn controller_is_root() -> bool {
    rustix::process::geteuid().is_root()
}

struct Passwd {
    name: String,
    uid: u32,
    gid: u32,
}

/// The user name of `uid`, if the user database has one.
pub fn user_name(uid: u32) -> Option<String> {
    passwd_by_uid(uid).ok().flatten().map(|p| p.name)
}

fn lookup_err(what: String) -> impl FnOnce(std::io::Error) -> AccountError {
    move |source| AccountError::Lookup { what, source }
}

/// Calls a `get*_r` function with a growing buffer until it fits.
fn with_buffer(mut call: impl FnMut(&mut [libc::c_char]) -> libc::c_int) -> std::io::Result<()> {
    let mut size = 1024usize;
    loop {
        let mut buf = vec![0 as libc::c_char; size];
        match call(&mut buf) {
            0 => return Ok(()),
            libc::ERANGE if size < (1 << 20) => size *= 4,
            rc => return Err(std::io::Error::from_raw_os_error(rc)),
        }
    }
}

fn passwd_by_name(name: &str) -> Result<Option<Passwd>, AccountError> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    let mut found = None;
    with_buffer(|buf| {
        // SAFETY: every pointer is valid for the call; the result points into `buf`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc = unsafe {
            libc::getpwnam_r(
                cname.as_ptr(),
                &mut pwd,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == 0 && !result.is_null() {
            found = Some(read_passwd(&pwd));
        }
        rc
    })
    .map_err(lookup_err(format!("user {name:?}")))?;
    Ok(found)
}

fn passwd_by_uid(uid: u32) -> Result<Option<Passwd>, AccountError> {
    let mut found = None;
    with_buffer(|buf| {
        // SAFETY: as in `passwd_by_name`.
        let mut pwd: libc::passwd = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::passwd = std::ptr::null_mut();
        let rc =
            unsafe { libc::getpwuid_r(uid, &mut pwd, buf.as_mut_ptr(), buf.len(), &mut result) };
        if rc == 0 && !result.is_null() {
            found = Some(read_passwd(&pwd));
        }
        rc
    })
    .map_err(lookup_err(format!("uid {uid}")))?;
    Ok(found)
}

fn read_passwd(pwd: &libc::passwd) -> Passwd {
    // SAFETY: getpw*_r succeeded, so pw_name is a NUL-terminated string in the buffer.
    let name = unsafe { CStr::from_ptr(pwd.pw_name) }
        .to_string_lossy()
        .into_owned();
    Passwd {
        name,
        uid: pwd.pw_uid,
        gid: pwd.pw_gid,
    }
}

fn group_by_name(name: &str) -> Result<Option<u32>, AccountError> {
    let Ok(cname) = CString::new(name) else {
        return Ok(None);
    };
    let mut found = None;
    with_buffer(|buf| {
        // SAFETY: every pointer is valid for the call.
        let mut grp: libc::group = unsafe { std::mem::zeroed() };
        let mut result: *mut libc::group = std::ptr::null_mut();
        let rc = unsafe {
            libc::getgrnam_r(
                cname.as_ptr(),
                &mut grp,
                buf.as_mut_ptr(),
                buf.len(),
                &mut result,
            )
        };
        if rc == 0 && !result.is_null() {
            found = Some(grp.gr_gid);
        }
        rc
    })
    .map_err(lookup_err(format!("group {name:?}")))?;
    Ok(found)
}

/// The groups `user` belongs to (primary `gid` included), from the group database.
fn supplementary_groups(user: &str, gid: u32) -> Vec<u32> {
    let Ok(cname) = CString::new(user) else {
        return vec![gid];
    };
    let mut count: libc::c_int = 32;
    loop {
        let mut groups = vec![0 as libc::gid_t; count as usize];
        let before = count;
        // SAFETY: `groups` holds `count` entries; getgrouplist updates `count`.
        let rc =
            unsafe { libc::getgrouplist(cname.as_ptr(), gid, groups.as_mut_ptr(), &mut count) };
        if rc >= 0 {
            groups.truncate(count as usize);
            return groups;
        }
        if count <= before {
            count = before * 2;
        }
        if count > 65536 {
            return vec![gid];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_resolves_by_name_and_number() {
        let by_name = Account::lookup("root", None).unwrap();
        assert_eq!((by_name.uid, by_name.gid), (0, 0));
        assert!(by_name.groups.contains(&0));
        let by_number = Account::lookup("0", None).unwrap();
        assert_eq!(by_number.name, "root");
        assert!(matches!(
            Account::lookup("no-such-user-aps", None),
            Err(AccountError::NoSuchUser(_))
        ));
    }
}
