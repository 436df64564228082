//! Fuzz targets for every parser of hostile input but the dump scanners: APP-META.xml,
//! APP-LIST.xml, ZIP packages, the backup archive reader, its manifest, and INSTANCE.toml.
//! Each is a proptest over inputs seeded from the fixtures (fixtures/real, broken, hostile,
//! packages, zips, the demo) and from crafted attacks (path tricks in ZIP and tar entries, a
//! deflate bomb), then mutated (truncation, byte flips, inserted tokens of the format, cut
//! and repeated slices: nesting and huge sizes). The properties, for every input:
//!
//! - no panic;
//! - no hang: each case runs on its own thread, and one that has not ended after
//!   [`HANG_SECS`] fails the target (a detector of endless loops, far above any real case);
//! - no unbounded allocation: no single allocation above [`MAX_ALLOCATION`], and no case's
//!   peak of live heap above [`MAX_CASE_HEAP`] (counted per thread by this binary's allocator);
//! - nothing written outside the destination (the sandbox's other files are compared before
//!   and after), and nothing left in the destination when the input is refused;
//! - what is accepted is consistent: it validates, re-parses to the same, or verifies.
//!
//! A short run of each is part of the normal test command; `APS_FUZZ_CASES=N` raises the case
//! count of every target (docs/fuzzing.md). Crashes found are kept as regression tests at the
//! end of this file.

use test_support as support;
use test_support::craft;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io::Write as _;
use std::sync::{OnceLock, mpsc};
use std::time::Duration;

use aps_controller::archive::{
    ArchiveOptions, ArchiveReader, ArchiveWriter, Compression, ExtractPlan, ManifestHeader,
    PartKind,
};
use aps_controller::registry::InstanceFile;
use aps_meta::Limits;
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use proptest::sample::Index;

// ---------------------------------------------------------------------------------------------
// Bounds

/// A single allocation larger than this is refused (the process aborts, naming the size).
const MAX_ALLOCATION: usize = 256 << 20;
/// The most live heap one case may add on its thread.
const MAX_CASE_HEAP: isize = 128 << 20;
/// A case still running after this long is taken to hang.
const HANG_SECS: u64 = 120;

struct Counting;

thread_local! {
    static LIVE: Cell<isize> = const { Cell::new(0) };
    static PEAK: Cell<isize> = const { Cell::new(0) };
}

fn count(delta: isize) {
    // `try_with`: the allocator also runs while thread-locals are torn down.
    let _ = LIVE.try_with(|live| {
        let now = live.get() + delta;
        live.set(now);
        let _ = PEAK.try_with(|peak| peak.set(peak.get().max(now)));
    });
}

// SAFETY: every call is passed on to the system allocator unchanged; only counted.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        count(layout.size() as isize);
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if layout.size() > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        count(layout.size() as isize);
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        count(-(layout.size() as isize));
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if new_size > MAX_ALLOCATION {
            return std::ptr::null_mut();
        }
        count(new_size as isize - layout.size() as isize);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Runs one case under the bounds: on its own thread (a panic there fails the case), within
/// [`HANG_SECS`], adding at most [`MAX_CASE_HEAP`] of live heap.
fn bounded<F: FnOnce() + Send + 'static>(what: &str, case: F) {
    let (done, finished) = mpsc::channel();
    let worker = std::thread::spawn(move || {
        let start = LIVE.with(Cell::get);
        PEAK.with(|p| p.set(start));
        case();
        let _ = done.send(PEAK.with(Cell::get) - start);
    });
    match finished.recv_timeout(Duration::from_secs(HANG_SECS)) {
        Ok(peak) => {
            worker.join().unwrap();
            assert!(
                peak <= MAX_CASE_HEAP,
                "{what}: one case took {peak} bytes of heap"
            );
        }
        Err(mpsc::RecvTimeoutError::Disconnected) => match worker.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the case ended without a result"),
        },
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: a case hangs"),
    }
}

