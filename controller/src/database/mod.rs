//! Database resources of an instance and the controller's own backup of them: dumps with the
//! servers' own tools (`mysqldump`/`mysql`, `pg_dump`/`psql`), run against real servers.
//!
//! Every tool runs through [`crate::runner::ProcessSpec`]: clean environment, own process
//! group, timeout. Passwords travel in the environment (`MYSQL_PWD`, `PGPASSWORD`), never on
//! a command line, and SQL goes to the tools on stdin from a private temporary file.
//!
//! Dump formats (both plain SQL, so that a backup loads with nothing but the server's own
//! client, on a later server version, and can be read by a person):
//! - MySQL/MariaDB: `mysqldump --single-transaction --routines --triggers --events --hex-blob`
//!   with utf8mb4, no `CREATE DATABASE`/`USE`, so it loads into a database of another name.
//! - PostgreSQL: `pg_dump --format=plain --no-owner --no-privileges`, loaded by
//!   `psql -v ON_ERROR_STOP=1 --single-transaction`: a dump that fails half-way leaves the
//!   database as the wipe left it (empty), never half-loaded.
//!
//! Loading first empties the database object by object ([`wipe`]), not by dropping and
//! creating the database: an instance's login usually may not create databases.

mod client;
mod engine;
mod mysql;
mod postgres;
pub mod provision;
mod psql_scan;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};
use serde::{Deserialize, Serialize};

use crate::secret::Secret;
pub(crate) use engine::DbEngine;

pub use client::{DUMP_UIDS, Target};
pub use psql_scan::{Refusal as DumpRefusal, scan as scan_postgres_dump};

/// The server kind of a database resource (`type` in INSTANCE.toml, `DB_<id>_TYPE`).
///
/// The engines are listed here, in three adjacent places (the variant, [`DbKind::ALL`] and
/// [`DbKind::engine`]); everything else about an engine is its own module's [`DbEngine`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DbKind {
    /// MySQL or MariaDB.
    Mysql,
    Postgresql,
}

impl DbKind {
    /// Every kind, in the order engines are tried when a name could mean several.
    pub const ALL: &'static [DbKind] = &[DbKind::Mysql, DbKind::Postgresql];

    /// The engine that serves this kind: the one place a kind becomes its engine.
    pub(crate) fn engine(self) -> &'static dyn DbEngine {
        match self {
            DbKind::Mysql => &mysql::Mysql,
            DbKind::Postgresql => &postgres::Postgresql,
        }
    }

    /// The value of `DB_<id>_TYPE`, as the standard's `db:server-type` spells it.
    pub fn as_str(self) -> &'static str {
        self.engine().type_name()
    }

    /// The port a record or a server entry without one means (3306, 5432).
    pub fn default_port(self) -> u16 {
        self.engine().default_port()
    }

    /// The kind an APP-META.xml `db:server-type` asks for (`mysql`, `mariadb`, `postgresql`,
    /// `postgres`, `pgsql`; case and surrounding blanks ignored), or `None` for a type no
    /// engine serves.
    pub fn from_server_type(required: &str) -> Option<DbKind> {
        let required = required.trim().to_ascii_lowercase();
        DbKind::ALL
            .iter()
            .copied()
            .find(|kind| kind.engine().server_types().contains(&required.as_str()))
    }
}

impl fmt::Display for DbKind {
    /// The name a person knows the server by (for messages).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.engine().human_name())
    }
}

/// The names of what [`provision::create_named`] makes and [`provision::drop`] takes away: what an undo needs, and
/// no password (it may be journaled).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct CreatedDatabase {
    /// The server's name in controller.toml.
    pub server: String,
    pub kind: DbKind,
    pub database: String,
    pub login: String,
}

/// One database resource of an instance: what `DB_<id>_*` variables carry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct Database {
    #[serde(rename = "type")]
    pub kind: DbKind,
    pub name: String,
    pub login: String,
    pub password: Secret,
    pub host: String,
    pub port: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Table prefix (`DB_<id>_PREFIX`), only when the requirement allows prefixes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prefix: Option<String>,
}

impl Database {
    /// `host:port`, for messages.
    pub fn server(&self) -> String {
        client::server_label(&self.host, self.port)
    }
}

/// What [`dump`] wrote.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub struct DumpInfo {
    pub kind: DbKind,
    /// The database's name on its server.
    pub database: String,
    pub file: Utf8PathBuf,
    /// Size of the dump file in bytes.
    pub size: u64,
    /// SHA-256 of the dump file, lowercase hex.
    pub sha256: String,
    /// Exact row count of every table (`SELECT COUNT(*)`), counted right after the dump; equal
    /// to what the dump holds when nothing wrote to the database meanwhile. PostgreSQL tables
    /// outside the `public` schema are named `schema.table`.
    pub row_counts: BTreeMap<String, u64>,
    /// The server's version as it reports it (`SELECT VERSION()`, `SHOW server_version`).
    pub server_version: String,
    /// The program that wrote the dump (absolute path).
    pub tool: String,
}

