//! A tenant's code never runs with the controller's rights: real attacks by package scripts
//! run through the real binary, as root, against instances owned by the real non-root
//! accounts `aps-tenant1` and `aps-tenant2` (made by scripts/ci/test-user.sh).

use test_support as support;

use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Command;

use aps_controller::account::Account;
use camino::{Utf8Path, Utf8PathBuf};
use support::{Sandbox, assert_success, exists, fixture, json, pid_alive};

const SETTINGS: &str = "[settings]\nadmin_password = \"correct horse\"\n";

/// The backup-script of the attacking package: it reports who it runs as, tries to read a
/// root-only file and another tenant's configuration, and leaves two processes behind that
/// escape its process group (`setsid`) and its parent (double fork); with `big` in the web
/// folder it writes 3 MB instead; with `hang` it detaches one process, notes its pid in the
/// web folder and hangs. Restore fails when the web folder holds `fail-restore`,
/// else copies the file into the web folder.
const ATTACK: &str = r#"#!/bin/sh
case "$1" in
backup)
  if [ -e "$WEB___DIR/hang" ]; then
    setsid sleep 1000 </dev/null >/dev/null 2>&1 &
    echo "$!" > "$WEB___DIR/detached.pid"
    exec sleep 1000
  fi
  if [ -e "$WEB___DIR/big" ]; then head -c 3000000 /dev/zero > "$BACKUP_FILE"; exit 0; fi
  {
    echo "uid=$(id -u)"
    echo "home=$HOME"
    if cat "$ROOT_SECRET" 2>/dev/null; then echo "root-secret=READ"; else echo "root-secret=denied"; fi
    if cat "$OTHER_CONFIG" 2>/dev/null; then echo "other=READ"; else echo "other=denied"; fi
  } > "$BACKUP_FILE"
  setsid sleep 1000 </dev/null >/dev/null 2>&1 &
  echo "setsid=$!" >> "$BACKUP_FILE"
  ( sleep 1000 </dev/null >/dev/null 2>&1 & echo "grandchild=$!" >> "$BACKUP_FILE" )
  exit 0 ;;
restore)
  [ -e "$WEB___DIR/fail-restore" ] && { echo "refusing to restore" >&2; exit 1; }
  cp "$BACKUP_FILE" "$WEB___DIR/restored-by-script" || exit 1
  mkdir -p "$WEB___DIR/made-by-script" && echo x > "$WEB___DIR/made-by-script/f"
  exit 0 ;;
esac
exit 2
"#;

fn tenant(name: &str) -> Option<Account> {
    if !support::needs_root("the tenant-account tests") {
        return None;
    }
    let status = Command::new(support::repo().join("scripts/ci/test-user.sh"))
        .status()
        .unwrap();
    assert!(status.success());
    Some(Account::lookup(name, None).expect("test-user.sh makes the tenant accounts"))
}

fn chown_r(path: &Utf8Path, account: &Account) {
    let out = Command::new("chown")
        .arg("-R")
        .arg(format!("{}:{}", account.uid, account.gid))
        .arg(path.as_str())
        .output()
        .unwrap();
    assert_success(&out, "chown -R");
}

/// A copy of sh-sample whose backup-script is [`ATTACK`], inside the sandbox.
fn attack_package(sb: &Sandbox) -> Utf8PathBuf {
    let pkg = sb.path("attack-pkg");
    let out = Command::new("cp")
        .args(["-R", fixture("sh-sample").as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let script = pkg.join("scripts/backup");
    std::fs::write(&script, ATTACK).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    pkg
}

/// Registers `name` from `package` with the web folder `www-NAME` owned by `owner` (mode
/// 0750), `extra` top-level INSTANCE.toml lines and `tables` at the end; returns the web
/// folder.
fn register(
    sb: &Sandbox,
    name: &str,
    package: &Utf8Path,
    owner: &Account,
    extra: &str,
    tables: &str,
) -> Utf8PathBuf {
    let www = sb.path(&format!("www-{name}"));
    std::fs::create_dir_all(www.join("cache")).unwrap();
    std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n")).unwrap();
    std::os::unix::fs::symlink("index.html", www.join("home.html")).unwrap();
    chown_r(&www, owner);
    std::fs::set_permissions(&www, std::fs::Permissions::from_mode(0o750)).unwrap();
    let file = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\npackage = \"{package}\"\nbase-url = \"http://{name}.example.test/\"\n\
             {extra}[web-dirs]\n\"/\" = \"{www}\"\n{SETTINGS}{tables}"
        ),
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str()]);
    assert_success(&out, "instance register");
    www
}