/// The case count of a target: `APS_FUZZ_CASES` when set, else its short default.
fn config(default_cases: u32) -> ProptestConfig {
    let cases = std::env::var("APS_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default_cases);
    ProptestConfig {
        cases,
        ..ProptestConfig::default()
    }
}

// ---------------------------------------------------------------------------------------------
// Mutations

#[derive(Debug, Clone)]
enum Mutation {
    Truncate(Index),
    Flip(Index, u8),
    /// One of the target's tokens inserted.
    Token(Index, Index),
    Delete(Index, usize),
    /// A slice repeated: nesting, long runs, sizes far beyond the usual.
    Repeat(Index, usize, usize),
    /// A slice copied elsewhere.
    Copy(Index, Index, usize),
}

fn mutations() -> impl Strategy<Value = Vec<Mutation>> {
    let one = prop_oneof![
        any::<Index>().prop_map(Mutation::Truncate),
        (any::<Index>(), any::<u8>()).prop_map(|(a, b)| Mutation::Flip(a, b)),
        (any::<Index>(), any::<Index>()).prop_map(|(a, t)| Mutation::Token(a, t)),
        (any::<Index>(), 1usize..64).prop_map(|(a, n)| Mutation::Delete(a, n)),
        (any::<Index>(), 1usize..48, 2usize..200).prop_map(|(a, n, k)| Mutation::Repeat(a, n, k)),
        (any::<Index>(), any::<Index>(), 1usize..256).prop_map(|(a, b, n)| Mutation::Copy(a, b, n)),
    ];
    proptest::collection::vec(one, 0..6)
}

fn mutate(seed: &[u8], muts: &[Mutation], tokens: &[&[u8]]) -> Vec<u8> {
    let mut b = seed.to_vec();
    let at = |i: &Index, len: usize| if len == 0 { 0 } else { i.index(len + 1) };
    for m in muts {
        match m {
            Mutation::Truncate(i) => b.truncate(at(i, b.len())),
            Mutation::Flip(i, x) if !b.is_empty() => {
                let i = i.index(b.len());
                b[i] ^= x | 1;
            }
            Mutation::Flip(..) => {}
            Mutation::Token(i, t) => {
                let i = at(i, b.len());
                let t = tokens[t.index(tokens.len())];
                b.splice(i..i, t.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = at(i, b.len()).min(b.len());
                let end = (i + n).min(b.len());
                b.drain(i..end);
            }
            Mutation::Repeat(i, n, k) => {
                let i = at(i, b.len()).min(b.len());
                let end = (i + n).min(b.len());
                let slice = b[i..end].to_vec();
                let repeated: Vec<u8> = slice.repeat(*k);
                b.splice(i..i, repeated);
            }
            Mutation::Copy(from, to, n) => {
                let f = at(from, b.len()).min(b.len());
                let slice = b[f..(f + n).min(b.len())].to_vec();
                let t = at(to, b.len()).min(b.len());
                b.splice(t..t, slice);
            }
        }
    }
    b
}

// ---------------------------------------------------------------------------------------------
// Seeds

fn repo() -> Utf8PathBuf {
    support::repo()
}

/// Every file under `dir` whose name satisfies `pick`, sorted, at most `cap` bytes of each.
fn files_under(dir: &Utf8Path, pick: &dyn Fn(&str) -> bool, cap: usize) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    let mut paths = Vec::new();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let md = std::fs::symlink_metadata(&p).unwrap();
            if md.is_dir() {
                stack.push(p);
            } else if md.is_file() && pick(p.file_name().unwrap_or("")) {
                paths.push(p);
            }
        }
    }
    paths.sort();
    for p in paths {
        if let Ok(mut bytes) = std::fs::read(&p) {
            bytes.truncate(cap);
            out.push(bytes);
        }
    }
    out
}

/// APP-META.xml seeds: every XML file of the fixtures; APP-LIST.xml seeds: every APP-LIST.xml
/// and the hostile XML files. Read once per test process.
fn xml_seeds(name: &str) -> &'static [Vec<u8>] {
    static META: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    static LIST: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let (cell, pick): (_, &dyn Fn(&str) -> bool) = if name == "APP-META.xml" {
        (&META, &|f: &str| f.ends_with(".xml"))
    } else {
        (&LIST, &|f: &str| f == "APP-LIST.xml")
    };
    cell.get_or_init(|| {
        let mut seeds = files_under(&repo().join("fixtures"), pick, 20_000);
        seeds.extend(files_under(
            &repo().join("fixtures/hostile"),
            &|f| f.ends_with(".xml"),
            20_000,
        ));
        assert!(seeds.len() > 10, "the fixtures are there");
        seeds
    })
}

