//! Watching the backups from one place (docs/monitoring.md): `status` and its exit code,
//! `GET /v1/status` and `GET /metrics` of `serve` (which must see what the CLI writes while it
//! runs), and `[notify]` after `run` — a real HTTP listener on loopback and a real command.

use test_support as support;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::mpsc;

use camino::Utf8Path;
use serde_json::Value;

use support::serve::serve_allowing;
use support::{Sandbox, json};

fn sh(sb: &Sandbox, name: &str, behaviour: &str) {
    sb.register_sh(name, behaviour);
}

fn checked(what: &str, v: &Value) {
    support::schema::Envelope::get()
        .check(what, v)
        .unwrap_or_else(|e| panic!("{e}"));
}

fn code(out: &std::process::Output) -> i32 {
    out.status.code().expect("exited")
}

/// The row of `instance` and `periodicity` (`None`: the row of an instance never backed up).
fn row<'a>(table: &'a Value, instance: &str, periodicity: Option<&str>) -> &'a Value {
    table["rows"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["instance"] == instance && r["periodicity"].as_str() == periodicity)
        .unwrap_or_else(|| panic!("no row {instance} {periodicity:?}: {table}"))
}

/// Moves the recorded time of `instance`'s last good `periodicity` backup `secs` back, as if
/// that much time had passed (the status file is the controller's own record).
fn age_by(sb: &Sandbox, instance: &str, periodicity: &str, secs: i64) {
    let path = sb.state().join(format!("status/{instance}.json"));
    let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let time = &mut v["periodicities"][periodicity]["last_success"]["time"];
    let t: jiff::Timestamp = time.as_str().unwrap().parse().unwrap();
    *time = (t - jiff::SignedDuration::from_secs(secs))
        .to_string()
        .into();
    std::fs::write(&path, serde_json::to_vec(&v).unwrap()).unwrap();
}

