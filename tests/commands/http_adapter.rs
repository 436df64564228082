//! `aps-controller serve`: the real binary listening on loopback, driven over real HTTP (ureq)
//! with the fixture packages and their real scripts.

use test_support as support;

use aps_controller::digest::sha256_file;
use camino::Utf8PathBuf;
use serde_json::{Value, json};

use support::{Sandbox, assert_success, fixture, json as stdout_json, repo};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"s3cret-pw\"\nsite_title = \"Demo\"\n";

use support::serve::{Served, serve_allowing, serve_with};

/// `serve` allowed to touch the whole sandbox and read the fixture packages.
fn serve(sb: &Sandbox) -> Served {
    let fixtures = support::repo().join("fixtures");
    serve_allowing(sb, &[sb.root().as_str(), fixtures.as_str()])
}

fn sh(sb: &Sandbox, name: &str, behaviour: &str) -> Utf8PathBuf {
    sb.register(
        name,
        "sh-sample",
        &format!("{SH_SETTINGS}behaviour = \"{behaviour}\"\n"),
    )
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn operations_answer_the_same_json_as_the_cli() {
    let sb = Sandbox::new();
    let www = sh(&sb, "blog", "normal");
    let server = serve(&sb);
    let backups = sb.path("backups");
    std::fs::create_dir_all(&backups).unwrap();
    let dest = backups.join("blog.aps.tar.zst");

    // Without the token, or with another one, nothing runs.
    let backup_body = json!({"to": dest});
    for token in [None, Some("0123456789abcdef0123456789abcdef-wrong-token")] {
        let (status, v) = server.call_as(
            token,
            "POST",
            "/v1/instances/blog/backup",
            &backup_body.to_string(),
        );
        assert_eq!(status, 401, "{v}");
        assert_eq!(v["error"]["kind"], "unauthorized");
    }
    assert!(!dest.exists());

    let (status, v) = server.call("GET", "/v1/instances", Value::Null);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["instances"][0]["name"], "blog");
    let (status, v) = server.call("GET", "/v1/instances/blog", Value::Null);
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["name"], "blog");
    assert!(!v.to_string().contains("s3cret-pw"), "password shown: {v}");

    let (status, report) = server.call("POST", "/v1/instances/blog/backup", backup_body.clone());
    assert_eq!(status, 200, "{report}");
    assert_eq!(report["ok"], true);
    let (size, sha256) = sha256_file(&dest).unwrap();
    assert_eq!(report["sha256"], sha256.as_str());
    assert_eq!(report["size"], size);
    assert_eq!(report["file"], dest.as_str());
    // The same fields as `aps-controller backup --json`.
    let cli = sb.cli(&[
        "backup",
        "blog",
        "--to",
        backups.join("cli.aps.tar.zst").as_str(),
        "--json",
    ]);
    assert_success(&cli, "backup --json");
    assert_eq!(keys(&report), keys(&stdout_json(&cli)));

    // The destination exists now: refused, and the file is left as it was.
    let (status, v) = server.call("POST", "/v1/instances/blog/backup", backup_body);
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "destination-refused");
    assert_eq!(v["error"]["step"], "3.1-check-destination", "{v}");
    // The same refusal, each front end naming the override its own way.
    assert_eq!(
        v["error"]["message"],
        format!("backup destination {dest} already exists; use \"force\": true to replace it"),
        "phrased for HTTP: {v}"
    );
    let cli = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(
        stdout_json(&cli)["error"]["message"],
        format!("backup destination {dest} already exists; use --force to replace it"),
        "phrased for the CLI"
    );
    assert_eq!(sha256_file(&dest).unwrap().1, sha256);

    // Without `to`: into the backup store under the standard name, as `backup blog` does.
    let (status, v) = server.call("POST", "/v1/instances/blog/backup", json!({}));
    assert_eq!(status, 200, "{v}");
    let stored = v["file"].as_str().unwrap();
    assert!(
        stored.starts_with(sb.state().join("backups/blog/blog_manual_").as_str()),
        "{v}"
    );
    assert_eq!(v["stored_as"].as_str(), stored.rsplit('/').next());
    assert!(Utf8PathBuf::from(stored).is_file());

    // Restore from it: the sh fixture's (sufficient) restore copies the file it was given.
    let (status, v) = server.call(
        "POST",
        "/v1/instances/blog/restore",
        json!({"from": dest, "timeout_secs": 60}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true);
    assert_eq!(
        std::fs::read(www.join(".aps-restored-from")).unwrap(),
        std::fs::read(&dest).unwrap()
    );

    let (status, v) = server.call(
        "POST",
        "/v1/instances/nobody/backup",
        json!({"to": backups.join("x")}),
    );
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["kind"], "instance-not-found");
    assert!(!backups.join("x").exists());
}