fn lines(path: &Utf8Path) -> std::collections::BTreeMap<String, String> {
    support::env_dump(path)
}

/// Every folder under the state folder is 0700 and every file 0600 (no group or other bit).
fn assert_private(state: &Utf8Path, when: &str) {
    for entry in walkdir(state) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(
            meta.mode() & 0o077,
            0,
            "{when}: {entry} has mode {:o}",
            meta.mode() & 0o7777
        );
    }
}

fn walkdir(dir: &Utf8Path) -> Vec<Utf8PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let p = out[i].clone();
        if std::fs::symlink_metadata(&p).unwrap().is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                out.push(Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap());
            }
        }
        i += 1;
    }
    out
}

/// The script runs as the instance's account (the owner of its root web folder, recorded at
/// registration and shown by `instance show`); it cannot read a root-only file nor another
/// tenant's web folder; what it detached is gone when the backup returns — with the run's
/// cgroup and with the subreaper fallback alike, and with a backup into the repository store.
#[test]
fn scripts_run_as_the_instance_account_and_reach_nothing_else() {
    let (Some(t1), Some(t2)) = (tenant("aps-tenant1"), tenant("aps-tenant2")) else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let pkg = attack_package(&sb);
    let secret = sb.path("root-secret");
    std::fs::write(&secret, "ROOT-ONLY-SECRET\n").unwrap();
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o600)).unwrap();
    let www2 = register(&sb, "two", &pkg, &t2, "user = \"aps-tenant2\"\n", "");
    std::fs::write(www2.join("wp-config.php"), "TENANT-TWO-PASSWORD\n").unwrap();
    chown_r(&www2, &t2);
    let www1 = register(&sb, "one", &pkg, &t1, "", "");
    let _ = www1;
    // The scripts are told where the targets are through settings-free variables: the
    // environment is the standard's, so the paths are baked into the script instead.
    let script = pkg.join("scripts/backup");
    let text = ATTACK
        .replace("$ROOT_SECRET", secret.as_str())
        .replace("$OTHER_CONFIG", www2.join("wp-config.php").as_str());
    std::fs::write(&script, text).unwrap();

    let shown = sb.cli(&["instance", "show", "one", "--json"]);
    assert_success(&shown, "instance show");
    assert_eq!(
        json(&shown)["user"],
        "aps-tenant1",
        "recorded owner of the web folder"
    );

    let store = sb.path("store");
    std::fs::create_dir(&store).unwrap();
    for (run, no_cgroup) in [("cgroup", false), ("subreaper", true)] {
        let dest = store.join(format!("one-{run}.tar"));
        let mut cmd = sb.command(&["backup", "one", "--to", dest.as_str(), "--json"]);
        if no_cgroup {
            cmd.env("APS_CONTROLLER_NO_CGROUP", "1");
        }
        let out = cmd.output().unwrap();
        assert_success(&out, "backup");
        let seen = lines(&dest);
        assert_eq!(seen["uid"], t1.uid.to_string(), "{run}: {seen:?}");
        assert!(seen["home"].starts_with("/tmp/aps-run-"), "{seen:?}");
        assert_eq!(seen["root-secret"], "denied", "{seen:?}");
        assert_eq!(seen["other"], "denied", "{seen:?}");
        let content = std::fs::read_to_string(&dest).unwrap();
        assert!(!content.contains("ROOT-ONLY-SECRET") && !content.contains("TENANT-TWO"));
        for leftover in ["setsid", "grandchild"] {
            let pid: i32 = seen[leftover].parse().unwrap();
            assert!(
                !pid_alive(pid),
                "{run}: the {leftover} process {pid} outlived the backup"
            );
        }
        // The backup is the controller's: root's, 0600.
        let meta = std::fs::metadata(&dest).unwrap();
        assert_eq!((meta.uid(), meta.mode() & 0o777), (0, 0o600));
        assert!(!exists(&seen["home"]), "the run folder is removed");
    }
    assert_private(&sb.state(), "after a backup");

    // The same attack when the backup goes into the repository store: the script's file in
    // the snapshot says the same, and nothing it detached survives.
    sb.use_repository();
    let out = sb.cli(&["backup", "one", "--json"]);
    assert_success(&out, "backup into the repository");
    let staged = sb.path("staged-one");
    let out = sb.cli(&[
        "store",
        "restore",
        "one",
        "--latest",
        "--to",
        staged.as_str(),
    ]);
    assert_success(&out, "store restore");
    let file = staged.join("script-backup");
    let seen = lines(&file);
    assert_eq!(seen["uid"], t1.uid.to_string(), "repository: {seen:?}");
    assert_eq!(seen["root-secret"], "denied", "{seen:?}");
    assert_eq!(seen["other"], "denied", "{seen:?}");
    let content = std::fs::read_to_string(&file).unwrap();
    assert!(!content.contains("ROOT-ONLY-SECRET") && !content.contains("TENANT-TWO"));
    for leftover in ["setsid", "grandchild"] {
        let pid: i32 = seen[leftover].parse().unwrap();
        assert!(
            !pid_alive(pid),
            "repository: the {leftover} process {pid} outlived the backup"
        );
    }
}

