//! Property tests of the archive reader against hostile input: arbitrary bytes, and
//! arbitrary well-formed tars (hostile names, `..`, absolute paths, symlinks and hard links
//! pointing out of the target, devices) with arbitrary but consistent manifests, tagged with
//! the key the reader trusts — so that they reach extraction — and randomly damaged copies of
//! those. The reader must never panic and never create, change or delete anything outside
//! the folders it was told to extract into.

use std::collections::BTreeMap;
use std::io::Write;

use aps_controller::archive::{
    ArchiveReader, ExtractPlan, Manifest, ManifestHeader, PartInfo, PartKind, TagKey, verify_reader,
};
use camino::{Utf8Path, Utf8PathBuf};
use proptest::prelude::*;
use sha2::{Digest, Sha256};

fn key() -> TagKey {
    TagKey::new(b"property-test key, 32 bytes long".to_vec()).unwrap()
}

/// A sandbox: `outside/` (what must never change, with a file and a folder symlinks may
/// point at) beside `in/`, where extraction targets go.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("aps-prop-")
            .tempdir()
            .unwrap();
        let s = Sandbox { dir };
        std::fs::create_dir_all(s.root().join("outside/folder")).unwrap();
        std::fs::write(s.root().join("outside/file"), "must stay").unwrap();
        std::fs::write(s.root().join("outside/folder/inner"), "must stay too").unwrap();
        std::fs::create_dir_all(s.root().join("in")).unwrap();
        s
    }

    fn root(&self) -> Utf8PathBuf {
        Utf8PathBuf::from_path_buf(self.dir.path().to_owned()).unwrap()
    }

    /// Every entry outside `in/` and the archive: path → (type, mode, size, content hash).
    fn outside(&self) -> BTreeMap<String, String> {
        test_support::tree_state(&self.root(), &["in", "archive"])
    }
}

#[derive(Debug, Clone)]
enum Kind {
    Dir,
    File(Vec<u8>),
    Symlink(String),
    Hardlink(String),
    Fifo,
}

#[derive(Debug, Clone)]
struct Entry {
    name: String,
    kind: Kind,
    mode: u32,
    mtime: u64,
}

fn component() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("a".to_owned()),
        Just("b".to_owned()),
        Just("media".to_owned()),
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("outside".to_owned()),
        "[a-z]{1,3}",
    ]
}

fn prefix() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => Just("web/0/".to_owned()),
        2 => Just("web/1/".to_owned()),
        1 => Just("web/01/".to_owned()),
        2 => Just("files/".to_owned()),
        1 => Just("/".to_owned()),
        1 => Just(String::new()),
        1 => Just("../".to_owned()),
    ]
}

/// Link targets aiming out of the target: relative climbs, absolute paths to `outside/`
/// (filled in per sandbox), and harmless ones.
fn target() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("../outside".to_owned()),
        Just("../../outside/folder".to_owned()),
        Just("../../../outside/file".to_owned()),
        Just("@OUTSIDE@".to_owned()),
        Just("@OUTSIDE@/file".to_owned()),
        Just("@OUTSIDE@/folder".to_owned()),
        Just("a".to_owned()),
        Just("media".to_owned()),
        Just("web/0/a".to_owned()),
    ]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![
        3 => Just(Kind::Dir),
        3 => prop::collection::vec(any::<u8>(), 0..40).prop_map(Kind::File),
        3 => target().prop_map(Kind::Symlink),
        1 => target().prop_map(Kind::Hardlink),
        1 => Just(Kind::Fifo),
    ]
}

fn entry() -> impl Strategy<Value = Entry> {
    (
        prefix(),
        prop::collection::vec(component(), 0..4),
        any::<bool>(),
        kind(),
        prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o2775, 0o777, 0o000, 0o7777]),
        0u64..2_000_000_000,
    )
        .prop_map(|(prefix, comps, slash, kind, mode, mtime)| {
            let mut name = format!("{prefix}{}", comps.join("/"));
            if slash && matches!(kind, Kind::Dir) {
                name.push('/');
            }
            Entry {
                name,
                kind,
                mode,
                mtime,
            }
        })
}

