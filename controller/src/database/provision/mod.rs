//! Databases the controller makes for an instance, and takes away again: one database and one
//! user per `db` requirement, on a server named in controller.toml (`[database-servers.NAME]`,
//! [`DatabaseServer`]).
//!
//! The SQL is the engine's ([`DbEngine::create_steps`](super::DbEngine)); it runs through the
//! engine's own client (`mysql`/`psql`) as the server's admin login, as an account made up for
//! that one run (the dump tools' kind, so no tenant can read its environment). The admin
//! password is read from its file at each use and reaches the client in its environment, never
//! on a command line. Every name is quoted by the engine, and names are made of `[a-z0-9_]`
//! only, whatever the instance name or the requirement id hold.
//!
//! For an undo that survives a kill, [`choose_names`] first, journal the names, then
//! [`create_named`]: [`drop`] of names never created is a no-op.

mod error;
mod names;
mod secrets;

use std::time::Duration;

use camino::Utf8PathBuf;
use serde::Serialize;

use super::client::{self, Deadline};
use super::engine::AdminStep;
use super::{Database, DatabaseError, DbKind};
use crate::secret::Secret;
pub use error::ProvisionError;
use names::{candidate, check_names, name_base};
pub use secrets::PASSWORD_LEN;
use secrets::{random_password, read_password_file};

/// Time one provisioning call (create, drop, exists) may take on the server, all its
/// statements together.
pub const ADMIN_TIMEOUT: Duration = Duration::from_secs(120);

/// Time the undo of a failed create may take.
const UNDO_TIMEOUT: Duration = Duration::from_secs(60);

/// `base`, then `base_2` … `base_99`: the names tried before giving up.
const LAST_SUFFIX: u32 = 99;

/// What the statements of a provisioning call are said to do in a client's error.
const ACTION: &str = "run the admin statements on";

/// A database server the controller may create databases on: controller.toml
/// `[database-servers.NAME]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DatabaseServer {
    /// The table's name in controller.toml (`NAME`), as errors and `--database ID=NAME` say it.
    pub name: String,
    pub kind: DbKind,
    pub host: String,
    pub port: u16,
    pub admin_login: String,
    /// Read at each use; must be a regular file (not a symlink) owned by root (or by the
    /// controller's own user when it does not run as root) that others may not read.
    pub admin_password_file: Utf8PathBuf,
    /// The version to report instead of asking the server (`version` in controller.toml).
    pub version: Option<String>,
}

/// What to provision: one `db` requirement of one instance.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProvisionSpec<'a> {
    /// The instance name (must follow the instance-name rule).
    pub instance: &'a str,
    /// The requirement's `db:id`, as APP-META.xml spells it (any characters).
    pub requirement: &'a str,
}

pub use super::CreatedDatabase;

/// What [`create`] made: the names, and the resource as the instance record keeps it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvisionedDatabase {
    pub created: CreatedDatabase,
    /// Name, login, random password, host, port and version (no table prefix: that is the
    /// requirement's business).
    pub database: Database,
}

/// Which of a [`CreatedDatabase`]'s two objects a server has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Existence {
    pub database: bool,
    pub user: bool,
}

impl Existence {
    /// Neither is there.
    pub fn is_gone(self) -> bool {
        !self.database && !self.user
    }
}

impl DatabaseServer {
    /// `host:port`, for messages.
    pub fn address(&self) -> String {
        client::server_label(&self.host, self.port)
    }

    /// The admin password, read now from [`Self::admin_password_file`] after checking that
    /// only root (or the controller's own user) may have put it there or can read it.
    pub fn admin_password(&self) -> Result<Secret, ProvisionError> {
        read_password_file(self)
    }

    /// The admin login, connected to the engine's admin database.
    fn admin(&self) -> Result<Database, ProvisionError> {
        Ok(Database {
            kind: self.kind,
            name: self.kind.engine().admin_database().to_owned(),
            login: self.admin_login.clone(),
            password: self.admin_password()?,
            host: self.host.clone(),
            port: self.port,
            version: None,
            prefix: None,
        })
    }

    fn step_error(&self, step: String, left: Vec<String>, source: DatabaseError) -> ProvisionError {
        ProvisionError::Step {
            server: self.name.clone(),
            kind: self.kind,
            address: self.address(),
            step,
            left,
            source,
        }
    }

    fn invalid(&self, name: &str, why: impl Into<String>) -> ProvisionError {
        ProvisionError::InvalidName {
            server: self.name.clone(),
            name: name.to_owned(),
            why: why.into(),
        }
    }
}

/// The server's version: `version` of controller.toml when set, else what the server says
/// (`SELECT VERSION()`, `SHOW server_version`). Checks the admin login either way.
pub fn server_version(server: &DatabaseServer) -> Result<String, ProvisionError> {
    let admin = server.admin()?;
    let deadline = Deadline::new(ADMIN_TIMEOUT);
    client::as_dump_account(|| connect(server, &admin, &deadline))
}

