//! The whole script environment of one package for every operation, as snapshots, plus the
//! rules that decide what each operation gets.

use std::collections::{BTreeMap, BTreeSet};

use aps_controller::database::{Database, DbKind};
use aps_controller::environment::{
    EnvironmentError, HostFacts, ScriptEnvironment, ScriptOperation, build_environment,
    build_environment_with,
};
use aps_controller::registry::{BaseUrl, Instance, SettingValue};
use aps_controller::secret::Secret;
use aps_meta::model::{
    AppMeta, ApsVersion, DbRequirement, Mapping, Presentation, Provision, RequirementAlternative,
    RequirementChoice, Requirements, Service, Setting, SettingGroup, SettingType, UrlMapping,
};

fn setting(id: &str, kind: SettingType) -> Setting {
    Setting::new(id, kind)
}

fn mapping(url: &str, children: Vec<Mapping>) -> Mapping {
    Mapping {
        url: url.into(),
        path: Some(url.trim_start_matches('/').into()),
        is_virtual: false,
        writable: None,
        readable: None,
        handlers: vec![],
        children,
    }
}

fn db_req(id: &str, server_type: &str, prefix: bool) -> DbRequirement {
    DbRequirement {
        id: id.into(),
        default_name: Some(id.to_lowercase()),
        can_use_tables_prefix: prefix,
        server_type: Some(server_type.into()),
        server_min_version: None,
    }
}

/// A blog package exercising every kind of variable.
fn package() -> AppMeta {
    let with_default = |mut s: Setting, d: &str| {
        s.default_value = Some(d.into());
        s
    };
    let mut admin_name = with_default(setting("admin_name", SettingType::String), "admin");
    admin_name.installation_only = true;
    let mut title = setting("title", SettingType::String);
    title.track_old_value = true;
    let mut admin_email = setting("admin_email", SettingType::Email);
    admin_email.track_old_value = true;
    let mut optional = setting("tagline", SettingType::String);
    optional.optional = true;
    let service_settings = vec![SettingGroup {
        settings: vec![
            admin_name,
            setting("admin_password", SettingType::Password),
            title,
            admin_email,
            optional,
        ],
        groups: vec![SettingGroup {
            settings: vec![
                with_default(setting("locale", SettingType::Enum), "en-US"),
                with_default(setting("comments", SettingType::Boolean), "1"),
                setting(
                    "domains",
                    SettingType::List {
                        element_type: Box::new(SettingType::String),
                    },
                ),
                // Declared globally too: the service's default wins.
                with_default(setting("theme", SettingType::String), "service-theme"),
            ],
            ..SettingGroup::default()
        }],
        ..SettingGroup::default()
    }];
    let mut virtual_mapping = mapping("api", vec![]);
    virtual_mapping.is_virtual = true;
    virtual_mapping.path = None;
    let url_mapping = UrlMapping {
        default_prefix: Some("blog".into()),
        installed_size: None,
        site_root: true,
        mappings: vec![mapping(
            "/",
            vec![
                mapping("wp-content", vec![mapping("uploads", vec![])]),
                mapping("blogs/media", vec![]),
                mapping("tmp", vec![]),
                mapping("wp-config.php", vec![]),
                virtual_mapping,
            ],
        )],
    };
    AppMeta {
        aps_version: ApsVersion::V1_2,
        packaged: None,
        id: Some("http://example.test/blog".into()),
        name: "Blog".into(),
        version: "6.4.2".into(),
        release: "1".into(),
        homepage: None,
        master_package: None,
        vendor: None,
        packager: None,
        presentation: Presentation::default(),
        patches: vec![],
        upgrades: vec![],
        upgradable_from: vec![],
        content_delivery: None,
        global_settings: vec![SettingGroup {
            settings: vec![
                with_default(
                    setting("support_email", SettingType::Email),
                    "help@example.test",
                ),
                with_default(setting("theme", SettingType::String), "global-theme"),
            ],
            ..SettingGroup::default()
        }],
        service: Service {
            id: "blog".into(),
            class: None,
            license: None,
            presentation: Presentation::default(),
            settings: service_settings,
            resources: vec![],
            requirements: Requirements {
                databases: vec![
                    db_req("main", "mysql", true),
                    db_req("MAIN", "postgresql", false),
                ],
                choices: vec![RequirementChoice {
                    alternatives: vec![RequirementAlternative {
                        id: Some("search".into()),
                        requirements: Requirements {
                            databases: vec![db_req("search", "mysql", false)],
                            ..Requirements::default()
                        },
                    }],
                }],
                ..Requirements::default()
            },
            provision: Provision {
                url_mapping: Some(url_mapping),
                ..Provision::default()
            },
            children: vec![],
        },
    }
}