const XML_TOKENS: &[&[u8]] = &[
    b"<",
    b"</",
    b">",
    b"/>",
    b"<setting id=\"x\" type=\"string\">",
    b"<![CDATA[",
    b"]]>",
    b"<!DOCTYPE a [<!ENTITY e \"x\">]>",
    b"&e;",
    b"&#x1b;",
    b"&#0;",
    b"<!--",
    b"-->",
    b"<?xml version=\"1.0\"?>",
    b"xmlns=\"http://apstandard.com/ns/1\"",
    b"\"",
    b"'",
    b"\xff\xfe",
    b"\x1b[8m",
    b"99999999999999999999",
    b"/application/version < '1.0'",
    b"<file name=\"../../etc/passwd\" size=\"1\" sha256=\"00\"/>",
];

/// A small ZIP package with the given entries: (name, content, unix mode).
fn zip_of(entries: &[(&str, &[u8], u32)]) -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data, mode) in entries {
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .unix_permissions(*mode);
        if name.ends_with('/') {
            w.add_directory(*name, opts).unwrap();
        } else if mode & 0o170_000 == 0o120_000 {
            let target = std::str::from_utf8(data).unwrap();
            w.add_symlink(*name, target, opts).unwrap();
        } else {
            w.start_file(*name, opts).unwrap();
            w.write_all(data).unwrap();
        }
    }
    w.finish().unwrap().into_inner()
}

fn zip_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(make_zip_seeds)
}

fn make_zip_seeds() -> Vec<Vec<u8>> {
    let mut seeds = files_under(&repo().join("fixtures"), &|f| f.ends_with(".zip"), 1 << 20);
    let meta = std::fs::read(repo().join("fixtures/packages/sh-sample/APP-META.xml")).unwrap();
    let script = std::fs::read(repo().join("fixtures/packages/sh-sample/scripts/backup")).unwrap();
    let base = |extra: (&'static str, Vec<u8>, u32)| {
        zip_of(&[
            ("APP-META.xml", &meta, 0o644),
            ("scripts/backup", &script, 0o755),
            ("htdocs/", b"", 0o755),
            (extra.0, &extra.1, extra.2),
        ])
    };
    // Odd but harmless entries: a name with an escape sequence, a device entry, a file where
    // a folder is. Then the attacks, which must be refused: entries that point out of the
    // destination, a symlink entry, a deflate bomb (10 MiB of zeros in a few KiB).
    for (name, data, mode) in [
        ("htdocs/\u{1b}[8m.html", b"x".to_vec(), 0o644),
        ("htdocs/dev", b"".to_vec(), 0o020_644),
        ("htdocs", b"file where a folder is".to_vec(), 0o644),
    ] {
        seeds.push(base((name, data, mode)));
    }
    let crafted = [
        ("../escaped", b"x".to_vec(), 0o644),
        ("/tmp/aps-fuzz-absolute", b"x".to_vec(), 0o644),
        ("htdocs/../../escaped", b"x".to_vec(), 0o644),
        ("htdocs/link", b"../../../etc/passwd".to_vec(), 0o120_777),
        ("htdocs/bomb.bin", vec![0u8; 10 << 20], 0o644),
    ];
    assert_eq!(crafted.len(), CRAFTED_ZIPS);
    for (name, data, mode) in crafted {
        seeds.push(base((name, data, mode)));
    }
    seeds
}

/// How many crafted attacks [`make_zip_seeds`] adds last.
const CRAFTED_ZIPS: usize = 5;

const ZIP_TOKENS: &[&[u8]] = &[
    b"PK\x03\x04",
    b"PK\x01\x02",
    b"PK\x05\x06",
    b"PK\x06\x06",
    b"../",
    b"/",
    b"\xff\xff\xff\xff",
    b"\0",
];

/// A sandbox with files that must never change, beside `in/` (the destination's parent).
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aps-fuzz-")
            .tempdir()
            .unwrap();
        let root = Utf8Path::from_path(dir.path()).unwrap();
        std::fs::create_dir_all(root.join("outside/folder")).unwrap();
        std::fs::write(root.join("outside/file"), "must stay").unwrap();
        std::fs::create_dir_all(root.join("in")).unwrap();
        Sandbox { dir }
    }

    fn root(&self) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().to_owned()).unwrap()
    }

    /// Every entry but `in/…` and the input file: path → type, mode, size, content.
    fn outside(&self) -> BTreeMap<String, String> {
        test_support::tree_state(&self.root(), &["in", "input"])
    }
}