/// Whether `version` (as a server reports it: `10.11.19-MariaDB-…`, `15.18 (Debian …)`) is
/// at least `min` (a requirement's `server-min-version`: `5.0`, `9.1.3`), comparing their
/// leading dotted numbers, a missing part counting as 0. `None` when either has no number.
pub fn version_satisfies(version: &str, min: &str) -> Option<bool> {
    fn numbers(text: &str) -> Option<Vec<u64>> {
        let text = text.trim();
        let end = text
            .find(|c: char| !c.is_ascii_digit() && c != '.')
            .unwrap_or(text.len());
        let parts: Vec<u64> = text[..end]
            .split('.')
            .map_while(|p| p.parse().ok())
            .collect();
        (!parts.is_empty()).then_some(parts)
    }
    let (have, need) = (numbers(version)?, numbers(min)?);
    let len = have.len().max(need.len());
    let padded = |v: &[u64]| -> Vec<u64> { (0..len).map(|i| *v.get(i).unwrap_or(&0)).collect() };
    Some(padded(&have) >= padded(&need))
}

/// What keeps `server` from serving the `db` requirement `req`, in words (empty: nothing):
/// a `server-type` no engine of the server's kind serves, a version below
/// `server-min-version`, or a version that cannot be compared. Asks the server its version
/// (or takes `version` of controller.toml) only when the requirement names a minimum.
pub fn unmet(
    server: &DatabaseServer,
    req: &aps_meta::DbRequirement,
) -> Result<Vec<String>, ProvisionError> {
    let mut unmet = Vec::new();
    if let Some(required) = &req.server_type
        && DbKind::from_server_type(required) != Some(server.kind)
    {
        unmet.push(format!(
            "database `{}` needs a `{required}` server; `{}` is {}",
            req.id, server.name, server.kind
        ));
    }
    if let Some(min) = &req.server_min_version {
        let version = server_version(server)?;
        match version_satisfies(&version, min) {
            Some(true) => {}
            Some(false) => unmet.push(format!(
                "database `{}` needs version {min} or later; `{}` has {version}",
                req.id, server.name
            )),
            None => unmet.push(format!(
                "database `{}` needs version {min} or later; the version `{version}` of `{}` \
                 cannot be compared with it (set `version` of [database-servers.{}])",
                req.id, server.name, server.name
            )),
        }
    }
    Ok(unmet)
}

/// Picks free names for `spec` on `server` without creating anything: `INSTANCE_ID` made of
/// `[a-z0-9_]` (every other character becomes `_`), cut to the engine's length limit, then
/// `_2`, `_3` … until neither a database nor a user has the name.
pub fn choose_names(
    server: &DatabaseServer,
    spec: ProvisionSpec<'_>,
) -> Result<CreatedDatabase, ProvisionError> {
    let engine = server.kind.engine();
    if !crate::registry::instance::is_valid_instance_name(spec.instance) {
        return Err(server.invalid(
            spec.instance,
            "an instance name is 1 to 63 of `a-z`, `0-9`, `.`, `_` and `-`, starting with a \
             letter or digit",
        ));
    }
    let base = name_base(spec, engine.max_name_len());
    let admin = server.admin()?;
    let deadline = Deadline::new(ADMIN_TIMEOUT);
    client::as_dump_account(|| {
        connect(server, &admin, &deadline)?;
        for n in 1..=LAST_SUFFIX {
            let name = candidate(&base, n, engine.max_name_len());
            if existence(server, &admin, &name, &name, &deadline)?.is_gone() {
                return Ok(CreatedDatabase {
                    server: server.name.clone(),
                    kind: server.kind,
                    database: name.clone(),
                    login: name,
                });
            }
        }
        Err(ProvisionError::NoFreeName {
            server: server.name.clone(),
            instance: spec.instance.to_owned(),
            requirement: spec.requirement.to_owned(),
            base: base.clone(),
            last: LAST_SUFFIX,
        })
    })
}

/// Creates the database and the user `names` says, with a random password and all rights on
/// that database only. A failure takes back what this call made (never what already existed:
/// a name taken meanwhile fails the step that would have made it).
pub fn create_named(
    server: &DatabaseServer,
    names: &CreatedDatabase,
) -> Result<ProvisionedDatabase, ProvisionError> {
    check_names(server, names)?;
    let engine = server.kind.engine();
    let password = random_password()?;
    let admin = server.admin()?;
    let deadline = Deadline::new(ADMIN_TIMEOUT);
    let version = client::as_dump_account(|| {
        let version = connect(server, &admin, &deadline)?;
        let steps = engine.create_steps(&names.database, &names.login, password.expose());
        for (done, step) in steps.iter().enumerate() {
            if let Err(source) = client::query(&admin, &step.sql, &deadline, ACTION) {
                let left = undo(&admin, &steps[..done]);
                return Err(server.step_error(step.what.clone(), left, source));
            }
        }
        Ok(version)
    })?;
    Ok(ProvisionedDatabase {
        created: names.clone(),
        database: Database {
            kind: server.kind,
            name: names.database.clone(),
            login: names.login.clone(),
            password,
            host: server.host.clone(),
            port: server.port,
            version: Some(version),
            prefix: None,
        },
    })
}