/// Entries that pass the reader's path checks (one or two web folders, names from a small
/// set so that later entries often lie "inside" earlier symlinks and files), with hostile
/// link targets: these reach extraction.
fn inside_entry() -> impl Strategy<Value = Entry> {
    (
        prop::sample::select(vec!["web/0/", "web/0/", "web/0/", "web/1/"]),
        prop::collection::vec(prop::sample::select(vec!["a", "b", "media"]), 1..4),
        prop_oneof![
            2 => Just(Kind::Dir),
            2 => prop::collection::vec(any::<u8>(), 0..16).prop_map(Kind::File),
            3 => target().prop_map(Kind::Symlink),
        ],
        prop::sample::select(vec![0o644u32, 0o755, 0o4755, 0o2775, 0o777]),
    )
        .prop_map(|(prefix, comps, kind, mode)| Entry {
            name: format!("{prefix}{}", comps.join("/")),
            kind,
            mode,
            mtime: 1_700_000_000,
        })
}

/// How the manifest departs from what the entries hold, if at all.
#[derive(Debug, Clone, Copy)]
enum Twist {
    None,
    DropPart,
    SwapParts,
    WrongHash,
    NoTag,
}

fn twist() -> impl Strategy<Value = Twist> {
    prop_oneof![
        6 => Just(Twist::None),
        1 => Just(Twist::DropPart),
        1 => Just(Twist::SwapParts),
        1 => Just(Twist::WrongHash),
        1 => Just(Twist::NoTag),
    ]
}

fn gnu_header(name: &[u8], kind: tar::EntryType, mode: u32, mtime: u64, size: u64) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    let gnu = h.as_gnu_mut().unwrap();
    let n = name.len().min(100);
    gnu.name[..n].copy_from_slice(&name[..n]);
    h.set_entry_type(kind);
    h.set_mode(mode);
    h.set_mtime(mtime);
    h.set_size(size);
    h
}

fn append(out: &mut Vec<u8>, mut h: tar::Header, data: &[u8]) {
    h.set_cksum();
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
}

fn json_entry(out: &mut Vec<u8>, name: &str, data: &[u8]) {
    append(
        out,
        gnu_header(
            name.as_bytes(),
            tar::EntryType::Regular,
            0o600,
            1_700_000_000,
            data.len() as u64,
        ),
        data,
    );
}

/// The part an entry belongs to, as the reader groups them: `web/<n>/` or `files/<name>`.
fn part_of(name: &str) -> Option<(String, String)> {
    if let Some(rest) = name.strip_prefix("web/") {
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        if digits.is_empty() {
            return None;
        }
        let rel = rest[digits.len()..]
            .strip_prefix('/')
            .unwrap_or("")
            .to_owned();
        return Some((format!("web/{digits}/"), rel));
    }
    name.strip_prefix("files/")
        .map(|n| (format!("files/{n}"), String::new()))
}

/// A tar of `entries` between a valid header and a manifest computed from them (as the
/// documented format says), twisted, and tagged with [`key`] unless the twist says not.
fn build(entries: &[Entry], urls: &[&str], twist: Twist, outside: &Utf8Path) -> Vec<u8> {
    build_version(entries, urls, twist, outside, 2)
}

