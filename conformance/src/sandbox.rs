//! The sandbox a conformance run works in: a throwaway tenant account made for the run (its
//! own uid and group, no login shell), its home and a web root under it, all removed at the
//! end, or kept and named with `keep`.
//!
//! Sandboxes live in one root-owned folder (`base`, [`DEFAULT_BASE`]) and are named
//! `aps-conf-<random>` ([`SANDBOX_PREFIX`]): the account, its group and its home share the name.
//! A run holds an exclusive lock on `base/.NAME.lock` while it lives; a run that crashed left
//! an unlocked lock file (or a home, or an account, with no lock file at all), which
//! [`sweep`] finds and removes. A kept sandbox is marked `base/.NAME.kept` and is left to
//! [`remove_named`].

use std::fs::{File, OpenOptions};
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};

use camino::{Utf8Path, Utf8PathBuf};
use serde::Serialize;

use aps_controller::account::Account;
use aps_controller::archive::{open_dir_nofollow, remove_at, remove_dir_all_nofollow};
use aps_controller::runner::{ProcessSpec, SAFE_PATH};

use crate::error::ConformanceError;
use crate::findings;

/// What every sandbox's name (account, group, home) starts with.
pub const SANDBOX_PREFIX: &str = "aps-conf-";

/// Where sandboxes live unless the caller says otherwise: under a shared parent, since the
/// controller installs into nothing in or above a system tree such as `/var/lib`.
pub const DEFAULT_BASE: &str = "/srv/aps-conformance";

/// The folders a tenant may write outside its home: what [`remove_named`] clears of the
/// account's files, and what [`findings::OutsideFiles`] watches.
pub const SHARED_TEMP: &[&str] = &["/tmp", "/var/tmp", "/dev/shm"];

/// How long one account tool (useradd, userdel, groupdel) may take.
const TOOL_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(60);

/// Where and how to make a sandbox.
#[derive(Debug, Clone)]
pub struct SandboxOptions {
    /// The root-owned folder sandboxes are made in (made, 0755, when missing).
    pub base: Utf8PathBuf,
    /// Leave the sandbox in place at the end and say where it is.
    pub keep: bool,
}

impl Default for SandboxOptions {
    fn default() -> Self {
        SandboxOptions {
            base: Utf8PathBuf::from(DEFAULT_BASE),
            keep: false,
        }
    }
}

/// What became of a sandbox at its end.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "ending")]
pub enum Ending {
    /// Account, group, home and the account's temporary files are gone.
    Removed { name: String },
    /// Everything is still there (`keep`); [`remove_named`] takes it away later.
    Kept {
        name: String,
        home: Utf8PathBuf,
        web_root: Utf8PathBuf,
    },
}

/// One live sandbox. Dropping it without [`Sandbox::finish`] removes it too (unless `keep`),
/// quietly: a run that unwinds leaves nothing.
#[derive(Debug)]
pub struct Sandbox {
    name: String,
    account: Account,
    base: Utf8PathBuf,
    home: Utf8PathBuf,
    web_root: Utf8PathBuf,
    keep: bool,
    /// Held (locked) while the sandbox lives; `None` once finished.
    lock: Option<File>,
}

