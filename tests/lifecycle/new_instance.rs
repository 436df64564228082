//! `migrate --to-new` and `restore --as-new`: a new instance installed from the package, then
//! the data restored into it, against the real servers as the tenant; a failure of the
//! restore half removes the new instance whole and leaves the source as it was.

use aps_controller::database::DbKind;
use aps_controller::registry::{FileStore, InstanceStore, StateDir};
use test_support as support;

use super::install::{install, instances};
use super::install_databases::{DropMade, on_server, with_servers};
use super::install_fixtures::sql;
use support::tenant::tenant;
use support::{Sandbox, assert_success, json, repo, tree_state};

const PHP_SETTINGS: [&str; 4] = [
    "--setting",
    "admin_password=correct horse",
    "--setting",
    "admin_email=admin@example.test",
];

fn php() -> camino::Utf8PathBuf {
    repo().join("fixtures/lifecycle/lifecycle-php")
}

fn record(sb: &Sandbox, name: &str) -> aps_controller::registry::Instance {
    FileStore::new(StateDir::at(sb.state())).get(name).unwrap()
}

/// The databases and users of the servers whose names start with `prefix`.
fn made_on_servers(servers: &support::database::TestServers, prefix: &str) -> Vec<String> {
    let mut all = on_server(servers, DbKind::Mysql, prefix);
    all.extend(on_server(servers, DbKind::Postgresql, prefix));
    all
}

/// What a failed new instance could leave, and the source's record: the files under the web
/// folders' parent, the databases and users named after the new instance, the record.
fn left_behind(
    sb: &Sandbox,
    www: &camino::Utf8Path,
    servers: &support::database::TestServers,
    (source, new_prefix): (&str, &str),
) -> (
    std::collections::BTreeMap<String, String>,
    Vec<String>,
    String,
) {
    (
        tree_state(www, &[]),
        made_on_servers(servers, new_prefix),
        std::fs::read_to_string(sb.state().join(format!("instances/{source}.json"))).unwrap(),
    )
}

/// `migrate SOURCE --to-new NEW --base-url https://NEW.example/ --web-root ROOT --json`.
fn migrate_to_new(
    sb: &Sandbox,
    source: &str,
    new: &str,
    root: &camino::Utf8Path,
) -> std::process::Command {
    let url = format!("https://{new}.example/");
    sb.command(&[
        "migrate",
        source,
        "--to-new",
        new,
        "--base-url",
        &url,
        "--web-root",
        root.as_str(),
        "--json",
    ])
}