fn build_version(
    entries: &[Entry],
    urls: &[&str],
    twist: Twist,
    outside: &Utf8Path,
    version: u32,
) -> Vec<u8> {
    let mut header =
        ManifestHeader::new("http://example.test/app", "App", "1.0", "1", "1.2", "site");
    header.format_version = version;
    let mut out = Vec::new();
    json_entry(
        &mut out,
        "header.json",
        &serde_json::to_vec(&header).unwrap(),
    );
    // Canonical record streams per web part, file hashes per file part, in order.
    let mut order: Vec<String> = Vec::new();
    let mut web: BTreeMap<String, (Sha256, u64, u64, u64, u64)> = BTreeMap::new();
    let mut files: BTreeMap<String, (u64, String)> = BTreeMap::new();
    for e in entries {
        let name_bytes = e.name.as_bytes();
        let fix = |t: &str| t.replace("@OUTSIDE@", outside.as_str());
        let (kind, data, link): (tar::EntryType, Vec<u8>, Option<String>) = match &e.kind {
            Kind::Dir => (tar::EntryType::Directory, Vec::new(), None),
            Kind::File(d) => (tar::EntryType::Regular, d.clone(), None),
            Kind::Symlink(t) => (tar::EntryType::Symlink, Vec::new(), Some(fix(t))),
            Kind::Hardlink(t) => (tar::EntryType::Link, Vec::new(), Some(fix(t))),
            Kind::Fifo => (tar::EntryType::Fifo, Vec::new(), None),
        };
        let mut h = gnu_header(name_bytes, kind, e.mode, e.mtime, data.len() as u64);
        if let Some(t) = &link {
            let gnu = h.as_gnu_mut().unwrap();
            let n = t.len().min(100);
            gnu.linkname[..n].copy_from_slice(&t.as_bytes()[..n]);
        }
        append(&mut out, h, &data);
        let Some((part, rel)) = part_of(&e.name) else {
            continue;
        };
        if !order.contains(&part) {
            order.push(part.clone());
        }
        if part.starts_with("files/") {
            files.insert(
                part,
                (data.len() as u64, hex::encode(Sha256::digest(&data))),
            );
            continue;
        }
        let rel = rel.strip_suffix('/').unwrap_or(&rel).to_owned();
        let w = web
            .entry(part)
            .or_insert_with(|| (Sha256::new(), 0, 0, 0, 0));
        let k = match kind {
            tar::EntryType::Directory => b'd',
            tar::EntryType::Regular => b'f',
            tar::EntryType::Symlink => b'l',
            _ => b'?',
        };
        w.0.update([k]);
        w.0.update((rel.len() as u32).to_be_bytes());
        w.0.update(rel.as_bytes());
        w.0.update((e.mode & 0o7777).to_be_bytes());
        w.0.update((e.mtime as i64).to_be_bytes());
        match k {
            b'd' => w.3 += 1,
            b'f' => {
                w.0.update((data.len() as u64).to_be_bytes());
                w.0.update(&data);
                w.1 += data.len() as u64;
                w.2 += 1;
            }
            b'l' => {
                let t = link.clone().unwrap_or_default();
                w.0.update((t.len() as u32).to_be_bytes());
                w.0.update(t.as_bytes());
                w.4 += 1;
            }
            _ => {}
        }
    }
    let mut parts: Vec<PartInfo> = Vec::new();
    for (i, entry) in order.iter().enumerate() {
        if let Some((size, sha)) = files.get(entry) {
            let name = entry.strip_prefix("files/").unwrap().to_owned();
            parts.push(PartInfo {
                name,
                kind: PartKind::DatabaseDump {
                    db_id: "main".into(),
                    kind: "mysql".into(),
                    row_counts: None,
                },
                entry: entry.clone(),
                size: *size,
                sha256: sha.clone(),
                file_count: None,
                dir_count: None,
                symlink_count: None,
            });
        } else if let Some((sha, bytes, f, d, l)) = web.get(entry) {
            parts.push(PartInfo {
                name: entry.trim_end_matches('/').to_owned(),
                kind: PartKind::WebDir {
                    mapping_url: urls[i % urls.len()].to_owned(),
                },
                entry: entry.clone(),
                size: *bytes,
                sha256: hex::encode(sha.clone().finalize()),
                file_count: Some(*f),
                dir_count: Some(*d),
                symlink_count: Some(*l),
            });
        }
    }
    match twist {
        Twist::DropPart if !parts.is_empty() => {
            parts.pop();
        }
        Twist::SwapParts if parts.len() > 1 => parts.swap(0, 1),
        Twist::WrongHash if !parts.is_empty() => parts[0].sha256 = "0".repeat(64),
        _ => {}
    }
    let manifest = Manifest {
        format: "aps-controller-backup".into(),
        header,
        parts,
    };
    let bytes = serde_json::to_vec(&manifest).unwrap();
    json_entry(&mut out, "manifest.json", &bytes);
    if !matches!(twist, Twist::NoTag) {
        let tag = aps_controller::archive::ArchiveTag::new(&key(), &bytes);
        json_entry(&mut out, "manifest.tag", &serde_json::to_vec(&tag).unwrap());
    }
    out.extend_from_slice(&[0u8; 1024]);
    out
}

