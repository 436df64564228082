//! Databases the install creates on the servers of controller.toml's `[database-servers]`:
//! usable with the recorded logins, and gone again — database and user — when the install
//! fails or is killed.

use std::process::Command;

use aps_controller::database::DbKind;
use aps_controller::registry::{FileStore, InstanceStore, StateDir};
use test_support as support;

use super::install::{install, install_cmd, instances, tenant_sandbox};
use super::install_fixtures::sql;
use support::database::TestServers;
use support::{Sandbox, assert_success, json, needs_root, repo, tree_state};

/// A tenant sandbox whose controller.toml names both test servers (`maria`, `pg`).
pub(crate) fn with_servers(what: &str) -> Option<(Sandbox, camino::Utf8PathBuf, TestServers)> {
    if !needs_root(what) {
        return None;
    }
    let servers = TestServers::from_env()?;
    let (sb, www) = tenant_sandbox();
    let toml = std::fs::read_to_string(sb.state().join("controller.toml")).unwrap();
    let dir = sb.state();
    let toml = format!(
        "{toml}{}{}",
        servers.server_section(DbKind::Mysql, "maria", &dir),
        servers.server_section(DbKind::Postgresql, "pg", &dir)
    );
    std::fs::write(sb.state().join("controller.toml"), toml).unwrap();
    Some((sb, www, servers))
}

/// The databases and users whose names start with `prefix`, on the server of `kind`, as
/// its admin sees them.
pub(crate) fn on_server(servers: &TestServers, kind: DbKind, prefix: &str) -> Vec<String> {
    let admin = servers.admin(kind);
    let (databases, users) = match kind {
        DbKind::Mysql => (
            "SELECT schema_name FROM information_schema.schemata",
            "SELECT user FROM mysql.user",
        ),
        DbKind::Postgresql => (
            "SELECT datname FROM pg_database",
            "SELECT rolname FROM pg_roles",
        ),
    };
    let mut out = Vec::new();
    for (what, query) in [("database", databases), ("user", users)] {
        let rows = sql(&admin, query);
        out.extend(
            rows.lines()
                .filter(|l| l.starts_with(prefix))
                .map(|l| format!("{what} {l}")),
        );
    }
    out.sort();
    out
}

/// Drops the databases an installed instance of a test holds (its server's admin, as
/// controller.toml names it), passed or failed: nothing removes instances yet.
pub(crate) struct DropMade {
    pub(crate) state: camino::Utf8PathBuf,
    pub(crate) instance: &'static str,
}

impl Drop for DropMade {
    fn drop(&mut self) {
        use aps_controller::database::provision::{self, CreatedDatabase};
        let Ok(instance) = FileStore::new(StateDir::at(self.state.clone())).get(self.instance)
        else {
            return;
        };
        let config =
            aps_controller::ControllerConfig::load(StateDir::at(self.state.clone())).unwrap();
        for (server, db) in [
            ("maria", instance.databases.get("main")),
            ("pg", instance.databases.get("stats")),
        ] {
            let (Some(db), Ok(server)) = (db, config.database_server(server)) else {
                continue;
            };
            let created = CreatedDatabase {
                server: server.name.clone(),
                kind: db.kind,
                database: db.name.clone(),
                login: db.login.clone(),
            };
            let _ = provision::drop(server, &created);
        }
    }
}

