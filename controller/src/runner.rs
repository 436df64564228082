//! The one place that starts child processes: package scripts and the database tools alike.
//!
//! A [`ProcessSpec`] owns program, arguments, environment, working directory, stdin/stdout
//! redirections, timeout and kill grace period (cargo's `ProcessBuilder` habit). Running it:
//!
//! - the environment starts **empty**; [`ProcessSpec::for_script`] / [`ProcessSpec::for_tool`]
//!   add only [`SAFE_PATH`], `LANG=C.UTF-8` and a private, empty `HOME` created for the run and
//!   removed afterwards (docs/scripts.md);
//! - the child leads its own process group and gets SIGKILL when the thread that started it dies
//!   (`PR_SET_DEATHSIG`); [`ProcessSpec::run`] blocks that thread until the child is gone, so
//!   that is in practice "when the controller dies";
//! - on timeout the whole group gets SIGTERM, then SIGKILL after the grace period;
//! - when the group leader exits (normally or not), whatever is left in its group gets SIGKILL:
//!   a script that daemonizes a helper must not leave it behind holding the instance's files;
//! - stdout and stderr are read concurrently, keeping the last [`TAIL_LIMIT`] bytes of each, or
//!   stdout goes straight into a file (dumps of many GB);
//! - exit 0 is success; a non-zero exit, a signal, a timeout and a failure to start are distinct
//!   [`RunError`] variants naming the full command line and working directory.
//!
//! Environment *values* never appear in errors nor in `Debug` output: they carry passwords
//! (`MYSQL_PWD`, `PGPASSWORD`, `DB_main_PASSWORD`).
//!
//! - every process the child starts is ended with it, also those that left its process group
//!   or session (`setsid`, double fork): the run gets a cgroup of its own when the controller
//!   may create one (root, cgroup v2), else the controller is a child subreaper and kills what
//!   is re-parented to it (see `process::Confinement` and docs/security.md);
//! - with [`ProcessSpec::run_as`], the child drops to that account before `exec`
//!   (`setgroups`, `setgid`, `setuid`, checked), its private HOME is owned by the account, and
//!   files it is given (stdin, stdout) are opened by the controller beforehand; every child
//!   gets `PR_SET_NO_NEW_PRIVS` (no set-user-ID program gives it more rights) and `umask 022`
//!   (the controller's own 077 is for its state, not the tenant's web files).

use std::collections::{BTreeMap, VecDeque};
use std::ffi::{CString, OsStr, OsString};
use std::fmt;
use std::fs::{File, OpenOptions};
use std::io::{self, Read};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use crate::account::Account;
use crate::process::{Confinement, LIVE_CHILDREN};

/// The fixed `PATH` every script and tool gets (docs/scripts.md, "Environment").
pub const SAFE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// `LANG` every script and tool gets: UTF-8, but no locale-dependent translations of messages.
pub const SAFE_LANG: &str = "C.UTF-8";

/// How many trailing bytes of stdout and of stderr are kept.
pub const TAIL_LIMIT: usize = 64 * 1024;

/// How many trailing bytes of stderr an error's `Display` shows (the rest stays in the error).
pub const ERROR_STDERR_LIMIT: usize = 2 * 1024;

/// Time between SIGTERM and SIGKILL on timeout unless [`ProcessSpec::kill_grace`] says otherwise.
pub const DEFAULT_KILL_GRACE: Duration = Duration::from_secs(10);

/// Script timeout set by [`ProcessSpec::for_script`] (docs/scripts.md: default 3600 s).
pub const DEFAULT_SCRIPT_TIMEOUT: Duration = Duration::from_secs(3600);

/// After the group is gone, how long to wait for the pipes to reach end-of-file. Only a process
/// that left the group (and so escaped the kill) can hold them longer; we then stop reading.
const PIPE_DRAIN_LIMIT: Duration = Duration::from_secs(5);

/// Where the child's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum StdinSource {
    Null,
    File(Utf8PathBuf),
}

/// Where the child's stdout goes.
#[derive(Debug, Clone)]
enum StdoutSink {
    Capture,
    File(Utf8PathBuf),
    /// A pipe the caller reads as the child writes (a dump streamed into the repository
    /// store). Shared with clones of the spec; the caller drops the spec once the run is over,
    /// so that its reader sees the end of the stream.
    Pipe(Arc<std::os::fd::OwnedFd>),
}