/// Verifies, opens (trusting [`key`]) and, when that succeeds, extracts every part into
/// `in/`; then checks nothing outside `in/` changed. Errors are fine; panics and escapes
/// are not.
fn exercise(sb: &Sandbox, bytes: &[u8]) -> Result<(), TestCaseError> {
    let before = sb.outside();
    let archive = sb.root().join("archive");
    std::fs::File::create(&archive)
        .and_then(|mut f| f.write_all(bytes))
        .unwrap();
    let _ = verify_reader(std::io::Cursor::new(bytes.to_vec()), &archive, None);
    if let Ok(reader) = ArchiveReader::open_trusted(&archive, None, &key(), &|_| false) {
        let mut plan = ExtractPlan::new();
        for (i, part) in reader.manifest().parts.iter().enumerate() {
            let dest = sb.root().join(format!("in/{i}"));
            plan = match &part.kind {
                PartKind::WebDir { mapping_url } => plan.web_dir(mapping_url, dest),
                _ => plan.file(&part.name, dest),
            };
        }
        let result = reader.extract(&plan);
        if std::env::var_os("APS_PROPS_STATS").is_some() {
            eprintln!("STAT extract {}", if result.is_ok() { "ok" } else { "err" });
        }
    } else if std::env::var_os("APS_PROPS_STATS").is_some() {
        eprintln!("STAT refused");
    }
    prop_assert_eq!(sb.outside(), before);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 200, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic_nor_write(bytes in prop::collection::vec(any::<u8>(), 0..3000)) {
        let sb = Sandbox::new();
        exercise(&sb, &bytes)?;
        // The same bytes behind a valid tar header entry, to get past the first check.
        let mut tarred = Vec::new();
        let header = ManifestHeader::new("x", "X", "1", "1", "1.2", "site");
        json_entry(&mut tarred, "header.json", &serde_json::to_vec(&header).unwrap());
        tarred.extend_from_slice(&bytes);
        exercise(&sb, &tarred)?;
    }

    #[test]
    fn crafted_tars_never_write_outside_the_target(
        entries in prop::collection::vec(entry(), 0..14),
        urls in prop::sample::subsequence(vec!["/", "/media", "/a", "/a/b", "media"], 1..4),
        twist in twist(),
    ) {
        let sb = Sandbox::new();
        let outside = sb.root().join("outside");
        let bytes = build(&entries, &urls, twist, &outside);
        exercise(&sb, &bytes)?;
    }

    #[test]
    fn consistent_trees_with_hostile_links_never_write_outside(
        entries in prop::collection::vec(inside_entry(), 1..12),
        urls in prop::sample::subsequence(vec!["/", "/media", "/a"], 1..3),
    ) {
        let sb = Sandbox::new();
        let outside = sb.root().join("outside");
        let mut all = vec![Entry { name: "web/0/".into(), kind: Kind::Dir, mode: 0o755, mtime: 1 }];
        all.extend(entries.iter().filter(|e| e.name.starts_with("web/0/")).cloned());
        let web1: Vec<Entry> = entries.iter().filter(|e| e.name.starts_with("web/1/")).cloned().collect();
        if !web1.is_empty() {
            all.push(Entry { name: "web/1/".into(), kind: Kind::Dir, mode: 0o755, mtime: 1 });
            all.extend(web1);
        }
        let bytes = build(&all, &urls, Twist::None, &outside);
        exercise(&sb, &bytes)?;
    }

    #[test]
    fn damaged_crafted_tars_never_panic_nor_write(
        entries in prop::collection::vec(entry(), 1..8),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        cut in any::<prop::sample::Index>(),
        do_cut in any::<bool>(),
    ) {
        let sb = Sandbox::new();
        let outside = sb.root().join("outside");
        let mut bytes = build(&entries, &["/"], Twist::None, &outside);
        for (at, value) in flips {
            let i = at.index(bytes.len());
            bytes[i] ^= value | 1;
        }
        if do_cut {
            bytes.truncate(cut.index(bytes.len()));
        }
        exercise(&sb, &bytes)?;
    }
}

