//! Interrupted, full or long-running operations, through the real binary with real signals,
//! real scripts, real database servers and a real full file system (a small tmpfs):
//! SIGINT/SIGTERM at each phase roll back on the spot with exit 130/143, a second signal does
//! not cut the rollback short, every command recovers what a kill -9 left and says so, a full
//! disk is `no-space` (exit 19) naming the place, the journal's log rotates, and
//! `backup --dry-run`'s estimate matches the real size.

use test_support as support;
use test_support::restore_kit as kit;
use test_support::s3_env;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use camino::{Utf8Path, Utf8PathBuf};
use kit::{Site, db_instance, open_journal_entries, work_leftovers};
use support::{
    Sandbox, Tmpfs, assert_success, databases, db_toml, entries, exists, json, pid_alive,
};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";
const WAIT: Duration = Duration::from_secs(120);

fn sh_instance(sb: &Sandbox, name: &str, behaviour: &str) -> Utf8PathBuf {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"{behaviour}\"\n"),
    )
}

fn dir(sb: &Sandbox, name: &str) -> Utf8PathBuf {
    let d = sb.path(name);
    std::fs::create_dir_all(&d).unwrap();
    d
}

pub(crate) fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until the sh-databases fixture's backup script runs (`backup-waits`): it says so
/// beside its BACKUP_FILE in the operation's work folder.
fn wait_for_backup_script(sb: &Sandbox, what: &str) {
    let work = sb.state().join("work");
    wait_for(
        || {
            std::fs::read_dir(&work).is_ok_and(|rd| {
                rd.flatten()
                    .any(|e| e.path().join("script-backup.running").exists())
            })
        },
        what,
    );
}

/// A running `aps-controller` whose stderr lines (progress lines with `--json`, the signal
/// notes) are read as they come, so a test can wait for a phase.
pub(crate) struct Running {
    child: Child,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Running {
    pub(crate) fn start(mut cmd: Command) -> Running {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("start aps-controller");
        let stderr = child.stderr.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Running {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line that `pred` accepts (the process must not end first).
    pub(crate) fn wait_line(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let start = Instant::now();
        loop {
            assert!(start.elapsed() < WAIT, "timed out waiting for {what}");
            match self.lines.recv_timeout(Duration::from_millis(50)) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if pred(&line) {
                        return line;
                    }
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("the command ended before {what}; stderr: {:#?}", self.seen)
                }
            }
        }
    }

    /// Waits for the JSON progress line announcing `phase` (and `name`, when given).
    pub(crate) fn wait_phase(&mut self, phase: &str, name: Option<&str>) {
        let what = format!("phase {phase} {name:?}");
        self.wait_line(&what, |line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v["event"] == "part" && v["phase"] == phase && name.is_none_or(|n| v["name"] == n)
            })
        });
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal}");
    }

    /// Waits for the end: exit code, stdout, all of stderr.
    pub(crate) fn finish(mut self) -> (Option<i32>, String, String) {
        let mut stdout = String::new();
        std::io::Read::read_to_string(self.child.stdout.as_mut().unwrap(), &mut stdout).unwrap();
        let status = self.child.wait().unwrap();
        while let Ok(line) = self.lines.recv_timeout(Duration::from_secs(5)) {
            self.seen.push(line);
        }
        (status.code(), stdout, self.seen.join("\n"))
    }
}

fn signal_code(signal: &str) -> i32 {
    match signal {
        "INT" => 130,
        "TERM" => 143,
        "HUP" => 129,
        other => panic!("{other}"),
    }
}

fn assert_interrupted(code: Option<i32>, stdout: &str, stderr: &str, signal: &str) {
    assert_eq!(
        code,
        Some(signal_code(signal)),
        "exit code for SIG{signal}\nstdout: {stdout}\nstderr: {stderr}"
    );
    let v: serde_json::Value = serde_json::from_str(stdout.trim())
        .unwrap_or_else(|e| panic!("stdout is one JSON object ({e}): {stdout}"));
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    assert_eq!(v["error"]["signal"], format!("SIG{signal}"), "{v}");
    assert!(
        stderr.contains(&format!("SIG{signal} received: stopping and rolling back")),
        "the signal is acknowledged on stderr: {stderr}"
    );
}

pub(crate) fn assert_nothing_left(sb: &Sandbox) {
    assert!(
        open_journal_entries(&sb.state()).is_empty(),
        "open journal entries: {:?}",
        open_journal_entries(&sb.state())
    );
    assert!(
        work_leftovers(&sb.state()).is_empty(),
        "work leftovers: {:?}",
        work_leftovers(&sb.state())
    );
}

/// The pid the hanging script writes (waiting until the shell has written all of it).
fn child_pid(www: &Utf8Path) -> i32 {
    let read = || {
        std::fs::read_to_string(www.join(".aps-child.pid"))
            .ok()
            .and_then(|t| t.strip_suffix('\n').and_then(|t| t.parse().ok()))
    };
    wait_for(|| read().is_some(), "the script's child pid");
    read().unwrap()
}

