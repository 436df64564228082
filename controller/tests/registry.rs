//! The instance registry against real files: INSTANCE.toml parsing, validation against a
//! package's APP-META.xml, and the file store's durability and secrecy.

use std::os::unix::fs::PermissionsExt;

use aps_controller::registry::{
    self, FileStore, InstanceFile, InstanceStore, Problem, RegisterError, SettingValue, StateDir,
    StoreError,
};
use camino::{Utf8Path, Utf8PathBuf};

/// A small APS 1.2 package exercising every check: required/optional/default settings,
/// a list setting, a mysql db requirement, nested and virtual url-mappings, and a choice of
/// database alternatives.
const APP_META: &str = r#"<application xmlns="http://apstandard.com/ns/1" version="1.2">
  <id>http://example.test/blog</id>
  <name>Blog</name>
  <version>1.0</version>
  <release>1</release>
  <presentation><summary>A blog</summary></presentation>
  <service id="blog">
    <settings>
      <group>
        <setting id="admin_name" type="string" default-value="admin"><name>Admin</name></setting>
        <setting id="admin_email" type="email"><name>E-mail</name></setting>
        <setting id="title" type="string" optional="true"><name>Title</name></setting>
        <setting id="posts" type="integer" min="1" max="100"><name>Posts</name></setting>
        <setting id="comments" type="boolean" default-value="false"><name>C</name></setting>
        <setting id="domains" type="list" element-type="domain-name" optional="true"><name>D</name></setting>
        <setting id="smtp_password" type="password" optional="true"><name>SMTP password</name></setting>
        <setting id="api_keys" type="list" element-type="password" optional="true"><name>API keys</name></setting>
      </group>
    </settings>
    <requirements xmlns:db="http://apstandard.com/ns/1/db">
      <db:db><db:id>main</db:id><db:server-type>mysql</db:server-type></db:db>
      <choice>
        <requirements id="pg"><db:db><db:id>stats</db:id><db:server-type>postgresql</db:server-type></db:db></requirements>
        <requirements id="my"><db:db><db:id>stats_my</db:id><db:server-type>mysql</db:server-type></db:db></requirements>
      </choice>
    </requirements>
    <provision>
      <url-mapping>
        <default-prefix>blog</default-prefix>
        <mapping url="/" path="htdocs">
          <mapping url="cache"><mapping url="img"/></mapping>
          <mapping url="api" virtual="virtual"/>
        </mapping>
      </url-mapping>
      <configuration-script name="configure"><script-language>sh</script-language></configuration-script>
    </provision>
  </service>
</application>
"#;

struct Env {
    _tmp: tempfile::TempDir,
    dir: Utf8PathBuf,
    state: StateDir,
    store: FileStore,
}

fn env() -> Env {
    let tmp = tempfile::tempdir().unwrap();
    let dir = Utf8PathBuf::from_path_buf(tmp.path().to_path_buf()).unwrap();
    let pkg = dir.join("pkgs/blog");
    std::fs::create_dir_all(pkg.join("scripts")).unwrap();
    std::fs::write(pkg.join("APP-META.xml"), APP_META).unwrap();
    // Registration requires the web folders given in the file to exist.
    std::fs::create_dir_all(dir.join("www/blog")).unwrap();
    let state = StateDir::at(dir.join("state"));
    Env {
        _tmp: tmp,
        store: FileStore::new(state.clone()),
        dir,
        state,
    }
}

const GOOD: &str = r#"
name = "blog"
package = "pkgs/blog"
base-url = "http://Example.test:8080/blog"
[web-dirs]
"/" = "www/blog"
[settings]
admin_email = "a@example.test"
posts = 10
domains = ["example.test", "example.org"]
smtp_password = "smtp-secret-pw"
api_keys = ["key-secret-1", "key-secret-2"]
[databases.main]
type = "mysql"
name = "blogdb"
login = "bloguser"
password = "s3cret-pw"
host = "127.0.0.1"
port = 3306
version = "10.11"
[databases.stats]
type = "postgresql"
name = "stats"
login = "st"
password = "pg-secret-pw"
host = "127.0.0.1"
"#;

