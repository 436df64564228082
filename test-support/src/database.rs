//! Real database servers for tests of any crate: a fresh database and login per test.
//!
//! `scripts/ci/start-services.sh` starts MariaDB and PostgreSQL on loopback and writes their
//! admin logins to `/tmp/aps-ci/services.env`; environment variables of the same names
//! (`APS_TEST_MYSQL_HOST`, `…_PORT`, `…_USER`, `…_PASSWORD`, and `APS_TEST_PG_*`) override the
//! file, and `APS_TEST_SERVICES_ENV` names another file.
//!
//! ```no_run
//! use aps_controller::database::DbKind;
//! use test_support::database::TestServers;
//! let Some(servers) = TestServers::from_env() else { return }; // only with APS_TEST_NO_DB=1
//! let db = servers.create_database(DbKind::Mysql, "my_test"); // a fresh database and login
//! // … use `db` (derefs to `Database`); both are dropped with it.
//! ```
//!
//! Missing or unreachable servers fail the test with a message saying how to start them: a
//! silently skipped test would hide missing infrastructure. Only `APS_TEST_NO_DB=1` skips.

use std::collections::BTreeMap;
use std::io::Read;
use std::ops::Deref;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aps_controller::database::{self, Database, DbKind};
use aps_controller::secret::Secret;
use camino::Utf8Path;

/// Where start-services.sh writes the connection facts.
pub const DEFAULT_SERVICES_ENV: &str = "/tmp/aps-ci/services.env";

const HINT: &str = "start the test servers with scripts/ci/start-services.sh (scripts/test does \
                    it too), or set APS_TEST_NO_DB=1 to skip database tests on purpose";

/// Time allowed for one admin statement batch on the test servers.
const ADMIN_TIMEOUT: Duration = Duration::from_secs(60);

/// An admin login of a test server (may create databases and logins).
#[derive(Debug, Clone)]
pub struct ServerLogin {
    pub host: String,
    pub port: u16,
    pub user: String,
    pub password: Secret,
}

/// The test servers' admin logins.
#[derive(Debug, Clone)]
pub struct TestServers {
    pub mysql: Option<ServerLogin>,
    pub postgres: Option<ServerLogin>,
    /// Where the facts came from, for messages.
    source: String,
}

impl TestServers {
    /// The servers from the environment and the services file. `None` only when
    /// `APS_TEST_NO_DB=1`; panics (failing the test) when neither server is configured.
    pub fn from_env() -> Option<Self> {
        if crate::root::skipped_on_purpose("APS_TEST_NO_DB", "database test") {
            return None;
        }
        let path = std::env::var("APS_TEST_SERVICES_ENV").unwrap_or_else(|_| {
            match std::env::var("APS_CI_STATE_DIR") {
                Ok(dir) => format!("{dir}/services.env"),
                Err(_) => DEFAULT_SERVICES_ENV.to_owned(),
            }
        });
        let mut facts: BTreeMap<String, String> = match std::fs::read_to_string(&path) {
            Ok(text) => parse_env_file(&text),
            Err(_) => BTreeMap::new(),
        };
        for (key, value) in std::env::vars() {
            if key.starts_with("APS_TEST_") {
                facts.insert(key, value);
            }
        }
        let login = |prefix: &str| -> Option<ServerLogin> {
            let get = |what: &str| facts.get(&format!("APS_TEST_{prefix}_{what}")).cloned();
            Some(ServerLogin {
                host: get("HOST")?,
                port: get("PORT")?.parse().ok()?,
                user: get("USER")?,
                password: Secret::new(get("PASSWORD")?),
            })
        };
        let servers = Self {
            mysql: login("MYSQL"),
            postgres: login("PG"),
            source: format!("{path} and APS_TEST_* variables"),
        };
        if servers.mysql.is_none() && servers.postgres.is_none() {
            panic!(
                "no test database servers configured (looked at {}): {HINT}",
                servers.source
            );
        }
        Some(servers)
    }

    /// The admin login for `kind`; panics when it is not configured.
    pub fn login(&self, kind: DbKind) -> &ServerLogin {
        let login = match kind {
            DbKind::Mysql => self.mysql.as_ref(),
            DbKind::Postgresql => self.postgres.as_ref(),
        };
        login.unwrap_or_else(|| {
            panic!(
                "no {kind} test server configured in {}: {HINT}",
                self.source
            )
        })
    }

    /// The admin login as a [`Database`] on the server's maintenance database.
    pub fn admin(&self, kind: DbKind) -> Database {
        let login = self.login(kind);
        Database {
            kind,
            name: match kind {
                DbKind::Mysql => "mysql".to_owned(),
                DbKind::Postgresql => "postgres".to_owned(),
            },
            login: login.user.clone(),
            password: login.password.clone(),
            host: login.host.clone(),
            port: login.port,
            version: None,
            prefix: None,
        }
    }

