use super::*;
use crate::process::read_stat;

#[test]
fn own_process_is_alive_and_stat_parses() {
    let (state, start) = read_stat(std::process::id()).unwrap();
    assert!(state != 'Z');
    assert!(start > 0);
}

#[test]
fn undo_action_json_shape() {
    let json = serde_json::to_string(&UndoAction::RestoreSnapshot {
        snapshot: "/s/snap.tar".into(),
        instance: "blog".into(),
    })
    .unwrap();
    assert_eq!(
        json,
        r#"{"restore_snapshot":{"snapshot":"/s/snap.tar","instance":"blog"}}"#
    );
    let json = serde_json::to_string(&UndoAction::DeleteFile("/t/x".into())).unwrap();
    assert_eq!(json, r#"{"delete_file":"/t/x"}"#);
}

#[test]
fn remove_empty_dir_keeps_a_folder_that_still_holds_something_and_follows_no_symlink() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = camino::Utf8Path::from_path(tmp.path()).unwrap().to_owned();
    let action = |name: &str| UndoAction::RemoveEmptyDir {
        dir: dir.clone(),
        name: name.into(),
    };
    std::fs::create_dir_all(dir.join("full")).unwrap();
    std::fs::write(dir.join("full/tenant.txt"), "mine").unwrap();
    std::fs::create_dir(dir.join("empty")).unwrap();
    std::fs::create_dir(dir.join("target")).unwrap();
    std::os::unix::fs::symlink(dir.join("target"), dir.join("link")).unwrap();
    for name in ["full", "empty", "gone", "link"] {
        let result = undo_on_disk(&action(name)).unwrap();
        if name == "link" {
            assert!(result.is_err(), "a symlink is not a folder to remove");
        } else {
            result.unwrap();
        }
    }
    assert!(dir.join("full/tenant.txt").is_file());
    assert!(!dir.join("empty").exists());
    assert!(dir.join("target").is_dir() && dir.join("link").is_symlink());
    assert!(undo_on_disk(&action("../x")).unwrap().is_err());
}
