//! Staging instances (`role = "staging"` in INSTANCE.toml): shown by `instance list`/`show`,
//! left out of a nightly `run`, and the drill's warning for a target that is not marked
//! (real binary, the sh fixture package).

use test_support as support;

use support::schema::Envelope as Schema;
use support::{Sandbox, assert_success, json};

const SH_SETTINGS: &str = "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\n\
                           site_title = \"Demo\"\nbehaviour = \"normal\"\n";

/// `blog`, a normal instance, and `blog-staging`, marked as a staging instance.
fn normal_and_staging(sb: &Sandbox) {
    sb.register("blog", "sh-sample", SH_SETTINGS);
    register_staging(sb, "blog-staging");
}

/// An instance of the sh fixture with `role = "staging"` (a top-level key, so before the
/// tables `Sandbox::register` writes).
fn register_staging(sb: &Sandbox, name: &str) {
    let www = sb.path(&format!("www-{name}"));
    std::fs::create_dir_all(&www).unwrap();
    let file = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/\"\n\
             role = \"staging\"\n[web-dirs]\n\"/\" = \"{www}\"\n{SH_SETTINGS}",
            support::fixture("sh-sample")
        ),
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str()]);
    assert_success(&out, "instance register (staging)");
}

fn backups_of(sb: &Sandbox, instance: &str) -> usize {
    std::fs::read_dir(sb.state().join("backups").join(instance))
        .map(|d| d.count())
        .unwrap_or(0)
}