impl Sandbox {
    /// Makes a new sandbox: the account `aps-conf-<random>` with a group of its own and no
    /// login shell, its home `base/NAME` (0750) and the empty web root `base/NAME/www` (0755),
    /// both the account's.
    pub fn create(options: &SandboxOptions) -> Result<Sandbox, ConformanceError> {
        let uid = rustix::process::geteuid().as_raw();
        if uid != 0 {
            return Err(ConformanceError::NotRoot { uid });
        }
        let base = &options.base;
        check_base(base)?;
        let name = format!("{SANDBOX_PREFIX}{}", random_hex(5)?);
        let lock_path = lock_file(base, &name);
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc_nofollow())
            .open(&lock_path)
            .map_err(ConformanceError::io("create the sandbox lock", &lock_path))?;
        lock.try_lock().map_err(|e| ConformanceError::Io {
            action: "lock",
            path: lock_path.clone(),
            source: std::io::Error::other(e.to_string()),
        })?;
        let home = base.join(&name);
        let mut sandbox = Sandbox {
            web_root: home.join("www"),
            home,
            account: Account {
                name: name.clone(),
                uid: u32::MAX,
                gid: u32::MAX,
                groups: Vec::new(),
            },
            name,
            base: base.clone(),
            keep: false,
            lock: Some(lock),
        };
        // From here on a failure drops `sandbox`, which removes what was made.
        account_tool(
            "make the account",
            &sandbox.name,
            &[
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                sandbox.home.as_str(),
                "--shell",
                "/usr/sbin/nologin",
                &sandbox.name,
            ],
        )?;
        sandbox.account =
            Account::lookup(&sandbox.name, None).map_err(|e| ConformanceError::AccountMissing {
                account: sandbox.name.clone(),
                why: e.to_string(),
            })?;
        for (dir, mode) in [(&sandbox.home, 0o750), (&sandbox.web_root, 0o755)] {
            std::fs::DirBuilder::new()
                .mode(mode)
                .create(dir)
                .map_err(ConformanceError::io("create", dir))?;
            // Made by root just now, in root's folder: nobody can have swapped it.
            std::os::unix::fs::chown(dir, Some(sandbox.account.uid), Some(sandbox.account.gid))
                .map_err(ConformanceError::io("give to the sandbox account", dir))?;
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode))
                .map_err(ConformanceError::io("set the mode of", dir))?;
        }
        sandbox.keep = options.keep;
        Ok(sandbox)
    }

    /// The account's name (also its group's and its home's).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The throwaway tenant account: what the instance's work runs as.
    pub fn account(&self) -> &Account {
        &self.account
    }

    /// The account's home, `base/NAME`.
    pub fn home(&self) -> &Utf8Path {
        &self.home
    }

    /// The empty web root to install into, `base/NAME/www`.
    pub fn web_root(&self) -> &Utf8Path {
        &self.web_root
    }

    /// The run's own root-only folder beside the sandbox ([`run_folder`]).
    pub fn run_folder(&self) -> Utf8PathBuf {
        run_folder(&self.base, &self.name)
    }

    /// Whether the sandbox is to be kept at its end.
    pub fn keep(&self) -> bool {
        self.keep
    }

    /// Ends the sandbox: removes it, or with `keep` marks it kept and says where it is.
    pub fn finish(mut self) -> Result<Ending, ConformanceError> {
        self.end()
    }

    fn end(&mut self) -> Result<Ending, ConformanceError> {
        let Some(lock) = self.lock.take() else {
            return Ok(Ending::Removed {
                name: self.name.clone(),
            });
        };
        if self.keep {
            let kept = kept_file(&self.base, &self.name);
            File::create(&kept).map_err(ConformanceError::io("mark as kept", &kept))?;
            return Ok(Ending::Kept {
                name: self.name.clone(),
                home: self.home.clone(),
                web_root: self.web_root.clone(),
            });
        }
        let removed = remove_locked(&self.base, &self.name);
        drop(lock);
        removed?;
        Ok(Ending::Removed {
            name: self.name.clone(),
        })
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        if self.lock.is_some() {
            // Unwinding or dropped early: never panic here; a leftover is for `sweep`.
            let _ = self.end();
        }
    }
}

/// Finds the sandboxes in `base` whose run is gone (their lock free, or no lock file at all)
/// and are not kept, and removes them. Returns their names. Live sandboxes of other runs are
/// left alone.
pub fn sweep(base: &Utf8Path) -> Result<Vec<String>, ConformanceError> {
    if !base.exists() {
        return Ok(Vec::new());
    }
    let mut names = std::collections::BTreeSet::new();
    for entry in base
        .read_dir_utf8()
        .map_err(ConformanceError::io("read", base))?
    {
        let entry = entry.map_err(ConformanceError::io("read", base))?;
        let file = entry.file_name();
        let name = file
            .strip_prefix('.')
            .and_then(|f| {
                f.strip_suffix(".lock")
                    .or_else(|| f.strip_suffix(".kept"))
                    .or_else(|| f.strip_suffix(".run"))
            })
            .unwrap_or(file);
        if is_sandbox_name(name) {
            names.insert(name.to_owned());
        }
    }
    // Accounts a crash left before their home or lock existed, or after they were removed.
    for name in sandbox_accounts(base) {
        names.insert(name);
    }
    let mut swept = Vec::new();
    for name in names {
        if kept_file(base, &name).exists() {
            continue;
        }
        let lock = open_lock(base, &name)?;
        if lock.try_lock().is_err() {
            continue; // a live run's
        }
        remove_locked(base, &name)?;
        swept.push(name);
    }
    Ok(swept)
}

