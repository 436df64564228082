//! Arbitrary bytes and mutated real files never make the parsers panic; neither do arbitrary or
//! corrupted archives make the ZIP reader panic or leave a half-unpacked destination.

use aps_meta::{Limits, parse_app_list, parse_app_meta};
use proptest::prelude::*;

fn real_files() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../fixtures/real");
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        for f in ["APP-META.xml", "APP-LIST.xml"] {
            if let Ok(s) = std::fs::read_to_string(p.join(f)) {
                // Large listings slow proptest down without adding shapes.
                out.push(s.chars().take(20_000).collect());
            }
        }
    }
    out.sort();
    out
}

fn both(s: &str) {
    let _ = parse_app_meta(s, "APP-META.xml");
    let _ = parse_app_list(s, "APP-LIST.xml", &Limits::default());
}

/// A small valid package archive, built once per test case (cheap: a few hundred bytes).
fn valid_zip() -> Vec<u8> {
    use std::io::Write;
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated)
        .unix_permissions(0o644);
    for (name, data) in [
        ("APP-META.xml", &b"<application xmlns=\"http://apstandard.com/ns/1\"><name>z</name><version>1</version><release>1</release></application>"[..]),
        ("scripts/configure", b"echo configure\n"),
        ("htdocs/index.html", b"<html></html>\n"),
    ] {
        w.start_file(name, opts).unwrap();
        w.write_all(data).unwrap();
    }
    w.add_directory("htdocs/empty/", opts).unwrap();
    w.finish().unwrap().into_inner()
}

/// Unpacks `bytes` as an archive; whatever the outcome, no panic, and on refusal nothing at the
/// destination.
fn unpack(bytes: &[u8]) {
    let t = tempfile::tempdir().unwrap();
    let dir = camino::Utf8PathBuf::try_from(t.path().to_path_buf()).unwrap();
    let zip = dir.join("p.app.zip");
    std::fs::write(&zip, bytes).unwrap();
    let dest = dir.join("out");
    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    if aps_meta::unpack_zip(&zip, &dest, &limits).is_err() {
        assert!(!dest.exists(), "refused archive left a destination behind");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..2000)) {
        let s = String::from_utf8_lossy(&bytes);
        both(&s);
        let _ = aps_meta::parse_app_meta_bytes(&bytes, "APP-META.xml", &Limits::default());
    }

    #[test]
    fn mutated_real_files_never_panic(
        pick in any::<prop::sample::Index>(),
        cuts in proptest::collection::vec((any::<prop::sample::Index>(), 0usize..40, "[<>/=\"' a-z&;:-]{0,8}"), 1..6),
    ) {
        let files = real_files();
        let mut s: Vec<char> = files[pick.index(files.len())].chars().collect();
        for (at, len, insert) in cuts {
            let start = at.index(s.len().max(1)).min(s.len());
            let end = (start + len).min(s.len());
            s.splice(start..end, insert.chars());
        }
        let s: String = s.into_iter().collect();
        both(&s);
        if let Ok((meta, _)) = parse_app_meta(&s, "APP-META.xml") {
            // Whatever parsed must also be usable: match rules evaluate without panicking.
            for r in meta.upgrades.iter().chain(meta.patches.iter()) {
                let _ = aps_meta::version_match::matches(&r.match_expr, "1.0", "1");
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(200))]

    #[test]
    fn arbitrary_bytes_as_zip_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..600)) {
        unpack(&bytes);
        // The same bytes behind a real end-of-central-directory record reach deeper code.
        let mut framed = bytes.clone();
        framed.extend_from_slice(&[0x50, 0x4b, 0x05, 0x06, 0, 0, 0, 0, 1, 0, 1, 0]);
        framed.extend_from_slice(&(bytes.len() as u32).min(46).to_le_bytes());
        framed.extend_from_slice(&0u32.to_le_bytes());
        framed.extend_from_slice(&[0, 0]);
        unpack(&framed);
    }

    #[test]
    fn corrupted_zips_never_panic(
        flips in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        cut in any::<prop::sample::Index>(),
        truncate in any::<bool>(),
    ) {
        let mut z = valid_zip();
        for (at, byte) in flips {
            let i = at.index(z.len());
            z[i] = byte;
        }
        if truncate {
            z.truncate(cut.index(z.len()));
        }
        unpack(&z);
    }
}
