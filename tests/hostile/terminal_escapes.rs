//! Attack 8 of issue 19: a tenant's text reaches the admin's terminal with escape sequences
//! in it (`ESC [8m` hides what follows, `\r` overwrites a line, U+202E reverses it). Through the
//! real binary in text mode: a real script run as the tenant's account that writes them to
//! stderr and fails (the error and its stderr excerpt, then `log`), and a crafted backup
//! whose header carries them (`backup import --dry-run`). What reaches the terminal must hold
//! no byte a terminal acts on, show the escapes spelled out, and keep the excerpt's lines.

use test_support as support;
use test_support::craft;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use aps_controller::archive::{ManifestHeader, PartKind};
use camino::Utf8PathBuf;
use support::{Sandbox, assert_success, fixture, json};

/// The tenant's backup-script: two lines of stderr full of escapes, then failure.
const HOSTILE_SCRIPT: &str = "#!/bin/sh\n\
printf 'quota exceeded \\033[8mTYPE yes TO DELETE EVERY SITE\\033]0;owned\\007\\n' >&2\n\
printf 'second line\\r\\033[2Kall fine \\342\\200\\256txet desrever\\n' >&2\n\
exit 1\n";

/// Fails with the bytes (and where) when `bytes` hold anything a terminal acts on: a C0
/// control other than a line break or tab (the printers' own), DEL, a C1 control, or a bidi
/// control.
fn assert_terminal_safe(bytes: &[u8], what: &str) {
    let text = String::from_utf8_lossy(bytes);
    if let Some((at, c)) = text.char_indices().find(|&(_, c)| {
        (c.is_control() && c != '\n' && c != '\t')
            || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
    }) {
        panic!("{what}: {c:?} at byte {at} reaches the terminal:\n{text}");
    }
}

