//! One state folder a person can predict (issue 23, item 1): root's default is where the
//! shipped systemd units and crontab look; every command can say which folder it uses and why
//! (`config show`, `instance register`, `run`, `--help`); `config check` names every problem.
//! Real processes of the real binary, as root and as the real account `aps-tenant1`; the real
//! /var/lib/aps-controller is only ever looked at, never written.

use test_support as support;

use std::os::unix::process::CommandExt;
use std::process::{Command, Output};

use aps_controller::account::Account;
use serde_json::Value;

use support::{Sandbox, assert_success, repo};

const ROOT_STATE: &str = "/var/lib/aps-controller";

fn bare(args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_aps-controller"));
    c.args(args)
        .env_remove("APS_CONTROLLER_STATE_DIR")
        .env_remove("XDG_STATE_HOME");
    c
}

fn json_of(out: &Output) -> Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `Environment=APS_CONTROLLER_STATE_DIR=…` of a unit, or the crontab's variable line.
fn state_dir_named_in(text: &str) -> Option<String> {
    text.lines()
        .map(|l| l.trim().trim_start_matches("Environment="))
        .find_map(|l| l.strip_prefix("APS_CONTROLLER_STATE_DIR="))
        .map(str::to_owned)
}

/// The trap: root registered into ~/.local/state while the timer looked in
/// /var/lib/aps-controller, and backed up nothing. Now root's default (no flag, no variable,
/// whatever $XDG_STATE_HOME says) is the folder every shipped unit and the crontab name.
#[test]
fn roots_default_state_folder_is_where_the_shipped_timer_looks() {
    assert!(
        // SAFETY: geteuid has no preconditions.
        unsafe { libc::geteuid() } == 0,
        "the integration tests run as root (scripts/test)"
    );
    let sb = Sandbox::new();
    let existed = std::path::Path::new(ROOT_STATE).exists();
    let out = bare(&["config", "show", "--json"])
        .env("HOME", sb.root().as_str())
        .env("XDG_STATE_HOME", sb.path("xdg").as_str())
        .output()
        .unwrap();
    assert_success(&out, "config show");
    let v = json_of(&out);
    assert_eq!(v["state_dir"], ROOT_STATE, "{v}");
    assert_eq!(v["state_source"], "default-root", "{v}");
    // Showing is not registering: nothing was made there.
    assert_eq!(std::path::Path::new(ROOT_STATE).exists(), existed);

    let mut named = Vec::new();
    for entry in std::fs::read_dir(repo().join("examples/systemd")).unwrap() {
        let path = entry.unwrap().path();
        let text = std::fs::read_to_string(&path).unwrap();
        if text.contains("ExecStart=/usr/local/bin/aps-controller")
            || text.contains("ExecStop=/usr/local/bin/aps-controller")
        {
            named.push((path.display().to_string(), state_dir_named_in(&text)));
        }
    }
    let crontab = std::fs::read_to_string(repo().join("examples/crontab")).unwrap();
    named.push(("examples/crontab".into(), state_dir_named_in(&crontab)));
    assert!(named.len() >= 4, "{named:?}");
    for (file, dir) in &named {
        assert_eq!(dir.as_deref(), Some(ROOT_STATE), "{file}");
    }

    // The top-level help says it too.
    let help = bare(&["--help"])
        .env("HOME", sb.root().as_str())
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(
        help.contains(
            "State folder (without --state-dir): /var/lib/aps-controller (the default for root)"
        ),
        "{help}"
    );
}

/// Anyone else keeps $XDG_STATE_HOME/aps-controller, else ~/.local/state/aps-controller: the
/// real account aps-tenant1 runs the binary.
#[test]
fn other_users_keep_their_xdg_state_folder() {
    let sb = Sandbox::for_tenants();
    let tenant = Account::lookup("aps-tenant1", None)
        .expect("user aps-tenant1 is missing: run scripts/ci/test-user.sh");
    let as_tenant = |xdg: Option<&str>| {
        let mut c = bare(&["config", "show", "--json"]);
        c.env("HOME", sb.root().as_str())
            .current_dir("/")
            .uid(tenant.uid)
            .gid(tenant.gid);
        if let Some(x) = xdg {
            c.env("XDG_STATE_HOME", x);
        }
        let out = c.output().unwrap();
        assert_success(&out, "config show as aps-tenant1");
        json_of(&out)
    };
    let v = as_tenant(Some("/srv/xdg"));
    assert_eq!(v["state_dir"], "/srv/xdg/aps-controller", "{v}");
    assert_eq!(v["state_source"], "xdg-state-home", "{v}");
    let v = as_tenant(None);
    assert_eq!(
        v["state_dir"],
        sb.path(".local/state/aps-controller").as_str(),
        "{v}"
    );
    assert_eq!(v["state_source"], "default-home", "{v}");
}