/// Removes the sandbox `name` of `base`, kept or left over, unless a live run holds it.
/// Returns whether there was one to remove.
pub fn remove_named(base: &Utf8Path, name: &str) -> Result<bool, ConformanceError> {
    if !is_sandbox_name(name) {
        return Ok(false);
    }
    let lock_path = lock_file(base, name);
    let exists =
        lock_path.exists() || base.join(name).exists() || Account::lookup(name, None).is_ok();
    if !exists {
        return Ok(false);
    }
    let lock = open_lock(base, name)?;
    if lock.try_lock().is_err() {
        return Err(ConformanceError::Folder {
            path: base.join(name),
            why: "a running conformance run holds this sandbox".into(),
        });
    }
    remove_locked(base, name)?;
    Ok(true)
}

/// Whether `name` is one [`Sandbox::create`] makes.
pub fn is_sandbox_name(name: &str) -> bool {
    name.strip_prefix(SANDBOX_PREFIX).is_some_and(|rest| {
        !rest.is_empty()
            && rest
                .bytes()
                .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
    })
}

/// Removes everything of the sandbox `name`, whose lock the caller holds: its processes, its
/// account and group, its files in the shared temporary folders, its home, then the marks.
fn remove_locked(base: &Utf8Path, name: &str) -> Result<(), ConformanceError> {
    if let Ok(account) = Account::lookup(name, None)
        && account.uid != 0
    {
        findings::end_processes_of(account.uid);
        for dir in SHARED_TEMP {
            remove_owned_in(Utf8Path::new(dir), account.uid)?;
        }
        account_tool("remove the account", name, &["userdel", name])?;
    }
    // userdel removes the user's own group (USERGROUPS_ENAB); when it did not, do it here.
    if group_exists(name) {
        account_tool("remove the group", name, &["groupdel", name])?;
    }
    let home = base.join(name);
    remove_dir_all_nofollow(home.as_std_path())
        .map_err(ConformanceError::io("remove the sandbox home", &home))?;
    let run = run_folder(base, name);
    remove_dir_all_nofollow(run.as_std_path())
        .map_err(ConformanceError::io("remove the run folder", &run))?;
    for mark in [kept_file(base, name), lock_file(base, name)] {
        match std::fs::remove_file(&mark) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(ConformanceError::io("remove", &mark)(e)),
        }
    }
    Ok(())
}

/// Removes the entries directly in `dir` that belong to `uid` (with everything under them),
/// by descriptor: what the account left in a shared temporary folder.
fn remove_owned_in(dir: &Utf8Path, uid: u32) -> Result<(), ConformanceError> {
    let fd = match open_dir_nofollow(dir.as_std_path()) {
        Ok(fd) => fd,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(ConformanceError::io("open", dir)(e)),
    };
    // O_PATH descriptors cannot be listed: reopen for reading, still without following.
    let fd = rustix::fs::openat(
        &fd,
        ".",
        rustix::fs::OFlags::RDONLY | rustix::fs::OFlags::DIRECTORY | rustix::fs::OFlags::CLOEXEC,
        rustix::fs::Mode::empty(),
    )
    .map_err(|e| ConformanceError::io("open", dir)(e.into()))?;
    for name in aps_controller::archive::pending_names(fd.as_fd())
        .map_err(ConformanceError::io("read", dir))?
    {
        let st = match rustix::fs::statat(
            &fd,
            std::ffi::OsStr::from_bytes(&name),
            rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
        ) {
            Ok(st) => st,
            Err(_) => continue,
        };
        if st.st_uid == uid {
            let path = dir.join(String::from_utf8_lossy(&name).as_ref());
            remove_at(fd.as_fd(), &name).map_err(ConformanceError::io("remove", path))?;
        }
    }
    Ok(())
}

