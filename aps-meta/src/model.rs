//! The typed model of an APS 1.0–1.2 `APP-META.xml`.
//!
//! One model for all three layouts: an APS 1.0 file (flat, one implicit service) is read into
//! the same shape as 1.1/1.2 (one root [`Service`] with its [`Provision`]), so that consumers
//! never branch on the version for what they need to run an operation. What the standard
//! leaves free-form (presentation text, unknown aspects) is kept, not interpreted.
//!
//! What a file holds thousands of — settings, their choices and localized texts — is stored as
//! [`CompactString`] (re-exported): values up to 24 bytes live inline, so reading a large file
//! does not cost an allocation per id, name and language tag. They deref to `&str`.

use compact_str::CompactString;
use serde::Serialize;

/// APS format version the package claims (`application/@version`; absent means 1.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub enum ApsVersion {
    #[serde(rename = "1.0")]
    V1_0,
    #[serde(rename = "1.1")]
    V1_1,
    #[serde(rename = "1.2")]
    V1_2,
}

/// The whole metadata descriptor.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppMeta {
    pub aps_version: ApsVersion,
    /// `application/@packaged`, kept as written.
    pub packaged: Option<String>,
    /// `id` (1.2): a URI by the standard, a plain string in some real packages.
    pub id: Option<String>,
    pub name: String,
    pub version: String,
    pub release: String,
    pub homepage: Option<String>,
    pub master_package: Option<MasterPackage>,
    pub vendor: Option<Party>,
    pub packager: Option<Party>,
    pub presentation: Presentation,
    /// `patch` elements (1.1+).
    pub patches: Vec<UpdateRule>,
    /// `upgrade` elements (1.1+).
    pub upgrades: Vec<UpdateRule>,
    /// APS 1.0 `upgradable-from version= release=`.
    pub upgradable_from: Vec<UpgradableFrom>,
    pub content_delivery: Option<OpaqueElement>,
    pub global_settings: Vec<SettingGroup>,
    /// The root service. For APS 1.0 the implicit one, built from the flat layout.
    pub service: Service,
}

/// `master-package` of an add-on.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MasterPackage {
    pub id: Option<String>,
    pub name: Option<String>,
    /// The raw element, since its structure varies.
    pub raw: OpaqueElement,
}

/// `vendor` or `packager`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Party {
    pub name: Option<String>,
    pub homepage: Option<String>,
    pub icon: Option<String>,
    /// `packager/uri` (1.1+) or `packager-uri` (1.0).
    pub uri: Option<String>,
}

