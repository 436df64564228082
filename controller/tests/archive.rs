//! The backup archive: round trips on real files in temp folders, every compression, age,
//! and the ways an archive can be damaged or hostile.

use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use aps_controller::archive::{
    ArchiveError, ArchiveOptions, ArchiveReader, ArchiveWriter, Compression, ExtractPlan, Manifest,
    ManifestHeader, PartKind, capture_tree, restore_tree, verify,
};
use camino::{Utf8Path, Utf8PathBuf};
use sha2::{Digest, Sha256};

const T0: i64 = 1_700_000_000;

/// The fixture tree's folders, children before parents: stamping a folder's mtime must come
/// after everything inside it was created.
const FOLDERS_CHILDREN_FIRST: [&str; 8] = [
    "empty/also-empty",
    "empty",
    "d1/d2/d3",
    "d1/d2",
    "d1",
    "ünïcødé",
    "long",
    "",
];

fn utf8(p: &Path) -> Utf8PathBuf {
    Utf8PathBuf::from_path_buf(p.to_owned()).unwrap()
}

fn set_mtime(p: &Path, secs: i64) {
    let times = rustix::fs::Timestamps {
        last_access: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
        last_modification: rustix::fs::Timespec {
            tv_sec: secs,
            tv_nsec: 0,
        },
    };
    rustix::fs::utimensat(
        rustix::fs::CWD,
        p,
        &times,
        rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
    )
    .unwrap();
}

fn write_file(p: &Path, data: &[u8], mode: u32, mtime: i64) {
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
    set_mtime(p, mtime);
}

/// Deterministic pseudo-random bytes (xorshift), so big files do not compress to nothing.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed | 1;
    let mut out = Vec::with_capacity(len);
    while out.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.extend_from_slice(&x.to_le_bytes());
    }
    out.truncate(len);
    out
}

/// A web folder with the awkward cases: odd names, modes, all kinds of symlinks, empty
/// folders, a zero-byte file, a long name, and optionally a 20 MB file.
fn make_tree(root: &Path, big: bool) {
    fs::create_dir_all(root).unwrap();
    write_file(
        &root.join("a file with spaces.txt"),
        b"spaces\n",
        0o640,
        T0 + 1,
    );
    write_file(
        &root.join("-leading-dash"),
        b"#!/bin/sh\necho hi\n",
        0o755,
        T0 + 2,
    );
    write_file(&root.join("new\nline"), b"newline in name", 0o600, T0 + 3);
    write_file(&root.join("zero"), b"", 0o644, T0 + 4);
    fs::create_dir(root.join("ünïcødé")).unwrap();
    write_file(
        &root.join("ünïcødé/файл 名前.txt"),
        "unicode ✓".as_bytes(),
        0o600,
        T0 + 5,
    );
    fs::create_dir_all(root.join("empty/also-empty")).unwrap();
    fs::create_dir_all(root.join("d1/d2/d3")).unwrap();
    write_file(
        &root.join("d1/d2/d3/deep.php"),
        b"<?php echo 1;",
        0o644,
        T0 + 6,
    );
    let long = "l".repeat(150);
    fs::create_dir(root.join("long")).unwrap();
    write_file(&root.join("long").join(&long), b"long name", 0o644, T0 + 7);
    symlink("a file with spaces.txt", root.join("rel-link")).unwrap();
    symlink("/etc/hostname", root.join("abs-link")).unwrap();
    symlink("does/not/exist", root.join("dangling")).unwrap();
    symlink(format!("long/{long}"), root.join("long-target-link")).unwrap();
    for (i, l) in ["rel-link", "abs-link", "dangling", "long-target-link"]
        .iter()
        .enumerate()
    {
        set_mtime(&root.join(l), T0 + 10 + i as i64);
    }
    if big {
        write_file(
            &root.join("big.bin"),
            &noise(20 * 1024 * 1024, 7),
            0o644,
            T0 + 20,
        );
    }
    // Folder modes and mtimes last: creating children changes them.
    fs::set_permissions(root.join("d1/d2"), fs::Permissions::from_mode(0o750)).unwrap();
    for (i, d) in FOLDERS_CHILDREN_FIRST.iter().enumerate() {
        set_mtime(&root.join(d), T0 + 100 + i as i64);
    }
}