impl Env {
    fn write(&self, text: &str) -> Utf8PathBuf {
        let p = self.dir.join("INSTANCE.toml");
        std::fs::write(&p, text).unwrap();
        p
    }
    fn register(&self, text: &str, replace: bool) -> Result<registry::Instance, RegisterError> {
        let p = self.write(text);
        registry::register(&self.store, &self.state, &p, replace)
    }
    fn problems(&self, text: &str) -> Vec<Problem> {
        match self.register(text, false) {
            Err(RegisterError::Invalid(p)) => {
                assert!(
                    self.store.list().unwrap().is_empty(),
                    "nothing is stored on error"
                );
                p
            }
            other => panic!("expected validation problems, got {other:?}"),
        }
    }
}

#[test]
fn registers_with_resolved_paths_settings_and_defaults() {
    let e = env();
    let inst = e.register(GOOD, false).unwrap();
    assert_eq!(inst.package, e.dir.join("pkgs/blog"));
    assert_eq!(inst.base_url.to_string(), "http://example.test:8080/blog/");
    assert_eq!(inst.web_dirs["/"], e.dir.join("www/blog"));
    // Children default under their parent; the virtual mapping gets no folder.
    assert_eq!(inst.web_dirs["/cache"], e.dir.join("www/blog/cache"));
    assert_eq!(
        inst.web_dirs["/cache/img"],
        e.dir.join("www/blog/cache/img")
    );
    assert!(!inst.web_dirs.contains_key("/api"));
    assert_eq!(inst.settings["posts"], SettingValue::Single("10".into()));
    assert_eq!(
        inst.settings["admin_name"],
        SettingValue::Single("admin".into())
    );
    assert_eq!(
        inst.settings["comments"],
        SettingValue::Single("false".into())
    );
    assert_eq!(
        inst.settings["domains"],
        SettingValue::List(vec!["example.test".into(), "example.org".into()])
    );
    assert!(!inst.settings.contains_key("title"));
    assert_eq!(inst.databases["stats"].port, 5432, "port defaults by type");
    assert_eq!(e.store.get("blog").unwrap(), inst);
    assert_eq!(e.store.list().unwrap(), vec![inst]);
}

#[test]
fn every_problem_is_reported_at_once_and_nothing_stored() {
    let e = env();
    let text = r#"
name = "Bad Name"
package = "pkgs/blog"
base-url = "ftp://example.test/"
[web-dirs]
"/nope" = "/srv/nope"
"/api" = "/srv/api"
[settings]
colour = "red"
posts = "many"
admin_email = ["a@b.test"]
domains = "example.test"
[databases.main]
type = "postgresql"
name = "x"
login = ""
password = "p"
host = "h"
prefix = "wp_"
[databases.other]
type = "mysql"
name = "x"
login = "l"
password = "p"
host = "h"
"#;
    let problems = e.problems(text);
    let has = |pred: &dyn Fn(&Problem) -> bool| problems.iter().any(pred);
    assert!(
        has(&|p| matches!(p, Problem::InvalidName(n) if n == "Bad Name")),
        "{problems:#?}"
    );
    assert!(has(&|p| matches!(p, Problem::BaseUrl(_))));
    assert!(has(
        &|p| matches!(p, Problem::UnknownWebDir(u) if u == "/nope")
    ));
    assert!(has(
        &|p| matches!(p, Problem::VirtualWebDir(u) if u == "/api")
    ));
    assert!(has(&|p| matches!(p, Problem::MissingWebDir(u) if u == "/")));
    assert!(has(
        &|p| matches!(p, Problem::UnknownSetting { id: s, .. } if s == "colour")
    ));
    assert!(has(
        &|p| matches!(p, Problem::InvalidSettingValue { id, .. } if id == "posts")
    ));
    assert!(has(
        &|p| matches!(p, Problem::SettingShape { id, .. } if id == "admin_email")
    ));
    assert!(has(
        &|p| matches!(p, Problem::SettingShape { id, .. } if id == "domains")
    ));
    assert!(has(
        &|p| matches!(p, Problem::DatabaseType { id, .. } if id == "main")
    ));
    assert!(has(
        &|p| matches!(p, Problem::DatabasePrefixNotAllowed(id) if id == "main")
    ));
    assert!(has(
        &|p| matches!(p, Problem::DatabaseFieldEmpty { id, field: "login" } if id == "main")
    ));
    assert!(has(
        &|p| matches!(p, Problem::UnknownDatabase { id, .. } if id == "other")
    ));
    assert!(has(&|p| matches!(p, Problem::MissingDatabaseChoice(_))));
    assert!(!e.state.instances_dir().join("blog.json").exists());
}

