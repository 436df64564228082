//! A tenant racing the install in its own web root: a folder the install has just made is
//! swapped, as fast as the tenant can, with a symlink to a folder the tenant must not reach.
//! Whatever the install then does — finish, or fail and undo — nothing is written into that
//! folder, and nothing in it is removed.

use test_support as support;

use super::install::{bulk_package, install_cmd, tenant_sandbox};
use support::tenant::{stop_swapper, swapper, tenant};
use support::{json, needs_root, tree_state};

#[test]
fn a_folder_swapped_for_a_symlink_mid_install_sends_nothing_elsewhere() {
    if !needs_root("the tenant's swapper") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = bulk_package(&sb, "bulk", 40, 50);
    // Someone else's folder, which the tenant's symlink points at.
    let target = sb.path("elsewhere");
    std::fs::create_dir(&target).unwrap();
    std::fs::write(target.join("keep.txt"), "not the tenant's").unwrap();
    let target_before = tree_state(&target, &[]);

    let root = www.join("site");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("mine.txt"), "the tenant's").unwrap();
    support::chown_r(&root, tenant().uid, tenant().gid);
    let stop = sb.path("stop");
    let swapping = swapper(&root.join("bulk"), &root.join("bait"), &target, &stop);
    let out = install_cmd(
        &sb,
        &package,
        "raced",
        &root,
        &["--setting", "admin_password=pw", "--force"],
    )
    .output()
    .unwrap();
    let swaps = stop_swapper(swapping, &stop);
    let v = json(&out);
    assert!(swaps > 0, "the race never ran: {v}");
    assert_eq!(
        tree_state(&target, &[]),
        target_before,
        "the install reached {target}: {v}"
    );
    if v["ok"] == false {
        // Undone: the tenant's file is there, and so is nothing of the install but what the
        // tenant itself renamed out of reach of the undo (`bait`).
        assert!(root.join("mine.txt").is_file(), "{v}");
        for name in ["blogs", "cache", "config.php", "index.html"] {
            assert!(!root.join(name).exists(), "{name} left: {v}");
        }
    }
}