#[test]
fn migrate_to_new_copies_lifecycle_php_into_its_own_databases_and_url() {
    let Some((sb, www, servers)) = with_servers("migrate --to-new against both servers") else {
        return;
    };
    let mut args = PHP_SETTINGS.to_vec();
    args.extend(["--setting", "site_code=newsrc"]);
    let out = install(&sb, &php(), "newsrc", &www.join("newsrc"), &args);
    let _drop_source = DropMade {
        state: sb.state(),
        instance: "newsrc",
    };
    assert_success(&out, "install the source");
    let source = record(&sb, "newsrc");
    // Data of the source's own, which only a restore can carry over.
    sql(
        &source.databases["main"],
        "UPDATE site SET title = 'changed by the tenant' WHERE id = 1",
    );
    let upload = www.join("newsrc/uploads/photo.txt");
    std::fs::write(&upload, "a tenant's upload\n").unwrap();
    support::chown_r(&upload, tenant().uid, tenant().gid);
    let source_files = tree_state(&www.join("newsrc"), &[]);

    let target = www.join("newdst");
    let out = sb.cli(&[
        "migrate",
        "newsrc",
        "--to-new",
        "newdst",
        "--base-url",
        "https://newdst.example/",
        "--web-root",
        target.as_str(),
        "--setting",
        "site_code=newdst",
        "--json",
    ]);
    let _drop_target = DropMade {
        state: sb.state(),
        instance: "newdst",
    };
    assert_success(&out, "migrate --to-new");
    let v = json(&out);
    assert_eq!(v["installed"]["instance"], "newdst", "{v}");
    assert_eq!(v["target"], "newdst", "{v}");
    assert_eq!(instances(&sb), ["newdst", "newsrc"]);

    let copy = record(&sb, "newdst");
    // Its own databases, made on the servers; its settings the source's but the uniq one.
    for id in ["main", "stats"] {
        assert_ne!(copy.databases[id].name, source.databases[id].name, "{id}");
    }
    assert_eq!(copy.settings["admin_email"], source.settings["admin_email"]);
    assert_eq!(
        copy.settings["site_code"],
        aps_controller::registry::SettingValue::Single("newdst".into())
    );
    // config.php, rewritten by the restore as the new instance: its databases and URL.
    let config = std::fs::read_to_string(target.join("config.php")).unwrap();
    assert!(config.contains(&copy.databases["main"].name), "{config}");
    assert!(config.contains(&copy.databases["stats"].name), "{config}");
    assert!(config.contains("https://newdst.example/"), "{config}");
    assert!(!config.contains(&source.databases["main"].name), "{config}");
    // The data is the source's.
    let query = "SELECT title FROM site WHERE id = 1";
    assert_eq!(sql(&copy.databases["main"], query), "changed by the tenant");
    assert_eq!(
        sql(&copy.databases["stats"], "SELECT count(*) FROM hits"),
        sql(&source.databases["stats"], "SELECT count(*) FROM hits")
    );
    assert_eq!(
        std::fs::read_to_string(target.join("uploads/photo.txt")).unwrap(),
        "a tenant's upload\n"
    );
    // The source is untouched.
    assert_eq!(tree_state(&www.join("newsrc"), &[]), source_files);
    assert_eq!(
        sql(&source.databases["main"], query),
        "changed by the tenant"
    );

    // An existing N is refused before anything is made.
    let before = (tree_state(&www, &[]), made_on_servers(&servers, "newdst"));
    let out = sb.cli(&[
        "migrate",
        "newsrc",
        "--to-new",
        "newdst",
        "--base-url",
        "https://other.example/",
        "--web-root",
        www.join("other").as_str(),
        "--setting",
        "site_code=other",
        "--json",
    ]);
    let v = json(&out);
    assert!(!out.status.success(), "{v}");
    assert!(v["error"]["message"].to_string().contains("newdst"), "{v}");
    assert_eq!(
        (tree_state(&www, &[]), made_on_servers(&servers, "newdst")),
        before
    );
}

