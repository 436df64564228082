//! Issue 19, attacks 2, 6, 7 and the token and key files of 9, each as a tenant would try
//! it: the real binary as root, the real accounts `aps-tenant1` and `aps-test`, a real
//! `serve` over real sockets.
//!
//! - 2: a `sufficient` backup-script writes an INSTANCE.toml as its backup; the HTTP adapter
//!   must never write it where it registers from, never register it, and registration (CLI or
//!   HTTP) judges what a record says: web folders, `user`, `group`.
//! - 7: `group = "shadow"` would let the tenant's script read /etc/shadow.
//! - 6: a thousand idle or half-sent connections must not stop the adapter.
//! - 9: a token file or backup key that a tenant owns, or whose folder it owns, is refused.

use test_support as support;

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::process::Stdio;
use std::time::Duration;

use aps_controller::account::Account;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Value, json};

use support::serve::serve_with;
use support::{Sandbox, assert_success, chown_r, json as stdout_json, package_with_script};

const SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

fn tenant1() -> Account {
    Account::lookup("aps-tenant1", None)
        .expect("user aps-tenant1 is missing: run scripts/ci/test-user.sh")
}

fn instance_toml(name: &str, package: &Utf8Path, www: &Utf8Path, extra: &str) -> String {
    format!(
        "name = \"{name}\"\npackage = \"{package}\"\nbase-url = \"http://{name}.example.test/\"\n\
         {extra}[web-dirs]\n\"/\" = \"{www}\"\n{SETTINGS}"
    )
}

/// A web folder `www-NAME` with one file, owned by `owner`.
fn web_folder(sb: &Sandbox, name: &str, owner: &Account) -> Utf8PathBuf {
    let www = sb.path(&format!("www-{name}"));
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), format!("<h1>{name}</h1>\n")).unwrap();
    chown_r(&www, owner.uid, owner.gid);
    www
}

