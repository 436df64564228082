//! The lifecycle fixture packages pass every step (or skip one with why: a package without
//! status-control has no disable), in the envelope, the exit code and the JUnit XML alike,
//! and leave nothing behind.

use super::run::{Host, Ran, can_run, lifecycle};

/// Every row passed or was skipped; exit 0; `ok`; JUnit without a failure; nothing left.
fn passes(host: &Host, ran: &Ran) {
    assert_eq!(
        ran.failed(),
        Vec::<String>::new(),
        "{}: {}\nstderr:\n{}",
        ran.what,
        ran.envelope,
        ran.stderr
    );
    assert_eq!(ran.code, Some(0), "{}: {}", ran.what, ran.envelope);
    assert_eq!(ran.envelope["ok"], true);
    assert!(ran.envelope.get("error").is_none(), "{}", ran.envelope);
    for step in [
        "package check",
        "install",
        "seed",
        "backup",
        "damage",
        "restore",
    ] {
        assert_eq!(ran.status(step), "pass", "{}: {step}", ran.what);
    }
    for step in [
        "compare after restore",
        "migrate",
        "compare after migrate",
        "remove",
    ] {
        assert_eq!(ran.status(step), "pass", "{}: {step}", ran.what);
    }
    let cases = ran.junit_cases();
    assert_eq!(cases.len(), ran.rows().len(), "{}", ran.what);
    assert!(
        cases.iter().all(|(_, mark)| *mark != Some("failure")),
        "{}: {cases:?}",
        ran.what
    );
    ran.left_nothing(host);
}

#[test]
fn lifecycle_php_passes_with_a_settings_file() {
    if !can_run("conformance of lifecycle-php") {
        return;
    }
    let host = Host::new();
    let settings = host.sb.path("php-settings.toml");
    std::fs::write(
        &settings,
        "admin_email = \"author@example.test\"\ntitle = \"Conformance of lifecycle-php\"\n",
    )
    .unwrap();
    let ran = host.run(
        &lifecycle("lifecycle-php"),
        &["--settings-file", settings.as_str()],
    );
    passes(&host, &ran);
    // No status-control: disable and enable are skipped, and say why.
    for step in ["disable", "enable"] {
        assert_eq!(ran.status(step), "skipped", "{}", ran.envelope);
    }
    assert_eq!(ran.status("configure"), "pass");
}

#[test]
fn lifecycle_perl_status_passes_with_disable_and_enable() {
    if !can_run("conformance of lifecycle-perl-status") {
        return;
    }
    let host = Host::new();
    let ran = host.run(&lifecycle("lifecycle-perl-status"), &[]);
    passes(&host, &ran);
    for step in ["configure", "disable", "enable"] {
        assert_eq!(ran.status(step), "pass", "{}", ran.envelope);
    }
}

#[test]
fn lifecycle_py_1_1_passes_with_its_upgrade_from_1_0() {
    if !can_run("conformance of lifecycle-py 1.1 from 1.0") {
        return;
    }
    let host = Host::new();
    let old = lifecycle("lifecycle-py-1.0");
    let ran = host.run(
        &lifecycle("lifecycle-py-1.1"),
        &["--upgrade-from", old.as_str()],
    );
    passes(&host, &ran);
    let upgrade_rows: Vec<&str> = ran
        .rows()
        .iter()
        .filter_map(|r| r["step"].as_str())
        .filter(|s| s.starts_with("upgrade from 1.0-1"))
        .collect();
    assert!(!upgrade_rows.is_empty(), "{}", ran.envelope);
    for step in upgrade_rows {
        assert_eq!(ran.status(step), "pass", "{step}: {}", ran.envelope);
    }
}

#[test]
fn lifecycle_sh_faulty_passes_in_sh_with_its_upgrade() {
    if !can_run("conformance of lifecycle-sh-faulty 1.1 from 1.0") {
        return;
    }
    let host = Host::new();
    let old = lifecycle("lifecycle-sh-faulty");
    let ran = host.run(
        &lifecycle("lifecycle-sh-faulty-1.1"),
        &["--upgrade-from", old.as_str(), "--timeout", "2m"],
    );
    passes(&host, &ran);
    for step in [
        "configure",
        "disable",
        "enable",
        "backup interrupted",
        "restore interrupted",
    ] {
        assert_eq!(ran.status(step), "pass", "{}", ran.envelope);
    }
}
