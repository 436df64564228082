//! The repository store through `serve` and `migrate`: the real `serve` process backs up into
//! the repository and restores a snapshot (by prefix, or the newest) over HTTP, answering as
//! the CLI's `--json` does (and lists them as `backups --json`); `migrate --snapshot|--latest` restores a snapshot of one instance
//! into another through the controller's restore, leaving the source untouched, and a target
//! restore that fails is put back. Every mistake is refused before any work, with its kind.
//! Real repository, real MariaDB and PostgreSQL databases, real files.

use test_support as support;
use test_support::restore_kit as kit;

use std::process::{Command, Output};

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};
use support::serve::{Served, serve_allowing};
use support::{Dbs, Sandbox, assert_success, register_without_script};

/// A sandbox whose store is an initialised repository.
fn repository_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.use_repository();
    sb
}

/// An instance of the nobackup fixture with the hard cases in its web folder and databases.
struct Site {
    www: Utf8PathBuf,
    dbs: Dbs,
}

impl Site {
    fn new(sb: &Sandbox, name: &str) -> Site {
        let (www, dbs) = register_without_script(sb, name);
        kit::populate_tree(&www);
        kit::populate_databases(&dbs.mysql, &dbs.pg);
        Site { www, dbs }
    }

    fn state(&self) -> kit::State {
        kit::State {
            tree: kit::tree_record(&self.www),
            databases: kit::db_state(&self.dbs.mysql, &self.dbs.pg),
        }
    }

    /// Files changed, added and removed, rows of both databases changed.
    fn change(&self) {
        std::fs::write(self.www.join("index.php"), b"<?php echo 'SHOP';\n").unwrap();
        std::fs::write(self.www.join("added.txt"), b"new\n").unwrap();
        std::fs::remove_file(self.www.join("file with spaces.txt")).unwrap();
        kit::run_sql(&self.dbs.mysql, "DELETE FROM posts WHERE id > 250;");
        kit::run_sql(
            &self.dbs.pg,
            "UPDATE hits SET path = 'changed' WHERE id = 9;",
        );
    }
}

fn cli_json(sb: &Sandbox, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.push("--json");
    sb.cli(&all)
}

fn fails(out: &Output, code: i32, kind: &str) -> Value {
    assert_eq!(out.status.code(), Some(code), "{out:?}");
    let v = support::json(out);
    assert_eq!(v["error"]["kind"], kind, "{v}");
    v
}

fn refused(answer: (u16, Value), status: u16, kind: &str, says: &str) {
    let (got, v) = answer;
    assert_eq!(got, status, "{v}");
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(says),
        "{says:?} not in {v}"
    );
}

