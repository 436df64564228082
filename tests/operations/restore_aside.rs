//! The restore's safety snapshot keeps the web folder's own files aside (renamed into the
//! restore's work folder, not copied): a failed restore renames the very same files back, and
//! a restore killed with SIGKILL at any step (while the snapshot is taken, while the archive
//! is extracted, while the restore script runs) is put back whole by the next command —
//! the old instance, never a mix, nothing lost, nothing left in the state folder.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;

use camino::Utf8Path;
use test_support as support;
use test_support::restore_kit as kit;

use super::interrupt::{Running, assert_nothing_left, backed_up, big_backup, wait_for};
use support::{Sandbox, assert_success, exists};

/// Inode of every entry below `root` (the folder itself left out): the same numbers after a
/// rollback mean the files were renamed back, not written again.
fn inodes(root: &Utf8Path) -> BTreeMap<String, u64> {
    fn walk(abs: &std::path::Path, rel: &str, out: &mut BTreeMap<String, u64>) {
        for entry in std::fs::read_dir(abs).unwrap() {
            let entry = entry.unwrap();
            let name = entry.file_name().to_string_lossy().into_owned();
            let rel = if rel.is_empty() {
                name
            } else {
                format!("{rel}/{name}")
            };
            let meta = std::fs::symlink_metadata(entry.path()).unwrap();
            out.insert(rel.clone(), meta.ino());
            if meta.is_dir() {
                walk(&entry.path(), &rel, out);
            }
        }
    }
    let mut out = BTreeMap::new();
    walk(root.as_std_path(), "", &mut out);
    out
}

/// SIGKILL to the running restore, `killed` checks what it left; then the next command of
/// any kind finds its open entry and puts the instance back.
fn kill_and_recover(sb: &Sandbox, run: Running, killed: impl FnOnce()) {
    run.signal("KILL");
    let (code, _, _) = run.finish();
    assert_eq!(code, None, "killed by the signal");
    killed();
    let out = sb.cli(&["instance", "list"]);
    assert_success(&out, "instance list after the kill");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("rolled back the interrupted restore"),
        "the recovery is reported: {stderr}"
    );
}

/// A restore whose script fails: the files and databases are put back exactly, and the web
/// folder's entries are the very files it had (same inodes), renamed back from aside.
#[test]
fn a_failed_restore_renames_the_same_files_back() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-fails") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    let before_inodes = inodes(&inst.www);
    let out = sb.cli(&["restore", "shop", "--from", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    kit::assert_same(&inst.state(), &before, "not put back exactly");
    assert_eq!(
        inodes(&inst.www),
        before_inodes,
        "the web folder holds its own files again, not copies"
    );
    assert_nothing_left(&sb);
}

/// SIGKILL while a 48 MiB web folder is extracted (after the old files were moved aside):
/// the next command empties the half-written folder and renames the old files back.
#[test]
fn kill_9_while_extracting_is_put_back_by_the_next_command() {
    let sb = Sandbox::new();
    let Some((www, file)) = big_backup(&sb, "asidex") else {
        return;
    };
    std::fs::create_dir(www.join("new-folder")).unwrap();
    std::fs::write(www.join("new-folder/page.html"), "new").unwrap();
    let before = kit::tree_record(&www);
    let before_inodes = inodes(&www);

    let mut run =
        Running::start(sb.command(&["restore", "big", "--from", file.as_str(), "--json"]));
    run.wait_phase("extract", None);
    run.wait_line("extraction bytes", |l| l.contains("\"event\":\"bytes\""));
    kill_and_recover(&sb, run, || {
        assert_ne!(
            kit::tree_record(&www),
            before,
            "the kill left the web folder half-restored"
        );
    });
    assert_eq!(kit::tree_record(&www), before, "the web folder is put back");
    assert_eq!(inodes(&www), before_inodes, "with its own files");
    assert_nothing_left(&sb);
}

/// SIGKILL as soon as the safety snapshot starts (the files being moved aside, the databases
/// being dumped): whatever point it hit, the next command leaves the old instance whole.
#[test]
fn kill_9_during_the_safety_snapshot_is_put_back_by_the_next_command() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    let before_inodes = inodes(&inst.www);
    let mut run =
        Running::start(sb.command(&["restore", "shop", "--from", file.as_str(), "--json"]));
    run.wait_phase("safety-snapshot", None);
    kill_and_recover(&sb, run, || {});
    kit::assert_same(&inst.state(), &before, "not put back exactly");
    assert_eq!(inodes(&inst.www), before_inodes, "with its own files");
    assert_nothing_left(&sb);
}

/// SIGKILL while the restore script runs (files and databases already replaced): the next
/// command puts the databases back from the dumps and the files back from aside.
#[test]
fn kill_9_while_the_script_runs_is_put_back_by_the_next_command() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "restore-waits") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    let before_inodes = inodes(&inst.www);
    let run = Running::start(sb.command(&["restore", "shop", "--from", file.as_str(), "--json"]));
    wait_for(
        || exists(inst.www.join(".aps-restore-running")),
        "the restore script to wait",
    );
    assert_ne!(inst.state(), before, "the restore had changed things");
    kill_and_recover(&sb, run, || {});
    kit::assert_same(&inst.state(), &before, "not put back exactly");
    assert_eq!(inodes(&inst.www), before_inodes, "with its own files");
    assert_nothing_left(&sb);
}