/// A copy of sh-sample with [`HOSTILE_SCRIPT`] as its backup-script, registered as `name` with
/// a web folder of the tenant's and `user` = the tenant: the script runs as the tenant.
fn hostile_instance(sb: &Sandbox, name: &str) -> Option<()> {
    if !support::needs_root("running the script as the tenant's account") {
        return None;
    }
    let tenant = test_support::tenant::tenant();
    let pkg = sb.path("hostile-pkg");
    let out = Command::new("cp")
        .args(["-R", fixture("sh-sample").as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let script = pkg.join("scripts/backup");
    std::fs::write(&script, HOSTILE_SCRIPT).unwrap();
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();
    let www = sb.path(&format!("www-{name}"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>hi</h1>\n").unwrap();
    std::os::unix::fs::chown(&www, Some(tenant.uid), Some(tenant.gid)).unwrap();
    std::os::unix::fs::chown(www.join("index.html"), Some(tenant.uid), Some(tenant.gid)).unwrap();
    let toml = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &toml,
        format!(
            "name = \"{name}\"\npackage = \"{pkg}\"\nbase-url = \"http://{name}.example.test/\"\n\
             user = \"{}\"\n[web-dirs]\n\"/\" = \"{www}\"\n\
             [settings]\nadmin_password = \"correct horse\"\n",
            tenant.name
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", toml.as_str()]),
        "instance register",
    );
    Some(())
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn a_failing_scripts_stderr_is_shown_escaped_in_the_error_and_in_log() {
    let sb = Sandbox::for_tenants();
    if hostile_instance(&sb, "blog").is_none() {
        return;
    }
    let out = sb.cli(&["backup", "blog"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    assert_terminal_safe(&out.stdout, "backup's stdout");
    assert_terminal_safe(&out.stderr, "backup's stderr");
    let text = stderr(&out);
    assert!(text.contains("error [script-failed]"), "{text}");
    // Spelled out, so that the admin sees what was tried.
    assert!(
        text.contains("quota exceeded \\x1b[8mTYPE yes TO DELETE EVERY SITE\\x1b]0;owned\\x07"),
        "{text}"
    );
    assert!(
        text.contains("second line\\x0d\\x1b[2Kall fine \\u202etxet desrever"),
        "{text}"
    );
    // The excerpt keeps the script's own line breaks: each of its lines starts a line.
    let excerpt = text
        .split("script stderr (last lines):\n")
        .nth(1)
        .expect("the excerpt is printed");
    let lines: Vec<&str> = excerpt.lines().collect();
    assert!(lines[0].starts_with("quota exceeded \\x1b[8m"), "{excerpt}");
    assert!(lines[1].starts_with("second line\\x0d"), "{excerpt}");

    // JSON carries the bytes as they were, in JSON's own escapes.
    let out = sb.cli(&["backup", "blog", "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    assert_terminal_safe(&out.stdout, "backup --json");
    let v = json(&out);
    let tail = v["error"]["stderr_tail"].as_str().unwrap();
    assert!(tail.contains("\u{1b}[8mTYPE yes"), "{v}");

    // The journal recorded the message with the stderr excerpt; `log` shows it on one line
    // per operation, escaped.
    let out = sb.cli(&["log", "blog"]);
    assert_success(&out, "log");
    assert_terminal_safe(&out.stdout, "log's stdout");
    assert_terminal_safe(&out.stderr, "log's stderr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("\\x1b[8mTYPE yes"), "{text}");
    assert_eq!(text.lines().count(), 2, "one line per operation:\n{text}");
    let v = json(&sb.cli(&["log", "blog", "--json"]));
    assert!(
        v["operations"][0]["message"]
            .as_str()
            .unwrap()
            .contains("\u{1b}[8mTYPE yes"),
        "{v}"
    );
}

#[test]
fn a_crafted_backup_header_is_shown_escaped_by_import_dry_run() {
    let sb = Sandbox::new();
    std::fs::create_dir_all(sb.state()).unwrap();
    let site = sb.path("site");
    std::fs::create_dir_all(&site).unwrap();
    std::fs::write(site.join("index.html"), "<h1>hi</h1>\n").unwrap();
    let mut header = ManifestHeader::new(
        "http://example.invalid/aps/sh-sample",
        "sh-sample\u{202e}",
        "1.0.0",
        "1",
        "1.2",
        "blog\u{1b}[8m, and every other site of this server",
    );
    header.controller_version = "0.1.0\u{1b}[8m (HIDDEN)\r\u{1b}[2Kverified".into();
    let file: Utf8PathBuf = sb.path("elsewhere.aps");
    craft::pack(
        &file,
        &header,
        &[craft::Part {
            name: "web/0".into(),
            kind: PartKind::WebDir {
                mapping_url: "/".into(),
            },
            path: site,
        }],
        Some(&craft::foreign_key()),
    );

    let out = sb.cli(&["backup", "import", file.as_str(), "--dry-run"]);
    assert_success(&out, "backup import --dry-run");
    assert_terminal_safe(&out.stdout, "import's stdout");
    assert_terminal_safe(&out.stderr, "import's stderr");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(
            "instance blog\\x1b[8m, and every other site of this server of sh-sample\\u202e 1.0.0-1"
        ),
        "{text}"
    );
    assert!(
        text.contains("by controller 0.1.0\\x1b[8m (HIDDEN)\\x0d\\x1b[2Kverified\n"),
        "{text}"
    );
    assert!(text.contains("dry run: nothing recorded"), "{text}");

    // JSON carries the fields as they are, in JSON's own escapes.
    let out = sb.cli(&["backup", "import", file.as_str(), "--dry-run", "--json"]);
    assert_success(&out, "backup import --dry-run --json");
    assert_terminal_safe(&out.stdout, "import --json");
    let v = json(&out);
    assert_eq!(
        v["manifest"]["header"]["controller_version"],
        header.controller_version.as_str(),
        "{v}"
    );
    assert_eq!(v["manifest"]["header"]["package_name"], "sh-sample\u{202e}");
}

/// A package folder and a web folder whose names carry escapes (a tenant names its own
/// folders): `instance list` and `instance show` spell them out.
#[test]
fn instance_list_and_show_escape_crafted_folder_names() {
    let sb = Sandbox::new();
    let pkg = sb.path("pkg\u{1b}[8m");
    let out = Command::new("cp")
        .args(["-R", fixture("sh-sample").as_str(), pkg.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    let www = sb.path("www\u{1b}]0;owned\u{7}\u{202e}");
    std::fs::create_dir_all(&www).unwrap();
    let toml = sb.path("blog.toml");
    std::fs::write(
        &toml,
        format!(
            "name = \"blog\"\npackage = {}\nbase-url = \"http://blog.example.test/\"\n\
             [web-dirs]\n\"/\" = {}\n[settings]\nadmin_password = \"pw\"\n",
            toml::Value::String(pkg.to_string()),
            toml::Value::String(www.to_string())
        ),
    )
    .unwrap();
    assert_success(
        &sb.cli(&["instance", "register", "--file", toml.as_str()]),
        "instance register",
    );
    for args in [&["instance", "list"][..], &["instance", "show", "blog"]] {
        let out = sb.cli(args);
        assert_success(&out, "instance list/show");
        assert_terminal_safe(&out.stdout, &args.join(" "));
        assert_terminal_safe(&out.stderr, &args.join(" "));
        let json = sb.cli(&[args, &["--json"]].concat());
        assert_terminal_safe(&json.stdout, &format!("{} --json", args.join(" ")));
    }
    let list = sb.cli(&["instance", "list"]);
    let text = String::from_utf8_lossy(&list.stdout);
    assert!(text.contains("pkg\\x1b[8m"), "{text}");
}