/// The generator does reach extraction: a plain tree with a symlink passes and is extracted
/// with the symlink kept as a symlink (so the properties above are not vacuous).
#[test]
fn a_crafted_consistent_archive_is_extracted() {
    let sb = Sandbox::new();
    let outside = sb.root().join("outside");
    let entries = vec![
        Entry {
            name: "web/0/".into(),
            kind: Kind::Dir,
            mode: 0o755,
            mtime: 1,
        },
        Entry {
            name: "web/0/a".into(),
            kind: Kind::File(b"hello".to_vec()),
            mode: 0o644,
            mtime: 2,
        },
        Entry {
            name: "web/0/l".into(),
            kind: Kind::Symlink("@OUTSIDE@".into()),
            mode: 0o777,
            mtime: 3,
        },
    ];
    let bytes = build(&entries, &["/"], Twist::None, &outside);
    exercise(&sb, &bytes).unwrap();
    let dest = sb.root().join("in/0");
    assert_eq!(std::fs::read(dest.join("a")).unwrap(), b"hello");
    assert_eq!(
        std::fs::read_link(dest.join("l")).unwrap(),
        outside.as_std_path()
    );
}

/// Format version 1 (no tag entry) is still read, and is untrusted; a tag entry in a
/// version-1 file is an entry where none may be.
#[test]
fn version_1_files_are_read_and_untrusted() {
    let sb = Sandbox::new();
    let outside = sb.root().join("outside");
    let entries = vec![
        Entry {
            name: "web/0/".into(),
            kind: Kind::Dir,
            mode: 0o755,
            mtime: 1,
        },
        Entry {
            name: "web/0/a".into(),
            kind: Kind::File(b"v1".to_vec()),
            mode: 0o644,
            mtime: 2,
        },
    ];
    let archive = sb.root().join("archive");
    let v1 = build_version(&entries, &["/"], Twist::NoTag, &outside, 1);
    std::fs::write(&archive, &v1).unwrap();
    let reader = ArchiveReader::open(&archive, None).expect("a version-1 file reads");
    assert!(reader.seal().tag.is_none());
    let err = ArchiveReader::open_trusted(&archive, None, &key(), &|_| false)
        .err()
        .unwrap();
    assert!(
        matches!(err, aps_controller::archive::ArchiveError::Untrusted { .. }),
        "{err}"
    );
    // Accepted when the caller's import records say so.
    ArchiveReader::open_trusted(&archive, None, &key(), &|_| true).unwrap();
    let tagged_v1 = build_version(&entries, &["/"], Twist::None, &outside, 1);
    std::fs::write(&archive, &tagged_v1).unwrap();
    let err = ArchiveReader::open(&archive, None).err().unwrap();
    assert!(err.to_string().contains("manifest.tag"), "{err}");
}

/// A symlink to a folder outside, then a file and a folder "inside" it, in one consistent,
/// tagged archive: the link is restored as a link and nothing is written through it.
#[test]
fn nothing_is_written_through_a_symlink_of_the_same_archive() {
    let sb = Sandbox::new();
    let outside = sb.root().join("outside");
    let entries = vec![
        Entry {
            name: "web/0/".into(),
            kind: Kind::Dir,
            mode: 0o755,
            mtime: 1,
        },
        Entry {
            name: "web/0/a".into(),
            kind: Kind::Symlink("@OUTSIDE@/folder".into()),
            mode: 0o777,
            mtime: 1,
        },
        Entry {
            name: "web/0/a/inner".into(),
            kind: Kind::File(b"overwritten".to_vec()),
            mode: 0o644,
            mtime: 1,
        },
        Entry {
            name: "web/0/a/new/".into(),
            kind: Kind::Dir,
            mode: 0o755,
            mtime: 1,
        },
    ];
    let bytes = build(&entries, &["/"], Twist::None, &outside);
    exercise(&sb, &bytes).unwrap();
    assert_eq!(
        std::fs::read_to_string(outside.join("folder/inner")).unwrap(),
        "must stay too"
    );
}
