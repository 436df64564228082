//! The panel's commands (`run`, `prune`, `backups`, `verify`, `drill`) through the real
//! `aps-controller` binary, the real controller and the fixture packages.

use test_support as support;

use std::time::Duration;

use aps_controller::database::{self, Database};
use camino::Utf8PathBuf;

use support::{Dbs, Sandbox, age_identity, assert_success, databases, db_toml};

use test_support::s3_env;

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

fn sh(sb: &Sandbox, name: &str, behaviour: &str) {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"{behaviour}\"\n"),
    );
}

fn panel_toml(sb: &Sandbox, text: &str) {
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(sb.state().join("panel.toml"), text).unwrap();
}

fn store_files(sb: &Sandbox, instance: &str) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(sb.state().join("backups").join(instance))
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn seed(sb: &Sandbox, instance: &str, names: &[(&str, &str)]) {
    let dir = sb.state().join("backups").join(instance);
    std::fs::create_dir_all(&dir).unwrap();
    for (n, body) in names {
        std::fs::write(dir.join(n), body).unwrap();
    }
}

#[test]
fn backups_and_prune_work_from_the_store_alone() {
    let sb = Sandbox::new();
    panel_toml(&sb, "[retention]\ndaily = 1\n");
    seed(
        &sb,
        "blog",
        &[
            ("blog_daily_2026-01-01-02-00-00.aps.tar.zst", "a"),
            ("blog_daily_2026-01-02-02-00-00.aps.tar.zst", "bb"),
            ("blog_manual_2026-01-03-02-00-00.aps.tar.gz.age", "ccc"),
            (
                ".blog_daily_2026-01-04-02-00-00.aps.tar.zst.aps-partial-x",
                "d",
            ),
        ],
    );
    let out = sb.cli(&["backups", "blog", "--json"]);
    assert_success(&out, "backups");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true);
    assert_eq!(v["instance"], "blog");
    let list = &v["backups"];
    let got: Vec<(String, String, u64)> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["file"].as_str().unwrap().into(),
                e["status"].as_str().unwrap().into(),
                e["size"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(got[0].1, "partial");
    assert_eq!(
        got[1],
        (
            "blog_manual_2026-01-03-02-00-00.aps.tar.gz.age".into(),
            "good".into(),
            3
        )
    );
    assert_eq!(list[1]["periodicity"], "manual");
    assert_eq!(list[1]["time"], "2026-01-03T02:00:00Z");
    // Full paths, which `restore --from` and `verify` take as they are.
    assert_eq!(
        list[1]["path"],
        sb.state()
            .join("backups/blog/blog_manual_2026-01-03-02-00-00.aps.tar.gz.age")
            .as_str()
    );

    let out = sb.cli(&["prune", "--dry-run", "--json"]);
    assert_success(&out, "prune --dry-run");
    let v = &json_lines(&out)[0];
    assert_eq!(v["ok"], true);
    let p = &v["stores"][0];
    assert_eq!(
        p["removed"],
        serde_json::json!(["blog/blog_daily_2026-01-01-02-00-00.aps.tar.zst"])
    );
    assert_eq!(store_files(&sb, "blog").len(), 4, "dry run removes nothing");

    let out = sb.cli(&["prune"]);
    assert_success(&out, "prune");
    assert_eq!(
        store_files(&sb, "blog"),
        [
            ".blog_daily_2026-01-04-02-00-00.aps.tar.zst.aps-partial-x",
            "blog_daily_2026-01-02-02-00-00.aps.tar.zst",
            "blog_manual_2026-01-03-02-00-00.aps.tar.gz.age",
        ]
    );
}

#[test]
fn a_bad_panel_toml_stops_the_command_naming_the_file() {
    let sb = Sandbox::new();
    panel_toml(&sb, "[retention]\ndayly = 3\n");
    let out = sb.cli(&["prune"]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("panel.toml") && err.contains("dayly"), "{err}");
}