fn instance() -> Instance {
    let single = |v: &str| SettingValue::Single(v.into());
    Instance {
        name: "blog".into(),
        package: "/srv/packages/blog-6.4.2-1.app.zip".into(),
        base_url: BaseUrl {
            scheme: "https".into(),
            host: "example.test".into(),
            port: Some(8443),
            path: "/blog/".into(),
        },
        web_dirs: BTreeMap::from([
            ("/".into(), "/srv/www/blog".into()),
            // Moved off the web root: the record wins over the URL-derived folder.
            (
                "/wp-content/uploads".into(),
                "/srv/data/blog-uploads".into(),
            ),
        ]),
        settings: BTreeMap::from([
            ("admin_password".into(), single("test-admin-pw")),
            ("title".into(), single("New title")),
            ("admin_email".into(), single("new@example.test")),
            ("locale".into(), single("de-DE")),
            (
                "domains".into(),
                SettingValue::List(vec!["example.test".into(), "www.example.test".into()]),
            ),
            // Not declared by the package: bookkeeping, never exported.
            ("main_database_password".into(), single("leak")),
        ]),
        databases: BTreeMap::from([
            (
                "main".into(),
                Database {
                    kind: DbKind::Mysql,
                    name: "blogdb".into(),
                    login: "bloguser".into(),
                    password: Secret::new("test-mysql-pw"),
                    host: "127.0.0.1".into(),
                    port: 3306,
                    version: Some("10.11.6".into()),
                    prefix: Some("wp_".into()),
                },
            ),
            (
                "MAIN".into(),
                Database {
                    kind: DbKind::Postgresql,
                    name: "blogpg".into(),
                    login: "blogpg".into(),
                    password: Secret::new("test-pg-pw"),
                    host: "db.internal".into(),
                    port: 5432,
                    version: None,
                    // Not allowed by the requirement: not exported.
                    prefix: Some("ignored_".into()),
                },
            ),
            (
                "unrelated".into(),
                Database {
                    kind: DbKind::Mysql,
                    name: "other".into(),
                    login: "other".into(),
                    password: Secret::new("other-pw"),
                    host: "127.0.0.1".into(),
                    port: 3306,
                    version: None,
                    prefix: None,
                },
            ),
        ]),
        secret_settings: BTreeSet::from(["admin_password".into()]),
        user: None,
        group: None,
        role: None,
        status: Default::default(),
        installed: None,
    }
}

fn operations() -> Vec<(&'static str, ScriptOperation)> {
    vec![
        ("install", ScriptOperation::Install),
        (
            "configure",
            ScriptOperation::Configure {
                old_settings: BTreeMap::from([
                    ("title".into(), SettingValue::Single("Old title".into())),
                    // admin_email has track-old-value but no old value: no OLDSETTINGS.
                    // locale changed but is not tracked: no OLDSETTINGS either.
                    ("locale".into(), SettingValue::Single("en-US".into())),
                ]),
            },
        ),
        ("upgrade", ScriptOperation::Upgrade),
        ("remove", ScriptOperation::Remove),
        ("enable", ScriptOperation::Enable),
        ("disable", ScriptOperation::Disable),
        (
            "backup",
            ScriptOperation::Backup {
                backup_file: "/var/backups/.blog.tmp-1".into(),
            },
        ),
        (
            "restore",
            ScriptOperation::Restore {
                backup_file: "/var/backups/blog.bin".into(),
            },
        ),
    ]
}

