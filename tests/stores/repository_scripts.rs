//! Packages with a backup-script in the repository store: the script's file goes into the
//! snapshot beside the controller's dumps and web folders (sh-databases, not `sufficient`), or
//! is the whole snapshot (sh-sample, `sufficient`), and a restore hands it back to the script
//! exactly as a restore from an archive does. A failing or interrupted script leaves no
//! snapshot and nothing in the state folder.

use test_support as support;
use test_support::restore_kit as kit;

use std::process::Output;

use camino::Utf8Path;
use serde_json::Value;
use support::{Sandbox, assert_success, json};

fn cli(sb: &Sandbox, args: &[&str]) -> Output {
    let mut all = args.to_vec();
    all.push("--json");
    sb.cli(&all)
}

/// The snapshot's files (relative paths), written out by `store restore` into `dir`.
fn snapshot_files(sb: &Sandbox, name: &str, dir: &Utf8Path) -> Vec<String> {
    let out = cli(
        sb,
        &["store", "restore", name, "--latest", "--to", dir.as_str()],
    );
    assert_success(&out, "store restore");
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let path = camino::Utf8PathBuf::try_from(e.path()).unwrap();
            if e.file_type().unwrap().is_dir() {
                pending.push(path);
            } else {
                files.push(path.strip_prefix(dir).unwrap().to_string());
            }
        }
    }
    files.sort();
    files
}

fn snapshots(sb: &Sandbox, name: &str) -> Vec<Value> {
    let out = cli(sb, &["store", "snapshots", name]);
    assert_success(&out, "store snapshots");
    json(&out)["snapshots"].as_array().unwrap().clone()
}

fn records(sb: &Sandbox) -> Vec<String> {
    std::fs::read_dir(sb.state().join("backup-records"))
        .map(|rd| {
            rd.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}

/// Not `sufficient`: the snapshot holds both dumps, the web folder and the script's file
/// (the standard's environment it was run with); a restore brings the files and rows back and
/// hands the script its own file.
#[test]
fn a_script_file_is_kept_beside_the_resources_and_handed_back_on_restore() {
    let sb = Sandbox::new();
    sb.use_repository();
    let Some(inst) = kit::db_instance(&sb, "shop", kit::Site::default()) else {
        return;
    };
    inst.populate();
    let before = inst.state();
    let out = cli(&sb, &["backup", "shop"]);
    assert_success(&out, "backup shop");
    assert_eq!(json(&out)["snapshot"]["instance"], "shop");

    let staged = sb.path("staged");
    let files = snapshot_files(&sb, "shop", &staged);
    for expected in [
        "databases/main.sql",
        "databases/stats.sql",
        "manifest.json",
        "manifest.tag",
        "script-backup",
    ] {
        assert!(files.iter().any(|f| f == expected), "{expected}: {files:?}");
    }
    assert!(files.iter().any(|f| f.starts_with("web/")), "{files:?}");
    let script_file = std::fs::read_to_string(staged.join("script-backup")).unwrap();
    assert!(
        script_file.contains("SETTINGS_admin_password=pw"),
        "{script_file}"
    );
    let manifest: Value =
        serde_json::from_slice(&std::fs::read(staged.join("manifest.json")).unwrap()).unwrap();
    let last = manifest["parts"]
        .as_array()
        .unwrap()
        .last()
        .unwrap()
        .clone();
    assert_eq!(last["name"], "script-backup");
    assert_eq!(last["kind"]["type"], "script_backup");
    assert_eq!(last["size"], script_file.len());

    inst.damage();
    assert_ne!(inst.state(), before);
    let out = cli(&sb, &["restore", "shop", "--latest"]);
    assert_success(&out, "restore shop --latest");
    kit::assert_same(
        &inst.state().without_script_traces(),
        &before,
        "after the restore",
    );
    assert_eq!(
        std::fs::read_to_string(inst.www.join(".aps-restored-from")).unwrap(),
        script_file,
        "the script got back the file it wrote"
    );
    kit::assert_nothing_left_open(&sb.state());
}

/// `sufficient`: the snapshot is the script's file and the manifest, nothing else; a restore
/// gives the file to the script as a `sufficient` archive-store backup would be given, and the
/// record the controller's restore needs for it is not left behind.
#[test]
fn a_sufficient_script_file_is_the_whole_snapshot_and_restores_through_the_script() {
    let sb = Sandbox::new();
    sb.use_repository();
    let www = sb.register(
        "blog",
        "sh-sample",
        "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pa ss=word\"\nsite_title = \"Demo\"\n",
    );
    let out = cli(&sb, &["backup", "blog"]);
    assert_success(&out, "backup blog");
    let staged = sb.path("staged");
    assert_eq!(
        snapshot_files(&sb, "blog", &staged),
        ["manifest.json", "manifest.tag", "script-backup"]
    );
    let script_file = std::fs::read_to_string(staged.join("script-backup")).unwrap();
    assert!(
        script_file.contains("SETTINGS_site_title=Demo"),
        "{script_file}"
    );
    assert!(records(&sb).is_empty(), "{:?}", records(&sb));

    std::fs::write(www.join("index.html"), "changed\n").unwrap();
    let out = cli(&sb, &["restore", "blog", "--latest"]);
    assert_success(&out, "restore blog --latest");
    assert_eq!(
        std::fs::read_to_string(www.join(".aps-restored-from")).unwrap(),
        script_file
    );
    // The script restores; the controller's own copy of the web folder is not part of a
    // sufficient backup (as with an archive-store one), so the change stays.
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "changed\n"
    );
    assert!(records(&sb).is_empty(), "{:?}", records(&sb));
    kit::assert_nothing_left_open(&sb.state());
}

/// A backup-script that fails (it wrote half a file and exits 1) fails the backup with
/// `script-failed` before anything reaches the repository: no snapshot, no work folder, no
/// open journal entry.
#[test]
fn a_failing_script_leaves_no_snapshot_and_nothing_behind() {
    let sb = Sandbox::new();
    sb.use_repository();
    let Some(inst) = kit::db_instance(
        &sb,
        "shopfail",
        kit::Site {
            behaviour: "fail-after-half",
            ..Default::default()
        },
    ) else {
        return;
    };
    inst.populate();
    let out = cli(&sb, &["backup", "shopfail"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("disk quota exceeded"),
        "{v}"
    );
    assert!(snapshots(&sb, "shopfail").is_empty());
    kit::assert_nothing_left_open(&sb.state());
}