/// A child process to run: see the module documentation.
#[derive(Clone)]
pub struct ProcessSpec {
    program: OsString,
    args: Vec<OsString>,
    env: BTreeMap<OsString, OsString>,
    cwd: Option<Utf8PathBuf>,
    timeout: Option<Duration>,
    kill_grace: Duration,
    stdin: StdinSource,
    stdout: StdoutSink,
    private_home: bool,
    home_parent: Option<Utf8PathBuf>,
    group_file: Option<Utf8PathBuf>,
    account: Option<Account>,
    rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
}

// Hand-written so that environment values (passwords) never reach a log through `{:?}`.
impl fmt::Debug for ProcessSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ProcessSpec")
            .field("command", &self.command_line())
            .field("env_names", &self.env.keys().collect::<Vec<_>>())
            .field("cwd", &self.cwd)
            .field("timeout", &self.timeout)
            .field("kill_grace", &self.kill_grace)
            .field("stdin", &self.stdin)
            .field("stdout", &self.stdout)
            .field("private_home", &self.private_home)
            .field("account", &self.account.as_ref().map(|a| &a.name))
            .finish()
    }
}

impl ProcessSpec {
    /// A bare process: empty environment, no timeout, stdin from `/dev/null`, output captured.
    ///
    /// With an empty environment there is no `PATH` to search, so give an absolute `program`
    /// (or set `PATH` with [`ProcessSpec::env`]).
    pub fn new(program: impl Into<OsString>) -> Self {
        Self {
            program: program.into(),
            args: Vec::new(),
            env: BTreeMap::new(),
            cwd: None,
            timeout: None,
            kill_grace: DEFAULT_KILL_GRACE,
            stdin: StdinSource::Null,
            stdout: StdoutSink::Capture,
            private_home: false,
            home_parent: None,
            group_file: None,
            account: None,
            rlimits: Vec::new(),
        }
    }

    /// A package script's interpreter: [`SAFE_PATH`], `LANG=C.UTF-8`, a private empty `HOME`
    /// and the [`DEFAULT_SCRIPT_TIMEOUT`]. The caller adds the standard's variables.
    pub fn for_script(program: impl Into<OsString>) -> Self {
        Self::for_tool(program).timeout(DEFAULT_SCRIPT_TIMEOUT)
    }

    /// A tool such as `mysqldump` or `pg_dump`: the same clean environment as a script (so no
    /// `~/.my.cnf` or `~/.pgpass` of the controller's user is read), but no timeout unless set.
    pub fn for_tool(program: impl Into<OsString>) -> Self {
        let mut spec = Self::new(program)
            .env("PATH", SAFE_PATH)
            .env("LANG", SAFE_LANG);
        spec.private_home = true;
        spec
    }

    /// Appends one argument.
    pub fn arg(mut self, arg: impl Into<OsString>) -> Self {
        self.args.push(arg.into());
        self
    }

