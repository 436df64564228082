//! A backup of one instance restored into another (issue 23, item 6): refused unless the
//! command says `--from-other-instance` (`"from_other_instance": true` over HTTP), before
//! anything of the target changes; every restore names the instance the backup was made of
//! and when. Real binary, real MariaDB and PostgreSQL databases, real package scripts.

use test_support as support;
use test_support::restore_kit as kit;

use camino::Utf8PathBuf;
use kit::{Site, assert_same, db_instance};
use serde_json::json;
use support::serve::serve_allowing;
use support::{Sandbox, assert_success, json};

/// The backup's time as the JSON result gives it: RFC 3339, between `before` and now.
fn assert_made_between(v: &serde_json::Value, before: jiff::Timestamp) {
    let created: jiff::Timestamp = v["backup_created"]
        .as_str()
        .unwrap_or_else(|| panic!("backup_created missing: {v}"))
        .parse()
        .unwrap();
    // Whole seconds in the manifest: `before` rounded down.
    let before = before
        .checked_sub(jiff::SignedDuration::from_secs(1))
        .unwrap();
    assert!(
        created >= before && created <= jiff::Timestamp::now(),
        "{v}"
    );
}

#[test]
fn another_instances_backup_is_refused_without_the_flag_and_named_with_it() {
    let sb = Sandbox::new();
    let Some(shop) = db_instance(&sb, "shop", Site::default()) else {
        return;
    };
    shop.populate();
    let Some(staging) = db_instance(
        &sb,
        "staging",
        Site {
            base_url: "https://staging.example.org/",
            ..Site::default()
        },
    ) else {
        return;
    };
    std::fs::write(staging.www.join("staging-only.html"), "staging's own").unwrap();
    let before_backup = jiff::Timestamp::now();
    let file = sb.path("shop.aps.tar.zst");
    let out = sb.cli(&["backup", "shop", "--to", file.as_str()]);
    assert_success(&out, "backup shop");
    let staging_before = staging.state();

    // The attack of the issue: shop's backup restored into staging without a word.
    for json_mode in [true, false] {
        let mut args = vec!["restore", "staging", "--from", file.as_str()];
        if json_mode {
            args.push("--json");
        }
        let out = sb.cli(&args);
        assert_eq!(out.status.code(), Some(2), "{out:?}");
        let message = if json_mode {
            let v = json(&out);
            assert_eq!(v["error"]["kind"], "usage", "{v}");
            assert_eq!(v["error"]["step"], "verify-backup", "{v}");
            v["error"]["message"].as_str().unwrap().to_owned()
        } else {
            String::from_utf8_lossy(&out.stderr).into_owned()
        };
        for words in [
            "is a backup of instance shop",
            "not of staging",
            "--from-other-instance",
            "aps-controller migrate shop --to-instance staging",
        ] {
            assert!(message.contains(words), "{words:?} in {message}");
        }
    }
    assert_same(
        &staging.state(),
        &staging_before,
        "staging after the refusals",
    );
    // Refused before the safety snapshot: no restore was even journalled.
    let log = json(&sb.cli(&["log", "staging", "--json"]));
    assert_eq!(log["operations"], json!([]), "{log}");

    // With the flag it is done, and the answer names where the data came from.
    let out = sb.cli(&[
        "restore",
        "staging",
        "--from",
        file.as_str(),
        "--from-other-instance",
        "--json",
    ]);
    assert_success(&out, "restore --from-other-instance");
    let v = json(&out);
    assert_eq!(v["instance"], "staging", "{v}");
    assert_eq!(v["source_instance"], "shop", "{v}");
    assert_made_between(&v, before_backup);
    assert_same(
        &staging.state().without_script_traces(),
        &shop.state(),
        "staging after restoring shop's backup",
    );

    // A restore of an instance's own backup names it and its time too, in text.
    let out = sb.cli(&["restore", "shop", "--from", file.as_str()]);
    assert_success(&out, "restore shop");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.starts_with(&format!(
            "restored shop from {file}: the backup of shop made 20"
        )),
        "{text}"
    );
    assert!(text.contains(" UTC (package version "), "{text}");
}

#[test]
fn over_http_the_field_from_other_instance_is_required() {
    let sb = Sandbox::new();
    // sh-sample's backup-script is `sufficient`: its own file, known by the controller's record.
    let settings = "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n\
                    site_title = \"Demo\"\nbehaviour = \"normal\"\n";
    let blog = sb.register("blog", "sh-sample", settings);
    let other = sb.register("other", "sh-sample", settings);
    let file: Utf8PathBuf = sb.path("blog.bak");
    let before_backup = jiff::Timestamp::now();
    assert_success(
        &sb.cli(&["backup", "blog", "--to", file.as_str()]),
        "backup blog",
    );
    let other_index = std::fs::read(other.join("index.html")).unwrap();
    let server = serve_allowing(&sb, &[sb.root().as_str()]);

    let (status, v) = server.call("POST", "/v1/instances/other/restore", json!({"from": file}));
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    assert_eq!(status, 400, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("is a backup of instance blog")
            && message.contains("\"from_other_instance\": true")
            && !message.contains("--from-other-instance"),
        "phrased for HTTP: {message}"
    );
    assert_eq!(
        std::fs::read(other.join("index.html")).unwrap(),
        other_index
    );
    assert!(!other.join(".aps-restored-from").exists());

    let (status, v) = server.call(
        "POST",
        "/v1/instances/other/restore",
        json!({"from": file, "from_other_instance": true}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["source_instance"], "blog", "{v}");
    assert_made_between(&v, before_backup);
    assert_eq!(
        std::fs::read(other.join(".aps-restored-from")).unwrap(),
        std::fs::read(&file).unwrap()
    );
    drop(blog);
}