/// One line per entry: path, type, mode, mtime, content hash or link target.
fn describe(root: &Path) -> Vec<String> {
    fn walk(root: &Path, rel: &Path, out: &mut Vec<String>) {
        let p = root.join(rel);
        let m = fs::symlink_metadata(&p).unwrap();
        let ft = m.file_type();
        let what = if ft.is_symlink() {
            format!("-> {}", fs::read_link(&p).unwrap().display())
        } else if ft.is_dir() {
            "dir".to_owned()
        } else {
            hex::encode(Sha256::digest(fs::read(&p).unwrap()))
        };
        let mode = if ft.is_symlink() {
            0
        } else {
            m.mode() & 0o7777
        };
        out.push(format!("{:?} {mode:o} {} {what}", rel, m.mtime()));
        if ft.is_dir() {
            let mut names: Vec<_> = fs::read_dir(&p)
                .unwrap()
                .map(|e| e.unwrap().file_name())
                .collect();
            names.sort();
            for n in names {
                walk(root, &rel.join(n), out);
            }
        }
    }
    let mut out = Vec::new();
    walk(root, Path::new(""), &mut out);
    out
}

fn header() -> ManifestHeader {
    let mut h = ManifestHeader::new(
        "http://wordpress.org/",
        "WordPress",
        "6.4.2",
        "1",
        "1.2",
        "blog",
    );
    h.created = jiff::Timestamp::from_second(T0).unwrap();
    h
}

struct Fixture {
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
    web: Utf8PathBuf,
    cache: Utf8PathBuf,
    script: Utf8PathBuf,
    dump: Utf8PathBuf,
}

fn fixture(big: bool) -> Fixture {
    let tmp = tempfile::tempdir().unwrap();
    let dir = utf8(tmp.path());
    let web = dir.join("src/htdocs");
    let cache = dir.join("src/cache");
    make_tree(web.as_std_path(), big);
    fs::create_dir_all(&cache).unwrap();
    write_file(cache.join("c1").as_std_path(), b"cache", 0o600, T0);
    set_mtime(cache.as_std_path(), T0);
    let script = dir.join("script-backup.tgz");
    fs::write(&script, noise(100_000, 3)).unwrap();
    let dump = dir.join("main.sql");
    fs::write(
        &dump,
        b"-- UNIQUE-DUMP-MARKER\nINSERT INTO wp_posts VALUES (1);\n",
    )
    .unwrap();
    Fixture {
        _tmp: tmp,
        dir,
        web,
        cache,
        script,
        dump,
    }
}

fn db_kind() -> PartKind {
    PartKind::DatabaseDump {
        db_id: "main".into(),
        kind: "mysql".into(),
        row_counts: Some(BTreeMap::from([("wp_posts".to_owned(), 1)])),
    }
}

fn write_archive(f: &Fixture, opts: &ArchiveOptions, out: &Utf8Path) -> Manifest {
    let file = fs::File::create(out).unwrap();
    let mut w = ArchiveWriter::create(file, opts, header()).unwrap();
    w.add_file_part("script-backup", PartKind::ScriptBackup, &f.script)
        .unwrap();
    w.add_file_part("db-main", db_kind(), &f.dump).unwrap();
    w.add_web_dir("/", &f.web).unwrap();
    w.add_web_dir("/cache", &f.cache).unwrap();
    assert!(w.warnings().is_empty(), "{:?}", w.warnings());
    w.finish().unwrap()
}

