//! What a registration checks beyond the file and its package, and `instance check` again
//! later: that no other instance uses the same web folders or databases, and that each
//! database's login works (a real connection and a trivial query, with the client tools
//! running as the instance's work runs them). A login that does not work would otherwise be
//! found at the first backup, at night; a folder or database shared by two instances would be
//! emptied for one by a restore of the other.

use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use super::instance::Instance;
use super::validate::Problem;
use crate::account::Account;
use crate::config::ControllerConfig;
use crate::database::{self, Database, DatabaseError};
use crate::error::kind::ErrorKind;

/// The whole time one database's check may take: the tools' own connect timeout is 15 s, so a
/// server that does not answer is reported within this, never a hang of the registration.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// Web folders and databases of `instance` that another instance of `others` already uses
/// (the instance's own name is skipped, so that `--replace` does not collide with itself).
pub fn conflicts(instance: &Instance, others: &[Instance]) -> Vec<Problem> {
    let mut problems = Vec::new();
    let others: Vec<&Instance> = others.iter().filter(|o| o.name != instance.name).collect();
    for (url, dir) in &instance.web_dirs {
        let mine = forms(dir);
        'others: for other in &others {
            for (other_url, other_dir) in &other.web_dirs {
                if let Some(how) = overlap(&mine, &forms(other_dir)) {
                    problems.push(Problem::WebDirTaken {
                        url: url.clone(),
                        path: dir.clone(),
                        how,
                        other: other.name.clone(),
                        other_url: other_url.clone(),
                        other_path: other_dir.clone(),
                    });
                    // One message per mapping and instance is enough to act on.
                    continue 'others;
                }
            }
        }
    }
    for (id, db) in &instance.databases {
        for other in &others {
            if let Some((other_id, _)) = other.databases.iter().find(|(_, o)| same_database(db, o))
            {
                problems.push(Problem::DatabaseTaken {
                    id: id.clone(),
                    target: database::Target {
                        kind: db.kind,
                        database: db.name.clone(),
                        server: db.server(),
                    }
                    .to_string(),
                    other: other.name.clone(),
                    other_id: other_id.clone(),
                });
            }
        }
    }
    problems
}

/// The folder as written and, when it differs, with symlinks and `..` resolved: a path through
/// a symlink to another instance's folder is that folder.
fn forms(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = vec![dir.to_owned()];
    if let Some(real) = crate::paths::resolve_existing(dir)
        && real != dir
    {
        out.push(real);
    }
    out
}

/// `is`, `lies inside` or `holds` when one of `a`'s forms and one of `b`'s overlap.
fn overlap(a: &[Utf8PathBuf], b: &[Utf8PathBuf]) -> Option<&'static str> {
    for x in a {
        for y in b {
            if x == y {
                return Some("is");
            }
            // Component-wise: /srv/blog2 does not lie inside /srv/blog.
            if x.starts_with(y) {
                return Some("lies inside");
            }
            if y.starts_with(x) {
                return Some("holds");
            }
        }
    }
    None
}

/// Same server (host as a person writes it, the loopback names taken as one), same port, same
/// kind, same database name.
fn same_database(a: &Database, b: &Database) -> bool {
    fn host(h: &str) -> String {
        let h = h.trim().trim_start_matches('[').trim_end_matches(']');
        match h.to_ascii_lowercase().as_str() {
            "localhost" | "127.0.0.1" | "::1" => "loopback".to_owned(),
            other => other.to_owned(),
        }
    }
    a.kind == b.kind && a.port == b.port && a.name == b.name && host(&a.host) == host(&b.host)
}

/// Connects to `db` with its login and runs a trivial query (the server's version), the client
/// tool running as `account` (`None`: as the controller). Returns the version.
pub fn connect(
    db: &Database,
    account: Option<&Account>,
    timeout: Duration,
) -> Result<String, DatabaseError> {
    database::as_account(account, || database::server_version(db, timeout))
}

/// The message of a failed [`connect`]: the tool's and server's words on one line, then what to
/// change.
pub fn connect_message(id: &str, db: &Database, e: &DatabaseError) -> String {
    let said = e
        .to_string()
        .replace("; stderr:\n", "; the server said: ")
        .lines()
        .map(str::trim)
        .collect::<Vec<_>>()
        .join(" ");
    let fix = match e {
        DatabaseError::Authentication { .. } => format!(
            "check `login` and `password` in [databases.{id}], and that the server lets `{}` \
             log in from this host and use the database",
            db.login
        ),
        DatabaseError::NoSuchDatabase { .. } => {
            format!("create the database, or correct `name` in [databases.{id}]")
        }
        DatabaseError::Unreachable { .. } | DatabaseError::Timeout { .. } => format!(
            "check `host` and `port` in [databases.{id}], and that the server runs and accepts \
             connections from this host"
        ),
        DatabaseError::ToolMissing { .. } => "install the client tools".to_owned(),
        _ => format!("check [databases.{id}]"),
    };
    format!("cannot connect: {said}; {fix}")
}

