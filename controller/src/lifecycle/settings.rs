//! An instance's settings from what a person gave and what the package declares: every
//! declared setting gets its value (given, else default, else none when optional), every value
//! is checked, and every problem goes into one refusal. Install and configure both call it; the
//! result is exactly what the instance record stores.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use aps_meta::model::{AppMeta, LocalizedText, Setting, SettingType};
use aps_meta::{GenerateError, SettingValueError, generate_setting_value, validate_setting_value};

use super::given::GivenSettings;
use crate::registry::instance::{Instance, SettingValue};
use crate::registry::validate::unknown_id_hint;

/// The settings an instance is recorded with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ResolvedSettings {
    /// Setting id → value: the record's `settings`, unchanged.
    pub values: BTreeMap<String, SettingValue>,
    /// Ids whose values are secret (password settings): the record's `secret_settings`.
    pub secret: BTreeSet<String>,
}

/// The outcome of a reconfiguration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfiguredSettings {
    /// The whole new set, to store in the record once the script succeeded.
    pub settings: ResolvedSettings,
    /// Ids whose value differs from the record's.
    pub changed: BTreeSet<String>,
    /// The previous values of changed `track-old-value` settings: the `old_settings` of
    /// `ScriptOperation::Configure`, exported as `OLDSETTINGS_<id>`.
    pub old_values: BTreeMap<String, SettingValue>,
}

/// Where a `uniq` setting's value must be unique, among this controller's instances of the same
/// application.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UniqScope {
    /// Every instance of the application.
    Global,
    /// The instances that run as the same system account.
    Owner,
}

/// One thing wrong with the settings; each names the setting and what to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SettingProblem {
    /// A given id the package does not declare (a typo must not pass silently).
    Unknown { id: String, hint: String },
    /// A required setting with no value given and no default.
    Missing { id: String, name: Option<String> },
    /// The value breaks the declaration (type, length, pattern, range, choice).
    Invalid {
        id: String,
        error: SettingValueError,
    },
    /// A value given for a setting nobody sets: `static-text` or hidden.
    NotSettable { id: String, kind: &'static str },
    /// Several values for a setting that takes one.
    ListForScalar { id: String, count: usize },
    /// A change to an `installation-only` setting after install.
    InstallationOnly { id: String, name: Option<String> },
    /// The value is already another instance's.
    NotUnique {
        id: String,
        scope: UniqScope,
        instance: String,
    },
    /// `value-of-setting` names a setting the package does not declare.
    ValueOfUnknown { id: String, target: String },
    /// No value could be generated (only when generated values were asked for).
    CannotGenerate(GenerateError),
}

impl fmt::Display for SettingProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let named = |id: &str, name: &Option<String>| match name {
            Some(n) => format!("`{id}` ({n})"),
            None => format!("`{id}`"),
        };
        match self {
            SettingProblem::Unknown { id, hint } => {
                write!(
                    f,
                    "setting `{id}`: the package declares no such setting{hint}"
                )
            }
            SettingProblem::Missing { id, name } => write!(
                f,
                "setting {} is required and has no default: give it with {} {id}=VALUE \
                 or in the settings file",
                named(id, name),
                crate::overrides::Override::Setting
            ),
            SettingProblem::Invalid { error, .. } => write!(f, "{error}"),
            SettingProblem::NotSettable { id, kind } => write!(
                f,
                "setting `{id}` is {kind}: the package sets it, not a person; remove it"
            ),
            SettingProblem::ListForScalar { id, count } => write!(
                f,
                "setting `{id}` takes one value but {count} were given; give it once"
            ),
            SettingProblem::InstallationOnly { id, name } => write!(
                f,
                "setting {} is installation-only: it cannot change after install; leave it out",
                named(id, name)
            ),
            SettingProblem::NotUnique {
                id,
                scope,
                instance,
            } => {
                let among = match scope {
                    UniqScope::Global => "every instance of this application",
                    UniqScope::Owner => "the instances of this application of the same account",
                };
                write!(
                    f,
                    "setting `{id}`: instance {instance} already has this value, and it must be \
                     unique among {among}; choose another"
                )
            }
            SettingProblem::ValueOfUnknown { id, target } => write!(
                f,
                "setting `{id}`: its value-of-setting names `{target}`, which the package does \
                 not declare (a package defect); give `{id}` a value"
            ),
            SettingProblem::CannotGenerate(e) => write!(f, "{e}"),
        }
    }
}