#[test]
fn status_shows_good_failed_and_missing_backups_and_exits_27_past_max_age() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "shop", "fail-after-half");
    sh(&sb, "wiki", "normal");
    // Nothing recorded yet: every instance has a row without a periodicity.
    let out = sb.cli(&["status", "--json"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let t = json(&out);
    checked("status --json", &t);
    assert!(row(&t, "blog", None)["last_success"].is_null());

    let out = sb.cli(&[
        "run",
        "--periodicity",
        "daily",
        "--instance",
        "blog",
        "--instance",
        "shop",
    ]);
    assert_eq!(code(&out), 1, "shop fails: {out:?}");
    let out = sb.cli(&["status", "--json"]);
    assert_eq!(code(&out), 0, "without --max-age nothing is stale: {out:?}");
    let t = json(&out);
    checked("status --json", &t);
    let blog = row(&t, "blog", Some("daily"));
    assert!(blog["last_success"]["size"].as_u64().unwrap() > 0, "{blog}");
    assert!(
        blog["last_success"]["age_secs"].as_u64().unwrap() < 120,
        "{blog}"
    );
    assert!(blog["last_success"]["duration_ms"].is_u64(), "{blog}");
    assert!(
        blog["last_success"]["file"]
            .as_str()
            .unwrap()
            .ends_with(".tar.zst")
    );
    assert!(blog["last_failure"].is_null());
    let shop = row(&t, "shop", Some("daily"));
    assert!(shop["last_success"].is_null(), "{shop}");
    assert_eq!(shop["last_failure"]["kind"], "script-failed", "{shop}");
    assert_eq!(shop["failures"]["script-failed"], 1, "{shop}");
    assert!(row(&t, "wiki", None)["last_success"].is_null());

    // Past the maximum age: exit 27 (`stale`), the stale instances listed, the table kept.
    let out = sb.cli(&["status", "--max-age", "26h", "--json"]);
    assert_eq!(code(&out), 27, "{out:?}");
    let t = json(&out);
    checked("status --max-age --json", &t);
    assert_eq!(t["ok"], false);
    assert_eq!(t["error"]["kind"], "stale");
    assert_eq!(t["stale"], serde_json::json!(["shop", "wiki"]));
    assert_eq!(t["rows"].as_array().unwrap().len(), 3);

    // Three days later blog's backup is stale too; in words, on a terminal.
    age_by(&sb, "blog", "daily", 3 * 86400);
    let out = sb.cli(&["status", "--max-age", "26h"]);
    assert_eq!(code(&out), 27, "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    let blog_line = text.lines().find(|l| l.starts_with("blog ")).unwrap();
    assert!(
        blog_line.contains("daily") && blog_line.contains("3d 0h"),
        "{text}"
    );
    assert!(blog_line.contains("STALE"), "{text}");
    let shop_line = text.lines().find(|l| l.starts_with("shop ")).unwrap();
    assert!(
        shop_line.contains("never") && shop_line.contains("script-failed"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("[stale]") && stderr.contains("blog, shop, wiki"),
        "{stderr}"
    );
    // A week's age forgives blog, not the instances never backed up.
    let out = sb.cli(&["status", "--max-age", "1w", "--json"]);
    assert_eq!(json(&out)["stale"], serde_json::json!(["shop", "wiki"]));
    // One periodicity: blog has no weekly backup at all.
    let out = sb.cli(&[
        "status",
        "--max-age",
        "1w",
        "--periodicity",
        "weekly",
        "--json",
    ]);
    assert_eq!(
        json(&out)["stale"],
        serde_json::json!(["blog", "shop", "wiki"])
    );
    // A bad age is a usage error before anything is read.
    let out = sb.cli(&["status", "--max-age", "soon", "--json"]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert_eq!(json(&out)["error"]["kind"], "usage");
}

/// A tiny reader of the Prometheus text format: every sample line as (name, labels) → value,
/// with a check that each sample's family had its HELP and TYPE lines before it.
fn parse_metrics(text: &str) -> BTreeMap<(String, String), f64> {
    let mut typed = BTreeMap::new();
    let mut helped = std::collections::BTreeSet::new();
    let mut samples = BTreeMap::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            helped.insert(rest.split(' ').next().unwrap().to_owned());
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let mut parts = rest.split(' ');
            let name = parts.next().unwrap().to_owned();
            let kind = parts.next().unwrap().to_owned();
            assert!(["gauge", "counter"].contains(&kind.as_str()), "{line}");
            typed.insert(name, kind);
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("{line:?}"));
            let (name, labels) = series.split_once('{').unwrap_or((series, "}"));
            let labels = labels
                .strip_suffix('}')
                .unwrap_or_else(|| panic!("{line:?}"));
            assert!(
                typed.contains_key(name) && helped.contains(name),
                "{name} sampled before its HELP and TYPE"
            );
            if typed[name] == "counter" {
                assert!(name.ends_with("_total"), "{name}");
            }
            for label in labels.split(',').filter(|l| !l.is_empty()) {
                let (k, v) = label.split_once('=').unwrap();
                assert!(
                    k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'),
                    "{line}"
                );
                assert!(v.starts_with('"') && v.ends_with('"'), "{line}");
            }
            let value: f64 = value.parse().unwrap_or_else(|e| panic!("{line:?}: {e}"));
            samples.insert((name.to_owned(), labels.to_owned()), value);
        }
    }
    samples
}

fn get_text(base: &str, path: &str, token: Option<&str>) -> (u16, String, String) {
    let mut request = ureq::get(&format!("{base}{path}"));
    if let Some(token) = token {
        request = request.set("Authorization", &format!("Bearer {token}"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(_, r)) => r,
        Err(e) => panic!("GET {path}: {e}"),
    };
    let status = response.status();
    let content_type = response.header("Content-Type").unwrap_or("").to_owned();
    (status, content_type, response.into_string().unwrap())
}

#[test]
fn serve_answers_status_and_metrics_and_sees_what_the_cli_writes_meanwhile() {
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "shop", "fail-after-half");
    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_eq!(code(&out), 1, "{out:?}");
    let served = serve_allowing(&sb, &[sb.root().as_str()]);

    // The same table as `status --json`.
    let (status, t) = served.call("GET", "/v1/status", Value::Null);
    assert_eq!(status, 200, "{t}");
    assert_eq!(
        row(&t, "shop", Some("daily"))["last_failure"]["kind"],
        "script-failed"
    );
    let (status, t) = served.call("GET", "/v1/status?max_age=26h", Value::Null);
    assert_eq!(status, 503, "shop never had a good backup: {t}");
    assert_eq!(t["error"]["kind"], "stale");
    assert_eq!(t["stale"], serde_json::json!(["shop"]));
    let (status, t) = served.call("GET", "/v1/status?max_age=later", Value::Null);
    assert_eq!(
        (status, t["error"]["kind"].as_str()),
        (400, Some("usage")),
        "{t}"
    );
    let (status, _) = served.call("POST", "/v1/status", Value::Null);
    assert_eq!(status, 405);
    let (status, _) = served.call_as(None, "GET", "/v1/status", "");
    assert_eq!(status, 401);

    // Served twice from the cache, then an instance registered by the CLI while serve runs
    // is in the very next answer, and so is its row of the status.
    for _ in 0..2 {
        let (_, list) = served.call("GET", "/v1/instances", Value::Null);
        assert_eq!(list["instances"].as_array().unwrap().len(), 2, "{list}");
    }
    sh(&sb, "late", "normal");
    let (_, list) = served.call("GET", "/v1/instances", Value::Null);
    let names: Vec<&str> = list["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["blog", "late", "shop"]);
    let (_, t) = served.call("GET", "/v1/status?max_age=26h", Value::Null);
    assert_eq!(t["stale"], serde_json::json!(["late", "shop"]));
    // A run by the CLI is seen too: late's backup makes it fresh.
    let out = sb.cli(&["run", "--periodicity", "hourly", "--instance", "late"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let (_, t) = served.call("GET", "/v1/status?max_age=26h", Value::Null);
    assert_eq!(t["stale"], serde_json::json!(["shop"]));

    // The metrics, behind the same token, in the Prometheus text format.
    let (status, _, _) = get_text(&served.base, "/metrics", None);
    assert_eq!(status, 401);
    let (status, content_type, text) = get_text(&served.base, "/metrics", Some(&served.token));
    assert_eq!(status, 200, "{text}");
    assert!(
        content_type.starts_with("text/plain; version=0.0.4"),
        "{content_type}"
    );
    let samples = parse_metrics(&text);
    let get = |name: &str, labels: &str| {
        *samples
            .get(&(name.to_owned(), labels.to_owned()))
            .unwrap_or_else(|| panic!("no {name}{{{labels}}} in\n{text}"))
    };
    let blog = r#"instance="blog",periodicity="daily""#;
    let now = jiff::Timestamp::now().as_second() as f64;
    let last = get("aps_backup_last_success_timestamp_seconds", blog);
    assert!(now - last < 600.0 && last <= now + 1.0, "{last} vs {now}");
    assert!(get("aps_backup_last_size_bytes", blog) > 0.0);
    assert!(get("aps_backup_last_duration_seconds", blog) >= 0.0);
    let shop = r#"instance="shop",periodicity="daily""#;
    assert_eq!(
        get(
            "aps_backup_failures_total",
            &format!(r#"{shop},kind="script-failed""#)
        ),
        1.0
    );
    assert!(get("aps_backup_last_failure_timestamp_seconds", shop) > 0.0);
    assert_eq!(
        get("aps_backup_last_success_timestamp_seconds", shop),
        0.0,
        "shop never succeeded: 0, which any age alert catches"
    );
    assert!(
        get(
            "aps_backup_last_success_timestamp_seconds",
            r#"instance="late",periodicity="hourly""#
        ) > 0.0
    );
}

/// One request a listener thread took: the request line and the body.
fn listener() -> (String, mpsc::Receiver<(String, String)>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", l.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for stream in l.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            let mut length = 0;
            loop {
                let mut header = String::new();
                reader.read_line(&mut header).unwrap();
                if header.trim().is_empty() {
                    break;
                }
                if let Some((k, v)) = header.split_once(':')
                    && k.eq_ignore_ascii_case("content-length")
                {
                    length = v.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            reader.read_exact(&mut body).unwrap();
            let _ = stream
                .write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nOK");
            if tx
                .send((line.trim().to_owned(), String::from_utf8(body).unwrap()))
                .is_err()
            {
                return;
            }
        }
    });
    (url, rx)
}

/// A root-owned program, writable by its owner only, that writes its stdin and its account to
/// `OUT`/stdin and `OUT`/user.
fn recorder(dir: &Utf8Path) -> camino::Utf8PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let program = dir.join("record-run");
    std::fs::write(
        &program,
        "#!/bin/sh\ncat > \"$1/stdin\"\nid -un > \"$1/user\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
    program
}

fn notify_config(sb: &Sandbox, url: &str, program: &Utf8Path, out: &Utf8Path, user: &str) {
    std::fs::write(
        sb.state().join("panel.toml"),
        format!(
            "[notify]\nurl = \"{url}/ping/5f1c\"\ncommand = [\"{program}\", \"{out}\"]\n{user}timeout-secs = 5\n"
        ),
    )
    .unwrap();
}

#[test]
fn run_pings_the_url_and_hands_its_json_to_the_command_and_a_failed_notice_fails_nothing() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    sh(&sb, "shop", "fail-after-half");
    let (url, pings) = listener();
    let out_dir = sb.path("notified");
    std::fs::create_dir(&out_dir).unwrap();
    let program = recorder(&sb.root());
    notify_config(&sb, &url, &program, &out_dir, "");

    // A good run: the URL itself, POSTed the summary line; the command given it on stdin.
    let out = sb.cli(&[
        "run",
        "--periodicity",
        "daily",
        "--instance",
        "blog",
        "--json",
    ]);
    assert_eq!(code(&out), 0, "{out:?}");
    let (line, body) = pings
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(line, "POST /ping/5f1c HTTP/1.1");
    let sent: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        (sent["type"].as_str(), sent["ok"].as_bool()),
        (Some("summary"), Some(true))
    );
    assert_eq!(sent["summary"]["instances"][0]["instance"], "blog");
    let given: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("stdin")).unwrap()).unwrap();
    assert_eq!(given, sent, "the command gets the same JSON");
    assert_eq!(
        std::fs::read_to_string(out_dir.join("user"))
            .unwrap()
            .trim(),
        "root"
    );
    let printed: Value = String::from_utf8_lossy(&out.stdout)
        .lines()
        .last()
        .map(|l| serde_json::from_str(l).unwrap())
        .unwrap();
    checked("run --json", &printed);
    let notified = printed["summary"]["notify"].as_array().unwrap();
    assert!(notified.iter().all(|n| n["ok"] == true), "{printed}");

    // A failed run: `/fail` appended, as healthchecks.io takes it.
    let out = sb.cli(&["run", "--periodicity", "daily", "--instance", "shop"]);
    assert_eq!(code(&out), 1);
    let (line, body) = pings
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(line, "POST /ping/5f1c/fail HTTP/1.1");
    assert!(body.contains("\"ok\":false"), "{body}");

    // Notices that fail — nothing listening, a program others could have changed — are
    // warnings: the good run stays good, and the journal's entry says so.
    std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o777)).unwrap();
    let dead = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        format!("http://{}", l.local_addr().unwrap())
    };
    notify_config(&sb, &dead, &program, &out_dir, "");
    std::fs::remove_file(out_dir.join("stdin")).unwrap();
    let out = sb.cli(&["run", "--periodicity", "daily", "--instance", "blog"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("warning: notify url"), "{stderr}");
    assert!(
        stderr.contains("warning: notify command") && stderr.contains("mode 0777"),
        "{stderr}"
    );
    assert!(
        !out_dir.join("stdin").exists(),
        "the untrusted program never ran"
    );
    let log = json(&sb.cli(&["log", "--json"]));
    let last_run = log["operations"]
        .as_array()
        .unwrap()
        .iter()
        .rfind(|o| o["operation"] == "run")
        .unwrap()
        .clone();
    assert_eq!(last_run["outcome"], "ok", "{last_run}");
    assert!(
        last_run["message"]
            .as_str()
            .unwrap()
            .contains("notify url failed"),
        "{last_run}"
    );
}

