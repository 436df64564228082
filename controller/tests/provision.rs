//! Provisioning against the real test servers: databases and users made for an instance,
//! each user confined to its own database, and taken away again; the controller.toml
//! `[database-servers.NAME]` table and its admin password file.

use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use aps_controller::config::{ConfigError, ControllerConfig};
use aps_controller::database::provision::{
    self, CreatedDatabase, DatabaseServer, ProvisionError, ProvisionSpec,
};
use aps_controller::database::{self, Database, DatabaseError, DbKind};
use aps_controller::registry::store::StateDir;
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::TestServers;

const T: Duration = Duration::from_secs(300);

fn sql(db: &Database, text: &str) -> String {
    database::query(db, text, T).unwrap_or_else(|e| panic!("{e}"))
}

fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    (dir, path)
}

/// A state folder whose controller.toml names the `kind` test server `main`.
struct Setup {
    _dir: tempfile::TempDir,
    state: Utf8PathBuf,
    server: DatabaseServer,
    servers: TestServers,
}

fn setup(kind: DbKind) -> Option<Setup> {
    let servers = TestServers::from_env()?;
    let (dir, root) = tmp();
    let state = root.join("state");
    std::fs::create_dir(&state).unwrap();
    let toml = servers.server_section(kind, "main", &state);
    let server = load(&state, &toml)
        .unwrap()
        .database_server("main")
        .unwrap()
        .clone();
    Some(Setup {
        _dir: dir,
        state,
        server,
        servers,
    })
}

fn load(state: &Utf8Path, toml: &str) -> Result<ControllerConfig, ConfigError> {
    std::fs::write(state.join("controller.toml"), toml).unwrap();
    ControllerConfig::load(StateDir::at(state))
}

/// An instance name no other test run uses (the servers outlive the tests).
fn instance() -> String {
    static N: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos();
    format!(
        "p{:x}{:x}{}",
        std::process::id(),
        nanos,
        N.fetch_add(1, Ordering::Relaxed)
    )
}

fn spec<'a>(instance: &'a str, requirement: &'a str) -> ProvisionSpec<'a> {
    ProvisionSpec {
        instance,
        requirement,
    }
}

fn gone(server: &DatabaseServer, created: &CreatedDatabase) -> bool {
    provision::exists(server, created).unwrap().is_gone()
}

/// `db`'s login on another database of the same server.
fn on(db: &Database, name: &str) -> Database {
    Database {
        name: name.to_owned(),
        ..db.clone()
    }
}

fn confined_to_its_own_database(kind: DbKind) {
    let Some(s) = setup(kind) else { return };
    let inst = instance();
    let a = provision::create(&s.server, spec(&inst, "main")).unwrap();
    let b = provision::create(&s.server, spec(&inst, "other")).unwrap();
    assert_eq!(a.database.name, format!("{inst}_main"));
    assert_eq!(a.database.login, a.database.name);
    assert_eq!((a.database.kind, a.database.port), (kind, s.server.port));
    assert!(a.database.password.expose().len() >= 24);
    assert_eq!(
        a.database.version.as_deref(),
        Some(provision::server_version(&s.server).unwrap().as_str())
    );
    let both = provision::exists(&s.server, &a.created).unwrap();
    assert!(both.database && both.user, "{both:?}");

    // The user works in its own database…
    sql(
        &a.database,
        "CREATE TABLE t (i INT); INSERT INTO t VALUES (1), (2);",
    );
    assert_eq!(sql(&a.database, "SELECT COUNT(*) FROM t;").trim(), "2");
    // …and nowhere else: it cannot even connect to another instance's database…
    let err = database::query(&on(&a.database, &b.database.name), "SELECT 1;", T).unwrap_err();
    assert!(
        matches!(
            err,
            DatabaseError::Authentication { .. }
                | DatabaseError::NoSuchDatabase { .. }
                | DatabaseError::Tool { .. }
        ),
        "{err}"
    );
    // …nor in one whose name its own matches as a GRANT pattern (`_` is a wildcard there).
    let lookalike = a.database.name.replace('_', "x");
    let admin = s.servers.admin(kind);
    let create = match kind {
        DbKind::Mysql => format!("CREATE DATABASE `{lookalike}`;"),
        DbKind::Postgresql => format!("CREATE DATABASE \"{lookalike}\";"),
    };
    sql(&admin, &create);
    let denied = database::query(&on(&a.database, &lookalike), "CREATE TABLE x (i INT);", T);
    let drop_lookalike = match kind {
        DbKind::Mysql => format!("DROP DATABASE `{lookalike}`;"),
        DbKind::Postgresql => format!("DROP DATABASE \"{lookalike}\";"),
    };
    sql(&admin, &drop_lookalike);
    // PostgreSQL lets every role connect to a database it did not revoke from PUBLIC; what
    // matters is that it may not create anything there.
    assert!(denied.is_err(), "created a table in `{lookalike}`");

    // Dropped: both gone, the login refused; a second drop is fine.
    provision::drop(&s.server, &a.created).unwrap();
    provision::drop(&s.server, &b.created).unwrap();
    assert!(gone(&s.server, &a.created));
    assert!(gone(&s.server, &b.created));
    let err = database::query(&a.database, "SELECT 1;", T).unwrap_err();
    assert!(matches!(err, DatabaseError::Authentication { .. }), "{err}");
    provision::drop(&s.server, &a.created).unwrap();
}