/// What a restore writes belongs to the instance's account, whether the controller or the
/// script wrote it; the state folder stays private after a restore and a failed one.
#[test]
fn restored_files_belong_to_the_instance_account() {
    let Some(t1) = tenant("aps-tenant1") else {
        return;
    };
    let Some(dbs) = support::databases("tenant") else {
        eprintln!("no test database servers");
        return;
    };
    let sb = Sandbox::for_tenants();
    // The controller's archive (no backup-script; the dump and load tools run as the
    // tenant too) ...
    let tables = format!(
        "{}{}",
        support::db_toml("main", &dbs.mysql),
        support::db_toml("stats", &dbs.pg)
    );
    let www = register(&sb, "plain", &fixture("nobackup-sample"), &t1, "", &tables);
    let store = sb.path("store");
    std::fs::create_dir(&store).unwrap();
    let archive = store.join("plain.tar");
    assert_success(
        &sb.cli(&["backup", "plain", "--to", archive.as_str()]),
        "backup",
    );
    std::fs::remove_file(www.join("index.html")).unwrap();
    assert_success(
        &sb.cli(&["restore", "plain", "--from", archive.as_str()]),
        "restore",
    );
    assert!(www.join("index.html").is_file());
    for entry in walkdir(&www) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(meta.uid(), t1.uid, "{entry} is not the tenant's");
    }
    assert_private(&sb.state(), "after a restore");

    // ... and a script's own restore.
    let pkg = attack_package(&sb);
    let www = register(&sb, "scripted", &pkg, &t1, "", "");
    let file = store.join("scripted.tar");
    assert_success(
        &sb.cli(&["backup", "scripted", "--to", file.as_str()]),
        "backup",
    );
    assert_success(
        &sb.cli(&["restore", "scripted", "--from", file.as_str()]),
        "restore",
    );
    for entry in walkdir(&www) {
        let meta = std::fs::symlink_metadata(&entry).unwrap();
        assert_eq!(meta.uid(), t1.uid, "{entry} is not the tenant's");
    }
    assert!(www.join("restored-by-script").is_file());

    // A failed restore is rolled back; nothing it left is readable by others either.
    std::fs::write(www.join("fail-restore"), "").unwrap();
    let out = sb.cli(&["restore", "scripted", "--from", file.as_str(), "--json"]);
    assert!(!out.status.success());
    assert_eq!(json(&out)["error"]["kind"], "script-failed");
    assert_private(&sb.state(), "after a failed restore");
}