/// Every problem found in the settings, in the package's order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub struct SettingsRefused {
    pub problems: Vec<SettingProblem>,
}

impl fmt::Display for SettingsRefused {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.problems.len();
        write!(
            f,
            "settings refused ({n} problem{}):",
            if n == 1 { "" } else { "s" }
        )?;
        for p in &self.problems {
            write!(f, "\n  - {p}")?;
        }
        Ok(())
    }
}

/// Whether two packages are the same application (for `uniq`): the same `id` when both have
/// one, else the same name.
pub fn is_same_application(a: &AppMeta, b: &AppMeta) -> bool {
    match (&a.id, &b.id) {
        (Some(x), Some(y)) => x == y,
        _ => a.name == b.name,
    }
}

/// The settings of a new instance of `meta`. `others` are this controller's instances of the
/// same application (see [`is_same_application`]) and `owner` the new instance's account, for
/// `uniq`.
pub fn resolve_install(
    meta: &AppMeta,
    given: &GivenSettings,
    owner: Option<&str>,
    others: &[Instance],
) -> Result<ResolvedSettings, SettingsRefused> {
    let declared = declared_settings(meta);
    let mut problems = unknown_ids(&declared, given);
    let mut values = BTreeMap::new();
    let mut following = Vec::new();
    for s in &declared {
        let id = s.id.to_string();
        if let Some(kind) = not_settable(s) {
            if given.get(&id).is_some() {
                problems.push(SettingProblem::NotSettable {
                    id: id.clone(),
                    kind,
                });
            }
            // A hidden setting is the package's own: its default, checked like any value.
            if kind == "hidden"
                && let Some(d) = usable_default(s)
                && let Some(v) = checked(s, &from_default(s, d), &mut problems)
            {
                values.insert(id, v);
            }
            continue;
        }
        let value = match (given.get(&id), usable_default(s)) {
            (Some(v), _) => v.clone(),
            (None, Some(d)) => from_default(s, d),
            (None, None) if s.value_of_setting.is_some() => {
                following.push(*s);
                continue;
            }
            (None, None) if s.optional => continue,
            (None, None) => {
                problems.push(missing(s));
                continue;
            }
        };
        if let Some(v) = checked(s, &value, &mut problems) {
            values.insert(id, v);
        }
    }
    follow_values(&declared, &following, &mut values, &mut problems);
    for s in &declared {
        if let Some(v) = values.get(s.id.as_str()) {
            check_uniq(s, v, owner, others, None, &mut problems);
        }
    }
    if !problems.is_empty() {
        return Err(SettingsRefused { problems });
    }
    Ok(ResolvedSettings {
        secret: secret_ids(&declared, &values),
        values,
    })
}

/// The settings of `instance` after the changes a person asked for. `others` are this
/// controller's instances of the same application (the instance itself is skipped).
pub fn resolve_configure(
    meta: &AppMeta,
    instance: &Instance,
    changes: &GivenSettings,
    others: &[Instance],
) -> Result<ConfiguredSettings, SettingsRefused> {
    let declared = declared_settings(meta);
    let mut problems = unknown_ids(&declared, changes);
    let mut values = instance.settings.clone();
    let mut changed = BTreeSet::new();
    let mut old_values = BTreeMap::new();
    for s in &declared {
        let id = s.id.to_string();
        let Some(given) = changes.get(&id) else {
            continue;
        };
        if let Some(kind) = not_settable(s) {
            problems.push(SettingProblem::NotSettable { id, kind });
            continue;
        }
        let Some(new) = checked(s, given, &mut problems) else {
            continue;
        };
        let old = values
            .get(&id)
            .cloned()
            .or_else(|| s.default_value.as_deref().map(|d| from_default(s, d)));
        if old.as_ref() == Some(&new) {
            continue;
        }
        if s.installation_only {
            problems.push(SettingProblem::InstallationOnly {
                id,
                name: human_name(&s.names),
            });
            continue;
        }
        check_uniq(
            s,
            &new,
            instance.user.as_deref(),
            others,
            Some(&instance.name),
            &mut problems,
        );
        if s.track_old_value
            && let Some(old) = old
        {
            old_values.insert(id.clone(), old);
        }
        changed.insert(id.clone());
        values.insert(id, new);
    }
    if !problems.is_empty() {
        return Err(SettingsRefused { problems });
    }
    Ok(ConfiguredSettings {
        settings: ResolvedSettings {
            secret: secret_ids(&declared, &values),
            values,
        },
        changed,
        old_values,
    })
}

