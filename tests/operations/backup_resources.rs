//! Backups the controller makes itself (no backup-script, or one without `sufficient`): the
//! web folders and the databases go into one archive with the script's part, against the real
//! MariaDB and PostgreSQL test servers. The dumps are loaded back by hand, with the servers'
//! own clients, to prove the data is really there. Also: every script language runs.

use test_support as support;

use std::process::Command;
use std::time::Duration;

use aps_controller::archive::{self, ArchiveReader, ExtractPlan, PartKind};
use aps_controller::database::{self, Database, DbKind};
use camino::Utf8Path;

use support::{Dbs, Sandbox, assert_success, databases, db_toml, env_dump, json};

const T: Duration = Duration::from_secs(60);

/// Tables with binary data and non-ASCII text in each database.
fn fill(mysql: &Database, pg: &Database) {
    database::query(
        mysql,
        "CREATE TABLE posts (id INT PRIMARY KEY, title VARCHAR(100) CHARACTER SET utf8mb4, \
         body BLOB); \
         INSERT INTO posts VALUES (1, 'Grüße aus Köln — 東京', UNHEX('00FF10807F')), \
         (2, 'tab\\there', NULL);",
        T,
    )
    .unwrap();
    database::query(
        pg,
        "CREATE TABLE hits (id INT PRIMARY KEY, page TEXT, raw BYTEA); \
         INSERT INTO hits VALUES (1, 'Ærøskøbing', '\\x00ff10807f'::bytea), (2, 'plain', NULL); \
         CREATE SEQUENCE counter START 41;",
        T,
    )
    .unwrap();
}

fn mysql_rows(db: &Database) -> String {
    database::query(db, "SELECT id, title, HEX(body) FROM posts ORDER BY id", T).unwrap()
}

fn pg_rows(db: &Database) -> String {
    database::query(
        db,
        "SELECT id, page, encode(raw, 'hex') FROM hits ORDER BY id",
        T,
    )
    .unwrap()
}

