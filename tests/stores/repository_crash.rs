//! A repository backup killed with `kill -9`, or stopped with SIGTERM, while it writes a big
//! generated site (real process, real signals, real repository): the repository stays
//! consistent — the Debian `restic check` with the password file `store init` wrote, and our
//! own check reading every pack — and holds no snapshot of the interrupted backup. SIGTERM
//! exits 143 with the `interrupted` envelope. The next backup then completes and restores.
//! The same kill -9 with the repository in a bucket of the loopback S3 server.

use test_support as support;
use test_support::s3_env;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use camino::Utf8Path;
use support::{Sandbox, assert_success, json};

const WAIT: Duration = Duration::from_secs(180);

/// A registered instance whose web folder holds `mib` MiB of incompressible files, and an
/// initialised repository store.
fn big_site(mib: usize) -> (Sandbox, support::Dbs) {
    let sb = Sandbox::new();
    // No backup-script (the repository store runs none) and real databases, dumped into it.
    let (www, dbs) = support::register_without_script(&sb, "blog");
    for i in 0..mib / 4 {
        let dir = www.join(format!("media/{}", i % 8));
        std::fs::create_dir_all(&dir).unwrap();
        let out = Command::new("head")
            .args(["-c", &(4 << 20).to_string(), "/dev/urandom"])
            .output()
            .unwrap();
        std::fs::write(dir.join(format!("f{i}.bin")), out.stdout).unwrap();
    }
    sb.use_repository();
    (sb, dbs)
}

fn count_files(dir: &Utf8Path) -> usize {
    let Ok(entries) = dir.read_dir_utf8() else {
        return 0;
    };
    entries
        .map(|e| {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                count_files(e.path())
            } else {
                1
            }
        })
        .sum()
}

/// Starts `backup blog --json` and waits until it has written `packs` pack files.
fn start_backup(sb: &Sandbox, packs: usize) -> Child {
    let mut child = sb
        .command(&["backup", "blog", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let data = sb.state().join("repository/data");
    let start = Instant::now();
    while count_files(&data) < packs {
        assert!(start.elapsed() < WAIT, "no pack written in time");
        if let Some(status) = child.try_wait().unwrap() {
            let mut out = String::new();
            let _ = std::io::Read::read_to_string(child.stdout.as_mut().unwrap(), &mut out);
            let _ = std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut out);
            panic!("the backup ended ({status}) before it wrote {packs} packs: {out}");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(
        count_files(&sb.state().join("repository/snapshots")) == 0,
        "still writing: no snapshot yet"
    );
    child
}

fn kill(child: &Child, signal: &str) {
    let status = Command::new("kill")
        .arg(format!("-{signal}"))
        .arg(child.id().to_string())
        .status()
        .unwrap();
    assert!(status.success());
}

/// The command ended as SIGTERM asked: exit 143, the `interrupted` envelope naming the signal
/// with `says` in its message, the signal acknowledged on stderr.
fn assert_stopped_by_sigterm(out: &std::process::Output, says: &str) {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(143), "{stdout}\n{stderr}");
    let v: serde_json::Value = serde_json::from_str(stdout.trim()).unwrap();
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], "interrupted", "{v}");
    assert_eq!(v["error"]["signal"], "SIGTERM", "{v}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains(says),
        "{v}"
    );
    assert!(stderr.contains("SIGTERM received"), "{stderr}");
}

