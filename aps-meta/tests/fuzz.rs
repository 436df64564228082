//! Arbitrary bytes and mutated real files never make the parsers panic.

use aps_meta::{Limits, parse_app_list, parse_app_meta};
use proptest::prelude::*;

fn real_files() -> Vec<String> {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/conformance/real");
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
