//! Every real published APP-META.xml parses into the model; each parsed model and its
//! diagnostics are snapshotted. Real APP-LIST.xml files parse (one is not well-formed: its
//! line:column error is snapshotted).

use aps_meta::{Limits, parse_app_list, parse_app_meta};
use camino::Utf8PathBuf;

fn real_dir() -> Utf8PathBuf {
    Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/real")
}

fn packages() -> Vec<(String, Utf8PathBuf)> {
    let mut v: Vec<_> = real_dir()
        .read_dir_utf8()
        .expect("fixtures/real in the repository")
        .map(|e| e.unwrap())
        // Folders only: the README beside them says what they are.
        .filter(|e| e.file_type().unwrap().is_dir())
        .map(|e| (e.file_name().to_string(), e.path().to_path_buf()))
        .collect();
    v.sort();
    assert!(
        v.len() >= 19,
        "expected the 19 real metadata files, found {}",
        v.len()
    );
    v
}

#[test]
fn every_real_app_meta_parses() {
    for (name, dir) in packages() {
        let xml = std::fs::read_to_string(dir.join("APP-META.xml")).unwrap();
        let parsed = parse_app_meta(&xml, "APP-META.xml");
        let (meta, diags) = match parsed {
            Ok(x) => x,
            Err(e) => panic!("{name}: {e}"),
        };
        insta::assert_yaml_snapshot!(format!("real__{name}"), (meta, diags));
    }
}

#[test]
fn real_app_lists_parse_or_point_at_the_fault() {
    let mut outcomes = Vec::new();
    for (name, dir) in packages() {
        let p = dir.join("APP-LIST.xml");
        let Ok(xml) = std::fs::read_to_string(&p) else {
            continue;
        };
        match parse_app_list(&xml, "APP-LIST.xml", &Limits::default()) {
            Ok((entries, diags)) => outcomes.push(format!(
                "{name}: {} entries, diagnostics: {:?}",
                entries.len(),
                diags.iter().map(|d| d.to_string()).collect::<Vec<_>>()
            )),
            Err(e) => outcomes.push(format!("{name}: ERROR {} — {e}", e.code())),
        }
    }
    insta::assert_yaml_snapshot!("real_app_lists", outcomes);
}

/// `check_package` on each real folder (metadata only: scripts and listed files are absent, so
/// script-missing and listing-file-missing are expected). Every finding about APP-META.xml
/// points at a line and an element; the metadata findings are snapshotted.
#[test]
fn real_packages_check_with_located_findings() {
    let mut lines = Vec::new();
    for (name, dir) in packages() {
        let report = aps_meta::check_package(&dir, &Limits::default()).unwrap();
        for d in &report.diagnostics {
            if d.location.file != "APP-META.xml" || d.code.starts_with("listing-") {
                continue;
            }
            assert!(
                d.location.line.is_some() && d.location.element_path.is_some(),
                "{name}: {d}"
            );
            lines.push(format!("{name}: {d}"));
        }
    }
    insta::assert_yaml_snapshot!("real_checks", lines);
}