    /// Writes the admin password of the `kind` server into `dir/NAME.admin-password` (mode
    /// 0600) and returns the controller.toml table `[database-servers.NAME]` that names it,
    /// for a test's controller.toml. Panics when the file cannot be written.
    pub fn server_section(&self, kind: DbKind, name: &str, dir: &Utf8Path) -> String {
        use std::io::Write;
        use std::os::unix::fs::OpenOptionsExt;
        let login = self.login(kind);
        let password_file = dir.join(format!("{name}.admin-password"));
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&password_file)
            .and_then(|mut f| writeln!(f, "{}", login.password.expose()))
            .unwrap_or_else(|e| panic!("could not write {password_file}: {e}"));
        // TOML basic strings: backslash and quote escaped.
        let quoted = |s: &str| format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""));
        format!(
            "[database-servers.{name}]\ntype = {}\nhost = {}\nport = {}\nadmin-login = {}\n\
             admin-password-file = {}\n",
            quoted(kind.as_str()),
            quoted(&login.host),
            login.port,
            quoted(&login.user),
            quoted(password_file.as_str()),
        )
    }

    /// Creates a fresh, empty database and a login of its own (random password) that has all
    /// rights on it and none elsewhere, as a hosting panel gives an instance. Names are
    /// `apst_<hint>_<random>`, so tests running in parallel never share one. Both are
    /// dropped with the returned value. Panics when the server does not answer.
    pub fn create_database(&self, kind: DbKind, hint: &str) -> TestDatabase {
        let admin = self.admin(kind);
        let name = unique_name(hint);
        let password = random_hex(16);
        let sql = match kind {
            DbKind::Mysql => format!(
                "CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci;\n\
                 CREATE USER '{name}'@'%' IDENTIFIED BY '{password}';\n\
                 GRANT ALL PRIVILEGES ON `{name}`.* TO '{name}'@'%';\n"
            ),
            DbKind::Postgresql => format!(
                "CREATE ROLE \"{name}\" LOGIN PASSWORD '{password}';\n\
                 CREATE DATABASE \"{name}\" OWNER \"{name}\" ENCODING 'UTF8' TEMPLATE template0;\n"
            ),
        };
        if let Err(e) = database::query(&admin, &sql, ADMIN_TIMEOUT) {
            panic!(
                "could not create a {kind} test database on {} as `{}`: {e}\n{HINT}",
                admin.server(),
                admin.login
            );
        }
        TestDatabase {
            db: Database {
                kind,
                name: name.clone(),
                login: name,
                password: Secret::new(password),
                host: admin.host.clone(),
                port: admin.port,
                version: None,
                prefix: None,
            },
            admin,
        }
    }
}

/// [`TestServers::from_env`] then [`TestServers::create_database`]: `None` only with
/// `APS_TEST_NO_DB=1`.
pub fn create_database(kind: DbKind, hint: &str) -> Option<TestDatabase> {
    TestServers::from_env().map(|s| s.create_database(kind, hint))
}

/// A database and login made for one test; dropped (database and login) on drop.
#[derive(Debug)]
pub struct TestDatabase {
    db: Database,
    admin: Database,
}

impl TestDatabase {
    pub fn database(&self) -> &Database {
        &self.db
    }

    /// The admin login of the same server (maintenance database).
    pub fn admin(&self) -> &Database {
        &self.admin
    }

    /// The same database with another password, e.g. a wrong one.
    pub fn with_password(&self, password: &str) -> Database {
        Database {
            password: Secret::new(password),
            ..self.db.clone()
        }
    }
}

impl Deref for TestDatabase {
    type Target = Database;
    fn deref(&self) -> &Database {
        &self.db
    }
}

impl Drop for TestDatabase {
    fn drop(&mut self) {
        let name = &self.db.name;
        let sql = match self.db.kind {
            DbKind::Mysql => {
                format!("DROP DATABASE IF EXISTS `{name}`;\nDROP USER IF EXISTS '{name}'@'%';\n")
            }
            DbKind::Postgresql => format!(
                "DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE);\nDROP ROLE IF EXISTS \"{name}\";\n"
            ),
        };
        // Never panic here: it may run while a failed test unwinds.
        if let Err(e) = database::query(&self.admin, &sql, ADMIN_TIMEOUT) {
            eprintln!("could not drop test database `{name}`: {e}");
        }
    }
}

fn parse_env_file(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.strip_prefix("export ").unwrap_or(l).split_once('='))
        .map(|(k, v)| {
            let v = v.trim();
            let v = v
                .strip_prefix('"')
                .and_then(|v| v.strip_suffix('"'))
                .or_else(|| v.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
                .unwrap_or(v);
            (k.trim().to_owned(), v.to_owned())
        })
        .collect()
}

/// `apst_<hint>_<random>`: at most 31 characters, valid unquoted in both servers.
fn unique_name(hint: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let hint: String = hint
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_lowercase()
            } else {
                '_'
            }
        })
        .take(12)
        .collect();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("apst_{hint}_{}{:02x}", random_hex(4), n % 256)
}

fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut buf))
        .expect("read /dev/urandom");
    hex::encode(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_file_is_parsed() {
        let facts = parse_env_file("# c\nA=1\nexport B=\"two\"\nC='3'\n\nbad line\n");
        assert_eq!(facts["A"], "1");
        assert_eq!(facts["B"], "two");
        assert_eq!(facts["C"], "3");
        assert_eq!(facts.len(), 3);
    }

    #[test]
    fn names_are_short_and_distinct() {
        let a = unique_name("dump/wipe-Load with spaces");
        let b = unique_name("dump/wipe-Load with spaces");
        assert_ne!(a, b);
        assert!(a.len() <= 31, "{a}");
        assert!(
            a.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        );
    }
}
