//! Our own sample packages: listings verify, checks pass, and the model holds what the
//! controller tests rely on.

use aps_meta::{Limits, Package, SettingType, check_package, verify_listing};
use camino::Utf8PathBuf;

fn fixture(name: &str) -> Utf8PathBuf {
    Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("../fixtures/packages")
        .join(name)
}

const ALL: &[&str] = &[
    "sh-sample",
    "sh-structured",
    "php-sample",
    "perl-sample",
    "python-sample",
    "nobackup-sample",
    "full-provision",
];

#[test]
fn every_fixture_listing_verifies() {
    for name in ALL {
        let r = verify_listing(&fixture(name), &Limits::default()).unwrap();
        assert!(r.is_clean(), "{name}: {:#?}", r.diagnostics);
        assert_eq!(r.verified, r.listed, "{name}");
        assert!(r.listed >= 5, "{name}: {} entries", r.listed);
    }
}

#[test]
fn every_fixture_checks_clean() {
    for name in ALL {
        let r = check_package(&fixture(name), &Limits::default()).unwrap();
        assert!(r.diagnostics.is_empty(), "{name}: {:#?}", r.diagnostics);
    }
}

#[test]
fn sh_sample_model() {
    let p = Package::open_dir(&fixture("sh-sample"), &Limits::default()).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    assert_eq!(p.scripts_dir(), fixture("sh-sample").join("scripts"));
    let prov = &p.meta.service.provision;
    let b = prov.backup_script.as_ref().unwrap();
    assert_eq!(
        (
            b.name.as_str(),
            b.language.as_str(),
            b.sufficient,
            b.structured_output
        ),
        ("backup", "sh", true, false)
    );
    assert!(prov.verification_script.is_some() && prov.resource_script.is_some());
    assert_eq!(
        mapped_urls(prov),
        ["/", "/cache", "/blogs/media", "/config.php"]
    );
    let ids: Vec<_> = p
        .meta
        .service
        .all_settings()
        .iter()
        .map(|s| s.id.clone())
        .collect();
    assert_eq!(
        ids,
        [
            "admin_name",
            "admin_password",
            "locale",
            "domains",
            "behaviour"
        ]
    );
    let domains = p.meta.service.all_settings()[3].clone();
    assert_eq!(
        domains.kind,
        SettingType::List {
            element_type: Box::new(SettingType::DomainName)
        }
    );
    assert_eq!(p.meta.all_global_settings()[0].id, "site_title");
    assert!(p.meta.service.all_databases().is_empty());

    let s = Package::open_dir(&fixture("sh-structured"), &Limits::default()).unwrap();
    assert!(
        s.meta
            .service
            .provision
            .backup_script
            .as_ref()
            .unwrap()
            .structured_output
    );
}

#[test]
fn database_fixtures() {
    let php = Package::open_dir(&fixture("php-sample"), &Limits::default()).unwrap();
    let b = php.meta.service.provision.backup_script.as_ref().unwrap();
    assert_eq!((b.language.as_str(), b.sufficient), ("php", false));
    let dbs = php.meta.service.all_databases();
    assert_eq!(dbs.len(), 1);
    assert_eq!(
        (
            dbs[0].id.as_str(),
            dbs[0].server_type.as_deref(),
            dbs[0].can_use_tables_prefix
        ),
        ("main", Some("mysql"), true)
    );

    let perl = Package::open_dir(&fixture("perl-sample"), &Limits::default()).unwrap();
    assert_eq!(perl.meta.service.all_databases()[0].id, "MAIN");
    assert_eq!(
        perl.meta.service.all_databases()[0].server_type.as_deref(),
        Some("postgresql")
    );

    let nb = Package::open_dir(&fixture("nobackup-sample"), &Limits::default()).unwrap();
    assert!(nb.meta.service.provision.backup_script.is_none());
    let ids: Vec<_> = nb
        .meta
        .service
        .all_databases()
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(ids, ["main", "stats"]);
    assert_eq!(mapped_urls(&nb.meta.service.provision), ["/", "/uploads"]);
}

