//! `aps-controller store …` through the real binary: a registered instance with real databases
//! backed up into a repository, listed, and restored into a staging folder.

use test_support as support;

use std::time::Duration;

use aps_controller::database;
use support::{Sandbox, assert_success, databases, db_toml, json};

const T: Duration = Duration::from_secs(60);

fn files(dir: &camino::Utf8Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in d.read_dir_utf8().unwrap() {
            let e = e.unwrap();
            let rel = e.path().strip_prefix(dir).unwrap().to_string();
            let meta = std::fs::symlink_metadata(e.path()).unwrap();
            if meta.is_dir() {
                stack.push(e.path().to_owned());
            } else if meta.is_symlink() {
                let target = std::fs::read_link(e.path()).unwrap();
                out.push((rel, target.to_string_lossy().as_bytes().to_vec()));
            } else {
                out.push((rel, std::fs::read(e.path()).unwrap()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn store_init_backup_snapshots_restore() {
    let Some(dbs) = databases("repocli") else {
        return;
    };
    database::query(
        &dbs.mysql,
        "CREATE TABLE posts (id INT PRIMARY KEY, t TEXT); INSERT INTO posts VALUES (1,'a'),(2,'b');",
        T,
    )
    .unwrap();
    let sb = Sandbox::new();
    let www = sb.register(
        "site",
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_password = \"x\"\n{}{}",
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    );
    std::fs::write(www.join(".htaccess"), "deny from all\n").unwrap();
    std::os::unix::fs::symlink("index.html", www.join("home.html")).unwrap();

    // Without [store] kind = "repository" the command refuses before doing anything.
    let out = sb.cli(&["store", "init", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "usage");

    std::fs::write(
        sb.state().join("panel.toml"),
        "[store]\nkind = \"repository\"\n",
    )
    .unwrap();
    // Not initialised yet: says what to run.
    let out = sb.cli(&["store", "backup", "site", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let v = json(&out);
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("store init"),
        "{v}"
    );

    let out = sb.cli(&["store", "init", "--json"]);
    assert_success(&out, "store init");
    assert_eq!(json(&out)["ok"], true);
    assert!(sb.state().join("repository/config").is_file());
    let out = sb.cli(&["store", "init", "--json"]);
    assert_eq!(out.status.code(), Some(2), "init twice: {out:?}");

    let out = sb.cli(&[
        "store",
        "backup",
        "site",
        "--periodicity",
        "daily",
        "--json",
    ]);
    assert_success(&out, "store backup");
    let v = json(&out);
    let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(v["snapshot"]["periodicity"], "daily");
    assert!(v["snapshot"]["package"]["version"].is_string(), "{v}");

    let out = sb.cli(&["store", "snapshots", "site", "--json"]);
    assert_success(&out, "store snapshots");
    let list = json(&out)["snapshots"].as_array().unwrap().clone();
    assert_eq!(list.len(), 1);
    assert_eq!(list[0]["id"], id.as_str());

    let staging = sb.path("staging");
    let out = sb.cli(&[
        "store",
        "restore",
        "site",
        "--latest",
        "--to",
        staging.as_str(),
        "--json",
    ]);
    assert_success(&out, "store restore");
    assert_eq!(files(&staging.join("web/%2F")), files(&www));
    // Both dumps are there and load into fresh databases with the same rows.
    let fresh = databases("repocli2").unwrap();
    database::load(&fresh.mysql, &staging.join("databases/main.sql"), T).unwrap();
    database::load(&fresh.pg, &staging.join("databases/stats.sql"), T).unwrap();
    let q = "SELECT id, t FROM posts ORDER BY id";
    assert_eq!(
        database::query(&fresh.mysql, q, T).unwrap(),
        database::query(&dbs.mysql, q, T).unwrap()
    );

    let out = sb.cli(&["store", "check", "--read-data", "--json"]);
    assert_success(&out, "store check");

    // A snapshot id that is not there: a mistake (usage), nothing written.
    let out = sb.cli(&[
        "store",
        "restore",
        "site",
        "--snapshot",
        "ffffffff",
        "--to",
        sb.path("nowhere").as_str(),
        "--json",
    ]);
    assert_eq!(json(&out)["error"]["kind"], "usage", "{out:?}");
    assert!(!sb.path("nowhere").exists());
}
