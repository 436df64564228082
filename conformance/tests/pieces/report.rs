//! The report: its JSON, its terminal table and its JUnit XML, parsed back.

use std::time::Duration;

use aps_conformance::capture::Difference;
use aps_conformance::report::{Finding, FindingKind, Report, StepRow};
use aps_conformance::sandbox::Ending;

fn sample() -> Report {
    let mut report = Report::new("blog-1.2-3.app.zip");
    report.version = Some("1.2-3".into());
    report.rows = vec![
        StepRow::pass("package check", Duration::from_millis(12)),
        StepRow::pass("install", Duration::from_millis(2345)),
        StepRow {
            stdout: Some("dumped 3 tables".into()),
            stderr: Some("warning: <cache> & \"tmp\" \u{1b}[31mred\u{7}".into()),
            ..StepRow::pass("backup", Duration::from_millis(800))
        },
        StepRow::compared(
            "compare after restore",
            Duration::from_millis(90),
            vec![
                Difference::FileMissing {
                    folder: "/".into(),
                    path: "wp-config.php".into(),
                },
                Difference::TableRowCount {
                    database: "main".into(),
                    table: "posts".into(),
                    before: 7,
                    after: 6,
                },
            ],
            Some("§8.3 restore"),
        ),
        StepRow::skipped("disable/enable", "the package declares no disable script"),
    ];
    report.findings = vec![Finding {
        kind: FindingKind::ProcessLeftBehind,
        step: "install".into(),
        message: "pid 4242 `php worker.php` still ran after the script ended".into(),
        source: Some("scripts/configure".into()),
    }];
    report.sandbox = Some(Ending::Kept {
        name: "aps-conf-0123456789".into(),
        home: "/var/lib/aps-conformance/aps-conf-0123456789".into(),
        web_root: "/var/lib/aps-conformance/aps-conf-0123456789/www".into(),
    });
    report.duration_ms = 3247;
    report
}

#[test]
fn a_report_counts_its_rows_and_fails_when_one_failed() {
    let report = sample();
    let c = report.counts();
    assert_eq!((c.passed, c.failed, c.skipped), (3, 1, 1));
    assert!(!report.passed());
    let mut ok = sample();
    ok.rows.retain(|r| r.step != "compare after restore");
    assert!(ok.passed(), "skipped rows do not fail a run");
}

#[test]
fn the_report_as_json_and_as_a_table() {
    let report = sample();
    insta::assert_json_snapshot!("report_json", report);
    insta::assert_snapshot!("report_table", report.table());
}

#[test]
fn the_junit_xml_parses_back_with_a_testcase_per_step() {
    let report = sample();
    let dir = tempfile::tempdir().unwrap();
    let path = camino::Utf8PathBuf::from_path_buf(dir.path().join("junit.xml")).unwrap();
    report.write_junit(&path).unwrap();
    let xml = std::fs::read_to_string(&path).unwrap();
    let doc = roxmltree::Document::parse(&xml).unwrap();
    let root = doc.root_element();
    assert_eq!(root.tag_name().name(), "testsuites");
    let suites: Vec<_> = root.children().filter(|n| n.is_element()).collect();
    assert_eq!(suites.len(), 1);
    let suite = suites[0];
    assert_eq!(suite.tag_name().name(), "testsuite");
    assert_eq!(suite.attribute("name"), Some("blog-1.2-3.app.zip"));
    for (attr, value) in [
        ("tests", "5"),
        ("failures", "1"),
        ("errors", "0"),
        ("skipped", "1"),
    ] {
        assert_eq!(suite.attribute(attr), Some(value), "{attr}");
        assert_eq!(root.attribute(attr), Some(value), "{attr}");
    }
    assert_eq!(suite.attribute("time"), Some("3.247"));
    let cases: Vec<_> = suite
        .children()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    let names: Vec<_> = cases.iter().map(|c| c.attribute("name").unwrap()).collect();
    assert_eq!(
        names,
        [
            "package check",
            "install",
            "backup",
            "compare after restore",
            "disable/enable"
        ]
    );
    for case in &cases {
        assert_eq!(
            case.attribute("classname"),
            Some("aps-conformance.blog-1.2-3.app.zip")
        );
        assert!(case.attribute("time").unwrap().parse::<f64>().is_ok());
    }
    let child = |i: usize, tag: &str| {
        cases[i]
            .children()
            .find(|n| n.has_tag_name(tag))
            .unwrap_or_else(|| panic!("{tag} in case {i}"))
    };
    let failure = child(3, "failure");
    assert_eq!(failure.attribute("type"), Some("§8.3 restore"));
    assert_eq!(
        failure.attribute("message"),
        Some("file wp-config.php of web folder / is missing (and 1 more)")
    );
    assert!(
        failure
            .text()
            .unwrap()
            .contains("- table posts of database main: 7 rows became 6")
    );
    assert_eq!(
        child(4, "skipped").attribute("message"),
        Some("the package declares no disable script")
    );
    // Raw script output (markup, an escape sequence, a bell) arrives as text, still valid XML.
    assert_eq!(
        child(2, "system-err").text(),
        Some("warning: <cache> & \"tmp\" \\u{1b}[31mred\\u{7}")
    );
    assert_eq!(child(2, "system-out").text(), Some("dumped 3 tables"));
    assert!(
        cases[0].children().all(|n| !n.is_element()),
        "a pass has no children"
    );
    let findings = suite
        .children()
        .find(|n| n.has_tag_name("system-out"))
        .unwrap();
    assert!(findings.text().unwrap().contains("pid 4242"));
}