fn register_sh_databases(sb: &Sandbox, name: &str, dbs: &Dbs) -> camino::Utf8PathBuf {
    sb.register(
        name,
        "sh-databases",
        &format!(
            "[settings]\nadmin_name = \"webmaster\"\nadmin_password = \"pw with spaces\"\n\
             site_title = \"Grüße\"\n{}{}",
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    )
}

/// Steps 1.1 + 2 + 3.2 without `sufficient`: the archive holds both dumps, the web folder and
/// what the script wrote with the standard's environment (settings, URL, web folders, both
/// databases); the manifest names the package and the instance.
#[test]
fn controller_archive_holds_databases_web_folders_and_the_script_part() {
    let Some(dbs) = databases("bkres") else {
        return;
    };
    fill(&dbs.mysql, &dbs.pg);
    let sb = Sandbox::new();
    let www = register_sh_databases(&sb, "shop", &dbs);
    std::fs::create_dir_all(www.join("media")).unwrap();
    std::fs::write(www.join("media/logo.png"), [0x89, b'P', b'N', b'G']).unwrap();

    let dest = sb.path("shop.aps");
    let out = sb.cli(&["backup", "shop", "--to", dest.as_str(), "--json"]);
    assert_success(&out, "backup");
    assert_eq!(json(&out)["file"], dest.as_str());

    let reader = ArchiveReader::open(&dest, None).expect("a verified archive");
    let m = reader.manifest();
    assert_eq!(
        m.header.package_id,
        "http://example.invalid/aps/sh-databases"
    );
    assert_eq!(m.header.version, "2.1.0");
    assert_eq!(m.header.release, "3");
    assert_eq!(m.header.instance, "shop");
    let mut kinds: Vec<String> = m
        .parts
        .iter()
        .map(|p| match &p.kind {
            PartKind::DatabaseDump { db_id, kind, .. } => format!("db {db_id} {kind}"),
            PartKind::WebDir { mapping_url } => format!("web {mapping_url}"),
            PartKind::ScriptBackup => "script".to_owned(),
        })
        .collect();
    kinds.sort();
    // "media" lives inside "/": archived once, with it.
    assert_eq!(
        kinds,
        ["db main mysql", "db stats postgresql", "script", "web /"]
    );
    let web = m.web_dir("/").unwrap();
    assert_eq!(
        web.file_count,
        Some(3),
        "index.html, cache/data.bin, media/logo.png: {web:?}"
    );
    for p in &m.parts {
        assert_eq!(p.sha256.len(), 64, "{p:?}");
    }
    let main_counts = m
        .parts
        .iter()
        .find_map(|p| match &p.kind {
            PartKind::DatabaseDump {
                db_id, row_counts, ..
            } if db_id == "main" => row_counts.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(main_counts.get("posts"), Some(&2));

    // The script's part: the environment it was given.
    let work = sb.path("extract");
    std::fs::create_dir_all(&work).unwrap();
    let script_part = m
        .parts
        .iter()
        .find(|p| p.kind == PartKind::ScriptBackup)
        .unwrap();
    let mysql_part = m
        .parts
        .iter()
        .find(|p| matches!(&p.kind, PartKind::DatabaseDump { db_id, .. } if db_id == "main"))
        .unwrap();
    let pg_part = m
        .parts
        .iter()
        .find(|p| matches!(&p.kind, PartKind::DatabaseDump { db_id, .. } if db_id == "stats"))
        .unwrap();
    reader
        .extract(
            &ExtractPlan::new()
                .file(&script_part.name, work.join("env"))
                .file(&mysql_part.name, work.join("main.sql"))
                .file(&pg_part.name, work.join("stats.sql"))
                .web_dir("/", work.join("www")),
        )
        .unwrap();
    let env = env_dump(&work.join("env"));
    assert_eq!(env["SETTINGS_admin_name"], "webmaster");
    assert_eq!(env["SETTINGS_admin_password"], "pw with spaces");
    assert_eq!(env["SETTINGS_site_title"], "Grüße");
    assert_eq!(env["SETTINGS_behaviour"], "normal");
    assert_eq!(env["BASE_URL_HOST"], "shop.example.test");
    assert_eq!(env["WEB___DIR"], www.as_str());
    assert_eq!(env["WEB_media_DIR"], www.join("media").as_str());
    for (id, db) in [("main", dbs.mysql.database()), ("stats", dbs.pg.database())] {
        assert_eq!(env[&format!("DB_{id}_TYPE")], db.kind.as_str());
        assert_eq!(env[&format!("DB_{id}_NAME")], db.name);
        assert_eq!(env[&format!("DB_{id}_LOGIN")], db.login);
        assert_eq!(env[&format!("DB_{id}_PASSWORD")], db.password.expose());
        assert_eq!(env[&format!("DB_{id}_HOST")], db.host);
        assert_eq!(env[&format!("DB_{id}_PORT")], db.port.to_string());
    }
    assert!(!env["BACKUP_FILE"].is_empty());

    // The web folder, byte for byte.
    assert_eq!(
        std::fs::read(work.join("www/media/logo.png")).unwrap(),
        [0x89, b'P', b'N', b'G']
    );
    assert_eq!(
        std::fs::read(work.join("www/cache/data.bin")).unwrap(),
        [0u8, 1, 2, 255]
    );

    // The dumps, loaded by hand with the servers' own clients into new databases.
    let Some(copy) = databases("bkcopy") else {
        return;
    };
    load_by_hand(copy.mysql.database(), &work.join("main.sql"));
    load_by_hand(copy.pg.database(), &work.join("stats.sql"));
    assert_eq!(mysql_rows(copy.mysql.database()), mysql_rows(&dbs.mysql));
    assert_eq!(pg_rows(copy.pg.database()), pg_rows(&dbs.pg));
    assert!(mysql_rows(&dbs.mysql).contains("Grüße aus Köln — 東京\t00FF10807F"));
    assert!(pg_rows(&dbs.pg).contains("Ærøskøbing\t00ff10807f"));
    assert_eq!(
        database::query(copy.pg.database(), "SELECT nextval('counter')", T)
            .unwrap()
            .trim(),
        "41"
    );
}

/// `mysql DB < dump` / `psql -f dump DB`, as an administrator restoring by hand would.
fn load_by_hand(db: &Database, dump: &Utf8Path) {
    let status = match db.kind {
        DbKind::Mysql => Command::new("mysql")
            .args([
                "--protocol=TCP",
                "-h",
                &db.host,
                "-P",
                &db.port.to_string(),
                "-u",
                &db.login,
                &db.name,
            ])
            .env("MYSQL_PWD", db.password.expose())
            .stdin(std::fs::File::open(dump).unwrap())
            .status(),
        DbKind::Postgresql => Command::new("psql")
            .args([
                "-X",
                "-q",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                &db.host,
                "-p",
                &db.port.to_string(),
                "-U",
                &db.login,
                "-d",
                &db.name,
                "-f",
                dump.as_str(),
            ])
            .env("PGPASSWORD", db.password.expose())
            .status(),
    }
    .unwrap();
    assert!(status.success(), "loading {dump} by hand failed");
}

/// A database the controller cannot dump fails step 1.1: nothing is left at the destination
/// and the error names the database.
#[test]
fn unreachable_database_fails_the_backup_and_leaves_nothing() {
    let Some(dbs) = databases("bkfail") else {
        return;
    };
    let sb = Sandbox::new();
    let mut mysql = dbs.mysql.database().clone();
    mysql.password = aps_controller::secret::Secret::new("wrong password");
    // Registration would refuse the login now; --no-connect stands for a password changed on
    // the server after registration, which only the backup meets.
    sb.register_with(
        "shop",
        "sh-databases",
        &format!(
            "[settings]\nadmin_password = \"x\"\n{}{}",
            db_toml("main", &mysql),
            db_toml("stats", &dbs.pg)
        ),
        &["--no-connect"],
    );
    let dest = sb.path("shop.aps");
    let out = sb.cli(&["backup", "shop", "--to", dest.as_str(), "--json"]);
    assert_eq!(out.status.code(), Some(16), "resource-failed: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["step"], "1.1-backup-resources");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(message.contains("\"main\""), "{message}");
    assert!(!message.contains("wrong password"), "no password in errors");
    assert!(!dest.exists());
    let leftovers: Vec<_> = std::fs::read_dir(sb.root())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.contains("shop.aps"))
        .collect();
    assert!(leftovers.is_empty(), "{leftovers:?}");
    // The work folder (dumps, the script's HOME) is gone too.
    let work = sb.state().join("work");
    assert!(!work.exists() || std::fs::read_dir(&work).unwrap().next().is_none());
}

/// Step 1.2 for each language the fixtures use: php scripts have no shebang and no extension,
/// so the controller must run `php SCRIPT backup` itself; perl and python likewise.
#[test]
fn php_perl_and_python_backup_scripts_run_with_their_interpreters() {
    let Some(dbs) = databases("bklang") else {
        return;
    };
    let sb = Sandbox::new();
    let settings = "[settings]\nadmin_password = \"x\"\n";
    sb.register(
        "php",
        "php-sample",
        &format!("{settings}{}", db_toml("main", &dbs.mysql)),
    );
    sb.register(
        "perl",
        "perl-sample",
        &format!("{settings}{}", db_toml("MAIN", &dbs.pg)),
    );
    sb.register("python", "python-sample", settings);
    for name in ["php", "perl", "python"] {
        let dest = sb.path(&format!("{name}.aps"));
        let out = sb.cli(&["backup", name, "--to", dest.as_str(), "--json"]);
        assert_success(&out, name);
        // Whether sufficient or not, the script's own output is in the result.
        let env_file = match ArchiveReader::open(&dest, None) {
            Ok(reader) => {
                let part = reader
                    .manifest()
                    .parts
                    .iter()
                    .find(|p| p.kind == PartKind::ScriptBackup)
                    .expect("script part")
                    .name
                    .clone();
                let file = sb.path(&format!("{name}.env"));
                reader.extract_file_part(&part, &file).unwrap();
                file
            }
            Err(_) => dest.clone(),
        };
        let env = env_dump(&env_file);
        assert_eq!(env["SETTINGS_admin_password"], "x", "{name}: {env:?}");
        assert_eq!(
            env["WEB___DIR"],
            sb.path(&format!("www-{name}")).as_str(),
            "{name}"
        );
    }
}

/// 1.1 without any backup-script (true of every real published package we know): the
/// controller archives the web folders itself; the archive verifies.
#[test]
fn package_without_backup_script_gets_a_controller_archive() {
    let Some(dbs) = databases("bknone") else {
        return;
    };
    fill(&dbs.mysql, &dbs.pg);
    let sb = Sandbox::new();
    let www = sb.register(
        "site",
        "nobackup-sample",
        &format!(
            "[settings]\nadmin_password = \"x\"\n{}{}",
            db_toml("main", &dbs.mysql),
            db_toml("stats", &dbs.pg)
        ),
    );
    std::os::unix::fs::symlink("index.html", www.join("home.html")).unwrap();
    let dest = sb.path("site.aps.tar.zst");
    let out = sb.cli(&["backup", "site", "--to", dest.as_str(), "--json"]);
    assert_success(&out, "backup");
    let manifest = archive::verify(&dest, None).unwrap();
    assert_eq!(manifest.header.instance, "site");
    let web = manifest.web_dir("/").expect("the root web folder");
    assert_eq!(web.file_count, Some(2));
    assert_eq!(web.symlink_count, Some(1));
    let mut kinds: Vec<String> = manifest
        .parts
        .iter()
        .map(|p| match &p.kind {
            PartKind::DatabaseDump { db_id, .. } => format!("db {db_id}"),
            PartKind::WebDir { mapping_url } => format!("web {mapping_url}"),
            PartKind::ScriptBackup => "script".to_owned(),
        })
        .collect();
    kinds.sort();
    assert_eq!(kinds, ["db main", "db stats", "web /"], "no script part");
}
