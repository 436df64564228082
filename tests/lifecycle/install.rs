//! `instance install`: a package installed as the tenant end to end, each refusal making
//! nothing, each failure undone with the state compared before and after.

use std::os::unix::fs::MetadataExt;

use camino::{Utf8Path, Utf8PathBuf};
use test_support as support;

use support::tenant::tenant;
use support::{Sandbox, assert_success, fixture, json, needs_root, tree_state};

/// A sandbox for the tenant with `www/`, the tenant's folder the web roots go into. Its
/// controller.toml says what this host offers packages: the PHP the sites run, and the system's
/// python3 (the tenant must reach the interpreter, which one in root's home folder is not).
pub(crate) fn tenant_sandbox() -> (Sandbox, Utf8PathBuf) {
    let sb = Sandbox::for_tenants();
    std::fs::create_dir_all(sb.state()).unwrap();
    std::fs::write(
        sb.state().join("controller.toml"),
        "allow-root-scripts = false\nphp-version = \"8.2\"\n[interpreters]\npython = \"/usr/bin/python3\"\n",
    )
    .unwrap();
    let www = sb.path("www");
    std::fs::create_dir(&www).unwrap();
    let t = tenant();
    support::chown_r(&www, t.uid, t.gid);
    (sb, www)
}

/// `instance install PACKAGE --name NAME --base-url … --web-root ROOT ARGS… --json`.
pub(crate) fn install_cmd(
    sb: &Sandbox,
    package: &Utf8Path,
    name: &str,
    web_root: &Utf8Path,
    args: &[&str],
) -> std::process::Command {
    let url = format!("https://{name}.example/");
    let mut all = vec![
        "instance",
        "install",
        package.as_str(),
        "--name",
        name,
        "--base-url",
        &url,
        "--web-root",
        web_root.as_str(),
        "--json",
    ];
    all.extend_from_slice(args);
    sb.command(&all)
}

pub(crate) fn install(
    sb: &Sandbox,
    package: &Utf8Path,
    name: &str,
    web_root: &Utf8Path,
    args: &[&str],
) -> std::process::Output {
    install_cmd(sb, package, name, web_root, args)
        .output()
        .unwrap()
}

/// The registered instances' names.
pub(crate) fn instances(sb: &Sandbox) -> Vec<String> {
    let out = sb.cli(&["instance", "list", "--json"]);
    assert_success(&out, "instance list");
    json(&out)["instances"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["name"].as_str().unwrap().to_owned())
        .collect()
}

/// Every entry under `dir` is the tenant's.
fn owned_by_tenant(dir: &Utf8Path) {
    let uid = tenant().uid;
    let mut stack = vec![dir.to_owned()];
    while let Some(d) = stack.pop() {
        assert_eq!(std::fs::symlink_metadata(&d).unwrap().uid(), uid, "{d}");
        for e in std::fs::read_dir(&d).unwrap() {
            let p = Utf8PathBuf::from_path_buf(e.unwrap().path()).unwrap();
            let meta = std::fs::symlink_metadata(&p).unwrap();
            assert_eq!(meta.uid(), uid, "{p} is not the tenant's");
            if meta.is_dir() {
                stack.push(p);
            }
        }
    }
}