#[test]
fn the_notify_command_runs_as_its_configured_account() {
    use std::os::unix::fs::PermissionsExt;
    if !support::root::needs_root("running the notify command as another account") {
        return;
    }
    let sb = Sandbox::new();
    sh(&sb, "blog", "normal");
    // Somewhere the tenant account reaches: the program, and a folder it may write into.
    let open = tempfile::Builder::new()
        .prefix("aps-notify-")
        .tempdir()
        .unwrap();
    let open = Utf8Path::from_path(open.path()).unwrap().to_owned();
    std::fs::set_permissions(&open, std::fs::Permissions::from_mode(0o755)).unwrap();
    let program = recorder(&open);
    let out_dir = open.join("out");
    std::fs::create_dir(&out_dir).unwrap();
    std::fs::set_permissions(&out_dir, std::fs::Permissions::from_mode(0o777)).unwrap();
    let (url, pings) = listener();
    let tenant = support::tenant::tenant();
    notify_config(
        &sb,
        &url,
        &program,
        &out_dir,
        &format!("user = \"{}\"\n", tenant.name),
    );
    let out = sb.cli(&["run", "--periodicity", "daily"]);
    assert_eq!(code(&out), 0, "{out:?}");
    pings
        .recv_timeout(std::time::Duration::from_secs(10))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(out_dir.join("user"))
            .unwrap()
            .trim(),
        tenant.name
    );
    let given: Value =
        serde_json::from_slice(&std::fs::read(out_dir.join("stdin")).unwrap()).unwrap();
    assert_eq!(given["summary"]["succeeded"], 1);
}

