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

mod error;
mod limits;
mod output;
mod spawn;
mod spec;
mod wait;

use std::time::Duration;

pub use error::RunError;
pub use limits::ResourceLimits;
pub use output::ProcessOutput;
pub use spec::{ProcessSpec, shell_quote};

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