/// Every path under `dir` (not following symlinks), relative.
fn tree(dir: &Utf8Path) -> Vec<(String, std::fs::Metadata)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let m = std::fs::symlink_metadata(&p).unwrap();
            if m.is_dir() {
                stack.push(p.clone());
            }
            out.push((p.strip_prefix(dir).unwrap().to_string(), m));
        }
    }
    out
}

/// A backup archive of the sh-sample package's htdocs (with a dump-like file part), in the
/// given compression.
fn archive_seed(compression: Compression) -> Vec<u8> {
    let t = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(t.path()).unwrap();
    let dump = dir.join("dump.sql");
    std::fs::write(
        &dump,
        "CREATE TABLE t (n int);\nINSERT INTO t VALUES (1);\n",
    )
    .unwrap();
    let out = dir.join("a.aps");
    let target = std::fs::File::create(&out).unwrap();
    let options = ArchiveOptions {
        compression,
        ..ArchiveOptions::plain()
    };
    let header = ManifestHeader::new(
        "http://example.invalid/aps/sh-sample",
        "sh-sample",
        "1.0.0",
        "1",
        "1.2",
        "blog",
    );
    let mut w = ArchiveWriter::create(&target, &options, header).unwrap();
    w.add_web_dir("/", &repo().join("fixtures/packages/sh-sample/htdocs"))
        .unwrap();
    w.add_file_part(
        "db-main.sql",
        PartKind::DatabaseDump {
            db_id: "main".into(),
            kind: "mysql".into(),
            row_counts: None,
        },
        &dump,
    )
    .unwrap();
    w.tag_with(craft::foreign_key());
    w.finish().unwrap();
    std::fs::read(&out).unwrap()
}

fn plain_archive() -> &'static [u8] {
    static SEED: OnceLock<Vec<u8>> = OnceLock::new();
    SEED.get_or_init(|| archive_seed(Compression::None))
}

/// The archive seeds: the crafted ones, then plain, zstd and gzip archives.
fn archive_seeds() -> &'static [Vec<u8>] {
    static SEEDS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    SEEDS.get_or_init(|| {
        let mut seeds = tar_tricks(plain_archive());
        seeds.push(plain_archive().to_vec());
        seeds.push(archive_seed(Compression::Zstd { level: 3 }));
        seeds.push(archive_seed(Compression::Gzip { level: 6 }));
        seeds
    })
}

/// The crafted archives: the plain seed with one entry renamed to a path trick (hashes left
/// as they were: the reader must refuse them, never follow them).
fn tar_tricks(plain: &[u8]) -> Vec<Vec<u8>> {
    let t = tempfile::tempdir().unwrap();
    let dir = Utf8Path::from_path(t.path()).unwrap();
    let src = dir.join("src");
    std::fs::write(&src, plain).unwrap();
    let entries = craft::entries(&src);
    let mut out = Vec::new();
    for trick in [
        "web/0/../../escaped",
        "/tmp/aps-fuzz-absolute",
        "../escaped",
        "web/0/./index.html",
        "files/../manifest.json",
    ] {
        let mut e = entries.clone();
        if let Some((h, _)) = e
            .iter_mut()
            .find(|(h, _)| craft::name(h).starts_with("web/0/"))
        {
            h.set_path(trick).unwrap_or_else(|_| {
                // set_path refuses `..`: write the raw name.
                let raw = h.as_old_mut();
                raw.name = [0; 100];
                raw.name[..trick.len()].copy_from_slice(trick.as_bytes());
            });
        }
        let p = dir.join("trick");
        craft::write_entries(&p, &e);
        out.push(std::fs::read(&p).unwrap());
    }
    // A symlink entry pointing out, and a hard link to a file outside.
    for (kind, target) in [
        (tar::EntryType::Symlink, "../../outside/file"),
        (tar::EntryType::Link, "../../outside/file"),
    ] {
        let mut e = entries.clone();
        if let Some((h, data)) = e
            .iter_mut()
            .find(|(h, _)| craft::name(h).starts_with("web/0/") && h.entry_type().is_file())
        {
            h.set_entry_type(kind);
            h.set_link_name(target).unwrap();
            data.clear();
        }
        let p = dir.join("trick");
        craft::write_entries(&p, &e);
        out.push(std::fs::read(&p).unwrap());
    }
    out
}

