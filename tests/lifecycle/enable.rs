//! `instance enable|disable`: `configure enable|disable` as the tenant where the package
//! declares status-control, the status recorded and shown by `instance list`, a disabled
//! instance still backed up by `run`; a failing script or a package without status-control
//! leaves the record as it was. Over HTTP, the same through `serve`.

use serde_json::json;
use test_support as support;

use super::configure::record;
use super::install::{install, tenant_sandbox};
use super::install_fixtures::{existing, fresh, lifecycle, servers};
use aps_controller::database::DbKind;
use support::serve::serve_allowing;
use support::{Sandbox, assert_success, fixture, json, needs_root, tree_state};

fn status(sb: &Sandbox, verb: &str, name: &str) -> std::process::Output {
    sb.cli(&["instance", verb, name, "--json"])
}

/// `instance list --json`'s status of `name`.
fn listed_status(sb: &Sandbox, name: &str) -> String {
    let v = json(&sb.cli(&["instance", "list", "--json"]));
    let found = v["instances"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["name"] == name)
        .unwrap_or_else(|| panic!("{name} not listed: {v}"));
    found["status"].as_str().unwrap().to_owned()
}

#[test]
fn lifecycle_perl_status_disabled_is_listed_and_backed_up_then_enabled() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let root = www.join("perl");
    let out = install(&sb, &lifecycle("lifecycle-perl-status"), "perl", &root, &[]);
    assert_success(&out, "install lifecycle-perl-status");
    assert_eq!(listed_status(&sb, "perl"), "enabled");
    // An enabled record stores no status: old records read the same.
    assert!(record(&sb, "perl").get("status").is_none());

    let out = status(&sb, "disable", "perl");
    assert_success(&out, "disable");
    let v = json(&out);
    assert_eq!(
        (v["status"].as_str(), v["previous"].as_str()),
        (Some("disabled"), Some("enabled")),
        "{v}"
    );
    assert!(root.join(".disabled").exists() && root.join(".htaccess").exists());
    assert_eq!(listed_status(&sb, "perl"), "disabled");
    assert_eq!(record(&sb, "perl")["status"], "disabled");
    let text = sb.cli(&["instance", "list"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("\tdisabled"),
        "{}",
        String::from_utf8_lossy(&text.stdout)
    );
    // A configure while disabled: the package rewrites its closed message.
    let out = sb.cli(&[
        "instance",
        "configure",
        "perl",
        "--setting",
        "closed_message=Back soon",
        "--json",
    ]);
    assert_success(&out, "configure while disabled");
    assert_eq!(
        std::fs::read_to_string(root.join(".disabled")).unwrap(),
        "Back soon\n"
    );
    assert_eq!(listed_status(&sb, "perl"), "disabled");

    // The periodic run still backs a disabled instance up.
    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_success(&out, "run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let done = &summary["summary"]["instances"];
    assert_eq!(done[0]["instance"], "perl", "{summary}");
    assert_eq!(done[0]["ok"], true, "{summary}");
    assert!(
        std::path::Path::new(done[0]["file"].as_str().unwrap()).exists(),
        "{summary}"
    );

    let out = status(&sb, "enable", "perl");
    assert_success(&out, "enable");
    assert_eq!(json(&out)["previous"], "disabled");
    assert!(!root.join(".disabled").exists() && !root.join(".htaccess").exists());
    assert_eq!(listed_status(&sb, "perl"), "enabled");
    // Enable twice: the script runs again, the status stays.
    let out = status(&sb, "enable", "perl");
    assert_success(&out, "enable again");
    assert_eq!(json(&out)["previous"], "enabled");
}

#[test]
fn a_package_without_status_control_is_refused_and_nothing_runs() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let root = www.join("demo");
    let out = install(
        &sb,
        &fixture("sh-sample"),
        "demo",
        &root,
        &["--setting", "admin_password=pw"],
    );
    assert_success(&out, "install sh-sample");
    let files = tree_state(&www, &[]);
    let recorded = record(&sb, "demo");
    for verb in ["disable", "enable"] {
        let out = status(&sb, verb, "demo");
        let v = json(&out);
        assert_eq!(out.status.code(), Some(2), "{v}");
        assert_eq!(v["error"]["kind"], "usage", "{v}");
        assert_eq!(v["error"]["step"], "status-control", "{v}");
        assert!(
            v["error"]["message"]
                .as_str()
                .unwrap()
                .contains("status-control"),
            "{v}"
        );
    }
    assert_eq!(tree_state(&www, &[]), files);
    assert_eq!(record(&sb, "demo"), recorded);
    // An unknown instance: not found.
    let out = status(&sb, "disable", "nosuch");
    assert_eq!(out.status.code(), Some(4), "{}", json(&out));
}

