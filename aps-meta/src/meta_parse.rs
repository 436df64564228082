//! `APP-META.xml` → [`AppMeta`]. One pass over a roxmltree document; elements matched by
//! namespace URI and local name, never by prefix; order of children never required.
//!
//! Fatal problems (not XML, not APS 1.x, a required element missing) are a [`MetaError`];
//! everything the model can still be built around is a [`Diagnostic`] returned beside it.

use crate::diagnostic::{Diagnostic, Location, codes};
use crate::limits::Limits;
use crate::model::*;
use crate::version_match;
use crate::xml;
use compact_str::CompactString;
use roxmltree::Node;

/// The 1.0 layout has no service element; its implicit service gets this id.
pub const IMPLICIT_SERVICE_ID: &str = "application";

/// Why an `APP-META.xml` could not be read into the model at all.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MetaError {
    #[error(
        "{file}: {size} bytes, more than the {limit}-byte limit for APP-META.xml (Limits::max_meta_bytes)"
    )]
    TooLarge { file: String, size: u64, limit: u64 },
    #[error("{file}:{line}:{column}: not valid UTF-8; expected an UTF-8 encoded APP-META.xml")]
    NotUtf8 {
        file: String,
        line: u32,
        column: u32,
    },
    #[error(
        "{file}:{line}:{column}: a document type declaration (<!DOCTYPE …>) is refused: entities are never expanded; expected plain XML without DTD"
    )]
    DtdRefused {
        file: String,
        line: u32,
        column: u32,
    },
    #[error("{file}:{line}:{column}: not well-formed XML: {message}")]
    NotWellFormed {
        file: String,
        line: u32,
        column: u32,
        message: String,
    },
    #[error("{file}: more than {limit} XML nodes (Limits::max_xml_nodes)")]
    TooManyNodes { file: String, limit: u32 },
    #[error(
        "{file}:{line}:{column}: elements nested more than {limit} deep (Limits::max_xml_depth); expected the shallow structure of APP-META.xml"
    )]
    TooDeep {
        file: String,
        line: u32,
        column: u32,
        limit: u32,
    },
    #[error(
        "{file}:{line}:{column}: root element is <{found}>; expected <application xmlns=\"http://apstandard.com/ns/1\">"
    )]
    NotAps {
        file: String,
        line: u32,
        column: u32,
        found: String,
    },
    #[error(
        "{file}:{line}:{column}: this is an APS 2 package ({found}); only APS 1.0, 1.1 and 1.2 are supported"
    )]
    Aps2 {
        file: String,
        line: u32,
        column: u32,
        found: String,
    },
    #[error("{file}:{line}:{column}: {element_path}: missing {expected}")]
    Missing {
        file: String,
        line: u32,
        column: u32,
        element_path: String,
        expected: String,
    },
}

xml::read_errors_as!(MetaError);

impl MetaError {
    pub fn code(&self) -> &'static str {
        match self {
            MetaError::TooLarge { .. } | MetaError::TooManyNodes { .. } => codes::XML_TOO_LARGE,
            MetaError::TooDeep { .. } => codes::XML_TOO_DEEP,
            MetaError::NotUtf8 { .. } => codes::XML_NOT_UTF8,
            MetaError::DtdRefused { .. } => codes::XML_DTD_REFUSED,
            MetaError::NotWellFormed { .. } => codes::XML_NOT_WELL_FORMED,
            MetaError::NotAps { .. } => codes::NOT_APS_METADATA,
            MetaError::Aps2 { .. } => codes::APS2_UNSUPPORTED,
            MetaError::Missing { expected, .. } if expected.starts_with("attribute") => {
                codes::MISSING_ATTRIBUTE
            }
            MetaError::Missing { .. } => codes::MISSING_ELEMENT,
        }
    }

    pub fn location(&self) -> Location {
        let (file, line, column, path) = match self {
            MetaError::TooLarge { file, .. } | MetaError::TooManyNodes { file, .. } => {
                (file, None, None, None)
            }
            MetaError::NotUtf8 { file, line, column }
            | MetaError::DtdRefused { file, line, column }
            | MetaError::TooDeep {
                file, line, column, ..
            }
            | MetaError::NotWellFormed {
                file, line, column, ..
            }
            | MetaError::NotAps {
                file, line, column, ..
            }
            | MetaError::Aps2 {
                file, line, column, ..
            } => (file, Some(*line), Some(*column), None),
            MetaError::Missing {
                file,
                line,
                column,
                element_path,
                ..
            } => (file, Some(*line), Some(*column), Some(element_path.clone())),
        };
        Location {
            file: file.clone(),
            line,
            column,
            element_path: path,
        }
    }

    /// The same finding as a diagnostic (severity error), for `package check`.
    pub fn to_diagnostic(&self) -> Diagnostic {
        let mut message = self.to_string();
        // The location is carried separately; keep the message free of it.
        let loc = self.location();
        let prefix = match (loc.line, loc.column) {
            (Some(l), Some(c)) => format!("{}:{l}:{c}: ", loc.file),
            _ => format!("{}: ", loc.file),
        };
        if let Some(rest) = message.strip_prefix(&prefix) {
            message = rest.to_string();
        }
        if let Some(p) = &loc.element_path
            && let Some(rest) = message.strip_prefix(&format!("{p}: "))
        {
            message = rest.to_string();
        }
        Diagnostic::error(self.code(), loc, message)
    }
}

