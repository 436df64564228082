//! A listing of thousands of files, checked by several hashing threads: every damaged file is
//! still found and named, at its own line of APP-LIST.xml, in the listing's order.

use aps_meta::{Limits, SizeMismatch, check_package, verify_listing};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

const FILES: usize = 3000;

/// A package folder whose APP-LIST.xml (one entry a line, after two header lines) lists
/// `FILES` files under `htdocs/` correctly; returns it and the entries' names.
fn many_file_package(dir: &Utf8Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut entries = String::new();
    for i in 0..FILES {
        let name = format!("htdocs/m{:02}/f-{i}.php", i / 300);
        let path = dir.join(&name);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let body = format!("<?php // {i}\n").repeat(1 + i % 50);
        std::fs::write(&path, &body).unwrap();
        let sha = hex::encode(Sha256::digest(body.as_bytes()));
        entries.push_str(&format!(
            "  <file name=\"{name}\" size=\"{}\" sha256=\"{sha}\"/>\n",
            body.len()
        ));
        names.push(name);
    }
    std::fs::write(
        dir.join("APP-LIST.xml"),
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<files xmlns=\"http://apstandard.com/ns/1\">\n{entries}</files>\n"
        ),
    )
    .unwrap();
    names
}

fn temp() -> (tempfile::TempDir, Utf8PathBuf) {
    let t = tempfile::tempdir().unwrap();
    let p = Utf8PathBuf::from_path_buf(t.path().to_path_buf()).unwrap();
    (t, p)
}

#[test]
fn a_clean_listing_of_thousands_of_files_verifies_every_one() {
    let (_t, dir) = temp();
    many_file_package(&dir);
    let r = verify_listing(&dir, &Limits::default()).unwrap();
    assert!(r.is_clean(), "{:#?}", r.diagnostics);
    assert_eq!((r.listed, r.verified), (FILES, FILES));
}

#[test]
fn damaged_files_among_thousands_are_each_named_at_their_line() {
    let (_t, dir) = temp();
    let names = many_file_package(&dir);
    // Same size, other bytes: only the digest can tell. Entry i is on line i + 3.
    let changed = [17, 1500, FILES - 1];
    for &i in &changed {
        let path = dir.join(&names[i]);
        let mut body = std::fs::read(&path).unwrap();
        body[0] ^= 1;
        std::fs::write(&path, body).unwrap();
    }
    let grown = 2222;
    let grown_path = dir.join(&names[grown]);
    let listed = std::fs::metadata(&grown_path).unwrap().len();
    std::fs::write(&grown_path, vec![b'x'; listed as usize + 3]).unwrap();

    let r = verify_listing(&dir, &Limits::default()).unwrap();
    let expected: Vec<String> = changed.iter().map(|&i| names[i].clone()).collect();
    assert_eq!(r.digest_mismatches, expected);
    assert_eq!(
        r.size_mismatches,
        vec![SizeMismatch {
            name: names[grown].clone(),
            listed,
            actual: listed + 3,
        }]
    );
    assert_eq!(r.verified, FILES - 4);
    let found: Vec<(&str, Option<u32>, bool)> = r
        .diagnostics
        .iter()
        .map(|d| {
            let named = names.iter().any(|n| d.message.starts_with(n.as_str()));
            (d.code, d.location.line, named)
        })
        .collect();
    let line = |i: usize| Some(i as u32 + 3);
    assert_eq!(
        found,
        vec![
            ("listing-digest-mismatch", line(17), true),
            ("listing-digest-mismatch", line(1500), true),
            ("listing-size-mismatch", line(grown), true),
            ("listing-digest-mismatch", line(FILES - 1), true),
        ],
        "{:#?}",
        r.diagnostics
    );
    // The package check, which an install runs, reports the same findings.
    let report = check_package(&dir, &Limits::default()).unwrap();
    let listing: Vec<&str> = report
        .diagnostics
        .iter()
        .filter(|d| d.code.ends_with("-mismatch"))
        .map(|d| d.message.as_str())
        .collect();
    let messages: Vec<&str> = r.diagnostics.iter().map(|d| d.message.as_str()).collect();
    assert_eq!(listing, messages);
    assert!(!report.ok());
}