#[test]
fn lifecycle_sh_faulty_failing_enable_and_disable_keep_the_old_status() {
    if !servers("lifecycle-sh-faulty against MariaDB") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let main = fresh(DbKind::Mysql, "faulty-status");
    let root = www.join("faulty");
    let out = install(
        &sb,
        &lifecycle("lifecycle-sh-faulty"),
        "faulty",
        &root,
        &[
            "--setting",
            "fail-at=disable",
            "--database",
            &existing(&sb, "main", &main),
        ],
    );
    assert_success(&out, "install lifecycle-sh-faulty");

    // fail-at=disable: the disable fails, the record stays enabled.
    let out = status(&sb, "disable", "faulty");
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "status-script", "{v}");
    assert!(
        v["error"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("disable fails on purpose"),
        "{v}"
    );
    assert_eq!(listed_status(&sb, "faulty"), "enabled");
    assert!(!root.join(".disabled").exists());
    assert!(root.join("op-disable.txt").exists());

    // fail-at=enable: the disable passes, then the enable fails and the record stays disabled.
    let out = sb.cli(&[
        "instance",
        "configure",
        "faulty",
        "--setting",
        "fail-at=enable",
        "--json",
    ]);
    assert_success(&out, "configure fail-at=enable");
    assert_success(&status(&sb, "disable", "faulty"), "disable");
    assert_eq!(listed_status(&sb, "faulty"), "disabled");
    let recorded = record(&sb, "faulty");
    let out = status(&sb, "enable", "faulty");
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(record(&sb, "faulty"), recorded);
    assert_eq!(listed_status(&sb, "faulty"), "disabled");
    assert!(root.join(".disabled").exists());
}

#[test]
fn http_patches_settings_and_disables_as_the_cli_does() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let root = www.join("perl");
    let out = install(&sb, &lifecycle("lifecycle-perl-status"), "perl", &root, &[]);
    assert_success(&out, "install lifecycle-perl-status");
    let served = serve_allowing(&sb, &[www.as_str()]);

    let (code, v) = served.call(
        "PATCH",
        "/v1/instances/perl/settings",
        json!({"settings": {"greeting": "Hi over HTTP"}}),
    );
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["changed"], json!(["greeting"]), "{v}");
    assert_eq!(
        std::fs::read_to_string(root.join("greeting.txt")).unwrap(),
        "Hi over HTTP\n"
    );
    // A refusal is worded with the JSON fields.
    let (code, v) = served.call(
        "PATCH",
        "/v1/instances/perl/settings",
        json!({"settings": {"greting": "typo"}}),
    );
    assert_eq!(code, 422, "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("\"settings\""),
        "{v}"
    );

    let (code, v) = served.call("POST", "/v1/instances/perl/disable", json!({}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["status"], "disabled", "{v}");
    let (code, v) = served.call("GET", "/v1/instances", json!({}));
    assert_eq!(code, 200, "{v}");
    assert_eq!(v["instances"][0]["status"], "disabled", "{v}");
    let (code, v) = served.call("POST", "/v1/instances/perl/enable", json!({}));
    assert_eq!(code, 200, "{v}");
    assert!(!root.join(".disabled").exists());
    // The route knows its method.
    let (code, _) = served.call("GET", "/v1/instances/perl/enable", json!({}));
    assert_eq!(code, 405);
}
