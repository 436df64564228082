//! Sparse files in the archive (GNU's PAX sparse format 1.0): holes kept from walk to
//! extraction, zero blocks of any file restored as holes, hostile sparse maps refused, and the
//! walk's own `[limits]` checks (the binary's tests see the estimate's first).

use std::fs::{self, File};
use std::os::unix::fs::{FileExt, MetadataExt};

use aps_controller::archive::{
    ArchiveError, ArchiveOptions, ArchiveWriter, ManifestHeader, WalkPolicy, capture_tree,
    restore_tree,
};
use camino::{Utf8Path, Utf8PathBuf};

const GIB: u64 = 1 << 30;

fn tmp() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    (dir, path)
}

/// A 2 GiB file with data at its start, middle and end; `false` when the file system keeps
/// no holes (nothing to test there).
fn sparse_file(path: &Utf8Path) -> bool {
    let f = File::create(path).unwrap();
    f.set_len(2 * GIB).unwrap();
    f.write_all_at(b"start", 0).unwrap();
    f.write_all_at(b"middle", GIB).unwrap();
    f.write_all_at(b"end", 2 * GIB - 3).unwrap();
    drop(f);
    let sparse = allocated(path) < 1 << 20;
    if !sparse {
        eprintln!("skipped: {path}'s file system does not keep holes");
    }
    sparse
}

fn allocated(path: &Utf8Path) -> u64 {
    fs::metadata(path).unwrap().blocks() * 512
}

fn read_at(path: &Utf8Path, offset: u64, len: usize) -> Vec<u8> {
    let mut buf = vec![0; len];
    File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

#[test]
fn holes_are_kept_from_walk_to_extraction() {
    let (_t, dir) = tmp();
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    if !sparse_file(&src.join("big")) {
        return;
    }
    fs::write(src.join("small"), b"dense").unwrap();
    let tar = dir.join("tree.tar");
    let captured = capture_tree(&src, &tar).unwrap();
    assert!(
        fs::metadata(&tar).unwrap().len() < 1 << 20,
        "only data is stored"
    );
    let dest = dir.join("dest");
    let restored = restore_tree(&tar, &dest, None).unwrap();
    assert_eq!(captured.sha256, restored.sha256);
    assert_eq!(restored.bytes, 2 * GIB + 5);
    let big = dest.join("big");
    assert_eq!(fs::metadata(&big).unwrap().len(), 2 * GIB);
    assert!(
        allocated(&big) < 1 << 20,
        "{} bytes allocated",
        allocated(&big)
    );
    assert_eq!(read_at(&big, 0, 5), b"start");
    assert_eq!(read_at(&big, GIB, 6), b"middle");
    assert_eq!(read_at(&big, 2 * GIB - 3, 3), b"end");
    assert_eq!(read_at(&big, GIB - 4, 4), [0; 4]);
    assert_eq!(fs::read(dest.join("small")).unwrap(), b"dense");
}

/// A file stored whole (another tool's archive) comes back with holes where it had aligned
/// blocks of zeros, and the same bytes.
#[test]
fn zero_blocks_of_a_dense_entry_are_restored_as_holes() {
    let (_t, dir) = tmp();
    let mut content = vec![0u8; 4 << 20];
    content[..3].copy_from_slice(b"abc");
    content[(4 << 20) - 3..].copy_from_slice(b"xyz");
    let tar = dir.join("dense.tar");
    let mut b = tar::Builder::new(File::create(&tar).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "./", std::io::empty()).unwrap();
    let mut h = tar::Header::new_gnu();
    h.set_mode(0o644);
    h.set_size(content.len() as u64);
    b.append_data(&mut h, "zeros", &content[..]).unwrap();
    b.finish().unwrap();
    drop(b);
    let dest = dir.join("dest");
    restore_tree(&tar, &dest, None).unwrap();
    let out = dest.join("zeros");
    assert_eq!(fs::read(&out).unwrap(), content);
    assert!(
        allocated(&out) < 1 << 20,
        "{} bytes allocated",
        allocated(&out)
    );
}

/// A tar of one sparse entry `name` with `map` (the text before the padding), `real` size
/// and `data`, its tar size `size` (default: the padded map plus the data).
fn crafted(path: &Utf8Path, map: &str, real: u64, data: &[u8], size: Option<u64>) {
    let mut b = tar::Builder::new(File::create(path).unwrap());
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Directory);
    h.set_mode(0o755);
    h.set_size(0);
    b.append_data(&mut h, "./", std::io::empty()).unwrap();
    let mut pax = Vec::new();
    for (k, v) in [
        ("GNU.sparse.major", "1".to_owned()),
        ("GNU.sparse.minor", "0".to_owned()),
        ("GNU.sparse.name", "f".to_owned()),
        ("GNU.sparse.realsize", real.to_string()),
    ] {
        let rest = k.len() + v.len() + 3;
        let mut len = rest + rest.to_string().len();
        if len.to_string().len() + rest != len {
            len = rest + len.to_string().len();
        }
        pax.extend_from_slice(format!("{len} {k}={v}\n").as_bytes());
    }
    let mut ph = tar::Header::new_ustar();
    ph.set_entry_type(tar::EntryType::XHeader);
    ph.set_path("././@PaxHeader").unwrap();
    ph.set_size(pax.len() as u64);
    ph.set_cksum();
    b.append(&ph, &pax[..]).unwrap();
    let mut body = map.as_bytes().to_vec();
    body.resize(body.len().div_ceil(512) * 512, 0);
    body.extend_from_slice(data);
    let mut h = tar::Header::new_gnu();
    h.set_path("f").unwrap();
    h.set_mode(0o644);
    h.set_size(size.unwrap_or(body.len() as u64));
    h.set_cksum();
    // Written by hand so that a size that disagrees with the body is kept as crafted.
    b.append(&h, &body[..]).unwrap();
    b.finish().unwrap();
}