/// Parses an `APP-META.xml` text with default [`Limits`]. `file_label` names the file in
/// messages (e.g. `sh-sample/APP-META.xml`).
pub fn parse_app_meta(
    xml: &str,
    file_label: &str,
) -> Result<(AppMeta, Vec<Diagnostic>), MetaError> {
    parse_app_meta_with_limits(xml, file_label, &Limits::default())
}

/// [`parse_app_meta`] with explicit limits (size and XML node count).
pub fn parse_app_meta_with_limits(
    xml: &str,
    file_label: &str,
    limits: &Limits,
) -> Result<(AppMeta, Vec<Diagnostic>), MetaError> {
    if xml.len() as u64 > limits.max_meta_bytes {
        return Err(MetaError::TooLarge {
            file: file_label.to_string(),
            size: xml.len() as u64,
            limit: limits.max_meta_bytes,
        });
    }
    let xml = xml.strip_prefix('\u{feff}').unwrap_or(xml);
    let doc = xml::parse(xml, limits).map_err(|e| MetaError::from_read(file_label, e))?;
    let mut p = Parser {
        file: file_label,
        ns: Some(xml::APS_NS),
        version: ApsVersion::V1_2,
        diags: Vec::new(),
    };
    let meta = p.application(doc.root_element())?;
    Ok((meta, p.diags))
}

/// Parses bytes read from a file (UTF-8, BOM allowed), checking the size bound first.
pub fn parse_app_meta_bytes(
    bytes: &[u8],
    file_label: &str,
    limits: &Limits,
) -> Result<(AppMeta, Vec<Diagnostic>), MetaError> {
    if bytes.len() as u64 > limits.max_meta_bytes {
        return Err(MetaError::TooLarge {
            file: file_label.to_string(),
            size: bytes.len() as u64,
            limit: limits.max_meta_bytes,
        });
    }
    let text = xml::decode(bytes).map_err(|e| MetaError::from_read(file_label, e))?;
    parse_app_meta_with_limits(text, file_label, limits)
}

struct Parser<'f> {
    file: &'f str,
    /// The metadata namespace as the root declares it (`None` only for a root without any).
    ns: Option<&'static str>,
    version: ApsVersion,
    diags: Vec<Diagnostic>,
}

type R<T> = Result<T, MetaError>;

fn is_ns(n: &Node, ns: &str, name: &str) -> bool {
    n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == Some(ns)
}

fn bool_text(s: &str) -> Option<bool> {
    match s.trim() {
        "true" | "1" | "yes" => Some(true),
        "false" | "0" | "no" => Some(false),
        _ => None,
    }
}

impl<'f> Parser<'f> {
    fn is(&self, n: &Node, name: &str) -> bool {
        n.is_element() && n.tag_name().name() == name && n.tag_name().namespace() == self.ns
    }

    fn child<'a, 'i>(&self, n: Node<'a, 'i>, name: &str) -> Option<Node<'a, 'i>> {
        n.children().find(|c| self.is(c, name))
    }

    fn kids<'a, 'i>(&self, n: Node<'a, 'i>, name: &str) -> Vec<Node<'a, 'i>> {
        n.children().filter(|c| self.is(c, name)).collect()
    }

    fn child_text<T: for<'a> From<&'a str> + From<String> + AsRef<str>>(
        &mut self,
        n: Node,
        name: &str,
    ) -> Option<T> {
        self.child(n, name).map(|c| self.value_text(c))
    }