fn restore_and_compare(f: &Fixture, archive: &Utf8Path, identity: Option<&Utf8Path>) {
    let reader = ArchiveReader::open(archive, identity).unwrap();
    let out = f
        .dir
        .join(format!("restored-{}", archive.file_name().unwrap()));
    fs::create_dir(&out).unwrap();
    let plan = ExtractPlan::new()
        .web_dir("/", out.join("htdocs"))
        .web_dir("/cache", out.join("cache"))
        .file("script-backup", out.join("script"))
        .file("db-main", out.join("dump.sql"));
    reader.extract(&plan).unwrap();
    assert_eq!(
        describe(f.web.as_std_path()),
        describe(out.join("htdocs").as_std_path())
    );
    assert_eq!(
        describe(f.cache.as_std_path()),
        describe(out.join("cache").as_std_path())
    );
    assert_eq!(
        fs::read(&f.script).unwrap(),
        fs::read(out.join("script")).unwrap()
    );
    assert_eq!(
        fs::read(&f.dump).unwrap(),
        fs::read(out.join("dump.sql")).unwrap()
    );
    // Symlinks came back as symlinks, not as copies of what they point to.
    let restored = out.join("htdocs");
    assert!(
        fs::symlink_metadata(restored.join("abs-link"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert!(
        fs::symlink_metadata(restored.join("dangling"))
            .unwrap()
            .file_type()
            .is_symlink()
    );
}

fn magic(path: &Utf8Path) -> Vec<u8> {
    let mut head = vec![0u8; 512];
    let n = fs::File::open(path).unwrap().read(&mut head).unwrap();
    head.truncate(n);
    head
}

#[test]
fn round_trip_zstd_with_big_file_and_odd_tree() {
    let f = fixture(true);
    let out = f.dir.join("backup.zst");
    let written = write_archive(&f, &ArchiveOptions::default(), &out);
    assert!(magic(&out).starts_with(&[0x28, 0xb5, 0x2f, 0xfd]));
    let verified = verify(&out, None).unwrap();
    assert_eq!(written, verified);
    let web = verified.web_dir("/").unwrap();
    assert_eq!(web.file_count, Some(8));
    assert_eq!(web.symlink_count, Some(4));
    assert_eq!(web.dir_count, Some(8));
    assert_eq!(web.size, 20 * 1024 * 1024 + 73);
    let dump = verified.part("db-main").unwrap();
    assert_eq!(dump.size, fs::metadata(&f.dump).unwrap().len());
    assert_eq!(
        dump.sha256,
        hex::encode(Sha256::digest(fs::read(&f.dump).unwrap()))
    );
    restore_and_compare(&f, &out, None);
}

#[test]
fn round_trip_uncompressed_and_gzip() {
    for (opts, name) in [
        (ArchiveOptions::plain(), "backup.tar"),
        (
            ArchiveOptions {
                compression: Compression::Gzip { level: 6 },
                ..Default::default()
            },
            "backup.tar.gz",
        ),
        (
            ArchiveOptions {
                compression: Compression::Zstd { level: 19 },
                zstd_workers: 1,
                ..Default::default()
            },
            "backup.19.zst",
        ),
    ] {
        let f = fixture(false);
        let out = f.dir.join(name);
        let written = write_archive(&f, &opts, &out);
        let head = magic(&out);
        match opts.compression {
            Compression::None => assert_eq!(&head[257..262], b"ustar"),
            Compression::Gzip { .. } => assert!(head.starts_with(&[0x1f, 0x8b])),
            Compression::Zstd { .. } => assert!(head.starts_with(&[0x28, 0xb5, 0x2f, 0xfd])),
        }
        assert_eq!(written, verify(&out, None).unwrap());
        restore_and_compare(&f, &out, None);
    }
}

#[test]
fn round_trip_age_and_identity_errors() {
    let f = fixture(false);
    let identity = age::x25519::Identity::generate();
    let id_file = f.dir.join("key.txt");
    {
        use age::secrecy::ExposeSecret;
        fs::write(
            &id_file,
            format!("{}\n", identity.to_string().expose_secret()),
        )
        .unwrap();
    }
    let opts = ArchiveOptions {
        recipients: vec![identity.to_public().to_string()],
        ..Default::default()
    };
    let out = f.dir.join("backup.age");
    let written = write_archive(&f, &opts, &out);
    assert!(magic(&out).starts_with(b"age-encryption.org/v1\n"));
    // The contents are not readable without the key.
    assert!(
        !fs::read(&out)
            .unwrap()
            .windows(19)
            .any(|w| w == b"UNIQUE-DUMP-MARKER\n")
    );

    assert_eq!(written, verify(&out, Some(&id_file)).unwrap());
    restore_and_compare(&f, &out, Some(&id_file));

    let err = verify(&out, None).unwrap_err();
    assert!(
        matches!(err, ArchiveError::IdentityRequired { .. }),
        "{err}"
    );
    assert!(err.to_string().contains("identity"), "{err}");

    let other = f.dir.join("other-key.txt");
    {
        use age::secrecy::ExposeSecret;
        let k = age::x25519::Identity::generate();
        fs::write(&other, format!("{}\n", k.to_string().expose_secret())).unwrap();
    }
    let err = verify(&out, Some(&other)).unwrap_err();
    assert!(matches!(err, ArchiveError::WrongIdentity { .. }), "{err}");

    let err = verify(&out, Some(&f.dir.join("no-such-key"))).unwrap_err();
    assert!(matches!(err, ArchiveError::IdentityFile { .. }), "{err}");

    let bad = ArchiveOptions {
        recipients: vec!["age1nonsense".into()],
        ..Default::default()
    };
    let err = ArchiveWriter::create(Vec::new(), &bad, header())
        .err()
        .unwrap();
    assert!(
        matches!(err, ArchiveError::InvalidRecipient { .. }),
        "{err}"
    );
}

/// Finds `needle` in the (uncompressed) archive and flips one of its bytes.
fn flip_byte_of(path: &Utf8Path, needle: &[u8]) {
    let mut bytes = fs::read(path).unwrap();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("needle in archive");
    bytes[at + 3] ^= 0x20;
    fs::write(path, bytes).unwrap();
}

#[test]
fn tampered_parts_are_named() {
    let f = fixture(false);
    let out = f.dir.join("backup.tar");
    write_archive(&f, &ArchiveOptions::plain(), &out);
    let pristine = fs::read(&out).unwrap();

    flip_byte_of(&out, b"UNIQUE-DUMP-MARKER");
    let err = verify(&out, None).unwrap_err();
    match &err {
        ArchiveError::HashMismatch {
            part,
            expected,
            actual,
            ..
        } => {
            assert_eq!(part, "db-main");
            assert_ne!(expected, actual);
        }
        other => panic!("expected a hash mismatch, got {other}"),
    }
    assert!(err.to_string().contains("db-main"), "{err}");
    // Restore refuses before writing anything.
    let dest = f.dir.join("never");
    assert!(ArchiveReader::open(&out, None).is_err());
    assert!(!dest.exists());

    fs::write(&out, &pristine).unwrap();
    flip_byte_of(&out, "unicode ✓".as_bytes());
    let err = verify(&out, None).unwrap_err();
    assert_eq!(err.part(), Some("web/0"), "{err}");
    assert!(matches!(err, ArchiveError::HashMismatch { .. }), "{err}");

    // A tampered manifest hash is caught too.
    fs::write(&out, &pristine).unwrap();
    let manifest = verify(&out, None).unwrap();
    let cache_hash = manifest.web_dir("/cache").unwrap().sha256.clone();
    flip_byte_of(&out, cache_hash.as_bytes());
    let err = verify(&out, None).unwrap_err();
    assert_eq!(err.part(), Some("web/1"), "{err}");
}

#[test]
fn tampered_zstd_stream_fails() {
    let f = fixture(false);
    let out = f.dir.join("backup.zst");
    write_archive(&f, &ArchiveOptions::default(), &out);
    let mut bytes = fs::read(&out).unwrap();
    let mid = bytes.len() / 2;
    bytes[mid] ^= 0xff;
    fs::write(&out, bytes).unwrap();
    let err = verify(&out, None).unwrap_err();
    assert!(
        matches!(
            err,
            ArchiveError::Corrupt { .. }
                | ArchiveError::HashMismatch { .. }
                | ArchiveError::Truncated { .. }
        ),
        "{err}"
    );
}

#[test]
fn truncated_archives_fail() {
    let f = fixture(false);
    for (opts, name) in [
        (ArchiveOptions::plain(), "t.tar"),
        (ArchiveOptions::default(), "t.zst"),
        (
            ArchiveOptions {
                compression: Compression::Gzip { level: 1 },
                ..Default::default()
            },
            "t.gz",
        ),
    ] {
        let out = f.dir.join(name);
        write_archive(&f, &opts, &out);
        let full = fs::read(&out).unwrap();
        for keep in [
            full.len() / 3,
            full.len() / 2,
            full.len() - 1500,
            full.len() - 3,
        ] {
            fs::write(&out, &full[..keep]).unwrap();
            let err = verify(&out, None).unwrap_err();
            assert!(
                matches!(
                    err,
                    ArchiveError::Truncated { .. } | ArchiveError::Corrupt { .. }
                ),
                "{name} cut to {keep}: {err}"
            );
        }
    }
    // A plain tar cut on an entry boundary before the manifest.
    let out = f.dir.join("t.tar");
    write_archive(&f, &ArchiveOptions::plain(), &out);
    let full = fs::read(&out).unwrap();
    let at = full
        .windows(13)
        .rposition(|w| w == b"manifest.json")
        .unwrap();
    fs::write(&out, &full[..at]).unwrap();
    let err = verify(&out, None).unwrap_err();
    assert!(matches!(err, ArchiveError::Truncated { .. }), "{err}");
    assert!(err.to_string().contains("manifest"), "{err}");
}

/// Rewrites a plain archive entry by entry, letting `edit` drop (None) or add entries.
fn rewrite(
    src: &Utf8Path,
    dst: &Utf8Path,
    mut edit: impl FnMut(&str, &mut tar::Builder<fs::File>) -> bool,
) {
    let mut archive = tar::Archive::new(fs::File::open(src).unwrap());
    let mut builder = tar::Builder::new(fs::File::create(dst).unwrap());
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        if !edit(&path, &mut builder) {
            continue;
        }
        let mut header = entry.header().clone();
        if header.entry_type() == tar::EntryType::Symlink {
            let target = entry.link_name().unwrap().unwrap().into_owned();
            builder.append_link(&mut header, &path, target).unwrap();
            continue;
        }
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        builder.append_data(&mut header, &path, &data[..]).unwrap();
    }
    builder.into_inner().unwrap().flush().unwrap();
}

fn regular(size: usize) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_entry_type(tar::EntryType::Regular);
    h.set_mode(0o600);
    h.set_size(size as u64);
    h
}

#[test]
fn missing_and_extra_parts_fail() {
    let f = fixture(false);
    let out = f.dir.join("backup.tar");
    write_archive(&f, &ArchiveOptions::plain(), &out);

    let missing = f.dir.join("missing.tar");
    rewrite(&out, &missing, |p, _| p != "files/db-main");
    let err = verify(&missing, None).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::MissingPart { part, .. } if part == "db-main"),
        "{err}"
    );

    let missing_web = f.dir.join("missing-web.tar");
    rewrite(&out, &missing_web, |p, _| !p.starts_with("web/1"));
    let err = verify(&missing_web, None).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::MissingPart { part, .. } if part == "web/1"),
        "{err}"
    );

    let extra = f.dir.join("extra.tar");
    rewrite(&out, &extra, |p, b| {
        if p == "manifest.json" {
            b.append_data(&mut regular(3), "files/smuggled", &b"bad"[..])
                .unwrap();
        }
        true
    });
    let err = verify(&extra, None).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::ExtraPart { entry, .. } if entry == "files/smuggled"),
        "{err}"
    );

    // A file dropped from inside a web folder changes its hash and its count.
    let fewer = f.dir.join("fewer.tar");
    rewrite(&out, &fewer, |p, _| p != "web/0/zero");
    let err = verify(&fewer, None).unwrap_err();
    assert!(
        matches!(&err, ArchiveError::HashMismatch { part, .. } if part == "web/0"),
        "{err}"
    );

    let after = f.dir.join("after.tar");
    let mut seen_manifest = false;
    rewrite(&out, &after, |p, b| {
        if seen_manifest {
            return true;
        }
        if p == "manifest.json" {
            seen_manifest = true;
        }
        let _ = b;
        true
    });
    // Append an entry after the manifest by hand.
    {
        let bytes = fs::read(&after).unwrap();
        let mut b = tar::Builder::new(Vec::new());
        b.append_data(&mut regular(1), "files/late", &b"x"[..])
            .unwrap();
        let extra_entry = b.into_inner().unwrap();
        let cut = bytes.len() - 1024; // drop the end-of-archive blocks
        let mut joined = bytes[..cut].to_vec();
        joined.extend_from_slice(&extra_entry);
        fs::write(&after, joined).unwrap();
    }
    let err = verify(&after, None).unwrap_err();
    assert!(matches!(err, ArchiveError::UnexpectedEntry { .. }), "{err}");
}

