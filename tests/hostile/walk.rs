//! What a walk of a tenant's web folder reads, through the real binary as root, with the real
//! tenant account `aps-tenant1` owning the site: sparse files stay sparse from the site to the
//! archive (and to GNU tar), the safety snapshot and the restored site; `[limits]`
//! `max-instance-size` and `max-files` stop a walk with a clear error and nothing written; a
//! hard link to a root-only file is refused by the archive store and the repository store; a
//! repository made outside the state folder is private. The same bounds hold for a backup
//! into the repository store, and a sparse file comes back from it sparse.

use test_support as support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::{Command, Output};

use aps_controller::account::Account;
use camino::{Utf8Path, Utf8PathBuf};
use support::{Sandbox, Tmpfs, assert_success, exists, fixture, json};

const TENANT: &str = "aps-tenant1";
const SETTINGS: &str = "[settings]\nadmin_password = \"correct horse\"\n";
const GIB: u64 = 1 << 30;

fn tenant() -> Option<Account> {
    if !support::needs_root("the tenant's walk") {
        return None;
    }
    let status = Command::new(support::repo().join("scripts/ci/test-user.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    Some(Account::lookup(TENANT, None).expect("test-user.sh makes the tenant accounts"))
}

/// sh-sample without `sufficient`: the controller archives the web folder itself (the walk
/// under test) beside the script's file.
fn walked_package(sb: &Sandbox) -> Utf8PathBuf {
    let pkg = sb.path("walked-pkg");
    let out = Command::new("cp")
        .args(["-R", fixture("sh-sample").as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let meta = pkg.join("APP-META.xml");
    let xml = std::fs::read_to_string(&meta).unwrap();
    std::fs::write(&meta, xml.replace("<sufficient/>", "")).unwrap();
    pkg
}

/// `sh -c SCRIPT` as the tenant, in `dir`.
fn as_tenant(dir: &Utf8Path, script: &str) -> Output {
    Command::new("runuser")
        .args(["-u", TENANT, "--", "sh", "-c", script])
        .current_dir(dir)
        .output()
        .unwrap()
}

/// Registers `name` with the web folder `www` (made if missing) given to `owner` (0750), a
/// couple of files in it; returns `www`.
fn register(sb: &Sandbox, name: &str, www: &Utf8Path, owner: &Account) -> Utf8PathBuf {
    std::fs::create_dir_all(www).unwrap();
    std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n")).unwrap();
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", owner.uid, owner.gid))
        .arg(www.as_str())
        .output()
        .unwrap();
    assert_success(&out, "chown -R");
    std::fs::set_permissions(www, std::fs::Permissions::from_mode(0o750)).unwrap();
    let file = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/\"\n\
             user = \"{TENANT}\"\n[web-dirs]\n\"/\" = \"{www}\"\n{SETTINGS}",
            walked_package(sb)
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", file.as_str()]),
        "instance register",
    );
    www.to_owned()
}

fn backups(sb: &Sandbox) -> Utf8PathBuf {
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn allocated(path: &Utf8Path) -> u64 {
    std::fs::metadata(path).unwrap().blocks() * 512
}

fn read_at(path: &Utf8Path, offset: u64, len: usize) -> Vec<u8> {
    use std::os::unix::fs::FileExt;
    let mut buf = vec![0; len];
    std::fs::File::open(path)
        .unwrap()
        .read_exact_at(&mut buf, offset)
        .unwrap();
    buf
}

/// The three data extents of the tenant's 8 GiB sparse file, and a check that `path` holds
/// exactly them: same size, the data where it was, zeros around it, only a few blocks.
const MARKS: [(u64, &str); 3] = [(0, "HEAD"), (4 * GIB, "MIDDLE"), (8 * GIB - 4, "TAIL")];

fn assert_sparse_copy(path: &Utf8Path, what: &str) {
    let meta = std::fs::metadata(path).unwrap();
    assert_eq!(meta.len(), 8 * GIB, "{what}: apparent size");
    assert!(
        allocated(path) <= 1 << 20,
        "{what}: {} bytes allocated for 3 small extents: the holes were written",
        allocated(path)
    );
    for (offset, mark) in MARKS {
        assert_eq!(read_at(path, offset, mark.len()), mark.as_bytes(), "{what}");
    }
    assert_eq!(
        read_at(path, 4 * GIB - 8, 8),
        [0; 8],
        "{what}: a hole reads zeros"
    );
}

/// Attack 5: an 8 GiB sparse file (a few KiB on disk), made by the tenant. The backup holds
/// its data only (a GNU/PAX sparse entry that GNU tar extracts as the same sparse file); the
/// restore over the live site takes its safety snapshot into a state folder on a 64 MiB
/// tmpfs (an uncompressed, dense snapshot needs 8 GiB) and writes the file back into a 64
/// MiB web folder as the same sparse file (a dense restore needs 8 GiB).
#[test]
fn sparse_file_stays_sparse_from_site_to_archive_snapshot_and_restore() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    let Some(_state) = Tmpfs::mount(&sb.state(), "64m") else {
        return;
    };
    let Some(_site) = Tmpfs::mount(&sb.path("www-sparse"), "64m") else {
        return;
    };
    let www = register(&sb, "sparse", &sb.path("www-sparse"), &t);
    let script = format!(
        "truncate -s {} big.bin && printf HEAD | dd of=big.bin conv=notrunc status=none && \
         printf MIDDLE | dd of=big.bin bs=1 seek={} conv=notrunc status=none && \
         printf TAIL | dd of=big.bin bs=1 seek={} conv=notrunc status=none",
        8 * GIB,
        4 * GIB,
        8 * GIB - 4
    );
    assert_success(&as_tenant(&www, &script), "the tenant's sparse file");
    let big = www.join("big.bin");
    assert_sparse_copy(&big, "the tenant's file");

    let file = backups(&sb).join("sparse.aps.tar.zst");
    let out = sb.cli(&["backup", "sparse", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");
    let size = std::fs::metadata(&file).unwrap().len();
    assert!(
        size < 1 << 20,
        "the archive of 3 small extents is {size} bytes"
    );

    // GNU tar reads the entry as the same sparse file.
    let Some(_untar) = Tmpfs::mount(&sb.path("untar"), "64m") else {
        return;
    };
    let out = Command::new("sh")
        .arg("-c")
        .arg(format!(
            "zstd -dc '{file}' | tar -x -C '{}' web/0/big.bin",
            sb.path("untar")
        ))
        .output()
        .unwrap();
    assert_success(&out, "zstd -d | tar -x");
    assert_sparse_copy(&sb.path("untar/web/0/big.bin"), "GNU tar's extraction");

    // Restore over the live site: its safety snapshot holds the 8 GiB file too.
    std::fs::write(www.join("index.html"), "changed\n").unwrap();
    let out = sb.cli(&["restore", "sparse", "--from", file.as_str(), "--json"]);
    assert_success(&out, "restore");
    assert_sparse_copy(&big, "the restored file");
    assert_eq!(std::fs::metadata(&big).unwrap().uid(), t.uid);
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "<h1>sparse</h1>\n"
    );
}

/// A refusal by a walk bound: exit 16 (`resource-failed`), a message naming the limit, the
/// instance and a path of its web folder, and nothing written at the destination.
fn assert_limit_refused(out: &Output, limit: &str, www: &Utf8Path, step: &str) {
    assert_eq!(out.status.code(), Some(16), "{out:?}");
    let v = json(out);
    assert_eq!(v["error"]["kind"], "resource-failed", "{v}");
    assert_eq!(v["error"]["step"], step, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains(limit), "{message}");
    assert!(message.contains("\"walled\""), "{message}");
    assert!(message.contains(www.as_str()), "{message}");
}

/// `[limits] max-files` and `max-instance-size` (and their per-instance override) bound what
/// a walk reads: a backup (and its `--dry-run`) crossing them is refused with a clear error
/// and nothing is written; a restore whose safety snapshot would cross them changes nothing.
/// A sparse file counts its data, not its apparent size.
#[test]
fn walk_limits_stop_backups_and_safety_snapshots() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    let www = register(&sb, "walled", &sb.path("www-walled"), &t);
    assert_success(
        &as_tenant(
            &www,
            "for i in 1 2 3 4 5 6 7 8; do head -c 1000 /dev/urandom > f$i; done && \
             truncate -s 1G sparse.bin && printf data | dd of=sparse.bin conv=notrunc status=none",
        ),
        "the tenant's files",
    );
    let dest = backups(&sb).join("walled.aps.tar.zst");
    let backup = || sb.cli(&["backup", "walled", "--to", dest.as_str(), "--json"]);
    let nothing_written = || {
        assert!(!exists(&dest));
        assert_eq!(support::entries(&backups(&sb)), Vec::<String>::new());
    };

    sb.configure("allow-root-scripts = false\n[limits]\nmax-files = 5\n");
    assert_limit_refused(&backup(), "max-files = 5", &www, "1.1-backup-resources");
    nothing_written();
    let dry = sb.cli(&[
        "backup",
        "walled",
        "--to",
        dest.as_str(),
        "--dry-run",
        "--json",
    ]);
    assert_limit_refused(&dry, "max-files = 5", &www, "1.1-backup-resources");

    sb.configure("allow-root-scripts = false\n[limits]\nmax-instance-size = 5000\n");
    assert_limit_refused(
        &backup(),
        "max-instance-size = 5000",
        &www,
        "1.1-backup-resources",
    );
    nothing_written();

    // The instance's own bound: 1 MiB holds 8 KB of files and the 1 GiB file's 4 KiB of data.
    sb.configure(
        "allow-root-scripts = false\n[limits]\nmax-instance-size = 5000\n\
         [limits.instances.walled]\nmax-instance-size = 1048576\nmax-files = 20\n",
    );
    assert_success(&backup(), "backup within the instance's bounds");

    // The site grew past max-files: the safety snapshot refuses to walk it, nothing changes.
    assert_success(
        &as_tenant(&www, "mkdir more && touch more/a more/b"),
        "grow",
    );
    sb.configure(
        "allow-root-scripts = false\n[limits.instances.walled]\nmax-instance-size = 1048576\n\
         max-files = 12\n",
    );
    let out = sb.cli(&["restore", "walled", "--from", dest.as_str(), "--json"]);
    assert_limit_refused(&out, "max-files = 12", &www, "safety-snapshot");
    assert!(exists(www.join("more/a")), "the site is unchanged");
}

/// `[limits]` bound the repository store's walk too: a backup into the repository crossing
/// `max-files` or `max-instance-size` is refused with the same error and keeps no snapshot,
/// and the repository stays consistent. There a sparse file counts its size: the engine
/// chunks and hashes its holes as zeros, so a site the archive store takes within 1 MiB (its
/// 1 GiB sparse file holds 4 KiB of data) is too big for the repository store.
#[test]
fn walk_limits_stop_repository_backups() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    sb.use_repository();
    let www = register(&sb, "walled", &sb.path("www-walled"), &t);
    assert_success(
        &as_tenant(
            &www,
            "for i in 1 2 3 4 5 6 7 8; do head -c 1000 /dev/urandom > f$i; done && \
             truncate -s 1G sparse.bin && printf data | dd of=sparse.bin conv=notrunc status=none",
        ),
        "the tenant's files",
    );
    let backup = || sb.cli(&["backup", "walled", "--json"]);
    let nothing_kept = || {
        let listed = json(&sb.cli(&["backups", "walled", "--json"]));
        assert_eq!(
            listed["snapshots"].as_array().map(Vec::len),
            Some(0),
            "{listed}"
        );
        let verified = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
        assert_success(&verified, "verify --repository");
    };

    sb.configure("allow-root-scripts = false\n[limits]\nmax-files = 5\n");
    assert_limit_refused(&backup(), "max-files = 5", &www, "backup");
    nothing_kept();

    sb.configure("allow-root-scripts = false\n[limits]\nmax-instance-size = 1048576\n");
    let out = backup();
    assert_limit_refused(&out, "max-instance-size = 1048576", &www, "backup");
    let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains("sparse.bin"), "{message}");
    nothing_kept();
    // The archive store reads the sparse file's data only: within the same bound.
    let dest = backups(&sb).join("walled.aps.tar.zst");
    assert_success(
        &sb.cli(&["backup", "walled", "--to", dest.as_str(), "--json"]),
        "archive backup within 1 MiB of data",
    );

    // The instance's own bound takes the sparse file's size.
    sb.configure(
        "allow-root-scripts = false\n[limits]\nmax-instance-size = 1048576\nmax-files = 5\n\
         [limits.instances.walled]\nmax-instance-size = 1074790400\nmax-files = 20\n",
    );
    assert_success(&backup(), "repository backup within the instance's bounds");
    let listed = json(&sb.cli(&["backups", "walled", "--json"]));
    assert_eq!(
        listed["snapshots"].as_array().map(Vec::len),
        Some(1),
        "{listed}"
    );
}

/// Attack 5 in the repository store: the tenant's 1 GiB sparse file (3 small extents) goes
/// into a snapshot and comes back, over the live site, as the same sparse file into a 64 MiB
/// web folder (a dense restore needs 1 GiB), the state folder (repository, staging archive,
/// safety snapshot) on a 64 MiB tmpfs too.
#[test]
fn sparse_file_in_a_repository_backup_restores_sparse() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    let Some(_state) = Tmpfs::mount(&sb.state(), "64m") else {
        return;
    };
    let Some(_site) = Tmpfs::mount(&sb.path("www-sparse"), "64m") else {
        return;
    };
    sb.use_repository();
    let www = register(&sb, "sparse", &sb.path("www-sparse"), &t);
    let marks = [(0, "HEAD"), (GIB / 2 + 4096, "MIDDLE"), (GIB - 4, "TAIL")];
    let mut script = format!("truncate -s {GIB} big.bin");
    for (offset, mark) in marks {
        script.push_str(&format!(
            " && printf {mark} | dd of=big.bin bs=1 seek={offset} conv=notrunc status=none"
        ));
    }
    assert_success(&as_tenant(&www, &script), "the tenant's sparse file");
    let big = www.join("big.bin");
    let check = |what: &str| {
        assert_eq!(std::fs::metadata(&big).unwrap().len(), GIB, "{what}");
        assert!(
            allocated(&big) <= 1 << 20,
            "{what}: {} bytes allocated for 3 small extents: the holes were written",
            allocated(&big)
        );
        for (offset, mark) in marks {
            assert_eq!(read_at(&big, offset, mark.len()), mark.as_bytes(), "{what}");
        }
        assert_eq!(read_at(&big, GIB / 2, 4096), [0; 4096], "{what}: a hole");
    };
    check("the tenant's file");

    assert_success(&sb.cli(&["backup", "sparse", "--json"]), "backup");
    std::fs::write(www.join("index.html"), "changed\n").unwrap();
    std::fs::remove_file(&big).unwrap();
    let out = sb.cli(&["restore", "sparse", "--latest", "--json"]);
    assert_success(&out, "restore --latest");
    check("the restored file");
    assert_eq!(std::fs::metadata(&big).unwrap().uid(), t.uid);
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "<h1>sparse</h1>\n"
    );
}

