//! One JSON envelope: every command of the real binary, on success and on failure, with
//! `--json`; every line it prints is checked against docs/envelope.schema.json (a JSON Schema
//! validator, `boon`), and the commands run here are checked to be every command `--help`
//! lists, so that a new command without a test of its JSON fails here.

use test_support as support;

use std::collections::BTreeSet;
use std::process::Output;

use serde_json::{Value, json};

use support::schema::Envelope as Schema;
use support::{Sandbox, fixture, repo};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

/// Runs one command with `--json`; every stdout line must be one schema-valid object, the
/// last one the envelope with `ok` as expected, and the exit code 0 exactly when `ok`.
struct Checker {
    schema: &'static Schema,
    covered: BTreeSet<String>,
}

impl Checker {
    fn run(&mut self, sb: &Sandbox, args: &[&str], ok: bool) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        let out: Output = sb.cli(&all);
        let what = format!("{args:?}");
        let stdout = String::from_utf8_lossy(&out.stdout);
        let lines: Vec<Value> = stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l).unwrap_or_else(|e| {
                    panic!(
                        "{what}: stdout line is not JSON ({e}): {l}\nstderr: {}",
                        String::from_utf8_lossy(&out.stderr)
                    )
                })
            })
            .collect();
        assert!(
            !lines.is_empty(),
            "{what}: nothing on stdout; stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        for line in &lines {
            self.schema
                .check(&what, line)
                .unwrap_or_else(|e| panic!("{e}"));
        }
        if lines.len() > 1 {
            for line in &lines {
                assert!(
                    line["type"].is_string(),
                    "{what}: a JSON line without type: {line}"
                );
            }
        }
        let last = lines.last().unwrap().clone();
        assert_eq!(last["ok"], ok, "{what}: {last}");
        assert_eq!(
            out.status.success(),
            ok,
            "{what}: exit {:?} for {last}",
            out.status.code()
        );
        // The covered command: the words before the first option or argument.
        let words: Vec<&str> = args
            .iter()
            .take_while(|a| !a.starts_with('-'))
            .copied()
            .collect();
        let name = match words.as_slice() {
            [
                group @ ("instance" | "package" | "key" | "store" | "config"),
                sub,
                ..,
            ]
            | [group @ "backup", sub @ "import", ..] => {
                format!("{group} {sub}")
            }
            [cmd, ..] => (*cmd).to_owned(),
            [] => String::new(),
        };
        self.covered.insert(name);
        last
    }
}

/// Command names `--help` lists (with the subcommands of groups).
fn listed_commands() -> BTreeSet<String> {
    let mut all: BTreeSet<String> = support::commands().iter().map(|c| c.join(" ")).collect();
    // `backup NAME` runs by itself too; `backup import` is its one subcommand.
    all.insert("backup".to_owned());
    all
}

#[test]
fn the_schema_rejects_the_old_shapes() {
    let schema = Schema::load();
    for bad in [
        json!([{"file": "x"}]),
        json!({"ok": 2}),
        json!({"ok": false, "error": "a string"}),
        json!({"ok": false, "error": {"kind": "no-such-kind", "message": "m"}}),
        json!({"ok": false}),
        json!({"event": "summary", "summary": {}}),
        json!({"type": "summary", "ok": true, "summary": {"instances": [{"instance": "a", "ok": false, "error": "x"}]}}),
    ] {
        assert!(schema.check("bad", &bad).is_err(), "accepted {bad}");
    }
    schema
        .check(
            "good",
            &json!({"ok": false, "error": {"kind": "usage", "message": "m"}}),
        )
        .unwrap();
}

