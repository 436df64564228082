//! Hostile web folders and destinations, attacked for real: a tenant process running as the
//! unprivileged account `aps-test` (scripts/ci/test-user.sh) swaps folders for symlinks while
//! the controller (root) restores, empties and backs up, or renames a symlink over a backup's
//! temporary file. What lies outside the tenant's folders must stay exactly as it was.
//!
//! These tests need root (to act as the controller and to run the tenant as another account);
//! run as another user they check nothing and say so.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::fd::AsFd;
use std::os::unix::fs::{MetadataExt, PermissionsExt, symlink};
use std::os::unix::process::CommandExt;
use std::process::Command;

use aps_controller::account::Account;
use aps_controller::archive::{
    ArchiveOptions, ArchiveReader, ArchiveWriter, ManifestHeader, capture_tree, capture_tree_to,
    empty_dir_at, open_dir_nofollow, restore_tree,
};
use aps_controller::destination::{Destination, DestinationError};
use camino::{Utf8Path, Utf8PathBuf};
use test_support::needs_root;
use test_support::tenant::{TENANT, stop_swapper, swapper, tenant};

const PYTHON: &str = "/usr/bin/python3";

/// A folder under /tmp that the tenant can traverse (mode 0755, root's).
fn base() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::Builder::new()
        .prefix("aps-hostile-")
        .tempdir()
        .unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
    (dir, path)
}

fn chown(path: &Utf8Path, who: &Account) {
    std::os::unix::fs::lchown(path, Some(who.uid), Some(who.gid)).unwrap();
}

/// Every entry below `root` with its kind, mode, owner and content (or link target).
fn record(root: &Utf8Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string();
            let what = if m.file_type().is_symlink() {
                format!("link {}", std::fs::read_link(&p).unwrap().display())
            } else if m.is_dir() {
                stack.push(p.clone());
                "dir".to_owned()
            } else {
                format!("file {:?}", std::fs::read(&p).unwrap())
            };
            out.insert(
                rel,
                format!("{what} {:o} {}:{}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
        }
    }
    out
}

/// The other customer's folder the tenant wants to reach: root's, a few files.
fn outside(base: &Utf8Path) -> Utf8PathBuf {
    let dir = base.join("outside");
    std::fs::create_dir_all(dir.join("keep")).unwrap();
    std::fs::write(dir.join("SECRET-outside.txt"), b"not the tenant's").unwrap();
    std::fs::write(dir.join("keep/data"), b"precious").unwrap();
    dir
}

/// A tree of `dirs` x `per_dir` files below `sub/`, plus a few at the top.
fn big_tree(root: &Utf8Path, dirs: usize, per_dir: usize) {
    for d in 0..dirs {
        let dir = root.join(format!("sub/d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(
                dir.join(format!("f{f:04}.php")),
                format!("<?php // {d} {f}\n"),
            )
            .unwrap();
        }
    }
    std::fs::write(root.join("index.php"), b"<?php echo 1;\n").unwrap();
    symlink("sub/d00", root.join("link-inside")).unwrap();
}