/// Why a database operation failed. Each variant names the database and its server; none
/// holds a password.
#[derive(Debug, thiserror::Error)]
pub enum DatabaseError {
    /// The server refused the login.
    #[error(
        "{tool} could not log in to {target} as `{login}`: the server refused the login or \
         password{}",
        client::stderr_block(stderr)
    )]
    Authentication {
        target: Box<Target>,
        login: String,
        tool: String,
        stderr: String,
    },
    /// No server answered at host:port (or the socket).
    #[error(
        "{tool} could not reach the server of {target}: is it running and listening there?{}",
        client::stderr_block(stderr)
    )]
    Unreachable {
        target: Box<Target>,
        tool: String,
        stderr: String,
    },
    /// The server answered, but has no database of that name.
    #[error("{target} does not exist{}", client::stderr_block(stderr))]
    NoSuchDatabase {
        target: Box<Target>,
        tool: String,
        stderr: String,
    },
    /// A dump, query or wipe failed for another reason.
    #[error(
        "{tool} could not {action} {target} ({status}){}",
        client::stderr_block(stderr)
    )]
    Tool {
        action: &'static str,
        target: Box<Target>,
        tool: String,
        status: String,
        stderr: String,
    },
    /// The dump file did not load.
    #[error(
        "the dump {file} did not load into {target}: {tool} failed ({status}){}",
        client::stderr_block(stderr)
    )]
    Load {
        target: Box<Target>,
        file: Utf8PathBuf,
        tool: String,
        status: String,
        stderr: String,
    },
    /// A tool ran past the time it was given and was killed with its process group.
    #[error(
        "{tool} did not {action} {target} within {timeout:?} and was killed{}",
        client::stderr_block(stderr)
    )]
    Timeout {
        action: &'static str,
        target: Box<Target>,
        tool: String,
        timeout: Duration,
        stderr: String,
    },
    /// The tool could not be started at all.
    #[error("could not run {tool} to {action} {target}: {source}")]
    Start {
        action: &'static str,
        target: Box<Target>,
        tool: String,
        #[source]
        source: Box<crate::runner::RunError>,
    },
    /// The client tools are not installed.
    #[error(
        "{program} not found (looked in {searched}): install the {kind} client tools to back up \
         or restore {kind} databases"
    )]
    ToolMissing {
        kind: DbKind,
        program: String,
        searched: String,
    },
    /// Wiping left objects behind (typically: owned by another login).
    #[error(
        "{target} is not empty after wiping it; left: {}; the login may not drop objects it \
         does not own", .remaining.join(", ")
    )]
    NotEmpty {
        target: Box<Target>,
        remaining: Vec<String>,
    },
    /// A tool's output was not what the query must produce.
    #[error("unexpected output from {tool} while trying to {action} {target}: {detail}")]
    UnexpectedOutput {
        action: &'static str,
        target: Box<Target>,
        tool: String,
        detail: String,
    },
    /// The name cannot be passed to the tools safely.
    #[error("{target}: {why}")]
    InvalidName {
        target: Box<Target>,
        why: &'static str,
    },
    /// The dump holds something that would act outside the database (a psql meta-command):
    /// refused before the database is touched.
    #[error("the dump {file} is refused, nothing was loaded: line {line}: {reason}")]
    UnsafeDump {
        file: Utf8PathBuf,
        line: u64,
        reason: String,
    },
    /// Reading or writing a local file failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl DatabaseError {
    /// For `map_err`: a failed local file operation on `path`.
    pub(crate) fn io(action: &'static str, path: &Utf8Path) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.to_owned();
        move |source| DatabaseError::Io {
            action,
            path,
            source,
        }
    }
}

/// Runs `f` with every client tool it starts on this thread running as `account` (the
/// instance's system account; `None`: as the controller): `mysql` and `psql`, which load dumps
/// and run queries. The dump tools run as an account of their own ([`dump`]).
/// The tools get their input and output as descriptors the controller opened, so they need no
/// access to the controller's files.
pub fn as_account<R>(account: Option<&crate::account::Account>, f: impl FnOnce() -> R) -> R {
    client::with_tool_account(account, f)
}

/// Dumps the database into `out_file` (created mode 0600 or truncated) and describes the
/// result. On failure `out_file` is removed: a partial dump is never left behind.
///
/// The dump tool and the queries describing its result run as an account of their own made up
/// for this run (when the controller is root), not as [`as_account`]'s: the tenant could
/// otherwise `ptrace` them and write what it likes into a dump the controller then vouches for.
pub fn dump(
    db: &Database,
    out_file: &Utf8Path,
    timeout: Duration,
) -> Result<DumpInfo, DatabaseError> {
    client::as_dump_account(|| dump_as_is(db, out_file, timeout))
}