fn host() -> HostFacts {
    HostFacts {
        php_version: Some("8.2.12".into()),
    }
}

/// Clear-text `NAME=value` lines, sorted: what the script sees.
fn lines(env: &ScriptEnvironment) -> String {
    env.iter().map(|(k, v)| format!("{k}={v}\n")).collect()
}

#[test]
fn full_environment_per_operation() {
    let (meta, inst) = (package(), instance());
    for (label, op) in operations() {
        let env = build_environment_with(&inst, &meta, op, &host()).unwrap();
        insta::assert_snapshot!(format!("environment_{label}"), lines(&env));
    }
}

#[test]
fn installation_only_settings_follow_the_operation() {
    let (meta, inst) = (package(), instance());
    for (label, op) in operations() {
        let env = build_environment(&inst, &meta, op).unwrap();
        let expected = matches!(label, "install" | "backup" | "restore");
        assert_eq!(
            env.get("SETTINGS_admin_name").is_some(),
            expected,
            "{label}"
        );
        // Only the operations that have a file get BACKUP_FILE.
        assert_eq!(
            env.get("BACKUP_FILE").is_some(),
            matches!(label, "backup" | "restore"),
            "{label}"
        );
        assert!(env.get("PHP_VERSION").is_none(), "{label}");
    }
}

#[test]
fn secrets_are_masked_when_shown() {
    let env = build_environment(&instance(), &package(), ScriptOperation::Install).unwrap();
    let shown = format!("{env}{env:?}");
    for secret in ["test-admin-pw", "test-mysql-pw", "test-pg-pw"] {
        assert!(!shown.contains(secret), "{secret} shown in {shown}");
    }
    assert!(shown.contains("SETTINGS_admin_password=***"));
    assert!(shown.contains("DB_MAIN_PASSWORD=***"));
    assert!(shown.contains("SETTINGS_title=New title"));
    assert_eq!(env.get("DB_MAIN_PASSWORD"), Some("test-pg-pw"));
}

#[test]
fn site_root_without_port() {
    let mut inst = instance();
    inst.base_url.path = "/".into();
    inst.base_url.port = None;
    let env = build_environment(&inst, &package(), ScriptOperation::Install).unwrap();
    assert_eq!(env.get("BASE_URL_PATH"), Some("/"));
    assert_eq!(env.get("BASE_URL_PORT"), None);
}

#[test]
fn missing_web_root_is_an_error() {
    let mut inst = instance();
    inst.web_dirs.remove("/");
    let err = build_environment(&inst, &package(), ScriptOperation::Remove).unwrap_err();
    assert_eq!(
        err,
        EnvironmentError::MissingWebRoot {
            instance: "blog".into()
        }
    );
}

#[test]
fn relative_web_dir_is_an_error() {
    let mut inst = instance();
    inst.web_dirs.insert("/tmp".into(), "relative/tmp".into());
    let err = build_environment(&inst, &package(), ScriptOperation::Install).unwrap_err();
    assert!(
        matches!(&err, EnvironmentError::RelativeWebDir { url, .. } if url == "/tmp"),
        "{err}"
    );
}

#[test]
fn missing_required_database_is_an_error_but_an_untaken_choice_is_not() {
    let mut inst = instance();
    // `search` sits in a choice alternative: absent from the instance and from the env.
    let env = build_environment(&inst, &package(), ScriptOperation::Install).unwrap();
    assert!(env.iter().all(|(k, _)| !k.starts_with("DB_search_")));
    inst.databases.remove("MAIN");
    let err = build_environment(&inst, &package(), ScriptOperation::Install).unwrap_err();
    assert_eq!(
        err,
        EnvironmentError::MissingDatabase {
            instance: "blog".into(),
            id: "MAIN".into()
        }
    );
    assert!(err.to_string().contains("databases.MAIN"));
}