/// The fixture holding every modelled element: each provision element and script language,
/// every aspect of the standard (unknown ones kept opaque with their namespace), a choice between
/// requirement sets, nested services and groups. The whole model is snapshotted.
#[test]
fn full_provision_model() {
    let p = Package::open_dir(&fixture("full-provision"), &Limits::default()).unwrap();
    assert!(p.warnings.is_empty(), "{:?}", p.warnings);
    let m = &p.meta;
    let prov = &m.service.provision;
    let lang = |s: &Option<aps_meta::Script>| s.as_ref().unwrap().language.clone();
    assert_eq!(
        [
            lang(&prov.configuration_script),
            lang(&prov.verification_script),
            lang(&prov.resource_script),
            lang(&prov.backup_script),
        ],
        ["php", "perl", "python", "sh"]
    );
    let conf = prov.configuration_script.as_ref().unwrap();
    assert!(conf.status_control && conf.structured_output);
    let backup = prov.backup_script.as_ref().unwrap();
    assert!(backup.sufficient && backup.structured_output);
    assert!(prov.verification_script.as_ref().unwrap().structured_output);
    assert_eq!(prov.other[0].name, "license-script");

    let um = prov.url_mapping.as_ref().unwrap();
    assert_eq!(um.installed_size.as_deref(), Some("1048576"));
    let flat: Vec<_> = um
        .flattened()
        .into_iter()
        .map(|f| (f.full_url, f.is_virtual))
        .collect();
    assert_eq!(
        flat,
        [
            ("/".to_string(), false),
            ("/data".to_string(), false),
            ("/cgi-bin".to_string(), false),
            ("/api".to_string(), true),
            ("/config.php".to_string(), false),
        ]
    );
    let root = &um.mappings[0];
    assert_eq!(root.handlers[0].name, "handler");
    assert_eq!(root.children[0].writable, Some(true));
    let cgi: Vec<_> = root.children[1]
        .handlers
        .iter()
        .map(|h| h.namespace.as_deref().unwrap())
        .collect();
    assert_eq!(
        cgi,
        [
            "http://apstandard.com/ns/1/cgi",
            "http://apstandard.com/ns/1/perl"
        ]
    );

    let r = &m.service.requirements;
    assert_eq!(r.php.as_ref().unwrap().extensions, ["mysqli", "gd"]);
    assert_eq!(r.mailboxes[0].id, "account");
    assert_eq!(r.apache.as_ref().unwrap().required_modules, ["mod_rewrite"]);
    assert_eq!(r.perl.len(), 2);
    assert_eq!(r.dns_records.len(), 1);
    assert_eq!(r.licenses[0].id, "main");
    let other: Vec<_> = r
        .other
        .iter()
        .map(|o| (o.namespace.as_deref().unwrap(), o.name.as_str()))
        .collect();
    assert_eq!(
        other,
        [
            ("http://apstandard.com/ns/1/hardware", "memory"),
            ("http://apstandard.com/ns/1/environment", "os"),
            ("http://apstandard.com/ns/1/cgi", "handler-support"),
            ("urn:example:acme-aspect", "widget"),
        ]
    );
    let dbs: Vec<_> = m
        .service
        .all_databases()
        .iter()
        .map(|d| (d.id.as_str(), d.server_type.as_deref().unwrap()))
        .collect();
    assert_eq!(
        dbs,
        [
            ("cache", "mysql"),
            ("main", "mysql"),
            ("main", "postgresql")
        ]
    );

    assert_eq!(m.service.all_settings().len(), 13);
    assert_eq!(m.service.children[0].id, "account");
    assert_eq!(
        m.service.children[0]
            .provision
            .configuration_script
            .as_ref()
            .unwrap()
            .name,
        "usermanager"
    );
    // Match rules are kept as text and evaluate against dotted versions.
    assert!(aps_meta::version_match::matches(&m.patches[0].match_expr, "2.1.0", "2").unwrap());
    assert!(m.patches[0].recommended);
    assert!(aps_meta::version_match::matches(&m.upgrades[0].match_expr, "2.0.10", "1").unwrap());
    assert!(!aps_meta::version_match::matches(&m.upgrades[0].match_expr, "2.10.0", "1").unwrap());
    insta::assert_yaml_snapshot!("full_provision_model", m);
}

/// The full URLs of a provision's url-mapping, in document order.
fn mapped_urls(provision: &aps_meta::Provision) -> Vec<String> {
    provision
        .url_mapping
        .as_ref()
        .expect("a url-mapping")
        .flattened()
        .into_iter()
        .map(|m| m.full_url)
        .collect()
}