/// While the tenant swaps `www/sub` with a symlink to another customer's folder in a loop,
/// the controller restores a tree of thousands of files into `www` again and again (and
/// empties it, and backs it up). Restores may fail — the tenant is fighting them — but nothing
/// is ever written, removed or read through the symlink.
#[test]
fn folder_swapped_for_a_symlink_during_restore_never_redirects_a_write() {
    if !needs_root(&format!("the tenant's attack as {TENANT}")) {
        return;
    }
    let who = tenant();
    let (_keep, base) = base();
    let outside = outside(&base);
    let before = record(&outside);

    let src = base.join("src");
    big_tree(&src, 10, 300);
    let tar = base.join("tree.tar");
    capture_tree(&src, &tar).unwrap();

    let www = base.join("www");
    std::fs::create_dir(&www).unwrap();
    chown(&www, &who);
    let stop = base.join("stop");
    let attacker = swapper(&www.join("sub"), &www.join("bait"), &outside, &stop);

    let (mut ok, mut failed) = (0, 0);
    for _ in 0..6 {
        // As restore does: empty the web folder by descriptor, then extract into it.
        let fd = open_dir_nofollow(www.as_std_path()).unwrap();
        let _ = empty_dir_at(fd.as_fd());
        match restore_tree(&tar, &www, Some(&who)) {
            Ok(_) => ok += 1,
            Err(_) => failed += 1,
        }
        // And the backup walk: it must never reach the other customer's files.
        let mut out = Vec::new();
        if capture_tree_to(&www, &mut out).is_ok() {
            let text = String::from_utf8_lossy(&out);
            assert!(
                !text.contains("SECRET-outside") && !text.contains("precious"),
                "the backup walk followed the swapped-in symlink"
            );
        }
    }
    let swaps = stop_swapper(attacker, &stop);
    assert!(
        swaps > 0,
        "the tenant never managed to swap: the test proved nothing"
    );
    assert_eq!(
        record(&outside),
        before,
        "the other customer's folder changed ({ok} restores succeeded, {failed} failed, {swaps} swaps)"
    );
    eprintln!("{swaps} swaps; {ok} restores completed, {failed} refused; outside untouched");
}

/// Everything a restore creates is given to the instance's account, symlinks included (not
/// what they point at), and the tree comes back the same.
#[test]
fn restore_gives_what_it_creates_to_the_owner() {
    if !needs_root(&format!("giving files to {TENANT}")) {
        return;
    }
    let who = tenant();
    let (_keep, base) = base();
    let src = base.join("src");
    big_tree(&src, 2, 5);
    // A symlink pointing at a root-owned file: its owner must change, the file's must not.
    let target = base.join("root-file");
    std::fs::write(&target, b"root's").unwrap();
    symlink(&target, src.join("to-root-file")).unwrap();
    let tar = base.join("tree.tar");
    let captured = capture_tree(&src, &tar).unwrap();

    let dest = base.join("dest");
    let restored = restore_tree(&tar, &dest, Some(&who)).unwrap();
    assert_eq!(restored.sha256, captured.sha256);
    let mut stack = vec![dest.clone()];
    let mut seen = 0;
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            let m = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!((m.uid(), m.gid()), (who.uid, who.gid), "{}", p.display());
            if m.is_dir() {
                stack.push(Utf8PathBuf::from_path_buf(p).unwrap());
            }
            seen += 1;
        }
    }
    assert!(seen > 10);
    let m = std::fs::metadata(&dest).unwrap();
    assert_eq!(
        m.uid(),
        who.uid,
        "the folder created for the tree is the owner's too"
    );
    assert_eq!(std::fs::metadata(&target).unwrap().uid(), 0);

    // Without an owner, things stay the controller's.
    let plain = base.join("plain");
    restore_tree(&tar, &plain, None).unwrap();
    assert_eq!(std::fs::metadata(plain.join("index.php")).unwrap().uid(), 0);
}

/// A web root that is a symlink, or lies under a symlink the tenant made, is refused by name
/// at backup and at restore; the folder it points at is neither read nor touched.
#[test]
fn symlinked_web_roots_are_refused_at_backup_and_restore() {
    let (_keep, base) = base();
    let outside = outside(&base);
    let before = record(&outside);
    let src = base.join("src");
    big_tree(&src, 1, 3);

    // 1. The web root itself is a symlink.
    let www = base.join("www");
    symlink(&outside, &www).unwrap();
    check_refused(&base, &www, &www, &src);

    // 2. The web root lies under a symlink the tenant placed in its own folder.
    if needs_root("a symlink the tenant placed") {
        let who = tenant();
        let home = base.join("home");
        std::fs::create_dir(&home).unwrap();
        chown(&home, &who);
        let link = home.join("site");
        symlink(&base, &link).unwrap();
        chown(&link, &who);
        check_refused(&base, &link.join("outside"), &link, &src);
    }
    assert_eq!(record(&outside), before);
}

