//! The operation journal with real processes: a killed operation is rolled back by the next
//! start, a running one is left alone.

use std::cell::RefCell;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

use aps_controller::journal::{Journal, OperationKind, Outcome, UndoAction};
use camino::{Utf8Path, Utf8PathBuf};

/// Set in the re-executed copy of this binary: the folder where to run a doomed operation.
const DOOMED_ENV: &str = "APS_JOURNAL_TEST_DOOMED_DIR";

fn tempdir() -> (tempfile::TempDir, Utf8PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = Utf8PathBuf::from_path_buf(dir.path().to_path_buf()).unwrap();
    (dir, path)
}

/// Not a test of its own: the body of the process that gets killed mid-operation. Each undo
/// action is journaled before the thing it undoes is made, as the operations do.
#[test]
fn doomed_operation_process() {
    let Ok(dir) = std::env::var(DOOMED_ENV) else {
        return;
    };
    let dir = Utf8PathBuf::from(dir);
    let journal = Journal::new(dir.join("state/journal"));
    let mut entry = journal.begin(OperationKind::Restore, "blog").unwrap();

    let work = dir.join("work");
    entry.add_undo(UndoAction::DeleteDir(work.clone())).unwrap();
    std::fs::create_dir_all(work.join("sub")).unwrap();
    std::fs::write(work.join("sub/file"), b"x").unwrap();

    let temp = dir.join(".site.tar.aps-partial-1234");
    entry
        .add_undo(UndoAction::DeleteFile(temp.clone()))
        .unwrap();
    std::fs::write(&temp, b"half").unwrap();

    entry
        .add_undo(UndoAction::RestoreSnapshot {
            snapshot: work.join("snapshot.tar"),
            instance: "blog".into(),
        })
        .unwrap();
    println!("ready");
    // Wait to be killed.
    let mut line = String::new();
    let _ = std::io::stdin().read_line(&mut line);
}

/// Runs `doomed_operation_process` in a child test process over `dir` and waits until its
/// operation is journalled and half done.
fn start_doomed_operation(dir: &Utf8Path) -> std::process::Child {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "doomed_operation_process", "--nocapture"])
        .env(DOOMED_ENV, dir.as_str())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    // libtest may print "test doomed_operation_process ... " on the same line first.
    while !line.trim_end().ends_with("ready") {
        line.clear();
        assert!(stdout.read_line(&mut line).unwrap() > 0, "child died early");
    }
    child
}

#[test]
fn killed_operation_is_rolled_back_in_reverse_order() {
    if std::env::var_os(DOOMED_ENV).is_some() {
        return;
    }
    let (_keep, dir) = tempdir();
    let mut child = start_doomed_operation(&dir);
    let pid = child.id();

    let journal = Journal::new(dir.join("state/journal"));
    // While it runs, recovery leaves it alone.
    let report = journal
        .recover_interrupted(|_, _| panic!("must not undo a running operation"))
        .unwrap();
    assert!(report.entries.is_empty());
    assert_eq!(report.still_running.len(), 1);
    assert!(dir.join("work/sub/file").exists());

    child.kill().unwrap();
    child.wait().unwrap();

    // Order check: the callback runs first (last registered); by then nothing is deleted yet.
    let calls = RefCell::new(Vec::new());
    let report = journal
        .recover_interrupted(|snapshot: &Utf8Path, instance: &str| {
            assert!(dir.join("work/sub/file").exists(), "work deleted too early");
            calls
                .borrow_mut()
                .push((snapshot.to_owned(), instance.to_owned()));
            Ok(())
        })
        .unwrap();
    assert_eq!(
        calls.into_inner(),
        [(dir.join("work/snapshot.tar"), "blog".to_owned())]
    );
    assert!(!dir.join("work").exists());
    assert!(!dir.join(".site.tar.aps-partial-1234").exists());

    assert_eq!(report.entries.len(), 1);
    let entry = &report.entries[0];
    assert!(entry.fully_undone());
    assert_eq!(entry.record.pid, pid);
    assert_eq!(entry.record.outcome, Outcome::Interrupted);
    assert_eq!(entry.record.kind, OperationKind::Restore);
    let text = entry.to_string();
    assert!(
        text.contains("interrupted restore of instance blog"),
        "{text}"
    );
    assert!(text.contains("put instance blog back"), "{text}");

    // Closed: gone from the open entries, kept in closed/, logged.
    assert!(journal.open_entries().unwrap().is_empty());
    assert!(entry.closed_path.exists());
    let log = std::fs::read_to_string(dir.join("state/journal/journal.log")).unwrap();
    assert_eq!(log.lines().count(), 1);
    let logged: serde_json::Value = serde_json::from_str(log.lines().next().unwrap()).unwrap();
    assert_eq!(logged["outcome"], "interrupted");
    assert_eq!(logged["instance"], "blog");

    // A second start finds nothing more to do.
    let again = journal.recover_interrupted(|_, _| Ok(())).unwrap();
    assert!(again.is_empty());
}