fn check_base(base: &Utf8Path) -> Result<(), ConformanceError> {
    let unsafe_base = |why: String| ConformanceError::UnsafeBase {
        path: base.to_owned(),
        why,
    };
    if !base.is_absolute() {
        return Err(unsafe_base("it is not an absolute path".into()));
    }
    if !base.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o755)
            .create(base)
            .map_err(ConformanceError::io("create", base))?;
        // An opened controller's umask (077) would leave it closed to the sandbox accounts.
        std::fs::set_permissions(base, std::fs::Permissions::from_mode(0o755))
            .map_err(ConformanceError::io("set the mode of", base))?;
    }
    let fd = open_dir_nofollow(base.as_std_path()).map_err(|e| unsafe_base(e.to_string()))?;
    let st = rustix::fs::fstat(&fd).map_err(|e| unsafe_base(e.to_string()))?;
    if st.st_uid != 0 {
        return Err(unsafe_base(format!(
            "it belongs to uid {}, not root",
            st.st_uid
        )));
    }
    if st.st_mode & 0o022 != 0 {
        return Err(unsafe_base(format!(
            "others may write into it (mode {:o})",
            st.st_mode & 0o7777
        )));
    }
    Ok(())
}

/// The lock file of the sandbox `name` (made when a crash left none), not yet locked.
fn open_lock(base: &Utf8Path, name: &str) -> Result<File, ConformanceError> {
    let path = lock_file(base, name);
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .custom_flags(libc_nofollow())
        .open(&path)
        .map_err(ConformanceError::io("open the sandbox lock", &path))
}

/// The root-only folder a run keeps beside the sandbox `name` (its controller's state, its
/// backups), `base/.NAME.run`: removed with the sandbox, kept with it.
pub fn run_folder(base: &Utf8Path, name: &str) -> Utf8PathBuf {
    base.join(format!(".{name}.run"))
}

fn lock_file(base: &Utf8Path, name: &str) -> Utf8PathBuf {
    base.join(format!(".{name}.lock"))
}

fn kept_file(base: &Utf8Path, name: &str) -> Utf8PathBuf {
    base.join(format!(".{name}.kept"))
}

fn libc_nofollow() -> i32 {
    rustix::fs::OFlags::NOFOLLOW.bits() as i32
}

/// The sandbox accounts of the passwd database whose home lies in `base`.
fn sandbox_accounts(base: &Utf8Path) -> Vec<String> {
    let Ok(passwd) = std::fs::read_to_string("/etc/passwd") else {
        return Vec::new();
    };
    passwd
        .lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let (name, home) = (*fields.first()?, *fields.get(5)?);
            (is_sandbox_name(name) && Utf8Path::new(home).parent() == Some(base))
                .then(|| name.to_owned())
        })
        .collect()
}

fn group_exists(name: &str) -> bool {
    std::fs::read_to_string("/etc/group").is_ok_and(|groups| {
        groups
            .lines()
            .any(|line| line.split(':').next() == Some(name))
    })
}

/// Runs one account tool as root through the runner, found on the safe PATH.
fn account_tool(
    action: &'static str,
    account: &str,
    argv: &[&str],
) -> Result<(), ConformanceError> {
    let program = aps_controller::paths::find_program(argv[0], SAFE_PATH.as_ref())
        .unwrap_or_else(|| Utf8PathBuf::from(format!("/usr/sbin/{}", argv[0])));
    ProcessSpec::for_tool(program.as_str())
        .args(&argv[1..])
        .timeout(TOOL_TIMEOUT)
        .run()
        .map(|_| ())
        .map_err(|e| ConformanceError::AccountTool {
            action,
            account: account.to_owned(),
            source: Box::new(e),
        })
}

fn random_hex(bytes: usize) -> Result<String, ConformanceError> {
    let mut buf = vec![0u8; bytes];
    std::io::Read::read_exact(
        &mut File::open("/dev/urandom").map_err(ConformanceError::io("open", "/dev/urandom"))?,
        &mut buf,
    )
    .map_err(ConformanceError::io("read", "/dev/urandom"))?;
    Ok(hex::encode(buf))
}