const TAR_TOKENS: &[&[u8]] = &[
    b"../",
    b"/",
    b"ustar\x0000",
    b"77777777777",
    b"\0\0\0\0\0\0\0\0",
    b"\"size\":18446744073709551615",
    b"\"parts\":[",
    b"{\"type\":\"web_dir\",\"mapping_url\":\"/../\"}",
    b"\"entry\":\"web/0/../../x\"",
    b"\x28\xb5\x2f\xfd",
    b"\x1f\x8b",
];

/// Opens `bytes` as an archive in a sandbox and extracts every part it claims into `in/`;
/// checks nothing outside changed and, when accepted, that it verifies and holds what its
/// manifest says. Returns whether it was accepted.
fn read_archive(bytes: Vec<u8>) -> bool {
    let sb = Sandbox::new();
    let input = sb.root().join("input");
    std::fs::write(&input, &bytes).unwrap();
    let before = sb.outside();
    let dest = sb.root().join("in");
    let mut accepted = false;
    if let Ok(reader) = ArchiveReader::open(&input, None) {
        let manifest = reader.manifest().clone();
        let mut plan = ExtractPlan::new();
        for (i, part) in manifest.parts.iter().enumerate() {
            let path = dest.join(i.to_string());
            plan = match &part.kind {
                PartKind::WebDir { mapping_url } => plan.web_dir(mapping_url, path),
                _ => plan.file(&part.name, path),
            };
        }
        if reader.extract(&plan).is_ok() {
            accepted = true;
            // Accepted: it verifies, and every file part holds its size and hash.
            let again =
                aps_controller::archive::verify(&input, None).expect("accepted, so it verifies");
            assert_eq!(again, manifest);
            for (i, part) in manifest.parts.iter().enumerate() {
                if !matches!(part.kind, PartKind::WebDir { .. }) {
                    let data = std::fs::read(dest.join(i.to_string())).unwrap();
                    assert_eq!(data.len() as u64, part.size);
                    use sha2::Digest as _;
                    assert_eq!(hex::encode(sha2::Sha256::digest(&data)), part.sha256);
                }
            }
        }
    }
    assert_eq!(
        sb.outside(),
        before,
        "the archive changed something outside in/"
    );
    accepted
}

/// Unpacks `bytes` as a package in a sandbox; returns whether it was accepted.
fn unpack(bytes: Vec<u8>) -> bool {
    let sb = Sandbox::new();
    let input = sb.root().join("input");
    std::fs::write(&input, &bytes).unwrap();
    let before = sb.outside();
    let dest = sb.root().join("in/pkg");
    let limits = Limits {
        max_unpacked_bytes: 1 << 20,
        ..Limits::default()
    };
    let accepted = match aps_meta::unpack_zip(&input, &dest, &limits) {
        Err(_) => {
            assert!(!dest.exists(), "a refused package left {dest} behind");
            false
        }
        Ok(()) => {
            // Accepted: regular files and folders only, within the limit, and the check of
            // the unpacked package runs to its end.
            let mut total = 0;
            for (path, m) in tree(&dest) {
                assert!(m.is_dir() || m.is_file(), "{path}: {:?}", m.file_type());
                total += m.len() * u64::from(m.is_file());
            }
            assert!(total <= limits.max_unpacked_bytes);
            let _ = aps_meta::check_package(&dest, &Limits::default());
            true
        }
    };
    assert_eq!(
        sb.outside(),
        before,
        "the package changed something outside its destination"
    );
    accepted
}

/// Parses `bytes` as APP-META.xml; returns whether it was accepted.
fn app_meta(bytes: Vec<u8>) -> bool {
    let limits = Limits::default();
    let parsed = aps_meta::parse_app_meta_bytes(&bytes, "APP-META.xml", &limits);
    let accepted = parsed.is_ok();
    if let Ok((meta, _)) = parsed {
        // Accepted: the same text parses to the same model, the model serializes, and every
        // rule and default it holds evaluates.
        let (again, _) = aps_meta::parse_app_meta_bytes(&bytes, "APP-META.xml", &limits).unwrap();
        assert_eq!(meta, again);
        serde_json::to_string(&meta).unwrap();
        for r in meta.upgrades.iter().chain(meta.patches.iter()) {
            let _ = aps_meta::version_match::matches(&r.match_expr, "1.0", "1");
        }
    }
    accepted
}