/// A folder only root may read, with a secret in it.
fn root_folder(sb: &Sandbox) -> Utf8PathBuf {
    let secrets = sb.path("root-secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("secret.txt"), "root's secret\n").unwrap();
    std::fs::set_permissions(&secrets, std::fs::Permissions::from_mode(0o700)).unwrap();
    secrets
}

fn register_cli(sb: &Sandbox, file: &Utf8Path) -> std::process::Output {
    sb.cli(&["instance", "register", "--file", file.as_str(), "--json"])
}

fn registered(sb: &Sandbox) -> Vec<String> {
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list");
    stdout_json(&out)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Attack 2, end to end: the tenant's `sufficient` backup-script writes an INSTANCE.toml
/// naming root's folder as its web root and itself as the user. The adapter never writes a
/// backup under a name or in a folder it reads configuration from, never registers a file from
/// outside `--register-dir`, and even a copy an administrator put there is refused for what it
/// says.
#[test]
fn a_backup_written_as_an_instance_file_is_never_registered_over_http() {
    let sb = Sandbox::for_tenants();
    let t1 = tenant1();
    let secrets = root_folder(&sb);
    let pkg = sb.path("evil-pkg");
    let evil = instance_toml("evil", &pkg, &secrets, "user = \"aps-tenant1\"\n");
    package_with_script(
        &sb,
        "sh-sample",
        "evil-pkg",
        "backup",
        &format!(
            "#!/bin/sh\n[ \"$1\" = backup ] || exit 0\ncat > \"$BACKUP_FILE\" <<'EOF'\n{evil}EOF\n"
        ),
    );
    let www = web_folder(&sb, "shop", &t1);
    let file = sb.path("shop.toml");
    std::fs::write(
        &file,
        instance_toml("shop", &pkg, &www, "user = \"aps-tenant1\"\n"),
    )
    .unwrap();
    assert_success(&register_cli(&sb, &file), "register shop");

    let store = sb.path("store");
    let incoming = sb.path("incoming");
    std::fs::create_dir_all(&store).unwrap();
    std::fs::create_dir_all(&incoming).unwrap();
    let server = serve_with(
        &sb,
        &[store.as_str(), incoming.as_str()],
        &[incoming.as_str()],
    );

    // Never a backup under an instance file's (or a package's) name, nor in --register-dir.
    for to in [
        store.join("evil.toml"),
        store.join("evil.app.zip"),
        incoming.join("evil.bak"),
    ] {
        let (status, v) = server.call("POST", "/v1/instances/shop/backup", json!({"to": to}));
        assert_eq!(
            (status, &v["error"]["kind"]),
            (403, &json!("path-not-allowed")),
            "{to}: {v}"
        );
        assert!(!support::exists(&to), "{to} was written");
    }
    // Elsewhere the backup is made: root's file, holding what the tenant wrote.
    let bak = store.join("evil.bak");
    let (status, v) = server.call("POST", "/v1/instances/shop/backup", json!({"to": bak}));
    assert_eq!(status, 200, "{v}");
    assert!(
        std::fs::read_to_string(&bak)
            .unwrap()
            .contains(secrets.as_str())
    );
    assert_eq!(std::fs::metadata(&bak).unwrap().uid(), 0);

    // Registered only from --register-dir.
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": bak}));
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );
    // An administrator who copies it there still gets it refused, for what it says.
    let copied = incoming.join("evil.toml");
    std::fs::copy(&bak, &copied).unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": copied}));
    assert_eq!(status, 422, "{v}");
    let problems = v["error"]["problems"].to_string();
    assert!(
        problems.contains("web-dirs.") && problems.contains("belongs to \\\"root\\\""),
        "{v}"
    );
    // A package named by a relative path through a symlink (root's) to a folder the tenant
    // owns: checked where it leads, the tenant could swap its scripts at any time.
    let tenant_pkg = package_with_script(
        &sb,
        "sh-sample",
        "tenant-pkg",
        "verify",
        "#!/bin/sh
",
    );
    std::os::unix::fs::chown(&tenant_pkg, Some(t1.uid), Some(t1.gid)).unwrap();
    std::os::unix::fs::symlink(&tenant_pkg, incoming.join("pkg-link")).unwrap();
    let relative = incoming.join("relative.toml");
    std::fs::write(
        &relative,
        instance_toml(
            "relative",
            Utf8Path::new("pkg-link"),
            &www,
            "user = \"aps-tenant1\"\n",
        ),
    )
    .unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": relative}));
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`package`"),
        "{v}"
    );
    assert_eq!(registered(&sb), ["shop"]);
    assert_eq!(support::entries(&secrets), ["secret.txt"]);

    // Without --register-dir, registration over HTTP is off altogether.
    drop(server);
    let server = serve_with(&sb, &[store.as_str(), incoming.as_str()], &[]);
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": copied}));
    assert_eq!(
        (status, &v["error"]["kind"]),
        (403, &json!("path-not-allowed")),
        "{v}"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--register-dir"),
        "{v}"
    );
}

/// Attack 2's direct variants and attack 7 at registration, through the CLI (the same
/// validation as HTTP and the library): each is refused with the key and the reason, and
/// nothing is stored. A sound file by the same tenant is registered.
#[test]
fn registration_refuses_what_no_instance_may_have() {
    let sb = Sandbox::for_tenants();
    let t1 = tenant1();
    let pkg = support::fixture("sh-sample");
    let own = web_folder(&sb, "own", &t1);
    let root_owned = sb.path("root-owned");
    std::fs::create_dir_all(&root_owned).unwrap();
    std::fs::create_dir_all(sb.state()).unwrap();
    let state = sb.state();
    let t1_user = "user = \"aps-tenant1\"\n";
    let cases: Vec<(&str, String, Utf8PathBuf, Vec<&str>)> = vec![
        (
            "/etc",
            t1_user.into(),
            "/etc".into(),
            vec!["web-dirs.\"/\": /etc is a system folder"],
        ),
        (
            "a root folder",
            t1_user.into(),
            root_owned.clone(),
            vec!["belongs to \"root\", not to the instance's account \"aps-tenant1\""],
        ),
        (
            "the state folder",
            t1_user.into(),
            state.clone(),
            vec!["the controller's state folder"],
        ),
        (
            "group shadow",
            format!("{t1_user}group = \"shadow\"\n"),
            own.clone(),
            vec!["group: \"shadow\" is the privileged group \"shadow\""],
        ),
        (
            "group 0",
            format!("{t1_user}group = \"0\"\n"),
            own.clone(),
            vec!["group: \"0\" is the privileged group \"root\" (gid 0)"],
        ),
        (
            "group disk",
            format!("{t1_user}group = \"disk\"\n"),
            own.clone(),
            vec!["group: \"disk\" is the privileged group \"disk\""],
        ),
        (
            "a group the user is not in",
            format!("{t1_user}group = \"aps-tenant2\"\n"),
            own.clone(),
            vec!["is not a member of \"aps-tenant2\""],
        ),
    ];
    for (what, extra, www, expected) in cases {
        let file = sb.path("case.toml");
        std::fs::write(&file, instance_toml("case", &pkg, &www, &extra)).unwrap();
        let out = register_cli(&sb, &file);
        assert_eq!(out.status.code(), Some(2), "{what}: {out:?}");
        let v = stdout_json(&out);
        assert_eq!(v["error"]["kind"], "usage", "{what}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        for e in expected {
            assert!(message.contains(e), "{what}: expected {e:?} in {message}");
        }
        assert!(registered(&sb).is_empty(), "{what} was registered");
    }

    let file = sb.path("own.toml");
    std::fs::write(&file, instance_toml("own", &pkg, &own, t1_user)).unwrap();
    assert_success(&register_cli(&sb, &file), "register own");
    assert_eq!(registered(&sb), ["own"]);
}

