//! One store (issue "one front door"): `backup NAME` writes into the backup store under the
//! standard name, `--to FILE` is recorded there, and `backups`, `verify --instance`,
//! `restore --latest` and `drill` see both; every mistake is refused before any work, with the
//! README's exit code. Through the real binary, on the real sh fixture package.

use test_support as support;

use camino::{Utf8Path, Utf8PathBuf};
use serde_json::Value;

use support::{Sandbox, age_identity, assert_success, json};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

fn sh(sb: &Sandbox, name: &str) -> Utf8PathBuf {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"normal\"\n"),
    )
}

fn panel_toml(sb: &Sandbox, text: &str) {
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(sb.state().join("panel.toml"), text).unwrap();
}

fn stderr(out: &std::process::Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Every file under the store's folder of `instance`, sorted (none when it does not exist).
fn store_dir(sb: &Sandbox, instance: &str) -> Vec<String> {
    let dir = sb.state().join("backups").join(instance);
    let mut v: Vec<String> = std::fs::read_dir(&dir)
        .map(|d| {
            d.map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

fn backups(sb: &Sandbox, instance: &str) -> Vec<Value> {
    let out = sb.cli(&["backups", instance, "--json"]);
    assert_success(&out, "backups --json");
    json(&out)["backups"].as_array().unwrap().clone()
}

#[test]
fn backup_name_goes_into_the_store_and_restore_latest_takes_the_newest() {
    let sb = Sandbox::new();
    let www = sh(&sb, "blog");
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "backup blog");
    let first = json(&out);
    assert_eq!(first["ok"], true);
    let first_file = first["file"].as_str().unwrap().to_owned();
    let prefix = sb.state().join("backups/blog/blog_manual_");
    assert!(
        first_file.starts_with(prefix.as_str()) && first_file.ends_with(".aps.tar.zst"),
        "{first}"
    );
    assert_eq!(first["stored_as"].as_str(), first_file.rsplit('/').next());

    // At once again: very likely the same second, and still another name.
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "second backup blog");
    let second_file = json(&out)["file"].as_str().unwrap().to_owned();
    assert_ne!(first_file, second_file);
    assert!(Utf8Path::new(&first_file).is_file() && Utf8Path::new(&second_file).is_file());
    assert_eq!(
        store_dir(&sb, "blog").len(),
        2,
        "no reservation left behind"
    );

    // `backups` lists both, newest first, with full paths (human output too).
    let listed = backups(&sb, "blog");
    let paths: Vec<&str> = listed.iter().map(|e| e["path"].as_str().unwrap()).collect();
    assert_eq!(paths, [second_file.as_str(), first_file.as_str()]);
    assert_eq!(listed[0]["periodicity"], "manual");
    assert_eq!(listed[0]["external"], false);
    let out = sb.cli(&["backups", "blog"]);
    assert_success(&out, "backups");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(&second_file),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    // restore --latest restores the newest one (the sh fixture copies it into the web root).
    std::fs::write(www.join("index.html"), "changed").unwrap();
    let out = sb.cli(&["restore", "blog", "--latest", "--json"]);
    assert_success(&out, "restore --latest");
    assert_eq!(json(&out)["file"], second_file.as_str());
    assert_eq!(
        std::fs::read(www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&second_file).unwrap()
    );
    // --from takes a path `backups` printed, as it is.
    let out = sb.cli(&["restore", "blog", "--from", &first_file, "--json"]);
    assert_success(&out, "restore --from");
    assert_eq!(
        std::fs::read(www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&first_file).unwrap()
    );
    assert_success(
        &sb.cli(&["verify", "--instance", "blog"]),
        "verify --instance",
    );
}

#[test]
fn a_backup_to_a_file_is_recorded_and_seen_by_backups_verify_restore_and_drill() {
    let sb = Sandbox::new();
    let www = sh(&sb, "blog");
    let staging_www = sh(&sb, "staging");
    let elsewhere = sb.path("elsewhere");
    std::fs::create_dir_all(&elsewhere).unwrap();
    let to = elsewhere.join("blog.aps.tar.zst");
    let out = sb.cli(&["backup", "blog", "--to", to.as_str(), "--json"]);
    assert_success(&out, "backup --to");
    let v = json(&out);
    assert_eq!(v["file"], to.as_str(), "written exactly there");
    let record = Utf8PathBuf::from(v["record"].as_str().unwrap());
    assert!(
        record.starts_with(sb.state().join("backups/blog")),
        "{record}"
    );
    assert_eq!(
        std::fs::read_to_string(&record).unwrap().trim(),
        to.as_str()
    );

    let listed = backups(&sb, "blog");
    assert_eq!(listed.len(), 1, "{listed:?}");
    assert_eq!(listed[0]["path"], to.as_str());
    assert_eq!(listed[0]["external"], true);
    assert_eq!(listed[0]["status"], "good");
    assert_eq!(listed[0]["size"], std::fs::metadata(&to).unwrap().len());

    let out = sb.cli(&["verify", "--instance", "blog", "--json"]);
    assert_success(&out, "verify --instance");
    assert_eq!(json(&out)["file"], to.as_str());

    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_success(&out, "drill");
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(last["summary"]["backup"], to.as_str(), "{last}");
    assert_eq!(
        std::fs::read(staging_www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&to).unwrap()
    );

    let out = sb.cli(&["restore", "blog", "--latest", "--json"]);
    assert_success(&out, "restore --latest");
    assert_eq!(json(&out)["file"], to.as_str());
    assert!(www.join(".aps-restored-from").is_file());

    // The file went away: listed as missing, and no longer the latest good backup.
    std::fs::remove_file(&to).unwrap();
    assert_eq!(backups(&sb, "blog")[0]["status"], "missing");
    let out = sb.cli(&["restore", "blog", "--latest", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("no good backup"),
        "{v}"
    );
}

#[test]
fn store_backups_follow_panel_toml_compression_and_recipients() {
    let sb = Sandbox::new();
    sh(&sb, "blog");
    let (identity, recipient) = age_identity(&sb.root());
    panel_toml(
        &sb,
        &format!("compression = \"gzip\"\nage-recipients = [\"{recipient}\"]\n"),
    );
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "backup");
    let file = json(&out)["file"].as_str().unwrap().to_owned();
    assert!(file.ends_with(".aps.tar.gz.age"), "{file}");
    let bytes = std::fs::read(&file).unwrap();
    assert!(bytes.starts_with(b"age-encryption.org/v1"), "encrypted");

    // --to applies them too, and warns when the name says otherwise.
    let to = sb.path("plain-name.aps.tar.zst");
    let out = sb.cli(&["backup", "blog", "--to", to.as_str(), "--json"]);
    assert_success(&out, "backup --to");
    let v = json(&out);
    let warning = v["warnings"][0].as_str().unwrap();
    assert!(
        warning.contains(".aps.tar.zst") && warning.contains(".aps.tar.gz.age"),
        "{warning}"
    );
    assert!(stderr(&out).contains("warning:"), "{}", stderr(&out));
    assert!(
        std::fs::read(&to)
            .unwrap()
            .starts_with(b"age-encryption.org/v1")
    );

    // The key from panel.toml's pair opens it.
    let out = sb.cli(&[
        "verify",
        "--instance",
        "blog",
        "--identity",
        identity.as_str(),
    ]);
    assert_success(&out, "verify with the identity");
}

#[test]
fn key_generate_makes_a_pair_that_encrypts_and_decrypts_a_backup() {
    let sb = Sandbox::new();
    let www = sh(&sb, "blog");
    let key = sb.path("backup-key.txt");
    let out = sb.cli(&["key", "generate", "--out", key.as_str(), "--json"]);
    assert_success(&out, "key generate");
    let v = json(&out);
    let recipient = v["recipient"].as_str().unwrap().to_owned();
    assert!(recipient.starts_with("age1"), "{v}");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    // Never overwritten.
    let out = sb.cli(&["key", "generate", "--out", key.as_str()]);
    assert_eq!(out.status.code(), Some(2));

    let out = sb.cli(&["backup", "blog", "--recipient", &recipient, "--json"]);
    assert_success(&out, "backup --recipient");
    let file = json(&out)["file"].as_str().unwrap().to_owned();
    assert!(file.ends_with(".age"), "{file}");
    std::fs::write(www.join("index.html"), "changed").unwrap();
    let out = sb.cli(&["restore", "blog", "--latest", "--identity", key.as_str()]);
    assert_success(&out, "restore with the generated identity");
}

/// Each mistake is refused before any work: nothing written into the store, the README's code.
#[test]
fn mistakes_are_refused_before_any_work_with_their_exit_code() {
    let sb = Sandbox::new();
    let www = sh(&sb, "blog");
    let refused = |args: &[&str], code: i32, kind: &str, needle: &str| {
        let mut all = args.to_vec();
        all.push("--json");
        let out = sb.cli(&all);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {}", stderr(&out));
        let v = json(&out);
        assert_eq!(v["ok"], false, "{args:?}");
        assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(needle), "{args:?}: {message}");
        if let Some(step) = v["error"]["step"].as_str() {
            assert!(!message.contains(&format!("step {step}")), "{message}");
        }
    };
    refused(
        &["backup", "blog", "--recipient", "age1notakey"],
        2,
        "usage",
        "--recipient",
    );
    refused(
        &["backup", "blog", "--timeout", "0"],
        2,
        "usage",
        "--timeout",
    );
    refused(
        &["backup", "Not_A_Name"],
        2,
        "usage",
        "not an instance name",
    );
    refused(&["backup", "nosuch"], 4, "instance-not-found", "nosuch");
    refused(&["backups", "nosuch"], 4, "instance-not-found", "nosuch");
    refused(
        &["verify", "--instance", "nosuch"],
        4,
        "instance-not-found",
        "nosuch",
    );
    refused(
        &["run", "--periodicity", "daily", "--instance", "nosuch"],
        4,
        "instance-not-found",
        "nosuch",
    );
    refused(
        &["restore", "blog", "--latest"],
        2,
        "usage",
        "no good backup",
    );
    let inside = www.join("backup.aps.tar.zst");
    refused(
        &["backup", "blog", "--to", inside.as_str()],
        12,
        "destination-refused",
        "web folder",
    );
    assert!(!inside.exists());
    assert!(
        store_dir(&sb, "blog").is_empty(),
        "{:?}",
        store_dir(&sb, "blog")
    );

    // A store inside the web folder: `backup` refuses it, `run` fails the instance for it.
    panel_toml(&sb, &format!("store = \"{www}\"\n"));
    refused(&["backup", "blog"], 12, "destination-refused", "web folder");
    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let last: Value =
        serde_json::from_str(String::from_utf8_lossy(&out.stdout).lines().last().unwrap()).unwrap();
    assert_eq!(
        last["summary"]["instances"][0]["error"]["kind"], "destination-refused",
        "{last}"
    );
    assert!(
        !www.join("blog").exists(),
        "nothing written into the web folder"
    );

    // A bad recipient in panel.toml stops every backup command before it starts.
    panel_toml(&sb, "age-recipients = [\"age1notakey\"]\n");
    refused(&["backup", "blog"], 2, "usage", "age-recipients");
    refused(
        &["run", "--periodicity", "daily"],
        2,
        "usage",
        "age-recipients",
    );
    assert!(store_dir(&sb, "blog").is_empty());

    // A store named in panel.toml must exist: it is not created silently.
    let missing = sb.path("no-such-store");
    panel_toml(&sb, &format!("store = \"{missing}\"\n"));
    refused(&["backup", "blog"], 2, "usage", "does not exist");
    refused(
        &["run", "--periodicity", "daily"],
        2,
        "usage",
        "does not exist",
    );
    assert!(!missing.exists());
}

#[test]
fn a_damaged_archive_is_invalid_backup_17() {
    let sb = Sandbox::new();
    sh(&sb, "blog");
    // A zstd frame header and then nothing: a truncated archive.
    let file = sb.path("truncated.aps.tar.zst");
    std::fs::write(&file, [0x28, 0xb5, 0x2f, 0xfd, 0x04, 0x58, 0x45, 0x00]).unwrap();
    let out = sb.cli(&["verify", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(17), "{}", stderr(&out));
    assert_eq!(json(&out)["error"]["kind"], "invalid-backup");
    // A file that does not exist is the caller's mistake, not a damaged backup.
    let out = sb.cli(&["verify", sb.path("absent.aps.tar").as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
}

#[test]
fn registration_refuses_a_web_folder_that_does_not_exist_with_every_problem() {
    let sb = Sandbox::new();
    let file = sb.path("ghost.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"ghost\"\npackage = \"{}\"\nbase-url = \"http://ghost.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{}\"\n[settings]\nadmin_name = \"admin\"\n",
            support::fixture("sh-sample"),
            sb.path("no-such-www")
        ),
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage");
    let problems: Vec<&str> = v["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap())
        .collect();
    // The missing folder and the missing settings, in one answer.
    assert!(
        problems
            .iter()
            .any(|p| p.contains("no-such-www") && p.contains("does not exist")),
        "{problems:?}"
    );
    assert!(
        problems
            .iter()
            .any(|p| p.contains("settings.admin_password")),
        "{problems:?}"
    );
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_eq!(json(&out)["instances"], serde_json::json!([]));
}

#[test]
fn an_instance_file_with_mistyped_keys_gets_every_one_back_with_line_and_guess() {
    let sb = Sandbox::new();
    let file = sb.path("typo.toml");
    std::fs::write(
        &file,
        "name = \"typo\"\npackge = \"/x\"\nbase-url = \"http://t/\"\n[web-dir]\n\"/\" = \"/tmp\"\n",
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let v = json(&out);
    let problems = v["error"]["problems"].as_array().unwrap();
    let text: Vec<&str> = problems.iter().map(|p| p.as_str().unwrap()).collect();
    assert!(
        text.iter()
            .any(|p| p.starts_with("line 2: unknown key `packge`")
                && p.contains("did you mean `package`?")),
        "{text:?}"
    );
    assert!(
        text.iter()
            .any(|p| p.contains("`web-dir`") && p.contains("did you mean `web-dirs`?")),
        "{text:?}"
    );
    assert!(
        text.iter().any(|p| p.contains("missing key `package`")),
        "{text:?}"
    );
}

/// Two `run`s one after the other (as a timer and an operator may start them), very likely in
/// the same second: both succeed, each with its own file (the second gets `.2` within one
/// second; panel's store::local tests that case with a fixed time). They never run at once on
/// one instance: the instance's lock answers `busy` to the second.
#[test]
fn two_runs_in_one_second_never_collide() {
    let sb = Sandbox::new();
    sh(&sb, "blog");
    for _ in 0..2 {
        assert_success(&sb.cli(&["run", "--periodicity", "daily"]), "run");
    }
    let files = store_dir(&sb, "blog");
    assert_eq!(files.len(), 2, "{files:?}");
    assert!(
        files.iter().all(|f| f.starts_with("blog_daily_")),
        "{files:?}"
    );
}
