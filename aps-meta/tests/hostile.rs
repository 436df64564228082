//! Hostile inputs are refused, each with its own diagnostic code, and leave nothing behind.

use aps_meta::{Limits, PackageError, check_package, parse_app_meta, unpack_zip};
use camino::{Utf8Path, Utf8PathBuf};
use std::io::Write;
use zip::write::SimpleFileOptions;

fn hostile(name: &str) -> String {
    let p = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/hostile")
        .join(name);
    std::fs::read_to_string(p).unwrap()
}

#[test]
fn billion_laughs_is_refused_without_expansion() {
    let err = parse_app_meta(&hostile("billion-laughs.xml"), "APP-META.xml").unwrap_err();
    assert_eq!(err.code(), "xml-dtd-refused");
    assert_eq!(err.location().line, Some(2), "points at the DOCTYPE: {err}");
}

#[test]
fn external_entities_are_refused() {
    let err = parse_app_meta(&hostile("external-entity.xml"), "APP-META.xml").unwrap_err();
    assert_eq!(err.code(), "xml-dtd-refused");
    // Even a DOCTYPE naming only an external DTD is refused: nothing is ever fetched.
    let err = parse_app_meta(&hostile("undeclared-entity.xml"), "APP-META.xml").unwrap_err();
    assert_eq!(err.code(), "xml-dtd-refused", "{err}");
    assert_eq!(err.location().line, Some(2), "{err}");
}

#[test]
fn oversized_metadata_is_refused_before_parsing() {
    let limits = Limits {
        max_meta_bytes: 100,
        ..Limits::default()
    };
    let xml = format!(
        "<application xmlns=\"http://apstandard.com/ns/1\">{}</application>",
        " ".repeat(200)
    );
    let err = aps_meta::parse_app_meta_with_limits(&xml, "APP-META.xml", &limits).unwrap_err();
    assert_eq!(err.code(), "xml-too-large");
    let limits = Limits {
        max_xml_nodes: 10,
        ..Limits::default()
    };
    let xml = format!(
        "<application xmlns=\"http://apstandard.com/ns/1\">{}</application>",
        "<a/>".repeat(50)
    );
    let err = aps_meta::parse_app_meta_with_limits(&xml, "APP-META.xml", &limits).unwrap_err();
    assert_eq!(err.code(), "xml-too-large");
}

enum Member<'a> {
    File(&'a str, Vec<u8>),
    Symlink(&'a str, &'a str),
}

fn make_zip(dir: &Utf8Path, members: &[Member]) -> Utf8PathBuf {
    let path = dir.join("pkg.app.zip");
    let mut w = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
    let opts = SimpleFileOptions::default().compression_method(zip::CompressionMethod::Deflated);
    for m in members {
        match m {
            Member::File(name, data) => {
                w.start_file(*name, opts).unwrap();
                w.write_all(data).unwrap();
            }
            Member::Symlink(name, target) => w.add_symlink(*name, *target, opts).unwrap(),
        }
    }
    w.finish().unwrap();
    path
}

fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = Utf8PathBuf::try_from(t.path().to_path_buf()).unwrap();
    (t, p)
}

fn meta_member() -> Member<'static> {
    Member::File(
        "APP-META.xml",
        b"<application xmlns=\"http://apstandard.com/ns/1\"><name>z</name><version>1</version><release>1</release></application>".to_vec(),
    )
}

/// Unpacks and returns the error code; asserts nothing was left at or beside the destination.
fn refused(members: &[Member], limits: &Limits) -> &'static str {
    let (_t, dir) = tmp();
    let zip = make_zip(&dir, members);
    let dest = dir.join("out");
    let err = unpack_zip(&zip, &dest, limits).unwrap_err();
    assert!(!dest.exists(), "destination must not be half-written");
    let left: Vec<_> = dir
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string())
        .collect();
    assert_eq!(left, ["pkg.app.zip"], "temporary folder removed");
    // check_package reports the same code as a diagnostic.
    let report = check_package(&zip, limits).unwrap();
    assert!(!report.ok());
    assert_eq!(report.diagnostics[0].code, err.code());
    err.code()
}

#[test]
fn zip_slip_is_refused() {
    let m = [
        meta_member(),
        Member::File("htdocs/../../evil.txt", b"x".to_vec()),
    ];
    assert_eq!(refused(&m, &Limits::default()), "zip-unsafe-path");
}

#[test]
fn absolute_member_is_refused() {
    let m = [meta_member(), Member::File("/tmp/evil.txt", b"x".to_vec())];
    assert_eq!(refused(&m, &Limits::default()), "zip-unsafe-path");
}

#[test]
fn symlink_member_is_refused() {
    let m = [
        meta_member(),
        Member::Symlink("htdocs/passwd", "/etc/passwd"),
    ];
    assert_eq!(refused(&m, &Limits::default()), "zip-symlink");
}

#[test]
fn zip_bomb_is_refused_while_extracting() {
    // 64 MiB of zeros deflate to ~64 KiB; the bound is on bytes really written.
    let m = [
        meta_member(),
        Member::File("htdocs/bomb", vec![0u8; 64 << 20]),
    ];
    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    assert_eq!(refused(&m, &limits), "zip-too-large");
    let limits = Limits {
        max_member_bytes: 1 << 20,
        ..Limits::default()
    };
    assert_eq!(refused(&m, &limits), "zip-too-large");
}

#[test]
fn too_many_members_are_refused() {
    let names: Vec<String> = (0..20).map(|i| format!("htdocs/{i}.txt")).collect();
    let mut m = vec![meta_member()];
    m.extend(names.iter().map(|n| Member::File(n, b"x".to_vec())));
    let limits = Limits {
        max_zip_members: 10,
        ..Limits::default()
    };
    assert_eq!(refused(&m, &limits), "zip-too-many-members");
}

#[test]
fn good_zip_unpacks_into_an_empty_destination() {
    let (_t, dir) = tmp();
    let zip = make_zip(
        &dir,
        &[
            meta_member(),
            Member::File("scripts/configure", b"echo hi\n".to_vec()),
        ],
    );
    let dest = dir.join("out");
    std::fs::create_dir(&dest).unwrap();
    unpack_zip(&zip, &dest, &Limits::default()).unwrap();
    assert_eq!(
        std::fs::read_to_string(dest.join("scripts/configure")).unwrap(),
        "echo hi\n"
    );
    // A non-empty destination is refused.
    let err = unpack_zip(&zip, &dest, &Limits::default()).unwrap_err();
    assert!(matches!(err, PackageError::DestNotEmpty { .. }), "{err}");
}
