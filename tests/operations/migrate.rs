//! Migration through the real `aps-controller` binary and real MariaDB and PostgreSQL
//! databases: the target (another domain, path, web folder and databases) ends up holding the
//! source's data, the source is untouched, the restore script saw the target's environment,
//! and a failed migration leaves the target as it was. Plus the library API.

use test_support as support;
use test_support::restore_kit as kit;

use aps_controller::archive;
use aps_controller::operation::MigrateRequest;
use aps_controller::registry::StateDir;
use aps_controller::{Controller, ControllerConfig};
use camino::Utf8PathBuf;
use kit::{DbInstance, Site, assert_same, db_instance, work_leftovers};
use support::{Sandbox, assert_success, env_dump, exists, json};

const SH_SETTINGS: &str =
    "[settings]\nadmin_name = \"admin\"\nadmin_password = \"pw\"\nsite_title = \"Demo\"\n";

/// `shop` on http://shop.example.test/ and `staging` on https://staging.example.org:8443/new/path/,
/// each with its own web root and databases; staging holds unrelated content first.
fn pair(sb: &Sandbox, staging_behaviour: &str) -> Option<(DbInstance, DbInstance)> {
    let shop = db_instance(sb, "shop", Site::default())?;
    shop.populate();
    let staging = db_instance(
        sb,
        "staging",
        Site {
            base_url: "https://staging.example.org:8443/new/path/",
            behaviour: staging_behaviour,
            extra_web_dirs: "",
        },
    )?;
    std::fs::write(staging.www.join("old-staging.html"), "old").unwrap();
    kit::run_sql(
        &staging.main,
        "CREATE TABLE old_stuff (a INT); INSERT INTO old_stuff VALUES (1);",
    );
    Some((shop, staging))
}

#[test]
fn migrate_gives_the_target_the_sources_data_in_its_own_environment() {
    let sb = Sandbox::new();
    let Some((shop, staging)) = pair(&sb, "normal") else {
        return;
    };
    let source_before = shop.state();
    let out = sb.cli(&["migrate", "shop", "--to-instance", "staging", "--json"]);
    assert_success(&out, "migrate");
    let report = json(&out);
    assert_eq!(report["ok"], true);
    assert_eq!(report["source"], "shop");
    assert_eq!(report["target"], "staging");
    assert_eq!(report["restore"]["instance"], "staging");
    assert!(report["kept"].is_null());
    let intermediate = Utf8PathBuf::from(report["backup"]["file"].as_str().unwrap());
    assert!(!exists(&intermediate), "the intermediate file is removed");

    // Same data at the target, under its own folder and database names.
    assert_same(
        &staging.state().without_script_traces(),
        &source_before,
        "target after migration vs source",
    );
    // The source is untouched (the backup only reads it).
    assert_same(&shop.state(), &source_before, "source after migration");

    // The restore script ran with the target's environment.
    let env = env_dump(&staging.www.join(".aps-restore-env"));
    assert_eq!(env["BASE_URL_SCHEME"], "https");
    assert_eq!(env["BASE_URL_HOST"], "staging.example.org");
    assert_eq!(env["BASE_URL_PORT"], "8443");
    assert_eq!(env["BASE_URL_PATH"], "new/path/");
    assert_eq!(env["WEB___DIR"], staging.www.as_str());
    assert_eq!(env["WEB__media_DIR"], staging.www.join("media").as_str());
    for (id, db) in [("main", &staging.main), ("stats", &staging.stats)] {
        assert_eq!(env[&format!("DB_{id}_NAME")], db.name);
        assert_eq!(env[&format!("DB_{id}_LOGIN")], db.login);
        assert_eq!(env[&format!("DB_{id}_PORT")], db.port.to_string());
    }
    assert_ne!(env["DB_main_NAME"], shop.main.name);
    // What the script got as BACKUP_FILE is what it wrote at the source: the source's values.
    let written = env_dump(&staging.www.join(".aps-restored-from"));
    assert_eq!(written["BASE_URL_HOST"], "shop.example.test");
    assert_eq!(written["DB_main_NAME"], shop.main.name);

    kit::assert_nothing_left_open(&sb.state());
}

/// `--keep FILE`: the intermediate backup stays there, a valid archive of the source.
#[test]
fn keep_leaves_a_valid_backup_of_the_source() {
    let sb = Sandbox::new();
    let Some((shop, staging)) = pair(&sb, "normal") else {
        return;
    };
    let keep = sb.path("kept.aps");
    let out = sb.cli(&[
        "migrate",
        "shop",
        "--to-instance",
        "staging",
        "--keep",
        keep.as_str(),
        "--json",
    ]);
    assert_success(&out, "migrate --keep");
    assert_eq!(json(&out)["kept"], keep.as_str());
    let manifest = archive::verify(&keep, None).unwrap();
    assert_eq!(manifest.header.instance, "shop");
    assert_same(
        &staging.state().without_script_traces(),
        &shop.state(),
        "target vs source",
    );
}