/// Attack 7: a script whose instance names `group = "shadow"` would read /etc/shadow. The
/// registration is refused, and a record that already says so (registered before this check)
/// is refused when an operation starts: the script never runs.
#[test]
fn a_script_never_runs_with_a_privileged_group() {
    let shadow = std::fs::metadata("/etc/shadow").unwrap();
    // The attack is real on this host: /etc/shadow is readable by its group.
    assert_ne!(
        shadow.mode() & 0o040,
        0,
        "/etc/shadow is not group-readable"
    );
    let sb = Sandbox::for_tenants();
    let t1 = tenant1();
    let pkg = package_with_script(
        &sb,
        "sh-sample",
        "shadow-pkg",
        "backup",
        "#!/bin/sh\n[ \"$1\" = backup ] || exit 0\ncat /etc/shadow > \"$BACKUP_FILE\"\n",
    );
    let www = web_folder(&sb, "blog", &t1);
    let file = sb.path("blog.toml");
    std::fs::write(
        &file,
        instance_toml(
            "blog",
            &pkg,
            &www,
            "user = \"aps-tenant1\"\ngroup = \"shadow\"\n",
        ),
    )
    .unwrap();
    let out = register_cli(&sb, &file);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(registered(&sb).is_empty());

    // A record from before the check: registered without the group, then given it.
    std::fs::write(
        &file,
        instance_toml("blog", &pkg, &www, "user = \"aps-tenant1\"\n"),
    )
    .unwrap();
    assert_success(&register_cli(&sb, &file), "register blog");
    let record = sb.state().join("instances/blog.json");
    let mut v: Value = serde_json::from_str(&std::fs::read_to_string(&record).unwrap()).unwrap();
    v["group"] = json!("shadow");
    std::fs::write(&record, v.to_string()).unwrap();

    let dest = sb.path("blog.bak");
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(20), "{out:?}");
    let v = stdout_json(&out);
    assert_eq!(v["error"]["kind"], "account-refused", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("privileged group \"shadow\""),
        "{v}"
    );
    assert!(!support::exists(&dest), "the script ran");
}