#[test]
fn restore_as_new_rebuilds_an_instance_removed_by_hand_from_its_backup_file() {
    let Some((sb, www, servers)) = with_servers("restore --as-new against both servers") else {
        return;
    };
    let mut args = PHP_SETTINGS.to_vec();
    args.extend(["--setting", "site_code=gone"]);
    let root = www.join("gone");
    let out = install(&sb, &php(), "gone", &root, &args);
    assert_success(&out, "install the source");
    let source = record(&sb, "gone");
    sql(
        &source.databases["main"],
        "UPDATE site SET title = 'before the fire' WHERE id = 1",
    );
    let file = sb.path("gone.aps");
    let out = sb.cli(&["backup", "gone", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");

    // Removed by hand: databases and users, files, record.
    drop(DropMade {
        state: sb.state(),
        instance: "gone",
    });
    std::fs::remove_dir_all(&root).unwrap();
    FileStore::new(StateDir::at(sb.state()))
        .remove("gone")
        .unwrap();
    assert!(instances(&sb).is_empty());
    assert!(made_on_servers(&servers, "gone").is_empty());
    let nothing = tree_state(&www, &[]);

    // No registered instance runs the backup's package, and none was given.
    let as_new = |extra: &[&str]| {
        let mut all = vec![
            "restore",
            "--from",
            file.as_str(),
            "--as-new",
            "gone",
            "--base-url",
            "https://gone.example/",
            "--web-root",
            root.as_str(),
            "--json",
        ];
        all.extend_from_slice(extra);
        sb.cli(&all)
    };
    let out = as_new(&[]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(2), "{v} {:?}", out.status);
    let message = v["error"]["message"].to_string();
    assert!(
        message.contains("lifecycle-php") && message.contains("--package"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), nothing);
    assert!(instances(&sb).is_empty());

    let package = php();
    let mut given = vec!["--package", package.as_str()];
    given.extend(PHP_SETTINGS);
    given.extend(["--setting", "site_code=gone"]);
    let out = as_new(&given);
    let _drop = DropMade {
        state: sb.state(),
        instance: "gone",
    };
    assert_success(&out, "restore --as-new");
    let v = json(&out);
    assert_eq!(v["installed"]["instance"], "gone", "{v}");
    assert_eq!(v["source_instance"], "gone", "{v}");
    let back = record(&sb, "gone");
    assert_eq!(
        sql(
            &back.databases["main"],
            "SELECT title FROM site WHERE id = 1"
        ),
        "before the fire"
    );
    let config = std::fs::read_to_string(root.join("config.php")).unwrap();
    assert!(config.contains(&back.databases["main"].name), "{config}");

    // An existing N is refused, nothing made.
    let before = (tree_state(&www, &[]), made_on_servers(&servers, "gone"));
    let out = sb.cli(&[
        "restore",
        "--from",
        file.as_str(),
        "--as-new",
        "gone",
        "--base-url",
        "https://gone2.example/",
        "--web-root",
        www.join("gone2").as_str(),
        "--json",
    ]);
    let v = json(&out);
    assert!(!out.status.success(), "{v}");
    assert_eq!(
        (tree_state(&www, &[]), made_on_servers(&servers, "gone")),
        before
    );
}

#[test]
fn a_failing_restore_half_removes_the_new_instance_whole() {
    let Some((sb, www, servers)) = with_servers("the restore half of migrate --to-new fails")
    else {
        return;
    };
    let package = repo().join("fixtures/lifecycle/lifecycle-sh-faulty");
    let out = install(
        &sb,
        &package,
        "faulty-src",
        &www.join("faulty-src"),
        &["--setting", "fail-at=restore"],
    );
    let _drop_source = DropMade {
        state: sb.state(),
        instance: "faulty-src",
    };
    assert_success(&out, "install the source");
    let before = left_behind(&sb, &www, &servers, ("faulty-src", "faulty_dst"));
    let out = migrate_to_new(&sb, "faulty-src", "faulty-dst", &www.join("faulty-dst"))
        .output()
        .unwrap();
    let _drop_target = DropMade {
        state: sb.state(),
        instance: "faulty-dst",
    };
    let v = json(&out);
    assert!(!out.status.success(), "{v}");
    assert!(
        v["error"]["message"]
            .to_string()
            .contains("fail-at=restore"),
        "{v}"
    );
    assert_eq!(
        left_behind(&sb, &www, &servers, ("faulty-src", "faulty_dst")),
        before
    );
    assert_eq!(instances(&sb), ["faulty-src"]);
}

#[test]
fn kill_9_in_the_restore_half_is_undone_by_the_next_command() {
    let Some((sb, www, servers)) = with_servers("kill -9 while the new instance is restored")
    else {
        return;
    };
    // lifecycle-sh-faulty whose restore hangs once the controller has put the files back.
    let package = sb.path("hang");
    super::install::copy_package(
        &repo().join("fixtures/lifecycle/lifecycle-sh-faulty"),
        &package,
    );
    let script = package.join("scripts/backup");
    let text = std::fs::read_to_string(&script).unwrap().replacen(
        "HEADER=",
        "[ \"${1-}\" = restore ] && { echo \"$DB_main_NAME\" > \"$WEB___DIR/restoring\"; exec sleep 120; }\nHEADER=",
        1,
    );
    std::fs::write(&script, text).unwrap();
    let out = install(&sb, &package, "hang-src", &www.join("hang-src"), &[]);
    let _drop_source = DropMade {
        state: sb.state(),
        instance: "hang-src",
    };
    assert_success(&out, "install the source");
    let before = left_behind(&sb, &www, &servers, ("hang-src", "hang_dst"));
    let target = www.join("hang-dst");
    let mut child = migrate_to_new(&sb, "hang-src", "hang-dst", &target)
        .spawn()
        .unwrap();
    let marker = target.join("restoring");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(120);
    while !std::fs::read_to_string(&marker).is_ok_and(|t| t.ends_with('\n')) {
        assert!(
            std::time::Instant::now() < deadline,
            "the restore script never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    // Installed and recorded, its database made: the restore half is under way.
    assert_eq!(made_on_servers(&servers, "hang_dst").len(), 2);
    assert!(sb.state().join("instances/hang-dst.json").exists());
    child.kill().unwrap();
    child.wait().unwrap();

    let out = sb.cli(&["instance", "list", "--json"]);
    let _drop_target = DropMade {
        state: sb.state(),
        instance: "hang-dst",
    };
    assert_success(&out, "the next command");
    let v = json(&out);
    let recovered = v["recovered"].as_array().unwrap();
    assert!(
        recovered
            .iter()
            .any(|e| e["operation"] == "install" && e["instance"] == "hang-dst"),
        "{v}"
    );
    assert!(recovered.iter().all(|e| e["fully_undone"] == true), "{v}");
    assert_eq!(
        left_behind(&sb, &www, &servers, ("hang-src", "hang_dst")),
        before
    );
    assert_eq!(instances(&sb), ["hang-src"]);
}

#[test]
fn the_migrate_and_restore_routes_take_to_new_and_as_new_inside_the_allowed_folders() {
    if !support::needs_root("new instances over HTTP as the tenant account") {
        return;
    }
    use serde_json::json;
    let (sb, www) = super::install::tenant_sandbox();
    let package = sb.path("pkg");
    super::install::copy_package(&support::fixture("sh-sample"), &package);
    let served = support::serve::serve_allowing(&sb, &[www.as_str(), package.as_str()]);
    let (status, v) = served.call(
        "POST",
        "/v1/instances",
        json!({"package": package, "name": "web", "base_url": "https://web.example/",
               "web_root": www.join("web"), "settings": {"admin_password": "pw"}}),
    );
    assert_eq!(status, 201, "{v}");

    // A web root outside the allowed folders: refused before anything.
    let (status, v) = served.call(
        "POST",
        "/v1/instances/web/migrate",
        json!({"to_new": "web2", "base_url": "https://web2.example/",
               "web_root": sb.path("elsewhere")}),
    );
    assert_eq!(status, 403, "{v}");
    // Both targets at once: the CLI's refusal, in the JSON fields' words.
    let (status, v) = served.call(
        "POST",
        "/v1/instances/web/migrate",
        json!({"to_new": "web2", "to_instance": "web", "base_url": "https://web2.example/",
               "web_root": www.join("web2")}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(v["error"]["message"].to_string().contains("to_new"), "{v}");

    let (status, v) = served.call(
        "POST",
        "/v1/instances/web/migrate",
        json!({"to_new": "web2", "base_url": "https://web2.example/",
               "web_root": www.join("web2")}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["installed"]["instance"], "web2", "{v}");
    assert!(www.join("web2").is_dir());

    // sh-sample's backup-script is `sufficient`: its file has no manifest to install from,
    // so a restore as new is refused, and nothing is made.
    let file = www.join("web.aps");
    let (status, v) = served.call("POST", "/v1/instances/web/backup", json!({"to": file}));
    assert_eq!(status, 200, "{v}");
    let before = tree_state(&www, &[]);
    let (status, v) = served.call(
        "POST",
        "/v1/instances/web/restore",
        json!({"from": file, "as_new": "web3", "base_url": "https://web3.example/",
               "web_root": www.join("web3"), "settings": {"admin_password": "pw"}}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "invalid-backup", "{v}");
    assert_eq!(tree_state(&www, &[]), before);
    assert_eq!(instances(&sb), ["web", "web2"]);
}