#[test]
fn sh_sample_installs_as_the_tenant_and_is_recorded_last() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let root = www.join("demo");
    let package = fixture("sh-sample");

    // A dry run checks everything and makes nothing.
    let dry = install(
        &sb,
        &package,
        "demo",
        &root,
        &["--setting", "admin_password=pw", "--dry-run"],
    );
    assert_success(&dry, "install --dry-run");
    let v = json(&dry);
    assert_eq!(v["dry_run"], true, "{v}");
    assert_eq!(v["account"], "aps-test", "{v}");
    assert!(!root.exists(), "a dry run made the web root");
    assert!(instances(&sb).is_empty());

    // A settings file, and --setting over it.
    let settings = sb.path("settings.toml");
    std::fs::write(
        &settings,
        "admin_password = \"s3cret\"\nlocale = \"en-US\"\ndomains = [\"c.example\"]\n",
    )
    .unwrap();
    let out = install(
        &sb,
        &package,
        "demo",
        &root,
        &[
            "--settings-file",
            settings.as_str(),
            "--setting",
            "domains=a.example",
            "--setting",
            "domains=b.example",
            "--setting",
            "locale=de-DE",
        ],
    );
    assert_success(&out, "install");
    let v = json(&out);
    assert_eq!(v["ok"], true, "{v}");
    assert_eq!(v["instance"], "demo");
    assert_eq!(v["verified"], true, "{v}");
    assert_eq!(v["configure_output"], "configure install", "{v}");
    assert_eq!(v["settings"]["admin_password"], "***", "{v}");
    assert_eq!(
        v["settings"]["domains"],
        serde_json::json!(["a.example", "b.example"])
    );
    assert_eq!(v["files"]["files"], 4, "{v}");
    let phases: Vec<&str> = v["phases"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["phase"].as_str().unwrap())
        .collect();
    assert_eq!(
        phases,
        [
            "install-check-package",
            "install-requirements",
            "install-settings",
            "install-web-root",
            "install-files",
            "install-databases",
            "install-configure",
            "install-record"
        ]
    );
    // The package's content, owned by the tenant; the writable mapping 0775.
    assert_eq!(
        support::entries(&root),
        ["blogs", "cache", "config.php", "index.html"]
    );
    assert_eq!(
        std::fs::read(root.join("index.html")).unwrap(),
        std::fs::read(package.join("htdocs/index.html")).unwrap()
    );
    owned_by_tenant(&root);
    let cache = std::fs::metadata(root.join("cache")).unwrap();
    assert_eq!(cache.mode() & 0o7777, 0o775);

    // Recorded, with the account; the password is kept out of the record.
    assert_eq!(instances(&sb), ["demo"]);
    let show = sb.cli(&["instance", "show", "demo", "--json"]);
    assert_success(&show, "instance show");
    let shown = String::from_utf8_lossy(&show.stdout).into_owned();
    assert!(!shown.contains("s3cret"), "{shown}");
    let record = std::fs::read_to_string(sb.state().join("instances/demo.json")).unwrap();
    assert!(record.contains("\"aps-test\""), "{record}");
    assert!(!record.contains("s3cret"), "{record}");

    // The name is taken now, whatever the web root.
    let again = install(
        &sb,
        &package,
        "demo",
        &www.join("other"),
        &["--setting", "admin_password=pw"],
    );
    assert_eq!(
        again.status.code(),
        Some(25),
        "{}",
        String::from_utf8_lossy(&again.stdout)
    );
    assert_eq!(json(&again)["error"]["kind"], "instance-exists");
    assert!(!www.join("other").exists());
}

/// One refused install: its exit code and kind, and nothing made anywhere.
fn refused(
    sb: &Sandbox,
    www: &Utf8Path,
    package: &Utf8Path,
    root: &Utf8Path,
    args: &[&str],
    code: i32,
    kind: &str,
) -> serde_json::Value {
    let before = tree_state(www, &[]);
    let out = install(sb, package, "refused", root, args);
    let v = json(&out);
    assert_eq!(out.status.code(), Some(code), "{args:?}: {v}");
    assert_eq!(v["error"]["kind"], kind, "{args:?}: {v}");
    assert_eq!(
        tree_state(www, &[]),
        before,
        "{args:?} changed the web folders"
    );
    assert!(instances(sb).is_empty(), "{args:?} recorded an instance");
    v
}

