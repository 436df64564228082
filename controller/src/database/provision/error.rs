//! [`ProvisionError`]: why provisioning failed, naming the server and what to do.

use camino::Utf8PathBuf;

use crate::database::{DatabaseError, DbKind};

/// Why provisioning failed. Each variant names the server by its controller.toml name and
/// says what to do; none holds a password.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    /// The admin password file cannot be trusted or read.
    #[error(
        "database server `{server}`: the admin password file {path} {problem}; {fix} \
         (`admin-password-file` of [database-servers.{server}] in controller.toml)"
    )]
    PasswordFile {
        server: String,
        path: Utf8PathBuf,
        problem: String,
        fix: String,
    },
    /// The server refused the admin login or its password.
    #[error(
        "database server `{server}` ({kind} at {address}) refused the admin login `{login}`: \
         check `admin-login` and the password in {password_file} \
         ([database-servers.{server}] in controller.toml); {source}"
    )]
    AdminLogin {
        server: String,
        kind: DbKind,
        address: String,
        login: String,
        password_file: Utf8PathBuf,
        #[source]
        source: DatabaseError,
    },
    /// A step failed on the server. What an earlier step made was taken back, except what
    /// `left` names.
    #[error(
        "database server `{server}` ({kind} at {address}): could not {step}: {source}{}; \
         check that its admin login may create and drop databases and users",
        left_behind(left)
    )]
    Step {
        server: String,
        kind: DbKind,
        address: String,
        step: String,
        left: Vec<String>,
        #[source]
        source: DatabaseError,
    },
    /// Every name tried is taken.
    #[error(
        "database server `{server}`: no free name for requirement `{requirement}` of \
         `{instance}`: `{base}` and `{base}_2` … `{base}_{last}` are all taken by a database or \
         a user; drop the ones no instance uses"
    )]
    NoFreeName {
        server: String,
        instance: String,
        requirement: String,
        base: String,
        last: u32,
    },
    /// A name that provisioning does not make, or an instance name that breaks the rule.
    #[error("`{name}` cannot name a database or user on database server `{server}`: {why}")]
    InvalidName {
        server: String,
        name: String,
        why: String,
    },
    /// The names were made on another server than the one given.
    #[error(
        "`{database}` was made on database server `{made_on}` ({made_kind}), not on \
         `{server}` ({kind}); use that server"
    )]
    WrongServer {
        server: String,
        kind: DbKind,
        database: String,
        made_on: String,
        made_kind: DbKind,
    },
    /// The drop ran, but the server still has what it dropped.
    #[error(
        "database server `{server}` still has {} after dropping it; drop it by hand",
        .left.join(" and ")
    )]
    NotDropped { server: String, left: Vec<String> },
    /// No server of that name in controller.toml.
    #[error(
        "no database server `{server}` in controller.toml (configured: {}); add a \
         [database-servers.{server}] table",
        if .configured.is_empty() { "none".to_owned() } else { .configured.join(", ") }
    )]
    UnknownServer {
        server: String,
        configured: Vec<String>,
    },
    /// The server's answer was not what the query must produce.
    #[error("database server `{server}`: unexpected answer to {what}: `{answer}`")]
    UnexpectedAnswer {
        server: String,
        what: &'static str,
        answer: String,
    },
    /// The operating system's random source could not be read.
    #[error("could not read /dev/urandom for a password: {0}")]
    Random(#[source] std::io::Error),
}

fn left_behind(left: &[String]) -> String {
    if left.is_empty() {
        String::new()
    } else {
        format!(
            "; left behind (undoing failed, drop by hand): {}",
            left.join(", ")
        )
    }
}