fn check_refused(base: &Utf8Path, www: &Utf8Path, named: &Utf8Path, src: &Utf8Path) {
    let header = ManifestHeader::new("urn:t", "t", "1.0", "1", "1.2", "t");
    let mut w = ArchiveWriter::create(Vec::new(), &ArchiveOptions::plain(), header).unwrap();
    let err = w.add_web_dir("/", www).unwrap_err().to_string();
    assert!(
        err.contains(named.as_str()) && err.contains("symlink"),
        "{err}"
    );

    // A real backup of another tree, restored into the symlinked root.
    let header = ManifestHeader::new("urn:t", "t", "1.0", "1", "1.2", "t");
    let archive = base.join(format!("good-{}.aps", named.file_name().unwrap()));
    let mut w = ArchiveWriter::create(
        std::fs::File::create(&archive).unwrap(),
        &ArchiveOptions::plain(),
        header,
    )
    .unwrap();
    w.add_web_dir("/", src).unwrap();
    w.finish().unwrap();
    let reader = ArchiveReader::open(&archive, None).unwrap();
    let err = reader.extract_web_dir("/", www).unwrap_err().to_string();
    assert!(
        err.contains(named.as_str()) && err.contains("symlink"),
        "{err}"
    );
    let err = open_dir_nofollow(www.as_std_path())
        .unwrap_err()
        .to_string();
    assert!(err.contains(named.as_str()), "{err}");
}

/// The tenant renames a symlink (to a root-only file) over the backup's temporary file in the
/// folder they own: the commit sees it is not the file the controller created, fails, and
/// puts nothing in place.
#[test]
fn symlink_renamed_over_the_temporary_file_fails_the_backup() {
    if !needs_root(&format!("the tenant's attack as {TENANT}")) {
        return;
    }
    let who = tenant();
    let (_keep, base) = base();
    let secret = base.join("shadow");
    std::fs::write(&secret, b"root:$6$secret").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dir = base.join("tenant-backups");
    std::fs::create_dir(&dir).unwrap();
    chown(&dir, &who);
    let dest = dir.join("site.aps");

    // The tenant's own folder is refused unless it is the instance account's.
    let err = Destination::check(&dest, false).unwrap_err();
    assert!(
        matches!(err, DestinationError::UnsafeFolder { .. }),
        "{err:?}"
    );
    let prepared = Destination::check_for(&dest, false, Some(&who))
        .unwrap()
        .create("op-1")
        .unwrap();
    prepared.file().write_all(b"a real backup").unwrap();

    let temp = prepared.temp_path().to_owned();
    let out = Command::new(PYTHON)
        .arg("-c")
        .arg("import os, sys; os.symlink(sys.argv[1], sys.argv[2] + '.x'); os.rename(sys.argv[2] + '.x', sys.argv[2])")
        .args([secret.as_str(), temp.as_str()])
        .uid(who.uid)
        .gid(who.gid)
        .output()
        .unwrap();
    assert!(out.status.success(), "tenant's rename failed: {out:?}");
    assert!(
        std::fs::symlink_metadata(&temp)
            .unwrap()
            .file_type()
            .is_symlink()
    );

    let err = prepared.commit().unwrap_err();
    assert!(
        matches!(err, DestinationError::TempReplaced { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("symlink"), "{err}");
    assert!(
        std::fs::symlink_metadata(&dest).is_err(),
        "something was put in place"
    );
    assert_eq!(std::fs::read(&secret).unwrap(), b"root:$6$secret");
}

/// A destination folder others may write into is refused before anything is created.
#[test]
fn destination_folder_writable_by_others_is_refused() {
    let (_keep, base) = base();
    let dir = base.join("shared");
    std::fs::create_dir(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Destination::prepare(dir.join("x.aps"), false).unwrap_err();
    assert!(
        matches!(err, DestinationError::UnsafeFolder { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains(dir.as_str()), "{err}");
    assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0);
}
