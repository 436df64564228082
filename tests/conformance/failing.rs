//! The packages of fixtures/conformance/: each fails at the step its README names (exit 26,
//! `conformance-failed` naming that step, its JUnit test case a failure), or passes with the
//! finding it names; and none leaves anything behind.

use super::run::{CONFORMANCE_FAILED, Host, Ran, can_run, failing};

/// `package` ran and failed at `step`, the first failed row, in every output.
fn fails_at(host: &Host, ran: &Ran, step: &str) {
    assert_eq!(
        ran.code,
        Some(CONFORMANCE_FAILED),
        "{}: {}\nstderr:\n{}",
        ran.what,
        ran.envelope,
        ran.stderr
    );
    let v = &ran.envelope;
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "conformance-failed", "{v}");
    assert_eq!(v["error"]["step"], step, "{v}");
    assert_eq!(ran.failed().first().map(String::as_str), Some(step), "{v}");
    assert_eq!(ran.status(step), "fail");
    assert!(
        ran.row(step)["why"].as_str().is_some_and(|w| !w.is_empty()),
        "{v}"
    );
    let cases = ran.junit_cases();
    assert!(
        cases.contains(&(step.to_owned(), Some("failure"))),
        "{}: the JUnit case `{step}` is no failure: {cases:?}",
        ran.what
    );
    ran.left_nothing(host);
}

/// Every step passed, and the findings name `kind`.
fn passes_with_finding(host: &Host, ran: &Ran, kind: &str) {
    assert_eq!(
        (ran.code, ran.failed()),
        (Some(0), Vec::<String>::new()),
        "{}: {}\nstderr:\n{}",
        ran.what,
        ran.envelope,
        ran.stderr
    );
    assert!(
        ran.findings().iter().any(|k| k == kind),
        "{}: no `{kind}` finding: {}",
        ran.what,
        ran.envelope["result"]["findings"]
    );
    ran.left_nothing(host);
}

#[test]
fn bad_install_fails_at_install_and_skips_the_rest() {
    if !can_run("conformance of bad-install") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("bad-install"), &[]);
    fails_at(&host, &ran, "install");
    // The script's own words reach the row, and every step after the install says why not.
    let install = ran.row("install");
    assert!(
        install["stderr"]
            .as_str()
            .is_some_and(|s| s.contains("install fails on purpose")),
        "{install}"
    );
    for step in [
        "seed",
        "backup",
        "restore",
        "compare after restore",
        "remove",
    ] {
        assert_eq!(ran.status(step), "skipped", "{step}: {}", ran.envelope);
    }
    assert_eq!(ran.failed(), ["install"]);
}

#[test]
fn backup_forgets_db_fails_at_the_compare_after_restore() {
    if !can_run("conformance of backup-forgets-db") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("backup-forgets-db"), &[]);
    fails_at(&host, &ran, "compare after restore");
    // The backup and the restore said they succeeded; the compare names the lost tables.
    assert_eq!(ran.status("backup"), "pass");
    assert_eq!(ran.status("restore"), "pass");
    let differences = ran.row("compare after restore")["differences"].to_string();
    assert!(differences.contains("table-missing"), "{differences}");
    assert!(
        ran.findings().iter().any(|k| k == "exit-zero-on-failure"),
        "{}",
        ran.envelope["result"]["findings"]
    );
}

#[test]
fn restore_ignores_files_fails_at_the_compare_after_restore() {
    if !can_run("conformance of restore-ignores-files") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("restore-ignores-files"), &[]);
    fails_at(&host, &ran, "compare after restore");
    let differences = ran.row("compare after restore")["differences"].to_string();
    assert!(
        differences.contains("file-missing") || differences.contains("file-content"),
        "{differences}"
    );
}

#[test]
fn remove_leaves_file_fails_at_remove() {
    if !can_run("conformance of remove-leaves-file") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("remove-leaves-file"), &[]);
    fails_at(&host, &ran, "remove");
    let why = ran.row("remove")["why"].as_str().unwrap();
    assert!(why.contains("settings.ini"), "{why}");
}

#[test]
fn writes_tmp_passes_with_a_wrote_outside_finding() {
    if !can_run("conformance of writes-tmp") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("writes-tmp"), &[]);
    passes_with_finding(&host, &ran, "wrote-outside");
}

#[test]
fn leaves_daemon_passes_with_a_process_left_behind_finding() {
    if !can_run("conformance of leaves-daemon") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&failing("leaves-daemon"), &[]);
    passes_with_finding(&host, &ran, "process-left-behind");
}