#[test]
fn each_refusal_names_its_problems_and_makes_nothing() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = fixture("sh-sample");
    let root = www.join("site");

    // Settings: every problem at once, each naming its setting.
    let v = refused(
        &sb,
        &www,
        &package,
        &root,
        &["--setting", "locale=fr-FR", "--setting", "colour=red"],
        24,
        "invalid-settings",
    );
    let problems = v["error"]["problems"].to_string();
    for id in ["admin_password", "locale", "colour"] {
        assert!(problems.contains(id), "{id} not named: {problems}");
    }
    assert_eq!(v["error"]["step"], "install-settings");

    // A requirement: a database server controller.toml does not name, and a database for a
    // requirement the package does not have. (A copy: the fixture's APP-LIST.xml is stale.)
    let databases = sb.path("databases");
    copy_package(&fixture("sh-databases"), &databases);
    let v = refused(
        &sb,
        &www,
        &databases,
        &root,
        &[
            "--setting",
            "admin_password=pw",
            "--database",
            "main=nosuch",
            "--database",
            "mian=nosuch",
        ],
        23,
        "requirement-unmet",
    );
    let problems = v["error"]["problems"].to_string();
    assert!(problems.contains("nosuch"), "{v}");
    assert!(problems.contains("mian"), "{v}");
    assert!(problems.contains("stats"), "{v}");

    // An interpreter this host lacks, named before anything runs.
    let odd = sb.path("odd-language");
    copy_package(&package, &odd);
    let meta = std::fs::read_to_string(odd.join("APP-META.xml")).unwrap();
    std::fs::write(
        odd.join("APP-META.xml"),
        meta.replacen("<configuration-script name=\"configure\">\n        <script-language>sh</script-language>", "<configuration-script name=\"configure\">\n        <script-language>cobol</script-language>", 1),
    )
    .unwrap();
    let v = refused(
        &sb,
        &www,
        &odd,
        &root,
        &["--setting", "admin_password=pw"],
        23,
        "requirement-unmet",
    );
    assert!(
        v["error"]["message"].as_str().unwrap().contains("cobol"),
        "{v}"
    );

    // An interpreter root can run but the account cannot reach (a folder only root enters,
    // as a pyenv shim under /root is): named before anything is made, not at configure.
    let private = sb.path("root-only");
    std::fs::create_dir(&private).unwrap();
    std::os::unix::fs::symlink("/bin/sh", private.join("sh")).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&private, std::fs::Permissions::from_mode(0o700)).unwrap();
    let config = sb.state().join("controller.toml");
    let kept = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{kept}sh = \"{private}/sh\"\n")).unwrap();
    let v = refused(
        &sb,
        &www,
        &package,
        &root,
        &["--setting", "admin_password=pw"],
        23,
        "requirement-unmet",
    );
    std::fs::write(&config, kept).unwrap();
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&format!("{private}/sh")) && message.contains(&tenant().name),
        "{v}"
    );

    // An occupied web root; with --force, a name of the package already there.
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("mine.txt"), "the tenant's").unwrap();
    support::chown_r(&root, tenant().uid, tenant().gid);
    let v = refused(
        &sb,
        &www,
        &package,
        &root,
        &["--setting", "admin_password=pw"],
        12,
        "destination-refused",
    );
    assert_eq!(v["error"]["problems"], serde_json::json!(["mine.txt"]));
    std::fs::write(root.join("index.html"), "the tenant's own").unwrap();
    support::chown_r(&root, tenant().uid, tenant().gid);
    let v = refused(
        &sb,
        &www,
        &package,
        &root,
        &["--setting", "admin_password=pw", "--force"],
        12,
        "destination-refused",
    );
    assert_eq!(v["error"]["problems"], serde_json::json!(["index.html"]));

    // A web root the tenant does not own, and a system folder.
    let roots = sb.path("roots-own");
    std::fs::create_dir(&roots).unwrap();
    refused(
        &sb,
        &www,
        &package,
        &roots,
        &["--setting", "admin_password=pw", "--user", "aps-test"],
        12,
        "destination-refused",
    );
    refused(
        &sb,
        &www,
        &package,
        Utf8Path::new("/etc"),
        &[
            "--setting",
            "admin_password=pw",
            "--user",
            "aps-test",
            "--force",
        ],
        12,
        "destination-refused",
    );

    // A broken package.
    let broken = sb.path("broken");
    copy_package(&package, &broken);
    std::fs::write(broken.join("APP-META.xml"), "<application").unwrap();
    refused(
        &sb,
        &www,
        &broken,
        &root,
        &["--setting", "admin_password=pw"],
        10,
        "invalid-package",
    );
}

/// A copy of a fixture package without its APP-LIST.xml (which a changed file would no longer
/// match): the listing is optional, its absence only a warning of `package check`.
pub(crate) fn copy_package(from: &Utf8Path, to: &Utf8Path) {
    let out = std::process::Command::new("cp")
        .args(["-R", from.as_str(), to.as_str()])
        .output()
        .unwrap();
    assert_success(&out, "cp -R");
    std::fs::remove_file(to.join("APP-LIST.xml")).unwrap();
}