/// Parses `bytes` as APP-LIST.xml; returns whether it was accepted.
fn app_list(bytes: Vec<u8>) -> bool {
    let text = String::from_utf8_lossy(&bytes);
    let limits = Limits::default();
    let parsed = aps_meta::parse_app_list(&text, "APP-LIST.xml", &limits);
    let accepted = parsed.is_ok();
    if let Ok((entries, _)) = parsed {
        let (again, _) = aps_meta::parse_app_list(&text, "APP-LIST.xml", &limits).unwrap();
        assert_eq!(entries, again);
        assert!(entries.len() as u64 <= limits.max_listed_files);
    }
    accepted
}

fn instance_toml(bytes: Vec<u8>) {
    let Ok(text) = String::from_utf8(bytes) else {
        return;
    };
    let base = Utf8Path::new("/srv/instances");
    if let Ok(file) = InstanceFile::parse(&text, Some(base)) {
        // Accepted: the same document in toml's own layout parses to the same instance.
        let value: toml::Value = toml::from_str(&text).expect("accepted, so it is TOML");
        let relaid = toml::to_string(&value).unwrap();
        let again = InstanceFile::parse(&relaid, Some(base)).expect("re-laid file accepted");
        assert_eq!(file, again, "{relaid}");
    }
}

fn toml_seeds() -> Vec<Vec<u8>> {
    let mut seeds = vec![std::fs::read(repo().join("examples/demo/INSTANCE.toml")).unwrap()];
    seeds.push(
        br#"name = "blog"
package = "../pkgs/blog.app.zip"
base-url = "http://example.test:8080/blog/"
user = "aps-tenant1"
group = "aps-tenant1"
[web-dirs]
"/" = "/srv/www/blog"
"/media" = "../media"
[settings]
admin_name = "admin"
admin_password = "s3cret\u001b[8m"
locales = ["en", "de"]
[databases.main]
type = "mysql"
name = "blogdb"
login = "bloguser"
password = "s3cret"
host = "127.0.0.1"
port = 3306
version = "10.11"
[databases.stats]
type = "postgresql"
name = "stats"
login = "u"
password = "p"
host = "::1"
port = 5432
prefix = "wp_"
"#
        .to_vec(),
    );
    seeds
}

const TOML_TOKENS: &[&[u8]] = &[
    b"[",
    b"]",
    b"[[web-dirs]]",
    b"\"/\" = \"/\"\n",
    b"\"/../..\" = \"/etc\"\n",
    b"user = \"root\"\n",
    b"port = 99999999999999999999\n",
    b"\"\"\"",
    b"'''",
    b"\\u0000",
    b"\\u001b",
    b"=",
    b"{ a = { b = { c = [[[[[[[[[[]]]]]]]]]] } } }",
    b"\n[settings]\n",
    b"\n[databases.x]\n",
    b"1979-05-27T07:32:00Z",
];

fn pick(seeds: &[Vec<u8>], i: &Index) -> Vec<u8> {
    seeds[i.index(seeds.len())].clone()
}

// ---------------------------------------------------------------------------------------------
// The targets

proptest! {
    #![proptest_config(config(256))]

    #[test]
    fn fuzz_app_meta(seed in any::<Index>(), muts in mutations()) {
        let bytes = mutate(&pick(xml_seeds("APP-META.xml"), &seed), &muts, XML_TOKENS);
        bounded("APP-META.xml", move || {
            app_meta(bytes);
        });
    }

    #[test]
    fn fuzz_app_list(seed in any::<Index>(), muts in mutations()) {
        let bytes = mutate(&pick(xml_seeds("APP-LIST.xml"), &seed), &muts, XML_TOKENS);
        bounded("APP-LIST.xml", move || {
            app_list(bytes);
        });
    }

    #[test]
    fn fuzz_instance_toml(seed in any::<Index>(), muts in mutations()) {
        let bytes = mutate(&pick(&toml_seeds(), &seed), &muts, TOML_TOKENS);
        bounded("INSTANCE.toml", move || instance_toml(bytes));
    }
}