/// `register` says where the record went; `run` says where it looked, and warns (stderr, which
/// cron mails) when nothing is registered there instead of backing up nothing in silence.
#[test]
fn register_and_run_name_the_state_folder_and_an_empty_one_is_said() {
    let sb = Sandbox::new();
    // An empty state folder, chosen by the variable as a unit's Environment= does.
    let empty = sb.path("elsewhere");
    let out = bare(&["run", "--periodicity", "daily"])
        .env("APS_CONTROLLER_STATE_DIR", empty.as_str())
        .output()
        .unwrap();
    assert_success(&out, "run on an empty state folder");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&format!(
            "warning: no instance is registered in the state folder {empty} (from $APS_CONTROLLER_STATE_DIR): nothing to back up"
        )),
        "{stderr}"
    );

    let www = sb.path("www-blog");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>blog</h1>\n").unwrap();
    let file = sb.path("blog.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"blog\"\npackage = \"{}\"\nbase-url = \"http://blog.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_name = \"admin\"\n\
             admin_password = \"pw\"\nsite_title = \"Demo\"\nbehaviour = \"normal\"\n",
            support::fixture("sh-sample")
        ),
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str()]);
    assert_success(&out, "register");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!(
            "registered instance blog in the state folder {} (from --state-dir)",
            sb.state()
        )
    );
    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_success(&out, "run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.starts_with(&format!(
            "backup daily: 1 ok, 0 failed (state folder {} (from --state-dir))",
            sb.state()
        )),
        "{stdout}"
    );
    assert!(
        out.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    let last: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    assert_eq!(last["summary"]["state_dir"], sb.state().as_str(), "{last}");
    assert_eq!(last["summary"]["state_source"], "flag", "{last}");
}

/// `config show` tells a value from the file from a default; `config check` names every
/// problem of both files (exit 2) and a damaged registry record (exit 1), file, line and key.
#[test]
fn config_show_and_check_say_where_each_value_and_problem_is() {
    let sb = Sandbox::new();
    sb.register(
        "blog",
        "sh-sample",
        "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\nbehaviour = \"normal\"\n",
    );
    std::fs::write(sb.state().join("panel.toml"), "compression = \"gzip\"\n").unwrap();
    let out = sb.cli(&["config", "show", "--json"]);
    assert_success(&out, "config show");
    let v = json_of(&out);
    assert_eq!(v["instances"], 1, "{v}");
    let value = |file: &str, key: &str| -> Value {
        v[file]["values"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["key"] == key)
            .cloned()
            .unwrap_or_else(|| panic!("no {key} in {v}"))
    };
    assert_eq!(
        value("panel_toml", "compression"),
        serde_json::json!({"key": "compression", "value": "gzip", "source": "file"})
    );
    assert_eq!(value("panel_toml", "jobs")["source"], "default");
    // Sandbox::new's controller.toml allows root scripts.
    assert_eq!(
        value("controller_toml", "allow-root-scripts"),
        serde_json::json!({"key": "allow-root-scripts", "value": "true", "source": "file"})
    );
    assert_eq!(value("controller_toml", "timeout-secs")["value"], "3600");
    assert_eq!(
        v["store"],
        format!("archive store in {}/backups", sb.state()),
        "{v}"
    );
    let text = sb.cli(&["config", "show"]);
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.starts_with(&format!(
            "state folder {} (from --state-dir)\ninstances: 1 registered\n",
            sb.state()
        )),
        "{text}"
    );

    let out = sb.cli(&["config", "check"]);
    assert_success(&out, "config check");

    // Both files wrong: both named, with line and key; nothing else runs.
    let controller = std::fs::read_to_string(sb.state().join("controller.toml")).unwrap();
    std::fs::write(
        sb.state().join("controller.toml"),
        format!("{controller}kill-grace-secs = \"ten\"\n"),
    )
    .unwrap();
    std::fs::write(sb.state().join("panel.toml"), "jobs = 0\n").unwrap();
    let out = sb.cli(&["config", "check", "--json"]);
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v = json_of(&out);
    assert_eq!(v["error"]["kind"], "usage");
    let problems: Vec<String> = v["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert!(
        problems[0].contains("controller.toml")
            && problems[0].contains("key `kill-grace-secs`")
            && problems[0].contains("line "),
        "{problems:?}"
    );
    assert!(
        problems[1].contains("panel.toml") && problems[1].contains("jobs must be at least 1"),
        "{problems:?}"
    );
    let out = sb.cli(&["config", "show"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("hint: `aps-controller config check`"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // The files fixed, a damaged record: the registry's problem (exit 1), naming the file.
    std::fs::write(sb.state().join("controller.toml"), controller).unwrap();
    std::fs::remove_file(sb.state().join("panel.toml")).unwrap();
    let record = sb.state().join("instances/blog.json");
    std::fs::write(&record, "{ not json").unwrap();
    let out = sb.cli(&["config", "check"]);
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with("error [internal]: 1 problem(s)") && stderr.contains(record.as_str()),
        "{stderr}"
    );
}
