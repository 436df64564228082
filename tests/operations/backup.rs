//! The backup scenario, step by step, through the real `aps-controller` binary, real
//! interpreters and real processes (fixture packages in fixtures/packages/).

use test_support as support;

use std::process::Stdio;

use aps_controller::destination::PARTIAL_MARKER;
use std::time::{Duration, Instant};

use support::{Sandbox, assert_success, entries, env_dump, exists, json, pid_alive};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pa ss=word\"\nsite_title = \"Demo\"\n";

fn sh_instance(sb: &Sandbox, name: &str, behaviour: &str) -> camino::Utf8PathBuf {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"{behaviour}\"\n"),
    )
}

fn backups_dir(sb: &Sandbox) -> camino::Utf8PathBuf {
    let dir = sb.path("backups");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Step 3.3 success with `sufficient`: the destination is exactly the script's file; the
/// report carries its size and SHA-256; the script saw the standard's variables and nothing
/// of the controller's own environment.
#[test]
fn sufficient_backup_is_the_script_file_with_the_standard_environment() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "normal");
    let dest = backups_dir(&sb).join("blog.bak");
    let out = sb
        .command(&["backup", "blog", "--to", dest.as_str(), "--json"])
        .env("APS_LEAK_CHECK", "must-not-reach-the-script")
        .output()
        .unwrap();
    assert_success(&out, "backup");
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["instance"], "blog");
    assert_eq!(report["file"], dest.as_str());
    let bytes = std::fs::read(&dest).unwrap();
    assert_eq!(report["size"], bytes.len() as u64);
    assert_eq!(report["sha256"], sha256_hex(&bytes));
    assert!(report["duration_ms"].is_u64());

    let env = env_dump(&dest);
    assert_eq!(env["BASE_URL_SCHEME"], "http");
    assert_eq!(env["BASE_URL_HOST"], "blog.example.test");
    assert_eq!(env["BASE_URL_PATH"], "blog/");
    assert!(
        !env.contains_key("BASE_URL_PORT"),
        "no port in the URL, none exported"
    );
    assert_eq!(env["SETTINGS_admin_name"], "admin");
    assert_eq!(env["SETTINGS_admin_password"], "pa ss=word");
    assert_eq!(env["SETTINGS_locale"], "en-US", "default value exported");
    assert_eq!(env["WEB___DIR"], www.as_str());
    assert_eq!(env["WEB__cache_DIR"], www.join("cache").as_str());
    assert_eq!(env["WEB_cache_DIR"], www.join("cache").as_str());
    assert_eq!(
        env["WEB__blogs_media_DIR"],
        www.join("blogs/media").as_str()
    );
    assert_eq!(env["LANG"], "C.UTF-8");
    // BACKUP_FILE was a temporary name beside the destination, renamed only on success.
    let backup_file = camino::Utf8PathBuf::from(&env["BACKUP_FILE"]);
    assert_eq!(backup_file.parent(), dest.parent());
    assert_ne!(backup_file, dest);
    assert!(!exists(&backup_file));
    assert!(
        !env.contains_key("APS_LEAK_CHECK"),
        "controller env leaked: {env:?}"
    );
    assert!(!env.contains_key("CARGO_MANIFEST_DIR"));
    assert_eq!(entries(dest.parent().unwrap()), ["blog.bak"]);
}

#[test]
fn unknown_instance_is_refused() {
    let sb = Sandbox::new();
    let dest = backups_dir(&sb).join("x.bak");
    let out = sb.cli(&["backup", "nope", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(4));
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "instance-not-found");
    assert_eq!(v["error"]["step"], "find-instance");
    assert!(!exists(&dest));
}

/// Step 1.2: no interpreter → refused before anything runs or is written.
#[test]
fn missing_interpreter_refuses_before_the_script_runs() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "normal");
    sb.configure("[interpreters]\nsh = \"/nonexistent/bin/sh\"\n");
    let dest = backups_dir(&sb).join("blog.bak");
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(11), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "interpreter-missing");
    assert_eq!(v["error"]["step"], "1.2-resolve-interpreter");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("sh"), "names the language: {message}");
    assert!(entries(&backups_dir(&sb)).is_empty());
    assert!(!exists(www.join(".aps-restore-env")));
}