// ---------------------------------------------------------------------------------------------
// Backup

/// SIGINT and SIGTERM while the backup script runs (with a child of its own): the script's
/// whole group is stopped, the partial file and the work folder are deleted, the lock is
/// released, the journal entry closed as failed; exit 130 / 143.
#[test]
fn backup_signal_while_the_script_runs_rolls_back_at_once() {
    for signal in ["INT", "TERM", "HUP"] {
        let sb = Sandbox::new();
        let www = sh_instance(&sb, "blog", "hang-with-child");
        let backups = dir(&sb, "backups");
        let dest = backups.join("blog.bak");
        let mut run =
            Running::start(sb.command(&["backup", "blog", "--to", dest.as_str(), "--json"]));
        run.wait_phase("script", None);
        wait_for(|| exists(www.join(".aps-child.pid")), "the script's child");
        let child = child_pid(&www);
        let started = Instant::now();
        run.signal(signal);
        let (code, stdout, stderr) = run.finish();
        assert_interrupted(code, &stdout, &stderr, signal);
        // The grace period is 10 s: the script (sleep) dies of SIGTERM at once, no waiting.
        assert!(
            started.elapsed() < Duration::from_secs(8),
            "stopped on the spot, not after a timeout: {:?}",
            started.elapsed()
        );
        assert!(!pid_alive(child), "the script's child {child} survived");
        assert!(entries(&backups).is_empty(), "{:?}", entries(&backups));
        assert_nothing_left(&sb);
        // The lock is free: the next backup runs (and times out by itself, not `busy`).
        let next = sb.cli(&[
            "backup",
            "blog",
            "--to",
            dest.as_str(),
            "--timeout",
            "1",
            "--json",
        ]);
        assert_eq!(json(&next)["error"]["kind"], "timed-out", "{next:?}");
    }
}

/// Without `--json`: the signal, the error and what was rolled back, in words on stderr.
#[test]
fn backup_signal_in_text_mode_says_what_was_rolled_back() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    let dest = dir(&sb, "backups").join("blog.bak");
    let run = Running::start(sb.command(&["backup", "blog", "--to", dest.as_str()]));
    child_pid(&www);
    run.signal("INT");
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, Some(130), "{stdout}\n{stderr}");
    assert!(stderr.contains("error [interrupted]"), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "rolled back: the partial file beside {dest} and the work folder were deleted"
        )),
        "{stderr}"
    );
    assert!(stdout.is_empty(), "{stdout}");
}

/// A controller archive of a web folder with 48 MiB of random data, gzip: SIGINT/SIGTERM
/// while the archive is being written stop the write (the stream checks the token), delete the
/// partial file, and leave the destination folder as it was.
#[test]
fn backup_signal_while_the_archive_is_written() {
    for signal in ["INT", "TERM"] {
        let sb = Sandbox::new();
        let Some(dbs) = databases("intarch") else {
            return;
        };
        let www = sb.register(
            "big",
            "nobackup-sample",
            &format!(
                "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n{}{}",
                db_toml("main", &dbs.mysql),
                db_toml("stats", &dbs.pg)
            ),
        );
        random_file(&www.join("big.bin"), 48 << 20);
        let backups = dir(&sb, "backups");
        std::fs::write(backups.join("other.txt"), "kept").unwrap();
        let before = entries(&backups);
        let dest = backups.join("big.aps");
        let mut run = Running::start(sb.command(&[
            "backup",
            "big",
            "--to",
            dest.as_str(),
            "--compression",
            "gzip",
            "--json",
        ]));
        run.wait_phase("web-folder", Some("/"));
        // Bytes of the web folder are flowing into the archive.
        run.wait_line("archive bytes", |l| l.contains("\"event\":\"bytes\""));
        run.signal(signal);
        let (code, stdout, stderr) = run.finish();
        assert_interrupted(code, &stdout, &stderr, signal);
        let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
        assert_eq!(
            v["error"]["step"], "1.1-backup-resources",
            "stopped while the archive was written: {v}"
        );
        assert_eq!(entries(&backups), before, "destination folder as before");
        assert_nothing_left(&sb);
    }
}

// ---------------------------------------------------------------------------------------------
// Restore and migrate (sh-databases with real MariaDB and PostgreSQL databases)