#[test]
fn lifecycle_php_gets_a_database_on_each_server_usable_with_the_recorded_logins() {
    let Some((sb, www, servers)) = with_servers("databases created by the install") else {
        return;
    };
    let args = [
        "--setting",
        "admin_password=correct horse",
        "--setting",
        "admin_email=admin@example.test",
        "--setting",
        "site_code=prov-php",
        "--database",
        "main=maria",
    ];
    let package = repo().join("fixtures/lifecycle/lifecycle-php");
    // A dry run checks the servers and makes nothing on them.
    let mut dry = args.to_vec();
    dry.push("--dry-run");
    let out = install(&sb, &package, "prov-php", &www.join("prov-php"), &dry);
    assert_success(&out, "install --dry-run");
    let v = json(&out);
    assert_eq!(v["databases"][0]["created"], true, "{v}");
    assert_eq!(v["databases"][0]["name"], "(made by the install)", "{v}");
    assert!(on_server(&servers, DbKind::Mysql, "prov_php").is_empty());
    let out = install(&sb, &package, "prov-php", &www.join("prov-php"), &args);
    let _cleanup = DropMade {
        state: sb.state(),
        instance: "prov-php",
    };
    assert_success(&out, "install with databases made");
    let v = json(&out);
    assert_eq!(v["databases"][0]["created"], true, "{v}");
    assert_eq!(v["databases"][1]["created"], true, "{v}");
    // The record holds the logins (the passwords in its private secrets file).
    let store = FileStore::new(StateDir::at(sb.state()));
    let instance = store.get("prov-php").unwrap();
    let main = &instance.databases["main"];
    let stats = &instance.databases["stats"];
    assert_eq!((main.kind, stats.kind), (DbKind::Mysql, DbKind::Postgresql));
    assert!(main.password.expose().len() >= 24);
    assert_eq!(
        sql(main, "SELECT site_code FROM site WHERE id = 1"),
        "prov-php"
    );
    assert_eq!(sql(stats, "SELECT count(*) FROM hits"), "4");
    // The login reaches its own database only.
    let mut other = main.clone();
    other.name = "mysql".into();
    let denied = Command::new("mysql")
        .env("MYSQL_PWD", other.password.expose())
        .args([
            "-h",
            &other.host,
            "-P",
            &other.port.to_string(),
            "-u",
            &other.login,
            "mysql",
            "-e",
            "SELECT 1",
        ])
        .output()
        .unwrap();
    assert!(
        !denied.status.success(),
        "the instance's login opened the mysql database"
    );
    let secrets = std::fs::read_dir(sb.state().join("secrets"))
        .unwrap()
        .count();
    assert!(secrets >= 1);
    assert_eq!(on_server(&servers, DbKind::Mysql, "prov_php").len(), 2);
}

#[test]
fn a_failed_install_drops_the_databases_and_users_it_made() {
    let Some((sb, www, servers)) = with_servers("databases dropped by the undo") else {
        return;
    };
    let before = (
        tree_state(&www, &[]),
        on_server(&servers, DbKind::Mysql, "fail_db"),
    );
    let out = install(
        &sb,
        &repo().join("fixtures/lifecycle/lifecycle-sh-faulty"),
        "fail-db",
        &www.join("fail-db"),
        &["--setting", "fail-at=install"],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "install-configure", "{v}");
    assert_eq!(
        (
            tree_state(&www, &[]),
            on_server(&servers, DbKind::Mysql, "fail_db")
        ),
        before
    );
    assert!(instances(&sb).is_empty());
}

#[test]
fn kill_9_after_the_databases_are_made_drops_them_on_the_next_command() {
    let Some((sb, www, servers)) = with_servers("databases dropped by recovery") else {
        return;
    };
    // lifecycle-sh-faulty with a configure that hangs once it has seen its database.
    let package = sb.path("hang");
    super::install::copy_package(
        &repo().join("fixtures/lifecycle/lifecycle-sh-faulty"),
        &package,
    );
    std::fs::write(
        package.join("scripts/configure"),
        "#!/bin/sh\necho \"$DB_main_NAME\" > \"$WEB___DIR/db-name\"\nexec sleep 120\n",
    )
    .unwrap();
    let root = www.join("kill-db");
    let before = (
        tree_state(&www, &[]),
        on_server(&servers, DbKind::Mysql, "kill_db"),
    );
    let mut child = install_cmd(&sb, &package, "kill-db", &root, &[])
        .spawn()
        .unwrap();
    let marker = root.join("db-name");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !std::fs::read_to_string(&marker).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "configure install never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert_eq!(
        on_server(&servers, DbKind::Mysql, "kill_db").len(),
        2,
        "made before the script"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "the next command");
    let v = json(&out);
    assert_eq!(v["recovered"][0]["operation"], "install", "{v}");
    assert_eq!(v["recovered"][0]["fully_undone"], true, "{v}");
    assert!(
        v["recovered"][0]["message"]
            .as_str()
            .unwrap()
            .contains("drop database kill_db_main"),
        "{v}"
    );
    assert_eq!(
        (
            tree_state(&www, &[]),
            on_server(&servers, DbKind::Mysql, "kill_db")
        ),
        before
    );
    assert!(instances(&sb).is_empty());
}