proptest! {
    #![proptest_config(config(64))]

    #[test]
    fn fuzz_zip_package(seed in any::<Index>(), muts in mutations()) {
        let bytes = mutate(&pick(zip_seeds(), &seed), &muts, ZIP_TOKENS);
        bounded("ZIP package", move || {
            unpack(bytes);
        });
    }

    #[test]
    fn fuzz_archive_reader(seed in any::<Index>(), muts in mutations()) {
        let bytes = mutate(&pick(archive_seeds(), &seed), &muts, TAR_TOKENS);
        bounded("archive", move || {
            read_archive(bytes);
        });
    }

    /// The manifest and header entries mutated inside an otherwise intact archive, so that
    /// every mutation reaches the manifest's parser and its checks against the parts.
    #[test]
    fn fuzz_archive_manifest(which in any::<bool>(), muts in mutations()) {
        let t = tempfile::tempdir().unwrap();
        let dir = Utf8Path::from_path(t.path()).unwrap();
        let src = dir.join("src");
        std::fs::write(&src, plain_archive()).unwrap();
        let mut entries = craft::entries(&src);
        let target = if which { "manifest.json" } else { "header.json" };
        let (_, data) = entries
            .iter_mut()
            .find(|(h, _)| craft::name(h) == target)
            .expect("the archive has its manifest and header");
        *data = mutate(data, &muts, TAR_TOKENS);
        let out = dir.join("out");
        craft::write_entries(&out, &entries);
        let bytes = std::fs::read(&out).unwrap();
        bounded("manifest", move || {
            read_archive(bytes);
        });
    }
}

// ---------------------------------------------------------------------------------------------
// The seeds themselves, unmutated: each target takes its fixtures as they are.

#[test]
fn seeds_pass_every_target() {
    // The fixtures' valid packages are accepted (so the targets reach past the parsers'
    // first refusals), the broken and hostile files need not be.
    let accepted = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    for s in xml_seeds("APP-META.xml") {
        let (s, accepted) = (s.clone(), accepted.clone());
        bounded("APP-META.xml seed", move || {
            if app_meta(s) {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    let packages = std::fs::read_dir(repo().join("fixtures/packages"))
        .unwrap()
        .count();
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) >= packages);
    accepted.store(0, std::sync::atomic::Ordering::Relaxed);
    for s in xml_seeds("APP-LIST.xml") {
        let (s, accepted) = (s.clone(), accepted.clone());
        bounded("APP-LIST.xml seed", move || {
            if app_list(s) {
                accepted.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            }
        });
    }
    assert!(accepted.load(std::sync::atomic::Ordering::Relaxed) > 0);
    for s in toml_seeds() {
        let text = String::from_utf8(s.clone()).unwrap();
        assert!(
            InstanceFile::parse(&text, Some(Utf8Path::new("/srv"))).is_ok(),
            "the TOML seeds are valid: {text}"
        );
        bounded("INSTANCE.toml seed", move || instance_toml(s));
    }
    // The crafted attacks (the last seeds) are refused.
    let others = zip_seeds().len() - CRAFTED_ZIPS;
    for (i, s) in zip_seeds().iter().enumerate() {
        let s = s.clone();
        bounded("ZIP seed", move || {
            let accepted = unpack(s);
            assert!(i < others || !accepted, "crafted package {i} was accepted");
        });
    }
    // The crafted archives are refused; the writer's own (the last three) accepted.
    let crafted = archive_seeds().len() - 3;
    for (i, s) in archive_seeds().iter().enumerate() {
        let s = s.clone();
        bounded("archive seed", move || {
            assert_eq!(read_archive(s), i >= crafted, "archive seed {i}");
        });
    }
}

/// docs/fuzzing.md lists exactly the targets of this file, and the variable that raises their
/// case count is the one [`config`] reads.
#[test]
fn docs_list_every_target() {
    let doc = std::fs::read_to_string(repo().join("docs/fuzzing.md")).unwrap();
    let source = std::fs::read_to_string(repo().join("tests/fuzz.rs")).unwrap();
    let targets: Vec<&str> = source
        .lines()
        .filter_map(|l| l.trim().strip_prefix("fn fuzz_"))
        .filter_map(|l| l.split('(').next())
        .collect();
    assert_eq!(targets.len(), 6, "{targets:?}");
    for t in targets {
        assert!(
            doc.contains(&format!("`fuzz_{t}`")),
            "docs/fuzzing.md misses fuzz_{t}"
        );
    }
    assert!(doc.contains("APS_FUZZ_CASES=") && source.contains("\"APS_FUZZ_CASES\""));
}
