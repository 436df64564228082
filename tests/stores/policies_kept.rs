//! No policy of panel.toml dropped silently (issue 23, items 2 and 4), through the binary with
//! real databases, a real repository, the loopback S3 server and a real tenant account:
//! the repository store refuses the keys that would do nothing there, `backups` still shows
//! the archives made before the switch, a drill of an encrypted archive without its identity
//! checks what it can and says what it could not, and `identity-file` is held to the rules of
//! the controller's other secrets.

use test_support as support;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use camino::Utf8Path;
use support::{Sandbox, age_identity, assert_success, json, register_without_script};

use test_support::s3_env;

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The last JSON line's `summary` (run, drill).
fn summary(out: &Output) -> serde_json::Value {
    let text = stdout(out);
    let last = text.lines().last().expect("a summary line");
    serde_json::from_str::<serde_json::Value>(last).unwrap()["summary"].clone()
}

fn snapshot_count(sb: &Sandbox) -> usize {
    std::fs::read_dir(sb.state().join("repository/snapshots"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// The usual hosting set-up carried over to the repository store: `[remote]` and
/// `age-recipients` used to be ignored, `run` made a snapshot, uploaded nothing and exited 0.
/// Now panel.toml is refused before any work, naming each key and what to do instead.
#[test]
fn repository_store_refuses_remote_and_age_recipients_before_any_work() {
    let Some(s3) = s3_env::s3_test_env("policies_remote") else {
        return;
    };
    let sb = Sandbox::new();
    sb.use_repository();
    let (_www, _dbs) = register_without_script(&sb, "blog");
    let secret = sb.path("s3-secret");
    std::fs::write(&secret, &s3.secret_key).unwrap();
    let (_identity, recipient) = age_identity(&sb.root());
    std::fs::write(
        sb.state().join("panel.toml"),
        format!(
            "age-recipients = [\"{recipient}\"]\n[store]\nkind = \"repository\"\n\
             [retention]\nkeep = 3\n[remote]\nendpoint = \"{}\"\nbucket = \"{}\"\n\
             prefix = \"{}\"\naccess-key-id = \"{}\"\nsecret-access-key-file = \"{secret}\"\n",
            s3.endpoint, s3.bucket, s3.prefix, s3.access_key
        ),
    )
    .unwrap();
    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    for needle in [
        "panel.toml",
        "line 6: [remote] does not apply to the repository store",
        "nothing would ever be uploaded",
        "put the repository itself in the bucket with [store.s3]",
        "line 1: age-recipients does not apply to the repository store",
        "the repository encrypts every snapshot itself",
        "--recipient",
    ] {
        assert!(message.contains(needle), "{needle:?} in {message}");
    }
    assert_eq!(snapshot_count(&sb), 0, "nothing ran");
    // In text mode too, and for every command reading panel.toml.
    let out = sb.cli(&["backup", "blog"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("[store.s3]"), "{}", stderr(&out));
    assert_eq!(snapshot_count(&sb), 0, "nothing ran");
}

/// Archives made before the switch to the repository store are still listed by `backups`
/// (after the snapshots, marked as the archive store's), and `restore --from` one of them
/// puts the site back.
#[test]
fn backups_lists_the_archives_made_before_the_switch_and_restore_from_one_works() {
    let sb = Sandbox::new();
    let (www, _dbs) = register_without_script(&sb, "blog");
    std::fs::write(www.join("index.html"), "<h1>archived</h1>\n").unwrap();
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "archive backup");
    let archive = json(&out)["file"].as_str().unwrap().to_owned();
    sb.use_repository();
    std::fs::write(www.join("index.html"), "<h1>snapshot</h1>\n").unwrap();
    assert_success(&sb.cli(&["backup", "blog"]), "snapshot");

    let out = sb.cli(&["backups", "blog", "--json"]);
    assert_success(&out, "backups");
    let v = json(&out);
    assert_eq!(v["snapshots"].as_array().unwrap().len(), 1, "{v}");
    let archives = v["archives"].as_array().expect("archives listed");
    assert_eq!(archives.len(), 1, "{v}");
    assert_eq!(archives[0]["path"], archive.as_str(), "{v}");
    assert_eq!(archives[0]["status"], "good", "{v}");
    assert_eq!(
        v["archive_store"],
        sb.state().join("backups").as_str(),
        "{v}"
    );
    let out = sb.cli(&["backups", "blog"]);
    assert_success(&out, "backups (text)");
    let text = stdout(&out);
    assert!(
        text.contains("1 snapshots of blog in repository")
            && text.contains("1 archives of blog in")
            && text.contains("restore one with --from PATH")
            && text.contains(&archive),
        "{text}"
    );
    assert!(
        text.find("snapshots of blog").unwrap() < text.find("archives of blog").unwrap(),
        "snapshots first: {text}"
    );

    std::fs::write(www.join("index.html"), "damaged").unwrap();
    assert_success(
        &sb.cli(&["restore", "blog", "--from", &archive]),
        "restore --from the archive",
    );
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "<h1>archived</h1>\n"
    );
}

fn encrypted_sandbox(extra_toml: &str) -> (Sandbox, std::path::PathBuf, String) {
    let sb = Sandbox::new();
    let (identity, recipient) = age_identity(&sb.root());
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(
        sb.state().join("panel.toml"),
        format!("age-recipients = [\"{recipient}\"]\n{extra_toml}"),
    )
    .unwrap();
    (sb, identity.into_std_path_buf(), recipient)
}

/// A drill without the age identity on the host (as `key generate` advises) no longer fails
/// for want of it: it checks the age header, says what it could not check and how to check
/// it fully, and leaves the staging instance alone. A damaged header fails it.
#[test]
fn drill_of_an_encrypted_archive_without_the_identity_checks_what_it_can() {
    let (sb, _identity, _) = encrypted_sandbox("");
    let (_www, _dbs) = register_without_script(&sb, "site");
    let (staging_www, _staging_dbs) = register_without_script(&sb, "staging");
    std::fs::write(staging_www.join("index.html"), "staging's own").unwrap();
    let out = sb.cli(&["backup", "site", "--json"]);
    assert_success(&out, "encrypted backup");
    let file = json(&out)["file"].as_str().unwrap().to_owned();
    assert!(file.ends_with(".age"), "{file}");

    let out = sb.cli(&["drill", "site", "--staging", "staging", "--json"]);
    assert_success(&out, "drill without the identity");
    let s = summary(&out);
    assert_eq!(s["passed"], true, "{s}");
    assert_eq!(s["complete"], false, "{s}");
    assert_eq!(s["verification"]["method"], "age-header", "{s}");
    let unchecked = s["unchecked"].to_string();
    assert!(
        unchecked.contains("authentication tag") && unchecked.contains("restore"),
        "{s}"
    );
    assert!(
        s["verification"]["detail"]
            .as_str()
            .unwrap()
            .contains("a full drill needs --identity FILE or identity-file in panel.toml"),
        "{s}"
    );
    assert_eq!(
        std::fs::read_to_string(staging_www.join("index.html")).unwrap(),
        "staging's own",
        "nothing was restored"
    );
    let out = sb.cli(&["drill", "site", "--staging", "staging"]);
    assert_success(&out, "drill (text)");
    let text = stdout(&out);
    assert!(
        text.contains("drill site → staging: PARTIAL") && text.contains("not checked"),
        "{text}"
    );

    // A tampered header (its first stanza's type) fails the drill at its check.
    let mut bytes = std::fs::read(&file).unwrap();
    let at = bytes.windows(4).position(|w| w == b"-> X").unwrap();
    bytes[at + 3] = b'\x01';
    std::fs::write(&file, bytes).unwrap();
    let out = sb.cli(&["drill", "site", "--staging", "staging", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stdout(&out));
    let s = summary(&out);
    assert_eq!(s["passed"], false, "{s}");
    assert_eq!(s["failed_step"], "check", "{s}");
    assert_eq!(s["error"]["kind"], "invalid-backup", "{s}");
    assert!(
        s["error"]["message"]
            .as_str()
            .unwrap()
            .contains("age header is damaged"),
        "{s}"
    );
}

/// Runs `sh -c SCRIPT` as the tenant account (its own groups only); whether it succeeded.
fn as_tenant(script: &str) -> bool {
    let tenant = test_support::tenant::tenant();
    Command::new("runuser")
        .args(["-u", &tenant.name, "--", "sh", "-c", script])
        .status()
        .unwrap()
        .success()
}

fn chown(path: &Utf8Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
}

/// `identity-file` is held to the backup key's rules when panel.toml is read: a file a tenant
/// can read (and so decrypt every backup), or in a folder the tenant can change (and so swap
/// what a drill believes), is refused before any work. A private one makes the drill complete
/// and `verify` work without `--identity`.
#[test]
fn identity_file_is_refused_when_a_tenant_could_read_or_replace_it() {
    let tenant = test_support::tenant::tenant();
    let sb = Sandbox::for_tenants();
    sb.configure("");
    let (identity, recipient) = age_identity(&sb.root());
    let secret = std::fs::read_to_string(&identity).unwrap();
    let write_panel = |file: &Utf8Path| {
        std::fs::write(
            sb.state().join("panel.toml"),
            format!("age-recipients = [\"{recipient}\"]\nidentity-file = \"{file}\"\n"),
        )
        .unwrap();
    };

    // Readable by others: the tenant reads the secret key.
    let readable = sb.path("readable-identity.txt");
    std::fs::write(&readable, &secret).unwrap();
    std::fs::set_permissions(&readable, std::fs::Permissions::from_mode(0o644)).unwrap();
    assert!(
        as_tenant(&format!("cat {readable} >/dev/null")),
        "the tenant reads it"
    );
    write_panel(&readable);
    let out = sb.cli(&["backups", "site", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stdout(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!(
            "line 2: identity-file {readable}: its mode is 0644"
        )),
        "{message}"
    );

    // In a folder of the tenant: the tenant swaps the file for its own.
    let theirs = sb.path("tenant-folder");
    std::fs::create_dir(&theirs).unwrap();
    chown(&theirs, tenant.uid, tenant.gid);
    let planted = theirs.join("identity.txt");
    std::fs::write(&planted, &secret).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    assert!(
        as_tenant(&format!("mv {planted} {theirs}/old && echo x > {planted}")),
        "the tenant replaces it"
    );
    // Put back as root's own file, 0600: only the folder is the tenant's.
    std::fs::remove_file(&planted).unwrap();
    std::fs::write(&planted, &secret).unwrap();
    std::fs::set_permissions(&planted, std::fs::Permissions::from_mode(0o600)).unwrap();
    write_panel(&planted);
    let out = sb.cli(&["drill", "site", "--staging", "staging"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains(&format!(
            "identity-file {planted}: the folder {theirs} above it"
        )),
        "{}",
        stderr(&out)
    );

    // A private one, in the controller's own folder: the drill is complete, verify needs no
    // --identity.
    let private = sb.state().join("identity.txt");
    std::fs::write(&private, &secret).unwrap();
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(
        sb.state().join("panel.toml"),
        format!("age-recipients = [\"{recipient}\"]\nidentity-file = \"identity.txt\"\n"),
    )
    .unwrap();
    let (_www, _dbs) = register_without_script(&sb, "site");
    let (_staging_www, _staging_dbs) = register_without_script(&sb, "staging");
    assert_success(&sb.cli(&["backup", "site"]), "encrypted backup");
    let out = sb.cli(&["drill", "site", "--staging", "staging", "--json"]);
    assert_success(&out, "drill with identity-file");
    let s = summary(&out);
    assert_eq!(s["complete"], true, "{s}");
    assert_eq!(s["verification"]["method"], "manifest-counts", "{s}");
    assert_success(
        &sb.cli(&["verify", "--instance", "site"]),
        "verify with identity-file",
    );
}
