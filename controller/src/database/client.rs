//! Running the servers' client tools through the runner: finding them, passing the connection
//! (password in the environment only), feeding SQL, and turning failures into
//! [`DatabaseError`]s a person can act on.

use std::fmt;
use std::io::Write;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};

use super::engine::Failure;
use super::{Database, DatabaseError, DbKind};
use crate::account::Account;
use crate::runner::{ERROR_STDERR_LIMIT, ProcessOutput, ProcessSpec, RunError, SAFE_PATH};

thread_local! {
    /// The account the client tools of this thread run as (see [`super::as_account`]).
    static TOOL_ACCOUNT: std::cell::RefCell<Option<Account>> = const { std::cell::RefCell::new(None) };
}

/// Runs `f` with the client tools started on this thread running as `account`.
pub(crate) fn with_tool_account<R>(account: Option<&Account>, f: impl FnOnce() -> R) -> R {
    let previous = TOOL_ACCOUNT.with(|a| a.replace(account.cloned()));
    // Restored on unwind too, so a panic cannot leave a later run with this account.
    struct Restore(Option<Account>);
    impl Drop for Restore {
        fn drop(&mut self) {
            let previous = self.0.take();
            TOOL_ACCOUNT.with(|a| *a.borrow_mut() = previous);
        }
    }
    let _restore = Restore(previous);
    f()
}

/// The account a dump tool runs as, made up for one run: a uid of its own from
/// [`DUMP_UIDS`] that no user, file or other process has (no passwd entry), no groups. The
/// tenant (another uid) can neither `ptrace` it, nor open its `/proc/PID/mem`, nor signal it,
/// so it cannot change a dump the controller then tags; and it reaches no one's private files,
/// unlike the tenant's account or root without capabilities (which still owns root's files).
/// `None` when the controller is not root (it cannot switch; its tools run as itself).
pub(crate) fn dump_account() -> Option<Account> {
    if !rustix::process::geteuid().is_root() {
        return None;
    }
    let mut bytes = [0u8; 4];
    for _ in 0..64 {
        if std::fs::File::open("/dev/urandom")
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut bytes))
            .is_err()
        {
            break;
        }
        let uid = DUMP_UIDS.start + u32::from_le_bytes(bytes) % (DUMP_UIDS.end - DUMP_UIDS.start);
        if crate::account::user_name(uid).is_none() {
            return Some(Account {
                name: format!("aps-dump-{uid}"),
                uid,
                gid: uid,
                groups: Vec::new(),
            });
        }
    }
    None
}

/// Where the uids of [`dump_account`] come from: far above the accounts a system makes
/// (useradd stops at 60000, systemd's dynamic users at 65519, container ranges at a few
/// million), below 2^31 (some tools take uids as signed).
pub const DUMP_UIDS: std::ops::Range<u32> = 0x6000_0000..0x7000_0000;

/// Runs `f` with the client tools it starts running as a fresh [`dump_account`] (when the
/// controller may switch accounts).
pub(crate) fn as_dump_account<R>(f: impl FnOnce() -> R) -> R {
    match dump_account() {
        Some(account) => with_tool_account(Some(&account), f),
        None => f(),
    }
}

/// An empty temporary file for the copy of the dump `from` that a load reads: beside the dump
/// (the temp folder may be too small for a large one), else in the temp folder.
pub(crate) fn load_copy_beside(from: &Utf8Path) -> Result<tempfile::NamedTempFile, DatabaseError> {
    let dir = from
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    tempfile::Builder::new()
        .prefix(".aps-load-")
        .tempfile_in(dir)
        .or_else(|_| tempfile::Builder::new().prefix("aps-load-").tempfile())
        .map_err(DatabaseError::io(
            "create a temporary copy of the dump beside",
            from,
        ))
}

/// Which database, on which server: what every error names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub kind: DbKind,
    pub database: String,
    /// `host:port`.
    pub server: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} database `{}` on {}",
            self.kind, self.database, self.server
        )
    }
}