/// A copy of sh-sample at `sb/name` with `folders` × `files` small files more under
/// `htdocs/bulk/`, so that writing them takes a while.
pub(crate) fn bulk_package(sb: &Sandbox, name: &str, folders: usize, files: usize) -> Utf8PathBuf {
    let package = sb.path(name);
    copy_package(&fixture("sh-sample"), &package);
    for d in 0..folders {
        let dir = package.join(format!("htdocs/bulk/d{d:03}"));
        std::fs::create_dir_all(&dir).unwrap();
        for f in 0..files {
            std::fs::write(dir.join(format!("f{f:03}.txt")), format!("{d}/{f}")).unwrap();
        }
    }
    package
}

/// A copy of sh-sample whose configure script is `text`.
pub(crate) fn with_configure(sb: &Sandbox, name: &str, text: &str) -> Utf8PathBuf {
    let package = sb.path(name);
    copy_package(&fixture("sh-sample"), &package);
    std::fs::write(package.join("scripts/configure"), text).unwrap();
    package
}

#[test]
fn a_failure_after_files_and_script_undoes_everything() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    // The verification-script fails: files made, configure run, nothing recorded.
    let new_root = www.join("fresh");
    let before = tree_state(&www, &[]);
    let out = install(
        &sb,
        &fixture("sh-sample"),
        "fails",
        &new_root,
        &[
            "--setting",
            "admin_password=pw",
            "--setting",
            "behaviour=verify-fails",
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "run-verification-script", "{v}");
    assert!(
        v["error"]["stderr_tail"]
            .as_str()
            .unwrap()
            .contains("verification failed"),
        "{v}"
    );
    assert_eq!(
        tree_state(&www, &[]),
        before,
        "the made web root was not removed"
    );
    assert!(instances(&sb).is_empty());

    // configure install writes into the web root, then fails: in an existing web root with
    // --force, only what the install made goes; the tenant's file and what the script wrote
    // into the tenant's own folder stay.
    let package = with_configure(
        &sb,
        "half",
        "#!/bin/sh\necho started > \"$WEB___DIR/cache/state\"\necho 'half done, then broken' >&2\nexit 3\n",
    );
    let root = www.join("shared");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("mine.txt"), "the tenant's").unwrap();
    support::chown_r(&root, tenant().uid, tenant().gid);
    let before = tree_state(&www, &[]);
    let out = install(
        &sb,
        &package,
        "half",
        &root,
        &["--setting", "admin_password=pw", "--force"],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    assert_eq!(v["error"]["step"], "install-configure", "{v}");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("configuration script"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before, "the install left something");
    assert!(instances(&sb).is_empty());

    // The history says the install failed, at which step.
    let log = sb.cli(&["log", "--json"]);
    assert_success(&log, "log");
    let text = String::from_utf8_lossy(&log.stdout);
    assert!(text.contains("\"install\""), "{text}");
}