#[test]
fn bad_requests_are_refused_before_anything_runs() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    let server = serve(&sb);
    let dest = sb.path("blog.bak");

    let cases = [
        (
            json!({"to": "relative/blog.bak"}),
            "expected an absolute path",
        ),
        (
            json!({"to": dest, "colour": "red"}),
            "unknown field `colour`",
        ),
        (
            json!({"to": dest, "compression": "lz4"}),
            "unknown compression",
        ),
        (
            json!({"timeout_secs": 0}),
            "\"timeout_secs\" must be at least 1",
        ),
        (
            json!({"recipients": ["age1nope"]}),
            "\"recipients\": invalid age recipient",
        ),
    ];
    for (body, expected) in cases {
        let (status, v) = server.call("POST", "/v1/instances/blog/backup", body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["kind"], "usage");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    for (route, body, expected) in [
        (
            "/v1/instances/blog/restore",
            json!({"from": dest, "timeout_secs": 0}),
            "\"timeout_secs\" must be at least 1",
        ),
        (
            "/v1/instances/blog/migrate",
            json!({"to_instance": "blog"}),
            "\"to_instance\" is \"blog\"",
        ),
    ] {
        let (status, v) = server.call("POST", route, body.clone());
        assert_eq!(status, 400, "{body}: {v}");
        assert_eq!(v["error"]["kind"], "usage");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(expected), "{body}: {message}");
    }
    let big = json!({"to": dest, "recipients": ["x".repeat(70_000)]});
    let (status, v) = server.call("POST", "/v1/instances/blog/backup", big);
    assert_eq!(status, 413, "{v}");
    assert!(!dest.exists());

    let (status, v) = server.call("PUT", "/v1/instances/blog/backup", Value::Null);
    assert_eq!(status, 405, "{v}");
    let (status, v) = server.call("GET", "/v2/anything", Value::Null);
    assert_eq!(status, 404, "{v}");
    assert_eq!(v["error"]["kind"], "no-such-route");
}

#[test]
fn instances_are_registered_and_removed_and_packages_checked() {
    let sb = Sandbox::new();
    // Registration over HTTP takes files from --register-dir only.
    let incoming = sb.path("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let fixtures = support::repo().join("fixtures");
    let server = serve_with(
        &sb,
        &[sb.root().as_str(), fixtures.as_str()],
        &[incoming.as_str()],
    );
    let www = sb.path("www-shop");
    std::fs::create_dir_all(&www).unwrap();
    let file = incoming.join("shop.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"shop\"\npackage = \"{}\"\nbase-url = \"http://shop.example.test/\"\n[web-dirs]\n\"/\" = \"{www}\"\n{SH_SETTINGS}",
            fixture("sh-sample")
        ),
    )
    .unwrap();

    let (status, v) = server.call("POST", "/v1/instances", json!({"file": file}));
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["instance"]["name"], "shop");
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": file}));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "usage");
    let message = v["error"]["message"].as_str().unwrap();
    // Phrased for HTTP: the JSON field, not the CLI flag.
    assert!(
        message.contains("already exists")
            && message.contains("\"replace\": true")
            && !message.contains("--replace"),
        "{message}"
    );
    let (status, v) = server.call(
        "POST",
        "/v1/instances",
        json!({"file": file, "replace": true}),
    );
    assert_eq!(status, 201, "{v}");
    // The CLI sees what the adapter registered.
    let listed = sb.cli(&["instance", "list", "--json"]);
    assert_eq!(stdout_json(&listed)["instances"][0]["name"], "shop");

    std::fs::write(&file, "name = \"bad\"\n").unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": file}));
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "usage");

    let (status, v) = server.call("DELETE", "/v1/instances/shop", json!({"keep_data": true}));
    assert_eq!(status, 200, "{v}");
    let (status, v) = server.call("GET", "/v1/instances/shop", Value::Null);
    assert_eq!(status, 404, "{v}");
    assert!(www.exists(), "removing an instance keeps its web folder");

    let (status, v) = server.call(
        "POST",
        "/v1/packages/check",
        json!({"path": fixture("sh-sample")}),
    );
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], true);
    let broken = repo().join("fixtures/broken/missing-element");
    let (status, v) = server.call("POST", "/v1/packages/check", json!({"path": broken}));
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["ok"], false);
    assert_eq!(v["diagnostics"][0]["code"], "missing-element", "{v}");
    let (status, v) = server.call(
        "POST",
        "/v1/packages/check",
        json!({"path": sb.path("nowhere")}),
    );
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["kind"], "usage");
    assert_eq!(v["error"]["reason"], "not-found");
}

/// Two operations on one instance at once: the second is `busy` (409) while the first runs.
#[test]
fn a_second_operation_on_a_busy_instance_is_409() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "hang-with-child");
    sb.configure("kill-grace-secs = 1\n");
    let server = serve(&sb);
    let first_dest = sb.path("first.bak");
    let first = std::thread::scope(|s| {
        let first = s.spawn(|| {
            server.call(
                "POST",
                "/v1/instances/blog/backup",
                json!({"to": first_dest, "timeout_secs": 3}),
            )
        });
        // The hanging script writes its child's pid once it runs.
        let pid_file = sb.path("www-blog/.aps-child.pid");
        let start = std::time::Instant::now();
        while !pid_file.exists() {
            assert!(start.elapsed().as_secs() < 30, "the script never started");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        let (status, v) = server.call(
            "POST",
            "/v1/instances/blog/backup",
            json!({"to": sb.path("second.bak")}),
        );
        assert_eq!(status, 409, "{v}");
        assert_eq!(v["error"]["kind"], "busy");
        first.join().unwrap()
    });
    let (status, v) = first;
    assert_eq!(status, 500, "{v}");
    assert_eq!(v["error"]["kind"], "timed-out");
    assert!(!first_dest.exists() && !sb.path("second.bak").exists());
}

