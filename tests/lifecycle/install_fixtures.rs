//! The lifecycle fixture packages (fixtures/lifecycle/) installed end to end with real
//! scripts against the real database servers, as the tenant; their failures undone.
//!
//! Their databases are given as `existing:` ones, made for each test on the test servers.

use std::os::unix::fs::MetadataExt;

use camino::Utf8PathBuf;
use test_support as support;

use super::install::{install, instances, tenant_sandbox};
use support::database::TestDatabase;
use support::tenant::tenant;
use support::{Sandbox, assert_success, json, needs_root, repo, tree_state};

fn lifecycle(name: &str) -> Utf8PathBuf {
    repo().join("fixtures/lifecycle").join(name)
}

fn servers(what: &str) -> bool {
    needs_root(what) && !support::skipped_on_purpose("APS_TEST_NO_DB", what)
}

/// `--database ID=existing:FILE` for a test database, its file written into the sandbox.
pub(crate) fn existing(sb: &Sandbox, id: &str, db: &TestDatabase) -> String {
    let toml = support::db_toml(id, db.database());
    let body = toml.split_once('\n').unwrap().1;
    let path = sb.path(&format!("db-{id}-{}.toml", db.database().name));
    std::fs::write(&path, body).unwrap();
    format!("{id}=existing:{path}")
}

pub(crate) fn fresh(kind: aps_controller::database::DbKind, hint: &str) -> TestDatabase {
    support::database::create_database(kind, hint)
        .expect("the test database servers: scripts/ci/start-services.sh")
}

/// A query with the login the instance was given, its rows trimmed.
pub(crate) fn sql(db: &aps_controller::database::Database, query: &str) -> String {
    support::restore_kit::run_sql(db, query).trim().to_owned()
}