/// Ids of the snapshots of `name`, newest first.
fn snapshots(sb: &Sandbox, name: &str) -> Vec<String> {
    let out = cli_json(sb, &["backups", name]);
    assert_success(&out, "backups");
    support::json(&out)["snapshots"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap().to_owned())
        .collect()
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

/// Staging folders of repository restores left in the state folder (there must be none).
fn staging_leftovers(state: &Utf8Path) -> Vec<String> {
    support::entries(state)
        .into_iter()
        .filter(|e| e.starts_with(".repository-restore-"))
        .collect()
}

fn serve(sb: &Sandbox) -> Served {
    serve_allowing(sb, &[sb.root().as_str()])
}

#[test]
fn serve_backs_up_into_the_repository_and_restores_snapshots() {
    let sb = repository_sandbox();
    let site = Site::new(&sb, "site");
    let server = serve(&sb);
    let (identity, recipient) = support::age_identity(&sb.root());
    let before = site.state();

    // Mistakes: 400/404 with their kind, and nothing is backed up or restored.
    let backup = "/v1/instances/site/backup";
    let restore = "/v1/instances/site/restore";
    refused(
        server.call("POST", backup, json!({"compression": "zstd"})),
        400,
        "usage",
        "\"compression\"/\"recipients\" applies to archive files",
    );
    refused(
        server.call("POST", backup, json!({"recipients": [recipient]})),
        400,
        "usage",
        "give \"to\" for an archive",
    );
    refused(
        server.call("POST", backup, json!({"force": true})),
        400,
        "usage",
        "\"force\": true replaces an existing \"to\" file",
    );
    refused(
        server.call("POST", "/v1/instances/nosuch/backup", json!({})),
        404,
        "instance-not-found",
        "nosuch",
    );
    for body in [
        json!({}),
        json!({"latest": false}),
        json!({"from": sb.path("x.aps"), "latest": true}),
        json!({"snapshot": "abcd", "latest": true}),
    ] {
        refused(
            server.call("POST", restore, body),
            400,
            "usage",
            "exactly one of \"from\", \"latest\": true and \"snapshot\"",
        );
    }
    refused(
        server.call("POST", restore, json!({"latest": true})),
        400,
        "usage",
        "site",
    );
    refused(
        server.call(
            "POST",
            restore,
            json!({"latest": true, "identity": identity}),
        ),
        400,
        "usage",
        "\"identity\" decrypts archive files",
    );
    refused(
        server.call(
            "POST",
            "/v1/instances/nosuch/restore",
            json!({"latest": true}),
        ),
        404,
        "instance-not-found",
        "nosuch",
    );
    assert!(snapshots(&sb, "site").is_empty(), "nothing was backed up");
    kit::assert_same(&site.state(), &before, "nothing was restored");

    // Without "to": one snapshot, answered as `backup site --json` answers.
    let (status, first) = server.call("POST", backup, json!({}));
    assert_eq!(status, 200, "{first}");
    let first_id = first["snapshot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(first["instance"], "site");
    assert_eq!(first["snapshot"]["periodicity"], "manual");
    let cli = cli_json(&sb, &["backup", "site"]);
    assert_success(&cli, "backup site --json");
    assert_eq!(keys(&first), keys(&support::json(&cli)));
    assert_eq!(
        keys(&first["snapshot"]),
        keys(&support::json(&cli)["snapshot"])
    );

    site.change();
    let changed = site.state();
    let (status, second) = server.call("POST", backup, json!({"timeout_secs": 600}));
    assert_eq!(status, 200, "{second}");
    let second_id = second["snapshot"]["id"].as_str().unwrap().to_owned();
    assert_eq!(snapshots(&sb, "site")[0], second_id);
    // The snapshots, newest first, as `backups site --json` lists them.
    let (status, v) = server.call("GET", "/v1/instances/site/backups", Value::Null);
    assert_eq!(status, 200, "{v}");
    let cli = cli_json(&sb, &["backups", "site"]);
    assert_eq!(v["snapshots"], support::json(&cli)["snapshots"]);
    assert_eq!(keys(&v), keys(&support::json(&cli)));
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["snapshots"][0]["id"], second_id.as_str());
    refused(
        server.call("GET", "/v1/instances/nosuch/backups", Value::Null),
        404,
        "instance-not-found",
        "nosuch",
    );

    // A snapshot that is not there, or one under the archive's identity: refused, nothing
    // changes.
    refused(
        server.call("POST", restore, json!({"snapshot": "ffffffff"})),
        400,
        "usage",
        "ffffffff",
    );
    kit::assert_same(&site.state(), &changed, "nothing was restored");

    // The first snapshot by a prefix: the first tree and rows, exactly.
    let (status, v) = server.call(
        "POST",
        restore,
        json!({"snapshot": &first_id[..10], "timeout_secs": 600}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["id"], first_id.as_str());
    assert_eq!(v["instance"], "site");
    kit::assert_same(&site.state(), &before, "the first snapshot restored");
    // The same fields as `restore site --snapshot ID --json`.
    let cli = cli_json(&sb, &["restore", "site", "--snapshot", &first_id[..10]]);
    assert_success(&cli, "restore --snapshot --json");
    assert_eq!(keys(&v), keys(&support::json(&cli)));

    // The newest: the changed tree and rows.
    let (status, v) = server.call("POST", restore, json!({"latest": true}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["id"], second_id.as_str());
    kit::assert_same(&site.state(), &changed, "the newest snapshot restored");
    assert!(staging_leftovers(&sb.state()).is_empty());
    kit::assert_nothing_left_open(&sb.state());
}

/// The registered target of a migration, as its registration leaves it.
fn staging_site(sb: &Sandbox) -> Site {
    let (www, dbs) = register_without_script(sb, "staging");
    Site { www, dbs }
}

#[test]
fn migrate_restores_a_snapshot_of_the_source_into_the_target() {
    let sb = repository_sandbox();
    let shop = Site::new(&sb, "shop");
    let staging = staging_site(&sb);
    std::fs::write(staging.www.join("old-staging.html"), "old").unwrap();
    kit::run_sql(
        &staging.dbs.mysql,
        "CREATE TABLE old_stuff (a INT); INSERT INTO old_stuff VALUES (1);",
    );
    let shop_first = shop.state();
    let out = cli_json(&sb, &["backup", "shop"]);
    assert_success(&out, "backup shop");
    let first = support::json(&out)["snapshot"]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    shop.change();
    let shop_now = shop.state();
    let staging_before = staging.state();

    // Mistakes, refused before anything is staged or restored.
    fails(
        &cli_json(
            &sb,
            &[
                "migrate",
                "shop",
                "--to-instance",
                "staging",
                "--snapshot",
                "ffffffff",
            ],
        ),
        2,
        "usage",
    );
    fails(
        &cli_json(
            &sb,
            &["migrate", "shop", "--to-instance", "nosuch", "--latest"],
        ),
        4,
        "instance-not-found",
    );
    fails(
        &cli_json(
            &sb,
            &["migrate", "nosuch", "--to-instance", "staging", "--latest"],
        ),
        4,
        "instance-not-found",
    );
    fails(
        &cli_json(
            &sb,
            &["migrate", "shop", "--to-instance", "shop", "--latest"],
        ),
        2,
        "usage",
    );
    let keep = sb.path("kept.aps");
    fails(
        &cli_json(
            &sb,
            &[
                "migrate",
                "shop",
                "--to-instance",
                "staging",
                "--latest",
                "--keep",
                keep.as_str(),
            ],
        ),
        2,
        "usage",
    );
    fails(
        &cli_json(
            &sb,
            &[
                "migrate",
                "shop",
                "--to-instance",
                "staging",
                "--latest",
                "--snapshot",
                &first[..8],
            ],
        ),
        2,
        "usage",
    );
    // Another package (the sh fixture): the migration's compatibility check says no.
    sb.register(
        "blog",
        "sh-sample",
        "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n",
    );
    let v = fails(
        &cli_json(
            &sb,
            &["migrate", "shop", "--to-instance", "blog", "--latest"],
        ),
        17,
        "invalid-backup",
    );
    assert_eq!(v["error"]["step"], "find-instance", "{v}");
    assert!(!keep.exists());
    kit::assert_same(&staging.state(), &staging_before, "target untouched");
    kit::assert_same(&shop.state(), &shop_now, "source untouched");

    // The first snapshot by a prefix: the target holds the source's first tree and rows.
    let out = cli_json(
        &sb,
        &[
            "migrate",
            "shop",
            "--to-instance",
            "staging",
            "--snapshot",
            &first[..10],
        ],
    );
    assert_success(&out, "migrate --snapshot");
    let v = support::json(&out);
    assert_eq!(v["source"], "shop");
    assert_eq!(v["target"], "staging");
    assert_eq!(v["snapshot"]["id"], first.as_str(), "{v}");
    assert_eq!(v["restore"]["instance"], "staging", "{v}");
    assert_eq!(v["restore"]["safety_snapshot"], true, "{v}");
    kit::assert_same(&staging.state(), &shop_first, "target after migration");
    kit::assert_same(&shop.state(), &shop_now, "source after migration");

    // --latest, in text: the newest snapshot.
    let out = sb.cli(&["backup", "shop"]);
    assert_success(&out, "second backup");
    let out = sb.cli(&["migrate", "shop", "--to-instance", "staging", "--latest"]);
    assert_success(&out, "migrate --latest");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with("migrated shop into staging from snapshot "),
        "{text}"
    );
    kit::assert_same(&staging.state(), &shop_now, "target after --latest");

    // Over HTTP: the same, and the same mistakes.
    let server = serve(&sb);
    let route = "/v1/instances/shop/migrate";
    refused(
        server.call(
            "POST",
            route,
            json!({"to_instance": "staging", "latest": true, "keep": keep}),
        ),
        400,
        "usage",
        "\"keep\" keeps the intermediate backup",
    );
    refused(
        server.call(
            "POST",
            route,
            json!({"to_instance": "nosuch", "snapshot": &first[..8]}),
        ),
        404,
        "instance-not-found",
        "nosuch",
    );
    refused(
        server.call(
            "POST",
            route,
            json!({"to_instance": "staging", "snapshot": "ffffffff"}),
        ),
        400,
        "usage",
        "ffffffff",
    );
    kit::assert_same(&staging.state(), &shop_now, "nothing restored");
    let (status, v) = server.call(
        "POST",
        route,
        json!({"to_instance": "staging", "snapshot": &first[..8]}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["snapshot"]["id"], first.as_str(), "{v}");
    kit::assert_same(&staging.state(), &shop_first, "target after HTTP migration");
    kit::assert_same(&shop.state(), &shop_now, "source after HTTP migration");
    assert!(staging_leftovers(&sb.state()).is_empty());
    kit::assert_nothing_left_open(&sb.state());
}

/// The target's web folder is a disk too small for the snapshot: the restore fails as
/// no-space and the controller's safety snapshot puts the target back exactly.
#[test]
fn a_migration_from_a_snapshot_that_fails_puts_the_target_back() {
    let sb = repository_sandbox();
    let shop = Site::new(&sb, "shop");
    let staging = staging_site(&sb);
    let big = Command::new("head")
        .args(["-c", "3145728", "/dev/urandom"])
        .output()
        .unwrap()
        .stdout;
    std::fs::write(shop.www.join("big.bin"), big).unwrap();
    assert_success(&sb.cli(&["backup", "shop"]), "backup shop");
    let Some(_disk) = support::Tmpfs::mount(&staging.www, "2m") else {
        return;
    };
    std::fs::write(staging.www.join("index.html"), "<h1>staging</h1>\n").unwrap();
    kit::run_sql(
        &staging.dbs.mysql,
        "CREATE TABLE old_stuff (a INT); INSERT INTO old_stuff VALUES (1);",
    );
    let (shop_before, staging_before) = (shop.state(), staging.state());
    let v = fails(
        &cli_json(
            &sb,
            &["migrate", "shop", "--to-instance", "staging", "--latest"],
        ),
        19,
        "no-space",
    );
    assert_eq!(v["error"]["place"], staging.www.as_str(), "{v}");
    kit::assert_same(&staging.state(), &staging_before, "target put back");
    kit::assert_same(&shop.state(), &shop_before, "source untouched");
    assert!(staging_leftovers(&sb.state()).is_empty());
    kit::assert_nothing_left_open(&sb.state());
}

/// With the archive store a snapshot means nothing: `--snapshot`/`--latest` of migrate and
/// "snapshot" of serve are usage mistakes; serve's `"latest": true` restores the store's
/// newest good backup, as `restore --latest` does.
#[test]
fn snapshots_are_refused_with_the_archive_store() {
    let sb = Sandbox::new();
    let settings =
        "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";
    let www = sb.register("blog", "sh-sample", settings);
    sb.register("staging", "sh-sample", settings);
    for args in [
        vec![
            "migrate",
            "blog",
            "--to-instance",
            "staging",
            "--snapshot",
            "3f0c9a1e",
        ],
        vec!["migrate", "blog", "--to-instance", "staging", "--latest"],
    ] {
        let v = fails(&cli_json(&sb, &args), 2, "usage");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("archive store"),
            "{v}"
        );
    }
    let server = serve(&sb);
    refused(
        server.call(
            "POST",
            "/v1/instances/blog/restore",
            json!({"snapshot": "3f0c9a1e"}),
        ),
        400,
        "usage",
        "\"snapshot\" names a snapshot of the repository store",
    );
    refused(
        server.call(
            "POST",
            "/v1/instances/blog/migrate",
            json!({"to_instance": "staging", "latest": true}),
        ),
        400,
        "usage",
        "archive store",
    );
    // No backup yet: "latest" has nothing to restore.
    let (status, v) = server.call(
        "POST",
        "/v1/instances/blog/restore",
        json!({"latest": true}),
    );
    assert_eq!(status, 400, "{v}");
    assert!(!support::exists(www.join(".aps-restored-from")));
    let (status, v) = server.call("POST", "/v1/instances/blog/backup", json!({}));
    assert_eq!(status, 200, "{v}");
    let stored = Utf8PathBuf::from(v["file"].as_str().unwrap());
    let (status, v) = server.call("GET", "/v1/instances/blog/backups", Value::Null);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["backups"][0]["path"], stored.as_str(), "{v}");
    let (status, v) = server.call(
        "POST",
        "/v1/instances/blog/restore",
        json!({"latest": true}),
    );
    assert_eq!(status, 200, "{v}");
    // The sh fixture's restore copies the file it was given: the store's newest.
    assert_eq!(
        std::fs::read(www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&stored).unwrap()
    );
}
