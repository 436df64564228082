//! The one error type of the conformance pieces: each variant names the thing (path, account,
//! database) a person needs to look at.

use camino::Utf8PathBuf;

use aps_controller::database::DatabaseError;
use aps_controller::runner::RunError;

#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    /// The sandbox needs root: it makes and removes accounts.
    #[error(
        "the conformance sandbox needs root to make and remove its tenant account (running as uid {uid})"
    )]
    NotRoot { uid: u32 },
    /// The folder sandboxes live in is unsafe to make homes in.
    #[error("the sandbox folder {path} cannot be used: {why}")]
    UnsafeBase { path: Utf8PathBuf, why: String },
    /// A system tool (useradd, userdel, groupdel) failed.
    #[error("could not {action} for the sandbox account `{account}`: {source}")]
    AccountTool {
        action: &'static str,
        account: String,
        #[source]
        source: Box<RunError>,
    },
    /// The account just made cannot be looked up.
    #[error("the sandbox account `{account}` was made but cannot be looked up: {why}")]
    AccountMissing { account: String, why: String },
    /// A file system operation failed.
    #[error("could not {action} {path}: {source}")]
    Io {
        action: &'static str,
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A folder to seed, damage or capture holds nothing it can work with.
    #[error("{path}: {why}")]
    Folder { path: Utf8PathBuf, why: String },
    /// Reading a web folder's tree failed.
    #[error("could not capture the web folder {path}: {source}")]
    Tree {
        path: Utf8PathBuf,
        #[source]
        source: Box<aps_controller::archive::ArchiveError>,
    },
    /// A database query of the seed, the damage or the capture failed.
    #[error("could not {action} the database `{database}`: {source}")]
    Database {
        action: &'static str,
        database: String,
        #[source]
        source: Box<DatabaseError>,
    },
    /// The database answered something the capture cannot read.
    #[error("unexpected answer while trying to {action} the database `{database}`: {detail}")]
    DatabaseAnswer {
        action: &'static str,
        database: String,
        detail: String,
    },
    /// The run's own controller (its throwaway state beside the sandbox) could not be opened.
    #[error("could not open the conformance run's controller with its state in {state}: {source}")]
    Controller {
        state: Utf8PathBuf,
        #[source]
        source: Box<aps_controller::OperationError>,
    },
    /// The JUnit XML could not be written.
    #[error("could not write the JUnit report {path}: {source}")]
    Junit {
        path: Utf8PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl ConformanceError {
    /// For `map_err`: a failed file system operation on `path`.
    pub(crate) fn io(
        action: &'static str,
        path: impl Into<Utf8PathBuf>,
    ) -> impl FnOnce(std::io::Error) -> Self {
        let path = path.into();
        move |source| ConformanceError::Io {
            action,
            path,
            source,
        }
    }

    /// For `map_err`: a failed query of `database`.
    pub(crate) fn database(
        action: &'static str,
        database: &str,
    ) -> impl FnOnce(DatabaseError) -> Self {
        let database = database.to_owned();
        move |source| ConformanceError::Database {
            action,
            database,
            source: Box::new(source),
        }
    }
}