/// A text with its optional `xml:lang`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalizedText {
    pub lang: Option<CompactString>,
    pub text: CompactString,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Presentation {
    pub names: Vec<LocalizedText>,
    pub summaries: Vec<LocalizedText>,
    pub descriptions: Vec<LocalizedText>,
    pub icon: Option<String>,
    pub screenshots: Vec<Screenshot>,
    pub changelog: Vec<ChangelogVersion>,
    pub categories: Vec<String>,
    pub languages: Vec<String>,
    pub infolinks: Vec<InfoLink>,
    pub entry_points: Vec<EntryPoint>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Screenshot {
    pub path: String,
    pub description: Vec<LocalizedText>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ChangelogVersion {
    pub version: String,
    pub release: Option<String>,
    pub entries: Vec<LocalizedText>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct InfoLink {
    pub class: Option<String>,
    pub href: String,
    pub text: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryPoint {
    pub dst: Option<String>,
    pub method: Option<String>,
    pub class: Option<String>,
    pub label: Vec<LocalizedText>,
    pub variables: Vec<EntryVariable>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EntryVariable {
    pub name: String,
    pub value: Option<String>,
    pub value_of_setting: Option<String>,
    pub class: Option<String>,
}

/// A `patch` or `upgrade` rule: the `match` expression is kept as text and can be evaluated
/// against an installed package's version and release with [`crate::version_match`].
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpdateRule {
    pub match_expr: String,
    pub recommended: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct UpgradableFrom {
    pub version: String,
    pub release: Option<String>,
}

/// A `service` (the root one, or a nested child).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Service {
    /// May contain spaces in real packages; kept as written.
    pub id: String,
    pub class: Option<String>,
    pub license: Option<License>,
    pub presentation: Presentation,
    pub settings: Vec<SettingGroup>,
    pub resources: Vec<Resource>,
    pub requirements: Requirements,
    pub provision: Provision,
    pub children: Vec<Service>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct License {
    pub must_accept: bool,
    pub free: bool,
    pub texts: Vec<LicenseText>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenseText {
    pub name: Option<String>,
    pub file: Option<String>,
    pub url: Option<String>,
}

/// `resources/resource` counters reported by the resource script.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Resource {
    pub id: String,
    pub class: Option<String>,
    pub limiting_setting: Option<String>,
    pub names: Vec<LocalizedText>,
}

/// A settings `group` (the top level of `settings` is one unnamed group).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct SettingGroup {
    pub class: Option<CompactString>,
    pub names: Vec<LocalizedText>,
    pub settings: Vec<Setting>,
    pub groups: Vec<SettingGroup>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Setting {
    pub id: CompactString,
    pub kind: SettingType,
    pub default_value: Option<CompactString>,
    pub class: Option<CompactString>,
    pub optional: bool,
    pub installation_only: bool,
    pub protected: bool,
    pub hidden: bool,
    pub track_old_value: bool,
    /// `uniq="owner|global"`.
    pub uniq: Option<CompactString>,
    pub value_of_setting: Option<CompactString>,
    pub min_length: Option<u64>,
    pub max_length: Option<u64>,
    pub regex: Option<CompactString>,
    pub min: Option<CompactString>,
    pub max: Option<CompactString>,
    pub charset: Option<CompactString>,
    /// `enum` choices, by `choice/@id`.
    pub choices: Vec<Choice>,
    pub names: Vec<LocalizedText>,
    pub descriptions: Vec<LocalizedText>,
    pub error_messages: Vec<LocalizedText>,
}

impl Setting {
    /// `type="password"`, a `list` of them, or `class="password"`: a value never shown or
    /// stored in clear.
    pub fn is_secret(&self) -> bool {
        match &self.kind {
            SettingType::Password => true,
            SettingType::List { element_type } if **element_type == SettingType::Password => true,
            _ => self.class.as_deref() == Some("password"),
        }
    }

    /// A setting with only an id and a type, everything else absent: what APP-META.xml gives
    /// for `<setting id=".." type=".."/>`. For building models in code (panels, tests).
    pub fn new(id: impl Into<CompactString>, kind: SettingType) -> Self {
        Setting {
            id: id.into(),
            kind,
            default_value: None,
            class: None,
            optional: false,
            installation_only: false,
            protected: false,
            hidden: false,
            track_old_value: false,
            uniq: None,
            value_of_setting: None,
            min_length: None,
            max_length: None,
            regex: None,
            min: None,
            max: None,
            charset: None,
            choices: vec![],
            names: vec![],
            descriptions: vec![],
            error_messages: vec![],
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SettingType {
    String,
    Password,
    Email,
    Enum,
    Boolean,
    Integer,
    Float,
    DomainName,
    HostName,
    StaticText,
    Hidden,
    /// `list` with its `element-type` (`string` when absent).
    List {
        element_type: Box<SettingType>,
    },
    /// A type this parser does not know, kept by name (a warning, not an error).
    Other(CompactString),
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub id: CompactString,
    pub names: Vec<LocalizedText>,
}

/// `requirements` of a service: typed aspects, alternatives, and whatever else as opaque
/// namespaced elements (kept, never dropped, never fatal).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Requirements {
    pub php: Option<PhpRequirement>,
    pub databases: Vec<DbRequirement>,
    pub mailboxes: Vec<MailRequirement>,
    pub apache: Option<ApacheRequirement>,
    pub perl: Vec<OpaqueElement>,
    pub dns_records: Vec<OpaqueElement>,
    pub licenses: Vec<LicenseRequirement>,
    /// `choice` between alternative requirement sets (each a `requirements id=…`).
    pub choices: Vec<RequirementChoice>,
    /// Elements of other or unknown aspects (hardware, environment, cgi, aspnet, vendor ones).
    pub other: Vec<OpaqueElement>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequirementChoice {
    pub alternatives: Vec<RequirementAlternative>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RequirementAlternative {
    pub id: Option<String>,
    pub requirements: Requirements,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct PhpRequirement {
    pub version_min: Option<String>,
    pub version_max_not_including: Option<String>,
    pub extensions: Vec<String>,
    pub functions: Vec<String>,
    /// Boolean and size directives (`short-open-tag`, `memory-limit` …) as name → text.
    pub directives: Vec<(String, String)>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct DbRequirement {
    /// `db:id`: the infix of `DB_<id>_*` variables, case kept.
    pub id: String,
    pub default_name: Option<String>,
    pub can_use_tables_prefix: bool,
    /// `db:server-type` (`mysql`, `postgresql`, …).
    pub server_type: Option<String>,
    pub server_min_version: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MailRequirement {
    pub id: String,
    pub raw: OpaqueElement,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ApacheRequirement {
    pub required_modules: Vec<String>,
    pub htaccess: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LicenseRequirement {
    pub id: String,
    pub kind: Option<String>,
    pub raw: OpaqueElement,
}

/// `provision` of a service.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Provision {
    pub url_mapping: Option<UrlMapping>,
    pub configuration_script: Option<Script>,
    pub verification_script: Option<Script>,
    pub resource_script: Option<Script>,
    pub backup_script: Option<Script>,
    /// `l:license-script` and any other provision element of an aspect.
    pub other: Vec<OpaqueElement>,
}

/// A provision script: its file name in `scripts/` and how to run it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Script {
    pub name: String,
    /// `script-language` (or the 1.0/1.1 `configuration-script-language`).
    pub language: String,
    /// `backup-script/sufficient`: the script alone saves and restores everything.
    pub sufficient: bool,
    /// stdout is the standard's output XML.
    pub structured_output: bool,
    /// `configuration-script/status-control`.
    pub status_control: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct UrlMapping {
    pub default_prefix: Option<String>,
    /// Advisory; real packages hold template text here, so it is kept raw.
    pub installed_size: Option<String>,
    pub site_root: bool,
    pub mappings: Vec<Mapping>,
}

/// One `mapping` element with its nested children.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Mapping {
    /// As written: `/` for the root, relative (`cache`, `blogs/media`, `config.php`) below it.
    pub url: String,
    pub path: Option<String>,
    pub is_virtual: bool,
    /// From `php:permissions` / `aspnet:permissions`.
    pub writable: Option<bool>,
    pub readable: Option<bool>,
    /// Handler and other aspect elements inside the mapping.
    pub handlers: Vec<OpaqueElement>,
    pub children: Vec<Mapping>,
}

/// An element kept without interpretation: namespace URI, local name, attributes, text and
/// children, so nothing of an unknown aspect is lost.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpaqueElement {
    pub namespace: Option<String>,
    pub name: String,
    pub attributes: Vec<(String, String)>,
    pub text: Option<String>,
    pub children: Vec<OpaqueElement>,
}

/// A url-mapping with its full URL path inside the instance (`/`, `/cache`, `/blogs/media`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FlatMapping {
    pub full_url: String,
    pub package_path: Option<String>,
    pub is_virtual: bool,
}

impl Mapping {
    fn flatten_into(&self, parent: Option<&str>, out: &mut Vec<FlatMapping>) {
        let full_url = join_url(parent, &self.url);
        out.push(FlatMapping {
            full_url: full_url.clone(),
            package_path: self.path.clone(),
            is_virtual: self.is_virtual,
        });
        for child in &self.children {
            child.flatten_into(Some(&full_url), out);
        }
    }
}

/// `/` + `cache` → `/cache`; `/cache` + `sub` → `/cache/sub`; extra slashes are folded.
fn join_url(parent: Option<&str>, url: &str) -> String {
    let mut joined = String::from("/");
    for part in parent
        .into_iter()
        .chain(std::iter::once(url))
        .flat_map(|p| p.split('/'))
        .filter(|s| !s.is_empty())
    {
        if joined.len() > 1 {
            joined.push('/');
        }
        joined.push_str(part);
    }
    joined
}

impl UrlMapping {
    /// Every mapping at every level, parents before children, with its full URL path.
    pub fn flattened(&self) -> Vec<FlatMapping> {
        let mut out = Vec::new();
        for m in &self.mappings {
            m.flatten_into(None, &mut out);
        }
        out
    }
}

impl SettingGroup {
    /// Every setting of this group and its nested groups, in document order.
    pub fn all_settings(&self) -> Vec<&Setting> {
        let mut out: Vec<&Setting> = self.settings.iter().collect();
        for g in &self.groups {
            out.extend(g.all_settings());
        }
        out
    }
}

impl Service {
    /// Every setting of this service (all groups, flattened).
    pub fn all_settings(&self) -> Vec<&Setting> {
        self.settings
            .iter()
            .flat_map(|g| g.all_settings())
            .collect()
    }

    /// Database requirements, including those inside `choice` alternatives.
    pub fn all_databases(&self) -> Vec<&DbRequirement> {
        fn walk<'a>(r: &'a Requirements, out: &mut Vec<&'a DbRequirement>) {
            out.extend(r.databases.iter());
            for c in &r.choices {
                for alt in &c.alternatives {
                    walk(&alt.requirements, out);
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.requirements, &mut out);
        out
    }
}

impl AppMeta {
    /// Global settings, flattened.
    pub fn all_global_settings(&self) -> Vec<&Setting> {
        self.global_settings
            .iter()
            .flat_map(|g| g.all_settings())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join_url_builds_full_paths() {
        assert_eq!(join_url(None, "/"), "/");
        assert_eq!(join_url(Some("/"), "cache"), "/cache");
        assert_eq!(join_url(Some("/cache"), "sub"), "/cache/sub");
        assert_eq!(join_url(Some("/"), "blogs/media"), "/blogs/media");
        assert_eq!(join_url(Some("/a/"), "/b/"), "/a/b");
    }
}