/// A target whose restore script fails is put back exactly; the source is untouched; the
/// intermediate file is removed.
#[test]
fn failed_migration_leaves_both_instances_as_they_were() {
    let sb = Sandbox::new();
    let Some((shop, staging)) = pair(&sb, "restore-fails") else {
        return;
    };
    let (source_before, target_before) = (shop.state(), staging.state());
    let out = sb.cli(&["migrate", "shop", "--to-instance", "staging", "--json"]);
    assert_eq!(out.status.code(), Some(13), "{out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "script-failed");
    assert_eq!(v["error"]["step"], "3.2-run-script");
    assert_same(&staging.state(), &target_before, "target");
    assert_same(&shop.state(), &source_before, "source");
    kit::assert_nothing_left_open(&sb.state());
}

/// The target keeps its `media` child mapping in a folder of its own, apart from its web root
/// (the source keeps it inside): the media content lands in the target's media folder.
#[test]
fn child_mapping_kept_apart_at_the_target_gets_its_content() {
    let sb = Sandbox::new();
    let Some(shop) = db_instance(&sb, "shop", Site::default()) else {
        return;
    };
    shop.populate();
    let media = sb.path("media-store/staging");
    std::fs::create_dir_all(&media).unwrap();
    std::fs::write(media.join("stale.jpg"), "stale").unwrap();
    let extra = format!("\"/media\" = \"{media}\"\n");
    let Some(staging) = db_instance(
        &sb,
        "staging",
        Site {
            base_url: "http://staging.example.test/",
            behaviour: "normal",
            extra_web_dirs: &extra,
        },
    ) else {
        return;
    };
    let out = sb.cli(&["migrate", "shop", "--to-instance", "staging", "--json"]);
    assert_success(&out, "migrate");
    let source_media = kit::tree_record(&shop.www.join("media"));
    let mut target_media = kit::tree_record(&media);
    // The folder itself keeps the target's own mode (it is the target's, not restored).
    target_media.remove(".");
    let mut expected = source_media.clone();
    expected.remove(".");
    assert_eq!(target_media, expected);
    assert!(
        !exists(staging.www.join("media")),
        "no stray copy in the root"
    );
    let env = env_dump(&staging.www.join(".aps-restore-env"));
    assert_eq!(env["WEB__media_DIR"], media.as_str());
}

#[test]
fn migration_to_itself_or_to_another_package_is_refused_before_any_work() {
    let sb = Sandbox::new();
    let Some((shop, _)) = pair(&sb, "normal") else {
        return;
    };
    let before = shop.state();
    sb.register("blog", "sh-sample", SH_SETTINGS);
    // Itself: a usage mistake, caught before the controller is even opened.
    let out = sb.cli(&["migrate", "shop", "--to-instance", "shop", "--json"]);
    assert_eq!(out.status.code(), Some(2), "itself: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "usage");
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("--to-instance"),
        "{v}"
    );
    let out = sb.cli(&["migrate", "shop", "--to-instance", "blog", "--json"]);
    assert_eq!(out.status.code(), Some(17), "other package: {out:?}");
    let v = json(&out);
    assert_eq!(v["error"]["kind"], "invalid-backup");
    assert_eq!(v["error"]["step"], "find-instance");
    let out = sb.cli(&["migrate", "shop", "--to-instance", "nope", "--json"]);
    assert_eq!(out.status.code(), Some(4));
    assert_same(&shop.state(), &before, "source");
    // No backup was made: nothing in the work area, no record.
    assert!(work_leftovers(&sb.state()).is_empty());
}

/// A `sufficient` package through the library API: the script restores from the file it
/// wrote at the source, with the target's environment; the file and its record are removed.
#[test]
fn library_migrates_a_sufficient_package() {
    let sb = Sandbox::new();
    sb.register("blog", "sh-sample", SH_SETTINGS);
    let target_www = sb.register("blog-copy", "sh-sample", SH_SETTINGS);
    // The sandbox's controller.toml (root-owned web folders may run as root).
    let ctl = Controller::open(ControllerConfig::load(StateDir::at(sb.state())).unwrap()).unwrap();
    let report = ctl
        .migrate(&MigrateRequest::new("blog", "blog-copy"))
        .unwrap();
    assert_eq!(report.restore.instance, "blog-copy");
    assert!(report.restore.safety_snapshot);
    let env = env_dump(&target_www.join(".aps-restore-env"));
    assert_eq!(env["BASE_URL_HOST"], "blog-copy.example.test");
    assert_eq!(env["WEB___DIR"], target_www.as_str());
    let written = env_dump(&target_www.join(".aps-restored-from"));
    assert_eq!(written["BASE_URL_HOST"], "blog.example.test");
    assert!(!exists(&report.backup.file));
    let records = sb.state().join("backup-records");
    let left: Vec<_> = std::fs::read_dir(&records)
        .map(|rd| rd.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "record of a deleted file kept: {left:?}");
}