/// One line of `instance check`: what was checked, and what was found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Check {
    /// `account`, `web-dirs."/"`, `databases.main`: the key of INSTANCE.toml it concerns.
    pub check: String,
    pub ok: bool,
    pub message: String,
    /// What an operation would fail with, when not ok.
    #[serde(skip)]
    pub kind: Option<ErrorKind>,
}

impl Check {
    fn ok(check: String, message: String) -> Self {
        Check {
            check,
            ok: true,
            message,
            kind: None,
        }
    }

    fn problem(check: String, kind: ErrorKind, message: String) -> Self {
        Check {
            check,
            ok: false,
            message,
            kind: Some(kind),
        }
    }
}

/// What registration checks, done again for a registered `instance` (`others`: every registered
/// instance; the instance itself among them is skipped): its account, each web folder (exists,
/// no system folder, owned by the account, no other instance's), each database (no other
/// instance's, and its login works, as the tools run today). Every check is reported.
pub fn check_instance(
    config: &ControllerConfig,
    instance: &Instance,
    others: &[Instance],
    timeout: Duration,
) -> Vec<Check> {
    let mut checks = Vec::new();
    let (account, account_check) = account_check(config, instance);
    let account_ok = account_check.ok;
    checks.push(account_check);
    let conflicts = conflicts(instance, others);
    let owner_checked = account
        .as_ref()
        .filter(|_| crate::account::controller_is_root());
    let folder_problems =
        super::trust::web_dir_problems(instance, owner_checked, config.state.root(), true);
    for (url, dir) in &instance.web_dirs {
        let name = format!("web-dirs.{url:?}");
        let mut found: Vec<String> = Vec::new();
        let mut shown = dir.to_string();
        match std::fs::symlink_metadata(dir) {
            // The root folder was there at registration; a child mapping's may be made later.
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && instance.root_web_dir() == Some(dir) =>
            {
                found.push(format!(
                    "{dir} does not exist: a backup would find nothing there; create it or \
                     register the instance again with the right folder"
                ))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                shown = format!("{dir} (not there yet: a restore makes it)");
            }
            Err(e) => found.push(format!("{dir}: {e}")),
            Ok(_) => {}
        }
        found.extend(
            folder_problems
                .iter()
                .chain(&conflicts)
                .filter(|p| {
                    matches!(p, Problem::WebDirNotAllowed { url: u, .. }
                        | Problem::WebDirTaken { url: u, .. } if u == url)
                })
                .map(|p| strip_key(&p.to_string())),
        );
        checks.push(if found.is_empty() {
            Check::ok(name, shown)
        } else {
            Check::problem(name, ErrorKind::AccountRefused, found.join("; "))
        });
    }
    for (id, db) in &instance.databases {
        let name = format!("databases.{id}");
        let taken: Vec<String> = conflicts
            .iter()
            .filter(|p| matches!(p, Problem::DatabaseTaken { id: i, .. } if i == id))
            .map(|p| strip_key(&p.to_string()))
            .collect();
        if !taken.is_empty() {
            checks.push(Check::problem(name, ErrorKind::Usage, taken.join("; ")));
            continue;
        }
        if !account_ok {
            checks.push(Check::problem(
                name,
                ErrorKind::AccountRefused,
                "not checked: the tools would run as the instance's account, which cannot be \
                 used (see `account`)"
                    .to_owned(),
            ));
            continue;
        }
        let runs_as = account
            .as_ref()
            .filter(|_| crate::account::controller_is_root());
        checks.push(match connect(db, runs_as, timeout) {
            Ok(version) => Check::ok(
                name,
                format!(
                    "connected as `{}` to {} database `{}` on {}: server {version}",
                    db.login,
                    db.kind,
                    db.name,
                    db.server()
                ),
            ),
            Err(e) => Check::problem(
                name,
                ErrorKind::ResourceFailed,
                format!(
                    "{}; then register the instance again with the right facts \
                     (`aps-controller instance register --file INSTANCE.toml --replace`)",
                    connect_message(id, db, &e)
                ),
            ),
        });
    }
    checks
}

/// A problem's text without its leading `key: ` (the check's name says it).
fn strip_key(text: &str) -> String {
    match text.split_once(": ") {
        Some((_, rest)) => rest.to_owned(),
        None => text.to_owned(),
    }
}

/// The account the instance's work runs as, as an operation resolves it, and its check.
fn account_check(config: &ControllerConfig, instance: &Instance) -> (Option<Account>, Check) {
    let name = "account".to_owned();
    if !crate::account::controller_is_root() {
        let me = Account::current();
        return (
            None,
            Check::ok(
                name,
                format!(
                    "runs as the controller's own user {:?} (the controller is not root)",
                    me.name
                ),
            ),
        );
    }
    match config.instance_account(instance) {
        Ok(account) => {
            let shown = account.as_ref().map_or_else(
                || "the controller".to_owned(),
                |a| format!("{:?} (uid {})", a.name, a.uid),
            );
            (account, Check::ok(name, format!("runs as {shown}")))
        }
        Err(refused) => (
            None,
            Check::problem(name, ErrorKind::AccountRefused, refused.reason),
        ),
    }
}