#[test]
fn a_created_user_has_its_own_database_only_mysql() {
    confined_to_its_own_database(DbKind::Mysql);
}

#[test]
fn a_created_user_has_its_own_database_only_postgresql() {
    confined_to_its_own_database(DbKind::Postgresql);
}

fn same_instance_and_id_twice(kind: DbKind) {
    let Some(s) = setup(kind) else { return };
    let inst = instance();
    let first = provision::create(&s.server, spec(&inst, "main")).unwrap();
    let second = provision::create(&s.server, spec(&inst, "main")).unwrap();
    assert_eq!(second.database.name, format!("{}_2", first.database.name));
    assert_ne!(first.database.password, second.database.password);
    for made in [&first, &second] {
        provision::drop(&s.server, &made.created).unwrap();
        assert!(gone(&s.server, &made.created));
    }
}

#[test]
fn a_second_create_gets_a_name_of_its_own_mysql() {
    same_instance_and_id_twice(DbKind::Mysql);
}

#[test]
fn a_second_create_gets_a_name_of_its_own_postgresql() {
    same_instance_and_id_twice(DbKind::Postgresql);
}

fn hostile_names(kind: DbKind) {
    let Some(s) = setup(kind) else { return };
    // An instance name out of the rule is refused before the server is asked.
    for bad in ["a'b", "x`; DROP DATABASE mysql; --", "", "A"] {
        let err = provision::create(&s.server, spec(bad, "main")).unwrap_err();
        assert!(
            matches!(err, ProvisionError::InvalidName { .. }),
            "{bad:?}: {err}"
        );
    }
    // A requirement id is the package's: whatever it holds, the names are plain.
    let inst = instance();
    let made = provision::create(
        &s.server,
        spec(&inst, "x`\"; DROP DATABASE postgres; -- '\\%_"),
    )
    .unwrap();
    let name = &made.database.name;
    assert!(name.starts_with(&format!("{inst}_x_drop")), "{name}");
    assert!(
        name.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_'),
        "{name}"
    );
    sql(&made.database, "CREATE TABLE t (i INT);");
    provision::drop(&s.server, &made.created).unwrap();
    // Names that provisioning does not make (a tampered journal) are refused, not quoted.
    let forged = CreatedDatabase {
        database: "mysql`; --".to_owned(),
        ..made.created.clone()
    };
    let err = provision::drop(&s.server, &forged).unwrap_err();
    assert!(matches!(err, ProvisionError::InvalidName { .. }), "{err}");
    let elsewhere = CreatedDatabase {
        server: "other".to_owned(),
        ..made.created.clone()
    };
    let err = provision::drop(&s.server, &elsewhere).unwrap_err();
    assert!(matches!(err, ProvisionError::WrongServer { .. }), "{err}");
}

#[test]
fn hostile_names_are_refused_or_made_plain_mysql() {
    hostile_names(DbKind::Mysql);
}

