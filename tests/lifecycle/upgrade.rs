//! `instance upgrade`: lifecycle-py 1.0 → 1.1 end to end as the tenant against PostgreSQL (the
//! schema migrated by `configure upgrade`, the package's files swapped, the users' files kept),
//! the refusals that change nothing, and every failure — a script's, a `kill -9` in the swap
//! or in `configure upgrade` — put back whole: files, tables, record.

use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use test_support as support;

use super::install::{copy_package, install, tenant_sandbox};
use super::install_fixtures::{existing, fresh, lifecycle, servers, sql};
use aps_controller::database::DbKind;
use support::database::TestDatabase;
use support::tenant::tenant;
use support::{Sandbox, assert_success, json, tree_state};

fn upgrade_cmd(
    sb: &Sandbox,
    name: &str,
    package: &Utf8Path,
    args: &[&str],
) -> std::process::Command {
    let mut all = vec![
        "instance",
        "upgrade",
        name,
        "--package",
        package.as_str(),
        "--json",
    ];
    all.extend_from_slice(args);
    sb.command(&all)
}

fn upgrade(sb: &Sandbox, name: &str, package: &Utf8Path, args: &[&str]) -> std::process::Output {
    upgrade_cmd(sb, name, package, args).output().unwrap()
}

/// The record as `instance show --json` prints it.
fn record(sb: &Sandbox, name: &str) -> serde_json::Value {
    let out = sb.cli(&["instance", "show", name, "--json"]);
    assert_success(&out, "instance show");
    json(&out)
}

/// The tables of a MariaDB database and each one's rows, in one string to compare.
fn mysql_tables(db: &TestDatabase) -> String {
    let names = sql(db.database(), "SHOW TABLES");
    let mut out = String::new();
    for table in names.lines().map(str::trim).filter(|t| !t.is_empty()) {
        let rows = sql(
            db.database(),
            &format!("SELECT * FROM `{table}` ORDER BY 1"),
        );
        out += &format!("{table}:\n{rows}\n");
    }
    out
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// lifecycle-py 1.0 installed as `py`, two more rows added, a user's file in `files/`.
fn py_installed(sb: &Sandbox, www: &Utf8Path) -> (TestDatabase, Utf8PathBuf) {
    let main = fresh(DbKind::Postgresql, "upgrade-py");
    let root = www.join("py");
    let out = install(
        sb,
        &lifecycle("lifecycle-py-1.0"),
        "py",
        &root,
        &["--database", &existing(sb, "main", &main)],
    );
    assert_success(&out, "install lifecycle-py 1.0");
    sql(
        main.database(),
        "INSERT INTO items (name) VALUES ('Hello, World! ü'), ('!!!')",
    );
    std::fs::write(root.join("files/photo.txt"), "the user's upload").unwrap();
    support::chown_r(&root.join("files"), tenant().uid, tenant().gid);
    (main, root)
}

#[test]
fn lifecycle_py_upgrades_from_1_0_to_1_1_keeping_the_users_files() {
    if !servers("lifecycle-py upgraded against PostgreSQL") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, root) = py_installed(&sb, &www);
    let new = lifecycle("lifecycle-py-1.1");

    // A dry run says what would be done and changes nothing.
    let before = tree_state(&www, &[]);
    let rec = record(&sb, "py");
    let out = upgrade(&sb, "py", &new, &["--dry-run"]);
    assert_success(&out, "upgrade --dry-run");
    let v = json(&out);
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(
        v["rule"], "upgrade match=\"/application/version = '1.0'\"",
        "{v}"
    );
    assert_eq!(v["files_added"], serde_json::json!(["news.html"]), "{v}");
    assert_eq!(v["files_removed"], serde_json::json!(["about.html"]), "{v}");
    assert_eq!(
        v["settings_added"],
        serde_json::json!(["show_slugs"]),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before, "a dry run changed files");
    assert_eq!(record(&sb, "py"), rec, "a dry run changed the record");

    // Another application is refused, naming both.
    let out = upgrade(&sb, "py", &lifecycle("lifecycle-perl-status"), &[]);
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid-package", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("another application"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before);

    let old_index = std::fs::read(root.join("index.html")).unwrap();
    let out = upgrade(&sb, "py", &new, &[]);
    assert_success(&out, "upgrade to 1.1");
    let v = json(&out);
    assert_eq!(
        (v["from_version"].as_str(), v["to_version"].as_str()),
        (Some("1.0"), Some("1.1")),
        "{v}"
    );
    assert!(
        v["configure_output"]
            .as_str()
            .unwrap()
            .contains("items.slug added to 3 rows"),
        "{v}"
    );
    // The schema migrated with the data.
    let slugs = sql(main.database(), "SELECT slug FROM items ORDER BY id");
    let slugs: Vec<&str> = slugs.lines().map(str::trim).collect();
    assert_eq!(slugs, ["first-item-1", "hello-world-2", "-3"]);
    assert_eq!(
        sql(
            main.database(),
            "SELECT value FROM app_meta WHERE key = 'schema'"
        ),
        "2"
    );
    // The files swapped: changed, added, removed, the user's kept, all the tenant's.
    assert_ne!(std::fs::read(root.join("index.html")).unwrap(), old_index);
    assert_eq!(
        std::fs::read(root.join("index.html")).unwrap(),
        std::fs::read(new.join("htdocs/index.html")).unwrap()
    );
    assert!(root.join("news.html").is_file());
    assert!(!root.join("about.html").exists());
    assert_eq!(
        std::fs::read_to_string(root.join("files/photo.txt")).unwrap(),
        "the user's upload"
    );
    assert!(
        root.join("config.json").is_file(),
        "the script's own file went"
    );
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(&root).unwrap().uid(), tenant().uid);
    assert_eq!(
        std::fs::metadata(root.join("news.html")).unwrap().uid(),
        tenant().uid
    );
    // Nothing staged is left beside the web root.
    let beside: Vec<_> = std::fs::read_dir(&www)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(beside, vec!["py".to_owned()], "{beside:?}");
    // The record says 1.1, with the new setting's default.
    let rec = record(&sb, "py");
    assert!(
        rec["package"]
            .as_str()
            .unwrap()
            .ends_with("lifecycle-py-1.1"),
        "{rec}"
    );
    assert_eq!(rec["settings"]["show_slugs"], "true", "{rec}");

    // Back to 1.0: it has no rule that matches 1.1, and says so.
    let before = tree_state(&www, &[]);
    let out = upgrade(&sb, "py", &lifecycle("lifecycle-py-1.0"), &[]);
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid-package", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("declares no upgrade or patch rule"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before);
    assert_eq!(record(&sb, "py"), rec);

    // The upgrade's own files are the install's to remove: news.html (new in 1.1) goes with
    // the rest, and nothing is kept as if the tenant had made it.
    let out = sb.cli(&["instance", "remove", "py", "--no-final-backup", "--json"]);
    assert_success(&out, "remove after the upgrade");
    let v = json(&out);
    assert_eq!(v["kept"], serde_json::json!([]), "{v}");
    assert!(!root.join("news.html").exists(), "{v}");
    assert!(!root.exists(), "the web root the install made stays: {v}");
    support::restore_kit::assert_nothing_left_open(&sb.state());
}