impl Target {
    /// Boxed: errors carry it, and keeping them small keeps every `Result` small.
    pub(crate) fn of(db: &Database) -> Box<Self> {
        Box::new(Self {
            kind: db.kind,
            database: db.name.clone(),
            server: db.server(),
        })
    }
}

pub(crate) fn server_label(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}

/// The stderr excerpt as it ends an error message.
pub(crate) fn stderr_block(stderr: &str) -> String {
    if stderr.is_empty() {
        String::new()
    } else {
        format!("; stderr:\n{stderr}")
    }
}

/// One time budget shared by the several tool runs of an operation (a dump is the dump, then
/// the row counts, then the version), so that the caller's timeout bounds the whole.
pub(crate) struct Deadline {
    start: Instant,
    total: Duration,
}

impl Deadline {
    pub(crate) fn new(total: Duration) -> Self {
        Self {
            start: Instant::now(),
            total,
        }
    }

    fn remaining(&self) -> Duration {
        self.total.saturating_sub(self.start.elapsed())
    }
}

/// Finds one of `names` (preferred first) in `dirs`, then in the directories of
/// [`SAFE_PATH`], the PATH tools get.
pub(crate) fn find_program(
    kind: DbKind,
    names: &[&str],
    mut dirs: Vec<Utf8PathBuf>,
) -> Result<Utf8PathBuf, DatabaseError> {
    dirs.extend(SAFE_PATH.split(':').map(Utf8PathBuf::from));
    let search = dirs
        .iter()
        .map(|d| d.as_str())
        .collect::<Vec<_>>()
        .join(":");
    for name in names {
        if let Some(found) = crate::paths::find_program(name, search.as_ref()) {
            return Ok(found);
        }
    }
    Err(DatabaseError::ToolMissing {
        kind,
        program: names.join(" or "),
        searched: search,
    })
}

/// A spec for `program` connected to `db` ([`super::DbEngine::connect`]), running as the
/// thread's tool account.
pub(crate) fn spec(db: &Database, program: &Utf8Path) -> ProcessSpec {
    let mut spec = ProcessSpec::for_tool(program.as_str());
    if let Some(account) = TOOL_ACCOUNT.with(|a| a.borrow().clone()) {
        spec = spec.run_as(account);
    }
    db.kind.engine().connect(spec, db)
}

/// Runs the spec within the deadline; `load_file` marks a dump load, whose failures become
/// [`DatabaseError::Load`].
pub(crate) fn run(
    db: &Database,
    spec: ProcessSpec,
    action: &'static str,
    deadline: &Deadline,
    load_file: Option<&Utf8Path>,
) -> Result<ProcessOutput, DatabaseError> {
    let tool = tool_name(&spec);
    let left = deadline.remaining();
    if left.is_zero() {
        return Err(DatabaseError::Timeout {
            action,
            target: Target::of(db),
            tool,
            timeout: deadline.total,
            stderr: String::new(),
        });
    }
    spec.timeout(left)
        .run()
        .map_err(|e| classify(db, tool, action, deadline.total, e, load_file))
}

fn tool_name(spec: &ProcessSpec) -> String {
    let program = spec.program().to_string_lossy();
    program.rsplit('/').next().unwrap_or(&program).to_owned()
}

fn excerpt(output: &ProcessOutput) -> String {
    let bytes = &output.stderr_tail;
    let start = bytes.len().saturating_sub(ERROR_STDERR_LIMIT);
    String::from_utf8_lossy(&bytes[start..]).trim().to_owned()
}

