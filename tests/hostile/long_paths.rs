//! Attack 4 of issue 19, through the real binary, with the tenant's own account making the
//! tree: twenty nested folders with 242-byte names (a path longer than `PATH_MAX`) back up,
//! verify and restore, contents, modes, owners and times; a restore that fails over such a
//! tree is rolled back whole and leaves nothing in `<state>/work`; a rollback that cannot
//! finish (the tenant's script fills the disk) says so with its own kind, keeping the safety
//! snapshot until the instance is back; a tree deeper than the restore can hold is refused at
//! backup time.

use test_support as support;
use test_support::restore_kit as kit;

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use aps_controller::account::Account;
use camino::{Utf8Path, Utf8PathBuf};
use kit::{open_journal_entries, work_leftovers};
use support::{Sandbox, Tmpfs, assert_success, exists, fixture, json};

/// The tenant's account, or `None` (said) when the tests do not run as root.
fn tenant() -> Option<Account> {
    if !support::needs_root("the long-path attack") {
        return None;
    }
    Some(test_support::tenant::tenant())
}

/// Runs the Python `script` with `args`, as `who` (the tenant) or as root; its stdout.
fn python(who: Option<&Account>, script: &str, args: &[&str]) -> String {
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.arg("-c").arg(script).args(args);
    if let Some(a) = who {
        cmd.uid(a.uid).gid(a.gid);
    }
    let out = cmd.output().unwrap();
    assert_success(&out, "python3");
    String::from_utf8(out.stdout).unwrap()
}

/// Builds, by descriptor (no path is ever longer than one name), `levels` nested folders
/// named `NN` + `d`… (`name_len` bytes) under argv[1]; each holds a file, the deepest a
/// symlink too; folders get varied modes (setgid, 0700, 0750) and times, set bottom-up.
const MAKE_TREE: &str = r#"
import os, sys
root, levels, name_len = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)]
names = []
for i in range(levels):
    name = ("%02d" % (i % 100)) + "d" * (name_len - 2)
    parent = fds[-1]
    os.mkdir(name, 0o755, dir_fd=parent)
    fds.append(os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=parent))
    names.append(name)
    f = os.open("f" * min(name_len, 200), os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o640, dir_fd=fds[-1])
    os.write(f, (b"level %d " % i) * (i + 1))
    os.close(f)
    os.utime("f" * min(name_len, 200), ns=(1_500_000_000 * 10**9, (1_600_000_000 + i) * 10**9),
             dir_fd=fds[-1], follow_symlinks=False)
os.symlink("../" + "f" * min(name_len, 200), "up", dir_fd=fds[-1])
os.utime("up", ns=(1_500_000_000 * 10**9, 1_650_000_000 * 10**9), dir_fd=fds[-1], follow_symlinks=False)
modes = [0o750, 0o2775, 0o700, 0o755]
for i in reversed(range(levels)):
    fd = fds[i + 1]
    os.chmod(fd, modes[i % len(modes)])
    os.utime(fd, ns=(1_500_000_000 * 10**9, (1_700_000_000 + i) * 10**9))
os.utime(fds[0], ns=(1_500_000_000 * 10**9, 1_690_000_000 * 10**9))
"#;