    /// Text of a value element, warning about build placeholders in it.
    fn value_text<T: for<'a> From<&'a str> + From<String> + AsRef<str>>(&mut self, n: Node) -> T {
        let t: T = xml::text_as(n);
        self.check_placeholder(n, t.as_ref(), None);
        t
    }

    fn attr_value<T: for<'a> From<&'a str> + AsRef<str>>(
        &mut self,
        n: Node,
        attr: &str,
    ) -> Option<T> {
        let v = T::from(n.attribute(attr)?);
        self.check_placeholder(n, v.as_ref(), Some(attr));
        Some(v)
    }

    fn check_placeholder(&mut self, n: Node, value: &str, attr: Option<&str>) {
        if let Some(ph) = xml::find_placeholder(value) {
            let what = match attr {
                Some(a) => format!("attribute `{a}`"),
                None => "the value".to_string(),
            };
            self.diags.push(Diagnostic::warning(
                codes::PLACEHOLDER_VALUE,
                xml::location(self.file, n),
                format!(
                    "{what} holds the build placeholder `{ph}` ({value:?}); expected the real value, filled in when the package is built"
                ),
            ));
        }
    }

    fn missing(&self, n: Node, expected: impl Into<String>) -> MetaError {
        let (line, column) = xml::pos_of(n);
        MetaError::Missing {
            file: self.file.to_string(),
            line,
            column,
            element_path: xml::element_path(n),
            expected: expected.into(),
        }
    }

    fn warn(&mut self, code: &'static str, n: Node, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::warning(code, xml::location(self.file, n), msg));
    }

    fn error(&mut self, code: &'static str, n: Node, msg: impl Into<String>) {
        self.diags
            .push(Diagnostic::error(code, xml::location(self.file, n), msg));
    }

    fn flag_attr(&mut self, n: Node, attr: &str) -> bool {
        match n.attribute(attr) {
            None => false,
            Some(v) => {
                match bool_text(v) {
                    Some(b) => b,
                    None => {
                        self.warn(
                        codes::INVALID_VALUE,
                        n,
                        format!("attribute `{attr}` is {v:?}; expected true or false (read as false)"),
                    );
                        false
                    }
                }
            }
        }
    }

    fn u64_attr(&mut self, n: Node, attr: &str) -> Option<u64> {
        let v = n.attribute(attr)?;
        match v.trim().parse::<u64>() {
            Ok(x) => Some(x),
            Err(_) => {
                self.error(
                    codes::INVALID_VALUE,
                    n,
                    format!(
                        "attribute `{attr}` is {v:?}; expected a non-negative integer (ignored)"
                    ),
                );
                None
            }
        }
    }

    fn localized(&mut self, n: Node, name: &str) -> Vec<LocalizedText> {
        n.children()
            .filter(|c| self.is(c, name))
            .map(localized_text)
            .collect()
    }

