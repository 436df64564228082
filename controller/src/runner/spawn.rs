//! Starting a child: its private `HOME`, its clean environment and redirections, and what the
//! forked child does to itself before `exec` (cgroup, umask, rlimits, account switch, no new
//! privileges, parent-death signal).

use std::ffi::{CString, OsStr};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::process::{Child, Command, Stdio};

use camino::Utf8PathBuf;

use super::RunError;
use super::spec::{ProcessSpec, StdinSource, StdoutSink};
use crate::account::Account;
use crate::process::{Confinement, LIVE_CHILDREN};

impl ProcessSpec {
    /// A [`RunError::Setup`] for this process.
    pub(super) fn setup_err(&self, what: String, source: io::Error) -> RunError {
        RunError::Setup {
            command: self.command_line(),
            cwd: self.cwd_display(),
            what,
            source,
        }
    }

    /// The account to switch to: none when it is the controller's own.
    pub(super) fn account_to_switch_to(&self) -> Option<&Account> {
        self.account.as_ref().filter(|a| {
            a.uid != rustix::process::geteuid().as_raw()
                || a.gid != rustix::process::getegid().as_raw()
        })
    }

    /// The private `HOME` of the run, when it gets one; dropping it removes the folder.
    pub(super) fn private_home_dir(
        &self,
        drop_to: Option<&Account>,
    ) -> Result<Option<tempfile::TempDir>, RunError> {
        if !self.private_home || self.env.contains_key(OsStr::new("HOME")) {
            return Ok(None);
        }
        let mut builder = tempfile::Builder::new();
        // 0700: the script may leave credentials or caches there.
        builder
            .prefix("aps-home-")
            .permissions(std::fs::Permissions::from_mode(0o700));
        // Another account's HOME goes to the system temp folder: the controller's own
        // folders (the state folder) are closed to it.
        let dir = match &self.home_parent {
            Some(parent) if drop_to.is_none() => builder.tempdir_in(parent),
            _ => builder.tempdir(),
        }
        .map_err(|e| self.setup_err("create the private HOME folder".to_owned(), e))?;
        if let Some(account) = drop_to {
            std::os::unix::fs::chown(dir.path(), Some(account.uid), Some(account.gid)).map_err(
                |e| self.setup_err("hand the private HOME to the account".to_owned(), e),
            )?;
        }
        Ok(Some(dir))
    }