/// Attack 6: 500 idle connections and 500 half-sent requests, against a `serve` whose
/// open-file limit is 512. An authorised request still gets through while they are open, the
/// adapter's threads stay bounded, and it still answers once they are closed.
#[test]
fn a_thousand_idle_connections_do_not_stop_the_adapter() {
    let sb = Sandbox::new();
    sb.register(
        "blog",
        "sh-sample",
        &format!("{SETTINGS}behaviour = \"normal\"\n"),
    );
    let server = serve_with(&sb, &[sb.root().as_str()], &[]);
    let pid = server.child.id();
    let out = std::process::Command::new("prlimit")
        .args(["--pid", &pid.to_string(), "--nofile=512:512"])
        .output()
        .unwrap();
    assert_success(&out, "prlimit");
    let addr = server.base.strip_prefix("http://").unwrap().to_owned();
    // A client with a timeout: an adapter that stopped answering fails the test instead of
    // hanging it.
    let agent = ureq::AgentBuilder::new()
        .timeout(Duration::from_secs(120))
        .build();
    let list = |agent: &ureq::Agent| -> Result<Value, String> {
        agent
            .get(&format!("{}/v1/instances", server.base))
            .set("Authorization", &format!("Bearer {}", server.token))
            .call()
            .map_err(|e| e.to_string())?
            .into_json::<Value>()
            .map_err(|e| e.to_string())
    };

    let mut idle = Vec::new();
    for i in 0..1000 {
        let mut c =
            match TcpStream::connect_timeout(&addr.parse().unwrap(), Duration::from_secs(30)) {
                Ok(c) => c,
                Err(e) => panic!("connection {i} could not be made: {e}"),
            };
        if i % 2 == 1 {
            // Half a request: a request line and one header, never the end of the head.
            c.write_all(b"POST /v1/instances/blog/backup HTTP/1.1\r\nContent-Length: 10\r\n")
                .unwrap();
        }
        idle.push(c);
    }
    let v = list(&agent).expect("an authorised request among 1000 idle connections");
    assert_eq!(v["instances"][0]["name"], "blog", "{v}");
    let threads = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap()
        .lines()
        .find_map(|l| l.strip_prefix("Threads:"))
        .unwrap()
        .trim()
        .parse::<usize>()
        .unwrap();
    assert!(threads < 300, "{threads} threads for 1000 idle connections");

    drop(idle);
    let v = list(&agent).expect("an authorised request after the idle connections closed");
    assert_eq!(v["instances"][0]["name"], "blog", "{v}");
}

