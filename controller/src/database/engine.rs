//! The one interface a database engine implements ([`DbEngine`]): its names, port, client
//! programs, how they connect, what their errors mean, and the SQL of a dump, a load, a wipe,
//! row counts and a size estimate. `mysql.rs` and `postgres.rs` implement it; [`DbKind::engine`]
//! maps a kind to its engine, and the rest of the crate asks the engine, never the kind.

use std::collections::BTreeMap;

use camino::{Utf8Path, Utf8PathBuf};

use super::client::Deadline;
use super::{Database, DatabaseError, DbKind};
use crate::runner::ProcessSpec;

/// What a client tool's stderr says went wrong, when it says something an engine knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failure {
    /// The server refused the login, its password, or the login's use of the database.
    Authentication,
    /// The server answered but has no database of that name.
    NoSuchDatabase,
    /// No server answered.
    Unreachable,
}

/// A dump that passed the engine's checks, ready to load once the database is wiped.
#[derive(Debug, Default)]
pub(crate) struct CheckedDump {
    /// The copy to load instead of the dump itself, when the check made one.
    pub(crate) copy: Option<tempfile::NamedTempFile>,
    /// The client refuses client-side commands by itself (psql's `\restrict`).
    pub(crate) restricting: bool,
}

/// One SQL statement batch of provisioning, run on an admin connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AdminStep {
    /// What it does, for errors: "create the database `x`".
    pub(crate) what: String,
    pub(crate) sql: String,
    /// What takes it back when a later step fails; `None` when nothing needs taking back.
    pub(crate) undo: Option<String>,
}

/// One database engine. Implemented once per engine module; object safe, so that
/// [`DbKind::engine`] returns `&'static dyn DbEngine`.
pub(crate) trait DbEngine: Sync {
    /// The kind this engine serves.
    fn kind(&self) -> DbKind;

    /// The value of `DB_<id>_TYPE` and of INSTANCE.toml's `type`, as the standard's
    /// `db:server-type` spells it (equal to the serde name of [`Self::kind`]).
    fn type_name(&self) -> &'static str;

    /// The name a person knows the server by (for messages).
    fn human_name(&self) -> &'static str;