    fn application(&mut self, root: Node) -> R<AppMeta> {
        let tag = root.tag_name();
        let (line, column) = xml::pos_of(root);
        let version_attr = root.attribute("version");
        if tag.namespace() == Some(xml::APS2_NS)
            || (tag.namespace() == Some(xml::APS_NS)
                && version_attr.is_some_and(|v| v.trim().starts_with('2')))
        {
            return Err(MetaError::Aps2 {
                file: self.file.to_string(),
                line,
                column,
                found: format!(
                    "namespace {}, version {}",
                    tag.namespace().unwrap_or("none"),
                    version_attr.unwrap_or("absent")
                ),
            });
        }
        match (tag.name(), tag.namespace()) {
            ("application", Some(xml::APS_NS)) => {}
            ("application", None) => {
                self.ns = None;
                self.warn(
                    codes::MISSING_NAMESPACE,
                    root,
                    "root <application> has no namespace; expected xmlns=\"http://apstandard.com/ns/1\" (read as APS 1)",
                );
            }
            (name, ns) => {
                return Err(MetaError::NotAps {
                    file: self.file.to_string(),
                    line,
                    column,
                    found: match ns {
                        Some(ns) => format!("{name} xmlns=\"{ns}\""),
                        None => name.to_string(),
                    },
                });
            }
        }
        self.version = match version_attr.map(str::trim) {
            None => ApsVersion::V1_0,
            Some("1.0") | Some("1") => ApsVersion::V1_0,
            Some("1.1") => ApsVersion::V1_1,
            Some("1.2") => ApsVersion::V1_2,
            Some(other) => {
                self.warn(
                    codes::UNKNOWN_APS_VERSION,
                    root,
                    format!("version=\"{other}\" is not an APS version this parser knows; expected 1.0, 1.1 or 1.2 (read as 1.2)"),
                );
                ApsVersion::V1_2
            }
        };

        let name = self
            .child_text(root, "name")
            .ok_or_else(|| self.missing(root, "element <name> (the application name)"))?;
        let version = self
            .child_text(root, "version")
            .ok_or_else(|| self.missing(root, "element <version> (the application version)"))?;
        let release = self
            .child_text(root, "release")
            .ok_or_else(|| self.missing(root, "element <release> (the package release)"))?;
        let id = self.child_text(root, "id");
        let homepage = self.child_text(root, "homepage");
        let packaged = root.attribute("packaged").map(str::to_string);

        let master_package = self.child(root, "master-package").map(|m| MasterPackage {
            id: m
                .attribute("id")
                .map(str::to_string)
                .or_else(|| self.child(m, "id").map(xml::text)),
            name: self.child(m, "name").map(xml::text),
            raw: opaque(m),
        });
        let vendor = self.child(root, "vendor").map(|v| self.party(v));
        let mut packager = self.child(root, "packager").map(|v| self.party(v));

        let mut patches = Vec::new();
        let mut upgrades = Vec::new();
        for c in root.children().filter(|c| c.is_element()) {
            if self.is(&c, "patch") {
                if let Some(r) = self.update_rule(c) {
                    patches.push(r);
                }
            } else if self.is(&c, "upgrade")
                && let Some(r) = self.update_rule(c)
            {
                upgrades.push(r);
            }
        }
        let upgradable_from = self
            .kids(root, "upgradable-from")
            .into_iter()
            .filter_map(|u| {
                Some(UpgradableFrom {
                    version: self.attr_value(u, "version")?,
                    release: self.attr_value(u, "release"),
                })
            })
            .collect();
        let content_delivery = root
            .children()
            .find(|c| self.is(c, "content") || self.is(c, "content-delivery"))
            .map(opaque);
        let global_settings = match self.child(root, "global-settings") {
            Some(g) => vec![self.setting_group(g)?],
            None => Vec::new(),
        };

        let (presentation, service) = match self.child(root, "service") {
            Some(s) => {
                let pres = match self.child(root, "presentation") {
                    Some(p) => self.presentation(p),
                    None => Presentation::default(),
                };
                (pres, self.service(s)?)
            }
            None if self.version == ApsVersion::V1_0 => self.flat_service(root, &mut packager)?,
            None => {
                return Err(self.missing(
                    root,
                    "element <service> (APS 1.1 and 1.2 declare one root service)",
                ));
            }
        };

        Ok(AppMeta {
            aps_version: self.version,
            packaged,
            id,
            name,
            version,
            release,
            homepage,
            master_package,
            vendor,
            packager,
            presentation,
            patches,
            upgrades,
            upgradable_from,
            content_delivery,
            global_settings,
            service,
        })
    }

    /// APS 1.0: everything is a child of `application`; build the one implicit service.
    fn flat_service(
        &mut self,
        root: Node,
        packager: &mut Option<Party>,
    ) -> R<(Presentation, Service)> {
        if let Some(uri) = self.child_text(root, "packager-uri") {
            packager.get_or_insert_with(Party::default).uri = Some(uri);
        }
        if let Some(h) = self.child_text(root, "package-homepage") {
            let p = packager.get_or_insert_with(Party::default);
            if p.homepage.is_none() {
                p.homepage = Some(h);
            }
        }
        let mut pres = self.presentation(root);
        let service_pres = Presentation {
            entry_points: std::mem::take(&mut pres.entry_points),
            infolinks: std::mem::take(&mut pres.infolinks),
            ..Presentation::default()
        };
        let settings = match self.child(root, "settings") {
            Some(s) => vec![self.setting_group(s)?],
            None => Vec::new(),
        };
        let requirements = match self.child(root, "requirements") {
            Some(r) => self.requirements(r),
            None => Requirements::default(),
        };
        let mut mappings = Vec::new();
        for m in self.kids(root, "mapping") {
            mappings.push(self.mapping(m)?);
        }
        let default_prefix = self.child_text(root, "default-prefix");
        let installed_size = self.installed_size(root);
        let url_mapping =
            if mappings.is_empty() && default_prefix.is_none() && installed_size.is_none() {
                None
            } else {
                Some(UrlMapping {
                    default_prefix,
                    installed_size,
                    site_root: false,
                    mappings,
                })
            };
        // 1.0: the configuration script is always scripts/configure.
        let configuration_script =
            self.child_text(root, "configuration-script-language")
                .map(|language| Script {
                    name: "configure".to_string(),
                    language,
                    sufficient: false,
                    structured_output: false,
                    status_control: false,
                });
        let license = self.child(root, "license").map(|l| self.license(l));
        let service = Service {
            id: IMPLICIT_SERVICE_ID.to_string(),
            class: None,
            license,
            presentation: service_pres,
            settings,
            resources: Vec::new(),
            requirements,
            provision: Provision {
                url_mapping,
                configuration_script,
                ..Provision::default()
            },
            children: Vec::new(),
        };
        Ok((pres, service))
    }