#[test]
fn failed_undo_is_reported_and_the_rest_still_runs() {
    if std::env::var_os(DOOMED_ENV).is_some() {
        return;
    }
    let (_keep, dir) = tempdir();
    let mut child = start_doomed_operation(&dir);
    child.kill().unwrap();
    child.wait().unwrap();

    let journal = Journal::new(dir.join("state/journal"));
    let report = journal
        .recover_interrupted(|_, _| Err("database server down".to_owned()))
        .unwrap();
    let entry = &report.entries[0];
    assert!(!entry.fully_undone());
    assert!(entry.to_string().contains("FAILED"), "{entry}");
    assert!(
        entry.to_string().contains("database server down"),
        "{entry}"
    );
    assert!(
        !dir.join(".site.tar.aps-partial-1234").exists(),
        "the other undo actions still ran"
    );
    // The folder holding the snapshot that could not be put back is what a person needs.
    assert!(
        dir.join("work/sub/file").exists(),
        "the snapshot's folder went"
    );
    assert!(entry.to_string().contains("kept"), "{entry}");
    assert!(entry.closed_path.exists());
}

#[test]
fn finished_entries_are_closed_and_logged() {
    let (_keep, dir) = tempdir();
    let journal = Journal::new(dir.join("journal"));

    let mut ok = journal.begin(OperationKind::Backup, "blog").unwrap();
    let temp = dir.join("tmpfile");
    ok.add_undo(UndoAction::DeleteFile(temp.clone())).unwrap();
    // The registered action is on disk before the caller goes on.
    let on_disk = std::fs::read_to_string(ok.path()).unwrap();
    assert!(on_disk.contains(temp.as_str()), "{on_disk}");
    ok.finish_ok().unwrap();

    let failed = journal.begin(OperationKind::Restore, "shop").unwrap();
    let failed_id = failed.id().to_owned();
    failed.finish_failed("script exited with code 2").unwrap();

    assert!(journal.open_entries().unwrap().is_empty());
    let closed =
        std::fs::read_to_string(dir.join("journal/closed").join(format!("{failed_id}.json")))
            .unwrap();
    assert!(closed.contains("script exited with code 2"));
    let log = std::fs::read_to_string(dir.join("journal/journal.log")).unwrap();
    let outcomes: Vec<String> = log
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["outcome"].to_string())
        .collect();
    assert_eq!(outcomes, ["\"ok\"", "\"failed\""]);
}

#[test]
fn entry_of_this_process_is_left_alone() {
    let (_keep, dir) = tempdir();
    let journal = Journal::new(dir.join("journal"));
    let entry = journal.begin(OperationKind::Backup, "blog").unwrap();
    let report = journal.recover_interrupted(|_, _| Ok(())).unwrap();
    assert!(report.entries.is_empty());
    assert_eq!(report.still_running, [entry.id().to_owned()]);
    entry.finish_ok().unwrap();
}

/// An install's undo removes names in a tenant's web root by descriptor: a folder the tenant
/// swapped for a symlink to someone else's folder is refused, never followed, and a symlink
/// named by the undo goes itself, not what it points at.
#[test]
fn remove_entry_never_follows_a_tenants_symlink() {
    if std::env::var_os(DOOMED_ENV).is_some()
        || !test_support::needs_root("a symlink of the tenant account")
    {
        return;
    }
    let tenant = test_support::tenant::tenant();
    let (_keep, dir) = tempdir();
    let www = dir.join("www");
    let victim = dir.join("victim");
    for d in [&www, &victim] {
        std::fs::create_dir(d).unwrap();
    }
    std::fs::write(victim.join("index.html"), "another tenant's").unwrap();
    test_support::chown_r(&www, tenant.uid, tenant.gid);
    // The tenant's symlink in its own web root, to the victim's folder.
    let site = www.join("site");
    std::os::unix::fs::symlink(&victim, &site).unwrap();
    std::os::unix::fs::lchown(&site, Some(tenant.uid), Some(tenant.gid)).unwrap();

    let journal = Journal::new(dir.join("journal"));
    let mut entry = journal.begin(OperationKind::Install, "site").unwrap();
    for (dir, name) in [(www.clone(), "site"), (site.clone(), "index.html")] {
        entry
            .add_undo(UndoAction::RemoveEntry {
                dir,
                name: name.into(),
            })
            .unwrap();
    }
    // Left open, as a killed install leaves it; this process is its owner, so the record is
    // rewritten with a pid that is gone.
    let path = entry.path().to_owned();
    drop(entry);
    let text = std::fs::read_to_string(&path).unwrap();
    let mut record: serde_json::Value = serde_json::from_str(&text).unwrap();
    record["pid"] = u32::MAX.into();
    std::fs::write(&path, record.to_string()).unwrap();

    let report = journal.recover_interrupted(|_, _| Ok(())).unwrap();
    let entry = &report.entries[0];
    assert!(!entry.fully_undone(), "{entry}");
    let undone = &entry.record.undone;
    // Newest first: a name inside the symlinked folder, refused rather than followed; then
    // the symlink itself, removed.
    assert!(undone[0].error.is_some(), "{entry}");
    assert_eq!(undone[1].error, None, "{entry}");
    assert!(!site.exists() && std::fs::symlink_metadata(&site).is_err());
    assert_eq!(
        std::fs::read_to_string(victim.join("index.html")).unwrap(),
        "another tenant's"
    );
}