/// `serve` with `token_file`: its first stdout line (empty when it exited) and its exit code.
fn serve_once(sb: &Sandbox, token_file: &Utf8Path) -> (String, Option<i32>, String) {
    let mut child = sb
        .command(&[
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--token-file",
            token_file.as_str(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let line = support::serve::first_line(&mut child);
    if !line.is_empty() {
        let _ = child.kill();
    }
    let out = child.wait_with_output().unwrap();
    (
        line,
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Attack 9: a token file the tenant owns (mode 0600), or root's token file in a folder the
/// tenant owns, is refused at start: the tenant could read, change or swap it.
#[test]
fn a_token_file_a_tenant_owns_or_could_swap_is_refused() {
    let sb = Sandbox::for_tenants();
    let tenant = test_support::tenant::tenant();
    let token = "0123456789abcdef0123456789abcdef-test-token\n";

    let owned = sb.path("tenant-token");
    std::fs::write(&owned, token).unwrap();
    std::fs::set_permissions(&owned, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&owned, Some(tenant.uid), Some(tenant.gid)).unwrap();
    let (line, code, stderr) = serve_once(&sb, &owned);
    assert_eq!((line.as_str(), code), ("", Some(2)), "{stderr}");
    assert!(
        stderr.contains(owned.as_str()) && stderr.contains("belongs to aps-test"),
        "{stderr}"
    );

    let folder = sb.path("tenant-folder");
    std::fs::create_dir_all(&folder).unwrap();
    let inside = folder.join("token");
    std::fs::write(&inside, token).unwrap();
    std::fs::set_permissions(&inside, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&folder, Some(tenant.uid), Some(tenant.gid)).unwrap();
    let (line, code, stderr) = serve_once(&sb, &inside);
    assert_eq!((line.as_str(), code), ("", Some(2)), "{stderr}");
    assert!(
        stderr.contains(&format!("the folder {folder} above it belongs to aps-test")),
        "{stderr}"
    );
}

/// Attack 9: controller.toml's `backup-key-file` in a folder the tenant owns (the key itself
/// root's, 0600) is refused: the tenant could swap it for a key it knows and forge backups.
#[test]
fn a_backup_key_in_a_folder_a_tenant_owns_is_refused() {
    let sb = Sandbox::new();
    let tenant = test_support::tenant::tenant();
    sb.register(
        "blog",
        "sh-sample",
        &format!("{SETTINGS}behaviour = \"normal\"\n"),
    );
    let folder = sb.path("tenant-keys");
    std::fs::create_dir_all(&folder).unwrap();
    let key = folder.join("backup-key");
    std::fs::write(&key, format!("{}\n", "ab".repeat(32))).unwrap();
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::os::unix::fs::chown(&folder, Some(tenant.uid), Some(tenant.gid)).unwrap();
    sb.configure(&format!("backup-key-file = \"{key}\"\n"));

    let dest = sb.path("blog.bak");
    let out = sb.cli(&["backup", "blog", "--to", dest.as_str(), "--json"]);
    assert!(!out.status.success(), "{out:?}");
    let v = stdout_json(&out);
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(key.as_str())
            && message.contains(&format!("the folder {folder} above it belongs to aps-test")),
        "{v}"
    );
    assert!(!support::exists(&dest), "{v}");
}

/// Sends `request` on a fresh connection and returns everything the adapter answered.
fn raw_exchange(addr: &str, request: &[u8]) -> String {
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(request).unwrap();
    let mut answer = String::new();
    std::io::Read::read_to_string(&mut c, &mut answer).unwrap();
    answer
}

/// The listener that replaced tiny_http speaks what panels' clients send: `Expect:
/// 100-continue` (curl, for bodies over 1 KiB) is honoured, and what it does not take — a
/// chunked body, a head over 16 KiB — is answered with the envelope, not dropped.
#[test]
fn the_bounded_listener_answers_what_clients_send() {
    let sb = Sandbox::new();
    sb.register(
        "blog",
        "sh-sample",
        &format!("{SETTINGS}behaviour = \"normal\"\n"),
    );
    let server = serve_with(&sb, &[sb.root().as_str()], &[]);
    let addr = server.base.strip_prefix("http://").unwrap().to_owned();
    let auth = format!("Authorization: Bearer {}\r\n", server.token);

    let mut c = TcpStream::connect(&addr).unwrap();
    c.write_all(
        format!(
            "GET /v1/instances HTTP/1.1\r\nHost: x\r\n{auth}Expect: 100-continue\r\nContent-Length: 2\r\n\r\n"
        )
        .as_bytes(),
    )
    .unwrap();
    let mut reader = BufReader::new(c.try_clone().unwrap());
    let mut line = String::new();
    reader.read_line(&mut line).unwrap();
    assert_eq!(line, "HTTP/1.1 100 Continue\r\n");
    c.write_all(b"{}").unwrap();
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut reader, &mut rest).unwrap();
    assert!(rest.contains("HTTP/1.1 200 OK\r\n"), "{rest}");
    let body: Value = serde_json::from_str(rest.rsplit("\r\n\r\n").next().unwrap()).unwrap();
    assert_eq!(body["instances"][0]["name"], "blog", "{rest}");

    let chunked = raw_exchange(
        &addr,
        format!("POST /v1/instances/blog/backup HTTP/1.1\r\n{auth}Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n")
            .as_bytes(),
    );
    assert!(chunked.starts_with("HTTP/1.1 411 "), "{chunked}");
    assert!(chunked.contains("\"kind\":\"usage\""), "{chunked}");

    let huge = format!(
        "GET /v1/instances HTTP/1.1\r\n{auth}X-Filler: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    let answer = raw_exchange(&addr, huge.as_bytes());
    assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
}

/// A web folder the controller makes because it was missing is the instance account's, as
/// registration requires of every web folder: the next operation on the instance still runs.
#[test]
fn a_web_folder_a_restore_makes_belongs_to_the_account() {
    let sb = Sandbox::for_tenants();
    let t1 = tenant1();
    // sh-sample without `sufficient`: the controller archives and restores the web folder.
    let pkg = package_with_script(&sb, "sh-sample", "archived-pkg", "configure", "#!/bin/sh\n");
    let meta = pkg.join("APP-META.xml");
    let text = std::fs::read_to_string(&meta).unwrap();
    assert!(text.contains("<sufficient/>"));
    std::fs::write(&meta, text.replace("<sufficient/>", "")).unwrap();
    let www = web_folder(&sb, "blog", &t1);
    let file = sb.path("blog.toml");
    std::fs::write(
        &file,
        instance_toml("blog", &pkg, &www, "user = \"aps-tenant1\"\n") + "behaviour = \"normal\"\n",
    )
    .unwrap();
    assert_success(&register_cli(&sb, &file), "register blog");
    let first = sb.path("first.bak");
    assert_success(
        &sb.cli(&["backup", "blog", "--to", first.as_str()]),
        "backup",
    );
    std::fs::remove_dir_all(&www).unwrap();
    assert_success(
        &sb.cli(&[
            "restore",
            "blog",
            "--from",
            first.as_str(),
            "--no-safety-snapshot",
        ]),
        "restore into a missing web folder",
    );
    assert_eq!(std::fs::metadata(&www).unwrap().uid(), t1.uid);
    assert_success(
        &sb.cli(&["backup", "blog", "--to", sb.path("second.bak").as_str()]),
        "the next backup",
    );
}