    /// The command with its environment, folder and redirections; also the file stdout goes
    /// to, when it goes to one.
    pub(super) fn command(
        &self,
        home: Option<&tempfile::TempDir>,
    ) -> Result<(Command, Option<Utf8PathBuf>), RunError> {
        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear().envs(&self.env);
        if let Some(home) = home {
            cmd.env("HOME", home.path());
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        match &self.stdin {
            StdinSource::Null => cmd.stdin(Stdio::null()),
            StdinSource::File(path) => {
                let file = File::open(path)
                    .map_err(|e| self.setup_err(format!("open {path} for the child's stdin"), e))?;
                cmd.stdin(file)
            }
        };
        let stdout_path = match &self.stdout {
            StdoutSink::Capture => {
                cmd.stdout(Stdio::piped());
                None
            }
            StdoutSink::File(path) => {
                let file = OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .mode(0o600)
                    .open(path)
                    .map_err(|e| {
                        self.setup_err(format!("create {path} for the child's stdout"), e)
                    })?;
                cmd.stdout(file);
                Some(path.clone())
            }
            StdoutSink::Pipe(writer) => {
                let writer = writer.try_clone().map_err(|e| {
                    self.setup_err("pass the pipe for the child's stdout".to_owned(), e)
                })?;
                cmd.stdout(writer);
                None
            }
        };
        cmd.stderr(Stdio::piped());
        cmd.process_group(0);
        Ok((cmd, stdout_path))
    }

    /// What the forked child does before `exec`: join the run's cgroup, umask 022, rlimits,
    /// drop to `drop_to`, no new privileges, die with its parent.
    pub(super) fn confine(
        &self,
        cmd: &mut Command,
        confinement: &Confinement,
        drop_to: Option<&Account>,
    ) -> Result<(), RunError> {
        let join_cgroup = confinement.procs_file().cloned();
        let rlimits = self.rlimits.clone();
        // Everything the closure needs is made here: after fork it may not allocate.
        let switch = match drop_to {
            Some(a) => {
                let cwd = match &self.cwd {
                    Some(dir) => Some(CString::new(dir.as_str()).map_err(|e| {
                        self.setup_err("use the working directory".to_owned(), e.into())
                    })?),
                    None => None,
                };
                let groups: Vec<libc::gid_t> = a.groups.clone();
                Some((a.uid, a.gid, groups, cwd))
            }
            None => None,
        };
        // SAFETY: the closure only makes async-signal-safe system calls (open, write, close,
        // umask, setgroups, setgid, setuid, chdir, prctl, getppid, kill) and allocates nothing.
        let parent = std::process::id() as libc::pid_t;
        unsafe {
            cmd.pre_exec(move || {
                if let Some(procs) = &join_cgroup {
                    let fd = libc::open(procs.as_ptr(), libc::O_WRONLY | libc::O_CLOEXEC);
                    if fd < 0 {
                        return Err(io::Error::last_os_error());
                    }
                    let written = libc::write(fd, b"0".as_ptr().cast(), 1);
                    let err = io::Error::last_os_error();
                    libc::close(fd);
                    if written != 1 {
                        return Err(err);
                    }
                }
                libc::umask(0o022);
                for &(resource, value) in &rlimits {
                    let limit = libc::rlimit {
                        rlim_cur: value as libc::rlim_t,
                        rlim_max: value as libc::rlim_t,
                    };
                    if libc::setrlimit(resource, &limit) != 0 {
                        return Err(io::Error::last_os_error());
                    }
                }
                if let Some((uid, gid, groups, cwd)) = &switch {
                    if libc::setgroups(groups.len(), groups.as_ptr()) != 0
                        || libc::setgid(*gid) != 0
                        || libc::setuid(*uid) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                    // Never run a tenant's code with the controller's rights by mistake.
                    if libc::getuid() != *uid
                        || libc::geteuid() != *uid
                        || libc::getegid() != *gid
                        || (*uid != 0 && libc::setuid(0) == 0)
                    {
                        return Err(io::Error::from_raw_os_error(libc::EPERM));
                    }
                    // std changed folder as root; the account must be able to get there itself.
                    if let Some(cwd) = cwd
                        && libc::chdir(cwd.as_ptr()) != 0
                    {
                        return Err(io::Error::last_os_error());
                    }
                }
                if libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0 {
                    return Err(io::Error::last_os_error());
                }
                // After the switch: changing credentials clears the parent-death signal.
                if libc::prctl(
                    libc::PR_SET_PDEATHSIG,
                    libc::SIGKILL as libc::c_ulong,
                    0,
                    0,
                    0,
                ) != 0
                {
                    return Err(io::Error::last_os_error());
                }
                // The parent may have died between fork and prctl: then nobody would kill us.
                if libc::getppid() != parent {
                    libc::kill(libc::getpid(), libc::SIGKILL);
                }
                Ok(())
            });
        }
        Ok(())
    }

    /// Starts the child and registers it as live; the returned closure unregisters it once
    /// it is reaped.
    pub(super) fn spawn_registered(
        &self,
        cmd: &mut Command,
    ) -> Result<(Child, impl FnOnce() + use<>), RunError> {
        // Registered under the lock: a subreaper sweep must never take it for an orphan.
        let child = {
            let mut live = LIVE_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
            let child = cmd.spawn().map_err(|source| RunError::Spawn {
                command: self.command_line(),
                cwd: self.cwd_display(),
                source,
            })?;
            live.get_or_insert_with(Default::default).insert(child.id());
            child
        };
        let child_pid = child.id();
        let unregister = move || {
            let mut live = LIVE_CHILDREN.lock().unwrap_or_else(|p| p.into_inner());
            if let Some(live) = live.as_mut() {
                live.remove(&child_pid);
            }
        };
        if let Some(path) = &self.group_file {
            // Best effort: failing to write it only matters if the controller is then killed.
            let _ = std::fs::write(path, child.id().to_string());
        }
        Ok((child, unregister))
    }
}
