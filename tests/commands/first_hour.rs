//! Issue 23, items 5, 7 and 8, through the real binary: S3 keys refused before any request,
//! a signal after the backup is committed keeps it, durations cover the whole command, name
//! reservations of killed backups are removed and never listed, and each wrong message of
//! the issue now says the exact thing, with its kind and exit code.

use test_support as support;
use test_support::s3_env;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use support::{Sandbox, assert_success, entries, exists, json};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

fn sh_instance(sb: &Sandbox, name: &str, behaviour: &str) -> camino::Utf8PathBuf {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"{behaviour}\"\n"),
    )
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The failure's kind, exit code and message, checked together.
fn assert_failure(out: &std::process::Output, kind: &str, code: i32, words: &[&str]) {
    let v = json(out);
    assert_eq!(v["ok"], false, "{v}");
    assert_eq!(v["error"]["kind"], kind, "{v}");
    assert_eq!(out.status.code(), Some(code), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    for w in words {
        assert!(message.contains(w), "{w:?} in {message}");
    }
}

#[test]
fn s3_without_keys_is_refused_before_any_request_naming_the_key() {
    let Some(s3) = s3_env::s3_test_env("first_hour_keys") else {
        return;
    };
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let remote = format!(
        "[remote]\nendpoint = \"{}\"\nbucket = \"{}\"\nprefix = \"{}\"\n",
        s3.endpoint, s3.bucket, s3.prefix
    );
    let panel = sb.state().join("panel.toml");
    let cli = |args: &[&str]| {
        sb.command(args)
            .env_remove("AWS_ACCESS_KEY_ID")
            .env_remove("AWS_SECRET_ACCESS_KEY")
            .output()
            .unwrap()
    };

    // No key at all: the client would have asked 169.254.169.254 for one.
    std::fs::write(&panel, &remote).unwrap();
    let out = cli(&["backups", "blog", "--json"]);
    assert_failure(
        &out,
        "usage",
        2,
        &[
            "no access key given",
            "access-key-id in [remote]",
            "panel.toml",
        ],
    );
    assert!(
        !text(&out.stdout).contains("169.254"),
        "{}",
        text(&out.stdout)
    );
    let out = cli(&["backup", "blog"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("use-instance-metadata = true"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !exists(sb.state().join("backups/blog")),
        "nothing was backed up"
    );

    // A key id but an empty secret file, then an unreadable one.
    let secret = sb.path("secret");
    std::fs::write(&secret, "\n").unwrap();
    std::fs::write(
        &panel,
        format!("{remote}access-key-id = \"AK\"\nsecret-access-key-file = \"{secret}\"\n"),
    )
    .unwrap();
    let out = cli(&["backups", "blog", "--json"]);
    assert_failure(&out, "usage", 2, &["secret-access-key-file", "is empty"]);
    std::fs::remove_file(&secret).unwrap();
    let out = cli(&["backups", "blog", "--json"]);
    assert_failure(
        &out,
        "usage",
        2,
        &["secret-access-key-file", "cannot be read"],
    );

    // The repository in a bucket: the same check, naming [store.s3].
    std::fs::write(
        &panel,
        format!(
            "[store]\nkind = \"repository\"\n[store.s3]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
             prefix = \"{}repo\"\naccess-key-id = \"{}\"\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.access_key
        ),
    )
    .unwrap();
    let out = cli(&["store", "init", "--json"]);
    assert_failure(
        &out,
        "usage",
        2,
        &[
            "no secret access key given",
            "secret-access-key-file in [store.s3]",
        ],
    );

    // The keys given: it works, through the real server.
    std::fs::write(&secret, format!("{}\n", s3.secret_key)).unwrap();
    std::fs::write(
        &panel,
        format!(
            "{remote}access-key-id = \"{}\"\nsecret-access-key-file = \"{secret}\"\n",
            s3.access_key
        ),
    )
    .unwrap();
    assert_success(&cli(&["backups", "blog", "--json"]), "backups with keys");
}

/// Holds `<state>/journal/.log.lock`, which the controller takes to write its journal's log:
/// a command that needs it waits there, deterministically, until the guard is dropped.
fn hold_journal_log(sb: &Sandbox) -> std::fs::File {
    let dir = sb.state().join("journal");
    std::fs::create_dir_all(&dir).unwrap();
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(dir.join(".log.lock"))
        .unwrap();
    f.lock().unwrap();
    f
}

#[test]
fn a_signal_after_the_backup_is_committed_keeps_it_and_says_so() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    let dest = sb.path("blog.aps.tar.zst");
    // The backup blocks on the journal's log after its file is in place.
    let held = hold_journal_log(&sb);
    let mut child = sb
        .command(&["backup", "blog", "--to", dest.as_str(), "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !exists(&dest) {
        std::thread::sleep(Duration::from_millis(10));
    }
    let status = std::process::Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // Progress lines come first; the signal's own line says it was handled.
    let mut line = String::new();
    loop {
        let mut l = String::new();
        assert!(
            stderr.read_line(&mut l).unwrap() > 0,
            "stderr ended: {line}"
        );
        line.push_str(&l);
        if l.contains("received") {
            break;
        }
    }
    drop(held);
    let out = child.wait_with_output().unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut stderr, &mut rest).unwrap();
    let stderr = line + &rest;
    assert!(
        stderr.contains("SIGINT received after the backup was committed: the backup is kept"),
        "{stderr}"
    );
    assert!(!stderr.contains("rolling back"), "{stderr}");
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["ok"], true, "{v}");
    assert!(exists(&dest), "the committed backup is kept");
    assert_success(
        &sb.cli(&["verify", "--instance", "blog", "--json"]),
        "verify",
    );
}

#[test]
fn after_kill_9_the_reservation_goes_and_durations_cover_the_whole_command() {
    let sb = Sandbox::new();
    let www = sh_instance(&sb, "blog", "hang-with-child");
    sh_instance(&sb, "other", "normal");
    // A backup into the store, killed while its script runs.
    let mut killed = sb
        .command(&["backup", "blog"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    while !exists(www.join(".aps-child.pid")) {
        std::thread::sleep(Duration::from_millis(20));
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    let store = sb.state().join("backups/blog");
    assert!(
        entries(&store)
            .iter()
            .any(|e| e.ends_with(".aps-partial-reserved")),
        "the killed backup left its name reservation: {:?}",
        entries(&store)
    );

    // The next command recovers; it waits on the journal's log while we hold it, which its
    // reported duration must include.
    let held = hold_journal_log(&sb);
    let started = Instant::now();
    let child = sb
        .command(&["backup", "other", "--json"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_millis(1500));
    let held_for = started.elapsed();
    drop(held);
    let out = child.wait_with_output().unwrap();
    assert_success(&out, "backup other");
    let v = json(&out);
    let reported = v["duration_ms"].as_u64().unwrap();
    assert!(
        reported >= held_for.as_millis() as u64 - 100,
        "reported {reported} ms, the command ran at least {held_for:?}"
    );
    assert!(
        text(&out.stderr).contains("name reservation of a backup that was killed"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !entries(&store)
            .iter()
            .any(|e| e.ends_with(".aps-partial-reserved")),
        "{:?}",
        entries(&store)
    );
    let out = sb.cli(&["backups", "blog", "--json"]);
    assert_success(&out, "backups");
    assert!(
        !text(&out.stdout).contains("partial"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn wrong_messages_of_the_first_hour_are_exact() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");

    // An unknown instance is instance-not-found, also with --latest.
    let out = sb.cli(&["restore", "ghost", "--latest", "--json"]);
    assert_failure(&out, "instance-not-found", 4, &["ghost"]);

    // A --from file that is not there is a wrong argument, not a damaged backup; in text
    // mode the hint is printed too.
    let missing = sb.path("nope.aps.tar.zst");
    let out = sb.cli(&["restore", "blog", "--from", missing.as_str(), "--json"]);
    assert_failure(&out, "usage", 2, &["--from", "no such file"]);
    let out = sb.cli(&["restore", "blog", "--from", missing.as_str()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("hint: `aps-controller backups blog` lists"),
        "{}",
        text(&out.stderr)
    );

    // --to naming a folder inside a folder everyone may write (/tmp's mode): the folder is
    // the mistake.
    let shared = sb.path("shared");
    std::fs::create_dir_all(shared.join("backups")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&shared, std::fs::Permissions::from_mode(0o1777)).unwrap();
    let out = sb.cli(&[
        "backup",
        "blog",
        "--to",
        shared.join("backups").as_str(),
        "--json",
    ]);
    assert_failure(&out, "destination-refused", 12, &["is a folder"]);

    // panel.toml and controller.toml mistakes: the file, the line and the key, never the
    // parser's rendering.
    let panel = sb.state().join("panel.toml");
    for (toml, words) in [
        (
            "[remote]\nendpoint = \"http://127.0.0.1:1\"\nregion = \"x\"\n",
            &["panel.toml", "line 1", "[remote]", "missing key `bucket`"][..],
        ),
        (
            "compression = \"zstd\"\njobs = \"four\"\n",
            &["panel.toml", "line 2", "key `jobs`", "invalid type"][..],
        ),
    ] {
        std::fs::write(&panel, toml).unwrap();
        let out = sb.cli(&["backups", "blog", "--json"]);
        assert_failure(&out, "usage", 2, words);
        let message = json(&out)["error"]["message"].as_str().unwrap().to_owned();
        assert!(
            !message.contains("TOML parse error") && !message.contains('|'),
            "{message}"
        );
    }
    std::fs::remove_file(&panel).unwrap();
    sb.configure("[limits]\nmax-file-size-mb = \"big\"\n");
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_failure(
        &out,
        "usage",
        2,
        &[
            "controller.toml",
            "line 3",
            "key `max-file-size-mb` in [limits]",
        ],
    );
}

#[test]
fn an_ambiguous_snapshot_id_says_so_and_lists_the_candidates() {
    let sb = Sandbox::new();
    sh_instance(&sb, "blog", "normal");
    sb.use_repository();
    // Snapshots until two ids begin with the same character (at most 17 by pigeonhole).
    let mut ids: Vec<String> = Vec::new();
    let prefix = loop {
        let out = sb.cli(&["backup", "blog", "--json"]);
        assert_success(&out, "backup");
        let id = json(&out)["snapshot"]["id"].as_str().unwrap().to_owned();
        if let Some(other) = ids.iter().find(|o| o[..1] == id[..1]) {
            let _ = other;
            break id[..1].to_owned();
        }
        ids.push(id);
    };
    let out = sb.cli(&["restore", "blog", "--snapshot", &prefix, "--json"]);
    assert_failure(&out, "usage", 2, &["is ambiguous", "give more characters"]);
    assert!(
        !json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("has no snapshot"),
        "{}",
        json(&out)
    );
}