/// A tar whose entry names are written raw, bypassing the tar crate's own checks.
fn hostile_tar(entries: &[(&[u8], tar::EntryType, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, kind, data) in entries {
        let mut h = tar::Header::new_old();
        h.set_entry_type(*kind);
        h.set_mode(0o644);
        h.set_size(if *kind == tar::EntryType::Symlink {
            0
        } else {
            data.len() as u64
        });
        let slot = &mut h.as_old_mut().name;
        slot[..name.len()].copy_from_slice(name);
        if *kind == tar::EntryType::Symlink {
            h.as_old_mut().linkname[..data.len()].copy_from_slice(data);
            h.set_cksum();
            b.append(&h, &[][..]).unwrap();
        } else {
            h.set_cksum();
            b.append(&h, *data).unwrap();
        }
    }
    b.into_inner().unwrap()
}

#[test]
fn hostile_entries_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = utf8(tmp.path());
    let dest = dir.join("dest");
    let outside = dir.join("outside");
    fs::create_dir(&outside).unwrap();
    let header_json = serde_json::to_vec(&header()).unwrap();
    let reg = tar::EntryType::Regular;
    let dirt = tar::EntryType::Directory;

    let cases: Vec<(&str, Vec<u8>)> = vec![
        (
            "dotdot in a web folder",
            hostile_tar(&[
                (b"header.json", reg, &header_json),
                (b"web/0/", dirt, b""),
                (b"web/0/../../outside/evil", reg, b"evil"),
            ]),
        ),
        (
            "absolute path in a web folder",
            hostile_tar(&[
                (b"header.json", reg, &header_json),
                (b"web/0/", dirt, b""),
                (b"web/0//etc/evil", reg, b"evil"),
            ]),
        ),
        (
            "dotdot at top level",
            hostile_tar(&[
                (b"header.json", reg, &header_json),
                (b"../evil", reg, b"evil"),
            ]),
        ),
        ("missing header", hostile_tar(&[(b"web/0/x", reg, b"evil")])),
    ];
    for (what, bytes) in cases {
        let path = dir.join("hostile.tar");
        fs::write(&path, &bytes).unwrap();
        let err = verify(&path, None).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::UnsafePath { .. } | ArchiveError::UnexpectedEntry { .. }
            ),
            "{what}: {err}"
        );
        assert!(ArchiveReader::open(&path, None).is_err(), "{what}");
    }

    // Plain tree tars (safety snapshots) get the same checks while extracting.
    let plain_cases: Vec<(&str, Vec<u8>)> = vec![
        ("dotdot", hostile_tar(&[(b"../outside/evil", reg, b"evil")])),
        (
            "absolute",
            hostile_tar(&[(b"/tmp/aps-evil-absolute", reg, b"evil")]),
        ),
        (
            "write through a symlink",
            hostile_tar(&[
                (
                    b"link",
                    tar::EntryType::Symlink,
                    outside.as_str().as_bytes(),
                ),
                (b"link/evil", reg, b"evil"),
            ]),
        ),
    ];
    for (what, bytes) in plain_cases {
        let path = dir.join("hostile-tree.tar");
        fs::write(&path, &bytes).unwrap();
        let err = restore_tree(&path, &dest, None).unwrap_err();
        assert!(
            matches!(
                err,
                ArchiveError::UnsafePath { .. } | ArchiveError::Extract { .. }
            ),
            "{what}: {err}"
        );
    }
    assert_eq!(fs::read_dir(&outside).unwrap().count(), 0);
    assert!(!Path::new("/tmp/aps-evil-absolute").exists());
}

