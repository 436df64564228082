//! The setting values a person gave: `--setting ID=VALUE` arguments (repeated for a list) and a
//! settings file (TOML, `ID = "value"` or `ID = ["a", "b"]`), before they meet the package.

use std::collections::BTreeMap;

use crate::registry::instance::SettingValue;
use crate::registry::validate::scalar_text;

/// Values by setting id, as given: not yet checked against any package.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GivenSettings {
    values: BTreeMap<String, SettingValue>,
}

/// Why given settings could not be read (before any package is consulted).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsFileError {
    #[error("--setting {argument:?}: expected ID=VALUE (the setting id, `=`, then its value)")]
    Argument { argument: String },
    #[error("settings file: {message}")]
    Toml { message: String },
    #[error(
        "settings file: `{id}` is {what}; give a string, a number, a boolean, or an array of \
         them for a list setting"
    )]
    Shape { id: String, what: &'static str },
}

impl GivenSettings {
    /// Nothing given.
    pub fn new() -> Self {
        Self::default()
    }

    /// `ID=VALUE` arguments in order; an id given twice or more becomes a list of its values
    /// (how a list setting is given on the command line). Only the first `=` splits, so a
    /// value may contain `=`.
    pub fn from_arguments<I, S>(arguments: I) -> Result<Self, SettingsFileError>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut out = Self::new();
        for argument in arguments {
            let argument = argument.as_ref();
            let Some((id, value)) = argument.split_once('=').filter(|(id, _)| !id.is_empty())
            else {
                return Err(SettingsFileError::Argument {
                    argument: argument.to_owned(),
                });
            };
            let value = value.to_owned();
            let slot = out.values.remove(id);
            let next = match slot {
                None => SettingValue::Single(value),
                Some(SettingValue::Single(first)) => SettingValue::List(vec![first, value]),
                Some(SettingValue::List(mut items)) => {
                    items.push(value);
                    SettingValue::List(items)
                }
            };
            out.values.insert(id.to_owned(), next);
        }
        Ok(out)
    }

    /// A settings file: top-level `id = value` pairs in TOML. Numbers and booleans are taken
    /// as their text (`port = 8080` is `"8080"`); an array is a list setting's elements.
    pub fn from_toml(text: &str) -> Result<Self, SettingsFileError> {
        let table: toml::Table = toml::from_str(text).map_err(|e| SettingsFileError::Toml {
            message: e.to_string().trim_end().to_owned(),
        })?;
        let mut out = Self::new();
        for (id, value) in table {
            let value = match value {
                toml::Value::Array(items) => SettingValue::List(
                    items
                        .iter()
                        .map(|item| {
                            scalar_text(item).ok_or(SettingsFileError::Shape {
                                id: id.clone(),
                                what: "an array holding something other than plain values",
                            })
                        })
                        .collect::<Result<_, _>>()?,
                ),
                other => {
                    SettingValue::Single(scalar_text(&other).ok_or(SettingsFileError::Shape {
                        id: id.clone(),
                        what: "a table or a date",
                    })?)
                }
            };
            out.values.insert(id, value);
        }
        Ok(out)
    }

    /// These values, with `over`'s replacing them id by id (the command line over the file).
    pub fn overridden_by(mut self, over: GivenSettings) -> Self {
        self.values.extend(over.values);
        self
    }

    /// Sets one value (a panel or a test building a request in code).
    pub fn insert(&mut self, id: impl Into<String>, value: SettingValue) {
        self.values.insert(id.into(), value);
    }

    pub fn get(&self, id: &str) -> Option<&SettingValue> {
        self.values.get(id)
    }

    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// Every given id with its value, sorted by id.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &SettingValue)> {
        self.values.iter().map(|(k, v)| (k.as_str(), v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_arguments_make_a_list_and_values_keep_their_equals() {
        let g = GivenSettings::from_arguments(["title=My Blog", "d=a.com", "d=b.com", "q=x=y"])
            .unwrap();
        assert_eq!(
            g.get("title"),
            Some(&SettingValue::Single("My Blog".into()))
        );
        assert_eq!(
            g.get("d"),
            Some(&SettingValue::List(vec!["a.com".into(), "b.com".into()]))
        );
        assert_eq!(g.get("q"), Some(&SettingValue::Single("x=y".into())));
        for bad in ["novalue", "=x"] {
            assert_eq!(
                GivenSettings::from_arguments([bad]).unwrap_err(),
                SettingsFileError::Argument {
                    argument: bad.into()
                }
            );
        }
    }

    #[test]
    fn settings_file_takes_strings_numbers_booleans_and_arrays() {
        let g = GivenSettings::from_toml(
            "title = \"Blog\"\nport = 8080\nenabled = true\ndomains = [\"a.com\", \"b.com\"]\n",
        )
        .unwrap();
        assert_eq!(g.get("port"), Some(&SettingValue::Single("8080".into())));
        assert_eq!(g.get("enabled"), Some(&SettingValue::Single("true".into())));
        assert_eq!(
            g.get("domains"),
            Some(&SettingValue::List(vec!["a.com".into(), "b.com".into()]))
        );
        let e = GivenSettings::from_toml("[group]\nx = 1\n").unwrap_err();
        assert!(
            matches!(e, SettingsFileError::Shape { ref id, .. } if id == "group"),
            "{e}"
        );
        assert!(matches!(
            GivenSettings::from_toml("title = ").unwrap_err(),
            SettingsFileError::Toml { .. }
        ));
    }

    #[test]
    fn arguments_override_the_file_id_by_id() {
        let file = GivenSettings::from_toml("a = \"file\"\nb = \"file\"\n").unwrap();
        let args = GivenSettings::from_arguments(["b=arg"]).unwrap();
        let g = file.overridden_by(args);
        assert_eq!(g.get("a"), Some(&SettingValue::Single("file".into())));
        assert_eq!(g.get("b"), Some(&SettingValue::Single("arg".into())));
    }
}
