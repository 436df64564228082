//! Settings resolution and requirement checks (controller/src/lifecycle/): one test per rule,
//! then every published APP-META.xml of fixtures/real resolved and checked as an install would
//! (a dry run), in snapshots.

use std::collections::{BTreeMap, BTreeSet};

use aps_controller::interpreter::InterpreterTable;
use aps_controller::lifecycle::{
    DatabaseChoice, DatabaseServerFact, GivenSettings, HostOffer, SettingProblem, UniqScope,
    UnmetRequirement, check_requirements, generate_missing, resolve_configure, resolve_install,
};
use aps_controller::registry::instance::{BaseUrl, Instance, SettingValue};
use aps_meta::model::{
    AppMeta, Choice, DbRequirement, LocalizedText, MailRequirement, OpaqueElement, PhpRequirement,
    RequirementAlternative, RequirementChoice, Script, Setting, SettingGroup, SettingType,
};
use camino::Utf8PathBuf;

fn single(v: &str) -> SettingValue {
    SettingValue::Single(v.into())
}

fn named(mut s: Setting, name: &str) -> Setting {
    s.names = vec![LocalizedText {
        lang: Some("en-US".into()),
        text: name.into(),
    }];
    s
}

/// A package with the settings given, in one group, and nothing else.
fn package(settings: Vec<Setting>) -> AppMeta {
    let xml = r#"<application xmlns="http://apstandard.com/ns/1" version="1.2">
        <name>Blog</name><version>1.0</version><release>1</release>
        <service id="blog"><presentation><name>Blog</name></presentation></service>
        </application>"#;
    let (mut meta, _) = aps_meta::parse_app_meta(xml, "APP-META.xml").unwrap();
    meta.service.settings = vec![SettingGroup {
        settings,
        ..SettingGroup::default()
    }];
    meta
}

fn instance(name: &str, user: Option<&str>, settings: &[(&str, SettingValue)]) -> Instance {
    Instance {
        name: name.into(),
        package: "/srv/packages/blog".into(),
        base_url: BaseUrl::parse("https://example.test/").unwrap(),
        web_dirs: BTreeMap::from([("/".to_string(), Utf8PathBuf::from("/srv/www/blog"))]),
        settings: settings
            .iter()
            .map(|(k, v)| (k.to_string(), v.clone()))
            .collect(),
        databases: BTreeMap::new(),
        secret_settings: BTreeSet::new(),
        user: user.map(str::to_owned),
        group: None,
        role: None,
        status: Default::default(),
        installed: None,
    }
}

fn args(a: &[&str]) -> GivenSettings {
    GivenSettings::from_arguments(a).unwrap()
}

fn problems(meta: &AppMeta, given: &GivenSettings, others: &[Instance]) -> Vec<SettingProblem> {
    resolve_install(meta, given, Some("aps-tenant1"), others)
        .unwrap_err()
        .problems
}

#[test]
fn given_else_default_else_none_when_optional() {
    let mut title = Setting::new("title", SettingType::String);
    title.default_value = Some("My Blog".into());
    let mut note = Setting::new("note", SettingType::String);
    note.optional = true;
    let admin = Setting::new("admin", SettingType::String);
    let meta = package(vec![title, note, admin]);
    let r = resolve_install(&meta, &args(&["admin=root1"]), None, &[]).unwrap();
    assert_eq!(
        r.values,
        BTreeMap::from([
            ("admin".to_string(), single("root1")),
            ("title".to_string(), single("My Blog")),
        ])
    );
    assert!(r.secret.is_empty());
}

