//! Each tolerance of issue #2, on a minimal input of its own (the real files of
//! conformance/real show them mixed together; these pin each one down).

use aps_meta::{ApsVersion, Limits, parse_app_list, parse_app_meta, version_match};

const NS: &str = "http://apstandard.com/ns/1";

fn codes(diags: &[aps_meta::Diagnostic]) -> Vec<&'static str> {
    diags.iter().map(|d| d.code).collect()
}

#[test]
fn comment_before_root_crlf_and_no_declaration() {
    let xml = format!(
        "<!-- built by hand -->\r\n<!-- second comment -->\r\n<application xmlns=\"{NS}\" version=\"1.2\">\r\n<name>crlf</name>\r\n<version>1.0</version>\r\n<release>1</release>\r\n<service id=\"s\"/>\r\n</application>\r\n"
    );
    let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!((m.name.as_str(), m.version.as_str()), ("crlf", "1.0"));
    // A fault after CRLF lines is still reported at the right line.
    let bad = xml.replace("<release>1</release>", "<release>1</releas>");
    let e = parse_app_meta(&bad, "APP-META.xml").unwrap_err();
    assert_eq!(
        (e.code(), e.location().line),
        ("xml-not-well-formed", Some(6)),
        "{e}"
    );
}

#[test]
fn aps_1_0_flat_layout() {
    let xml = format!(
        "<application xmlns=\"{NS}\"><name>flat</name><version>1.2.1</version><release>4</release>\
         <packager-uri>uuid:1</packager-uri><default-prefix>flat</default-prefix>\
         <installed-size>2048</installed-size><configuration-script-language>php</configuration-script-language>\
         <upgradable-from version=\"1.2.0\" release=\"1\"/><settings><setting id=\"x\" type=\"string\"/></settings>\
         <mapping url=\"/\" path=\"htdocs\"><mapping url=\"tmp\"/></mapping></application>"
    );
    let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(m.aps_version, ApsVersion::V1_0);
    let s = &m.service;
    assert_eq!(s.id, aps_meta::IMPLICIT_SERVICE_ID);
    let conf = s.provision.configuration_script.as_ref().unwrap();
    assert_eq!(
        (conf.name.as_str(), conf.language.as_str()),
        ("configure", "php")
    );
    let urls: Vec<_> = s.provision.url_mapping.as_ref().unwrap().flattened();
    assert_eq!(urls[1].full_url, "/tmp");
    assert_eq!(m.upgradable_from[0].version, "1.2.0");
    assert_eq!(m.packager.as_ref().unwrap().uri.as_deref(), Some("uuid:1"));
    assert_eq!(s.all_settings()[0].id, "x");
}

#[test]
fn legacy_script_language_inside_a_1_1_or_1_2_script() {
    for (version, warned) in [("1.1", false), ("1.2", true)] {
        let xml = format!(
            "<application xmlns=\"{NS}\" version=\"{version}\"><name>a</name><version>1</version><release>1</release>\
             <service id=\"s\"><provision><configuration-script name=\"configure.php\">\
             <configuration-script-language>php</configuration-script-language>\
             </configuration-script></provision></service></application>"
        );
        let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
        let conf = m.service.provision.configuration_script.unwrap();
        assert_eq!(conf.language, "php");
        assert_eq!(
            codes(&d) == ["legacy-script-language"],
            warned,
            "{version}: {d:?}"
        );
    }
}

#[test]
fn namespaces_match_by_uri_never_by_prefix() {
    // The APS namespace under an unusual prefix, and a foreign element that borrows the usual
    // prefix `db` for another namespace: the first is read, the second is not a database.
    let xml = format!(
        "<aps:application xmlns:aps=\"{NS}\" version=\"1.2\"><aps:name>p</aps:name><aps:version>1</aps:version>\
         <aps:release>1</aps:release><aps:service id=\"s\"><aps:requirements>\
         <x:db xmlns:x=\"http://apstandard.com/ns/1/db\"><x:id>main</x:id></x:db>\
         <db:db xmlns:db=\"urn:not-the-db-aspect\"><db:id>fake</db:id></db:db>\
         </aps:requirements><service id=\"not-aps\" xmlns=\"urn:other\"/></aps:service></aps:application>"
    );
    let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert!(d.is_empty(), "{d:?}");
    let ids: Vec<_> = m
        .service
        .all_databases()
        .iter()
        .map(|d| d.id.clone())
        .collect();
    assert_eq!(ids, ["main"]);
    let other: Vec<_> = m
        .service
        .requirements
        .other
        .iter()
        .map(|o| (o.namespace.clone().unwrap(), o.name.clone()))
        .collect();
    assert_eq!(
        other,
        [("urn:not-the-db-aspect".to_string(), "db".to_string())]
    );
    // A `service` element of another namespace is not a child service.
    assert!(m.service.children.is_empty());

    // APP-LIST root as <ns2:files> with the XML-signature namespace as default.
    let list = format!(
        "<?xml version=\"1.0\"?><ns2:files xmlns=\"http://www.w3.org/2000/09/xmldsig#\" xmlns:ns2=\"{NS}\">\
         <ns2:file name=\"a.txt\" size=\"1\" sha256=\"{}\"/><Signature><file name=\"sig-only\"/></Signature></ns2:files>",
        "0".repeat(64)
    );
    let (entries, d) = parse_app_list(&list, "APP-LIST.xml", &Limits::default()).unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].name, "a.txt");
}

