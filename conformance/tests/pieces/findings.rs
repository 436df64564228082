//! The findings: processes left behind and files written outside the instance's folders.

use std::os::unix::process::CommandExt;

use aps_conformance::findings::{OutsideFiles, end_processes_of, processes_of};
use camino::Utf8Path;

use crate::sh_as;

#[test]
fn a_process_the_account_left_running_is_found_and_ended() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let (_base, sandbox) = crate::sandbox();
    let account = sandbox.account().clone();
    assert_eq!(processes_of(account.uid), vec![]);
    // A daemon a script started in a session of its own, out of its process group.
    let mut child = std::process::Command::new("/usr/bin/setsid")
        .args(["/bin/sleep", "300"])
        .uid(account.uid)
        .gid(account.gid)
        .spawn()
        .unwrap();
    let pid = child.id() as i32;
    let mut seen = Vec::new();
    for _ in 0..100 {
        seen = processes_of(account.uid);
        if seen.iter().any(|p| p.command == "/bin/sleep 300") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(
        seen.iter()
            .any(|p| p.pid == pid && p.command == "/bin/sleep 300"),
        "{seen:?}"
    );
    end_processes_of(account.uid);
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_eq!(processes_of(account.uid), vec![]);
}

#[test]
fn files_written_outside_the_instance_folders_are_found_and_the_web_root_is_not() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let (_base, sandbox) = crate::sandbox();
    let account = sandbox.account().clone();
    let home = sandbox.home().to_owned();
    let web_root = sandbox.web_root().to_owned();
    let tmp_name = format!("/tmp/{}-cache", sandbox.name());
    sh_as(account.uid, account.gid, "echo old > kept.txt", &home);
    let roots = [home.as_path(), Utf8Path::new("/tmp")];
    let before = OutsideFiles::capture(&roots, account.uid, &[&web_root]);
    assert!(before.entries.contains_key(&home.join("kept.txt")));

    sh_as(
        account.uid,
        account.gid,
        &format!(
            "echo new > kept.txt; mkdir .cache; echo x > .cache/state; echo y > www/index.html; \
             mkdir {tmp_name}; echo z > {tmp_name}/f"
        ),
        &home,
    );
    let after = OutsideFiles::capture(&roots, account.uid, &[&web_root]);
    let mut written: Vec<String> = before
        .written_since(&after)
        .iter()
        .map(|w| format!("{} {}", w.what, w.path))
        .collect();
    written.sort();
    let mut expected = vec![
        format!("changed {home}/kept.txt"),
        format!("created {home}/.cache"),
        format!("created {home}/.cache/state"),
        format!("created {tmp_name}"),
        format!("created {tmp_name}/f"),
    ];
    expected.sort();
    assert_eq!(written, expected);
}
