//! A `kill -9` of the controller in each phase of an install: the next command rolls it back
//! (`recovered` in its envelope) and nothing of the install is left — no file, no record, no
//! process of the script. A SIGTERM is undone by the install itself, at once.

use std::time::{Duration, Instant};

use camino::Utf8Path;
use test_support as support;

use super::install::{bulk_package, install_cmd, instances, tenant_sandbox, with_configure};
use support::tenant::tenant;
use support::{Sandbox, assert_success, json, needs_root, tree_state};

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// The next command's envelope says it rolled the install of `name` back, whole.
fn recovered_by_next_command(sb: &Sandbox, name: &str) -> serde_json::Value {
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list after the kill");
    let v = json(&out);
    let recovered = v["recovered"].as_array().unwrap();
    assert_eq!(recovered.len(), 1, "{v}");
    let entry = &recovered[0];
    assert_eq!(entry["operation"], "install", "{v}");
    assert_eq!(entry["instance"], name, "{v}");
    assert_eq!(entry["fully_undone"], true, "{v}");
    assert!(
        v["instances"].as_array().unwrap().is_empty(),
        "recorded: {v}"
    );
    entry.clone()
}

#[test]
fn kill_9_during_configure_install_is_undone_by_the_next_command() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = with_configure(
        &sb,
        "slow",
        "#!/bin/sh\necho $$ > \"$WEB___DIR/cache/script.pid\"\nexec sleep 120\n",
    );
    let root = www.join("slow");
    let before = tree_state(&www, &[]);
    let mut child = install_cmd(
        &sb,
        &package,
        "slow",
        &root,
        &["--setting", "admin_password=pw"],
    )
    .spawn()
    .unwrap();
    let pid_file = root.join("cache/script.pid");
    wait_for(
        || std::fs::read_to_string(&pid_file).is_ok_and(|t| t.ends_with('\n')),
        "configure install to start",
    );
    let script: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let entry = recovered_by_next_command(&sb, "slow");
    assert!(
        entry["message"]
            .as_str()
            .unwrap()
            .contains("remove slow from"),
        "{entry}"
    );
    assert_eq!(tree_state(&www, &[]), before, "the install left something");
    wait_for(|| !support::pid_alive(script), "the script to be ended");
    // Recovered once: the next command has nothing more to say.
    let again = json(&sb.cli(&["instance", "list", "--json"]));
    assert_eq!(again["recovered"], serde_json::json!([]), "{again}");
}

#[test]
fn kill_9_while_the_files_are_written_is_undone_by_the_next_command() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    // Many files, so that the kill lands while they are written.
    let package = bulk_package(&sb, "bulk", 100, 200);
    // An existing web root with the tenant's file: only what the install made may go.
    let root = www.join("bulk");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("mine.txt"), "the tenant's").unwrap();
    support::chown_r(&root, tenant().uid, tenant().gid);
    let before = tree_state(&www, &[]);
    let mut child = install_cmd(
        &sb,
        &package,
        "bulk",
        &root,
        &["--setting", "admin_password=pw", "--force"],
    )
    .spawn()
    .unwrap();
    wait_for(
        || root.join("bulk/d000").exists(),
        "the files to be written",
    );
    child.kill().unwrap();
    child.wait().unwrap();
    let written = count(&root.join("bulk"));
    assert!(
        written < 20_000,
        "the kill came after the files ({written})"
    );
    let entry = recovered_by_next_command(&sb, "bulk");
    let undone = entry["undone"].to_string();
    assert!(undone.contains("\"name\":\"bulk\""), "{undone}");
    assert_eq!(
        tree_state(&www, &[]),
        before,
        "the install left something beside mine.txt"
    );
    assert!(instances(&sb).is_empty());
}

fn count(dir: &Utf8Path) -> usize {
    let Ok(read) = std::fs::read_dir(dir) else {
        return 0;
    };
    read.map(|e| {
        let p = camino::Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
        if p.is_dir() { count(&p) } else { 1 }
    })
    .sum()
}

#[test]
fn sigterm_during_configure_install_undoes_it_at_once() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = with_configure(
        &sb,
        "term",
        "#!/bin/sh\ntouch \"$WEB___DIR/cache/started\"\nexec sleep 120\n",
    );
    let root = www.join("term");
    let before = tree_state(&www, &[]);
    let child = install_cmd(
        &sb,
        &package,
        "term",
        &root,
        &["--setting", "admin_password=pw"],
    )
    .stdout(std::process::Stdio::piped())
    .spawn()
    .unwrap();
    wait_for(
        || root.join("cache/started").exists(),
        "configure install to start",
    );
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    let v = json(&out);
    assert_eq!(out.status.code(), Some(143), "{v}");
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    assert_eq!(v["error"]["signal"], "SIGTERM", "{v}");
    assert_eq!(tree_state(&www, &[]), before, "the install left something");
    // Undone by itself: the next command has nothing to recover.
    let next = json(&sb.cli(&["instance", "list", "--json"]));
    assert_eq!(next["recovered"], serde_json::json!([]), "{next}");
    assert!(instances(&sb).is_empty());
}