fn classify(
    db: &Database,
    tool: String,
    action: &'static str,
    total: Duration,
    err: RunError,
    load_file: Option<&Utf8Path>,
) -> DatabaseError {
    let target = Target::of(db);
    let (status, output) = match &err {
        // A stopped tool keeps its RunError as the source: the operation's kind is found there.
        RunError::Spawn { .. } | RunError::Setup { .. } | RunError::Interrupted { .. } => {
            return DatabaseError::Start {
                action,
                target,
                tool,
                source: Box::new(err),
            };
        }
        RunError::Timeout { output, .. } => {
            return DatabaseError::Timeout {
                action,
                target,
                tool,
                timeout: total,
                stderr: excerpt(output),
            };
        }
        RunError::Exit { code, output, .. } => (format!("exit code {code}"), output),
        RunError::Signal { signal, output, .. } => (format!("killed by signal {signal}"), output),
    };
    let stderr = excerpt(output);
    match db.kind.engine().classify(&stderr.to_lowercase()) {
        Some(Failure::Authentication) => {
            return DatabaseError::Authentication {
                target,
                login: db.login.clone(),
                tool,
                stderr,
            };
        }
        Some(Failure::NoSuchDatabase) => {
            return DatabaseError::NoSuchDatabase {
                target,
                tool,
                stderr,
            };
        }
        Some(Failure::Unreachable) => {
            return DatabaseError::Unreachable {
                target,
                tool,
                stderr,
            };
        }
        None => {}
    }
    match load_file {
        Some(file) => DatabaseError::Load {
            target,
            file: file.to_owned(),
            tool,
            status,
            stderr,
        },
        None => DatabaseError::Tool {
            action,
            target,
            tool,
            status,
            stderr,
        },
    }
}

/// Runs `sql` (fed on stdin from a private temporary file, so it shows in no process list)
/// with the interactive client and returns stdout, read whole from a temporary file (the
/// runner keeps only a tail of captured output).
pub(crate) fn query(
    db: &Database,
    sql: &str,
    deadline: &Deadline,
    action: &'static str,
) -> Result<String, DatabaseError> {
    let tmp = std::env::temp_dir();
    let tmp = Utf8PathBuf::from_path_buf(tmp).unwrap_or_else(|_| Utf8PathBuf::from("/tmp"));
    let mut sql_file = tempfile::Builder::new()
        .prefix("aps-sql-")
        .tempfile_in(&tmp)
        .map_err(DatabaseError::io("create a temporary SQL file in", &tmp))?;
    let sql_path = utf8(sql_file.path(), &tmp)?;
    sql_file
        .write_all(sql.as_bytes())
        .and_then(|()| sql_file.flush())
        .map_err(DatabaseError::io("write", &sql_path))?;
    let out_file = tempfile::Builder::new()
        .prefix("aps-sql-out-")
        .tempfile_in(&tmp)
        .map_err(DatabaseError::io("create a temporary output file in", &tmp))?;
    let out_path = utf8(out_file.path(), &tmp)?;

    let spec = db
        .kind
        .engine()
        .query_spec(db)?
        .stdin_file(sql_path.clone())
        .stdout_to_file(out_path.clone());
    run(db, spec, action, deadline, None)?;
    let bytes = std::fs::read(&out_path).map_err(DatabaseError::io("read", &out_path))?;
    Ok(String::from_utf8_lossy(&bytes).into_owned())
}

fn utf8(path: &std::path::Path, dir: &Utf8Path) -> Result<Utf8PathBuf, DatabaseError> {
    Utf8PathBuf::from_path_buf(path.to_owned()).map_err(|p| DatabaseError::Io {
        action: "use a temporary file (path is not UTF-8) in",
        path: dir.to_owned(),
        source: std::io::Error::other(format!("{}", p.display())),
    })
}

/// Decodes a hex string the server produced (`HEX()`, `encode(…, 'hex')`) into text.
pub(crate) fn unhex(
    db: &Database,
    tool: &str,
    action: &'static str,
    hex_text: &str,
) -> Result<String, DatabaseError> {
    hex::decode(hex_text)
        .ok()
        .and_then(|b| String::from_utf8(b).ok())
        .ok_or_else(|| DatabaseError::UnexpectedOutput {
            action,
            target: Target::of(db),
            tool: tool.to_owned(),
            detail: format!("`{hex_text}` is not hex-encoded UTF-8"),
        })
}
