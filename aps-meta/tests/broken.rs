//! Each folder of fixtures/broken/ is named after the diagnostic it must produce; the full
//! diagnostics of each are snapshotted. DIAGNOSTICS.md documents every code, and every code has
//! a fixture. A fixture whose bound would need a huge input (member count, unpacked bytes, file
//! size) carries a `limits.json` that lowers that bound, as a controller's configuration would.

use aps_meta::diagnostic::codes;
use aps_meta::{Limits, check_package};
use camino::Utf8PathBuf;

fn broken_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/broken")
}

fn limits_for(dir: &camino::Utf8Path) -> Limits {
    match std::fs::read_to_string(dir.join("limits.json")) {
        Ok(text) => serde_json::from_str(&text).expect("limits.json is a partial Limits"),
        Err(_) => Limits::default(),
    }
}

#[test]
fn every_broken_fixture_produces_its_diagnostic() {
    let mut names: Vec<String> = broken_dir()
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string())
        .collect();
    names.sort();
    names.retain(|n| broken_dir().join(n).is_dir());
    for name in &names {
        let dir = broken_dir().join(name);
        let zip = dir.join("package.app.zip");
        let target = if zip.exists() { zip } else { dir.clone() };
        let report = check_package(&target, &limits_for(&dir)).unwrap();
        assert!(
            report.diagnostics.iter().any(|d| d.code == name.as_str()),
            "{name}: {:#?}",
            report.diagnostics
        );
        // Every fixture names a real code (a typo in a folder name would otherwise pass).
        assert!(codes::ALL.contains(&name.as_str()), "{name} is not a code");
        let lines: Vec<String> = report.diagnostics.iter().map(|d| d.to_string()).collect();
        insta::assert_yaml_snapshot!(format!("broken__{name}"), lines);
    }
    for code in codes::ALL {
        assert!(names.iter().any(|n| n == code), "no fixture for {code}");
    }
}

#[test]
fn diagnostics_table_lists_every_code() {
    let doc =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/DIAGNOSTICS.md")).unwrap();
    for code in codes::ALL {
        assert!(
            doc.contains(&format!("`{code}`")),
            "DIAGNOSTICS.md misses {code}"
        );
    }
}