    fn installed_size(&mut self, n: Node) -> Option<String> {
        let c = self.child(n, "installed-size")?;
        let t: String = self.value_text(c);
        if t.parse::<u64>().is_err() {
            self.warn(
                codes::INSTALLED_SIZE_NOT_NUMERIC,
                c,
                format!("installed-size is {t:?}; expected a number of bytes (kept as text, advisory only)"),
            );
        }
        Some(t)
    }

    fn party(&mut self, n: Node) -> Party {
        Party {
            name: self.child_text(n, "name"),
            homepage: self.child_text(n, "homepage"),
            icon: self
                .child(n, "icon")
                .and_then(|i| i.attribute("path").map(str::to_string)),
            uri: self.child_text(n, "uri"),
        }
    }

    fn update_rule(&mut self, n: Node) -> Option<UpdateRule> {
        let Some(m) = n.attribute("match") else {
            self.error(
                codes::MISSING_ATTRIBUTE,
                n,
                format!("<{}> without attribute `match`; expected an expression such as /application/version = '1.0' (rule ignored)", n.tag_name().name()),
            );
            return None;
        };
        if let Err(e) = version_match::parse(m) {
            self.warn(
                codes::MATCH_UNPARSABLE,
                n,
                format!("match rule {m:?} cannot be evaluated: {e}"),
            );
        }
        let recommended =
            self.flag_attr(n, "recommended") || self.child(n, "recommended").is_some();
        Some(UpdateRule {
            match_expr: m.to_string(),
            recommended,
        })
    }

    fn presentation(&mut self, n: Node) -> Presentation {
        let mut p = Presentation {
            names: self.localized(n, "name"),
            summaries: self.localized(n, "summary"),
            descriptions: self.localized(n, "description"),
            icon: self
                .child(n, "icon")
                .and_then(|i| i.attribute("path").map(str::to_string)),
            ..Presentation::default()
        };
        for c in n.children().filter(|c| c.is_element()) {
            if self.is(&c, "screenshot") {
                p.screenshots.push(Screenshot {
                    path: c.attribute("path").unwrap_or_default().to_string(),
                    description: self.localized(c, "description"),
                });
            } else if self.is(&c, "changelog") {
                for v in self.kids(c, "version") {
                    p.changelog.push(ChangelogVersion {
                        version: v.attribute("version").unwrap_or_default().to_string(),
                        release: v.attribute("release").map(str::to_string),
                        entries: self.localized(v, "entry"),
                    });
                }
            } else if self.is(&c, "categories") {
                p.categories
                    .extend(self.kids(c, "category").into_iter().map(xml::text));
            } else if self.is(&c, "languages") {
                p.languages
                    .extend(self.kids(c, "language").into_iter().map(xml::text));
            } else if self.is(&c, "infolinks") {
                for l in self.kids(c, "link").into_iter() {
                    p.infolinks.push(InfoLink {
                        class: l.attribute("class").map(str::to_string),
                        href: l.attribute("href").unwrap_or_default().to_string(),
                        text: Some(xml::text(l)).filter(|t| !t.is_empty()),
                    });
                }
            } else if self.is(&c, "entry-points") {
                for e in self.kids(c, "entry") {
                    p.entry_points.push(self.entry_point(e));
                }
            }
        }
        p
    }

    fn entry_point(&mut self, e: Node) -> EntryPoint {
        EntryPoint {
            dst: e
                .attribute("dst")
                .map(str::to_string)
                .or_else(|| self.child(e, "path").map(xml::text)),
            method: e.attribute("method").map(str::to_string),
            class: e.attribute("class").map(str::to_string),
            label: self.localized(e, "label"),
            variables: self
                .kids(e, "variable")
                .into_iter()
                .map(|v| EntryVariable {
                    name: v.attribute("name").unwrap_or_default().to_string(),
                    value: v
                        .attribute("value")
                        .map(str::to_string)
                        .or_else(|| Some(xml::text(v)).filter(|t| !t.is_empty())),
                    value_of_setting: v.attribute("value-of-setting").map(str::to_string),
                    class: v.attribute("class").map(str::to_string),
                })
                .collect(),
        }
    }