/// Every entry below argv[1], by descriptor: `path\tkind mode uid:gid mtime size sha256|target`
/// (the root as `.`), one line each, sorted; and the longest path's length on the last line.
const RECORD: &str = r#"
import hashlib, os, stat, sys
out, longest = [], [0]
def line(rel, st, extra):
    kind = "d" if stat.S_ISDIR(st.st_mode) else "l" if stat.S_ISLNK(st.st_mode) else "f"
    out.append("%s\t%s %o %d:%d %d %s" % (rel, kind, st.st_mode & 0o7777, st.st_uid, st.st_gid,
                                          st.st_mtime_ns // 10**9, extra))
    longest[0] = max(longest[0], len(rel))
def walk(fd, rel):
    for e in sorted(os.scandir(fd), key=lambda e: e.name):
        path = rel + "/" + e.name
        st = os.stat(e.name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            line(path, st, "")
            sub = os.open(e.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
            walk(sub, path)
            os.close(sub)
        elif stat.S_ISLNK(st.st_mode):
            line(path, st, os.readlink(e.name, dir_fd=fd))
        else:
            f = os.open(e.name, os.O_RDONLY | os.O_NOFOLLOW, dir_fd=fd)
            data = b""
            while True:
                chunk = os.read(f, 1 << 16)
                if not chunk:
                    break
                data += chunk
            os.close(f)
            line(path, st, "%d %s" % (len(data), hashlib.sha256(data).hexdigest()))
root = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
line(".", os.fstat(root), "")
walk(root, ".")
print("\n".join(out))
print("longest\t%d" % longest[0])
"#;

/// Removes, as the tenant, everything below level 5 of the tree and loosens level 2's mode:
/// what a restore must undo.
const DAMAGE: &str = r#"
import os, shutil, sys
fd = os.open(sys.argv[1], os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
for i in range(5):
    name = [n for n in os.listdir(fd) if n.startswith("%02d" % i)][0]
    if i == 2:
        os.chmod(name, 0o777, dir_fd=fd)
    nfd = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=fd)
    os.close(fd)
    fd = nfd
name = [n for n in os.listdir(fd) if n.startswith("05")][0]
shutil.rmtree(name, dir_fd=fd)
f = os.open("planted", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
os.write(f, b"not in the backup")
os.close(f)
"#;

/// The tree below `www` as `path -> description`, read by descriptor as root.
fn record(www: &Utf8Path) -> BTreeMap<String, String> {
    python(None, RECORD, &[www.as_str()])
        .lines()
        .map(|l| {
            let (k, v) = l.split_once('\t').unwrap();
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A copy of the sh fixture in the sandbox whose backup-script is not `sufficient` (the
/// controller archives the web folder itself), with `script` as its script when given.
fn package(sb: &Sandbox, name: &str, script: Option<&str>) -> Utf8PathBuf {
    let pkg = sb.path(name);
    let out = Command::new("cp")
        .args(["-R", fixture("sh-sample").as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let meta = pkg.join("APP-META.xml");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains("<sufficient/>"));
    std::fs::write(&meta, text.replace("<sufficient/>", "")).unwrap();
    if let Some(script) = script {
        std::fs::write(pkg.join("scripts/backup"), script).unwrap();
    }
    pkg
}

/// Equal trees, or a panic naming the first differences (paths shortened: they are long).
fn assert_same_tree(left: &BTreeMap<String, String>, right: &BTreeMap<String, String>, what: &str) {
    let short = |k: &str| {
        let cut = k.len().saturating_sub(80);
        format!("…{}", &k[k.ceil_char_boundary(cut)..])
    };
    let diffs: Vec<String> = left
        .keys()
        .chain(right.keys())
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .filter(|k| left.get(*k) != right.get(*k))
        .take(6)
        .map(|k| format!("{}: {:?} vs {:?}", short(k), left.get(k), right.get(k)))
        .collect();
    assert!(diffs.is_empty(), "{what}:\n{}", diffs.join("\n"));
}

const SETTINGS: &str = "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n\
                        site_title = \"Deep\"\n";

/// Registers `name` (package `package`, `behaviour` setting) with the web folder `www`, made
/// here and given to `owner` (0750); returns the INSTANCE.toml.
fn register(
    sb: &Sandbox,
    name: &str,
    package: &Utf8Path,
    www: &Utf8Path,
    owner: &Account,
    behaviour: &str,
    replace: bool,
) -> Utf8PathBuf {
    if !exists(www) {
        std::fs::create_dir_all(www).unwrap();
        std::os::unix::fs::chown(www, Some(owner.uid), Some(owner.gid)).unwrap();
        std::fs::set_permissions(www, std::fs::Permissions::from_mode(0o750)).unwrap();
    }
    let file = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\npackage = \"{package}\"\nbase-url = \"http://{name}.example.test/\"\n\
             user = \"{}\"\n[web-dirs]\n\"/\" = \"{www}\"\n{SETTINGS}behaviour = \"{behaviour}\"\n",
            owner.name
        ),
    )
    .unwrap();
    let mut args = vec!["instance", "register", "--file", file.as_str()];
    if replace {
        args.push("--replace");
    }
    assert_success(&sb.cli(&args), "instance register");
    file
}

fn backups(sb: &Sandbox) -> Utf8PathBuf {
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn restore(sb: &Sandbox, name: &str, file: &Utf8Path) -> Output {
    sb.cli(&["restore", name, "--from", file.as_str(), "--json"])
}

/// The trace files the sh fixture's restore script writes into the web root, and the root's
/// mtime they change, left out of a comparison with the tree as backed up.
fn without_script_traces(mut tree: BTreeMap<String, String>) -> BTreeMap<String, String> {
    tree.remove("./.aps-restored-from");
    tree.remove("./.aps-restore-env");
    tree.remove(".");
    tree.remove("longest");
    tree
}

/// A backed-up deep tree: the sandbox, the tenant, the web folder, the backup and the tree
/// as it was backed up.
struct Deep {
    sb: Sandbox,
    who: Account,
    pkg: Utf8PathBuf,
    www: Utf8PathBuf,
    file: Utf8PathBuf,
    backed_up: BTreeMap<String, String>,
}

fn deep_instance() -> Option<Deep> {
    let who = tenant()?;
    let sb = Sandbox::for_tenants();
    let www = sb.path("www-deep");
    let pkg = package(&sb, "deep-pkg", None);
    register(&sb, "deep", &pkg, &www, &who, "normal", false);
    python(Some(&who), MAKE_TREE, &[www.as_str(), "20", "242"]);
    let backed_up = record(&www);
    let longest: usize = backed_up["longest"].parse().unwrap();
    assert!(
        www.as_str().len() + longest > 4096,
        "the attack needs a path over PATH_MAX: {longest}"
    );
    let file = backups(&sb).join("deep.aps");
    let out = sb.cli(&["backup", "deep", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup of the deep tree");
    Some(Deep {
        sb,
        who,
        pkg,
        www,
        file,
        backed_up,
    })
}

/// The 20 × 242-byte tree backs up, verifies and restores as the instance's account: every
/// file, folder and symlink comes back with its content, mode, owner and time, and nothing
/// is left in `<state>/work`. (Before: the restore failed with ENAMETOOLONG applying folder
/// modes by full path, the rollback failed the same way, and the snapshot stayed.)
#[test]
fn a_tree_longer_than_path_max_backs_up_verifies_and_restores() {
    let Some(d) = deep_instance() else {
        return;
    };
    let out = d.sb.cli(&["verify", d.file.as_str(), "--json"]);
    assert_success(&out, "verify");

    python(Some(&d.who), DAMAGE, &[d.www.as_str()]);
    assert!(record(&d.www) != d.backed_up, "the damage changed nothing");

    let out = restore(&d.sb, "deep", &d.file);
    assert_success(&out, "restore of the deep tree");
    assert_same_tree(
        &without_script_traces(record(&d.www)),
        &without_script_traces(d.backed_up.clone()),
        "the tree came back different",
    );
    assert!(
        work_leftovers(&d.sb.state()).is_empty(),
        "{:?}",
        work_leftovers(&d.sb.state())
    );
    assert!(open_journal_entries(&d.sb.state()).is_empty());
}

/// A restore that fails for another reason (the package's restore script exits 1) over the
/// deep tree is rolled back completely — the tree exactly as before the restore, times of
/// every folder included — and leaves no safety snapshot in `<state>/work`.
#[test]
fn a_failed_restore_over_a_long_tree_rolls_back_whole_and_leaves_no_snapshot() {
    let Some(d) = deep_instance() else {
        return;
    };
    // The site moves on after the backup; that is what the rollback must give back.
    python(Some(&d.who), DAMAGE, &[d.www.as_str()]);
    let before = record(&d.www);
    register(
        &d.sb,
        "deep",
        &d.pkg,
        &d.www,
        &d.who,
        "fail-after-half",
        true,
    );

    let out = restore(&d.sb, "deep", &d.file);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed", "{v}");
    assert_same_tree(
        &record(&d.www),
        &before,
        "the rollback did not put the tree back",
    );
    assert!(
        work_leftovers(&d.sb.state()).is_empty(),
        "the failed try left {:?}",
        work_leftovers(&d.sb.state())
    );
    assert!(open_journal_entries(&d.sb.state()).is_empty());
}

/// The restore script of the disk-filling package: with `fill-on-restore` beside the web
/// folder, it fills that disk with a file of the tenant's outside the web folder and fails;
/// otherwise it restores normally.
const FILLER: &str = r#"#!/bin/sh
case "$1" in
backup) echo ok > "$BACKUP_FILE"; exit 0 ;;
restore)
  if [ -e "$WEB___DIR/../scratch/fill-on-restore" ]; then
    cat /dev/zero > "$WEB___DIR/../scratch/fill" 2>/dev/null
    echo "filled the disk" >&2
    exit 1
  fi
  exit 0 ;;
esac
exit 2
"#;

/// The tenant's restore script fills the web folder's disk (a small tmpfs) with a file of
/// its own outside the web folder, then fails: putting the bigger pre-restore site back no
/// longer fits. The restore fails with kind `rollback-failed` (exit 22), naming the safety
/// snapshot it kept, which is there; once the disk is freed and a restore succeeds, the kept
/// snapshot is removed and `<state>/work` is empty.
#[test]
fn a_rollback_that_cannot_finish_is_rollback_failed_and_keeps_the_snapshot() {
    let Some(who) = tenant() else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let disk = sb.path("disk");
    let Some(_tmpfs) = Tmpfs::mount(&disk, "6m") else {
        return;
    };
    let pkg = package(&sb, "filler-pkg", Some(FILLER));
    let www = disk.join("www");
    let scratch = disk.join("scratch");
    std::fs::create_dir(&scratch).unwrap();
    std::os::unix::fs::chown(&scratch, Some(who.uid), Some(who.gid)).unwrap();
    register(&sb, "full", &pkg, &www, &who, "normal", false);
    python(Some(&who), MAKE_TREE, &[www.as_str(), "3", "20"]);
    let file = backups(&sb).join("full.aps");
    assert_success(
        &sb.cli(&["backup", "full", "--to", file.as_str(), "--json"]),
        "backup",
    );
    // The site grows by 3 MB after the backup: the snapshot holds more than the backup.
    let grow = "import os, sys\nopen(sys.argv[1], 'wb').write(os.urandom(3 << 20))\n";
    python(Some(&who), grow, &[www.join("big.bin").as_str()]);
    let before = record(&www);
    std::fs::write(scratch.join("fill-on-restore"), b"").unwrap();

    let out = restore(&sb, "full", &file);
    assert_eq!(out.status.code(), Some(22), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "rollback-failed", "{v}");
    assert_eq!(v["error"]["step"], "rollback", "{v}");
    assert_eq!(v["error"]["original_kind"], "script-failed", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    let snapshot = v["error"]["snapshot"].as_str().unwrap();
    assert!(message.contains(snapshot), "{message}");
    assert!(
        snapshot.starts_with(sb.state().join("work").as_str()) && exists(snapshot),
        "the snapshot named is not kept: {snapshot}"
    );
    assert_eq!(work_leftovers(&sb.state()).len(), 1);
    assert!(open_journal_entries(&sb.state()).is_empty());

    // A person frees the disk and puts the instance back (here: the backup again).
    std::fs::remove_file(scratch.join("fill")).unwrap();
    std::fs::remove_file(scratch.join("fill-on-restore")).unwrap();
    let out = restore(&sb, "full", &file);
    assert_success(&out, "restore once the disk is free");
    assert!(
        !exists(snapshot),
        "the kept snapshot outlived the instance's return"
    );
    assert!(
        work_leftovers(&sb.state()).is_empty(),
        "{:?}",
        work_leftovers(&sb.state())
    );
    assert!(record(&www) != before, "the second restore changed nothing");
}

/// A tree nested deeper than the restore can hold open (`MAX_DEPTH` names) is refused when it
/// is backed up, naming the path and the bound; nothing is left at the destination.
#[test]
fn a_tree_deeper_than_the_restore_can_hold_is_refused_at_backup() {
    let Some(who) = tenant() else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let www = sb.path("www-nested");
    let pkg = package(&sb, "nested-pkg", None);
    register(&sb, "nested", &pkg, &www, &who, "normal", false);
    let levels = aps_controller::archive::MAX_DEPTH.to_string();
    // MAX_DEPTH folders, each with a file: the deepest file lies one name too deep.
    python(Some(&who), MAKE_TREE, &[www.as_str(), &levels, "3"]);
    let file = backups(&sb).join("nested.aps");
    let out = sb.cli(&["backup", "nested", "--to", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(16), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "resource-failed", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "{} names deep",
            aps_controller::archive::MAX_DEPTH + 1
        )) && message.contains(&format!("at most {levels} levels")),
        "{message}"
    );
    assert!(!exists(&file));
    assert!(work_leftovers(&sb.state()).is_empty());
}

/// A plain tree tar with `dirs` (folders, parents first) and, if given, one symlink.
fn crafted_tar(dirs: &[String], link: Option<(&str, &str)>) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    let mut folder = |name: &str| {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Directory);
        h.set_mode(0o755);
        h.set_size(0);
        b.append_data(&mut h, name, std::io::empty()).unwrap();
    };
    folder("./");
    for d in dirs {
        folder(d);
    }
    if let Some((name, target)) = link {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::Symlink);
        h.set_mode(0o777);
        h.set_size(0);
        b.append_link(&mut h, name, target).unwrap();
    }
    b.into_inner().unwrap()
}

/// What no restore could make is refused when an archive is read, naming why: a path deeper
/// than `MAX_DEPTH` names, a name of 256 bytes, a symlink target of 4096 bytes. (Before: the
/// extraction met ENAMETOOLONG or ran out of descriptors halfway through.)
#[test]
fn an_archive_holding_what_no_restore_could_make_is_refused_when_read() {
    let sb = Sandbox::new();
    let max = aps_controller::archive::MAX_DEPTH;
    let deep: Vec<String> = (1..=max + 1).map(|n| "a/".repeat(n)).collect();
    let long_name = vec![format!("{}/", "n".repeat(256))];
    let cases = [
        (
            "deep",
            crafted_tar(&deep, None),
            format!("{} names deep", max + 1),
        ),
        (
            "name",
            crafted_tar(&long_name, None),
            "a name of 256 bytes".to_owned(),
        ),
        (
            "link",
            crafted_tar(&[], Some(("l", &"t/".repeat(2048)))),
            "symlink target of 4096 bytes".to_owned(),
        ),
    ];
    for (what, bytes, expected) in cases {
        let dest = sb.path(&format!("out-{what}"));
        let err = aps_controller::archive::restore_tree_from(
            &bytes[..],
            Utf8Path::new("crafted.tar"),
            &dest,
            None,
        )
        .expect_err(what);
        let message = err.to_string();
        assert!(message.contains(&expected), "{what}: {message}");
    }
}