/// [`choose_names`] then [`create_named`].
pub fn create(
    server: &DatabaseServer,
    spec: ProvisionSpec<'_>,
) -> Result<ProvisionedDatabase, ProvisionError> {
    create_named(server, &choose_names(server, spec)?)
}

/// Drops the database and the user `created` names; what is already gone is fine. Checks
/// afterwards that both are gone.
pub fn drop(server: &DatabaseServer, created: &CreatedDatabase) -> Result<(), ProvisionError> {
    check_names(server, created)?;
    let engine = server.kind.engine();
    let admin = server.admin()?;
    let deadline = Deadline::new(ADMIN_TIMEOUT);
    client::as_dump_account(|| {
        connect(server, &admin, &deadline)?;
        let before = existence(server, &admin, &created.database, &created.login, &deadline)?;
        if before.is_gone() {
            return Ok(());
        }
        for step in engine.drop_steps(&created.database, &created.login, before.user) {
            client::query(&admin, &step.sql, &deadline, ACTION)
                .map_err(|source| server.step_error(step.what.clone(), Vec::new(), source))?;
        }
        let after = existence(server, &admin, &created.database, &created.login, &deadline)?;
        let mut left = Vec::new();
        if after.database {
            left.push(format!("the database `{}`", created.database));
        }
        if after.user {
            left.push(format!("the user `{}`", created.login));
        }
        if left.is_empty() {
            Ok(())
        } else {
            Err(ProvisionError::NotDropped {
                server: server.name.clone(),
                left,
            })
        }
    })
}

/// Whether the server has the database and the user `created` names.
pub fn exists(
    server: &DatabaseServer,
    created: &CreatedDatabase,
) -> Result<Existence, ProvisionError> {
    check_names(server, created)?;
    let admin = server.admin()?;
    let deadline = Deadline::new(ADMIN_TIMEOUT);
    client::as_dump_account(|| {
        connect(server, &admin, &deadline)?;
        existence(server, &admin, &created.database, &created.login, &deadline)
    })
}

/// Logs in as the admin and returns the version ([`server_version`]); a refused login is
/// [`ProvisionError::AdminLogin`].
fn connect(
    server: &DatabaseServer,
    admin: &Database,
    deadline: &Deadline,
) -> Result<String, ProvisionError> {
    let sql = server.kind.engine().version_query();
    match client::query(admin, sql, deadline, "read the version of") {
        Ok(out) => Ok(server
            .version
            .clone()
            .unwrap_or_else(|| out.trim().to_owned())),
        Err(source @ DatabaseError::Authentication { .. }) => Err(ProvisionError::AdminLogin {
            server: server.name.clone(),
            kind: server.kind,
            address: server.address(),
            login: server.admin_login.clone(),
            password_file: server.admin_password_file.clone(),
            source,
        }),
        Err(source) => Err(server.step_error(
            format!("log in as `{}`", server.admin_login),
            Vec::new(),
            source,
        )),
    }
}

fn existence(
    server: &DatabaseServer,
    admin: &Database,
    database: &str,
    user: &str,
    deadline: &Deadline,
) -> Result<Existence, ProvisionError> {
    const WHAT: &str = "whether a database and a user exist";
    let sql = server.kind.engine().exists_query(database, user);
    let out = client::query(admin, &sql, deadline, ACTION)
        .map_err(|source| server.step_error(format!("find out {WHAT}"), Vec::new(), source))?;
    let parsed = out
        .trim()
        .split_once('\t')
        .and_then(|(d, u)| Some((d.parse::<u64>().ok()?, u.parse::<u64>().ok()?)));
    match parsed {
        Some((d, u)) => Ok(Existence {
            database: d > 0,
            user: u > 0,
        }),
        None => Err(ProvisionError::UnexpectedAnswer {
            server: server.name.clone(),
            what: WHAT,
            answer: out.trim().to_owned(),
        }),
    }
}

/// Runs the undo statements of `done` in reverse; returns what could not be taken back.
fn undo(admin: &Database, done: &[AdminStep]) -> Vec<String> {
    // A budget of its own: the failed step may have spent the call's (a timeout).
    let deadline = Deadline::new(UNDO_TIMEOUT);
    done.iter()
        .rev()
        .filter_map(|step| {
            let sql = step.undo.as_ref()?;
            client::query(admin, sql, &deadline, ACTION)
                .err()
                .map(|e| format!("what `{}` made ({e})", step.what))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_by_their_leading_numbers() {
        assert_eq!(
            version_satisfies("10.11.19-MariaDB-0+deb12u1", "5.0"),
            Some(true)
        );
        assert_eq!(
            version_satisfies("10.11.19-MariaDB", "10.11.20"),
            Some(false)
        );
        assert_eq!(
            version_satisfies("15.18 (Debian 15.18-0+deb12u1)", "15"),
            Some(true)
        );
        assert_eq!(version_satisfies("9.6", "10.0"), Some(false));
        assert_eq!(version_satisfies("8.0.36", "8.0.36"), Some(true));
        assert_eq!(version_satisfies("unknown", "5.0"), None);
        assert_eq!(version_satisfies("8.0", ""), None);
    }
}