fn dump_as_is(
    db: &Database,
    out_file: &Utf8Path,
    timeout: Duration,
) -> Result<DumpInfo, DatabaseError> {
    let deadline = client::Deadline::new(timeout);
    let tool = dump_spec(db).and_then(|(spec, program)| {
        client::run(db, spec.stdout_to_file(out_file), "dump", &deadline, None)?;
        Ok(program)
    });
    let tool = match tool {
        Ok(tool) => tool,
        Err(e) => {
            let _ = std::fs::remove_file(out_file);
            return Err(e);
        }
    };
    let described = (|| {
        let (size, sha256) = crate::digest::sha256_file(out_file)
            .map_err(DatabaseError::io("read the dump", out_file))?;
        let row_counts = row_counts_within(db, &deadline)?;
        let server_version = server_version_within(db, &deadline)?;
        Ok(DumpInfo {
            kind: db.kind,
            database: db.name.clone(),
            file: out_file.to_owned(),
            size,
            sha256,
            row_counts,
            server_version,
            tool: tool.clone(),
        })
    })();
    if described.is_err() {
        let _ = std::fs::remove_file(out_file);
    }
    described
}

/// The dump tool of [`dump`], with the same arguments, clean environment and account of its
/// own, as a process whose standard output the
/// caller takes ([`ProcessSpec::stdout_to_pipe`](crate::runner::ProcessSpec::stdout_to_pipe)):
/// the repository store streams dumps into its snapshots and never writes them to a file.
/// No timeout is set; the caller sets one and checks the result. Returns the spec and the
/// program's path.
pub fn dump_process(db: &Database) -> Result<(crate::runner::ProcessSpec, String), DatabaseError> {
    client::as_dump_account(|| dump_spec(db))
}

/// The engine's dump command (stdout not yet directed) and the program it runs.
fn dump_spec(db: &Database) -> Result<(crate::runner::ProcessSpec, String), DatabaseError> {
    db.kind.engine().dump_spec(db)
}

/// Empties the database ([`wipe`]) and loads the dump `from_file` into it. PostgreSQL loads in
/// one transaction; MySQL cannot roll back DDL, so a failed load there leaves part of the dump
/// behind (the caller restores its safety copy).
pub fn load(db: &Database, from_file: &Utf8Path, timeout: Duration) -> Result<(), DatabaseError> {
    // Fail on a missing dump before anything is dropped.
    std::fs::metadata(from_file).map_err(|source| DatabaseError::Io {
        action: "read the dump",
        path: from_file.to_owned(),
        source,
    })?;
    // A dump that would act outside the database is refused before anything is dropped.
    let engine = db.kind.engine();
    let checked = engine.check_dump(from_file)?;
    let deadline = client::Deadline::new(timeout);
    wipe_within(db, &deadline)?;
    engine.load(db, from_file, checked, &deadline)
}

/// Drops every table, view, sequence, routine, event and type in the database (for
/// PostgreSQL: every schema but `public`, and everything in `public`), leaving the database
/// itself and its grants. Used before loading a dump and before a `sufficient` restore.
pub fn wipe(db: &Database, timeout: Duration) -> Result<(), DatabaseError> {
    wipe_within(db, &client::Deadline::new(timeout))
}

/// Exact row count of every table, by `SELECT COUNT(*)`. Keys as in [`DumpInfo::row_counts`].
pub fn row_counts(
    db: &Database,
    timeout: Duration,
) -> Result<BTreeMap<String, u64>, DatabaseError> {
    row_counts_within(db, &client::Deadline::new(timeout))
}

/// The server's version string, e.g. `10.11.19-MariaDB-0+deb12u1` or `15.18 (Debian …)`.
pub fn server_version(db: &Database, timeout: Duration) -> Result<String, DatabaseError> {
    server_version_within(db, &client::Deadline::new(timeout))
}

/// Runs SQL as the database's login and returns the client's text output: for MySQL
/// `mysql --batch --skip-column-names` (tab-separated, `\t \n \\` escaped, `NULL` for null),
/// for PostgreSQL `psql -A -t` with a tab separator and `\N` for null. For checks and restore
/// drills; an error in the SQL is an error.
pub fn query(db: &Database, sql: &str, timeout: Duration) -> Result<String, DatabaseError> {
    client::query(db, sql, &client::Deadline::new(timeout), "query")
}

/// [`query`] run as an account of its own made up for this one run, as the dump tools are
/// ([`dump`]), whatever [`as_account`] set: for reads the controller itself vouches for (the
/// conformance checks' capture of a tenant's database), which the tenant must not be able to
/// `ptrace` or signal.
pub fn query_as_own_account(
    db: &Database,
    sql: &str,
    timeout: Duration,
) -> Result<String, DatabaseError> {
    client::as_dump_account(|| query(db, sql, timeout))
}

fn wipe_within(db: &Database, deadline: &client::Deadline) -> Result<(), DatabaseError> {
    db.kind.engine().wipe(db, deadline)
}

fn row_counts_within(
    db: &Database,
    deadline: &client::Deadline,
) -> Result<BTreeMap<String, u64>, DatabaseError> {
    db.kind.engine().row_counts(db, deadline)
}

fn server_version_within(
    db: &Database,
    deadline: &client::Deadline,
) -> Result<String, DatabaseError> {
    let sql = db.kind.engine().version_query();
    let out = client::query(db, sql, deadline, "read the version of")?;
    Ok(out.trim().to_owned())
}