pub(crate) fn backed_up(sb: &Sandbox, behaviour: &str) -> Option<(kit::DbInstance, Utf8PathBuf)> {
    let inst = db_instance(
        sb,
        "shop",
        Site {
            behaviour,
            ..Site::default()
        },
    )?;
    inst.populate();
    let file = dir(sb, "backups").join("shop.aps");
    let out = sb.cli(&["backup", "shop", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");
    Some((inst, file))
}

/// SIGINT / SIGTERM while the restore script runs (files and databases already replaced):
/// the instance is put back from the safety snapshot exactly — tree and query results.
#[test]
fn restore_signal_while_the_script_runs_puts_the_instance_back() {
    for signal in ["INT", "TERM"] {
        let sb = Sandbox::new();
        let Some((inst, file)) = backed_up(&sb, "restore-waits") else {
            return;
        };
        inst.damage();
        let before = inst.state();
        let run =
            Running::start(sb.command(&["restore", "shop", "--from", file.as_str(), "--json"]));
        wait_for(
            || exists(inst.www.join(".aps-restore-running")),
            "the restore script to wait",
        );
        assert_ne!(inst.state(), before, "the restore had changed things");
        run.signal(signal);
        let (code, stdout, stderr) = run.finish();
        assert_interrupted(code, &stdout, &stderr, signal);
        kit::assert_same(&inst.state(), &before, "not put back exactly");
        assert_nothing_left(&sb);
    }
}

/// SIGTERM while a dump is being loaded: the PostgreSQL database's load is held by a lock a
/// test session keeps, so the signal arrives during the load for sure. The load tool is
/// stopped, and after the lock is released the rollback puts everything back. A second signal
/// (SIGINT) during the rollback is ignored, and said so.
#[test]
fn restore_signal_while_loading_a_database_and_again_during_the_rollback() {
    let sb = Sandbox::new();
    let Some((inst, file)) = backed_up(&sb, "normal") else {
        return;
    };
    inst.damage();
    let before = inst.state();
    // A session holding a lock that a DROP (the load empties the database first) waits for,
    // but that pg_dump (the safety snapshot) does not.
    let mut locker = psql_session(&inst.stats);
    psql_send(
        &mut locker,
        "BEGIN; LOCK TABLE hits IN ACCESS SHARE MODE; SELECT 'locked';",
    );
    let mut run =
        Running::start(sb.command(&["restore", "shop", "--from", file.as_str(), "--json"]));
    run.wait_phase("database", Some("stats"));
    run.signal("TERM");
    run.wait_phase("rollback", None);
    run.signal("INT");
    run.wait_line("the second signal's note", |l| {
        l.contains("SIGINT received again: ignored, the rollback goes on")
    });
    // Let the rollback (and the stopped load's orphaned statement) through.
    psql_send(&mut locker, "COMMIT;");
    drop(locker.stdin.take());
    let _ = locker.wait();
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "TERM");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["error"]["step"], "restore-resources", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("stopped because the controller got SIGTERM"),
        "the load tool was stopped: {v}"
    );
    kit::assert_same(&inst.state(), &before, "not put back exactly");
    assert_nothing_left(&sb);
}

/// migrate: SIGINT while the target's restore script runs puts the target back; the source
/// is untouched and the intermediate backup is deleted.
#[test]
fn migrate_signal_puts_the_target_back_and_leaves_no_intermediate_file() {
    let sb = Sandbox::new();
    let Some((source, _)) = backed_up(&sb, "normal") else {
        return;
    };
    let Some(target) = db_instance(
        &sb,
        "staging",
        Site {
            base_url: "http://staging.example.test/",
            behaviour: "restore-waits",
            extra_web_dirs: "",
        },
    ) else {
        return;
    };
    let source_before = source.state();
    let target_before = target.state();
    let run =
        Running::start(sb.command(&["migrate", "shop", "--to-instance", "staging", "--json"]));
    wait_for(
        || exists(target.www.join(".aps-restore-running")),
        "the target's restore script",
    );
    run.signal("INT");
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "INT");
    kit::assert_same(&target.state(), &target_before, "target not put back");
    kit::assert_same(&source.state(), &source_before, "source changed");
    assert_nothing_left(&sb);
}

/// migrate --latest from the repository store: SIGTERM while the target's PostgreSQL dump is
/// loaded (held by a lock a test session keeps, so the signal arrives during the load for
/// sure) puts the target back from its safety snapshot; the source is untouched and the
/// staging folder of the snapshot is gone; exit 143.
#[test]
fn migrate_from_a_snapshot_signal_while_loading_puts_the_target_back() {
    let sb = Sandbox::new();
    sb.use_repository();
    let (shop_www, shop_dbs) = support::register_without_script(&sb, "shop");
    kit::populate_tree(&shop_www);
    kit::populate_databases(&shop_dbs.mysql, &shop_dbs.pg);
    let (staging_www, staging_dbs) = support::register_without_script(&sb, "staging");
    std::fs::write(staging_www.join("old-staging.html"), "old").unwrap();
    kit::run_sql(
        &staging_dbs.pg,
        "CREATE TABLE hits (id int); INSERT INTO hits VALUES (1);",
    );
    assert_success(&sb.cli(&["backup", "shop"]), "backup shop");
    let state = |www: &Utf8Path, dbs: &support::Dbs| kit::State {
        tree: kit::tree_record(www),
        databases: kit::db_state(&dbs.mysql, &dbs.pg),
    };
    let shop_before = state(&shop_www, &shop_dbs);
    let staging_before = state(&staging_www, &staging_dbs);
    // A DROP (the load empties the database first) waits for this lock; pg_dump (the safety
    // snapshot) does not.
    let mut locker = psql_session(&staging_dbs.pg);
    psql_send(
        &mut locker,
        "BEGIN; LOCK TABLE hits IN ACCESS SHARE MODE; SELECT 'locked';",
    );
    let mut run = Running::start(sb.command(&[
        "migrate",
        "shop",
        "--to-instance",
        "staging",
        "--latest",
        "--json",
    ]));
    run.wait_phase("database", Some("stats"));
    run.signal("TERM");
    run.wait_phase("rollback", None);
    psql_send(&mut locker, "COMMIT;");
    drop(locker.stdin.take());
    let _ = locker.wait();
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "TERM");
    kit::assert_same(
        &state(&staging_www, &staging_dbs),
        &staging_before,
        "target not put back",
    );
    kit::assert_same(&state(&shop_www, &shop_dbs), &shop_before, "source changed");
    assert_nothing_left(&sb);
    assert!(
        !entries(&sb.state())
            .iter()
            .any(|e| e.starts_with(".repository-restore-")),
        "{:?}",
        entries(&sb.state())
    );
}

