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