/// restic's check (reading every pack) and ours agree the repository is consistent, and it
/// holds exactly `snapshots` snapshots.
fn assert_consistent(sb: &Sandbox, snapshots: usize) {
    let restic = ["/usr/bin/restic", "/usr/local/bin/restic"]
        .into_iter()
        .find(|p| Utf8Path::new(p).exists())
        .expect("restic is not installed: scripts/ci/install-deps.sh installs it");
    let out = Command::new(restic)
        .args(["--no-cache", "-r"])
        .arg(sb.state().join("repository").as_str())
        .arg("--password-file")
        .arg(sb.state().join("repository.password").as_str())
        .args(["check", "--read-data"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "restic check: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
    assert_success(&out, "verify --repository --read-all");
    assert_eq!(json(&out)["snapshots"], snapshots);
    let out = sb.cli(&["store", "snapshots", "--json"]);
    assert_success(&out, "store snapshots");
    assert_eq!(
        json(&out)["snapshots"].as_array().unwrap().len(),
        snapshots,
        "{}",
        json(&out)
    );
}

/// The backup that follows an interruption completes, and restores the site exactly.
fn assert_next_backup_works(sb: &Sandbox) {
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "store backup after the interruption");
    assert_consistent(sb, 1);
    let target = sb.path("staging");
    assert_success(
        &sb.cli(&[
            "store",
            "restore",
            "blog",
            "--latest",
            "--to",
            target.as_str(),
        ]),
        "store restore",
    );
    let www = sb.path("www-blog");
    let media = target.join("web/%2F/media/3");
    let names: Vec<_> = media.read_dir_utf8().unwrap().map(|e| e.unwrap()).collect();
    assert!(!names.is_empty());
    for e in names {
        let original = www.join("media/3").join(e.file_name());
        assert!(
            std::fs::read(e.path()).unwrap() == std::fs::read(&original).unwrap(),
            "{} restored differs",
            e.path()
        );
    }
}

#[test]
fn kill_9_during_a_repository_backup_leaves_it_consistent() {
    let (sb, _dbs) = big_site(384);
    let mut child = start_backup(&sb, 3);
    kill(&child, "KILL");
    let status = child.wait().unwrap();
    assert_eq!(
        std::os::unix::process::ExitStatusExt::signal(&status),
        Some(9)
    );
    assert_consistent(&sb, 0);
    assert_next_backup_works(&sb);
}

#[test]
fn sigterm_during_a_repository_backup_exits_143_and_keeps_nothing() {
    let (sb, _dbs) = big_site(384);
    let child = start_backup(&sb, 3);
    let packs_at_signal = count_files(&sb.state().join("repository/data"));
    let signalled = Instant::now();
    kill(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    // For the record (not asserted: timing is for benchmarks).
    eprintln!(
        "stopped {:?} after SIGTERM, {packs_at_signal} pack files written by then",
        signalled.elapsed()
    );
    assert_stopped_by_sigterm(&out, "nothing was kept");
    assert_consistent(&sb, 0);
    assert_next_backup_works(&sb);
}

#[test]
fn kill_9_during_a_backup_into_a_bucket_leaves_it_consistent() {
    let Some(s3) = s3_env::s3_test_env("repo_kill") else {
        return;
    };
    let (sb, _dbs) = big_site(128);
    // The same site, now with its repository in the bucket (new keys for it).
    std::fs::remove_file(sb.state().join("repository.key")).unwrap();
    std::fs::remove_file(sb.state().join("repository.password")).unwrap();
    sb.choose_s3_repository(
        &s3.endpoint,
        &s3.bucket,
        &s3.prefix,
        &s3.access_key,
        &s3.secret_key,
    );
    assert_success(&sb.cli(&["store", "init"]), "store init in the bucket");
    // s3s-fs keeps bucket B in /tmp/aps-ci/s3/B (scripts/ci/s3-server.sh).
    let on_server = Utf8Path::new("/tmp/aps-ci/s3")
        .join(&s3.bucket)
        .join(format!("{}repo", s3.prefix));
    assert!(on_server.join("config").is_file(), "{on_server}");

    let mut child = sb
        .command(&["store", "backup", "blog", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while count_files(&on_server.join("data")) < 2 {
        assert!(start.elapsed() < WAIT, "no pack uploaded in time");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(
        count_files(&on_server.join("snapshots")),
        0,
        "still writing"
    );
    kill(&child, "KILL");
    child.wait().unwrap();

    let out = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
    assert_success(&out, "verify --repository --read-all");
    assert_eq!(json(&out)["snapshots"], 0);
    let out = sb.cli(&["store", "backup", "blog", "--json"]);
    assert_success(&out, "store backup after the kill");
    let out = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
    assert_success(&out, "verify after the next backup");
    assert_eq!(json(&out)["snapshots"], 1);
}

/// SIGTERM while a repository restore streams the snapshot into its staged archive: the
/// restore stops there (exit 143, `interrupted`), the instance was not touched, and the
/// private staging folder is gone.
#[test]
fn sigterm_during_a_repository_restore_leaves_the_instance_untouched() {
    let (sb, _dbs) = big_site(192);
    assert_success(&sb.cli(&["backup", "blog", "--json"]), "backup");
    let www = sb.path("www-blog");
    std::fs::write(www.join("index.html"), "changed since the backup\n").unwrap();
    let files_before = count_files(&www);

    let child = sb
        .command(&["restore", "blog", "--latest", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let staged_archive = || {
        std::fs::read_dir(sb.state())
            .unwrap()
            .flatten()
            .filter(|e| {
                e.file_name()
                    .to_string_lossy()
                    .starts_with(".repository-restore-")
            })
            .filter_map(|e| std::fs::metadata(e.path().join("snapshot.aps.tar")).ok())
            .map(|m| m.len())
            .max()
    };
    let start = Instant::now();
    while staged_archive().unwrap_or(0) < 16 << 20 {
        assert!(start.elapsed() < WAIT, "nothing staged in time");
        std::thread::sleep(Duration::from_millis(5));
    }
    kill(&child, "TERM");
    let out = child.wait_with_output().unwrap();
    assert_stopped_by_sigterm(&out, "the instance was not touched");
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "changed since the backup\n"
    );
    assert_eq!(count_files(&www), files_before);
    assert_eq!(staged_archive(), None, "the staging folder is removed");
}