#[test]
fn run_backs_up_every_instance_continues_past_a_failure_and_prunes_after_success() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "broken", "fail-after-half");
    sh(&sb, "shop", "normal");
    panel_toml(&sb, "compression = \"gzip\"\n[retention]\ndaily = 1\n");
    // An older daily backup of blog (pruned after blog's success) and of broken (kept: its
    // backup fails, so no retention runs for it).
    seed(
        &sb,
        "blog",
        &[("blog_daily_2020-01-01-00-00-00.aps.tar.gz", "old")],
    );
    seed(
        &sb,
        "broken",
        &[("broken_daily_2020-01-01-00-00-00.aps.tar.gz", "old")],
    );

    let out = sb.cli(&["run", "--periodicity", "daily", "--jobs", "2", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "one instance failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    assert_eq!(lines[0]["type"], "progress");
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["total"], 3);
    let last = lines.last().unwrap();
    assert_eq!(
        (&last["type"], &last["ok"]),
        (&"summary".into(), &false.into())
    );
    assert_eq!(last["error"]["kind"], "internal", "{last}");
    let summary = &last["summary"];
    assert_eq!(
        (summary["succeeded"].as_u64(), summary["failed"].as_u64()),
        (Some(2), Some(1))
    );
    let by_name = |n: &str| {
        summary["instances"]
            .as_array()
            .unwrap()
            .iter()
            .find(|o| o["instance"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("broken")["failed_step"], "backup");
    let error = &by_name("broken")["error"];
    assert_eq!(error["kind"], "script-failed", "{error}");
    assert_eq!(error["step"], "3.2-run-script", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(!message.contains("step 3.2-run-script"), "{message}");
    assert_eq!(
        by_name("blog")["pruned"],
        serde_json::json!(["blog/blog_daily_2020-01-01-00-00-00.aps.tar.gz"])
    );

    let blog = store_files(&sb, "blog");
    assert_eq!(blog.len(), 1, "{blog:?}");
    assert!(
        blog[0].starts_with("blog_daily_") && blog[0].ends_with(".aps.tar.gz"),
        "{blog:?}"
    );
    assert_eq!(store_files(&sb, "shop").len(), 1);
    let broken = store_files(&sb, "broken");
    assert_eq!(
        broken,
        ["broken_daily_2020-01-01-00-00-00.aps.tar.gz"],
        "no new file, nothing pruned"
    );
}

#[test]
fn run_of_named_instances_only_and_unknown_names_stop_it_before_any_backup() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "shop", "normal");
    let out = sb.cli(&[
        "run",
        "--periodicity",
        "manual",
        "--instance",
        "shop",
        "--instance",
        "ghost",
    ]);
    assert_eq!(out.status.code(), Some(4), "instance-not-found");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"));
    assert_eq!(store_files(&sb, "shop").len(), 0, "nothing started");

    let out = sb.cli(&["run", "--periodicity", "manual", "--instance", "shop"]);
    assert_success(&out, "run --instance shop");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 ok, 0 failed"), "{stdout}");
    assert_eq!(store_files(&sb, "blog").len(), 0);
    assert_eq!(store_files(&sb, "shop").len(), 1);
    assert!(store_files(&sb, "shop")[0].starts_with("shop_manual_"));
}

#[test]
fn drill_restores_the_newest_good_backup_into_staging() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    let staging_www = {
        sh(&sb, "staging", "normal");
        sb.path("www-staging")
    };
    let out = sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]);
    assert_success(&out, "run");
    // stderr is not a terminal here (as under cron or systemd): no progress bar, nothing on
    // stderr for a successful run; the summary alone goes to stdout.
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with("backup daily: 1 ok, 0 failed"),
        "{stdout}"
    );
    let newest = store_files(&sb, "blog").pop().unwrap();
    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_success(&out, "drill");
    let lines = json_lines(&out);
    let s = &lines.last().unwrap()["summary"];
    assert_eq!(s["passed"], true);
    assert!(s["backup"].as_str().unwrap().ends_with(&newest));
    // sh-sample has a verification-script: it ran against the staging instance, with the
    // argument `configure` and the staging instance's environment.
    assert_eq!(s["verification"]["method"], "verification-script");
    let detail = s["verification"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("verify configure http://staging.example.test/blog/"),
        "{detail}"
    );
    // The sh fixture's restore copies the backup file into the web root.
    let restored = std::fs::read(staging_www.join(".aps-restored-from")).unwrap();
    assert_eq!(
        restored,
        std::fs::read(sb.state().join("backups/blog").join(&newest)).unwrap()
    );

    let out = sb.cli(&["drill", "nobody", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(4), "not registered");
    let out = sb.cli(&["drill", "staging", "--staging", "blog"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no good backup"));
}

/// The host lost its backup disk: `run` had uploaded the backup to the S3 remote, and
/// `drill --remote` downloads the newest good copy and restores it into staging.
#[test]
fn drill_from_the_remote_copy_when_the_local_store_is_gone() {
    let Some(s3) = s3_env::s3_test_env("drill_remote") else {
        return;
    };
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "staging", "normal");
    let secret = sb.path("s3-secret");
    std::fs::write(&secret, &s3.secret_key).unwrap();
    panel_toml(
        &sb,
        &format!(
            "[remote]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\naccess-key-id = \"{}\"\nsecret-access-key-file = \"{secret}\"\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.access_key
        ),
    );
    let out = sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]);
    assert_success(&out, "run with a remote");
    let newest = store_files(&sb, "blog").pop().unwrap();
    let original = std::fs::read(sb.state().join("backups/blog").join(&newest)).unwrap();
    let out = sb.cli(&["backups", "blog", "--remote", "--json"]);
    assert_success(&out, "backups --remote");
    let listed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let listed = &listed["backups"];
    assert_eq!(listed[0]["file"], newest.as_str(), "{listed}");
    assert_eq!(listed[0]["status"], "good");
    let path = listed[0]["path"].as_str().unwrap();
    assert!(
        path.starts_with("s3://") && path.ends_with(&format!("blog/{newest}")),
        "{path}"
    );

    std::fs::remove_dir_all(sb.state().join("backups")).unwrap();
    let out = sb.cli(&["drill", "blog", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(2), "no local backup any more");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no good backup"));

    let out = sb.cli(&[
        "drill",
        "blog",
        "--staging",
        "staging",
        "--remote",
        "--json",
    ]);
    assert_success(&out, "drill --remote");
    let lines = json_lines(&out);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(summary["passed"], true, "{summary}");
    assert_eq!(summary["store"], "remote");
    let backup = summary["backup"].as_str().unwrap();
    assert!(
        backup.starts_with("s3://") && backup.ends_with(&format!("blog/{newest}")),
        "{backup}"
    );
    assert_eq!(summary["verification"]["method"], "verification-script");
    // The sh fixture's restore copies the backup file it was given into the web root: the
    // download is byte for byte what was uploaded.
    let restored = std::fs::read(sb.path("www-staging").join(".aps-restored-from")).unwrap();
    assert_eq!(restored, original);
    // The download was removed with the drill.
    let left: Vec<String> = std::fs::read_dir(sb.state())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(".drill-download-"))
        .collect();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn drill_fails_when_the_verification_script_exits_1() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    // The staging instance's own settings make the verification-script fail; its restore
    // (the backup-script) is unaffected.
    sh(&sb, "staging", "verify-fails");
    assert_success(
        &sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]),
        "run",
    );
    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let lines = json_lines(&out);
    let s = &lines.last().unwrap()["summary"];
    assert_eq!(s["passed"], false);
    assert_eq!(s["failed_step"], "check");
    assert_eq!(s["verification"]["method"], "verification-script");
    assert_eq!(s["verification"]["passed"], false);
    let detail = s["verification"]["detail"].as_str().unwrap();
    assert!(
        detail.contains("verification script")
            && detail.contains("exit code 1")
            && detail.contains("site staging.example.test is not answering"),
        "{detail}"
    );
    // The restore itself happened: only the check failed.
    assert!(sb.path("www-staging/.aps-restored-from").is_file());

    // Without --json the summary says FAIL and names the method.
    let out = sb.cli(&["drill", "blog", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("FAIL") && stdout.contains("verification-script"),
        "{stdout}"
    );
}