/// Step 3.1: every refused destination, each before any script runs.
#[test]
fn refused_destinations_leave_everything_as_it_was() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let dir = backups_dir(&sb);

    let missing_parent = sb.path("no/such/folder/blog.bak");
    let folder = dir.join("a-folder");
    std::fs::create_dir(&folder).unwrap();
    let dangling = dir.join("dangling.bak");
    std::os::unix::fs::symlink(sb.path("nowhere"), &dangling).unwrap();
    let existing = dir.join("existing.bak");
    std::fs::write(&existing, "precious").unwrap();

    for (dest, what) in [
        (&missing_parent, "missing parent"),
        (&folder, "folder"),
        (&dangling, "symlink"),
        (&existing, "existing file"),
    ] {
        let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
        assert_eq!(out.status.code(), Some(12), "{what}: {out:?}");
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "destination-refused", "{what}");
        assert_eq!(v["error"]["step"], "3.1-check-destination", "{what}");
    }
    assert_eq!(std::fs::read_to_string(&existing).unwrap(), "precious");
    assert!(
        std::fs::symlink_metadata(&dangling)
            .unwrap()
            .file_type()
            .is_symlink()
    );
    assert_eq!(
        entries(&dir),
        ["a-folder", "dangling.bak", "existing.bak"],
        "no temporary file left"
    );

    // --force replaces an existing regular file (never a folder or a symlink).
    let out = sb.cli(&["backup", "blog", "--to", existing.as_str(), "--force"]);
    assert_success(&out, "backup --force");
    assert!(
        std::fs::read_to_string(&existing)
            .unwrap()
            .contains("SETTINGS_admin_name=admin")
    );
    let out = sb.cli(&["backup", "blog", "--to", dangling.as_str(), "--force"]);
    assert_eq!(out.status.code(), Some(12));
}

/// Step 3.1 as a user who may not write the destination's folder (root ignores modes, so the
/// controller runs as the unprivileged `aps-test` user made by scripts/ci/test-user.sh). It
/// runs a copy of the binary and of the package in the sandbox: the build folder and the
/// clone may lie in a folder only root can enter.
#[test]
fn unwritable_destination_folder_is_refused() {
    if !support::needs_root("running the controller as aps-test") {
        return;
    }
    let uid = support::tenant::tenant().uid;
    let sb = Sandbox::new();
    let package = support::reachable_tree(&support::fixture("sh-sample"), &sb.root());
    sb.register_from(
        "blog",
        &package,
        &format!("{SH_SETTINGS}behaviour = \"normal\"\n"),
        &[],
    );
    // The unprivileged controller needs its own state folder and read access to the sandbox.
    chown_recursive(&sb.state(), uid);
    std::fs::set_permissions(
        sb.root(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let exe = support::reachable_copy(&support::cli_exe(), &sb.root());
    let dir = backups_dir(&sb); // root's, mode 0755: not writable for aps-test
    let dest = dir.join("blog.bak");
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            &uid.to_string(),
            "--regid",
            &uid.to_string(),
            "--clear-groups",
            "--",
        ])
        .arg(exe)
        .args([
            "backup",
            "blog",
            "--to",
            dest.as_str(),
            "--json",
            "--state-dir",
            sb.state().as_str(),
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(12), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "destination-refused");
    assert!(entries(&dir).is_empty());
    // The refusal closed the journal entry it opened and removed the work folder.
    let open: Vec<String> = entries(&sb.state().join("journal"))
        .into_iter()
        .filter(|n| n.ends_with(".json"))
        .collect();
    assert!(open.is_empty(), "{open:?}");
    assert!(entries(&sb.state().join("work")).is_empty());
}

/// Step 3.3 failure: a script that writes half a file and exits 1 leaves nothing behind, and
/// the error carries its stderr.
#[test]
fn failing_script_leaves_nothing_and_reports_its_stderr() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "fail-after-half");
    let dest = backups_dir(&sb).join("blog.bak");
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed");
    assert_eq!(v["error"]["step"], "3.2-run-script");
    assert!(
        v["error"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("disk quota exceeded")
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("exit code 1")
    );
    assert!(entries(&backups_dir(&sb)).is_empty(), "half file deleted");

    // Human output: the same on stderr.
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str()]);
    assert_eq!(out.status.code(), Some(13));
    assert!(String::from_utf8_lossy(&out.stderr).contains("disk quota exceeded"));
}

#[test]
fn script_killed_by_a_signal_fails_the_backup() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "signal");
    let dest = backups_dir(&sb).join("blog.bak");
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("killed by signal 9"),
        "{v}"
    );
    assert!(entries(&backups_dir(&sb)).is_empty());
}