/// `given`, plus a generated value ([`generate_setting_value`]) for every required setting a
/// person did not give and the package does not default (or defaults to a value its own
/// declaration refuses). Only when asked (a conformance run,
/// a test install): a real install refuses a missing setting instead.
pub fn generate_missing(
    meta: &AppMeta,
    given: &GivenSettings,
    seed: &[u8; 32],
) -> Result<GivenSettings, SettingsRefused> {
    let mut out = given.clone();
    let mut problems = Vec::new();
    for s in declared_settings(meta) {
        // A default the package's own declaration refuses cannot stand either.
        let default_stands = usable_default(s).is_some_and(|d| {
            (d.is_empty() && matches!(s.kind, SettingType::List { .. }))
                || validate_setting_value(s, d).is_ok()
        });
        let needs_value = not_settable(s).is_none()
            && !s.optional
            && !default_stands
            && s.value_of_setting.is_none()
            && given.get(&s.id).is_none();
        if !needs_value {
            continue;
        }
        match generate_setting_value(s, seed) {
            Ok(v) => out.insert(s.id.to_string(), SettingValue::Single(v)),
            Err(e) => problems.push(SettingProblem::CannotGenerate(e)),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(SettingsRefused { problems })
    }
}

/// The root service's settings, then the global ones; an id declared in both is the
/// service's (as the environment exports it).
fn declared_settings(meta: &AppMeta) -> Vec<&Setting> {
    let mut seen = BTreeSet::new();
    meta.service
        .all_settings()
        .into_iter()
        .chain(meta.all_global_settings())
        .filter(|s| seen.insert(s.id.as_str()))
        .collect()
}

fn unknown_ids(declared: &[&Setting], given: &GivenSettings) -> Vec<SettingProblem> {
    let ids: Vec<&str> = declared.iter().map(|s| s.id.as_str()).collect();
    given
        .iter()
        .filter(|(id, _)| !ids.contains(id))
        .map(|(id, _)| SettingProblem::Unknown {
            id: id.to_owned(),
            hint: unknown_id_hint(id, &ids),
        })
        .collect()
}

/// `static-text` carries no value; `type="hidden"` and `visibility="hidden"` are never asked.
pub(crate) fn not_settable(s: &Setting) -> Option<&'static str> {
    match s.kind {
        SettingType::StaticText => Some("static-text"),
        SettingType::Hidden => Some("hidden"),
        _ if s.hidden => Some("hidden"),
        _ => None,
    }
}

/// The package's default, unless it is empty and an empty value is invalid: real packages
/// write `default-value=""` on settings a person must fill in (an empty field in a form).
fn usable_default(s: &Setting) -> Option<&str> {
    let d = s.default_value.as_deref()?;
    let empty_and_invalid = d.is_empty()
        && !matches!(s.kind, SettingType::List { .. })
        && validate_setting_value(s, d).is_err();
    (!empty_and_invalid).then_some(d)
}

/// A default as a value: a list setting's default is its one element (none when empty).
fn from_default(s: &Setting, default: &str) -> SettingValue {
    match s.kind {
        SettingType::List { .. } if default.is_empty() => SettingValue::List(Vec::new()),
        SettingType::List { .. } => SettingValue::List(vec![default.to_owned()]),
        _ => SettingValue::Single(default.to_owned()),
    }
}

/// The value in its stored shape (booleans as `true`/`false`, lists as lists), if valid.
fn checked(
    s: &Setting,
    value: &SettingValue,
    problems: &mut Vec<SettingProblem>,
) -> Option<SettingValue> {
    let id = s.id.to_string();
    let elements: Vec<String> = match (&s.kind, value) {
        // One empty value given for a list is the empty list (`--setting domains=`).
        (SettingType::List { .. }, SettingValue::Single(v)) if v.is_empty() => Vec::new(),
        (SettingType::List { .. }, SettingValue::Single(v)) => vec![v.clone()],
        (SettingType::List { .. }, SettingValue::List(items)) => items.clone(),
        (_, SettingValue::Single(v)) => vec![v.clone()],
        (_, SettingValue::List(items)) => {
            problems.push(SettingProblem::ListForScalar {
                id,
                count: items.len(),
            });
            return None;
        }
    };
    let is_list = matches!(s.kind, SettingType::List { .. });
    if is_list && elements.is_empty() && !s.optional {
        problems.push(missing(s));
        return None;
    }
    let element_kind = match &s.kind {
        SettingType::List { element_type } => element_type.as_ref(),
        k => k,
    };
    let mut ok = true;
    let mut out = Vec::with_capacity(elements.len());
    for e in elements {
        let e = match element_kind {
            SettingType::Boolean => normal_boolean(&e).unwrap_or(e),
            _ => e,
        };
        if let Err(error) = validate_setting_value(s, &e) {
            problems.push(SettingProblem::Invalid {
                id: id.clone(),
                error,
            });
            ok = false;
        }
        out.push(e);
    }
    match (ok, is_list) {
        (false, _) => None,
        (true, true) => Some(SettingValue::List(out)),
        (true, false) => Some(SettingValue::Single(out.pop().unwrap_or_default())),
    }
}