#[test]
fn status_of_a_shared_repository_answers_every_hosts_instances() {
    // Two servers (two state folders) back up into one repository.
    let one = Sandbox::new();
    one.use_repository();
    sh(&one, "blog", "normal");
    let two = Sandbox::new();
    let (repo, key, password) = (
        one.state().join("repository"),
        one.state().join("repository.key"),
        one.state().join("repository.password"),
    );
    std::fs::write(
        two.state().join("panel.toml"),
        format!(
            "[store]\nkind = \"repository\"\nhost = \"web2\"\npath = \"{repo}\"\nkey-file = \"{key}\"\npassword-file = \"{password}\"\n"
        ),
    )
    .unwrap();
    sh(&two, "shop", "normal");
    for sb in [&one, &two] {
        let out = sb.cli(&["run", "--periodicity", "daily"]);
        assert_eq!(code(&out), 0, "{out:?}");
    }
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .unwrap()
        .trim()
        .to_owned();
    // Server two sees server one's instance too, from its snapshots.
    let out = two.cli(&["status", "--repository", "--json"]);
    assert_eq!(code(&out), 0, "{out:?}");
    let t = json(&out);
    checked("status --repository --json", &t);
    // Server two names its snapshots `web2` ([store] host); server one, the machine's name.
    for (name, its_host) in [("blog", host.as_str()), ("shop", "web2")] {
        let r = row(&t, name, Some("daily"));
        assert_eq!(r["host"], its_host, "{r}");
        assert_eq!(
            r["last_success"]["snapshot"].as_str().unwrap().len(),
            64,
            "{r}"
        );
        assert!(r["last_success"]["size"].as_u64().unwrap() > 0, "{r}");
        assert!(r["last_failure"].is_null());
    }
    let text = String::from_utf8_lossy(&two.cli(&["status", "--repository"]).stdout).into_owned();
    assert!(text.starts_with("HOST "), "{text}");
    // A second later, a second is too old: both stale, named with their host.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let out = two.cli(&["status", "--repository", "--max-age", "1s", "--json"]);
    assert_eq!(code(&out), 27, "{out:?}");
    let mut stale: Vec<String> = json(&out)["stale"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    stale.sort();
    let mut expected = vec![format!("{host}/blog"), "web2/shop".to_owned()];
    expected.sort();
    assert_eq!(stale, expected);
    // A store of archive files keeps no hosts: refused, nothing read.
    let plain = Sandbox::new();
    sh(&plain, "wiki", "normal");
    let out = plain.cli(&["status", "--repository", "--json"]);
    assert_eq!(code(&out), 2, "{out:?}");
    assert!(
        json(&out)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("repository store"),
        "{out:?}"
    );
}
