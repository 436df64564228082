//! The panel's commands (`run`, `prune`, `backups`, `verify`, `drill`) through the real
//! `aps-controller` binary, the real controller and the fixture packages.

mod support;

use support::{Sandbox, assert_success};

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
    let list: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
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

    let out = sb.cli(&["prune", "--dry-run", "--json"]);
    assert_success(&out, "prune --dry-run");
    let p = &json_lines(&out)[0];
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
    assert_eq!(lines[0]["event"], "start");
    assert_eq!(lines[0]["total"], 3);
    let summary = &lines.last().unwrap()["summary"];
    assert_eq!(
        (summary["ok"].as_u64(), summary["failed"].as_u64()),
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
    assert!(
        by_name("broken")["error"]
            .as_str()
            .unwrap()
            .contains("broken")
    );
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
fn run_of_named_instances_only_and_unknown_names_fail() {
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
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("1 ok, 1 failed"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("ghost"));
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
    let newest = store_files(&sb, "blog").pop().unwrap();
    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_success(&out, "drill");
    let lines = json_lines(&out);
    let s = &lines.last().unwrap()["summary"];
    assert_eq!(s["passed"], true);
    assert!(s["backup"].as_str().unwrap().ends_with(&newest));
    // The sh fixture's restore copies the backup file into the web root.
    let restored = std::fs::read(staging_www.join(".aps-restored-from")).unwrap();
    assert_eq!(
        restored,
        std::fs::read(sb.state().join("backups/blog").join(&newest)).unwrap()
    );

    let out = sb.cli(&["drill", "nobody", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no good backup"));
}