#[test]
fn invalid_values_are_errors_naming_the_setting() {
    let mut inst = instance();
    inst.settings
        .insert("comments".into(), SettingValue::Single("maybe".into()));
    let err = build_environment(&inst, &package(), ScriptOperation::Install).unwrap_err();
    assert!(
        matches!(&err, EnvironmentError::InvalidBoolean { setting, .. } if setting == "comments"),
        "{err}"
    );

    let mut inst = instance();
    inst.settings.insert(
        "title".into(),
        SettingValue::List(vec!["a".into(), "b".into()]),
    );
    let err = build_environment(&inst, &package(), ScriptOperation::Install).unwrap_err();
    assert!(err.to_string().contains("declared as string"), "{err}");

    let mut inst = instance();
    inst.settings
        .insert("title".into(), SettingValue::Single("a\0b".into()));
    let err = build_environment(&inst, &package(), ScriptOperation::Install).unwrap_err();
    assert_eq!(
        err,
        EnvironmentError::NulInValue {
            name: "SETTINGS_title".into()
        }
    );
}

#[test]
fn names_with_equals_sign_are_refused() {
    let mut meta = package();
    meta.service.settings[0]
        .settings
        .push(setting("a=b", SettingType::String));
    let mut inst = instance();
    inst.settings
        .insert("a=b".into(), SettingValue::Single("x".into()));
    let err = build_environment(&inst, &meta, ScriptOperation::Install).unwrap_err();
    assert!(
        matches!(&err, EnvironmentError::InvalidName { name, .. } if name == "SETTINGS_a=b"),
        "{err}"
    );
}

#[test]
fn package_without_url_mapping_needs_no_web_root() {
    let mut meta = package();
    meta.service.provision.url_mapping = None;
    let mut inst = instance();
    inst.web_dirs.clear();
    let env = build_environment(&inst, &meta, ScriptOperation::Install).unwrap();
    assert!(env.iter().all(|(k, _)| !k.starts_with("WEB_")));
}

#[test]
fn list_settings_old_values_and_password_lists() {
    let mut meta = package();
    let mut keys = setting(
        "api_keys",
        SettingType::List {
            element_type: Box::new(SettingType::Password),
        },
    );
    keys.track_old_value = true;
    keys.default_value = Some("default-key".into());
    meta.service.settings[0].settings.push(keys);
    let inst = instance();

    // No instance value: the default is the single element.
    let env = build_environment(&inst, &meta, ScriptOperation::Install).unwrap();
    assert_eq!(env.get("SETTINGS_api_keys_1"), Some("default-key"));
    assert_eq!(env.get("SETTINGS_api_keys_2"), None);
    assert!(env.to_string().contains("SETTINGS_api_keys_1=***"));

    let op = ScriptOperation::Configure {
        old_settings: BTreeMap::from([(
            "api_keys".into(),
            SettingValue::List(vec!["k1".into(), "k2".into()]),
        )]),
    };
    let env = build_environment(&inst, &meta, op).unwrap();
    assert_eq!(env.get("OLDSETTINGS_api_keys_1"), Some("k1"));
    assert_eq!(env.get("OLDSETTINGS_api_keys_2"), Some("k2"));
    assert!(env.is_secret("OLDSETTINGS_api_keys_2"));
    assert!(!env.to_string().contains("k2"));
}

#[test]
fn alternate_spelling_never_overrides_a_standard_name() {
    let mut meta = package();
    let url_mapping = meta.service.provision.url_mapping.as_mut().unwrap();
    // `/_x` would also be exported as `WEB__x_DIR`, the standard name of `/x`.
    url_mapping.mappings[0].children = vec![mapping("x", vec![]), mapping("_x", vec![])];
    let env = build_environment(&instance(), &meta, ScriptOperation::Install).unwrap();
    assert_eq!(env.get("WEB__x_DIR"), Some("/srv/www/blog/x"));
    assert_eq!(env.get("WEB___x_DIR"), Some("/srv/www/blog/_x"));
    assert_eq!(env.get("WEB_x_DIR"), Some("/srv/www/blog/x"));
}