#[test]
fn structured_output_errors_fail_the_install_naming_the_setting_and_settings_are_stored() {
    if !needs_root("an install as the tenant account") {
        return;
    }
    let (sb, www) = tenant_sandbox();
    let package = with_configure(
        &sb,
        "structured",
        r#"#!/bin/sh
if [ "$SETTINGS_admin_name" = refuse ]; then
  echo '<output xmlns="http://apstandard.com/ns/1/configure-output"><errors><error id="1" setting-id="admin_name"><message>this login is reserved</message></error></errors></output>'
  exit 1
fi
echo '<output xmlns="http://apstandard.com/ns/1/configure-output"><settings><setting id="site_title"><value>Made by the script</value></setting></settings></output>'
"#,
    );
    let meta = std::fs::read_to_string(package.join("APP-META.xml")).unwrap();
    std::fs::write(
        package.join("APP-META.xml"),
        meta.replacen(
            "<script-language>sh</script-language>\n      </configuration-script>",
            "<script-language>sh</script-language>\n        <structured-output/>\n      </configuration-script>",
            1,
        ),
    )
    .unwrap();
    let before = tree_state(&www, &[]);
    let out = install(
        &sb,
        &package,
        "st",
        &www.join("st"),
        &[
            "--setting",
            "admin_password=pw",
            "--setting",
            "admin_name=refuse",
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(13), "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("[admin_name] this login is reserved"),
        "{v}"
    );
    assert_eq!(tree_state(&www, &[]), before);

    let out = install(
        &sb,
        &package,
        "st",
        &www.join("st"),
        &["--setting", "admin_password=pw"],
    );
    assert_success(&out, "install");
    let v = json(&out);
    assert_eq!(
        v["computed_settings"]["site_title"], "Made by the script",
        "{v}"
    );
    let record = std::fs::read_to_string(sb.state().join("instances/st.json")).unwrap();
    assert!(record.contains("Made by the script"), "{record}");
}

#[test]
fn an_existing_database_is_used_as_given_and_never_dropped() {
    if !needs_root("an install as the tenant account")
        || support::skipped_on_purpose("APS_TEST_NO_DB", "an existing database")
    {
        return;
    }
    let Some(dbs) = support::databases("inst-existing") else {
        panic!("the test database servers: scripts/ci/start-services.sh");
    };
    let (sb, www) = tenant_sandbox();
    let files: Vec<Utf8PathBuf> = [("main", dbs.mysql.database()), ("stats", dbs.pg.database())]
        .into_iter()
        .map(|(id, db)| {
            let toml = support::db_toml(id, db);
            let body = toml.split_once('\n').unwrap().1;
            let path = sb.path(&format!("{id}.toml"));
            std::fs::write(&path, body).unwrap();
            path
        })
        .collect();
    // The script connects with the variables it is given.
    let package = sb.path("dbs");
    copy_package(&fixture("sh-databases"), &package);
    std::fs::write(
        package.join("scripts/configure"),
        "#!/bin/sh\nset -e\nMYSQL_PWD=\"$DB_main_PASSWORD\" mysql -h \"$DB_main_HOST\" -P \"$DB_main_PORT\" -u \"$DB_main_LOGIN\" \"$DB_main_NAME\" -e 'CREATE TABLE installed (id INT)'\nPGPASSWORD=\"$DB_stats_PASSWORD\" psql -h \"$DB_stats_HOST\" -p \"$DB_stats_PORT\" -U \"$DB_stats_LOGIN\" -d \"$DB_stats_NAME\" -qc 'CREATE TABLE installed (id INT)'\necho tables made\n",
    )
    .unwrap();
    // A login that does not work is refused before anything is made.
    let wrong = sb.path("wrong.toml");
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let password = dbs.mysql.database().password.expose().to_owned();
    std::fs::write(&wrong, text.replace(&password, "not-the-password")).unwrap();
    let before = tree_state(&www, &[]);
    let bad = format!("main=existing:{wrong}");
    let stats_given = format!("stats=existing:{}", files[1]);
    let out = install(
        &sb,
        &package,
        "dbs",
        &www.join("dbs"),
        &[
            "--setting",
            "admin_password=pw",
            "--database",
            &bad,
            "--database",
            &stats_given,
        ],
    );
    let v = json(&out);
    assert_eq!(out.status.code(), Some(23), "{v}");
    assert!(v["error"]["problems"].to_string().contains("main"), "{v}");
    assert_eq!(tree_state(&www, &[]), before);

    let main = format!("main=existing:{}", files[0]);
    let stats = format!("stats=existing:{}", files[1]);
    let out = install(
        &sb,
        &package,
        "dbs",
        &www.join("dbs"),
        &[
            "--setting",
            "admin_password=pw",
            "--database",
            &main,
            "--database",
            &stats,
        ],
    );
    assert_success(&out, "install with existing databases");
    let v = json(&out);
    assert_eq!(v["databases"][0]["created"], false, "{v}");
    assert_eq!(v["configure_output"], "tables made", "{v}");
    let record = std::fs::read_to_string(sb.state().join("instances/dbs.json")).unwrap();
    assert!(record.contains(&dbs.mysql.database().name), "{record}");
}