#[test]
fn every_command_answers_one_envelope_on_success_and_failure() {
    let sb = Sandbox::new();
    let mut c = Checker {
        schema: Schema::get(),
        covered: BTreeSet::new(),
    };
    let www = sb.path("www-blog");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>blog</h1>\n").unwrap();
    let instance_file = |name: &str, www: &camino::Utf8Path| {
        let file = sb.path(&format!("{name}.toml"));
        std::fs::write(
            &file,
            format!(
                "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/\"\n\
                 [web-dirs]\n\"/\" = \"{www}\"\n{SH_SETTINGS}behaviour = \"normal\"\n",
                fixture("sh-sample")
            ),
        )
        .unwrap();
        file
    };
    let blog = instance_file("blog", &www);
    let staging_www = sb.path("www-staging");
    std::fs::create_dir_all(&staging_www).unwrap();
    let staging = instance_file("staging", &staging_www);
    let broken = sb.path("broken.toml");
    std::fs::write(&broken, "name = \"broken\"\ncolour = 1\n").unwrap();

    // package check: valid, with errors, cannot run.
    c.run(
        &sb,
        &["package", "check", fixture("sh-sample").as_str()],
        true,
    );
    let v = c.run(
        &sb,
        &[
            "package",
            "check",
            repo().join("fixtures/broken/missing-element").as_str(),
        ],
        false,
    );
    assert_eq!(v["error"]["kind"], "invalid-package");
    c.run(
        &sb,
        &["package", "check", sb.path("nowhere").as_str()],
        false,
    );

    // instance register / list / show / remove.
    c.run(
        &sb,
        &["instance", "register", "--file", blog.as_str()],
        true,
    );
    c.run(
        &sb,
        &["instance", "register", "--file", staging.as_str()],
        true,
    );
    let v = c.run(
        &sb,
        &["instance", "register", "--file", broken.as_str()],
        false,
    );
    assert_eq!(v["error"]["kind"], "usage");
    c.run(&sb, &["instance", "list"], true);
    c.run(&sb, &["instance", "show", "blog"], true);
    c.run(&sb, &["instance", "check", "blog"], true);
    let v = c.run(&sb, &["instance", "check", "nosuch"], false);
    assert_eq!(v["error"]["kind"], "instance-not-found");
    let v = c.run(&sb, &["instance", "show", "nosuch"], false);
    assert_eq!(v["error"]["kind"], "instance-not-found");
    c.run(&sb, &["instance", "remove", "nosuch"], false);

    // backup / restore / migrate.
    let v = c.run(&sb, &["backup", "blog"], true);
    let file = v["file"].as_str().unwrap().to_owned();
    let v = c.run(
        &sb,
        &["backup", "blog", "--to", sb.path("no/such/dir/x").as_str()],
        false,
    );
    assert_eq!(v["error"]["kind"], "destination-refused");
    c.run(
        &sb,
        &["backup", "import", &file, "--instance", "blog", "--dry-run"],
        true,
    );
    let v = c.run(
        &sb,
        &["backup", "import", sb.path("absent").as_str()],
        false,
    );
    assert_eq!(v["error"]["kind"], "invalid-backup");
    // A file that is not an archive, without `--instance`: the option is named as a flag.
    let plain = sb.path("plain.bak");
    std::fs::write(&plain, "a sufficient script's own file").unwrap();
    let v = c.run(&sb, &["backup", "import", plain.as_str()], false);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.ends_with("made it with --instance"), "{message}");
    c.run(&sb, &["restore", "blog", "--from", &file], true);
    c.run(&sb, &["restore", "blog", "--latest"], true);
    c.run(
        &sb,
        &["restore", "blog", "--from", sb.path("absent").as_str()],
        false,
    );
    c.run(&sb, &["migrate", "blog", "--to-instance", "staging"], true);
    c.run(&sb, &["migrate", "blog", "--to-instance", "blog"], false);

    // The panel's commands.
    let v = c.run(&sb, &["run", "--periodicity", "daily"], true);
    assert_eq!(v["type"], "summary");
    c.run(
        &sb,
        &["run", "--periodicity", "daily", "--instance", "nosuch"],
        false,
    );
    c.run(&sb, &["prune", "--dry-run"], true);
    c.run(&sb, &["backups", "blog"], true);
    c.run(&sb, &["backups", "nosuch"], false);
    c.run(&sb, &["verify", "--instance", "blog"], true);
    c.run(&sb, &["verify", sb.path("absent").as_str()], false);
    c.run(&sb, &["drill", "blog", "--staging", "staging"], true);
    c.run(&sb, &["drill", "blog", "--staging", "blog"], false);

    // log: the history, and a bad --since.
    let v = c.run(&sb, &["log", "blog"], true);
    assert!(
        v["operations"]
            .as_array()
            .is_some_and(|ops| !ops.is_empty()),
        "{v}"
    );
    let v = c.run(&sb, &["log", "--since", "yesterday-ish"], false);
    assert_eq!(v["error"]["kind"], "usage");

    // status: the table, and a stale instance past --max-age (docs/monitoring.md).
    let v = c.run(&sb, &["status"], true);
    assert!(v["rows"].as_array().is_some_and(|r| !r.is_empty()), "{v}");
    // The backups above may be under a second old: wait until they are older than 1 s.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let v = c.run(&sb, &["status", "--max-age", "1s"], false);
    assert_eq!(v["error"]["kind"], "stale", "{v}");

    // The repository store (panel.toml [store] kind = "repository"), then back to the default:
    // an instance without a backup-script, with real databases.
    c.run(&sb, &["store", "init"], false);
    let dbs = support::databases("jsonrepo").expect("the test database servers");
    let plain = sb.register(
        "plain",
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_password = \"pw\"\n{}{}",
            support::db_toml("main", &dbs.mysql),
            support::db_toml("stats", &dbs.pg)
        ),
    );
    let panel = sb.state().join("panel.toml");
    std::fs::write(&panel, "[store]\nkind = \"repository\"\n").unwrap();
    c.run(&sb, &["store", "check"], false);
    c.run(&sb, &["store", "init"], true);
    c.run(&sb, &["store", "init"], false);
    let v = c.run(&sb, &["backup", "plain"], true);
    let id = v["snapshot"]["id"].as_str().unwrap().to_owned();
    // A `sufficient` backup-script's package: its snapshot is the script's file and the
    // manifest.
    let v = c.run(&sb, &["backup", "blog"], true);
    assert_eq!(
        v["snapshot"]["files"], 3,
        "a sufficient script's snapshot: {v}"
    );
    let v = c.run(
        &sb,
        &["store", "backup", "plain", "--periodicity", "daily"],
        true,
    );
    assert!(v["snapshot"]["id"].is_string(), "{v}");
    c.run(&sb, &["store", "backup", "nosuch"], false);
    let v = c.run(&sb, &["backups", "plain"], true);
    assert_eq!(v["snapshots"].as_array().map(Vec::len), Some(2), "{v}");
    c.run(&sb, &["store", "snapshots"], true);
    c.run(&sb, &["store", "snapshots", "Not A Name"], false);
    let staged = sb.path("staged");
    c.run(
        &sb,
        &[
            "store",
            "restore",
            "plain",
            "--latest",
            "--to",
            staged.as_str(),
        ],
        true,
    );
    c.run(
        &sb,
        &[
            "store",
            "restore",
            "plain",
            "--snapshot",
            "ffffffff",
            "--to",
            staged.as_str(),
        ],
        false,
    );
    let v = c.run(&sb, &["restore", "plain", "--snapshot", &id], true);
    assert_eq!(v["snapshot"]["id"], id.as_str(), "{v}");
    let v = c.run(&sb, &["restore", "plain", "--snapshot", "ffffffff"], false);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let v = c.run(
        &sb,
        &["run", "--periodicity", "daily", "--instance", "plain"],
        true,
    );
    assert!(v["summary"]["instances"][0]["snapshot"].is_string(), "{v}");
    c.run(&sb, &["store", "check"], true);
    std::fs::remove_file(&panel).unwrap();
    c.run(&sb, &["instance", "remove", "plain", "--keep-data"], true);
    let _ = plain;

    // key generate.
    let key = sb.path("key.txt");
    c.run(&sb, &["key", "generate", "--out", key.as_str()], true);
    c.run(&sb, &["key", "generate", "--out", key.as_str()], false);

    // completions and man: the generated text inside the envelope.
    let v = c.run(&sb, &["completions", "bash"], true);
    assert!(v["script"].as_str().unwrap().contains("complete -F"), "{v}");
    let v = c.run(&sb, &["man"], true);
    assert!(v["page"].as_str().unwrap().contains(".TH"), "{v}");
    let man_dir = sb.path("man1");
    let v = c.run(&sb, &["man", "--out", man_dir.as_str()], true);
    assert!(v["pages"].as_array().unwrap().len() > 20, "{v}");
    // A folder that cannot be made (under a file): refused.
    c.run(&sb, &["man", "--out", key.join("x").as_str()], false);

    // serve: its first line, and a refusal to start.
    c.run(
        &sb,
        &[
            "serve",
            "--listen",
            "0.0.0.0:0",
            "--token-file",
            key.as_str(),
        ],
        false,
    );
    let token = sb.path("token");
    std::fs::write(&token, "t".repeat(40)).unwrap();
    // serve refuses a token file that others can read.
    std::fs::set_permissions(&token, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let mut child = sb
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token.as_str(),
            "--json",
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut first = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(child.stdout.take().unwrap()),
        &mut first,
    )
    .unwrap();
    child.kill().unwrap();
    child.wait().unwrap();
    let line: Value = serde_json::from_str(&first).unwrap();
    c.schema.check("serve", &line).unwrap();
    assert_eq!(
        (&line["ok"], &line["type"]),
        (&json!(true), &json!("listening"))
    );
    c.covered.insert("serve".into());

    // config show / check: a good state, then a panel.toml that does not load.
    c.run(&sb, &["config", "show"], true);
    c.run(&sb, &["config", "check"], true);
    std::fs::write(sb.state().join("panel.toml"), "jobs = \"two\"\n").unwrap();
    let v = c.run(&sb, &["config", "check"], false);
    assert_eq!(v["error"]["kind"], "usage");
    c.run(&sb, &["config", "show"], false);
    std::fs::remove_file(sb.state().join("panel.toml")).unwrap();

    // A mistake in the arguments themselves, with --json: the usage envelope.
    let v = c.run(&sb, &["backup"], false);
    assert_eq!(v["error"]["kind"], "usage");
    c.run(&sb, &["instance", "remove", "staging", "--keep-data"], true);

    // instance install: its checks (a dry run), a refusal naming the setting, then for real.
    let package = fixture("sh-sample");
    let web_root = sb.path("www-installed");
    let install = |extra: &[&'static str]| {
        let mut args = vec![
            "instance",
            "install",
            package.as_str(),
            "--name",
            "installed",
            "--base-url",
            "https://installed.example/",
            "--web-root",
            web_root.as_str(),
        ];
        args.extend_from_slice(extra);
        args
    };
    let v = c.run(
        &sb,
        &install(&["--setting", "admin_password=pw", "--dry-run"]),
        true,
    );
    assert_eq!(v["dry_run"], true, "{v}");
    let v = c.run(&sb, &install(&[]), false);
    assert_eq!(v["error"]["kind"], "invalid-settings", "{v}");
    let v = c.run(&sb, &install(&["--setting", "admin_password=pw"]), true);
    assert_eq!(v["instance"], "installed", "{v}");
    // instance upgrade: sh-sample's own rule (`version < '1.0.0'`) does not take itself.
    let v = c.run(
        &sb,
        &[
            "instance",
            "upgrade",
            "installed",
            "--package",
            package.as_str(),
        ],
        false,
    );
    assert_eq!(v["error"]["kind"], "invalid-package", "{v}");

    // instance configure, enable, disable: a change, a refusal naming its problems, and
    // sh-sample's configuration script has no status-control.
    let v = c.run(
        &sb,
        &[
            "instance",
            "configure",
            "installed",
            "--setting",
            "site_title=Renamed",
        ],
        true,
    );
    assert_eq!(v["changed"], serde_json::json!(["site_title"]), "{v}");
    let v = c.run(
        &sb,
        &[
            "instance",
            "configure",
            "installed",
            "--setting",
            "nosuch=1",
        ],
        false,
    );
    assert_eq!(v["error"]["kind"], "invalid-settings", "{v}");
    assert_eq!(v["error"]["problems"].as_array().unwrap().len(), 1, "{v}");
    let v = c.run(&sb, &["instance", "disable", "installed"], false);
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let v = c.run(&sb, &["instance", "enable", "nosuch"], false);
    assert_eq!(v["error"]["kind"], "instance-not-found", "{v}");

    // conformance: a mistake refused before any work, and the removal of a sandbox that is
    // not there (a whole run's envelope is checked by tests/conformance).
    let v = c.run(&sb, &["conformance", "nosuch.app.zip"], false);
    assert_eq!(v["error"]["kind"], "invalid-package", "{v}");
    let base = sb.path("conformance-base");
    let v = c.run(
        &sb,
        &[
            "conformance",
            "--remove-sandbox",
            "aps-conf-0123456789",
            "--sandbox-base",
            base.as_str(),
        ],
        true,
    );
    assert_eq!(v["removed"], false, "{v}");

    let listed = listed_commands();
    let missing: Vec<&String> = listed.difference(&c.covered).collect();
    assert!(
        missing.is_empty(),
        "commands without a JSON test: {missing:?}"
    );
}