#[test]
fn other_files_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = utf8(tmp.path());
    let junk = dir.join("junk");
    fs::write(&junk, b"hello, not an archive").unwrap();
    let err = verify(&junk, None).unwrap_err();
    assert!(matches!(err, ArchiveError::NotAnArchive { .. }), "{err}");

    // A newer format version is refused from its first entry.
    let mut h = header();
    h.format_version = 99;
    let bytes = hostile_tar(&[(
        b"header.json",
        tar::EntryType::Regular,
        &serde_json::to_vec(&h).unwrap(),
    )]);
    let newer = dir.join("newer.tar");
    fs::write(&newer, bytes).unwrap();
    let err = verify(&newer, None).unwrap_err();
    assert!(
        matches!(err, ArchiveError::UnsupportedVersion { found: 99, .. }),
        "{err}"
    );

    let err = verify(&dir.join("absent"), None).unwrap_err();
    assert!(matches!(err, ArchiveError::Open { .. }), "{err}");
}

#[test]
fn writer_refuses_bad_parts() {
    let f = fixture(false);
    let mut w = ArchiveWriter::create(Vec::new(), &ArchiveOptions::plain(), header()).unwrap();
    let err = w
        .add_file_part("../x", PartKind::ScriptBackup, &f.dump)
        .unwrap_err();
    assert!(matches!(err, ArchiveError::InvalidPartName { .. }), "{err}");
    w.add_file_part("db-main", db_kind(), &f.dump).unwrap();
    let err = w.add_file_part("db-main", db_kind(), &f.dump).unwrap_err();
    assert!(matches!(err, ArchiveError::DuplicatePart { .. }), "{err}");
    let err = w
        .add_file_part("gone", db_kind(), &f.dir.join("nope.sql"))
        .unwrap_err();
    assert!(
        matches!(&err, ArchiveError::ReadSource { part, .. } if part == "gone"),
        "{err}"
    );
    w.add_web_dir("/", &f.cache).unwrap();
    let err = w.add_web_dir("/", &f.cache).unwrap_err();
    assert!(matches!(err, ArchiveError::DuplicatePart { .. }), "{err}");
    let manifest = w.finish().unwrap();
    assert_eq!(manifest.parts.len(), 2);
}