fn json_lines(out: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// The trap of the issue: the staging instance a drill overwrites was backed up by every
/// nightly `run`, filling the store with backups of a copy. A nightly run now backs up the
/// normal instance only and names what it left out.
#[test]
fn nightly_run_leaves_the_staging_instance_out_and_says_so() {
    let sb = Sandbox::new();
    normal_and_staging(&sb);

    let out = sb.cli(&["run", "--periodicity", "daily", "--json"]);
    assert_success(&out, "run");
    let last = json_lines(&out).pop().unwrap();
    Schema::get().check("run --json", &last).unwrap();
    let s = &last["summary"];
    assert_eq!(s["succeeded"], 1, "{s}");
    let backed_up: Vec<&str> = s["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["instance"].as_str().unwrap())
        .collect();
    assert_eq!(backed_up, ["blog"], "{s}");
    assert_eq!(s["staging_left_out"], serde_json::json!(["blog-staging"]));
    assert_eq!(backups_of(&sb, "blog"), 1);
    assert_eq!(
        backups_of(&sb, "blog-staging"),
        0,
        "the staging instance is not backed up"
    );

    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_success(&out, "run");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.starts_with("backup daily: 1 ok, 0 failed"), "{text}");
    assert!(
        text.contains(
            "left out 1 staging instance (role = \"staging\"; name it with --instance to back \
             it up): blog-staging"
        ),
        "{text}"
    );
    assert_eq!(backups_of(&sb, "blog-staging"), 0);

    // Named with --instance, it is backed up: the person asked for it.
    let out = sb.cli(&[
        "run",
        "--periodicity",
        "manual",
        "--instance",
        "blog-staging",
        "--json",
    ]);
    assert_success(&out, "run --instance blog-staging");
    let s = &json_lines(&out).pop().unwrap()["summary"];
    assert_eq!(s["succeeded"], 1, "{s}");
    assert_eq!(s["staging_left_out"], serde_json::json!([]), "{s}");
    assert_eq!(backups_of(&sb, "blog-staging"), 1);
}

/// `instance list` and `instance show` (text and JSON) say which instance is a staging one.
#[test]
fn list_and_show_name_the_role() {
    let sb = Sandbox::new();
    normal_and_staging(&sb);

    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list");
    let v = json(&out);
    Schema::get().check("instance list --json", &v).unwrap();
    let list = v["instances"].as_array().unwrap();
    assert_eq!(list.len(), 2, "{v}");
    assert_eq!(list[0]["name"], "blog");
    assert!(list[0].get("role").is_none(), "{v}");
    assert_eq!(list[1]["name"], "blog-staging");
    assert_eq!(list[1]["role"], "staging", "{v}");

    let out = sb.cli(&["instance", "list"]);
    assert_success(&out, "instance list");
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    let columns: Vec<Vec<&str>> = lines.iter().map(|l| l.split('\t').collect()).collect();
    assert_eq!(columns[0].len(), 3, "no role column for blog: {text}");
    assert_eq!(columns[1][0], "blog-staging", "{text}");
    assert_eq!(columns[1][3], "staging", "{text}");

    let out = sb.cli(&["instance", "show", "blog-staging", "--json"]);
    assert_success(&out, "instance show");
    assert_eq!(json(&out)["role"], "staging");
    let out = sb.cli(&["instance", "show", "blog-staging"]);
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("role = \"staging\""),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let out = sb.cli(&["instance", "show", "blog", "--json"]);
    assert!(json(&out).get("role").is_none());
}

/// Any other role is refused at registration, with the file, the line and the key; nothing is
/// stored.
#[test]
fn only_staging_is_a_role() {
    let sb = Sandbox::new();
    let www = sb.path("www-x");
    std::fs::create_dir_all(&www).unwrap();
    let file = sb.path("x.toml");
    for (role, said) in [
        ("\"production\"", "role = \"production\""),
        ("true", "role = true"),
    ] {
        std::fs::write(
            &file,
            format!(
                "name = \"x\"\npackage = \"{}\"\nbase-url = \"http://x.example.test/\"\n\
                 role = {role}\n[web-dirs]\n\"/\" = \"{www}\"\n{SH_SETTINGS}",
                support::fixture("sh-sample")
            ),
        )
        .unwrap();
        let out = sb.cli(&["instance", "register", "--file", file.as_str(), "--json"]);
        assert_eq!(out.status.code(), Some(2), "{role}");
        let v = json(&out);
        assert_eq!(v["error"]["kind"], "usage");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(
            message.contains(file.as_str())
                && message.contains(&format!(
                    "line 4: {said}: the only role is \"staging\" (an instance a drill \
                     restores into, left out of `run`); leave `role` out for any other instance"
                )),
            "{message}"
        );
        let out = sb.cli(&["instance", "list", "--json"]);
        assert_eq!(json(&out)["instances"], serde_json::json!([]));
    }
}

/// A drill into an instance that is not marked overwrites it all the same (drills already set
/// up keep working), but says so, on stderr and in the envelope's `warnings`; a marked one
/// draws no warning.
#[test]
fn drill_into_an_unmarked_instance_warns() {
    let sb = Sandbox::new();
    normal_and_staging(&sb);
    sb.register("other", "sh-sample", SH_SETTINGS);
    assert_success(
        &sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]),
        "run",
    );
    let warning = "--staging \"other\" is not marked as a staging instance: a drill overwrites \
                   its web folders and databases, and `run` backs it up like any other; if it \
                   is one, add `role = \"staging\"` to its INSTANCE.toml and register it again \
                   with --replace";

    let out = sb.cli(&["drill", "blog", "--staging", "other", "--json"]);
    assert_success(&out, "drill into other");
    let last = json_lines(&out).pop().unwrap();
    Schema::get().check("drill --json", &last).unwrap();
    assert_eq!(last["warnings"], serde_json::json!([warning]), "{last}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("warning: {warning}")), "{stderr}");

    let out = sb.cli(&["drill", "blog", "--staging", "other"]);
    assert_success(&out, "drill into other");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("warning: {warning}")), "{stderr}");

    let out = sb.cli(&["drill", "blog", "--staging", "blog-staging", "--json"]);
    assert_success(&out, "drill into blog-staging");
    let last = json_lines(&out).pop().unwrap();
    assert!(last.get("warnings").is_none(), "{last}");
    assert!(
        !String::from_utf8_lossy(&out.stderr).contains("warning"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