const T: Duration = Duration::from_secs(60);

/// nobackup-sample: no backup-script, no verification-script; the controller archives its
/// web folder and its two databases.
fn register_nobackup(sb: &Sandbox, name: &str, mysql: &Database, pg: &Database) {
    sb.register(
        name,
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n{}{}",
            db_toml("main", mysql),
            db_toml("stats", pg)
        ),
    );
}

#[test]
fn drill_without_a_verification_script_compares_file_and_row_counts() {
    let (Some(live), Some(staging)) = (databases("drlive"), databases("drstag")) else {
        return;
    };
    database::query(
        &live.mysql,
        "CREATE TABLE posts (id INT PRIMARY KEY); INSERT INTO posts VALUES (1), (2), (3);",
        T,
    )
    .unwrap();
    database::query(
        &live.pg,
        "CREATE TABLE hits (id INT PRIMARY KEY); INSERT INTO hits VALUES (1), (2);",
        T,
    )
    .unwrap();
    // Staging holds other data before the drill: the restore replaces it.
    database::query(&staging.mysql, "CREATE TABLE junk (id INT);", T).unwrap();

    let sb = Sandbox::new();
    register_nobackup(&sb, "site", &live.mysql, &live.pg);
    register_nobackup(&sb, "staging", &staging.mysql, &staging.pg);
    std::fs::write(sb.path("www-site/extra.txt"), "only in the live site").unwrap();
    assert_success(
        &sb.cli(&["run", "--periodicity", "weekly", "--instance", "site"]),
        "run",
    );
    let out = sb.cli(&["drill", "site", "--staging", "staging", "--json"]);
    assert_success(&out, "drill");
    let s = json_lines(&out).pop().unwrap()["summary"].take();
    assert_eq!(s["passed"], true, "{s}");
    assert_eq!(s["verification"]["method"], "manifest-counts");
    assert_eq!(
        s["verification"]["detail"],
        "1 web folders and 2 databases match the manifest's file and row counts"
    );
    assert!(sb.path("www-staging/extra.txt").is_file());
    assert_eq!(
        database::query(&staging.mysql, "SELECT COUNT(*) FROM posts", T)
            .unwrap()
            .trim(),
        "3"
    );
}

