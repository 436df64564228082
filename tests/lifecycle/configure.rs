//! `instance configure`: the changes checked as at install, `configure configure` run as the
//! tenant with `OLDSETTINGS_*`, the record written only after the script succeeded; every
//! refusal and failure leaves the record (and, for a refusal, the web root) as it was; a
//! `kill -9` during the script recovered by the next command.

use std::time::{Duration, Instant};

use camino::Utf8Path;
use test_support as support;

use super::install::{install, tenant_sandbox, with_configure};
use super::install_fixtures::{existing, fresh, lifecycle, servers, sql};
use aps_controller::database::DbKind;
use support::{Sandbox, assert_success, json, needs_root, tree_state};

/// `instance configure NAME ARGS… --json`.
pub(crate) fn configure(sb: &Sandbox, name: &str, args: &[&str]) -> std::process::Output {
    let mut all = vec!["instance", "configure", name, "--json"];
    all.extend_from_slice(args);
    sb.cli(&all)
}

/// The instance's stored record (world-readable; secrets are in their own file).
pub(crate) fn record(sb: &Sandbox, name: &str) -> serde_json::Value {
    let path = sb.state().join(format!("instances/{name}.json"));
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn read(path: &Utf8Path) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

#[test]
fn lifecycle_php_configure_tracks_the_old_email_and_refuses_what_it_must() {
    if !servers("lifecycle-php against both database servers") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let (main, stats) = (
        fresh(DbKind::Mysql, "php-conf"),
        fresh(DbKind::Postgresql, "php-conf"),
    );
    let root = www.join("php");
    let out = install(
        &sb,
        &lifecycle("lifecycle-php"),
        "php",
        &root,
        &[
            "--setting",
            "admin_password=correct horse",
            "--setting",
            "admin_email=old@example.test",
            "--setting",
            "site_code=php-conf",
            "--database",
            &existing(&sb, "main", &main),
            "--database",
            &existing(&sb, "stats", &stats),
        ],
    );
    assert_success(&out, "install lifecycle-php");

    // A changed tracked e-mail: the script gets the old one and logs it; config.php and the
    // row are rewritten; the record holds the new values.
    let out = configure(
        &sb,
        "php",
        &[
            "--setting",
            "admin_email=new@example.test",
            "--setting",
            "title=Renamed site",
        ],
    );
    assert_success(&out, "configure");
    let v = json(&out);
    assert_eq!(
        v["changed"],
        serde_json::json!(["admin_email", "title"]),
        "{v}"
    );
    assert_eq!(v["old_settings"]["admin_email"], "old@example.test", "{v}");
    assert_eq!(v["script_ran"], true, "{v}");
    assert_eq!(v["settings"]["admin_password"], "***", "{v}");
    assert_eq!(
        read(&root.join("oldsettings.log")).trim(),
        "OLDSETTINGS_admin_email=old@example.test"
    );
    let config = read(&root.join("config.php"));
    assert!(
        config.contains("new@example.test") && config.contains("Renamed site"),
        "{config}"
    );
    assert_eq!(
        sql(main.database(), "SELECT admin_email FROM site WHERE id = 1"),
        "new@example.test"
    );
    let r = record(&sb, "php");
    assert_eq!(r["settings"]["admin_email"], "new@example.test", "{r}");
    assert_eq!(r["settings"]["title"], "Renamed site", "{r}");

    // Refusals run nothing and change nothing: an installation-only change, a bad value and
    // an unknown id, all in one refusal.
    let files = tree_state(&www, &[]);
    let recorded = record(&sb, "php");
    let out = configure(
        &sb,
        "php",
        &[
            "--setting",
            "sample_data=false",
            "--setting",
            "max_upload_mb=1000",
            "--setting",
            "titel=x",
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(24), "{v}");
    assert_eq!(v["error"]["kind"], "invalid-settings", "{v}");
    assert_eq!(v["error"]["step"], "configure-settings", "{v}");
    let problems = v["error"]["problems"].to_string();
    assert_eq!(v["error"]["problems"].as_array().unwrap().len(), 3, "{v}");
    assert!(
        problems.contains("sample_data")
            && problems.contains("installation-only")
            && problems.contains("max_upload_mb")
            && problems.contains("titel"),
        "{v}"
    );
    // Worded for the CLI: the option that gives a setting.
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--setting"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), files, "a refusal ran the script");
    assert_eq!(record(&sb, "php"), recorded);

    // The same value for the installation-only setting is no change, so it passes.
    let out = configure(&sb, "php", &["--setting", "sample_data=true"]);
    assert_success(&out, "configure with an unchanged installation-only value");
    assert_eq!(json(&out)["changed"], serde_json::json!([]));

    // A script that reports an error (configure-output, exit 1): the old settings stand.
    let recorded = record(&sb, "php");
    let out = configure(
        &sb,
        "php",
        &[
            "--setting",
            "behaviour=report-error",
            "--setting",
            "title=Never recorded",
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "configure-script", "{v}");
    assert!(v["error"]["message"].to_string().contains("title"), "{v}");
    assert_eq!(record(&sb, "php"), recorded);
    // And exit 0 with reported errors fails the same way.
    let out = configure(&sb, "php", &["--setting", "behaviour=report-error-exit-0"]);
    assert_eq!(out.status.code(), Some(13), "{}", json(&out));
    assert_eq!(record(&sb, "php"), recorded);
}

#[test]
fn lifecycle_sh_faulty_failing_configure_keeps_the_old_settings() {
    if !servers("lifecycle-sh-faulty against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let main = fresh(DbKind::Mysql, "faulty-conf");
    let root = www.join("faulty");
    let out = install(
        &sb,
        &lifecycle("lifecycle-sh-faulty"),
        "faulty",
        &root,
        &["--database", &existing(&sb, "main", &main)],
    );
    assert_success(&out, "install lifecycle-sh-faulty");
    let recorded = record(&sb, "faulty");
    let out = configure(&sb, "faulty", &["--setting", "fail-at=configure"]);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["kind"], "script-failed", "{v}");
    assert!(
        v["error"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("configure fails on purpose"),
        "{v}"
    );
    // The record is as it was; what the script wrote before failing is the package's.
    assert_eq!(record(&sb, "faulty"), recorded);
    assert_eq!(recorded["settings"]["fail-at"], "none", "{recorded}");
    assert!(root.join("op-configure.txt").exists());
    // The journal says it failed.
    let log = json(&sb.cli(&["log", "--json"]));
    assert!(
        log["operations"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["operation"] == "configure" && o["outcome"] == "failed"),
        "{log}"
    );
}

#[test]
fn kill_9_during_configure_configure_is_recovered_with_the_old_settings() {
    if !needs_root("a configure as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = with_configure(
        &sb,
        "slow",
        "#!/bin/sh\nif [ \"$1\" = configure ]; then\n  echo $$ > \"$WEB___DIR/cache/script.pid\"\n  exec sleep 120\nfi\n",
    );
    let root = www.join("slow");
    let out = install(
        &sb,
        &package,
        "slow",
        &root,
        &["--setting", "admin_password=pw"],
    );
    assert_success(&out, "install");
    let recorded = record(&sb, "slow");
    let mut child = sb
        .command(&[
            "instance",
            "configure",
            "slow",
            "--setting",
            "site_title=Never recorded",
            "--json",
        ])
        .spawn()
        .unwrap();
    let pid_file = root.join("cache/script.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !read(&pid_file).ends_with('\n') {
        assert!(
            Instant::now() < deadline,
            "configure configure never started"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let script: i32 = read(&pid_file).trim().parse().unwrap();
    child.kill().unwrap();
    child.wait().unwrap();

    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list after the kill");
    let v = json(&out);
    let recovered = v["recovered"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{v}");
    assert_eq!(recovered[0]["operation"], "configure", "{v}");
    assert_eq!(recovered[0]["instance"], "slow", "{v}");
    assert_eq!(recovered[0]["fully_undone"], true, "{v}");
    assert_eq!(record(&sb, "slow"), recorded);
    let deadline = Instant::now() + Duration::from_secs(60);
    while support::pid_alive(script) {
        assert!(Instant::now() < deadline, "the script was never ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Nothing of the run is left in the state folder.
    let work = sb.state().join("work");
    assert!(
        std::fs::read_dir(&work).map_or(true, |mut d| d.next().is_none()),
        "{work} is not empty"
    );
}
