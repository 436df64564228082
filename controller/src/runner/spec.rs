//! What a child process is to be: program, arguments, environment, folders, redirections and
//! bounds, built up before anything runs (cargo's `ProcessBuilder`), and how its end is judged.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;
use std::time::Duration;

use camino::Utf8PathBuf;

use super::{
    DEFAULT_KILL_GRACE, DEFAULT_SCRIPT_TIMEOUT, ProcessOutput, RunError, SAFE_LANG, SAFE_PATH,
};
use crate::account::Account;

/// Where the child's stdin comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum StdinSource {
    Null,
    File(Utf8PathBuf),
}

/// Where the child's stdout goes.
#[derive(Debug, Clone)]
pub(super) enum StdoutSink {
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
    pub(super) program: OsString,
    pub(super) args: Vec<OsString>,
    pub(super) env: BTreeMap<OsString, OsString>,
    pub(super) cwd: Option<Utf8PathBuf>,
    pub(super) timeout: Option<Duration>,
    pub(super) kill_grace: Duration,
    pub(super) stdin: StdinSource,
    pub(super) stdout: StdoutSink,
    pub(super) private_home: bool,
    pub(super) home_parent: Option<Utf8PathBuf>,
    pub(super) group_file: Option<Utf8PathBuf>,
    pub(super) account: Option<Account>,
    pub(super) rlimits: Vec<(libc::__rlimit_resource_t, u64)>,
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

    /// The program as given.
    pub fn program(&self) -> &OsStr {
        &self.program
    }

    /// Names (never values) of the environment variables the child will get, without the
    /// private `HOME` that is only made at run time.
    pub fn env_names(&self) -> impl Iterator<Item = &OsStr> {
        self.env.keys().map(OsString::as_os_str)
    }

    /// Program and arguments, shell-quoted, as a person would paste them into a shell.
    pub fn command_line(&self) -> String {
        std::iter::once(&self.program)
            .chain(&self.args)
            .map(|a| shell_quote(a))
            .collect::<Vec<_>>()
            .join(" ")
    }

    pub(super) fn cwd_display(&self) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    pub(super) fn quoting() {
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
    pub(super) fn debug_hides_env_values() {
        let spec = ProcessSpec::for_tool("/usr/bin/mysqldump").env("MYSQL_PWD", "s3cret");
        let dbg = format!("{spec:?}");
        assert!(dbg.contains("MYSQL_PWD"));
        assert!(!dbg.contains("s3cret"));
    }
}