/// A script that hangs with a child process: on timeout its whole process group is killed,
/// the child too, and the backup rolled back.
#[test]
fn timeout_kills_the_script_and_its_children() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    sb.configure("kill-grace-secs = 1\n");
    let dest = backups_dir(&sb).join("blog.bak");
    let out = sb.cli(&[
        "backup",
        "blog",
        "--to",
        dest.as_str(),
        "--timeout",
        "2",
        "--json",
    ]);
    assert_eq!(out.status.code(), Some(14), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "timed-out");
    let child: i32 = std::fs::read_to_string(www.join(".aps-child.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    assert!(
        !pid_alive(child),
        "child {child} of the script survived the timeout"
    );
    assert!(entries(&backups_dir(&sb)).is_empty());
}

/// kill -9 of the controller mid-run: the destination never appears; the next command rolls
/// the interrupted operation back (its temporary file deleted) and records it.
#[test]
fn killed_controller_is_rolled_back_by_the_next_command() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    sh_instance(&sb, "other", "normal");
    let dir = backups_dir(&sb);
    let dest = dir.join("blog.bak");
    let mut running = sb
        .command(&["backup", "blog", "--to", dest.as_str()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let pid_file = www.join(".aps-child.pid");
    wait_for(|| exists(&pid_file), "the script to start");
    let partial: Vec<String> = entries(&dir);
    assert_eq!(
        partial.len(),
        1,
        "one temporary file while running: {partial:?}"
    );
    // The temporary file is named after the open journal entry that lists it for deletion: the
    // journal knew the name before the file existed, so no kill can orphan it.
    let open: Vec<String> = entries(&sb.state().join("journal"))
        .into_iter()
        .filter_map(|n| n.strip_suffix(".json").map(str::to_owned))
        .collect();
    assert_eq!(open.len(), 1, "one open journal entry: {open:?}");
    assert_eq!(partial[0], format!(".blog.bak{PARTIAL_MARKER}{}", open[0]));
    let entry =
        std::fs::read_to_string(sb.state().join("journal").join(format!("{}.json", open[0])))
            .unwrap();
    assert!(entry.contains(&partial[0]), "the entry lists it: {entry}");
    running.kill().unwrap(); // SIGKILL
    running.wait().unwrap();
    assert!(!exists(&dest));

    let next = sb.cli(&["backup", "other", "--to", dir.join("other.bak").as_str()]);
    assert_success(&next, "next command");
    assert!(
        String::from_utf8_lossy(&next.stderr).contains("interrupted"),
        "the rollback is reported: {}",
        String::from_utf8_lossy(&next.stderr)
    );
    assert_eq!(
        entries(&dir),
        ["other.bak"],
        "leftover removed, destination absent"
    );
    let log = std::fs::read_to_string(sb.state().join("journal.log")).unwrap_or_default()
        + &closed_journal_text(&sb);
    assert!(log.contains("interrupted"), "recorded: {log}");
    // The script's background child outlived the SIGKILLed controller (the parent-death
    // signal reaches only the script): the recovery ended its process group too.
    let child: i32 = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    wait_for(|| !pid_alive(child), "the script's child to be gone");
}

/// One operation per instance: a second backup while one runs is `busy` (exit 15).
#[test]
fn concurrent_backup_of_the_same_instance_is_busy() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    sb.configure("kill-grace-secs = 1\n");
    let dir = backups_dir(&sb);
    let mut first = sb
        .command(&[
            "backup",
            "blog",
            "--to",
            dir.join("one.bak").as_str(),
            "--timeout",
            "5",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    wait_for(
        || exists(www.join(".aps-child.pid")),
        "the first backup's script",
    );
    let second = sb.cli(&[
        "backup",
        "blog",
        "--to",
        dir.join("two.bak").as_str(),
        "--json",
    ]);
    assert_eq!(second.status.code(), Some(15), "{second:?}");
    let v = json(&second);
    assert_eq!(v["error"]["kind"], "busy");
    assert!(v["error"]["message"].as_str().unwrap().contains("busy"));
    let status = first.wait().unwrap();
    assert_eq!(status.code(), Some(14), "the first one times out by itself");
    assert!(entries(&dir).is_empty());
}

/// A lock file whose owner died does not block the next backup.
#[test]
fn stale_lock_of_a_dead_process_is_taken_over() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let locks = sb.state().join("locks");
    std::fs::create_dir_all(&locks).unwrap();
    std::fs::write(
        locks.join("blog.lock"),
        "{\"pid\":999999,\"started\":\"2020-01-01T00:00:00Z\",\"operation\":\"backup\"}",
    )
    .unwrap();
    let out = sb.cli(&[
        "backup",
        "blog",
        "--to",
        backups_dir(&sb).join("b.bak").as_str(),
    ]);
    assert_success(&out, "backup over a stale lock");
}

fn wait_for(mut cond: impl FnMut() -> bool, what: &str) {
    let start = Instant::now();
    while !cond() {
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn closed_journal_text(sb: &Sandbox) -> String {
    let mut text = String::new();
    for dir in [
        sb.state().join("journal"),
        sb.state().join("journal/closed"),
    ] {
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.path().is_file() {
                    text += &std::fs::read_to_string(e.path()).unwrap_or_default();
                }
            }
        }
    }
    text
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}

fn chown_recursive(path: &camino::Utf8Path, uid: u32) {
    let status = std::process::Command::new("chown")
        .args(["-R", &format!("{uid}:{uid}"), path.as_str()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// `structured-output`: the script's XML errors become the operation's error, with the
/// setting they concern; without the flag the same stdout is not interpreted.
#[test]
fn structured_output_errors_are_reported() {
    let sb = Sandbox::new();
    let settings = format!("{SH_SETTINGS}behaviour = \"structured-error\"\n");
    sb.register("structured", "sh-structured", &settings);
    sb.register("plain", "sh-sample", &settings);
    let dest = backups_dir(&sb).join("s.bak");

    let out = sb.cli(&["backup", "structured", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed");
    assert_eq!(v["error"]["step"], "3.2-run-script");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("[admin_name] admin name rejected"),
        "{message}"
    );

    let out = sb.cli(&["backup", "plain", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
    assert!(!message.contains("[admin_name]"), "{message}");
    assert!(entries(&backups_dir(&sb)).is_empty());
}

/// Steps 1 and 1.1 read the package as it is now: a package changed under a registered
/// instance is refused (exit 10) before anything runs or is written, naming the step.
#[test]
fn unusable_package_is_refused_before_anything_runs() {
    let sb = Sandbox::new();
    let pkg = sb.path("pkg");
    let status = std::process::Command::new("cp")
        .args(["-r", support::fixture("sh-sample").as_str(), pkg.as_str()])
        .status()
        .unwrap();
    assert!(status.success());
    let www = sb.path("www");
    std::fs::create_dir_all(&www).unwrap();
    let toml = sb.path("blog.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"blog\"\npackage = \"{pkg}\"\nbase-url = \"http://blog.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n{SH_SETTINGS}"
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", toml.as_str()]),
        "register",
    );
    let dest = backups_dir(&sb).join("blog.bak");

    // 1.1: the declared backup-script is not in scripts/.
    std::fs::remove_file(pkg.join("scripts/backup")).unwrap();
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid-package");
    assert_eq!(v["error"]["step"], "1.1-find-backup-script");
    assert!(v["error"]["message"].as_str().unwrap().contains("backup"));

    // 1: APP-META.xml no longer parses; the error points at the place.
    std::fs::write(pkg.join("APP-META.xml"), "<application><id>x</application>").unwrap();
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(10), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["step"], "1-parse-metadata");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("APP-META.xml") && message.contains(":1:"),
        "{message}"
    );
    assert!(entries(&backups_dir(&sb)).is_empty());
}

/// A `sufficient` script's file with `--recipient`: the controller encrypts it (the script's
/// clear file never reaches the destination folder); restore needs the identity, refuses
/// without it before any change, and gives the script the clear file with it.
#[test]
fn sufficient_backup_is_encrypted_to_recipients_and_restored_with_the_identity() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "normal");
    let (identity, recipient) = support::age_identity(&sb.root());
    let dest = backups_dir(&sb).join("blog.bak.age");
    let out = sb.cli(&[
        "backup",
        "blog",
        "--to",
        dest.as_str(),
        "--recipient",
        &recipient,
        "--json",
    ]);
    assert_success(&out, "backup");
    let bytes = std::fs::read(&dest).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1\n"));
    assert!(
        !String::from_utf8_lossy(&bytes).contains("admin_password"),
        "the script's file is not stored in clear"
    );
    assert_eq!(entries(&backups_dir(&sb)), ["blog.bak.age"]);

    let out = sb.cli(&["restore", "blog", "--from", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("identity")
    );
    assert!(!exists(www.join(".aps-restored-from")), "nothing ran");

    let out = sb.cli(&[
        "restore",
        "blog",
        "--from",
        dest.as_str(),
        "--identity",
        identity.as_str(),
        "--json",
    ]);
    assert_success(&out, "restore");
    let env = env_dump(&www.join(".aps-restored-from"));
    assert_eq!(env["SETTINGS_admin_password"], "pa ss=word");
}
