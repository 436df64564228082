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

/// `depth` nested `open`…`close` pairs, built without recursion.
fn nested(open: &str, close: &str, depth: usize) -> String {
    let mut s = open.repeat(depth);
    s.push_str(&close.repeat(depth));
    s
}

fn meta_with(service_body: &str) -> String {
    format!(
        "<application xmlns=\"http://apstandard.com/ns/1\" version=\"1.2\"><name>a</name><version>1</version><release>1</release><service id=\"s\">{service_body}</service></application>"
    )
}

#[test]
fn deep_nesting_is_refused_before_the_model_recurses() {
    // Each of these shapes recursed in the model builder and overflowed the stack (an abort,
    // not even a panic) before the depth bound existed.
    let shapes = [
        meta_with(&format!(
            "<requirements xmlns:v=\"urn:v\">{}</requirements>",
            nested("<v:a>", "</v:a>", 100_000)
        )),
        meta_with(&nested("<service id=\"x\">", "</service>", 100_000)),
        meta_with(&format!(
            "<settings>{}</settings>",
            nested("<group>", "</group>", 100_000)
        )),
        meta_with(&format!(
            "<provision><url-mapping>{}</url-mapping></provision>",
            nested("<mapping url=\"a\">", "</mapping>", 100_000)
        )),
    ];
    for xml in &shapes {
        let err = parse_app_meta(xml, "APP-META.xml").unwrap_err();
        assert_eq!(err.code(), "xml-too-deep", "{err}");
        assert_eq!(err.location().line, Some(1), "{err}");
    }
    // The bound is configurable; the default accepts the real files (8 deep at most).
    let limits = Limits {
        max_xml_depth: 1,
        ..Limits::default()
    };
    let err =
        aps_meta::parse_app_meta_with_limits(&meta_with(""), "APP-META.xml", &limits).unwrap_err();
    assert_eq!(err.code(), "xml-too-deep");
    let list = format!(
        "<files xmlns=\"http://apstandard.com/ns/1\">{}</files>",
        nested("<x>", "</x>", 100_000)
    );
    let err = aps_meta::parse_app_list(&list, "APP-LIST.xml", &Limits::default()).unwrap_err();
    assert_eq!(err.code(), "xml-too-deep");
}

/// A package folder with a good APP-META.xml and the given APP-LIST.xml.
fn package_with_listing(list: &str) -> (tempfile::TempDir, Utf8PathBuf) {
    let (t, dir) = tmp();
    std::fs::write(
        dir.join("APP-META.xml"),
        "<application xmlns=\"http://apstandard.com/ns/1\" version=\"1.2\"><name>z</name><version>1</version><release>1</release><service id=\"s\"/></application>",
    )
    .unwrap();
    std::fs::write(dir.join("APP-LIST.xml"), list).unwrap();
    (t, dir)
}

#[test]
fn hostile_listings_are_refused_with_their_own_codes() {
    let (_t, dir) = package_with_listing(&hostile("billion-laughs.xml"));
    let report = check_package(&dir, &Limits::default()).unwrap();
    let d = &report.diagnostics[0];
    assert_eq!(
        (d.code, d.location.file.as_str(), d.location.line),
        ("xml-dtd-refused", "APP-LIST.xml", Some(2)),
        "{d}"
    );
    let (_t, dir) = package_with_listing(&hostile("external-entity.xml"));
    let report = check_package(&dir, &Limits::default()).unwrap();
    assert_eq!(report.diagnostics[0].code, "xml-dtd-refused");
    let (_t, dir) = package_with_listing("<files xmlns=\"http://apstandard.com/ns/1\"><file");
    let report = check_package(&dir, &Limits::default()).unwrap();
    let d = &report.diagnostics[0];
    assert_eq!(d.code, "listing-not-well-formed", "{d}");
    assert!(
        d.location.line.is_some() && d.location.column.is_some(),
        "{d}"
    );
}

#[test]
fn a_fifo_named_app_meta_is_refused_without_blocking() {
    let (_t, dir) = tmp();
    let fifo = dir.join("APP-META.xml");
    let status = std::process::Command::new("mkfifo")
        .arg(fifo.as_str())
        .status()
        .expect("mkfifo");
    assert!(status.success());
    // Opening a FIFO for reading would block forever; the type is checked first.
    let report = check_package(&dir, &Limits::default()).unwrap();
    assert_eq!(report.diagnostics[0].code, "package-unreadable");
}