#[test]
fn every_problem_is_reported_at_once_naming_the_setting() {
    let admin = named(
        Setting::new("admin_name", SettingType::String),
        "Administrator",
    );
    let mut email = Setting::new("admin_email", SettingType::Email);
    email.default_value = Some("a@example.com".into());
    let mut port = Setting::new("port", SettingType::Integer);
    port.max = Some("65535".into());
    let meta = package(vec![admin, email, port]);
    let given = args(&["admin_emial=x@example.com", "port=70000"]);
    let refused = resolve_install(&meta, &given, None, &[]).unwrap_err();
    assert_eq!(refused.problems.len(), 3, "{refused}");
    let text = refused.to_string();
    assert!(text.starts_with("settings refused (3 problems):"), "{text}");
    assert!(text.contains("`admin_emial`") && text.contains("did you mean `admin_email`"));
    assert!(
        text.contains("`admin_name` (Administrator) is required"),
        "{text}"
    );
    assert!(text.contains("settings admin_name=VALUE"), "{text}");
    assert!(
        text.contains("`port`: value \"70000\" is out of range"),
        "{text}"
    );
}

#[test]
fn an_empty_default_that_is_invalid_is_no_default() {
    let mut host = named(Setting::new("apihost", SettingType::String), "API host");
    host.default_value = Some("".into());
    host.min_length = Some(1);
    let mut motto = Setting::new("motto", SettingType::String);
    motto.default_value = Some("".into());
    let meta = package(vec![host, motto]);
    let p = problems(&meta, &GivenSettings::new(), &[]);
    assert_eq!(
        p,
        vec![SettingProblem::Missing {
            id: "apihost".into(),
            name: Some("API host".into())
        }]
    );
    let r = resolve_install(&meta, &args(&["apihost=api.example"]), None, &[]).unwrap();
    assert_eq!(r.values["motto"], single(""));
}