/// lifecycle-sh-faulty 1.0 installed as `faulty` with `fail-at` as given.
fn faulty_installed(sb: &Sandbox, www: &Utf8Path, fail_at: &str) -> (TestDatabase, Utf8PathBuf) {
    let main = fresh(DbKind::Mysql, &format!("upgrade-{fail_at}"));
    let root = www.join("faulty");
    let setting = format!("fail-at={fail_at}");
    let out = install(
        sb,
        &lifecycle("lifecycle-sh-faulty"),
        "faulty",
        &root,
        &[
            "--setting",
            &setting,
            "--database",
            &existing(sb, "main", &main),
        ],
    );
    assert_success(&out, "install lifecycle-sh-faulty");
    std::fs::write(root.join("data/mine.txt"), "kept").unwrap();
    support::chown_r(&root.join("data"), tenant().uid, tenant().gid);
    (main, root)
}

/// What a failed upgrade of `faulty` must leave as it found it: the files, the tables, the
/// record.
struct Faulty {
    files: std::collections::BTreeMap<String, String>,
    tables: String,
    record: serde_json::Value,
}

impl Faulty {
    fn take(sb: &Sandbox, www: &Utf8Path, main: &TestDatabase) -> Self {
        Faulty {
            files: tree_state(www, &[]),
            tables: mysql_tables(main),
            record: record(sb, "faulty"),
        }
    }

    fn assert_put_back(&self, sb: &Sandbox, www: &Utf8Path, main: &TestDatabase) {
        assert_eq!(
            tree_state(www, &[]),
            self.files,
            "the files were not put back"
        );
        assert_eq!(
            mysql_tables(main),
            self.tables,
            "the tables were not put back"
        );
        assert_eq!(
            record(sb, "faulty"),
            self.record,
            "the record was not put back"
        );
        support::restore_kit::assert_nothing_left_open(&sb.state());
    }
}

