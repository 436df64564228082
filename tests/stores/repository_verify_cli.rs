//! `aps-controller verify --repository` through the real binary on a real repository: a clean
//! one passes, a pack file damaged on disk is found by reading it back (exit 17, the pack
//! named), a missing one by the structure check alone; mistakes are refused before any work.

use test_support as support;

use camino::Utf8PathBuf;
use support::{Sandbox, assert_success, json};

/// Every pack file of the repository, with its size.
fn packs(repo: &camino::Utf8Path) -> Vec<(Utf8PathBuf, u64)> {
    let mut out = Vec::new();
    for sub in repo.join("data").read_dir_utf8().unwrap() {
        for f in sub.unwrap().path().read_dir_utf8().unwrap() {
            let f = f.unwrap();
            out.push((f.path().to_owned(), f.metadata().unwrap().len()));
        }
    }
    out.sort();
    out
}

#[test]
fn verify_repository_finds_a_damaged_and_a_missing_pack() {
    let sb = Sandbox::new();
    let (www, _dbs) = support::register_without_script(&sb, "blog");

    // Not the repository store: refused, nothing done.
    let out = sb.cli(&["verify", "--repository", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "usage");

    sb.use_repository();
    // A few MiB that do not compress, so that there are several data packs.
    for i in 0..6u8 {
        let body: Vec<u8> = (0..700_000u32)
            .map(|j| (j.wrapping_mul(2_654_435_761) >> (i + 8)) as u8 ^ i)
            .collect();
        std::fs::write(www.join(format!("big{i}.bin")), body).unwrap();
    }
    assert_success(&sb.cli(&["store", "backup", "blog"]), "store backup");

    let out = sb.cli(&["verify", "--repository", "--json"]);
    assert_success(&out, "verify --repository");
    let v = json(&out);
    assert_eq!(v["read_data"], serde_json::json!({"sample": "10%"}), "{v}");
    assert_eq!(v["snapshots"], 1);
    assert_eq!(v["errors"], serde_json::json!([]));
    let out = sb.cli(&["verify", "--repository", "--read-all"]);
    assert_success(&out, "verify --repository --read-all");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("every pack read back"),
        "{out:?}"
    );

    // A mistake in the sample is refused before the repository is opened.
    let out = sb.cli(&["verify", "--repository", "--read-sample", "lots", "--json"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("lots")
    );

    // Damage the biggest pack in its middle; its size stays the same.
    let repo = sb.state().join("repository");
    let (damaged, size) = packs(&repo)
        .into_iter()
        .max_by_key(|(_, size)| *size)
        .unwrap();
    let mut bytes = std::fs::read(&damaged).unwrap();
    let mid = bytes.len() / 2;
    for b in &mut bytes[mid..mid + 64] {
        *b ^= 0x5a;
    }
    std::fs::write(&damaged, &bytes).unwrap();
    assert_eq!(std::fs::metadata(&damaged).unwrap().len(), size);
    let pack_id = damaged.file_name().unwrap();

    // The structure alone cannot see it ...
    assert_success(
        &sb.cli(&["verify", "--repository", "--read-sample", "none"]),
        "verify, structure only",
    );
    // ... reading it back does.
    let out = sb.cli(&["verify", "--repository", "--read-all", "--json"]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    let v = json(&out);
    assert_eq!(v["ok"], false);
    assert_eq!(v["error"]["kind"], "invalid-backup");
    assert_eq!(v["error"]["step"], "check-repository");
    let errors = v["error"]["errors"].as_array().unwrap();
    assert!(
        errors
            .iter()
            .any(|e| e.as_str().unwrap().contains(&pack_id[..8])),
        "the damaged pack {pack_id} is named: {v}"
    );
    let out = sb.cli(&["verify", "--repository", "--read-all"]);
    assert_eq!(out.status.code(), Some(17));
    assert!(String::from_utf8_lossy(&out.stderr).contains("invalid-backup"));
    let out = sb.cli(&["store", "check", "--read-data", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(17),
        "store check says it too: {out:?}"
    );

    // A restore from the damaged snapshot stops while streaming it into the archive it
    // stages, before the controller's restore has touched the instance: invalid-backup, the
    // web folder as it was, no staging folder left.
    std::fs::write(www.join("index.html"), "changed since the backup\n").unwrap();
    let before = std::fs::read_dir(&www).unwrap().count();
    let out = sb.cli(&["restore", "blog", "--latest", "--json"]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "invalid-backup", "{out:?}");
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "changed since the backup\n"
    );
    assert_eq!(std::fs::read_dir(&www).unwrap().count(), before);
    assert!(
        !std::fs::read_dir(sb.state()).unwrap().any(|e| e
            .unwrap()
            .file_name()
            .to_string_lossy()
            .starts_with(".repository-restore-")),
        "staging left behind"
    );

    // A pack that is gone is found without reading any data.
    std::fs::copy(&damaged, sb.path("kept-pack")).unwrap();
    let other = packs(&repo)
        .into_iter()
        .find(|(p, _)| *p != damaged)
        .unwrap()
        .0;
    std::fs::remove_file(&other).unwrap();
    let out = sb.cli(&["verify", "--repository", "--read-sample", "none", "--json"]);
    assert_eq!(out.status.code(), Some(17), "{out:?}");
    let v = json(&out);
    let missing = other.file_name().unwrap();
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&missing[..8]),
        "the missing pack {missing} is named: {v}"
    );
}