    /// Appends arguments.
    pub fn args<I, S>(mut self, args: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<OsString>,
    {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Sets one environment variable (a later call for the same name wins). Setting `HOME`
    /// replaces the private home folder.
    pub fn env(mut self, name: impl Into<OsString>, value: impl Into<OsString>) -> Self {
        self.env.insert(name.into(), value.into());
        self
    }

    /// Sets several environment variables.
    pub fn envs<I, K, V>(mut self, vars: I) -> Self
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<OsString>,
        V: Into<OsString>,
    {
        self.env
            .extend(vars.into_iter().map(|(k, v)| (k.into(), v.into())));
        self
    }

    /// The child's working directory (default: the controller's).
    pub fn current_dir(mut self, dir: impl Into<Utf8PathBuf>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Kill the process group when it runs longer than this.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = Some(timeout);
        self
    }

    /// Let the process run as long as it likes.
    pub fn no_timeout(mut self) -> Self {
        self.timeout = None;
        self
    }

    /// Time between SIGTERM and SIGKILL once the timeout has expired.
    pub fn kill_grace(mut self, grace: Duration) -> Self {
        self.kill_grace = grace;
        self
    }

    /// Feed this file to the child's stdin (default `/dev/null`), e.g. a dump to `mysql`.
    pub fn stdin_file(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.stdin = StdinSource::File(path.into());
        self
    }

    /// Send the child's stdout straight into this file, created (mode 0600, it may hold a whole
    /// database) or truncated; nothing of stdout is captured then.
    pub fn stdout_to_file(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.stdout = StdoutSink::File(path.into());
        self
    }

    /// Send the child's stdout into the write end of a pipe whose read end the caller holds
    /// (and reads from another thread while [`run`](Self::run) waits); nothing is captured.
    pub fn stdout_to_pipe(mut self, writer: std::io::PipeWriter) -> Self {
        self.stdout = StdoutSink::Pipe(Arc::new(writer.into()));
        self
    }

    /// Create the private `HOME` under this folder instead of the system temp folder.
    pub fn home_parent(mut self, dir: impl Into<Utf8PathBuf>) -> Self {
        self.home_parent = Some(dir.into());
        self
    }

    /// Writes the child's process group id to `path` once it runs. If the controller is
    /// killed, the parent-death signal reaches only the child; the journal's recovery reads
    /// this file to end the rest of the group (a script's background children).
    pub fn record_group_in(mut self, path: impl Into<Utf8PathBuf>) -> Self {
        self.group_file = Some(path.into());
        self
    }

    /// Run the child as `account` (when it is not the controller's own account). Only a
    /// controller running as root can do that; otherwise the run fails to start.
    pub fn run_as(mut self, account: Account) -> Self {
        self.account = Some(account);
        self
    }

    /// Bounds the child with `setrlimit` (soft and hard limit alike) before it starts.
    pub fn limits(mut self, limits: &crate::controller::ResourceLimits) -> Self {
        let bounds = [
            (
                libc::RLIMIT_FSIZE,
                limits
                    .max_file_size_mb
                    .map(|m| m.saturating_mul(1024 * 1024)),
            ),
            (libc::RLIMIT_NOFILE, limits.open_files),
            (libc::RLIMIT_CPU, limits.cpu_secs),
        ];
        self.rlimits = bounds
            .into_iter()
            .filter_map(|(resource, value)| Some((resource, value?)))
            .collect();
        self
    }

    /// The account the child is to run as, if one was set.
    pub fn get_account(&self) -> Option<&Account> {
        self.account.as_ref()
    }

    /// The program as given.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// The arguments as given.
    pub fn get_args(&self) -> &[OsString] {
        &self.args
    }

    /// The working directory, if one was set.
    pub fn get_current_dir(&self) -> Option<&Utf8Path> {
        self.cwd.as_deref()
    }

    /// Names (never values) of the environment variables the child will get, without the
    /// private `HOME` that is only made at run time.
    pub fn env_names(&self) -> impl Iterator<Item = &OsStr> {
        self.env.keys().map(OsString::as_os_str)
    }

    /// The value of one environment variable set on this spec (for tests and for building on
    /// a spec; do not log it).
    pub fn get_env(&self, name: impl AsRef<OsStr>) -> Option<&OsStr> {
        self.env.get(name.as_ref()).map(OsString::as_os_str)
    }

    /// Program and arguments, shell-quoted, as a person would paste them into a shell.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    fn cwd_display(&self) -> String {
        match &self.cwd {
            Some(dir) => dir.to_string(),
            None => std::env::current_dir()
                .map(|d| d.to_string_lossy().into_owned())
                .unwrap_or_else(|_| "<the controller's working directory>".to_owned()),
        }
    }

    /// Runs the process to the end; a non-zero exit or a signal is an error.
    pub fn run(&self) -> Result<ProcessOutput, RunError> {
        let output = self.output()?;
        self.check(output)
    }

    /// Runs the process to the end and returns its output whatever its exit status; only a
    /// failure to start, an I/O failure while setting up, or a timeout is an error.
    pub fn output(&self) -> Result<ProcessOutput, RunError> {
        let started = Instant::now();
        let setup_err = |what: String, source: io::Error| RunError::Setup {
            command: self.command_line(),
            cwd: self.cwd_display(),
            what,
            source,
        };

        // The account to switch to: none when it is the controller's own.
        let drop_to = self.account.as_ref().filter(|a| {
            a.uid != rustix::process::geteuid().as_raw()
                || a.gid != rustix::process::getegid().as_raw()
        });
        // Held until the end of this function: dropping it removes the private HOME.
        let home = if self.private_home && !self.env.contains_key(OsStr::new("HOME")) {
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
            .map_err(|e| setup_err("create the private HOME folder".to_owned(), e))?;
            if let Some(account) = drop_to {
                std::os::unix::fs::chown(dir.path(), Some(account.uid), Some(account.gid))
                    .map_err(|e| setup_err("hand the private HOME to the account".to_owned(), e))?;
            }
            Some(dir)
        } else {
            None
        };

        let mut cmd = Command::new(&self.program);
        cmd.args(&self.args).env_clear().envs(&self.env);
        if let Some(home) = &home {
            cmd.env("HOME", home.path());
        }
        if let Some(dir) = &self.cwd {
            cmd.current_dir(dir);
        }
        match &self.stdin {
            StdinSource::Null => cmd.stdin(Stdio::null()),
            StdinSource::File(path) => {
                let file = File::open(path)
                    .map_err(|e| setup_err(format!("open {path} for the child's stdin"), e))?;
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
                    .map_err(|e| setup_err(format!("create {path} for the child's stdout"), e))?;
                cmd.stdout(file);
                Some(path.clone())
            }
            StdoutSink::Pipe(writer) => {
                let writer = writer
                    .try_clone()
                    .map_err(|e| setup_err("pass the pipe for the child's stdout".to_owned(), e))?;
                cmd.stdout(writer);
                None
            }
        };
        cmd.stderr(Stdio::piped());
        cmd.process_group(0);
        let confinement = Confinement::new();
        let join_cgroup = confinement.procs_file().cloned();
        let rlimits = self.rlimits.clone();
        // Everything the closure needs is made here: after fork it may not allocate.
        let switch = match drop_to {
            Some(a) => {
                let cwd = match &self.cwd {
                    Some(dir) => Some(CString::new(dir.as_str()).map_err(|e| {
                        setup_err("use the working directory".to_owned(), e.into())
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

        // Registered under the lock: a subreaper sweep must never take it for an orphan.
        let mut child = {
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

        let (pipe_tx, pipe_rx) = mpsc::channel::<()>();
        let stdout_tail = Arc::new(Mutex::new(Tail::default()));
        let stderr_tail = Arc::new(Mutex::new(Tail::default()));
        let mut readers = 0;
        if let Some(out) = child.stdout.take() {
            spawn_reader(out, Arc::clone(&stdout_tail), pipe_tx.clone());
            readers += 1;
        }
        if let Some(err) = child.stderr.take() {
            spawn_reader(err, Arc::clone(&stderr_tail), pipe_tx.clone());
            readers += 1;
        }
        drop(pipe_tx);

        let waited = self.wait(&mut child).map_err(|e| {
            kill_group(child.id(), libc::SIGKILL);
            let _ = child.wait();
            setup_err("wait for the child".to_owned(), e)
        });
        unregister();
        // Whatever the child started, in its group or not, ends with it.
        confinement.end_all();
        drop(confinement);
        let (stopped, status) = waited?;

        // Wait for the pipes to close: once they do, every group member that held them is gone.
        let drain_deadline = Instant::now() + PIPE_DRAIN_LIMIT;
        for _ in 0..readers {
            let left = drain_deadline.saturating_duration_since(Instant::now());
            if pipe_rx.recv_timeout(left).is_err() {
                break;
            }
        }

        let (stdout_tail, stdout_truncated) = take_tail(&stdout_tail);
        let (stderr_tail, stderr_truncated) = take_tail(&stderr_tail);
        let stdout_file_len = match &stdout_path {
            Some(path) => Some(
                std::fs::metadata(path)
                    .map_err(|e| setup_err(format!("read the size of {path}"), e))?
                    .len(),
            ),
            None => None,
        };
        let output = ProcessOutput {
            status,
            stdout_tail,
            stdout_truncated,
            stderr_tail,
            stderr_truncated,
            stdout_file: stdout_path,
            stdout_file_len,
            duration: started.elapsed(),
        };
        drop(home);

        if let Stopped::Interrupted(signal) = stopped {
            return Err(RunError::Interrupted {
                command: self.command_line(),
                cwd: self.cwd_display(),
                signal,
                output: Box::new(output),
            });
        }
        if stopped == Stopped::TimedOut {
            return Err(RunError::Timeout {
                command: self.command_line(),
                cwd: self.cwd_display(),
                timeout: self.timeout.unwrap_or_default(),
                output: Box::new(output),
            });
        }
        Ok(output)
    }

    /// Turns a finished process's output into success or the matching [`RunError`].
    pub fn check(&self, output: ProcessOutput) -> Result<ProcessOutput, RunError> {
        if output.status.success() {
            return Ok(output);
        }
        let command = self.command_line();
        let cwd = self.cwd_display();
        Err(match (output.status.code(), output.status.signal()) {
            (Some(code), _) => RunError::Exit {
                command,
                cwd,
                code,
                output: Box::new(output),
            },
            (None, Some(signal)) => RunError::Signal {
                command,
                cwd,
                signal,
                output: Box::new(output),
            },
            // Stopped/continued statuses are not reported by `wait`; treat as a signal 0.
            (None, None) => RunError::Signal {
                command,
                cwd,
                signal: 0,
                output: Box::new(output),
            },
        })
    }

    /// Waits for the group leader, enforcing the timeout and the cancellation token armed on
    /// this thread ([`crate::cancel`]); then kills what is left of the group and reaps the
    /// leader. Returns whether the timeout or a cancellation stopped it.
    fn wait(&self, child: &mut Child) -> io::Result<(Stopped, ExitStatus)> {
        let pid = child.id();
        // A helper thread waits *without reaping* (WNOWAIT): the leader stays a zombie, so its
        // pid, which is also the group id, cannot be reused while we signal the group.
        let (exit_tx, exit_rx) = mpsc::channel::<io::Result<()>>();
        thread::Builder::new()
            .name(format!("aps-wait-{pid}"))
            .spawn(move || {
                let _ = exit_tx.send(wait_no_reap(pid));
            })?;

        let cancel = crate::cancel::current();
        let deadline = self.timeout.map(|t| Instant::now() + t);
        let mut stopped = Stopped::No;
        let exited = loop {
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            // With a token to watch, wake up often enough to answer a signal at once.
            let slice = match (&cancel, left) {
                (Some(_), Some(left)) => left.min(CANCEL_POLL),
                (Some(_), None) => CANCEL_POLL,
                (None, Some(left)) => left,
                (None, None) => break exit_rx.recv().ok(),
            };
            match exit_rx.recv_timeout(slice) {
                Ok(r) => break Some(r),
                Err(mpsc::RecvTimeoutError::Disconnected) => break None,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
            if let Some(signal) = cancel.as_ref().and_then(crate::cancel::Cancel::signal) {
                stopped = Stopped::Interrupted(signal);
            } else if deadline.is_some_and(|d| Instant::now() >= d) {
                stopped = Stopped::TimedOut;
            } else {
                continue;
            }
            kill_group(pid, libc::SIGTERM);
            match exit_rx.recv_timeout(self.kill_grace) {
                Ok(r) => break Some(r),
                Err(_) => {
                    kill_group(pid, libc::SIGKILL);
                    break exit_rx.recv().ok();
                }
            }
        };
        if let Some(Err(e)) = exited {
            return Err(e);
        }
        // Leftovers (daemonized helpers, `sleep &`) must not outlive the script.
        kill_group(pid, libc::SIGKILL);
        let status = child.wait()?;
        Ok((stopped, status))
    }
}

/// How often the wait for a process checks the cancellation token.
const CANCEL_POLL: Duration = Duration::from_millis(50);

/// Why the runner stopped a process before it ended by itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stopped {
    No,
    TimedOut,
    Interrupted(i32),
}

/// Waits until `pid` has exited, leaving it a zombie (not reaped).
fn wait_no_reap(pid: u32) -> io::Result<()> {
    loop {
        // SAFETY: `info` is a plain C struct that waitid fills in.
        let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
        let rc = unsafe {
            libc::waitid(
                libc::P_PID,
                pid as libc::id_t,
                &mut info,
                libc::WEXITED | libc::WNOWAIT,
            )
        };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn kill_group(pgid: u32, signal: libc::c_int) {
    // SAFETY: plain system call; ESRCH (group already empty) is fine.
    unsafe {
        libc::kill(-(pgid as libc::pid_t), signal);
    }
}

#[derive(Default)]
struct Tail {
    buf: VecDeque<u8>,
    truncated: bool,
}

impl Tail {
    fn push(&mut self, chunk: &[u8]) {
        self.buf.extend(chunk);
        if self.buf.len() > TAIL_LIMIT {
            let excess = self.buf.len() - TAIL_LIMIT;
            self.buf.drain(..excess);
            self.truncated = true;
        }
    }
}

fn take_tail(tail: &Mutex<Tail>) -> (Vec<u8>, bool) {
    let mut tail = tail.lock().unwrap_or_else(|p| p.into_inner());
    let truncated = tail.truncated;
    (std::mem::take(&mut tail.buf).into(), truncated)
}

fn spawn_reader(
    mut pipe: impl Read + Send + 'static,
    tail: Arc<Mutex<Tail>>,
    done: mpsc::Sender<()>,
) {
    // The thread is detached: if a process that escaped the group keeps the pipe open, `output`
    // stops waiting after PIPE_DRAIN_LIMIT and this thread ends whenever that process does.
    let _ = thread::Builder::new()
        .name("aps-pipe-reader".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 16 * 1024];
            loop {
                match pipe.read(&mut buf) {
                    Ok(0) => break,
                    Ok(n) => tail
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .push(&buf[..n]),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                }
            }
            let _ = done.send(());
        });
}

/// Shell-quotes one word so the command line can be pasted into `sh`.
pub fn shell_quote(word: &OsStr) -> String {
    let s = word.to_string_lossy();
    let plain = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%^".contains(c));
    if plain {
        s.into_owned()
    } else {
        format!("'{}'", s.replace('\'', r"'\''"))
    }
}

/// What a finished process left behind.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// Exit status of the group leader.
    pub status: ExitStatus,
    /// Last [`TAIL_LIMIT`] bytes of stdout (empty when stdout went to a file).
    pub stdout_tail: Vec<u8>,
    /// Whether stdout was longer than what `stdout_tail` holds.
    pub stdout_truncated: bool,
    /// Last [`TAIL_LIMIT`] bytes of stderr.
    pub stderr_tail: Vec<u8>,
    /// Whether stderr was longer than what `stderr_tail` holds.
    pub stderr_truncated: bool,
    /// The file stdout went to, if [`ProcessSpec::stdout_to_file`] was used.
    pub stdout_file: Option<Utf8PathBuf>,
    /// Size of that file after the run.
    pub stdout_file_len: Option<u64>,
    /// Wall-clock time from start to reaping.
    pub duration: Duration,
}

impl ProcessOutput {
    /// stdout tail as text (invalid UTF-8 replaced).
    pub fn stdout_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stdout_tail).into_owned()
    }

    /// stderr tail as text (invalid UTF-8 replaced).
    pub fn stderr_lossy(&self) -> String {
        String::from_utf8_lossy(&self.stderr_tail).into_owned()
    }

    /// The last `limit` bytes of stderr as text, for messages.
    pub fn stderr_excerpt(&self, limit: usize) -> String {
        excerpt(&self.stderr_tail, limit)
    }
}

fn excerpt(bytes: &[u8], limit: usize) -> String {
    let start = bytes.len().saturating_sub(limit);
    let text = String::from_utf8_lossy(&bytes[start..]);
    let text = text.trim_end();
    if text.is_empty() {
        String::new()
    } else if start > 0 {
        format!("; stderr (last {limit} bytes):\n…{text}")
    } else {
        format!("; stderr:\n{text}")
    }
}

fn stderr_suffix(output: &ProcessOutput) -> String {
    excerpt(&output.stderr_tail, ERROR_STDERR_LIMIT)
}

fn signal_name(signal: i32) -> String {
    // SAFETY: strsignal returns a pointer to a static or thread-local string.
    let ptr = unsafe { libc::strsignal(signal) };
    if ptr.is_null() {
        return format!("signal {signal}");
    }
    let name = unsafe { std::ffi::CStr::from_ptr(ptr) }.to_string_lossy();
    format!("signal {signal} ({name})")
}

/// Why a process did not succeed. Every variant names the command line (shell-quoted) and the
/// working directory; none holds environment values.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The program could not be started (not found, not executable, bad working directory).
    #[error("could not start `{command}` in {cwd}: {source}")]
    Spawn {
        command: String,
        cwd: String,
        #[source]
        source: io::Error,
    },
    /// Something around the process failed: opening the stdin file, creating the stdout file
    /// or the private HOME, waiting.
    #[error("could not {what} for `{command}` in {cwd}: {source}")]
    Setup {
        command: String,
        cwd: String,
        what: String,
        #[source]
        source: io::Error,
    },
    /// The process exited with a non-zero status.
    #[error("`{command}` in {cwd} failed with exit code {code}{}", stderr_suffix(.output))]
    Exit {
        command: String,
        cwd: String,
        code: i32,
        output: Box<ProcessOutput>,
    },
    /// The process was killed by a signal it did not get from our timeout.
    #[error("`{command}` in {cwd} was killed by {}{}", signal_name(*.signal), stderr_suffix(.output))]
    Signal {
        command: String,
        cwd: String,
        signal: i32,
        output: Box<ProcessOutput>,
    },
    /// A signal to the controller (SIGINT, SIGTERM, SIGHUP) asked the operation to stop: the
    /// process's whole group got SIGTERM, then SIGKILL after the grace period.
    #[error("`{command}` in {cwd} was stopped because the controller got {}{}", crate::cancel::signal_name(*.signal), stderr_suffix(.output))]
    Interrupted {
        command: String,
        cwd: String,
        signal: i32,
        output: Box<ProcessOutput>,
    },
    /// The process ran past its timeout; its whole process group was killed.
    #[error("`{command}` in {cwd} timed out after {timeout:?} and was killed{}", stderr_suffix(.output))]
    Timeout {
        command: String,
        cwd: String,
        timeout: Duration,
        output: Box<ProcessOutput>,
    },
}

impl RunError {
    /// The shell-quoted command line.
    pub fn command(&self) -> &str {
        match self {
            RunError::Spawn { command, .. }
            | RunError::Setup { command, .. }
            | RunError::Exit { command, .. }
            | RunError::Signal { command, .. }
            | RunError::Timeout { command, .. }
            | RunError::Interrupted { command, .. } => command,
        }
    }

    /// The working directory the process ran (or was to run) in.
    pub fn cwd(&self) -> &str {
        match self {
            RunError::Spawn { cwd, .. }
            | RunError::Setup { cwd, .. }
            | RunError::Exit { cwd, .. }
            | RunError::Signal { cwd, .. }
            | RunError::Timeout { cwd, .. }
            | RunError::Interrupted { cwd, .. } => cwd,
        }
    }

    /// What the process printed, when it ran at all.
    pub fn output(&self) -> Option<&ProcessOutput> {
        match self {
            RunError::Exit { output, .. }
            | RunError::Signal { output, .. }
            | RunError::Timeout { output, .. }
            | RunError::Interrupted { output, .. } => Some(output),
            RunError::Spawn { .. } | RunError::Setup { .. } => None,
        }
    }

    /// The stderr tail (lossy UTF-8), empty when the process never ran.
    pub fn stderr_tail(&self) -> String {
        self.output()
            .map(ProcessOutput::stderr_lossy)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting() {
        assert_eq!(shell_quote(OsStr::new("/bin/sh")), "/bin/sh");
        assert_eq!(shell_quote(OsStr::new("")), "''");
        assert_eq!(shell_quote(OsStr::new("a b")), "'a b'");
        assert_eq!(shell_quote(OsStr::new("it's")), r"'it'\''s'");
        let spec = ProcessSpec::new("/usr/bin/php").args(["-n", "backup script", "backup"]);
        assert_eq!(
            spec.command_line(),
            "/usr/bin/php -n 'backup script' backup"
        );
    }

    #[test]
    fn tail_keeps_the_last_bytes() {
        let mut tail = Tail::default();
        tail.push(&vec![b'a'; TAIL_LIMIT]);
        assert!(!tail.truncated);
        tail.push(b"xyz");
        assert!(tail.truncated);
        assert_eq!(tail.buf.len(), TAIL_LIMIT);
        let v: Vec<u8> = tail.buf.into();
        assert!(v.ends_with(b"axyz"));
    }

    #[test]
    fn debug_hides_env_values() {
        let spec = ProcessSpec::for_tool("/usr/bin/mysqldump").env("MYSQL_PWD", "s3cret");
        let dbg = format!("{spec:?}");
        assert!(dbg.contains("MYSQL_PWD"));
        assert!(!dbg.contains("s3cret"));
    }
}