#[test]
fn missing_required_setting_and_database() {
    let e = env();
    let text = GOOD
        .replace("admin_email = \"a@example.test\"\n", "")
        .replace("[databases.main]", "[databases.stats_my]")
        .replace("type = \"postgresql\"", "type = \"mysql\"")
        .replace("[databases.stats]", "[databases.main2]");
    let problems = e.problems(&text);
    assert!(
        problems.contains(&Problem::MissingSetting("admin_email".into())),
        "{problems:#?}"
    );
    assert!(problems.contains(&Problem::MissingDatabase("main".into())));
    // stats_my satisfies the choice's second alternative.
    assert!(
        !problems
            .iter()
            .any(|p| matches!(p, Problem::MissingDatabaseChoice(_)))
    );
}

#[test]
fn invalid_list_element_is_refused() {
    let e = env();
    let text = GOOD.replace("\"example.org\"", "\"not a domain\"");
    let problems = e.problems(&text);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::InvalidSettingValue { id, .. } if id == "domains")),
        "{problems:#?}"
    );
}

#[test]
fn unopenable_package_is_a_problem_with_the_others() {
    let e = env();
    let text = GOOD
        .replace("pkgs/blog", "pkgs/missing")
        .replace("http://", "gopher://");
    let problems = e.problems(&text);
    assert!(
        problems
            .iter()
            .any(|p| matches!(p, Problem::Package { .. })),
        "{problems:#?}"
    );
    assert!(problems.iter().any(|p| matches!(p, Problem::BaseUrl(_))));
}

#[test]
fn syntax_errors_name_line_and_column() {
    let e = env();
    let err = e
        .register("name = \"blog\"\n[settings\n", false)
        .unwrap_err();
    match &err {
        RegisterError::Parse(registry::ParseError::Toml { line, .. }) => assert_eq!(*line, 2),
        other => panic!("{other:?}"),
    }
    assert!(err.to_string().contains("INSTANCE.toml:2:"), "{err}");
}

#[test]
fn duplicate_name_is_refused_unless_replace() {
    let e = env();
    e.register(GOOD, false).unwrap();
    let problems = e.register(GOOD, false).unwrap_err();
    assert!(
        matches!(&problems, RegisterError::Invalid(p) if p.contains(&Problem::AlreadyExists("blog".into()))),
        "{problems:?}"
    );
    let changed = GOOD.replace("posts = 10", "posts = 20");
    let inst = e.register(&changed, true).unwrap();
    assert_eq!(
        e.store.get("blog").unwrap().settings["posts"],
        SettingValue::Single("20".into())
    );
    assert_eq!(inst.settings["posts"], SettingValue::Single("20".into()));
    // put itself refuses too (the race a pre-check cannot close).
    assert!(matches!(
        e.store.put(&inst, false),
        Err(StoreError::AlreadyExists { .. })
    ));
}

fn mode(p: &Utf8Path) -> u32 {
    std::fs::metadata(p).unwrap().permissions().mode() & 0o777
}

#[test]
fn passwords_live_only_in_the_private_secrets_file() {
    let e = env();
    e.register(GOOD, false).unwrap();
    // Database passwords and the values of password settings (also a list of them).
    let secret_values = [
        "s3cret-pw",
        "pg-secret-pw",
        "smtp-secret-pw",
        "key-secret-1",
        "key-secret-2",
    ];
    let record = std::fs::read_to_string(e.state.instances_dir().join("blog.json")).unwrap();
    for value in secret_values {
        assert!(!record.contains(value), "{value} in the record: {record}");
    }
    let secrets = e.state.secrets_dir().join("blog.json");
    let secrets_text = std::fs::read_to_string(&secrets).unwrap();
    for value in secret_values {
        assert!(
            secrets_text.contains(value),
            "{value} not in the secrets file"
        );
    }
    assert_eq!(mode(&secrets), 0o600);
    assert_eq!(mode(&e.state.secrets_dir()), 0o700);
    let blog = e.store.get("blog").unwrap();
    let shown = registry::view::masked_toml(&blog);
    for value in secret_values {
        assert!(!shown.contains(value), "{value} shown: {shown}");
    }
    assert!(shown.contains("password = \"***\""), "{shown}");
    assert!(shown.contains("smtp_password = \"***\""), "{shown}");
    // Read back whole: the scripts get the real values.
    assert_eq!(
        blog.settings["smtp_password"],
        SettingValue::Single("smtp-secret-pw".into())
    );
    assert_eq!(
        blog.settings["api_keys"],
        SettingValue::List(vec!["key-secret-1".into(), "key-secret-2".into()])
    );
    assert_eq!(
        e.store.get("blog").unwrap().databases["main"]
            .password
            .expose(),
        "s3cret-pw"
    );
}