/// SIGINT while a restore extracts a 48 MiB web folder from the archive: the read stream is
/// cut, and the safety snapshot puts the web folder back exactly.
#[test]
fn restore_signal_while_the_archive_is_extracted() {
    let sb = Sandbox::new();
    let Some((www, file)) = big_backup(&sb, "intextract") else {
        return;
    };
    let before = kit::tree_record(&www);
    let mut run =
        Running::start(sb.command(&["restore", "big", "--from", file.as_str(), "--json"]));
    run.wait_phase("extract", None);
    run.wait_line("extraction bytes", |l| l.contains("\"event\":\"bytes\""));
    run.signal("INT");
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "INT");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["error"]["step"], "restore-resources", "{v}");
    assert_eq!(kit::tree_record(&www), before, "the web folder is put back");
    assert_nothing_left(&sb);
}

/// The nobackup instance `big` with a 48 MiB random file, backed up with gzip (slow to
/// extract, so a test can stop the extraction), then changed: (web folder, backup file).
pub(crate) fn big_backup(sb: &Sandbox, hint: &str) -> Option<(Utf8PathBuf, Utf8PathBuf)> {
    let www = nobackup_instance(sb, "big", hint)?;
    random_file(&www.join("big.bin"), 48 << 20);
    let file = dir(sb, "backups").join("big.aps");
    let out = sb.cli(&[
        "backup",
        "big",
        "--to",
        file.as_str(),
        "--compression",
        "gzip",
        "--json",
    ]);
    assert_success(&out, "backup");
    // Changed since the backup: what the restore replaces, and the rollback puts back.
    std::fs::remove_file(www.join("index.html")).unwrap();
    random_file(&www.join("big.bin"), 1 << 20);
    Some((www, file))
}

/// migrate: SIGTERM while the source's backup script runs; nothing of either instance
/// changed, no intermediate file, exit 143.
#[test]
fn migrate_signal_during_the_source_backup() {
    let sb = Sandbox::new();
    let Some(source) = db_instance(
        &sb,
        "shop",
        Site {
            behaviour: "backup-waits",
            ..Site::default()
        },
    ) else {
        return;
    };
    source.populate();
    let Some(target) = db_instance(
        &sb,
        "staging",
        Site {
            base_url: "http://staging.example.test/",
            ..Site::default()
        },
    ) else {
        return;
    };
    let source_before = source.state();
    let target_before = target.state();
    let run =
        Running::start(sb.command(&["migrate", "shop", "--to-instance", "staging", "--json"]));
    wait_for_backup_script(&sb, "the source's backup script");
    run.signal("TERM");
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "TERM");
    kit::assert_same(&source.state(), &source_before, "source changed");
    kit::assert_same(&target.state(), &target_before, "target changed");
    assert_nothing_left(&sb);
}

