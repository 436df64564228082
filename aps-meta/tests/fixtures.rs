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
    let urls: Vec<_> = prov
        .url_mapping
        .as_ref()
        .unwrap()
        .flattened()
        .into_iter()
        .map(|m| m.full_url)
        .collect();
    assert_eq!(urls, ["/", "/cache", "/blogs/media", "/config.php"]);
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
    let urls: Vec<_> = nb
        .meta
        .service
        .provision
        .url_mapping
        .as_ref()
        .unwrap()
        .flattened()
        .into_iter()
        .map(|m| m.full_url)
        .collect();
    assert_eq!(urls, ["/", "/uploads"]);
}