#[test]
fn extract_refuses_unknown_parts() {
    let f = fixture(false);
    let out = f.dir.join("b.tar");
    write_archive(&f, &ArchiveOptions::plain(), &out);
    let reader = ArchiveReader::open(&out, None).unwrap();
    let err = reader
        .extract_web_dir("/nope", &f.dir.join("x"))
        .unwrap_err();
    assert!(matches!(err, ArchiveError::NoSuchPart { .. }), "{err}");
    assert!(!f.dir.join("x").exists());
    reader
        .extract_file_part("db-main", &f.dir.join("one.sql"))
        .unwrap();
    assert_eq!(
        fs::read(&f.dump).unwrap(),
        fs::read(f.dir.join("one.sql")).unwrap()
    );
}

#[test]
fn capture_and_restore_tree_round_trip() {
    let f = fixture(false);
    let snap = f.dir.join("snapshot.tar");
    let captured = capture_tree(&f.web, &snap).unwrap();
    let dest = f.dir.join("back");
    let restored = restore_tree(&snap, &dest, None).unwrap();
    assert_eq!(captured.sha256, restored.sha256);
    assert_eq!(
        (captured.files, captured.dirs, captured.symlinks),
        (7, 8, 4)
    );
    assert_eq!(describe(f.web.as_std_path()), describe(dest.as_std_path()));
    // Restoring over an existing copy replaces files and symlinks in place.
    let again = restore_tree(&snap, &dest, None).unwrap();
    assert_eq!(again.sha256, captured.sha256);
    assert_eq!(describe(f.web.as_std_path()), describe(dest.as_std_path()));
}