/// An instance whose account is root is refused before anything runs, unless controller.toml
/// allows it explicitly.
#[test]
fn a_root_owned_instance_is_refused_before_anything_runs() {
    if tenant("aps-tenant1").is_none() {
        return;
    }
    let sb = Sandbox::for_tenants();
    let www = sb.register("rooted", "sh-sample", SETTINGS);
    assert_eq!(std::fs::metadata(&www).unwrap().uid(), 0);
    let store = sb.path("store");
    std::fs::create_dir(&store).unwrap();
    let dest = store.join("rooted.tar");
    let out = sb.cli(&["backup", "rooted", "--to", dest.as_str(), "--json"]);
    assert_eq!(
        out.status.code(),
        Some(20),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "account-refused");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("allow-root-scripts"),
        "{v}"
    );
    assert!(support::entries(&store).is_empty(), "nothing was written");
    assert!(
        !exists(sb.state().join("work")) || support::entries(&sb.state().join("work")).is_empty()
    );

    sb.configure("allow-root-scripts = true\n");
    let out = sb.cli(&["backup", "rooted", "--to", dest.as_str(), "--json"]);
    assert_success(&out, "backup with allow-root-scripts");
}

/// `[limits] max-file-size-mb` bounds what a script may write (RLIMIT_FSIZE): a backup that
/// grows past it fails and leaves nothing; the same instance under a larger per-instance
/// bound succeeds.
#[test]
fn the_file_size_bound_stops_a_growing_backup() {
    let Some(t1) = tenant("aps-tenant1") else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let pkg = attack_package(&sb);
    let www = register(&sb, "big", &pkg, &t1, "", "");
    std::fs::write(www.join("big"), "").unwrap();
    sb.configure("allow-root-scripts = false\n[limits]\nmax-file-size-mb = 1\n");
    let store = sb.path("store");
    std::fs::create_dir(&store).unwrap();
    let dest = store.join("big.tar");
    let out = sb.cli(&["backup", "big", "--to", dest.as_str(), "--json"]);
    assert!(!out.status.success());
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed", "{v}");
    // The script's `head` was killed (SIGXFSZ) but the script went on and exited 0: the
    // controller still refuses the file that reached the bound.
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("max-file-size-mb"),
        "{v}"
    );
    assert!(support::entries(&store).is_empty());

    sb.configure(
        "allow-root-scripts = false\n[limits]\nmax-file-size-mb = 1\n\
         [limits.instances.big]\nmax-file-size-mb = 4\n",
    );
    let out = sb.cli(&["backup", "big", "--to", dest.as_str(), "--json"]);
    assert_success(&out, "backup under the instance's own bound");
    assert_eq!(std::fs::metadata(&dest).unwrap().len(), 3_000_000);
}

/// A controller killed during a backup leaves the script's detached processes in the run's
/// cgroup; the next controller to start ends them.
#[test]
fn what_a_killed_controller_left_running_is_ended_by_the_next_start() {
    let Some(t1) = tenant("aps-tenant1") else {
        return;
    };
    let sb = Sandbox::for_tenants();
    let pkg = attack_package(&sb);
    let www = register(&sb, "hangs", &pkg, &t1, "", "");
    register(&sb, "other", &pkg, &t1, "", "");
    std::fs::write(www.join("hang"), "").unwrap();
    let store = sb.path("store");
    std::fs::create_dir(&store).unwrap();
    let mut controller = sb
        .command(&["backup", "hangs", "--to", store.join("h.tar").as_str()])
        .spawn()
        .unwrap();
    let pid_file = www.join("detached.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let detached: i32 = loop {
        if let Some(pid) = std::fs::read_to_string(&pid_file)
            .ok()
            .and_then(|t| t.trim().parse().ok())
        {
            break pid;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the script never started"
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    controller.kill().unwrap();
    controller.wait().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(200));
    // The detached process outlives the killed controller (its parent-death signal reached only
    // the script). Not asserted: any controller that starts meanwhile (other tests run in
    // parallel) may already have ended it, which is the behaviour under test.

    let out = sb.cli(&["backup", "other", "--to", store.join("o.tar").as_str()]);
    assert_success(&out, "backup by the next controller");
    assert!(
        !pid_alive(detached),
        "the next start ended the detached process {detached}"
    );
}