#[test]
fn refuses_to_listen_beyond_loopback_or_with_a_weak_token() {
    let sb = Sandbox::new();
    let strong = sb.path("strong");
    std::fs::write(&strong, "0123456789abcdef0123456789abcdef\n").unwrap();
    std::fs::set_permissions(&strong, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = sb.cli(&[
        "serve",
        "--listen",
        "0.0.0.0:0",
        "--token-file",
        strong.as_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));

    let weak = sb.path("weak");
    std::fs::write(&weak, "secret\n").unwrap();
    std::fs::set_permissions(&weak, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    let out = sb.cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        weak.as_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("at least 32 characters"), "{stderr}");

    // A strong token that others can read (mode 0644) is refused at start, not warned about:
    // it grants whatever the controller may do.
    std::fs::set_permissions(&strong, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let out = sb.cli(&[
        "serve",
        "--listen",
        "127.0.0.1:0",
        "--token-file",
        strong.as_str(),
    ]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("can be read or written by other users"),
        "{stderr}"
    );
}

/// The adapter touches only what `--allow-dir` gave it: a destination outside (directly, by
/// `..` or through a symlink planted inside) is refused with 403 before anything is created;
/// one inside works.
#[test]
fn paths_outside_the_allowed_folders_are_refused() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    let store = sb.path("store");
    let outside = sb.path("elsewhere");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&outside).unwrap();
    std::os::unix::fs::symlink(&outside, store.join("link")).unwrap();
    let incoming = sb.path("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let server = serve_with(&sb, &[store.as_str()], &[incoming.as_str()]);

    let escapes = [
        outside.join("b.aps"),
        store.join("../elsewhere/b.aps"),
        store.join("link/b.aps"),
    ];
    for to in &escapes {
        let (status, v) = server.call(
            "POST",
            "/v1/instances/blog/backup",
            json!({"to": to, "force": true}),
        );
        assert_eq!(status, 403, "{to}: {v}");
        assert_eq!(v["error"]["kind"], "path-not-allowed", "{v}");
    }
    assert!(
        support::entries(&outside).is_empty(),
        "nothing may be created outside"
    );
    let (status, v) = server.call(
        "POST",
        "/v1/instances/blog/restore",
        json!({"from": "/etc/shadow"}),
    );
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );
    let (status, v) = server.call(
        "POST",
        "/v1/instances",
        json!({"file": sb.path("blog.toml")}),
    );
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );

    // An INSTANCE.toml inside --register-dir, but one others may change, is not registered
    // either.
    let toml = incoming.join("open.toml");
    std::fs::copy(sb.path("blog.toml"), &toml).unwrap();
    let text = std::fs::read_to_string(&toml)
        .unwrap()
        .replace("name = \"blog\"", "name = \"open\"")
        // Registration refuses a web folder another instance has: a folder of its own.
        .replace("www-blog", "www-open");
    std::fs::create_dir_all(sb.path("www-open")).unwrap();
    std::fs::write(&toml, text).unwrap();
    std::fs::set_permissions(&toml, std::os::unix::fs::PermissionsExt::from_mode(0o666)).unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": toml}));
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );
    std::fs::set_permissions(&toml, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": toml}));
    assert_eq!(status, 201, "{v}");

    let (status, v) = server.call(
        "POST",
        "/v1/instances/blog/backup",
        json!({"to": store.join("b.aps")}),
    );
    assert_eq!(status, 200, "{v}");
    assert!(store.join("b.aps").is_file());
}

#[test]
fn an_encrypted_backup_without_its_identity_names_the_option_each_front_end_takes() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    let (_identity, recipient) = support::age_identity(&sb.root());
    let file = sb.path("blog.aps.tar.zst.age");
    assert_success(
        &sb.cli(&[
            "backup",
            "blog",
            "--to",
            file.as_str(),
            "--recipient",
            &recipient,
        ]),
        "backup --recipient",
    );
    let expected = |option: &str| {
        format!(
            "{file} is encrypted: give an age identity file to read it ({option}: the \
             AGE-SECRET-KEY-… file `aps-controller key generate` made)"
        )
    };
    let server = serve(&sb);
    let (status, v) = server.call("POST", "/v1/instances/blog/restore", json!({"from": file}));
    assert_eq!(v["error"]["kind"], "invalid-backup", "{v}");
    assert_eq!(status, 422, "{v}");
    assert_eq!(v["error"]["message"], expected("\"identity\": FILE"), "{v}");
    let cli = sb.cli(&["restore", "blog", "--from", file.as_str(), "--json"]);
    assert_eq!(
        stdout_json(&cli)["error"]["message"],
        expected("--identity FILE"),
        "phrased for the CLI"
    );
}