/// A registered nobackup-sample with empty databases: the controller's archive of its web
/// folder and two (empty) dumps. `None` when the suite runs without database servers.
fn register_plain(sb: &Sandbox, name: &str) -> Option<(Utf8PathBuf, Dbs)> {
    let dbs = databases(name)?;
    register_nobackup(sb, name, &dbs.mysql, &dbs.pg);
    Some((sb.path(&format!("www-{name}")), dbs))
}

fn only_backup(sb: &Sandbox, instance: &str) -> Utf8PathBuf {
    let files = store_files(sb, instance);
    assert_eq!(files.len(), 1, "{files:?}");
    sb.state().join("backups").join(instance).join(&files[0])
}

#[test]
fn encrypted_backups_need_the_identity_to_verify_restore_and_drill() {
    let sb = Sandbox::new();
    let (identity, recipient) = age_identity(&sb.root());
    panel_toml(&sb, &format!("age-recipients = [\"{recipient}\"]\n"));
    let (Some((www, _site_dbs)), Some((_, _staging_dbs))) =
        (register_plain(&sb, "site"), register_plain(&sb, "staging"))
    else {
        return;
    };
    assert_success(
        &sb.cli(&["run", "--periodicity", "manual", "--instance", "site"]),
        "run",
    );
    let file = only_backup(&sb, "site");
    assert!(file.as_str().ends_with(".aps.tar.zst.age"), "{file}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"));
    let marker = b"<h1>site</h1>";
    assert!(
        !bytes.windows(marker.len()).any(|w| w == marker),
        "the web content is not readable in the file"
    );

    // Without the identity: verify, restore and drill fail and say why (a missing identity
    // is the caller's to give: usage, 2).
    let out = sb.cli(&["verify", file.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("is encrypted: give an age identity file"),
        "{err}"
    );
    let out = sb.cli(&["verify", "--instance", "site", "--json"]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(json_lines(&out)[0]["ok"], false);
    assert_eq!(json_lines(&out)[0]["error"]["kind"], "usage");
    std::fs::write(www.join("index.html"), "changed").unwrap();
    let out = sb.cli(&["restore", "site", "--from", file.as_str()]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("identity"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "changed"
    );
    // The drill checks what it can without the identity and says what it could not
    // (issue 23: drills without secrets on the host; tests/stores/policies_kept.rs).
    let out = sb.cli(&["drill", "site", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&out.stdout).contains("PARTIAL"));

    // A wrong identity is not enough either.
    let other = sb.path("other");
    std::fs::create_dir_all(&other).unwrap();
    let (wrong, _) = age_identity(&other);
    let out = sb.cli(&["verify", file.as_str(), "--identity", wrong.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("not encrypted to any identity"));

    // With it: verify, restore and drill succeed.
    let out = sb.cli(&["verify", file.as_str(), "--identity", identity.as_str()]);
    assert_success(&out, "verify --identity");
    assert!(String::from_utf8_lossy(&out.stdout).contains(": ok"));
    let out = sb.cli(&[
        "restore",
        "site",
        "--from",
        file.as_str(),
        "--identity",
        identity.as_str(),
    ]);
    assert_success(&out, "restore --identity");
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "<h1>site</h1>\n"
    );
    let out = sb.cli(&[
        "drill",
        "site",
        "--staging",
        "staging",
        "--identity",
        identity.as_str(),
        "--json",
    ]);
    assert_success(&out, "drill --identity");
    let s = json_lines(&out).pop().unwrap()["summary"].take();
    assert_eq!(s["verification"]["method"], "manifest-counts");
}

#[test]
fn a_tampered_backup_fails_verify_naming_the_part() {
    let sb = Sandbox::new();
    // Uncompressed, so that one byte of a file's content can be changed in place.
    panel_toml(&sb, "compression = \"none\"\n");
    let Some((_, _dbs)) = register_plain(&sb, "site") else {
        return;
    };
    assert_success(
        &sb.cli(&["run", "--periodicity", "daily", "--instance", "site"]),
        "run",
    );
    let file = only_backup(&sb, "site");
    let out = sb.cli(&["verify", "--instance", "site"]);
    assert_success(&out, "verify of the untouched file");

    let mut bytes = std::fs::read(&file).unwrap();
    let marker = b"<h1>site</h1>";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the web content is in the tar");
    bytes[at + 4] = b'S';
    std::fs::write(&file, &bytes).unwrap();

    let out = sb.cli(&["verify", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(17), "invalid-backup");
    let v = &json_lines(&out)[0];
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "invalid-backup");
    let err = v["error"]["message"].as_str().unwrap();
    assert!(
        err.contains("did not verify") && err.contains("SHA-256") && err.contains("web"),
        "{err}"
    );
    // `backups` still lists it (the name is good); verify is what tells it apart.
    let out = sb.cli(&["backups", "site", "--json"]);
    assert_success(&out, "backups");
}

#[test]
fn a_script_backup_verifies_by_the_controllers_record_and_fails_once_changed() {
    let sb = Sandbox::new();
    // sh-sample's backup-script is `sufficient`: the file is the script's own, no manifest.
    sh(&sb, "blog", "normal");
    assert_success(
        &sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]),
        "run",
    );
    let file = only_backup(&sb, "blog");
    let out = sb.cli(&["verify", "--instance", "blog"]);
    assert_success(&out, "verify");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("the package's own backup file") && stdout.contains("instance blog"),
        "{stdout}"
    );

    let mut bytes = std::fs::read(&file).unwrap();
    bytes.push(b'\n');
    std::fs::write(&file, &bytes).unwrap();
    let out = sb.cli(&["verify", file.as_str()]);
    assert_eq!(out.status.code(), Some(17));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no record of a backup-script's file"), "{err}");
}