#[test]
fn setuid_bits_are_not_restored() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = utf8(tmp.path());
    let src = dir.join("src");
    fs::create_dir(&src).unwrap();
    write_file(src.join("suid").as_std_path(), b"x", 0o4755, T0);
    let snap = dir.join("s.tar");
    capture_tree(&src, &snap).unwrap();
    restore_tree(&snap, &dir.join("dst"), None).unwrap();
    let mode = fs::metadata(dir.join("dst/suid")).unwrap().mode() & 0o7777;
    assert_eq!(mode, 0o755);
}

#[test]
fn manifest_snapshot() {
    let f = fixture(false);
    // Fixed mtimes everywhere so the web folder hashes are stable.
    set_mtime(f.cache.as_std_path(), T0);
    fs::set_permissions(&f.web, fs::Permissions::from_mode(0o755)).unwrap();
    fs::set_permissions(&f.cache, fs::Permissions::from_mode(0o755)).unwrap();
    for d in [
        "empty/also-empty",
        "empty",
        "d1/d2/d3",
        "d1",
        "ünïcødé",
        "long",
    ] {
        fs::set_permissions(f.web.join(d), fs::Permissions::from_mode(0o755)).unwrap();
    }
    for (i, d) in FOLDERS_CHILDREN_FIRST.iter().enumerate() {
        set_mtime(f.web.join(d).as_std_path(), T0 + 100 + i as i64);
    }
    set_mtime(f.cache.as_std_path(), T0);
    let out = f.dir.join("snap.tar");
    let manifest = write_archive(&f, &ArchiveOptions::plain(), &out);
    insta::assert_json_snapshot!(manifest, {
        ".header.created" => "[created]",
        ".header.controller_version" => "[version]",
    });
    let _ = Duration::ZERO;
    let _ = UNIX_EPOCH;
}