#[test]
fn hostile_names_are_refused_or_made_plain_postgresql() {
    hostile_names(DbKind::Postgresql);
}

/// A step that fails takes back what the earlier ones made, and nothing that was there
/// before: here the second object's name is already taken.
fn failed_create_takes_back_only_its_own(kind: DbKind) {
    let Some(s) = setup(kind) else { return };
    let inst = instance();
    let names = provision::choose_names(&s.server, spec(&inst, "main")).unwrap();
    let admin = s.servers.admin(kind);
    let n = &names.database;
    // MySQL creates the database first, PostgreSQL the role: take the other one.
    let (take, release) = match kind {
        DbKind::Mysql => (
            format!("CREATE USER `{n}`@'%' IDENTIFIED BY 'x';"),
            format!("DROP USER `{n}`@'%';"),
        ),
        DbKind::Postgresql => (
            format!("CREATE DATABASE \"{n}\";"),
            format!("DROP DATABASE \"{n}\";"),
        ),
    };
    sql(&admin, &take);
    let err = provision::create_named(&s.server, &names).unwrap_err();
    let after = provision::exists(&s.server, &names).unwrap();
    sql(&admin, &release);
    let ProvisionError::Step { step, left, .. } = &err else {
        panic!("{err}")
    };
    assert!(left.is_empty(), "{err}");
    assert!(step.contains(n.as_str()), "{step}");
    match kind {
        DbKind::Mysql => assert!(!after.database && after.user, "{after:?}"),
        DbKind::Postgresql => assert!(after.database && !after.user, "{after:?}"),
    }
    assert!(gone(&s.server, &names));
}

#[test]
fn a_failed_create_takes_back_only_what_it_made_mysql() {
    failed_create_takes_back_only_its_own(DbKind::Mysql);
}

#[test]
fn a_failed_create_takes_back_only_what_it_made_postgresql() {
    failed_create_takes_back_only_its_own(DbKind::Postgresql);
}

fn wrong_admin_password(kind: DbKind) {
    let Some(s) = setup(kind) else { return };
    std::fs::write(&s.server.admin_password_file, "not the password\n").unwrap();
    let err = provision::create(&s.server, spec(&instance(), "main")).unwrap_err();
    let ProvisionError::AdminLogin {
        server,
        password_file,
        source,
        ..
    } = &err
    else {
        panic!("{err}")
    };
    assert_eq!(server, "main");
    assert_eq!(password_file, &s.server.admin_password_file);
    assert!(
        matches!(source, DatabaseError::Authentication { .. }),
        "{source}"
    );
    let text = err.to_string();
    assert!(text.contains("[database-servers.main]"), "{text}");
    assert!(!text.contains("not the password"), "{text}");
}

#[test]
fn a_wrong_admin_password_is_the_admin_login_error_mysql() {
    wrong_admin_password(DbKind::Mysql);
}

#[test]
fn a_wrong_admin_password_is_the_admin_login_error_postgresql() {
    wrong_admin_password(DbKind::Postgresql);
}

/// The password file is refused unless it is a regular file, not a symlink, that only its
/// owner (root, here) may read; nothing is asked of the server then.
#[test]
fn an_untrustworthy_admin_password_file_is_refused() {
    let Some(s) = setup(DbKind::Mysql) else {
        return;
    };
    let file = s.server.admin_password_file.clone();
    let refused = |server: &DatabaseServer, why: &str| {
        let err = provision::server_version(server).unwrap_err();
        let ProvisionError::PasswordFile { problem, .. } = &err else {
            panic!("{why}: {err}")
        };
        assert!(problem.contains(why), "{why}: {err}");
    };
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
    refused(&s.server, "others may read it");
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
    provision::server_version(&s.server).unwrap();

    let link = s.state.join("link.password");
    std::os::unix::fs::symlink(&file, &link).unwrap();
    let through_link = DatabaseServer {
        admin_password_file: link,
        ..s.server.clone()
    };
    refused(&through_link, "is a symlink");
    let missing = DatabaseServer {
        admin_password_file: s.state.join("missing.password"),
        ..s.server.clone()
    };
    refused(&missing, "does not exist");
    let folder = DatabaseServer {
        admin_password_file: s.state.clone(),
        ..s.server.clone()
    };
    refused(&folder, "not a regular file");
    std::fs::write(&file, "\n").unwrap();
    refused(&s.server, "is empty");
    if test_support::root::needs_root("a password file owned by another user") {
        std::fs::write(&file, "x\n").unwrap();
        std::os::unix::fs::chown(&file, Some(65534), None).unwrap();
        refused(&s.server, "owned by uid 65534");
    }
}