#[test]
fn booleans_are_normalised_and_lists_collected() {
    let flag = Setting::new("flag", SettingType::Boolean);
    let mut flag2 = Setting::new("flag2", SettingType::Boolean);
    flag2.default_value = Some("TRUE".into());
    let mut domains = Setting::new(
        "domains",
        SettingType::List {
            element_type: Box::new(SettingType::DomainName),
        },
    );
    domains.optional = true;
    let meta = package(vec![flag, flag2, domains.clone()]);
    let r = resolve_install(
        &meta,
        &args(&["flag=Yes", "domains=a.example", "domains=b.example"]),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(r.values["flag"], single("true"));
    assert_eq!(r.values["flag2"], single("true"));
    assert_eq!(
        r.values["domains"],
        SettingValue::List(vec!["a.example".into(), "b.example".into()])
    );
    let p = problems(&meta, &args(&["flag=maybe", "domains=not a domain"]), &[]);
    assert_eq!(p.len(), 2, "{p:?}");
    // A scalar given twice is refused; an empty list is fine only when optional.
    let p = problems(&meta, &args(&["flag=true", "flag=false"]), &[]);
    assert_eq!(
        p,
        vec![SettingProblem::ListForScalar {
            id: "flag".into(),
            count: 2
        }]
    );
    domains.optional = false;
    let meta = package(vec![domains]);
    let p = problems(&meta, &args(&["domains="]), &[]);
    assert!(matches!(&p[..], [SettingProblem::Missing { id, .. }] if id == "domains"));
}

#[test]
fn hidden_takes_its_default_and_static_text_carries_nothing() {
    let mut hidden = Setting::new("api_key", SettingType::String);
    hidden.hidden = true;
    hidden.default_value = Some("k1".into());
    let mut hidden_type = Setting::new("internal", SettingType::Hidden);
    hidden_type.default_value = Some("v".into());
    let text = Setting::new("notice", SettingType::StaticText);
    let meta = package(vec![hidden, hidden_type, text]);
    let r = resolve_install(&meta, &GivenSettings::new(), None, &[]).unwrap();
    assert_eq!(r.values.len(), 2);
    assert_eq!(r.values["api_key"], single("k1"));
    assert!(!r.values.contains_key("notice"));
    let p = problems(&meta, &args(&["api_key=mine", "notice=x"]), &[]);
    assert_eq!(
        p,
        vec![
            SettingProblem::NotSettable {
                id: "api_key".into(),
                kind: "hidden"
            },
            SettingProblem::NotSettable {
                id: "notice".into(),
                kind: "static-text"
            },
        ]
    );
}

#[test]
fn uniq_global_and_owner_scopes() {
    let mut login = Setting::new("login", SettingType::Email);
    login.uniq = Some("global".into());
    let mut slug = Setting::new("slug", SettingType::String);
    slug.uniq = Some("owner".into());
    let meta = package(vec![login, slug]);
    let others = [
        instance(
            "other-tenant",
            Some("aps-tenant2"),
            &[
                ("login", single("Admin@Example.com")),
                ("slug", single("blog")),
            ],
        ),
        instance(
            "same-tenant",
            Some("aps-tenant1"),
            &[("slug", single("shop"))],
        ),
    ];
    // Another account's `blog` slug is fine (owner scope); its login is not (global, and
    // e-mail addresses compare without case).
    let p = problems(
        &meta,
        &args(&["login=admin@example.com", "slug=blog"]),
        &others,
    );
    assert_eq!(
        p,
        vec![SettingProblem::NotUnique {
            id: "login".into(),
            scope: UniqScope::Global,
            instance: "other-tenant".into()
        }]
    );
    let p = problems(
        &meta,
        &args(&["login=me@example.com", "slug=shop"]),
        &others,
    );
    assert_eq!(
        p,
        vec![SettingProblem::NotUnique {
            id: "slug".into(),
            scope: UniqScope::Owner,
            instance: "same-tenant".into()
        }]
    );
    assert!(
        resolve_install(
            &meta,
            &args(&["login=me@example.com", "slug=blog"]),
            Some("aps-tenant1"),
            &others
        )
        .is_ok()
    );
}

#[test]
fn value_of_setting_follows_the_named_setting() {
    let admin = Setting::new("admin_login", SettingType::String);
    let mut ftp = Setting::new("ftp_login", SettingType::String);
    ftp.value_of_setting = Some("admin_login".into());
    let mut broken = Setting::new("other", SettingType::String);
    broken.value_of_setting = Some("nowhere".into());
    let meta = package(vec![ftp.clone(), admin.clone()]);
    let r = resolve_install(&meta, &args(&["admin_login=boss"]), None, &[]).unwrap();
    assert_eq!(r.values["ftp_login"], single("boss"));
    let r = resolve_install(
        &meta,
        &args(&["admin_login=boss", "ftp_login=ftp"]),
        None,
        &[],
    )
    .unwrap();
    assert_eq!(r.values["ftp_login"], single("ftp"));
    let meta = package(vec![admin, broken]);
    let p = problems(&meta, &args(&["admin_login=boss"]), &[]);
    assert_eq!(
        p,
        vec![SettingProblem::ValueOfUnknown {
            id: "other".into(),
            target: "nowhere".into()
        }]
    );
}

#[test]
fn password_settings_are_secret_ids() {
    let pw = Setting::new("admin_password", SettingType::Password);
    let mut key = Setting::new("api_key", SettingType::String);
    key.class = Some("password".into());
    key.optional = true;
    let mut copy = Setting::new("ftp_password", SettingType::String);
    copy.value_of_setting = Some("admin_password".into());
    let meta = package(vec![pw, key, copy]);
    let r = resolve_install(&meta, &args(&["admin_password=s3cret-1"]), None, &[]).unwrap();
    // A copy of a password is as secret as the password.
    assert_eq!(
        r.secret,
        BTreeSet::from(["admin_password".to_string(), "ftp_password".to_string()])
    );
}

fn configurable() -> AppMeta {
    let mut title = Setting::new("title", SettingType::String);
    title.track_old_value = true;
    let mut db_prefix = named(
        Setting::new("db_prefix", SettingType::String),
        "Table prefix",
    );
    db_prefix.installation_only = true;
    let mut login = Setting::new("login", SettingType::String);
    login.uniq = Some("global".into());
    let mut color = Setting::new("color", SettingType::String);
    color.default_value = Some("blue".into());
    package(vec![title, db_prefix, login, color])
}

#[test]
fn configure_reports_changes_and_old_values_of_tracked_settings() {
    let meta = configurable();
    let me = instance(
        "blog",
        Some("aps-tenant1"),
        &[
            ("title", single("Old")),
            ("db_prefix", single("wp_")),
            ("login", single("boss")),
        ],
    );
    // The instance itself holding `boss` is no clash; an unchanged installation-only value is
    // no change.
    let c = resolve_configure(
        &meta,
        &me,
        &args(&["title=New", "db_prefix=wp_", "login=boss", "color=red"]),
        std::slice::from_ref(&me),
    )
    .unwrap();
    assert_eq!(
        c.changed,
        BTreeSet::from(["color".to_string(), "title".to_string()])
    );
    assert_eq!(
        c.old_values,
        BTreeMap::from([("title".to_string(), single("Old"))])
    );
    assert_eq!(c.settings.values["title"], single("New"));
    assert_eq!(c.settings.values["color"], single("red"));
    assert_eq!(c.settings.values["db_prefix"], single("wp_"));
}

#[test]
fn configure_refuses_installation_only_changes_clashes_and_typos_together() {
    let meta = configurable();
    let me = instance("blog", Some("aps-tenant1"), &[("db_prefix", single("wp_"))]);
    let other = instance("shop", Some("aps-tenant2"), &[("login", single("boss"))]);
    let refused = resolve_configure(
        &meta,
        &me,
        &args(&["db_prefix=x_", "login=boss", "titel=New"]),
        &[me.clone(), other],
    )
    .unwrap_err();
    assert_eq!(refused.problems.len(), 3, "{refused}");
    let text = refused.to_string();
    assert!(
        text.contains("`db_prefix` (Table prefix) is installation-only"),
        "{text}"
    );
    assert!(
        text.contains("instance shop already has this value"),
        "{text}"
    );
    assert!(text.contains("did you mean `title`"), "{text}");
}

#[test]
fn generated_values_fill_only_what_is_missing() {
    let mut pw = Setting::new("admin_password", SettingType::Password);
    pw.min_length = Some(12);
    let mut title = Setting::new("title", SettingType::String);
    title.default_value = Some("Blog".into());
    let mut locale = Setting::new("locale", SettingType::Enum);
    locale.choices = vec![Choice {
        id: "en-US".into(),
        names: vec![],
    }];
    let mail = Setting::new("admin_email", SettingType::Email);
    let meta = package(vec![pw, title, locale, mail]);
    let given = args(&["admin_email=me@example.com"]);
    let filled = generate_missing(&meta, &given, &[1; 32]).unwrap();
    assert_eq!(filled.get("admin_email"), Some(&single("me@example.com")));
    assert_eq!(filled.get("locale"), Some(&single("en-US")));
    assert_eq!(filled.get("title"), None, "a default is not overridden");
    let r = resolve_install(&meta, &filled, None, &[]).unwrap();
    let SettingValue::Single(pw) = &r.values["admin_password"] else {
        panic!("a password is one value")
    };
    assert!(pw.len() >= 12);
    let mut impossible = Setting::new("code", SettingType::String);
    impossible.regex = Some("^[0-9]{2}$".into());
    impossible.min_length = Some(3);
    let refused = generate_missing(&package(vec![impossible]), &given, &[1; 32]).unwrap_err();
    assert!(matches!(
        &refused.problems[..],
        [SettingProblem::CannotGenerate(e)] if e.setting == "code"
    ));
}

// ---- requirements ----

fn php_host() -> HostOffer {
    HostOffer {
        interpreters: InterpreterTable::new(),
        php_version: Some("8.2.12".into()),
        // What a distribution's PHP 8.2 with the usual packages has (`php -m`).
        php_extensions: "bcmath ctype curl dom exif fileinfo filter ftp gd gettext hash iconv \
                         intl json libxml mbstring mysqli mysqlnd openssl pcre pdo pdo_mysql \
                         pdo_pgsql pdo_sqlite pgsql posix session simplexml soap sockets sodium \
                         spl sqlite3 tokenizer xml xmlreader xmlwriter xsl zip zlib"
            .split_whitespace()
            .map(String::from)
            .collect(),
        database_servers: vec![
            DatabaseServerFact {
                name: "maria".into(),
                kind: "mariadb".into(),
                version: "10.11.6".into(),
            },
            DatabaseServerFact {
                name: "pg".into(),
                kind: "postgresql".into(),
                version: "15.4".into(),
            },
        ],
        database_choices: BTreeMap::new(),
        free_bytes: Some(10 << 30),
    }
}

fn script(language: &str) -> Script {
    Script {
        name: "configure".into(),
        language: language.into(),
        sufficient: false,
        structured_output: false,
        status_control: false,
    }
}

fn db(id: &str, kind: &str, min: Option<&str>) -> DbRequirement {
    DbRequirement {
        id: id.into(),
        default_name: None,
        can_use_tables_prefix: false,
        server_type: Some(kind.into()),
        server_min_version: min.map(str::to_owned),
    }
}

#[test]
fn met_requirements_say_which_server_and_interpreter() {
    let mut meta = package(vec![]);
    meta.service.provision.configuration_script = Some(script("sh"));
    meta.service.requirements.php = Some(PhpRequirement {
        version_min: Some("7.4".into()),
        extensions: vec!["MySQLi".into()],
        ..PhpRequirement::default()
    });
    meta.service.requirements.databases = vec![
        db("main", "mysql", Some("5.7")),
        db("stats", "postgresql", Some("12")),
    ];
    let report = check_requirements(&meta, &php_host()).unwrap();
    assert_eq!(report.interpreters.len(), 1);
    assert_eq!(report.interpreters[0].1.language, "sh");
    assert_eq!(
        report.databases,
        BTreeMap::from([
            ("main".to_string(), Some("maria".to_string())),
            ("stats".to_string(), Some("pg".to_string())),
        ])
    );
    assert!(report.warnings.is_empty(), "{:?}", report.warnings);
}

#[test]
fn every_unmet_requirement_is_named_in_one_refusal() {
    let mut meta = package(vec![]);
    meta.service.provision.configuration_script = Some(script("cobol"));
    meta.service.provision.url_mapping = Some(aps_meta::model::UrlMapping {
        installed_size: Some("5000000".into()),
        ..Default::default()
    });
    meta.service.requirements.php = Some(PhpRequirement {
        version_min: Some("5.2".into()),
        version_max_not_including: Some("8.0".into()),
        extensions: vec!["mysql".into(), "gd".into(), "ioncube".into()],
        ..PhpRequirement::default()
    });
    meta.service.requirements.databases = vec![
        db("main", "mysql", Some("11.4")),
        db("legacy", "microsoft:sqlserver", None),
    ];
    meta.service.requirements.mailboxes = vec![MailRequirement {
        id: "support".into(),
        raw: opaque("mail", "mailbox"),
    }];
    let mut host = php_host();
    host.free_bytes = Some(1000);
    let refused = check_requirements(&meta, &host).unwrap_err();
    let text = refused.to_string();
    assert_eq!(refused.unmet.len(), 7, "{text}");
    for needle in [
        "script-language `cobol`",
        "PHP >= 5.2, < 8.0 is required; this host declares PHP 8.2.12",
        "PHP extensions mysql, ioncube are required",
        "database `main` needs mysql 11.4 or later",
        "database `legacy` needs microsoft:sqlserver",
        "5000000 bytes",
        "mailbox `support`",
    ] {
        assert!(text.contains(needle), "{needle:?} not in {text}");
    }
    // No php-version declared: a version requirement cannot be taken on trust.
    host.php_version = None;
    let refused = check_requirements(&meta, &host).unwrap_err();
    assert!(
        refused
            .unmet
            .iter()
            .any(|u| matches!(u, UnmetRequirement::PhpVersionUnknown { .. }))
    );
}

#[test]
fn the_offer_of_a_configured_controller() {
    let state = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(state.path().to_path_buf()).unwrap();
    std::fs::write(
        root.join("controller.toml"),
        "php-version = \"8.3\"\nphp-extensions = [\"gd\", \"intl\"]\n",
    )
    .unwrap();
    let config = aps_controller::ControllerConfig::load(
        aps_controller::registry::store::StateDir::at(root.clone()),
    )
    .unwrap();
    let offer = HostOffer::from_config(&config, vec![], &root.join("www/not-yet"));
    assert_eq!(offer.php_version.as_deref(), Some("8.3"));
    assert_eq!(offer.php_extensions, ["gd", "intl"]);
    assert!(offer.free_bytes.is_some_and(|b| b > 0));
    let mut meta = package(vec![]);
    meta.service.requirements.php = Some(PhpRequirement {
        extensions: vec!["gd".into(), "imagick".into()],
        ..PhpRequirement::default()
    });
    let refused = check_requirements(&meta, &offer).unwrap_err();
    assert_eq!(
        refused.unmet,
        vec![UnmetRequirement::PhpExtensions {
            missing: vec!["imagick".into()]
        }]
    );
}

#[test]
fn chosen_servers_and_existing_databases() {
    let mut meta = package(vec![]);
    meta.service.requirements.databases = vec![db("main", "mysql", None)];
    let mut host = php_host();
    host.database_choices = BTreeMap::from([("main".into(), DatabaseChoice::Server("pg".into()))]);
    let refused = check_requirements(&meta, &host).unwrap_err();
    assert_eq!(
        refused.unmet,
        vec![UnmetRequirement::ChosenServer {
            id: "main".into(),
            server: "pg".into(),
            why: "it is postgresql, the package needs mysql".into()
        }]
    );
    host.database_choices = BTreeMap::from([("main".into(), DatabaseChoice::Existing)]);
    let report = check_requirements(&meta, &host).unwrap();
    assert_eq!(report.databases["main"], None);
    host.database_choices = BTreeMap::from([("main".into(), DatabaseChoice::Server("x".into()))]);
    let text = check_requirements(&meta, &host).unwrap_err().to_string();
    assert!(text.contains("no such server in controller.toml"), "{text}");
}

fn opaque(ns: &str, name: &str) -> OpaqueElement {
    OpaqueElement {
        namespace: Some(format!("http://apstandard.com/ns/1/{ns}")),
        name: name.into(),
        attributes: vec![],
        text: None,
        children: vec![],
    }
}

#[test]
fn a_choice_is_met_by_one_alternative_else_each_is_named() {
    let alt = |id: &str, kind: &str, min: &str| RequirementAlternative {
        id: Some(id.into()),
        requirements: aps_meta::model::Requirements {
            databases: vec![db("main", kind, Some(min))],
            ..Default::default()
        },
    };
    let mut meta = package(vec![]);
    meta.service.requirements.choices = vec![RequirementChoice {
        alternatives: vec![alt("mysql", "mysql", "12"), alt("pg", "postgresql", "13")],
    }];
    meta.service.requirements.apache = Some(aps_meta::model::ApacheRequirement {
        required_modules: vec!["mod_rewrite".into()],
        htaccess: false,
    });
    let report = check_requirements(&meta, &php_host()).unwrap();
    assert_eq!(report.alternatives, vec!["pg".to_string()]);
    assert_eq!(report.databases["main"], Some("pg".into()));
    let warnings: Vec<String> = report.warnings.iter().map(ToString::to_string).collect();
    assert_eq!(
        warnings,
        [
            "configuration-script: the package declares none: install runs no script",
            "apache:required-module mod_rewrite: the web server is not this controller's: not verified"
        ]
    );
    let mut host = php_host();
    host.database_servers.pop();
    let refused = check_requirements(&meta, &host).unwrap_err();
    let [UnmetRequirement::Choice { alternatives }] = &refused.unmet[..] else {
        panic!("{refused}")
    };
    assert_eq!(alternatives.len(), 2);
    assert!(
        refused
            .to_string()
            .contains("[pg: database `main` needs postgresql 13")
    );
}

// ---- the published packages (dry run) ----

fn real_packages() -> Vec<(String, AppMeta)> {
    let dir = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../fixtures/real");
    let mut out = Vec::new();
    for entry in dir.read_dir_utf8().unwrap() {
        let entry = entry.unwrap();
        let meta_path = entry.path().join("APP-META.xml");
        if !meta_path.is_file() {
            continue;
        }
        let bytes = std::fs::read(&meta_path).unwrap();
        let (meta, _) =
            aps_meta::parse_app_meta_bytes(&bytes, "APP-META.xml", &aps_meta::Limits::default())
                .unwrap();
        out.push((entry.file_name().to_string(), meta));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

fn shown(meta: &AppMeta, id: &str, v: &SettingValue) -> String {
    let secret = meta
        .service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .any(|s| s.id == id && s.is_secret());
    match v {
        _ if secret => "*** (secret)".to_string(),
        SettingValue::Single(s) => format!("{s:?}"),
        SettingValue::List(items) => format!("{items:?}"),
    }
}

#[test]
fn published_packages_resolve_and_check_as_a_dry_run_install() {
    let packages = real_packages();
    assert!(
        packages.len() >= 15,
        "fixtures/real holds the published files"
    );
    for (name, meta) in packages {
        let mut out = String::new();
        out.push_str("== with no values given ==\n");
        match resolve_install(&meta, &GivenSettings::new(), None, &[]) {
            Ok(r) => {
                out.push_str("resolves with defaults alone:\n");
                for (id, v) in &r.values {
                    out.push_str(&format!("  {id} = {}\n", shown(&meta, id, v)));
                }
            }
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        out.push_str("\n== with generated values ==\n");
        match generate_missing(&meta, &GivenSettings::new(), &[42; 32]) {
            Err(e) => out.push_str(&format!("{e}\n")),
            Ok(given) => {
                let r = resolve_install(&meta, &given, None, &[])
                    .unwrap_or_else(|e| panic!("{name}: generated values must resolve: {e}"));
                for (id, v) in &r.values {
                    let origin = if given.get(id).is_some() {
                        "generated"
                    } else {
                        "default"
                    };
                    out.push_str(&format!("  {id} = {} ({origin})\n", shown(&meta, id, v)));
                }
                out.push_str(&format!("  secret: {:?}\n", r.secret));
            }
        }
        out.push_str("\n== requirements (PHP 8.2, MariaDB 10.11, PostgreSQL 15) ==\n");
        match check_requirements(&meta, &php_host()) {
            Ok(report) => {
                out.push_str("met\n");
                for (script, i) in &report.interpreters {
                    out.push_str(&format!("  script {script}: {}\n", i.language));
                }
                for (id, server) in &report.databases {
                    out.push_str(&format!("  database {id}: {server:?}\n"));
                }
                for alt in &report.alternatives {
                    out.push_str(&format!("  alternative taken: {alt}\n"));
                }
                for w in &report.warnings {
                    out.push_str(&format!("  warning: {w}\n"));
                }
            }
            Err(e) => out.push_str(&format!("{e}\n")),
        }
        insta::assert_snapshot!(format!("real_{name}"), out);
    }
}