#[test]
fn remove_drops_record_and_secrets_but_keeps_web_dirs() {
    let e = env();
    let inst = e.register(GOOD, false).unwrap();
    std::fs::create_dir_all(&inst.web_dirs["/"]).unwrap();
    std::fs::write(inst.web_dirs["/"].join("index.php"), "<?php").unwrap();
    e.store.remove("blog").unwrap();
    assert!(matches!(
        e.store.get("blog"),
        Err(StoreError::NotFound { .. })
    ));
    assert!(!e.state.secrets_dir().join("blog.json").exists());
    assert!(inst.web_dirs["/"].join("index.php").exists());
    assert!(matches!(
        e.store.remove("blog"),
        Err(StoreError::NotFound { .. })
    ));
}

#[test]
fn crash_leftovers_are_repaired_under_the_lock() {
    let e = env();
    let inst = e.register(GOOD, false).unwrap();
    // A writer killed mid-write leaves a temp file; one killed before its commit leaves a
    // pending secrets file that its record does not name.
    let tmp = e.state.instances_dir().join(".tmp-abc");
    std::fs::write(&tmp, "{ half").unwrap();
    let pending = e.state.secrets_dir().join("blog.json.pending");
    std::fs::write(&pending, "{\"database-passwords\":{}}").unwrap();
    assert_eq!(e.store.get("blog").unwrap(), inst);
    assert!(!tmp.exists() && !pending.exists());
}

#[test]
fn commit_point_is_the_record_rename() {
    let e = env();
    let inst = e.register(GOOD, false).unwrap();
    // Simulate a crash right after the record was renamed but before the pending secrets
    // were: move the secrets file back to pending.
    let secrets = e.state.secrets_dir().join("blog.json");
    let pending = e.state.secrets_dir().join("blog.json.pending");
    std::fs::rename(&secrets, &pending).unwrap();
    assert_eq!(
        e.store.get("blog").unwrap(),
        inst,
        "recovery rolls the secrets forward"
    );
    assert!(secrets.exists() && !pending.exists());
}

#[test]
fn tampered_secrets_are_detected() {
    let e = env();
    e.register(GOOD, false).unwrap();
    std::fs::write(
        e.state.secrets_dir().join("blog.json"),
        "{\"database-passwords\":{}}",
    )
    .unwrap();
    assert!(matches!(
        e.store.get("blog"),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn invalid_names_never_reach_the_filesystem() {
    let e = env();
    assert!(matches!(
        e.store.get("../x"),
        Err(StoreError::InvalidName { .. })
    ));
    assert!(matches!(
        e.store.remove("a/b"),
        Err(StoreError::InvalidName { .. })
    ));
}

#[test]
fn relative_paths_without_a_folder_are_refused() {
    let f = InstanceFile::parse(
        "name = \"a\"\npackage = \"pkg\"\nbase-url = \"http://a/\"\n[web-dirs]\n\"/\" = \"www\"\n",
        None,
    )
    .unwrap();
    let problems = registry::validate(&f, None).unwrap_err();
    assert_eq!(
        problems
            .iter()
            .filter(|p| matches!(p, Problem::RelativePath { .. }))
            .count(),
        2,
        "{problems:#?}"
    );
}

#[test]
fn state_dir_resolution_order() {
    use aps_controller::registry::StateSource;
    let vars = |pairs: &'static [(&'static str, &'static str)]| {
        move |k: &str| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| std::ffi::OsString::from(v))
        }
    };
    let all = vars(&[
        ("APS_CONTROLLER_STATE_DIR", "/from-env"),
        ("XDG_STATE_HOME", "/xdg"),
        ("HOME", "/home/u"),
    ]);
    let no_env = vars(&[("XDG_STATE_HOME", "/xdg"), ("HOME", "/home/u")]);
    let no_xdg = vars(&[("XDG_STATE_HOME", ""), ("HOME", "/home/u")]);
    let resolve = |flag: Option<&str>, env: &dyn Fn(&str) -> Option<std::ffi::OsString>, root| {
        let (dir, source) = StateDir::resolve_in(flag.map(Into::into), env, root).unwrap();
        (dir.root().to_string(), source)
    };
    for root in [false, true] {
        assert_eq!(
            resolve(Some("/flag"), &all, root),
            ("/flag".into(), StateSource::Flag)
        );
        assert_eq!(
            resolve(None, &all, root),
            ("/from-env".into(), StateSource::Env)
        );
    }
    // Root's default is the one the shipped units and crontab use, whatever XDG says.
    assert_eq!(
        resolve(None, &no_env, true),
        ("/var/lib/aps-controller".into(), StateSource::RootDefault)
    );
    assert_eq!(
        resolve(None, &no_env, false),
        ("/xdg/aps-controller".into(), StateSource::XdgStateHome)
    );
    assert_eq!(
        resolve(None, &no_xdg, false),
        (
            "/home/u/.local/state/aps-controller".into(),
            StateSource::HomeDefault
        )
    );
    let rel = StateDir::resolve(Some("rel/state".into())).unwrap();
    assert!(rel.root().is_absolute() && rel.root().ends_with("rel/state"));
}