    fn service(&mut self, n: Node) -> R<Service> {
        let id = n
            .attribute("id")
            .ok_or_else(|| self.missing(n, "attribute `id` on <service>"))?
            .to_string();
        let license = self.child(n, "license").map(|l| self.license(l));
        let presentation = match self.child(n, "presentation") {
            Some(p) => self.presentation(p),
            None => Presentation::default(),
        };
        let settings = match self.child(n, "settings") {
            Some(s) => vec![self.setting_group(s)?],
            None => Vec::new(),
        };
        let resources = match self.child(n, "resources") {
            Some(r) => self
                .kids(r, "resource")
                .into_iter()
                .map(|res| Resource {
                    id: res.attribute("id").unwrap_or_default().to_string(),
                    class: res.attribute("class").map(str::to_string),
                    limiting_setting: res.attribute("limiting-setting").map(str::to_string),
                    names: self.localized(res, "name"),
                })
                .collect(),
            None => Vec::new(),
        };
        let requirements = match self.child(n, "requirements") {
            Some(r) => self.requirements(r),
            None => Requirements::default(),
        };
        let provision = match self.child(n, "provision") {
            Some(p) => self.provision(p)?,
            None => Provision::default(),
        };
        let mut children = Vec::new();
        for c in self.kids(n, "service") {
            children.push(self.service(c)?);
        }
        Ok(Service {
            id,
            class: n.attribute("class").map(str::to_string),
            license,
            presentation,
            settings,
            resources,
            requirements,
            provision,
            children,
        })
    }

    fn license(&mut self, n: Node) -> License {
        License {
            must_accept: self.flag_attr(n, "must-accept"),
            free: self.child(n, "free").is_some(),
            texts: self
                .kids(n, "text")
                .into_iter()
                .map(|t| LicenseText {
                    name: self.child(t, "name").map(xml::text),
                    file: self.child(t, "file").map(xml::text),
                    url: self.child(t, "url").map(xml::text),
                })
                .collect(),
        }
    }

    fn setting_group(&mut self, n: Node) -> R<SettingGroup> {
        let mut g = SettingGroup {
            class: n.attribute("class").map(CompactString::from),
            names: self.localized(n, "name"),
            ..SettingGroup::default()
        };
        for c in n.children().filter(|c| c.is_element()) {
            if self.is(&c, "setting") {
                g.settings.push(self.setting(c)?);
            } else if self.is(&c, "group") {
                g.groups.push(self.setting_group(c)?);
            }
        }
        Ok(g)
    }

    fn setting_type(&mut self, n: Node, name: &str) -> SettingType {
        match name {
            "string" => SettingType::String,
            "password" => SettingType::Password,
            "email" => SettingType::Email,
            "enum" => SettingType::Enum,
            "boolean" => SettingType::Boolean,
            "integer" => SettingType::Integer,
            "float" => SettingType::Float,
            "domain-name" => SettingType::DomainName,
            "host-name" => SettingType::HostName,
            "static-text" => SettingType::StaticText,
            "hidden" => SettingType::Hidden,
            "list" => {
                let et = n.attribute("element-type").unwrap_or("string");
                let inner = if et == "list" {
                    SettingType::Other("list".into())
                } else {
                    self.setting_type(n, et)
                };
                SettingType::List {
                    element_type: Box::new(inner),
                }
            }
            other => {
                self.warn(
                    codes::UNKNOWN_SETTING_TYPE,
                    n,
                    format!("setting type {other:?} is not one this controller knows; expected string, password, email, enum, boolean, integer, float, domain-name, host-name, list, static-text or hidden (value accepted as a string)"),
                );
                SettingType::Other(CompactString::from(other))
            }
        }
    }