/// Sets a sysctl for the duration of a test and puts the old value back when dropped, even
/// when the test fails.
struct Sysctl {
    key: &'static str,
    old: String,
}

impl Sysctl {
    fn set(key: &'static str, value: &str) -> Option<Sysctl> {
        let old = std::fs::read_to_string(format!("/proc/sys/{}", key.replace('.', "/")))
            .ok()?
            .trim()
            .to_owned();
        let out = Command::new("sysctl")
            .arg("-w")
            .arg(format!("{key}={value}"))
            .output()
            .ok()?;
        out.status.success().then_some(Sysctl { key, old })
    }
}

impl Drop for Sysctl {
    fn drop(&mut self) {
        let _ = Command::new("sysctl")
            .arg("-w")
            .arg(format!("{}={}", self.key, self.old))
            .output();
    }
}

/// Attack 9 (part): on a host with `fs.protected_hardlinks = 0` the tenant hard-links a
/// root-only file into its web folder. The archive store and the repository store refuse the
/// backup, naming the file, and keep nothing; a hard link of the tenant's own files is fine.
#[test]
fn hard_link_to_a_root_only_file_is_refused() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    let www = register(&sb, "linked", &sb.path("www-linked"), &t);
    let secret = sb.path("root-secret");
    std::fs::write(&secret, "ROOT-ONLY\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let dest = backups(&sb).join("linked.aps.tar.zst");
    let backup = || sb.cli(&["backup", "linked", "--to", dest.as_str(), "--json"]);

    assert_success(
        &as_tenant(&www, "ln index.html also.html"),
        "the tenant's link",
    );
    assert_success(&backup(), "backup with the tenant's own hard link");
    std::fs::remove_file(&dest).unwrap();

    let relaxed = Sysctl::set("fs.protected_hardlinks", "0");
    if relaxed.is_some() {
        let out = as_tenant(&www, &format!("ln '{secret}' innocent.txt"));
        assert_success(&out, "the tenant links the root-only file");
    } else {
        eprintln!(
            "fs.protected_hardlinks cannot be changed here: root makes the link, standing in \
             for a host where it is 0"
        );
        std::fs::hard_link(&secret, www.join("innocent.txt")).unwrap();
    }
    drop(relaxed);
    let link = www.join("innocent.txt");
    assert_eq!(std::fs::metadata(&link).unwrap().nlink(), 2);

    let out = backup();
    assert_eq!(out.status.code(), Some(16), "{out:?}");
    let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(message.contains(link.as_str()), "{message}");
    assert!(message.contains("hard link"), "{message}");
    assert!(!exists(&dest));
    assert_eq!(support::entries(&backups(&sb)), Vec::<String>::new());

    // The repository store's walk refuses it too, and keeps no snapshot.
    sb.use_repository();
    let out = sb.cli(&["backup", "linked", "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("innocent.txt"), "{text}");
    assert!(text.contains("hard link"), "{text}");
    let listed = json(&sb.cli(&["backups", "linked", "--json"]));
    assert_eq!(
        listed["snapshots"].as_array().map(Vec::len),
        Some(0),
        "{listed}"
    );
}

/// Attack 9 (part): a repository made by `store init` in a folder outside the state folder,
/// then written by a backup: every folder 0700, every file 0600.
#[test]
fn repository_outside_the_state_folder_is_private() {
    let Some(t) = tenant() else { return };
    let sb = Sandbox::for_tenants();
    let repo = sb.path("elsewhere/repository");
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(
        sb.state().join("panel.toml"),
        format!("[store]\nkind = \"repository\"\npath = \"{repo}\"\n"),
    )
    .unwrap();
    assert_success(&sb.cli(&["store", "init", "--json"]), "store init");
    register(&sb, "private", &sb.path("www-private"), &t);
    assert_success(&sb.cli(&["backup", "private", "--json"]), "backup");

    let mut seen = 0;
    let mut stack = vec![repo.clone()];
    while let Some(path) = stack.pop() {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        let mode = meta.mode() & 0o7777;
        if meta.is_dir() {
            assert_eq!(mode, 0o700, "{path} is {mode:o}");
            for entry in std::fs::read_dir(&path).unwrap() {
                stack.push(Utf8PathBuf::from_path_buf(entry.unwrap().path()).unwrap());
            }
        } else {
            assert_eq!(mode, 0o600, "{path} is {mode:o}");
            seen += 1;
        }
    }
    assert!(
        seen > 3,
        "the repository holds its config, keys, index and packs"
    );
}
