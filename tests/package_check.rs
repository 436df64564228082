//! `aps-controller package check`: exit status and output, run as a real process.

use std::process::Command;

fn repo(p: &str) -> String {
    format!("{}/{p}", env!("CARGO_MANIFEST_DIR"))
}

fn run(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_aps-controller"))
        .args(args)
        .output()
        .expect("run aps-controller");
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).unwrap(),
        String::from_utf8(out.stderr).unwrap(),
    )
}

#[test]
fn valid_package_exits_0() {
    let (code, out, _) = run(&["package", "check", &repo("fixtures/packages/sh-sample")]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("ok (0 error(s), 0 warning(s))"), "{out}");
}

#[test]
fn broken_package_exits_1_with_json_diagnostics() {
    let (code, out, _) = run(&[
        "package",
        "check",
        "--json",
        &repo("fixtures/broken/duplicate-setting-id"),
    ]);
    assert_eq!(code, 1, "{out}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["ok"], false);
    let d = &v["diagnostics"][0];
    assert_eq!(d["code"], "duplicate-setting-id");
    assert_eq!(d["severity"], "error");
    assert_eq!(d["location"]["file"], "APP-META.xml");
    assert!(d["location"]["line"].as_u64().unwrap() > 1);
}

#[test]
fn warnings_only_exit_0() {
    let (code, out, _) = run(&[
        "package",
        "check",
        &repo("fixtures/broken/placeholder-value"),
    ]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning[placeholder-value]"), "{out}");
}

#[test]
fn missing_path_exits_2() {
    let (code, out, err) = run(&["package", "check", &repo("fixtures/no-such-package")]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("no such file or folder"), "{err}");
}
