//! Registration checks what it can (issue 23, item 9), through the binary and against the real
//! MariaDB and PostgreSQL servers: a database login that does not work, a database that does
//! not exist, web folders and databases of another instance, a misspelt setting; and
//! `instance check` on an instance whose database password was changed after registration.

use test_support as support;

use std::process::Output;
use std::time::Duration;

use aps_controller::database::{self, Database};
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::json;
use support::{Sandbox, databases, db_toml, fixture, json};

/// An INSTANCE.toml of nobackup-sample (a MySQL `main`, a PostgreSQL `stats`) over `www`.
fn instance_file(
    sb: &Sandbox,
    name: &str,
    www: &Utf8Path,
    main: &Database,
    stats: &Database,
    settings: &str,
) -> Utf8PathBuf {
    std::fs::create_dir_all(www).unwrap();
    let file = sb.path(&format!("{name}.toml"));
    std::fs::write(
        &file,
        format!(
            "name = \"{name}\"\npackage = \"{}\"\nbase-url = \"http://{name}.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n[settings]\n{settings}\n{}{}",
            fixture("nobackup-sample"),
            db_toml("main", main),
            db_toml("stats", stats)
        ),
    )
    .unwrap();
    file
}

fn register(sb: &Sandbox, file: &Utf8Path, more: &[&str]) -> Output {
    let mut args = vec!["instance", "register", "--file", file.as_str(), "--json"];
    args.extend(more);
    sb.cli(&args)
}

/// A refused registration: usage, exit 2, its `problems`, and nothing stored.
fn refused(sb: &Sandbox, out: &Output) -> Vec<String> {
    assert_eq!(out.status.code(), Some(2), "{}", show(out));
    let v = json(out);
    support::schema::Envelope::get()
        .check("register", &v)
        .unwrap();
    assert_eq!(v["error"]["kind"], "usage", "{v}");
    let listed = json(&sb.cli(&["instance", "list", "--json"]));
    assert_eq!(listed["instances"], json!([]), "nothing stored: {listed}");
    v["error"]["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p.as_str().unwrap().to_owned())
        .collect()
}

fn show(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

fn one<'a>(problems: &'a [String], prefix: &str) -> &'a str {
    problems
        .iter()
        .find(|p| p.starts_with(prefix))
        .unwrap_or_else(|| panic!("no problem starting with {prefix:?}: {problems:#?}"))
}