    /// The `db:server-type` values (lowercase) an APP-META.xml requirement may use for it.
    fn server_types(&self) -> &'static [&'static str];

    /// The port a record or a server entry without one means.
    fn default_port(&self) -> u16;

    /// The interactive client's program names, preferred first.
    fn client_programs(&self) -> &'static [&'static str];

    /// The dump tool's program names, preferred first.
    fn dump_programs(&self) -> &'static [&'static str];

    /// Folders searched for the programs before the runner's safe PATH.
    fn program_dirs(&self) -> Vec<Utf8PathBuf> {
        Vec::new()
    }

    /// `spec` with the connection to `db` added: the password in the environment, never on
    /// the command line. The database name is added by the caller where the tool needs it
    /// as an argument.
    fn connect(&self, spec: ProcessSpec, db: &Database) -> ProcessSpec;

    /// The interactive client, connected to `db`, with the arguments that make it print
    /// query results as tab-separated lines (stdin and stdout not yet directed).
    fn query_spec(&self, db: &Database) -> Result<ProcessSpec, DatabaseError>;

    /// What a failed tool's stderr (lowercased) means, when it is one of the [`Failure`]s.
    fn classify(&self, stderr_lower: &str) -> Option<Failure>;

    /// The dump command (stdout not yet directed) and the program it runs.
    fn dump_spec(&self, db: &Database) -> Result<(ProcessSpec, String), DatabaseError>;

    /// Refuses a dump that must not be loaded, before the database is touched.
    fn check_dump(&self, from: &Utf8Path) -> Result<CheckedDump, DatabaseError>;

    /// Loads the dump `from` (named in errors), checked by [`Self::check_dump`], into the
    /// wiped database.
    fn load(
        &self,
        db: &Database,
        from: &Utf8Path,
        checked: CheckedDump,
        deadline: &Deadline,
    ) -> Result<(), DatabaseError>;

    /// Drops every object of the database, leaving the database and its grants.
    fn wipe(&self, db: &Database, deadline: &Deadline) -> Result<(), DatabaseError>;

    /// Exact row count of every table (keys as in [`super::DumpInfo::row_counts`]).
    fn row_counts(
        &self,
        db: &Database,
        deadline: &Deadline,
    ) -> Result<BTreeMap<String, u64>, DatabaseError>;

    /// The query whose one line of output is the server's version string.
    fn version_query(&self) -> &'static str;

    /// The query whose one line of output is the data size of the current database in
    /// bytes (tables' data, not indexes).
    fn size_query(&self) -> &'static str;

    /// The database an admin connection opens: one every server has and any login may use.
    fn admin_database(&self) -> &'static str;

    /// The longest name the engine takes for a database and for a user alike.
    fn max_name_len(&self) -> usize;

    /// What comes before the opening quote of a string literal whose backslashes escape
    /// (PostgreSQL's `E`; MySQL's literals escape by default).
    fn escape_literal_prefix(&self) -> &'static str;

    /// `text` as a quoted string literal, whatever it holds: backslashes and quotes doubled.
    /// Under MySQL's NO_BACKSLASH_ESCAPES it still is one closed literal (with its backslashes
    /// doubled).
    fn quote_literal(&self, text: &str) -> String {
        format!(
            "{}'{}'",
            self.escape_literal_prefix(),
            text.replace('\\', "\\\\").replace('\'', "''")
        )
    }

    /// The query whose one line is `D\tU`: how many databases named `database` and users
    /// named `user` (any host) the server has.
    fn exists_query(&self, database: &str, user: &str) -> String;

    /// The steps that create the database `database` and the user `user` (password
    /// `password`) whose rights are all on that database and none elsewhere.
    fn create_steps(&self, database: &str, user: &str, password: &str) -> Vec<AdminStep>;

    /// The steps that drop them; each succeeds when its object is already gone.
    /// `user_exists`: whether the user is there now (some engines need it to drop first
    /// what the user owns).
    fn drop_steps(&self, database: &str, user: &str, user_exists: bool) -> Vec<AdminStep>;

    /// The interactive client's program, found.
    fn find_client(&self) -> Result<Utf8PathBuf, DatabaseError> {
        super::client::find_program(self.kind(), self.client_programs(), self.program_dirs())
    }

    /// The dump tool's program, found.
    fn find_dump(&self) -> Result<Utf8PathBuf, DatabaseError> {
        super::client::find_program(self.kind(), self.dump_programs(), self.program_dirs())
    }
}

#[cfg(test)]
mod tests {
    use super::super::DbKind;

    #[test]
    fn each_kind_maps_to_its_own_engine_and_names() {
        for &kind in DbKind::ALL {
            assert_eq!(kind.engine().kind(), kind);
            // INSTANCE.toml's `type` is the serde name; DB_<id>_TYPE is `as_str`: one value.
            let serialized = serde_json::to_string(&kind).unwrap();
            assert_eq!(serialized, format!("\"{}\"", kind.as_str()));
            assert_eq!(DbKind::from_server_type(kind.as_str()), Some(kind));
        }
        assert_eq!(DbKind::Mysql.to_string(), "MySQL/MariaDB");
        assert_eq!(DbKind::Postgresql.to_string(), "PostgreSQL");
        assert_eq!(DbKind::Mysql.default_port(), 3306);
        assert_eq!(DbKind::Postgresql.default_port(), 5432);
    }

    #[test]
    fn server_types_of_app_meta_find_their_kind() {
        for (required, kind) in [
            ("mysql", Some(DbKind::Mysql)),
            (" MariaDB ", Some(DbKind::Mysql)),
            ("PostgreSQL", Some(DbKind::Postgresql)),
            ("postgres", Some(DbKind::Postgresql)),
            ("pgsql", Some(DbKind::Postgresql)),
            ("sqlite", None),
            ("microsoft:sqlserver", None),
            ("", None),
        ] {
            assert_eq!(DbKind::from_server_type(required), kind, "{required:?}");
        }
    }
}
