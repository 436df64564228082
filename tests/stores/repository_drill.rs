//! `drill` with the repository store: the newest snapshot of an instance is restored into a
//! registered staging instance through the controller's restore and checked (real binary,
//! real repository, real databases). A snapshot this controller cannot vouch for fails the
//! drill at its restore, with the staging instance untouched.

use test_support as support;

use support::{Sandbox, assert_success, json, register_without_script};

fn repository_sandbox() -> Sandbox {
    let sb = Sandbox::new();
    sb.use_repository();
    sb
}

/// The drill's summary object (the last JSON line).
fn summary(out: &std::process::Output) -> serde_json::Value {
    let text = String::from_utf8_lossy(&out.stdout);
    let last = text.lines().last().expect("drill printed a summary");
    let v: serde_json::Value = serde_json::from_str(last).unwrap();
    v["summary"].clone()
}

#[test]
fn drill_restores_the_newest_snapshot_into_the_staging_instance() {
    let sb = repository_sandbox();
    let (www, _dbs) = register_without_script(&sb, "blog");
    let (staging_www, _staging_dbs) = register_without_script(&sb, "staging");
    std::fs::write(www.join("index.html"), "<h1>first</h1>\n").unwrap();
    assert_success(&sb.cli(&["backup", "blog"]), "first backup");
    std::fs::write(www.join("index.html"), "<h1>newest</h1>\n").unwrap();
    std::fs::create_dir_all(www.join("uploads")).unwrap();
    std::fs::write(www.join("uploads/photo.jpg"), [0xffu8, 0xd8, 0xff]).unwrap();
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_success(&out, "second backup");
    let newest = json(&out)["snapshot"]["id"].as_str().unwrap().to_owned();

    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_success(&out, "drill");
    let s = summary(&out);
    assert_eq!(s["passed"], true, "{s}");
    assert_eq!(s["store"], "repository", "{s}");
    assert!(
        s["backup"].as_str().unwrap().contains(&newest[..8]),
        "the newest snapshot is drilled: {s}"
    );
    // The staging instance now holds the newest snapshot's web folder.
    assert_eq!(
        std::fs::read_to_string(staging_www.join("index.html")).unwrap(),
        "<h1>newest</h1>\n"
    );
    assert_eq!(
        std::fs::read(staging_www.join("uploads/photo.jpg")).unwrap(),
        [0xffu8, 0xd8, 0xff]
    );
    // The staging folders the drill used are gone.
    let leftovers: Vec<_> = std::fs::read_dir(sb.state())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .starts_with(".repository-restore-")
        })
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

#[test]
fn a_snapshot_under_another_key_fails_the_drill_at_its_restore() {
    let sb = repository_sandbox();
    let (_www, _dbs) = register_without_script(&sb, "blog");
    let (staging_www, _staging_dbs) = register_without_script(&sb, "staging");
    assert_success(&sb.cli(&["backup", "blog"]), "backup");
    let before = std::fs::read(staging_www.join("index.html")).unwrap();
    // As if the snapshot had been made by someone else: this controller's key changes.
    let key = sb.state().join("backup-key");
    let text = std::fs::read_to_string(&key).unwrap();
    let other: String = text
        .chars()
        .map(|c| match c.to_digit(16) {
            Some(d) => char::from_digit((d + 1) % 16, 16).unwrap(),
            None => c,
        })
        .collect();
    std::fs::write(&key, other).unwrap();

    let out = sb.cli(&["drill", "blog", "--staging", "staging", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(1),
        "a failed drill exits 1: {out:?}"
    );
    let s = summary(&out);
    assert_eq!(s["passed"], false, "{s}");
    assert_eq!(s["failed_step"], "restore", "{s}");
    assert_eq!(s["error"]["kind"], "untrusted-backup", "{s}");
    assert_eq!(
        std::fs::read(staging_www.join("index.html")).unwrap(),
        before,
        "the staging instance is untouched"
    );
}