#[test]
fn a_failing_configure_upgrade_is_put_back_whole() {
    if !servers("lifecycle-sh-faulty upgraded against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, _root) = faulty_installed(&sb, &www, "upgrade");
    let before = Faulty::take(&sb, &www, &main);
    let out = upgrade(&sb, "faulty", &lifecycle("lifecycle-sh-faulty-1.1"), &[]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "upgrade-configure", "{v}");
    assert!(
        v["error"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("fails on purpose (fail-at=upgrade)"),
        "{v}"
    );
    before.assert_put_back(&sb, &www, &main);
}

/// The next command's envelope says it put the upgrade of `name` back, whole.
fn recovered_by_next_command(sb: &Sandbox, name: &str) {
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list after the kill");
    let v = json(&out);
    let recovered = v["recovered"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{v}");
    assert_eq!(recovered[0]["operation"], "upgrade", "{v}");
    assert_eq!(recovered[0]["instance"], name, "{v}");
    assert_eq!(recovered[0]["fully_undone"], true, "{v}");
}

#[test]
fn kill_9_during_configure_upgrade_is_put_back_by_the_next_command() {
    if !servers("lifecycle-sh-faulty upgraded against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, root) = faulty_installed(&sb, &www, "none");
    // 1.1 whose `configure upgrade` records itself (a file, a row), then waits to be killed.
    let package = sb.path("faulty-1.1-slow");
    copy_package(&lifecycle("lifecycle-sh-faulty-1.1"), &package);
    let script = package.join("scripts/configure");
    let text = std::fs::read_to_string(&script).unwrap().replacen(
        "trace \"$op\"\n",
        "trace \"$op\"\n[ \"$op\" = upgrade ] && { echo $$ > \"$web/script.pid\"; exec sleep 120; }\n",
        1,
    );
    std::fs::write(&script, text).unwrap();
    let before = Faulty::take(&sb, &www, &main);
    let mut child = upgrade_cmd(&sb, "faulty", &package, &[]).spawn().unwrap();
    let pid_file = root.join("script.pid");
    wait_for(
        || std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')),
        "configure upgrade to start",
    );
    let pid: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        mysql_tables(&main).contains("op_upgrade"),
        "the script wrote nothing yet"
    );
    child.kill().unwrap();
    child.wait().unwrap();
    recovered_by_next_command(&sb, "faulty");
    before.assert_put_back(&sb, &www, &main);
    wait_for(|| !support::pid_alive(pid), "the script to be ended");
}

#[test]
fn kill_9_during_the_swap_is_put_back_by_the_next_command() {
    if !servers("lifecycle-sh-faulty upgraded against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, _root) = faulty_installed(&sb, &www, "none");
    // 1.1 with many files, so that the kill lands while they are staged.
    let package = sb.path("faulty-1.1-bulk");
    copy_package(&lifecycle("lifecycle-sh-faulty-1.1"), &package);
    for d in 0..60 {
        let dir = package.join(format!("htdocs/bulk/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..100 {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    let before = Faulty::take(&sb, &www, &main);
    let mut child = upgrade_cmd(&sb, "faulty", &package, &[]).spawn().unwrap();
    let staged = || {
        std::fs::read_dir(&www).unwrap().any(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            name.starts_with(".faulty.aps-upgrade-")
        })
    };
    wait_for(staged, "the new files to be staged");
    child.kill().unwrap();
    child.wait().unwrap();
    recovered_by_next_command(&sb, "faulty");
    before.assert_put_back(&sb, &www, &main);
}

#[test]
fn post_upgrade_upgrades_inside_the_allowed_folders_only() {
    if !servers("lifecycle-py upgraded over HTTP against PostgreSQL") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, root) = py_installed(&sb, &www);
    let package = sb.path("py-1.1");
    copy_package(&lifecycle("lifecycle-py-1.1"), &package);
    let served = support::serve::serve_allowing(&sb, &[www.as_str(), package.as_str()]);
    let path = "/v1/instances/py/upgrade";

    // A package outside the allowed folders: refused before anything.
    let before = tree_state(&www, &[]);
    let outside = lifecycle("lifecycle-py-1.1");
    let (status, v) = served.call("POST", path, serde_json::json!({"package": outside}));
    assert_eq!(status, 403, "{v}");
    assert_eq!(v["error"]["kind"], "path-not-allowed", "{v}");

    let (status, v) = served.call(
        "POST",
        path,
        serde_json::json!({"package": package, "dry_run": true}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(tree_state(&www, &[]), before, "a dry run changed files");

    let (status, v) = served.call(
        "POST",
        path,
        serde_json::json!({"package": package, "settings": {"show_slugs": "false"}}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["to_version"], "1.1", "{v}");
    assert_eq!(v["settings"]["show_slugs"], "false", "{v}");
    assert!(root.join("news.html").is_file());
    assert_eq!(
        sql(
            main.database(),
            "SELECT value FROM app_meta WHERE key = 'schema'"
        ),
        "2"
    );
}
