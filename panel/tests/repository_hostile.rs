//! The repository store against a hostile tenant, for real: the tenant's own process (the
//! unprivileged account `aps-test` from scripts/ci/test-user.sh) swaps a folder of its site for
//! a symlink to another customer's folder in a loop while the controller (root) backs the site
//! up into a repository. Nothing of the other customer's may ever land in a snapshot (a restore
//! would hand it to the tenant); backups that saw the folder change fail and keep nothing. A
//! web root that is a symlink is refused outright.
//!
//! These tests need root (to act as the controller and to run the tenant as another account);
//! run as another user they check nothing and say so.

#![cfg(feature = "repository")]

use test_support::repository as common;

use aps_panel::Periodicity;
use aps_panel::config::{RepositoryLocation, RepositorySettings};
use aps_panel::store::repository::{BackupInput, RepositoryError, RepositoryStore};
use camino::{Utf8Path, Utf8PathBuf};
use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use test_support::tenant::{TENANT, stop_swapper, swapper, tenant};

const SECRET: &[u8] = b"another customer's secret";

struct World {
    _tmp: tempfile::TempDir,
    base: Utf8PathBuf,
    www: Utf8PathBuf,
    outside: Utf8PathBuf,
    settings: RepositorySettings,
}

/// A base folder the tenant can traverse; the tenant's `www` (theirs) with `sub/` holding
/// `dirs` x `per_dir` files; another customer's folder `outside` (root's) holding the secret.
fn world(dirs: usize, per_dir: usize) -> World {
    let tmp = tempfile::Builder::new()
        .prefix("aps-repo-hostile-")
        .tempdir()
        .unwrap();
    let base = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    std::fs::set_permissions(&base, std::fs::Permissions::from_mode(0o755)).unwrap();
    let www = base.join("www");
    for d in 0..dirs {
        let dir = www.join(format!("sub/d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(
                dir.join(format!("f{f:04}.php")),
                format!("<?php // {d} {f}\n"),
            )
            .unwrap();
        }
    }
    std::fs::write(www.join("index.php"), b"<?php echo 1;\n").unwrap();
    let who = tenant();
    let (uid, gid) = (who.uid, who.gid);
    for entry in walkdir(&www) {
        std::os::unix::fs::lchown(&entry, Some(uid), Some(gid)).unwrap();
    }
    let outside = base.join("outside");
    std::fs::create_dir_all(outside.join("keep")).unwrap();
    std::fs::write(outside.join("SECRET-outside.txt"), SECRET).unwrap();
    std::fs::write(outside.join("keep/data.php"), SECRET).unwrap();
    // The same names as the tenant's `sub/`: what a path-based walk would read through the
    // swapped-in symlink.
    for d in 0..dirs {
        let dir = outside.join(format!("d{d:02}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..per_dir {
            std::fs::write(dir.join(format!("f{f:04}.php")), SECRET).unwrap();
        }
    }
    let settings = RepositorySettings {
        location: RepositoryLocation::Folder(base.join("repo")),
        key_file: base.join("keys/repository.key"),
        password_file: base.join("keys/repository.password"),
        sharing: Default::default(),
    };
    World {
        _tmp: tmp,
        base,
        www,
        outside,
        settings,
    }
}

fn walkdir(root: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = vec![root.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                out.push(Utf8PathBuf::try_from(e.unwrap().path()).unwrap());
            }
        }
        i += 1;
    }
    out
}

fn backup(store: &RepositoryStore, www: &Utf8Path) -> Result<String, RepositoryError> {
    let web_dirs = BTreeMap::from([("/".to_owned(), www.to_owned())]);
    store
        .backup(&BackupInput::new(
            "blog",
            Periodicity::Daily,
            &web_dirs,
            &BTreeMap::new(),
            common::header(),
            &common::key(),
        ))
        .map(|s| s.id)
}

/// Every regular file's content below `root`, by path (symlinks as their target).
fn contents(root: &Utf8Path) -> BTreeMap<String, Vec<u8>> {
    walkdir(root)
        .into_iter()
        .filter_map(|p| {
            let m = std::fs::symlink_metadata(&p).unwrap();
            let rel = p.strip_prefix(root).unwrap().to_string();
            if m.file_type().is_symlink() {
                let target = std::fs::read_link(&p).unwrap();
                Some((rel, format!("-> {}", target.display()).into_bytes()))
            } else if m.is_file() {
                Some((rel, std::fs::read(&p).unwrap()))
            } else {
                None
            }
        })
        .collect()
}

#[test]
fn folder_swapped_for_a_symlink_during_backups_never_leaks_into_a_snapshot() {
    if !test_support::needs_root(&format!("running the tenant as {TENANT}")) {
        return;
    }
    let w = world(12, 120);
    RepositoryStore::init(&w.settings).unwrap();
    let store = RepositoryStore::open(&w.settings).unwrap();
    let stop = w.base.join("stop");
    let attacker = swapper(&w.www.join("sub"), &w.www.join("bait"), &w.outside, &stop);
    let mut made = Vec::new();
    let mut failed = Vec::new();
    for _ in 0..5 {
        match backup(&store, &w.www) {
            Ok(id) => made.push(id),
            Err(e) => failed.push(e.to_string()),
        }
    }
    let swaps = stop_swapper(attacker, &stop);
    assert!(
        swaps > 0,
        "the tenant never managed a swap: the race was not run"
    );
    // A backup that saw the folder change fails and keeps nothing (the walk itself never
    // follows the symlink: src/store/repository/web.rs attacks it directly).
    for reason in &failed {
        assert!(reason.contains("nothing was kept"), "{reason}");
    }
    assert_eq!(store.snapshots(Some("blog")).unwrap().len(), made.len());

    for id in &made {
        let target = w.base.join(format!("staged-{id}"));
        store.restore_to_staging("blog", id, &target).unwrap();
        for (path, content) in contents(&target) {
            assert!(
                !content.windows(SECRET.len()).any(|win| win == SECRET),
                "snapshot {id} holds the other customer's data at {path} ({swaps} swaps)"
            );
            assert!(
                !path.contains("SECRET-outside"),
                "snapshot {id} holds {path} from the other customer's folder"
            );
        }
    }
    // The other customer's folder is untouched.
    assert_eq!(
        std::fs::read(w.outside.join("keep/data.php")).unwrap(),
        SECRET
    );
}

#[test]
fn a_web_root_that_is_a_symlink_is_refused_before_anything_runs() {
    let w = world(1, 3);
    RepositoryStore::init(&w.settings).unwrap();
    let store = RepositoryStore::open(&w.settings).unwrap();
    let link = w.base.join("www-link");
    std::os::unix::fs::symlink(&w.outside, &link).unwrap();
    let err = backup(&store, &link).unwrap_err().to_string();
    assert!(
        err.contains("symlink") && err.contains("www-link"),
        "the refusal should name the symlinked root: {err}"
    );
    assert!(store.snapshots(Some("blog")).unwrap().is_empty());
}