    fn setting(&mut self, n: Node) -> R<Setting> {
        let id = n
            .attribute("id")
            .ok_or_else(|| self.missing(n, "attribute `id` on <setting>"))?
            .to_string();
        let kind = self.setting_type(n, n.attribute("type").unwrap_or("string"));
        // One pass over the children (settings are most of a large file).
        let (mut choices, mut names, mut descriptions, mut error_messages) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        for c in n.children() {
            if !c.is_element() || c.tag_name().namespace() != self.ns {
                continue;
            }
            match c.tag_name().name() {
                "name" => names.push(localized_text(c)),
                "description" => descriptions.push(localized_text(c)),
                "error-message" => error_messages.push(localized_text(c)),
                "choice" => {
                    let cid = c
                        .attribute("id")
                        .ok_or_else(|| self.missing(c, "attribute `id` on <choice>"))?;
                    choices.push(Choice {
                        id: CompactString::from(cid),
                        names: self.localized(c, "name"),
                    });
                }
                _ => {}
            }
        }
        Ok(Setting {
            kind,
            default_value: self.attr_value(n, "default-value"),
            class: n.attribute("class").map(CompactString::from),
            optional: self.flag_attr(n, "optional"),
            installation_only: self.flag_attr(n, "installation-only"),
            protected: self.flag_attr(n, "protected"),
            hidden: n.attribute("visibility") == Some("hidden"),
            track_old_value: self.flag_attr(n, "track-old-value"),
            uniq: n.attribute("uniq").map(CompactString::from),
            value_of_setting: n.attribute("value-of-setting").map(CompactString::from),
            min_length: self.u64_attr(n, "min-length"),
            max_length: self.u64_attr(n, "max-length"),
            regex: n.attribute("regex").map(CompactString::from),
            min: n.attribute("min").map(CompactString::from),
            max: n.attribute("max").map(CompactString::from),
            charset: n.attribute("charset").map(CompactString::from),
            choices,
            names,
            descriptions,
            error_messages,
            id: CompactString::from(id),
        })
    }

    fn requirements(&mut self, n: Node) -> Requirements {
        let mut r = Requirements::default();
        for c in n.children().filter(|c| c.is_element()) {
            let local = c.tag_name().name();
            match c.tag_name().namespace() {
                Some(xml::PHP_NS) => {
                    let php = r.php.get_or_insert_with(PhpRequirement::default);
                    match local {
                        "version" => {
                            php.version_min = c.attribute("min").map(str::to_string);
                            php.version_max_not_including =
                                c.attribute("max-not-including").map(str::to_string);
                        }
                        "extension" => php.extensions.push(xml::text(c)),
                        "function" => php.functions.push(xml::text(c)),
                        _ => php.directives.push((local.to_string(), xml::text(c))),
                    }
                }
                Some(xml::DB_NS) if local == "db" => {
                    let t = |name: &str| {
                        c.children()
                            .find(|x| is_ns(x, xml::DB_NS, name))
                            .map(xml::text)
                    };
                    let id = t("id").unwrap_or_default();
                    if id.is_empty() {
                        self.error(
                            codes::DB_WITHOUT_ID,
                            c,
                            "database requirement without <db:id>; expected an id such as `main` (it names the DB_<id>_* variables)",
                        );
                    }
                    r.databases.push(DbRequirement {
                        id,
                        default_name: t("default-name"),
                        can_use_tables_prefix: t("can-use-tables-prefix")
                            .and_then(|v| bool_text(&v))
                            .unwrap_or(false),
                        server_type: t("server-type"),
                        server_min_version: t("server-min-version"),
                    });
                }
                Some(xml::MAIL_NS) if local == "mailbox" => r.mailboxes.push(MailRequirement {
                    id: c
                        .children()
                        .find(|x| is_ns(x, xml::MAIL_NS, "id"))
                        .map(xml::text)
                        .unwrap_or_default(),
                    raw: opaque(c),
                }),
                Some(xml::APACHE_NS) => {
                    let a = r.apache.get_or_insert_with(ApacheRequirement::default);
                    match local {
                        "required-module" => a.required_modules.push(xml::text(c)),
                        "htaccess" => a.htaccess = bool_text(&xml::text(c)).unwrap_or(true),
                        _ => r.other.push(opaque(c)),
                    }
                }
                Some(xml::PERL_NS) => r.perl.push(opaque(c)),
                Some(xml::DNS_NS) => r.dns_records.push(opaque(c)),
                Some(xml::LICENSING_NS) if local == "license" => {
                    r.licenses.push(LicenseRequirement {
                        id: c.attribute("id").unwrap_or_default().to_string(),
                        kind: c.attribute("type").map(str::to_string),
                        raw: opaque(c),
                    })
                }
                _ if self.is(&c, "choice") => {
                    let alternatives = self
                        .kids(c, "requirements")
                        .into_iter()
                        .map(|alt| RequirementAlternative {
                            id: alt.attribute("id").map(str::to_string),
                            requirements: self.requirements(alt),
                        })
                        .collect();
                    r.choices.push(RequirementChoice { alternatives });
                }
                _ => r.other.push(opaque(c)),
            }
        }
        r
    }