/// `run` on SIGTERM: the backup under way is rolled back, the command exits 143 and leaves no
/// partial file in the store.
#[test]
fn run_stops_on_sigterm() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    let run = Running::start(sb.command(&["run", "--periodicity", "daily", "--json"]));
    wait_for(|| exists(www.join(".aps-child.pid")), "the backup's script");
    let child = child_pid(&www);
    run.signal("TERM");
    let (code, stdout, stderr) = run.finish();
    assert_eq!(code, Some(143), "stdout: {stdout}\nstderr: {stderr}");
    let summary: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    let blog = &summary["summary"]["instances"][0];
    assert_eq!(blog["ok"], false, "{summary}");
    assert!(
        blog["error"]["message"]
            .as_str()
            .unwrap()
            .contains("SIGTERM"),
        "{summary}"
    );
    assert!(!pid_alive(child));
    let store = sb.state().join("backups");
    let left: Vec<String> = std::fs::read_dir(&store)
        .map(|rd| {
            rd.flatten()
                .flat_map(|e| std::fs::read_dir(e.path()).into_iter().flatten().flatten())
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default();
    assert!(left.is_empty(), "nothing in the store: {left:?}");
    assert_nothing_left(&sb);
}

fn psql_session(db: &aps_controller::database::Database) -> Child {
    let mut child = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1"])
        .arg("-h")
        .arg(&db.host)
        .arg("-p")
        .arg(db.port.to_string())
        .arg("-U")
        .arg(&db.login)
        .arg(&db.name)
        .env("PGPASSWORD", db.password.expose())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("psql");
    // Wait until the session is up: one round trip.
    psql_send(&mut child, "SELECT 'ready';");
    child
}

/// Sends SQL and waits for its last result line.
fn psql_send(child: &mut Child, sql: &str) {
    use std::io::Write;
    let stdin = child.stdin.as_mut().unwrap();
    writeln!(stdin, "{sql}").unwrap();
    stdin.flush().unwrap();
    let expect = sql
        .rsplit("SELECT '")
        .next()
        .filter(|_| sql.contains("SELECT '"))
        .and_then(|s| s.split('\'').next())
        .map(str::to_owned);
    if let Some(word) = expect {
        let out = child.stdout.as_mut().unwrap();
        let mut line = String::new();
        let mut reader = BufReader::new(out);
        loop {
            line.clear();
            assert!(reader.read_line(&mut line).unwrap() > 0, "psql ended");
            if line.contains(&word) {
                break;
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Recovery after kill -9, reported by every command

/// A backup killed with SIGKILL leaves an open journal entry, a partial file and a work
/// folder; each command rolls that back before doing anything and says so: a note on stderr,
/// and `recovered` in its JSON object.
#[test]
fn every_command_recovers_and_reports_it() {
    let commands: &[&[&str]] = &[
        &["instance", "list"],
        &["backups", "blog", "--json"],
        &["prune", "--dry-run", "--json"],
        &["log", "--json"],
        &["verify", "--instance", "blog", "--json"],
        &["backup", "other", "--to", "@OTHER", "--json"],
    ];
    for args in commands {
        let sb = Sandbox::new();
        let www = sh_instance(&sb, "blog", "hang-with-child");
        sh_instance(&sb, "other", "normal");
        let backups = dir(&sb, "backups");
        let mut killed = sb
            .command(&["backup", "blog", "--to", backups.join("blog.bak").as_str()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        wait_for(|| exists(www.join(".aps-child.pid")), "the script to start");
        killed.kill().unwrap();
        killed.wait().unwrap();
        assert_eq!(open_journal_entries(&sb.state()).len(), 1);
        assert_eq!(entries(&backups).len(), 1, "the partial file is there");

        let other = backups.join("other.bak");
        let args: Vec<&str> = args
            .iter()
            .map(|a| if *a == "@OTHER" { other.as_str() } else { a })
            .collect();
        let out = sb.cli(&args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("note: rolled back the interrupted backup of instance blog"),
            "{args:?} reports the recovery on stderr: {stderr}"
        );
        assert!(
            open_journal_entries(&sb.state()).is_empty(),
            "{args:?} recovered"
        );
        assert!(
            !entries(&backups).iter().any(|e| e.starts_with(".blog.bak")),
            "{args:?} deleted the partial file: {:?}",
            entries(&backups)
        );
        if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&out.stdout)
            && v.is_object()
        {
            let recovered = &v["recovered"];
            assert_eq!(
                recovered[0]["instance"], "blog",
                "{args:?}: `recovered` in the JSON object: {v}"
            );
            assert_eq!(recovered[0]["operation"], "backup");
        }
        if args[0] == "log" {
            // The history shows the killed backup as interrupted and recovered.
            let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let op = &v["operations"][0];
            assert_eq!(
                (&op["instance"], &op["outcome"], &op["recovered"]),
                (&"blog".into(), &"interrupted".into(), &true.into()),
                "{v}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Full disk

fn random_file(path: &Utf8Path, size: usize) {
    let out = Command::new("head")
        .arg("-c")
        .arg(size.to_string())
        .arg("/dev/urandom")
        .output()
        .unwrap();
    std::fs::write(path, out.stdout).unwrap();
}

fn nobackup_instance(sb: &Sandbox, name: &str, hint: &str) -> Option<Utf8PathBuf> {
    let dbs = databases(hint)?;
    let www = sb.register(
        name,
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n{}{}",
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    );
    // The databases live as long as the test process: leaked on purpose.
    std::mem::forget(dbs);
    Some(www)
}

/// The destination is a 2 MiB tmpfs. A zstd backup of 4 MiB of random data passes the
/// estimate check (compression may shrink it) and then fills the disk: `no-space`, exit 19,
/// naming the destination folder and its free space, with no partial file left. Without
/// compression the estimate alone refuses it before anything is written.
#[test]
fn full_destination_is_no_space_and_leaves_nothing() {
    let sb = Sandbox::new();
    let Some(www) = nobackup_instance(&sb, "big", "nospace") else {
        return;
    };
    random_file(&www.join("big.bin"), 4 << 20);
    let dest_dir = sb.path("small");
    let Some(_disk) = Tmpfs::mount(&dest_dir, "2m") else {
        return;
    };
    let dest = dest_dir.join("big.aps");

    let out = sb.cli(&["backup", "big", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(19), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "no-space", "{v}");
    assert_eq!(v["error"]["place"], dest_dir.as_str(), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("no space left for {dest_dir}")) && message.contains("free"),
        "{message}"
    );
    assert!(entries(&dest_dir).is_empty(), "{:?}", entries(&dest_dir));
    assert_nothing_left(&sb);

    let out = sb.cli(&[
        "backup",
        "big",
        "--to",
        dest.as_str(),
        "--compression",
        "none",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(19), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "no-space", "{v}");
    assert_eq!(v["error"]["step"], "3.1-check-destination", "{v}");
    assert!(
        v["error"]["needed_bytes"].as_u64().unwrap() > 4 << 20,
        "{v}"
    );
    assert!(entries(&dest_dir).is_empty());
    assert_nothing_left(&sb);
}

/// The web folder is a 2 MiB tmpfs holding a small site; the backup being restored holds
/// 3 MiB: the extraction fills the disk, the restore is `no-space` (exit 19) naming the web
/// folder, and the safety snapshot puts the small site back exactly.
#[test]
fn full_web_folder_during_restore_is_no_space_and_put_back() {
    let sb = Sandbox::new();
    let Some(www) = nobackup_instance(&sb, "site", "nospacer") else {
        return;
    };
    random_file(&www.join("big.bin"), 3 << 20);
    let file = dir(&sb, "backups").join("site.aps");
    let out = sb.cli(&["backup", "site", "--to", file.as_str(), "--json"]);
    assert_success(&out, "backup");

    // The same folder, now a small disk with a small site on it.
    let Some(_disk) = Tmpfs::mount(&www, "2m") else {
        return;
    };
    std::fs::write(www.join("index.html"), "<h1>small</h1>\n").unwrap();
    random_file(&www.join("small.bin"), 100 << 10);
    let before = kit::tree_record(&www);

    let out = sb.cli(&["restore", "site", "--from", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(19), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "no-space", "{v}");
    assert_eq!(v["error"]["place"], www.as_str(), "{v}");
    assert_eq!(kit::tree_record(&www), before, "the web folder is put back");
    assert_nothing_left(&sb);
}

/// The state folder's work area is a 1 MiB tmpfs: the safety snapshot of a 3 MiB web folder
/// fills it before anything of the instance changed; `no-space` names the work folder.
#[test]
fn full_work_folder_during_the_safety_snapshot_is_no_space() {
    let sb = Sandbox::new();
    let Some(www) = nobackup_instance(&sb, "site", "nospacew") else {
        return;
    };
    random_file(&www.join("big.bin"), 3 << 20);
    let file = dir(&sb, "backups").join("site.aps");
    assert_success(
        &sb.cli(&["backup", "site", "--to", file.as_str(), "--json"]),
        "backup",
    );
    let before = kit::tree_record(&www);
    let work = sb.state().join("work");
    let Some(_disk) = Tmpfs::mount(&work, "1m") else {
        return;
    };
    let out = sb.cli(&["restore", "site", "--from", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(19), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "no-space", "{v}");
    assert_eq!(v["error"]["step"], "safety-snapshot", "{v}");
    assert!(
        v["error"]["place"]
            .as_str()
            .unwrap()
            .starts_with(work.as_str()),
        "{v}"
    );
    assert_eq!(kit::tree_record(&www), before, "nothing changed");
    assert_nothing_left(&sb);
}

// ---------------------------------------------------------------------------------------------
// Progress

/// `--json`: a part line per database, web folder (with the estimate as its total when the
/// archive is neither compressed nor encrypted) and byte lines that only grow, all on stderr
/// (stdout is the one result object). Without `--json` and without a terminal: nothing.
#[test]
fn progress_lines_with_json_and_nothing_in_cron() {
    let sb = Sandbox::new();
    let Some(www) = nobackup_instance(&sb, "prog", "progress") else {
        return;
    };
    random_file(&www.join("big.bin"), 4 << 20);
    let backups = dir(&sb, "backups");
    let out = sb.cli(&[
        "backup",
        "prog",
        "--to",
        backups.join("a.aps").as_str(),
        "--compression",
        "none",
        "--json",
    ]);
    assert_success(&out, "backup");
    json(&out);
    let events: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stderr)
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let parts: Vec<String> = events
        .iter()
        .filter(|e| e["event"] == "part")
        .map(|e| {
            format!(
                "{} {}",
                e["phase"].as_str().unwrap(),
                e["name"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(
        parts,
        ["database main", "database stats", "web-folder /"],
        "{events:?}"
    );
    let web = events
        .iter()
        .find(|e| e["event"] == "part" && e["phase"] == "web-folder")
        .unwrap();
    assert!(web["total"].as_u64().unwrap() > 4 << 20, "{web}");
    let done: Vec<u64> = events
        .iter()
        .filter(|e| e["event"] == "bytes")
        .map(|e| e["done"].as_u64().unwrap())
        .collect();
    assert!(!done.is_empty(), "{events:?}");

    let quiet = sb.cli(&["backup", "prog", "--to", backups.join("b.aps").as_str()]);
    assert_success(&quiet, "backup without a terminal");
    assert!(
        quiet.stderr.is_empty(),
        "nothing on stderr in cron: {}",
        String::from_utf8_lossy(&quiet.stderr)
    );
}

/// On a terminal (a real pseudo-terminal from `script`), the bar names the operation, the
/// instance and the part.
#[test]
fn a_terminal_gets_a_progress_bar() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let dest = dir(&sb, "backups").join("blog.bak");
    let command = format!(
        "{} backup blog --to {dest} --state-dir {}",
        env!("CARGO_BIN_EXE_aps-controller"),
        sb.state()
    );
    let out = match Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(e) => {
            eprintln!("skipped: no `script` to make a terminal: {e}");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(text.contains("backup blog"), "the bar's prefix: {text:?}");
    assert!(text.contains("script backup"), "the part: {text:?}");
    assert!(text.contains("backed up blog"), "{text:?}");
}

// ---------------------------------------------------------------------------------------------
// Journal history, `log`, and the size estimate

/// With a 1500-byte bound and 2 rotated files kept, many operations leave journal.log under
/// the bound, journal.log.1 and .2, nothing older; `log` shows the history kept, newest last;
/// closed entries older than the configured age are pruned at the next start.
#[test]
fn journal_log_rotates_and_log_shows_the_history() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    sb.configure("journal-log-max-bytes = 1500\njournal-log-keep = 2\n");
    let backups = dir(&sb, "backups");
    for i in 0..12 {
        let out = sb.cli(&[
            "backup",
            "blog",
            "--to",
            backups.join(format!("b{i}.bak")).as_str(),
            "--json",
        ]);
        assert_success(&out, "backup");
    }
    let journal = sb.state().join("journal");
    let size = |name: &str| std::fs::metadata(journal.join(name)).map(|m| m.len());
    assert!(size("journal.log").unwrap() <= 1500);
    assert!(size("journal.log.1").unwrap() <= 1500);
    assert!(size("journal.log.2").is_ok());
    assert!(size("journal.log.3").is_err(), "only 2 rotated files kept");

    let out = sb.cli(&["log", "blog", "--json"]);
    assert_success(&out, "log");
    let v = json(&out);
    let ops = v["operations"].as_array().unwrap();
    assert!(
        ops.len() >= 3 && ops.len() < 12,
        "what the kept files hold: {}",
        ops.len()
    );
    assert!(
        ops.iter()
            .all(|o| o["operation"] == "backup" && o["outcome"] == "ok")
    );
    assert!(ops.iter().all(|o| o["duration_ms"].is_i64()));
    let text = sb.cli(&["log", "blog", "--since", "1h"]);
    assert_success(&text, "log --since");
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.lines().count() == ops.len() && text.contains("backup"),
        "{text}"
    );
    let none = sb.cli(&["log", "blog", "--since", "2999-01-01T00:00:00Z"]);
    assert!(String::from_utf8_lossy(&none.stdout).contains("no operations recorded"));

    // A failed backup leaves a closed entry; with a 0-day age it goes at the next start.
    let out = sb.cli(&["backup", "nosuch-dir", "--to", "/nonexistent/x.bak"]);
    assert!(!out.status.success());
    sh_instance(&sb, "broken", "fail-after-half");
    let out = sb.cli(&["backup", "broken", "--to", backups.join("x.bak").as_str()]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    assert_eq!(entries(&journal.join("closed")).len(), 1);
    sb.configure("journal-closed-max-days = 0\n");
    assert_success(&sb.cli(&["instance", "list"]), "instance list");
    assert!(entries(&journal.join("closed")).is_empty());
}

/// `backup --dry-run` writes and runs nothing, and its estimate (before compression) is within
/// 10% of the real size of an uncompressed backup of the same instance.
#[test]
fn dry_run_estimate_is_within_ten_percent_of_the_real_size() {
    let sb = Sandbox::new();
    let Some(www) = nobackup_instance(&sb, "est", "estimate") else {
        return;
    };
    std::fs::create_dir_all(www.join("media/sub")).unwrap();
    random_file(&www.join("media/a.bin"), 1 << 20);
    random_file(&www.join("media/sub/b.bin"), 700 << 10);
    for i in 0..50 {
        std::fs::write(
            www.join(format!("media/sub/small-{i}.txt")),
            "x".repeat(i * 97),
        )
        .unwrap();
    }
    let backups = dir(&sb, "backups");
    let dest = backups.join("est.aps");
    let out = sb.cli(&[
        "backup",
        "est",
        "--to",
        dest.as_str(),
        "--dry-run",
        "--compression",
        "none",
        "--json",
    ]);
    assert_success(&out, "backup --dry-run");
    let plan = json(&out);
    assert_eq!(plan["fits"], true, "{plan}");
    assert_eq!(plan["mode"], "controller-archive");
    let estimate = plan["estimate"]["total"].as_u64().unwrap();
    assert!(entries(&backups).is_empty(), "the dry run wrote nothing");
    assert!(open_journal_entries(&sb.state()).is_empty());
    let text = sb.cli(&["backup", "est", "--to", dest.as_str(), "--dry-run"]);
    assert_success(&text, "backup --dry-run (text)");
    assert!(String::from_utf8_lossy(&text.stdout).contains("web folder /"));

    let out = sb.cli(&[
        "backup",
        "est",
        "--to",
        dest.as_str(),
        "--compression",
        "none",
        "--json",
    ]);
    assert_success(&out, "backup");
    let real = json(&out)["size"].as_u64().unwrap();
    let error = (estimate as f64 - real as f64).abs() / real as f64;
    eprintln!(
        "estimate {estimate} bytes, real {real} bytes: {:.2}% off",
        error * 100.0
    );
    assert!(
        error < 0.10,
        "estimate {estimate} vs real {real}: {:.1}% off",
        error * 100.0
    );
}

// ---------------------------------------------------------------------------------------------
// serve

/// `serve` on SIGTERM (systemd's stop): the running backup is stopped and rolled back (its
/// client gets `interrupted`), no new request is taken, and serve exits 0.
#[test]
fn serve_rolls_back_running_operations_on_sigterm_and_exits() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    let backups = dir(&sb, "backups");
    let mut served = support::serve::serve_allowing(&sb, &[backups.as_str()]);
    let base = served.base.clone();
    let token = served.token.clone();
    let dest = backups.join("blog.bak");
    let url = format!("{base}/v1/instances/blog/backup");
    let call = {
        let url = url.clone();
        let body = serde_json::json!({ "to": dest }).to_string();
        std::thread::spawn(move || {
            let response = match ureq::post(&url)
                .set("Authorization", &format!("Bearer {token}"))
                .send_string(&body)
            {
                Ok(r) => r,
                Err(ureq::Error::Status(_, r)) => r,
                Err(e) => panic!("POST: {e}"),
            };
            response.into_json::<serde_json::Value>().unwrap()
        })
    };
    wait_for(|| exists(www.join(".aps-child.pid")), "the backup's script");
    let child = child_pid(&www);
    let status = Command::new("kill")
        .args(["-TERM", &served.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let answer = call.join().unwrap();
    assert_eq!(answer["error"]["kind"], "interrupted", "{answer}");
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = served.child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < WAIT, "serve did not exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(exit.code(), Some(0), "a clean stop");
    assert!(!pid_alive(child));
    assert!(entries(&backups).is_empty(), "{:?}", entries(&backups));
    assert_nothing_left(&sb);
}

// ---------------------------------------------------------------------------------------------
// run's summary

/// `run`'s text summary names the upload and separates local and remote pruning; with
/// `--json` the part and byte events of the backup come before the summary.
#[test]
fn run_summary_names_uploads_and_separates_local_and_remote_pruning() {
    let Some(s3) = s3_env::s3_test_env("run_summary") else {
        return;
    };
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let secret = sb.path("s3-secret");
    std::fs::write(&secret, &s3.secret_key).unwrap();
    std::fs::write(
        sb.state().join("panel.toml"),
        format!(
            "[retention]\ndaily = 1\n[remote]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\naccess-key-id = \"{}\"\nsecret-access-key-file = \"{secret}\"\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.access_key
        ),
    )
    .unwrap();
    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_success(&out, "first run");
    let lines: Vec<serde_json::Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["event"] == "part" && l["instance"] == "blog" && l["phase"] == "script"),
        "{lines:?}"
    );
    assert_eq!(
        lines.last().unwrap()["summary"]["recovered"],
        serde_json::json!([])
    );
    // Backup names carry the second: the next run must not fall in the same one.
    std::thread::sleep(Duration::from_millis(1100));
    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_success(&out, "second run");
    let text = String::from_utf8_lossy(&out.stdout);
    let url = format!("s3://{}/{}blog/blog_daily_", s3.bucket, s3.prefix);
    assert!(text.contains(&format!("uploaded {url}")), "{text}");
    assert!(text.contains("pruned local 1, remote 1"), "{text}");
}

/// A repository backup stopped by SIGTERM while the package's backup-script runs: the script
/// is stopped, the command exits 143, and nothing reaches the repository (no snapshot) or
/// stays in the state folder.
#[test]
fn repository_backup_stops_on_sigterm_during_the_backup_script() {
    let sb = Sandbox::new();
    sb.use_repository();
    let Some(inst) = db_instance(
        &sb,
        "shop",
        Site {
            behaviour: "backup-waits",
            ..Site::default()
        },
    ) else {
        return;
    };
    inst.populate();
    let run = Running::start(sb.command(&["backup", "shop", "--json"]));
    wait_for_backup_script(&sb, "the backup script");
    run.signal("TERM");
    let (code, stdout, stderr) = run.finish();
    assert_interrupted(code, &stdout, &stderr, "TERM");
    let out = sb.cli(&["store", "snapshots", "shop", "--json"]);
    assert_success(&out, "store snapshots");
    assert_eq!(json(&out)["snapshots"], serde_json::json!([]));
    assert_nothing_left(&sb);
}