/// The spellings panels use for booleans, as the `true`/`false` scripts compare with.
fn normal_boolean(v: &str) -> Option<String> {
    match v.trim().to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Some("true".into()),
        "false" | "0" | "no" | "off" => Some("false".into()),
        _ => None,
    }
}

/// Settings with `value-of-setting` and no value of their own take the named setting's
/// value; a chain is followed until nothing more resolves.
fn follow_values(
    declared: &[&Setting],
    following: &[&Setting],
    values: &mut BTreeMap<String, SettingValue>,
    problems: &mut Vec<SettingProblem>,
) {
    let mut pending: Vec<&Setting> = following.to_vec();
    loop {
        let before = pending.len();
        pending.retain(|s| {
            let target = s.value_of_setting.as_deref().unwrap_or_default();
            match values.get(target).cloned() {
                Some(v) => {
                    if let Some(v) = checked(s, &v, problems) {
                        values.insert(s.id.to_string(), v);
                    }
                    false
                }
                None => true,
            }
        });
        if pending.len() == before {
            break;
        }
    }
    for s in pending {
        let target = s.value_of_setting.as_deref().unwrap_or_default();
        if !declared.iter().any(|d| d.id == target) {
            problems.push(SettingProblem::ValueOfUnknown {
                id: s.id.to_string(),
                target: target.to_owned(),
            });
        } else if !s.optional {
            problems.push(missing(s));
        }
    }
}

fn check_uniq(
    s: &Setting,
    value: &SettingValue,
    owner: Option<&str>,
    others: &[Instance],
    myself: Option<&str>,
    problems: &mut Vec<SettingProblem>,
) {
    let scope = match s.uniq.as_deref().map(str::trim) {
        Some("global") => UniqScope::Global,
        Some("owner") => UniqScope::Owner,
        _ => return,
    };
    let folded = matches!(
        s.kind,
        SettingType::Email | SettingType::DomainName | SettingType::HostName
    );
    let elements = |v: &SettingValue| -> BTreeSet<String> {
        let items = match v {
            SettingValue::Single(x) => std::slice::from_ref(x),
            SettingValue::List(xs) => xs.as_slice(),
        };
        items
            .iter()
            .map(|x| if folded { x.to_lowercase() } else { x.clone() })
            .collect()
    };
    let mine = elements(value);
    for other in others {
        if Some(other.name.as_str()) == myself
            || (scope == UniqScope::Owner && other.user.as_deref() != owner)
        {
            continue;
        }
        if let Some(theirs) = other.settings.get(s.id.as_str())
            && !mine.is_disjoint(&elements(theirs))
        {
            problems.push(SettingProblem::NotUnique {
                id: s.id.to_string(),
                scope,
                instance: other.name.clone(),
            });
        }
    }
}

/// Password settings, and settings whose value follows one (`value-of-setting`): a copy of a
/// password is as secret as the password.
fn secret_ids(declared: &[&Setting], values: &BTreeMap<String, SettingValue>) -> BTreeSet<String> {
    let is_secret = |id: &str| declared.iter().any(|d| d.id == id && d.is_secret());
    declared
        .iter()
        .filter(|s| s.is_secret() || s.value_of_setting.as_deref().is_some_and(&is_secret))
        .filter(|s| values.contains_key(s.id.as_str()))
        .map(|s| s.id.to_string())
        .collect()
}

fn missing(s: &Setting) -> SettingProblem {
    SettingProblem::Missing {
        id: s.id.to_string(),
        name: human_name(&s.names),
    }
}

/// The English name (or the one without a language, else the first): for messages.
fn human_name(names: &[LocalizedText]) -> Option<String> {
    names
        .iter()
        .find(|n| n.lang.as_deref().is_none_or(|l| l.starts_with("en")))
        .or(names.first())
        .map(|n| n.text.trim().to_string())
        .filter(|n| !n.is_empty())
}