    fn provision(&mut self, n: Node) -> R<Provision> {
        let mut p = Provision::default();
        for c in n.children().filter(|c| c.is_element()) {
            if self.is(&c, "url-mapping") {
                let mut mappings = Vec::new();
                for m in self.kids(c, "mapping") {
                    mappings.push(self.mapping(m)?);
                }
                p.url_mapping = Some(UrlMapping {
                    default_prefix: self.child_text(c, "default-prefix"),
                    installed_size: self.installed_size(c),
                    site_root: self.child(c, "site-root").is_some(),
                    mappings,
                });
            } else if self.is(&c, "configuration-script") {
                p.configuration_script = Some(self.script(c)?);
            } else if self.is(&c, "verification-script") {
                p.verification_script = Some(self.script(c)?);
            } else if self.is(&c, "resource-script") {
                p.resource_script = Some(self.script(c)?);
            } else if self.is(&c, "backup-script") {
                p.backup_script = Some(self.script(c)?);
            } else {
                p.other.push(opaque(c));
            }
        }
        Ok(p)
    }

    fn script(&mut self, n: Node) -> R<Script> {
        let elem = n.tag_name().name();
        let name = n
            .attribute("name")
            .ok_or_else(|| {
                self.missing(
                    n,
                    format!("attribute `name` on <{elem}> (the file in scripts/)"),
                )
            })?
            .to_string();
        let language = match self.child_text(n, "script-language") {
            Some(l) => l,
            None => match self.child(n, "configuration-script-language") {
                Some(c) => {
                    if self.version == ApsVersion::V1_2 {
                        self.warn(
                            codes::LEGACY_SCRIPT_LANGUAGE,
                            c,
                            "<configuration-script-language> is the APS 1.0/1.1 element; expected <script-language> in an APS 1.2 package (accepted)",
                        );
                    }
                    xml::text(c)
                }
                None => {
                    self.error(
                        codes::MISSING_ELEMENT,
                        n,
                        format!("<{elem}> without <script-language>; expected e.g. <script-language>php</script-language> (the script cannot be run)"),
                    );
                    String::new()
                }
            },
        };
        Ok(Script {
            name,
            language,
            sufficient: self.child(n, "sufficient").is_some(),
            structured_output: self.child(n, "structured-output").is_some(),
            status_control: self.child(n, "status-control").is_some(),
        })
    }

    fn mapping(&mut self, n: Node) -> R<Mapping> {
        let url = n
            .attribute("url")
            .ok_or_else(|| self.missing(n, "attribute `url` on <mapping>"))?
            .to_string();
        let mut m = Mapping {
            url,
            path: n.attribute("path").map(str::to_string),
            is_virtual: n.attribute("virtual").is_some(),
            writable: None,
            readable: None,
            handlers: Vec::new(),
            children: Vec::new(),
        };
        for c in n.children().filter(|c| c.is_element()) {
            if self.is(&c, "mapping") {
                m.children.push(self.mapping(c)?);
            } else if c.tag_name().name() == "permissions"
                && matches!(
                    c.tag_name().namespace(),
                    Some(xml::PHP_NS) | Some(xml::ASPNET_NS)
                )
            {
                if let Some(w) = c.attribute("writable") {
                    m.writable = bool_text(w);
                }
                if let Some(r) = c.attribute("readable") {
                    m.readable = bool_text(r);
                }
            } else {
                m.handlers.push(opaque(c));
            }
        }
        Ok(m)
    }
}

/// Any element, kept whole: namespace URI, local name, attributes, text and children.
pub(crate) fn opaque(n: Node) -> OpaqueElement {
    OpaqueElement {
        namespace: n.tag_name().namespace().map(str::to_string),
        name: n.tag_name().name().to_string(),
        attributes: n
            .attributes()
            .map(|a| (a.name().to_string(), a.value().to_string()))
            .collect(),
        text: Some(xml::text(n)).filter(|t| !t.is_empty()),
        children: n
            .children()
            .filter(|c| c.is_element())
            .map(opaque)
            .collect(),
    }
}

/// A `<name>`/`<description>`-like element: its text and `xml:lang`.
fn localized_text(c: Node) -> LocalizedText {
    LocalizedText {
        lang: c
            .attribute((xml::XML_NS, "lang"))
            .filter(|l| !l.is_empty())
            .map(CompactString::from),
        text: xml::text_as(c),
    }
}