#[test]
fn zip_packages_are_unpacked_once_by_digest() {
    let e = env();
    let zip_path = e.dir.join("blog.app.zip");
    write_zip(
        &zip_path,
        &[
            ("APP-META.xml", APP_META),
            ("scripts/configure", "#!/bin/sh\n"),
        ],
    );
    let opened = registry::open_package(&e.state, &zip_path).unwrap();
    assert!(opened.root.starts_with(e.state.packages_dir()));
    assert!(opened.root.join("scripts/configure").is_file());
    assert_eq!(opened.meta.name, "Blog");
    let again = registry::open_package(&e.state, &zip_path).unwrap();
    assert_eq!(again.root, opened.root);
    let entries: Vec<_> = std::fs::read_dir(e.state.packages_dir()).unwrap().collect();
    assert_eq!(entries.len(), 1, "no temp folders left behind");
    let inst = e
        .register(&GOOD.replace("pkgs/blog", "blog.app.zip"), false)
        .unwrap();
    assert_eq!(
        inst.package, zip_path,
        "the record keeps the package as registered"
    );
}

/// A stored (uncompressed) ZIP, written by hand so the test needs no zip writer crate.
fn write_zip(path: &Utf8Path, files: &[(&str, &str)]) {
    fn crc32(data: &[u8]) -> u32 {
        let mut crc = !0u32;
        for b in data {
            crc ^= *b as u32;
            for _ in 0..8 {
                crc = if crc & 1 != 0 {
                    (crc >> 1) ^ 0xEDB8_8320
                } else {
                    crc >> 1
                };
            }
        }
        !crc
    }
    let mut out = Vec::new();
    let mut central = Vec::new();
    for (name, data) in files {
        let offset = out.len() as u32;
        let crc = crc32(data.as_bytes());
        let len = data.len() as u32;
        let header = |sig: u32, central_entry: bool| {
            let mut h = Vec::new();
            h.extend(sig.to_le_bytes());
            if central_entry {
                h.extend(20u16.to_le_bytes());
            }
            h.extend(20u16.to_le_bytes()); // version needed
            h.extend(0u16.to_le_bytes()); // flags
            h.extend(0u16.to_le_bytes()); // stored
            h.extend(0u32.to_le_bytes()); // time, date
            h.extend(crc.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend(len.to_le_bytes());
            h.extend((name.len() as u16).to_le_bytes());
            h.extend(0u16.to_le_bytes()); // extra
            if central_entry {
                h.extend([0u8; 8]); // comment len, disk, internal attrs, external attrs (part)
                h.extend(0u16.to_le_bytes());
                h.extend(offset.to_le_bytes());
            }
            h.extend(name.as_bytes());
            h
        };
        out.extend(header(0x0403_4b50, false));
        out.extend(data.as_bytes());
        central.extend(header(0x0201_4b50, true));
    }
    let cd_offset = out.len() as u32;
    let cd_len = central.len() as u32;
    out.extend(central);
    out.extend(0x0605_4b50u32.to_le_bytes());
    out.extend([0u8; 4]);
    out.extend((files.len() as u16).to_le_bytes());
    out.extend((files.len() as u16).to_le_bytes());
    out.extend(cd_len.to_le_bytes());
    out.extend(cd_offset.to_le_bytes());
    out.extend(0u16.to_le_bytes());
    std::fs::write(path, out).unwrap();
}