#[test]
fn lifecycle_php_installs_from_its_folder_and_its_zip() {
    if !servers("lifecycle-php against both database servers") {
        return;
    }
    use aps_controller::database::DbKind;
    let (sb, www) = tenant_sandbox();
    for (name, package) in [
        ("php-dir", lifecycle("lifecycle-php")),
        (
            "php-zip",
            repo().join("fixtures/zips/lifecycle-php.app.zip"),
        ),
    ] {
        let (main, stats) = (fresh(DbKind::Mysql, name), fresh(DbKind::Postgresql, name));
        let root = www.join(name);
        let code = format!("site_code={name}");
        let out = install(
            &sb,
            &package,
            name,
            &root,
            &[
                "--setting",
                "admin_password=correct horse",
                "--setting",
                "admin_email=admin@example.test",
                "--setting",
                &code,
                "--database",
                &existing(&sb, "main", &main),
                "--database",
                &existing(&sb, "stats", &stats),
            ],
        );
        assert_success(&out, name);
        let v = json(&out);
        let install_id = v["computed_settings"]["install_id"]
            .as_str()
            .unwrap()
            .to_owned();
        assert_eq!(install_id.len(), 16, "{v}");
        // config.php, written by the script as the tenant, for the tenant only.
        let config = std::fs::metadata(root.join("config.php")).unwrap();
        assert_eq!((config.uid(), config.mode() & 0o777), (tenant().uid, 0o600));
        // The databases hold what the script made, read with the recorded logins.
        let record: serde_json::Value = serde_json::from_str(
            &std::fs::read_to_string(sb.state().join(format!("instances/{name}.json"))).unwrap(),
        )
        .unwrap();
        assert_eq!(
            record["settings"]["install_id"],
            install_id.as_str(),
            "{record}"
        );
        assert_eq!(
            sql(main.database(), "SELECT site_code FROM site WHERE id = 1"),
            name
        );
        assert_eq!(sql(stats.database(), "SELECT count(*) FROM hits"), "4");
    }
    assert_eq!(instances(&sb), ["php-dir", "php-zip"]);

    // `uniq="global"`: a site_code another instance of the application holds is refused.
    let (main, stats) = (
        fresh(DbKind::Mysql, "php-dup"),
        fresh(DbKind::Postgresql, "php-dup"),
    );
    let before = tree_state(&www, &[]);
    let out = install(
        &sb,
        &lifecycle("lifecycle-php"),
        "php-dup",
        &www.join("php-dup"),
        &[
            "--setting",
            "admin_password=correct horse",
            "--setting",
            "admin_email=admin@example.test",
            "--setting",
            "site_code=php-dir",
            "--database",
            &existing(&sb, "main", &main),
            "--database",
            &existing(&sb, "stats", &stats),
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(24), "{v}");
    assert!(
        v["error"]["problems"].to_string().contains("site_code"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before);

    // A host that declares no PHP version cannot judge `php:version min="7.4"`.
    std::fs::write(
        sb.state().join("controller.toml"),
        "allow-root-scripts = false\n",
    )
    .unwrap();
    let out = install(
        &sb,
        &lifecycle("lifecycle-php"),
        "php-dup",
        &www.join("php-dup"),
        &[
            "--setting",
            "site_code=other",
            "--database",
            &existing(&sb, "main", &main),
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(23), "{v}");
    let problems = v["error"]["problems"].to_string();
    assert!(
        problems.contains("7.4") && problems.contains("stats"),
        "{v}"
    );
}

#[test]
fn lifecycle_perl_status_installs_without_a_database() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let root = www.join("perl");
    let out = install(
        &sb,
        &lifecycle("lifecycle-perl-status"),
        "perl",
        &root,
        &["--setting", "greeting=Hi there"],
    );
    assert_success(&out, "install lifecycle-perl-status");
    assert_eq!(
        std::fs::read_to_string(root.join("greeting.txt")).unwrap(),
        "Hi there\n"
    );
    assert_eq!(
        std::fs::metadata(root.join("greeting.txt")).unwrap().uid(),
        tenant().uid
    );
}

#[test]
fn lifecycle_py_installs_its_schema() {
    if !servers("lifecycle-py against PostgreSQL") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let main = fresh(aps_controller::database::DbKind::Postgresql, "py");
    let out = install(
        &sb,
        &lifecycle("lifecycle-py-1.0"),
        "py",
        &www.join("py"),
        &["--database", &existing(&sb, "main", &main)],
    );
    assert_success(&out, "install lifecycle-py 1.0");
    assert_eq!(sql(main.database(), "SELECT name FROM items"), "First item");
    assert_eq!(
        sql(
            main.database(),
            "SELECT value FROM app_meta WHERE key = 'schema'"
        ),
        "1"
    );
}

#[test]
fn lifecycle_sh_faulty_failing_at_install_or_verification_leaves_no_file_and_no_record() {
    if !servers("lifecycle-sh-faulty against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    for (fail_at, step) in [
        ("install", "install-configure"),
        ("verification", "run-verification-script"),
    ] {
        let main = fresh(aps_controller::database::DbKind::Mysql, fail_at);
        let before = tree_state(&www, &[]);
        let setting = format!("fail-at={fail_at}");
        let out = install(
            &sb,
            &lifecycle("lifecycle-sh-faulty"),
            "faulty",
            &www.join("faulty"),
            &[
                "--setting",
                &setting,
                "--database",
                &existing(&sb, "main", &main),
            ],
        );
        let v = json(&out);
        assert_eq!(out.status.code(), Some(13), "{v}");
        assert_eq!(v["error"]["step"], step, "{v}");
        assert!(
            v["error"]["stderr_tail"]
                .as_str()
                .unwrap()
                .contains(&format!("fails on purpose (fail-at={fail_at})")),
            "{v}"
        );
        assert_eq!(
            tree_state(&www, &[]),
            before,
            "fail-at={fail_at} left files"
        );
        assert!(
            instances(&sb).is_empty(),
            "fail-at={fail_at} recorded the instance"
        );
        // An existing database is the person's: what the script wrote there stays.
        assert_eq!(sql(main.database(), "SELECT count(*) FROM op_install"), "1");
    }
    // Without a failure, the same package installs.
    let main = fresh(aps_controller::database::DbKind::Mysql, "faulty-ok");
    let root = www.join("faulty");
    let out = install(
        &sb,
        &lifecycle("lifecycle-sh-faulty"),
        "faulty",
        &root,
        &["--database", &existing(&sb, "main", &main)],
    );
    assert_success(&out, "install lifecycle-sh-faulty");
    assert!(root.join("op-install.txt").is_file());
    let data = std::fs::metadata(root.join("data")).unwrap();
    assert_eq!(data.mode() & 0o777, 0o775, "the writable mapping");
}