/// `[database-servers.NAME]` as controller.toml spells it: defaults, a relative password
/// file, unknown keys and bad names refused, and an unknown server named.
#[test]
fn database_servers_are_read_from_controller_toml() {
    let (_dir, root) = tmp();
    let state = root.join("state");
    std::fs::create_dir(&state).unwrap();
    let config = load(
        &state,
        "[database-servers.pg-1]\ntype = \"postgresql\"\nhost = \"db.example\"\n\
         admin-login = \"postgres\"\nadmin-password-file = \"pg.password\"\nversion = \"16.2\"\n",
    )
    .unwrap();
    let server = config.database_server("pg-1").unwrap();
    assert_eq!(
        (
            server.name.as_str(),
            server.kind,
            server.port,
            server.version.as_deref()
        ),
        ("pg-1", DbKind::Postgresql, 5432, Some("16.2"))
    );
    assert_eq!(server.admin_password_file, state.join("pg.password"));
    let err = config.database_server("nope").unwrap_err();
    assert!(
        err.to_string()
            .contains("no database server `nope` in controller.toml (configured: pg-1)"),
        "{err}"
    );

    for (toml, says) in [
        (
            "[database-servers.a]\ntype = \"mysql\"\nhost = \"h\"\nadmin-login = \"r\"\n\
             admin-password-file = \"/p\"\npassword = \"inline\"\n",
            "password",
        ),
        (
            "[database-servers.a]\ntype = \"oracle\"\nhost = \"h\"\nadmin-login = \"r\"\n\
             admin-password-file = \"/p\"\n",
            "oracle",
        ),
        (
            "[database-servers.\"a b\"]\ntype = \"mysql\"\nhost = \"h\"\nadmin-login = \"r\"\n\
             admin-password-file = \"/p\"\n",
            "1 to 64 letters",
        ),
        (
            "[database-servers.a]\ntype = \"mysql\"\nhost = \"h\"\nadmin-login = \"r\"\n",
            "admin-password-file",
        ),
    ] {
        let err = load(&state, toml).unwrap_err();
        assert!(
            matches!(err, ConfigError::Invalid { .. }) && err.to_string().contains(says),
            "{says}: {err}"
        );
    }
}

/// A requirement's server type and minimum version against a real server.
#[test]
fn a_requirement_is_met_or_its_misses_are_named() {
    let Some(s) = setup(DbKind::Postgresql) else {
        return;
    };
    let req = |server_type: Option<&str>, min: Option<&str>| aps_meta::DbRequirement {
        id: "main".to_owned(),
        default_name: None,
        can_use_tables_prefix: false,
        server_type: server_type.map(str::to_owned),
        server_min_version: min.map(str::to_owned),
    };
    let met = |r| provision::unmet(&s.server, &r).unwrap();
    assert!(met(req(None, None)).is_empty());
    assert!(met(req(Some("pgsql"), Some("9.6"))).is_empty());
    let missed = met(req(Some("mysql"), Some("99.1")));
    assert_eq!(missed.len(), 2, "{missed:?}");
    assert!(
        missed[0].contains("needs a `mysql` server; `main` is PostgreSQL"),
        "{missed:?}"
    );
    assert!(
        missed[1].contains("needs version 99.1 or later; `main` has 1"),
        "{missed:?}"
    );
    // `version` of controller.toml stands for the server's own answer.
    let declared = DatabaseServer {
        version: Some("unknown".to_owned()),
        ..s.server.clone()
    };
    let missed = provision::unmet(&declared, &req(None, Some("9.6"))).unwrap();
    assert!(missed[0].contains("cannot be compared"), "{missed:?}");
}
