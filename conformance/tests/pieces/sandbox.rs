//! The sandbox: made, removed, kept, and a crashed run's leftovers swept.

use std::os::unix::fs::MetadataExt;

use aps_conformance::sandbox::{
    Ending, Sandbox, SandboxOptions, is_sandbox_name, remove_named, sweep,
};

use crate::{base, user_exists};

#[test]
fn a_sandbox_is_an_account_with_a_home_and_web_root_and_leaves_nothing() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let base = base();
    let options = SandboxOptions {
        base: base.path.clone(),
        keep: false,
    };
    let sandbox = Sandbox::create(&options).unwrap();
    let name = sandbox.name().to_owned();
    assert!(is_sandbox_name(&name), "{name}");
    let account = sandbox.account().clone();
    assert!(account.uid != 0 && account.gid != 0);
    assert!(user_exists(&name));
    for (dir, mode) in [(sandbox.home(), 0o750), (sandbox.web_root(), 0o755)] {
        let meta = std::fs::symlink_metadata(dir).unwrap();
        assert!(meta.is_dir());
        assert_eq!(
            (meta.uid(), meta.gid()),
            (account.uid, account.gid),
            "{dir}"
        );
        assert_eq!(meta.mode() & 0o7777, mode, "{dir}");
    }
    assert!(sandbox.web_root().starts_with(sandbox.home()));
    // Something the account left in /tmp is the sandbox's too.
    let left = camino::Utf8PathBuf::from(format!("/tmp/{name}-left"));
    crate::sh_as(
        account.uid,
        account.gid,
        &format!("echo x > {left}"),
        sandbox.home(),
    );
    let home = sandbox.home().to_owned();

    let ending = sandbox.finish().unwrap();
    assert_eq!(ending, Ending::Removed { name: name.clone() });
    assert!(!user_exists(&name), "the account is gone");
    assert!(!home.exists(), "the home is gone");
    assert!(!left.exists(), "its file in /tmp is gone");
    let group = std::fs::read_to_string("/etc/group").unwrap();
    assert!(!group.lines().any(|l| l.starts_with(&format!("{name}:"))));
    let rest: Vec<_> = base.path.read_dir_utf8().unwrap().collect();
    assert!(rest.is_empty(), "nothing left in the base folder: {rest:?}");
}

#[test]
fn a_kept_sandbox_says_where_it_is_and_is_removed_by_name_not_by_a_sweep() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let base = base();
    let options = SandboxOptions {
        base: base.path.clone(),
        keep: true,
    };
    let sandbox = Sandbox::create(&options).unwrap();
    let name = sandbox.name().to_owned();
    let (home, web_root) = (sandbox.home().to_owned(), sandbox.web_root().to_owned());
    let ending = sandbox.finish().unwrap();
    assert_eq!(
        ending,
        Ending::Kept {
            name: name.clone(),
            home: home.clone(),
            web_root
        }
    );
    assert!(user_exists(&name) && home.is_dir());
    assert_eq!(sweep(&base.path).unwrap(), Vec::<String>::new());
    assert!(user_exists(&name), "a sweep leaves a kept sandbox");

    assert!(remove_named(&base.path, &name).unwrap());
    assert!(!user_exists(&name) && !home.exists());
    assert!(
        !remove_named(&base.path, &name).unwrap(),
        "nothing left to remove"
    );
}

#[test]
fn a_crashed_runs_sandbox_is_swept_and_a_live_one_is_not() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    let base = base();
    // What a run killed with -9 right after making its account and home leaves: the account,
    // the home, and a lock file nobody holds.
    let crashed = "aps-conf-dead00beef";
    let home = base.path.join(crashed);
    let status = std::process::Command::new("useradd")
        .args(["--system", "--user-group", "--no-create-home", "--home-dir"])
        .arg(home.as_str())
        .args(["--shell", "/usr/sbin/nologin", crashed])
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::create_dir(&home).unwrap();
    std::fs::write(base.path.join(format!(".{crashed}.lock")), b"").unwrap();

    let live = Sandbox::create(&SandboxOptions {
        base: base.path.clone(),
        keep: false,
    })
    .unwrap();
    let swept = sweep(&base.path).unwrap();
    assert_eq!(swept, vec![crashed.to_owned()]);
    assert!(!user_exists(crashed) && !home.exists());
    assert!(user_exists(live.name()), "the live run's sandbox stays");
    assert!(live.home().is_dir());
    assert_eq!(
        sweep(&base.path).unwrap(),
        Vec::<String>::new(),
        "idempotent"
    );
    let name = live.name().to_owned();
    drop(live);
    assert!(!user_exists(&name), "dropped without finish: removed too");
}

#[test]
fn a_base_others_may_write_into_is_refused() {
    if !test_support::needs_root("making accounts") {
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let base = base();
    std::fs::set_permissions(&base.path, std::fs::Permissions::from_mode(0o777)).unwrap();
    let err = Sandbox::create(&SandboxOptions {
        base: base.path.clone(),
        keep: false,
    })
    .unwrap_err();
    assert!(
        err.to_string().contains("others may write into it"),
        "{err}"
    );
}