#[test]
fn choice_between_requirement_sets() {
    let xml = format!(
        "<application xmlns=\"{NS}\" version=\"1.2\"><name>c</name><version>1</version><release>1</release>\
         <service id=\"s\"><requirements xmlns:db=\"http://apstandard.com/ns/1/db\"><choice>\
         <requirements id=\"my\"><db:db><db:id>main</db:id><db:server-type>mysql</db:server-type></db:db></requirements>\
         <requirements id=\"pg\"><db:db><db:id>main</db:id><db:server-type>postgresql</db:server-type></db:db></requirements>\
         </choice></requirements></service></application>"
    );
    let (m, _) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    let alts = &m.service.requirements.choices[0].alternatives;
    let ids: Vec<_> = alts.iter().map(|a| a.id.clone().unwrap()).collect();
    assert_eq!(ids, ["my", "pg"]);
    assert_eq!(m.service.all_databases().len(), 2);
}

#[test]
fn build_placeholders_are_warnings_not_crashes() {
    for ph in ["__VERSION__", "{VERSION}", "%PRODUCT_VERSION%"] {
        let xml = format!(
            "<application xmlns=\"{NS}\" version=\"1.2\"><name>p</name><version>{ph}</version><release>1</release>\
             <service id=\"s\"><provision><url-mapping><installed-size>%INSTALL_SIZE%</installed-size>\
             <mapping url=\"/\" path=\"htdocs\"/></url-mapping></provision></service></application>"
        );
        let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
        assert_eq!(m.version, ph);
        assert_eq!(
            codes(&d),
            [
                "placeholder-value",
                "placeholder-value",
                "installed-size-not-numeric"
            ],
            "{ph}"
        );
        assert!(d.iter().all(|d| !d.is_error()));
        assert_eq!(
            d[0].location.element_path.as_deref(),
            Some("/application/version")
        );
        let um = m.service.provision.url_mapping.unwrap();
        assert_eq!(um.installed_size.as_deref(), Some("%INSTALL_SIZE%"));
    }
}

#[test]
fn match_rules_are_kept_as_text_and_compare_dotted_versions() {
    let rule = "/application/version > '2.0' or /application/version = '2.0' and /application/release >= '1'";
    let xml = format!(
        "<application xmlns=\"{NS}\" version=\"1.2\"><name>u</name><version>3</version><release>1</release>\
         <upgrade match=\"{}\"/><service id=\"s\"/></application>",
        rule.replace('>', "&gt;")
    );
    let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert!(d.is_empty(), "{d:?}");
    assert_eq!(m.upgrades[0].match_expr, rule);
    // Component by component: 2.10 is after 2.9, which plain string or float comparison gets wrong.
    assert!(version_match::matches(rule, "2.10", "0").unwrap());
    assert!(version_match::matches(rule, "2.0", "1").unwrap());
    assert!(!version_match::matches(rule, "2.0", "0").unwrap());
    assert!(!version_match::matches(rule, "1.9.9", "5").unwrap());
}

#[test]
fn service_ids_with_spaces_and_empty_names_are_kept() {
    let xml = format!(
        "<application xmlns=\"{NS}\" version=\"1.2\"><name/><version>1</version><release>1</release>\
         <presentation><summary xml:lang=\"\">s</summary></presentation>\
         <service id=\"main service\"><service id=\"mail box\"/></service></application>"
    );
    let (m, _) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert_eq!(m.name, "");
    assert_eq!(m.service.id, "main service");
    assert_eq!(m.service.children[0].id, "mail box");
    assert_eq!(m.presentation.summaries[0].lang, None);
}

#[test]
fn unknown_aspects_are_kept_opaque_and_never_fatal() {
    let xml = format!(
        "<application xmlns=\"{NS}\" version=\"1.2\"><name>o</name><version>1</version><release>1</release>\
         <service id=\"s\"><requirements><v:gpu xmlns:v=\"urn:vendor\" cores=\"2\"><v:model>x</v:model></v:gpu></requirements>\
         <provision><v:deploy xmlns:v=\"urn:vendor\">k8s</v:deploy></provision></service></application>"
    );
    let (m, d) = parse_app_meta(&xml, "APP-META.xml").unwrap();
    assert!(d.is_empty(), "{d:?}");
    let gpu = &m.service.requirements.other[0];
    assert_eq!(
        (
            gpu.namespace.as_deref(),
            gpu.name.as_str(),
            gpu.attributes[0].1.as_str()
        ),
        (Some("urn:vendor"), "gpu", "2")
    );
    assert_eq!(gpu.children[0].text.as_deref(), Some("x"));
    assert_eq!(m.service.provision.other[0].text.as_deref(), Some("k8s"));
}

#[test]
fn a_not_well_formed_listing_gets_line_and_column() {
    // The real case: a second XML declaration on line 2.
    let list = format!("<?xml version=\"1.0\"?>\n<?xml version=\"1.0\"?>\n<files xmlns=\"{NS}\"/>");
    let e = parse_app_list(&list, "APP-LIST.xml", &Limits::default()).unwrap_err();
    let d = e.to_diagnostic();
    assert_eq!(
        (d.code, d.location.line, d.location.column),
        ("listing-not-well-formed", Some(2), Some(1)),
        "{d}"
    );
}