#[test]
fn a_login_that_does_not_work_is_refused_with_the_servers_words() {
    let sb = Sandbox::new();
    let dbs = databases("badlogin").expect("the test database servers");
    let file = instance_file(
        &sb,
        "blog",
        &sb.path("www-blog"),
        &dbs.mysql.with_password("wrong-password"),
        &dbs.pg.with_password("wrong-password"),
        "admin_password = \"pw\"",
    );
    let problems = refused(&sb, &register(&sb, &file, &[]));
    let main = one(&problems, "databases.main: cannot connect");
    assert!(
        main.contains("Access denied") && main.contains(&dbs.mysql.name),
        "the server's words and the database: {main}"
    );
    assert!(
        main.contains("check `login` and `password` in [databases.main]")
            && main.contains("--no-connect"),
        "{main}"
    );
    let stats = one(&problems, "databases.stats: cannot connect");
    assert!(stats.contains("password authentication failed"), "{stats}");
    assert!(!show(&register(&sb, &file, &[])).contains("wrong-password"));

    // Offline, it registers (the database may be made later); `instance check` finds it.
    let out = register(&sb, &file, &["--no-connect"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = sb.cli(&["instance", "check", "blog", "--json"]);
    assert_eq!(out.status.code(), Some(16), "{}", show(&out));
    let v = json(&out);
    support::schema::Envelope::get().check("check", &v).unwrap();
    assert_eq!(v["error"]["kind"], "resource-failed", "{v}");
}

#[test]
fn a_database_that_does_not_exist_is_refused() {
    let sb = Sandbox::new();
    let dbs = databases("nodb").expect("the test database servers");
    let missing = Database {
        name: format!("{}_absent", dbs.pg.name),
        ..dbs.pg.database().clone()
    };
    let file = instance_file(
        &sb,
        "blog",
        &sb.path("www-blog"),
        &dbs.mysql,
        &missing,
        "admin_password = \"pw\"",
    );
    let problems = refused(&sb, &register(&sb, &file, &[]));
    let stats = one(&problems, "databases.stats: cannot connect");
    assert!(
        stats.contains("does not exist") && stats.contains("create the database"),
        "{stats}"
    );
    assert!(
        !problems.iter().any(|p| p.starts_with("databases.main")),
        "main works: {problems:#?}"
    );
}

#[test]
fn folders_and_databases_of_another_instance_are_refused() {
    let sb = Sandbox::new();
    let dbs = databases("taken").expect("the test database servers");
    let other = databases("taken2").expect("the test database servers");
    let www = sb.path("sites/one");
    let first = instance_file(
        &sb,
        "one",
        &www,
        &dbs.mysql,
        &dbs.pg,
        "admin_password = \"pw\"",
    );
    let out = register(&sb, &first, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));

    // Own databases, but the same folder, one inside it, one holding it.
    for (dir, how) in [
        (www.clone(), "is"),
        (www.join("htdocs"), "lies inside"),
        (sb.path("sites"), "holds"),
    ] {
        let file = instance_file(
            &sb,
            "two",
            &dir,
            &other.mysql,
            &other.pg,
            "admin_password = \"pw\"",
        );
        let out = register(&sb, &file, &[]);
        assert_eq!(out.status.code(), Some(2), "{}", show(&out));
        let problems: Vec<String> = json(&out)["error"]["problems"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        let p = one(&problems, "web-dirs.\"/\"");
        assert!(
            p.contains(&format!("{dir} {how} {www}")) && p.contains("instance \"one\""),
            "{p}"
        );
    }
    let listed = json(&sb.cli(&["instance", "list", "--json"]));
    assert_eq!(listed["instances"].as_array().unwrap().len(), 1, "{listed}");

    // Its own folder, but one's databases (the MySQL one written as `localhost`).
    let same_db = Database {
        host: "localhost".into(),
        ..dbs.mysql.database().clone()
    };
    let file = instance_file(
        &sb,
        "two",
        &sb.path("sites-two"),
        &same_db,
        &dbs.pg,
        "admin_password = \"pw\"",
    );
    let out = register(&sb, &file, &["--no-connect"]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains(&format!(
            "databases.main: MySQL/MariaDB database `{}` on localhost:{} is already database \\\"main\\\" of instance \\\"one\\\"",
            dbs.mysql.name, dbs.mysql.port
        )),
        "{text}"
    );
    assert!(text.contains("databases.stats:"), "{text}");

    // `--replace` of the instance itself is not a conflict with itself.
    let out = register(&sb, &first, &["--replace"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
}

#[test]
fn a_misspelt_setting_or_database_id_gets_did_you_mean() {
    let sb = Sandbox::new();
    let www = sb.path("www-blog");
    std::fs::create_dir_all(&www).unwrap();
    let file = sb.path("blog.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"blog\"\npackage = \"{}\"\nbase-url = \"http://blog.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_pasword = \"pw\"\ncolour = \"red\"\n\
             [databases.mian]\ntype = \"mysql\"\nname = \"d\"\nlogin = \"u\"\npassword = \"p\"\n\
             host = \"127.0.0.1\"\n",
            fixture("nobackup-sample")
        ),
    )
    .unwrap();
    let out = sb.cli(&["instance", "register", "--file", file.as_str()]);
    assert_eq!(out.status.code(), Some(2), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains(
            "settings.admin_pasword: the package declares no such setting; did you mean \
             `admin_password`?"
        ),
        "{text}"
    );
    assert!(
        text.contains("settings.colour: the package declares no such setting (it declares: "),
        "{text}"
    );
    assert!(
        text.contains(
            "databases.mian: the package has no database requirement with this id; did you \
             mean `main`?"
        ),
        "{text}"
    );
}

#[test]
fn instance_check_finds_a_password_changed_after_registration() {
    let sb = Sandbox::new();
    let dbs = databases("changed").expect("the test database servers");
    let file = instance_file(
        &sb,
        "blog",
        &sb.path("www-blog"),
        &dbs.mysql,
        &dbs.pg,
        "admin_password = \"pw\"",
    );
    let out = register(&sb, &file, &[]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let out = sb.cli(&["instance", "check", "blog"]);
    assert_eq!(out.status.code(), Some(0), "{}", show(&out));
    let text = show(&out);
    assert!(
        text.contains("ok       databases.main: connected as"),
        "{text}"
    );
    assert!(text.contains("checks passed"), "{text}");

    // The hosting panel changes the MySQL login's password; the record still has the old one.
    let sql = format!(
        "ALTER USER '{0}'@'%' IDENTIFIED BY 'changed-afterwards';",
        dbs.mysql.name
    );
    database::query(dbs.mysql.admin(), &sql, Duration::from_secs(30)).unwrap();

    let out = sb.cli(&["instance", "check", "blog", "--json"]);
    assert_eq!(out.status.code(), Some(16), "{}", show(&out));
    let v = json(&out);
    support::schema::Envelope::get().check("check", &v).unwrap();
    assert_eq!(v["error"]["kind"], "resource-failed", "{v}");
    let checks = v["checks"].as_array().unwrap();
    let by_name = |n: &str| checks.iter().find(|c| c["check"] == n).unwrap().clone();
    assert_eq!(by_name("databases.stats")["ok"], true, "{v}");
    let main = by_name("databases.main");
    assert_eq!(main["ok"], false, "{v}");
    let message = main["message"].as_str().unwrap();
    assert!(
        message.contains("Access denied") && message.contains("--replace"),
        "{message}"
    );
    let out = sb.cli(&["instance", "check", "blog"]);
    assert_eq!(out.status.code(), Some(16));
    let text = show(&out);
    assert!(
        text.contains("problem  databases.main: cannot connect"),
        "{text}"
    );
    assert!(
        text.contains("error [resource-failed] at step check: instance blog: 1 problem(s)"),
        "{text}"
    );
}

#[test]
fn registration_over_http_tries_the_login_too() {
    let sb = Sandbox::new();
    let dbs = databases("http").expect("the test database servers");
    let incoming = sb.path("incoming");
    std::fs::create_dir_all(&incoming).unwrap();
    let fixtures = support::repo().join("fixtures");
    let server = support::serve::serve_with(
        &sb,
        &[sb.root().as_str(), fixtures.as_str()],
        &[incoming.as_str()],
    );
    let file = instance_file(
        &sb,
        "blog",
        &sb.path("www-blog"),
        &dbs.mysql.with_password("wrong-password"),
        &dbs.pg,
        "admin_password = \"pw\"",
    );
    let file_in = incoming.join("blog.toml");
    std::fs::rename(&file, &file_in).unwrap();
    let (status, v) = server.call("POST", "/v1/instances", json!({"file": file_in}));
    assert_eq!(status, 422, "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("databases.main: cannot connect")
            && message.contains("\"no_connect\": true")
            && !message.contains("--no-connect"),
        "{message}"
    );
    let (status, v) = server.call(
        "POST",
        "/v1/instances",
        json!({"file": file_in, "no_connect": true}),
    );
    assert_eq!(status, 201, "{v}");
}
