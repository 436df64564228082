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

fn json(out: &str) -> serde_json::Value {
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

#[test]
fn valid_zip_exits_0_with_the_summary_in_json() {
    let (code, out, _) = run(&[
        "package",
        "check",
        "--json",
        &repo("fixtures/zips/full-provision.app.zip"),
    ]);
    assert_eq!(code, 0, "{out}");
    let v = json(&out);
    assert_eq!(v["ok"], true);
    assert_eq!(v["aps_version"], "1.2");
    assert_eq!(
        (v["errors"].as_u64(), v["warnings"].as_u64()),
        (Some(0), Some(0))
    );
    assert_eq!(v["diagnostics"], serde_json::json!([]));
}

#[test]
fn hostile_inputs_exit_1_with_their_codes() {
    for (fixture, code, file) in [
        ("xml-dtd-refused", "xml-dtd-refused", "APP-META.xml"),
        ("xml-too-deep", "xml-too-deep", "APP-META.xml"),
        ("zip-unsafe-path", "zip-unsafe-path", "package.app.zip"),
        ("zip-symlink", "zip-symlink", "package.app.zip"),
        (
            "listing-not-well-formed",
            "listing-not-well-formed",
            "APP-LIST.xml",
        ),
    ] {
        let dir = repo(&format!("fixtures/broken/{fixture}"));
        let zip = format!("{dir}/package.app.zip");
        let target = if std::path::Path::new(&zip).exists() {
            zip
        } else {
            dir
        };
        let (exit, out, err) = run(&["package", "check", "--json", &target]);
        assert_eq!(exit, 1, "{fixture}: {out} {err}");
        let v = json(&out);
        let d = &v["diagnostics"][0];
        assert_eq!(
            (d["code"].as_str(), d["severity"].as_str()),
            (Some(code), Some("error")),
            "{fixture}: {out}"
        );
        assert_eq!(d["location"]["file"], file, "{fixture}");
    }
}

#[test]
fn limits_file_tightens_the_bounds() {
    let zip = repo("fixtures/broken/zip-too-many-members/package.app.zip");
    // With the default bounds the archive is fine (a 1.2 package without listing: a warning).
    let (code, out, _) = run(&["package", "check", &zip]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("warning[listing-absent]"), "{out}");
    let limits = repo("fixtures/broken/zip-too-many-members/limits.json");
    let (code, out, _) = run(&["package", "check", "--limits", &limits, &zip]);
    assert_eq!(code, 1, "{out}");
    assert!(out.contains("error[zip-too-many-members]"), "{out}");
}

#[test]
fn human_output_points_at_line_and_column() {
    let (code, out, _) = run(&[
        "package",
        "check",
        &repo("fixtures/broken/listing-not-well-formed"),
    ]);
    assert_eq!(code, 1, "{out}");
    let first = out.lines().next().unwrap();
    assert!(
        first.starts_with("APP-LIST.xml:") && first.contains(": error[listing-not-well-formed]: "),
        "{out}"
    );
    let pos: Vec<&str> = first.split(':').skip(1).take(2).collect();
    assert!(pos.iter().all(|p| p.parse::<u32>().is_ok()), "{first}");
    assert!(
        out.trim_end()
            .ends_with("has errors (1 error(s), 0 warning(s))"),
        "{out}"
    );
}

#[test]
fn cannot_run_exits_2_with_a_json_error() {
    let (code, out, _) = run(&[
        "package",
        "check",
        "--json",
        &repo("fixtures/no-such-package"),
    ]);
    assert_eq!(code, 2, "{out}");
    let v = json(&out);
    assert_eq!(
        (
            v["ok"].as_bool(),
            v["error"]["kind"].as_str(),
            v["error"]["reason"].as_str()
        ),
        (Some(false), Some("usage"), Some("not-found"))
    );
    // A limits file with a misspelt bound is refused rather than silently ignored.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("limits.json");
    std::fs::write(&bad, r#"{"max_zip_member": 3}"#).unwrap();
    let (code, out, err) = run(&[
        "package",
        "check",
        "--limits",
        bad.to_str().unwrap(),
        &repo("fixtures/packages/sh-sample"),
    ]);
    assert_eq!(code, 2, "{out}");
    assert!(err.contains("unknown field `max_zip_member`"), "{err}");
}