#[test]
fn hostile_sparse_maps_are_refused() {
    let (_t, dir) = tmp();
    let tar = dir.join("ok.tar");
    crafted(&tar, "2\n0\n2\n100\n3\n", 1000, b"abxyz", None);
    let dest = dir.join("ok");
    restore_tree(&tar, &dest, None).unwrap();
    let f = dest.join("f");
    assert_eq!(fs::metadata(&f).unwrap().len(), 1000);
    assert_eq!(read_at(&f, 100, 3), b"xyz");

    for (what, map, real, data) in [
        ("overlapping", "2\n0\n4\n2\n1\n", 1000u64, &b"abcde"[..]),
        ("out of order", "2\n100\n1\n0\n1\n", 1000, b"ab"),
        ("beyond the size", "1\n999\n2\n", 1000, b"ab"),
        (
            "more than u64",
            "1\n18446744073709551615\n2\n",
            u64::MAX,
            b"ab",
        ),
        ("too many extents", "65537\n", 1000, b""),
        ("not a number", "1\nx\n1\n", 1000, b"a"),
        ("short of its size", "1\n0\n4\n", 1000, b"ab"),
    ] {
        let tar = dir.join("bad.tar");
        crafted(&tar, map, real, data, None);
        let err = restore_tree(&tar, &dir.join("bad"), None).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::UnexpectedEntry { .. } | ArchiveError::Truncated { .. }
            ),
            "{what}: {err}"
        );
        let _ = fs::remove_dir_all(dir.join("bad"));
    }
}

fn header() -> ManifestHeader {
    ManifestHeader::new("http://example.test/app", "App", "1.0", "1", "1.2", "site")
}

/// The walk checks the bounds itself (the tree may grow after the estimate), across all the
/// folders of one archive, naming the limit, the instance and the path.
#[test]
fn the_walk_stops_at_its_bounds() {
    let (_t, dir) = tmp();
    for d in ["a", "b"] {
        fs::create_dir(dir.join(d)).unwrap();
        for i in 0..3 {
            fs::write(dir.join(format!("{d}/f{i}")), [7u8; 100]).unwrap();
        }
    }
    let policy = |max_bytes, max_files| WalkPolicy {
        instance: "site".into(),
        account_uid: None,
        max_bytes,
        max_files,
        holes_as_data: false,
    };
    let walk = |p: WalkPolicy| {
        let mut w = ArchiveWriter::create(Vec::new(), &ArchiveOptions::plain(), header()).unwrap();
        w.walk_policy(p);
        w.add_web_dir("/", &dir.join("a"))?;
        w.add_web_dir("/b", &dir.join("b"))?;
        w.finish().map(|_| ())
    };
    walk(policy(Some(600), Some(8))).unwrap();
    let err = walk(policy(None, Some(7))).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ArchiveError::WalkLimit {
                limit: "max-files",
                ..
            }
        ),
        "{text}"
    );
    assert!(
        text.contains("\"site\"") && text.contains(dir.join("b").as_str()),
        "{text}"
    );
    let err = walk(policy(Some(550), None)).unwrap_err();
    let text = err.to_string();
    assert!(
        matches!(
            err,
            ArchiveError::WalkLimit {
                limit: "max-instance-size",
                ..
            }
        ),
        "{text}"
    );
    assert!(text.contains(dir.join("b/f2").as_str()), "{text}");
}
