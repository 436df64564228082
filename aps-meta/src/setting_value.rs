//! Validation of a setting value against its declaration (`type`, lengths, `regex`, `min`/`max`,
//! enum choices), as a control panel or the registry does before a value reaches a script.
//!
//! Messages name the setting, say what is wrong and what is expected; a password value is never
//! echoed. Where the standard is silent: `regex` is unanchored (like PHP controllers'
//! `preg_match`); a regex our engine cannot compile is skipped here (fail open, so a package
//! quirk does not block an install) and reported by `package check` as `bad-regex`; a list
//! setting's value is validated as one element against `element-type`.

use crate::model::{Setting, SettingType};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingValueError {
    #[error("setting `{setting}`: {shown} is not {expected}")]
    WrongType {
        setting: String,
        shown: String,
        expected: String,
    },
    #[error("setting `{setting}`: the value is {len} characters long; expected at least {min}")]
    TooShort { setting: String, len: u64, min: u64 },
    #[error("setting `{setting}`: the value is {len} characters long; expected at most {max}")]
    TooLong { setting: String, len: u64, max: u64 },
    #[error("setting `{setting}`: {shown} does not match the required pattern {regex}")]
    NoMatch {
        setting: String,
        shown: String,
        regex: String,
    },
    #[error("setting `{setting}`: {shown} is out of range; expected {expected}")]
    OutOfRange {
        setting: String,
        shown: String,
        expected: String,
    },
    #[error("setting `{setting}`: {shown} is not one of the choices; expected one of {choices}")]
    NotAChoice {
        setting: String,
        shown: String,
        choices: String,
    },
    #[error("setting `{setting}`: {shown} is not allowed; a {kind} setting takes no value")]
    NotEditable {
        setting: String,
        shown: String,
        kind: &'static str,
    },
}

/// Checks `value` against `setting`'s declaration. Returns the first problem found.
pub fn validate_setting_value(setting: &Setting, value: &str) -> Result<(), SettingValueError> {
    let id = || setting.id.to_string();
    let shown = || {
        if setting.is_secret() {
            "the value".to_string()
        } else {
            format!("value {value:?}")
        }
    };
    let kind = match &setting.kind {
        SettingType::List { element_type } => element_type.as_ref(),
        k => k,
    };
    let wrong = |expected: &str| SettingValueError::WrongType {
        setting: id(),
        shown: shown(),
        expected: expected.to_string(),
    };
    match kind {
        SettingType::Boolean if value != "true" && value != "false" => {
            return Err(wrong("a boolean (true or false)"));
        }
        SettingType::Integer if value.trim().parse::<i64>().is_err() => {
            return Err(wrong("an integer"));
        }
        SettingType::Float if !value.trim().parse::<f64>().is_ok_and(f64::is_finite) => {
            return Err(wrong("a number"));
        }
        SettingType::Email if !is_email(value) => {
            return Err(wrong("an e-mail address (name@example.com)"));
        }
        SettingType::DomainName if !is_host(value, 2) => {
            return Err(wrong("a domain name (example.com)"));
        }
        SettingType::HostName if !is_host(value, 1) => {
            return Err(wrong("a host name (www.example.com)"));
        }
        SettingType::Enum if !setting.choices.iter().any(|c| c.id == value) => {
            let choices = setting
                .choices
                .iter()
                .map(|c| c.id.as_str())
                .collect::<Vec<_>>()
                .join(", ");
            return Err(SettingValueError::NotAChoice {
                setting: id(),
                shown: shown(),
                choices,
            });
        }
        // static-text is displayed only; accept its own default (or nothing).
        SettingType::StaticText
            if !value.is_empty() && Some(value) != setting.default_value.as_deref() =>
        {
            return Err(SettingValueError::NotEditable {
                setting: id(),
                shown: shown(),
                kind: "static-text",
            });
        }
        _ => {}
    }
    let len = value.chars().count() as u64;
    if let Some(min) = setting.min_length
        && len < min
    {
        return Err(SettingValueError::TooShort {
            setting: id(),
            len,
            min,
        });
    }
    if let Some(max) = setting.max_length
        && len > max
    {
        return Err(SettingValueError::TooLong {
            setting: id(),
            len,
            max,
        });
    }
    if let Some(re) = &setting.regex
        && let Ok(compiled) = compile_regex(re)
        && !compiled.is_match(value)
    {
        return Err(SettingValueError::NoMatch {
            setting: id(),
            shown: shown(),
            regex: re.to_string(),
        });
    }
    if matches!(kind, SettingType::Integer | SettingType::Float) {
        let v: f64 = value.trim().parse().unwrap_or(f64::NAN);
        let min = setting
            .min
            .as_deref()
            .and_then(|m| m.trim().parse::<f64>().ok());
        let max = setting
            .max
            .as_deref()
            .and_then(|m| m.trim().parse::<f64>().ok());
        if min.is_some_and(|m| v < m) || max.is_some_and(|m| v > m) {
            let expected = match (&setting.min, &setting.max) {
                (Some(a), Some(b)) => format!("between {a} and {b}"),
                (Some(a), None) => format!("at least {a}"),
                (None, Some(b)) => format!("at most {b}"),
                (None, None) => unreachable!("a bound was exceeded"),
            };
            return Err(SettingValueError::OutOfRange {
                setting: id(),
                shown: shown(),
                expected,
            });
        }
    }
    Ok(())
}

/// Compiles a setting's `regex` with bounded size (a package cannot make us build a huge
/// automaton).
pub fn compile_regex(re: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(re)
        .size_limit(1 << 20)
        .dfa_size_limit(1 << 20)
        .build()
}

fn is_email(v: &str) -> bool {
    let Some((local, domain)) = v.rsplit_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && !local
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '@')
        && is_host(domain, 2)
}

/// Labels of letters/digits/hyphens (Unicode letters allowed: IDN in its Unicode form), no
/// label starting or ending with a hyphen, at least `min_labels` labels, 253 bytes at most.
fn is_host(v: &str, min_labels: usize) -> bool {
    let v = v.strip_suffix('.').unwrap_or(v);
    if v.is_empty() || v.len() > 253 {
        return false;
    }
    let mut n = 0;
    for label in v.split('.') {
        n += 1;
        if label.is_empty()
            || label.len() > 63
            || label.starts_with('-')
            || label.ends_with('-')
            || !label.chars().all(|c| c.is_alphanumeric() || c == '-')
        {
            return false;
        }
    }
    n >= min_labels
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Choice;

    fn setting(id: &str, kind: SettingType) -> Setting {
        Setting::new(id, kind)
    }

    #[test]
    fn types_are_checked() {
        let b = setting("flag", SettingType::Boolean);
        assert!(validate_setting_value(&b, "true").is_ok());
        let e = validate_setting_value(&b, "yes").unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting `flag`: value \"yes\" is not a boolean (true or false)"
        );
        let i = setting("n", SettingType::Integer);
        assert!(validate_setting_value(&i, "-42").is_ok());
        assert!(validate_setting_value(&i, "4.2").is_err());
        let f = setting("x", SettingType::Float);
        assert!(validate_setting_value(&f, "4.2").is_ok());
        assert!(validate_setting_value(&f, "NaN").is_err());
        let m = setting("mail", SettingType::Email);
        assert!(validate_setting_value(&m, "a.b@example.com").is_ok());
        assert!(validate_setting_value(&m, "a b@example.com").is_err());
        assert!(validate_setting_value(&m, "ab@localhost").is_err());
        let d = setting("dom", SettingType::DomainName);
        assert!(validate_setting_value(&d, "example.com").is_ok());
        assert!(validate_setting_value(&d, "bücher.de").is_ok());
        assert!(validate_setting_value(&d, "-bad.com").is_err());
        assert!(validate_setting_value(&d, "localhost").is_err());
        let h = setting("host", SettingType::HostName);
        assert!(validate_setting_value(&h, "localhost").is_ok());
        assert!(validate_setting_value(&h, "a..b").is_err());
    }

    #[test]
    fn enum_choices_and_list_elements() {
        let mut e = setting("locale", SettingType::Enum);
        e.choices = vec![
            Choice {
                id: "en-US".into(),
                names: vec![],
            },
            Choice {
                id: "de-DE".into(),
                names: vec![],
            },
        ];
        assert!(validate_setting_value(&e, "de-DE").is_ok());
        let err = validate_setting_value(&e, "fr-FR").unwrap_err();
        assert_eq!(
            err.to_string(),
            "setting `locale`: value \"fr-FR\" is not one of the choices; expected one of en-US, de-DE"
        );
        let l = setting(
            "domains",
            SettingType::List {
                element_type: Box::new(SettingType::DomainName),
            },
        );
        assert!(validate_setting_value(&l, "example.org").is_ok());
        assert!(validate_setting_value(&l, "not a domain").is_err());
    }

    #[test]
    fn lengths_regex_and_ranges() {
        let mut s = setting("admin_name", SettingType::String);
        s.min_length = Some(3);
        s.max_length = Some(5);
        s.regex = Some("[a-z]+".into());
        assert!(validate_setting_value(&s, "abc").is_ok());
        // Unanchored: one lowercase letter anywhere is enough.
        assert!(validate_setting_value(&s, "A1b").is_ok());
        assert!(matches!(
            validate_setting_value(&s, "ab"),
            Err(SettingValueError::TooShort { len: 2, min: 3, .. })
        ));
        assert!(matches!(
            validate_setting_value(&s, "abcdef"),
            Err(SettingValueError::TooLong { .. })
        ));
        assert!(matches!(
            validate_setting_value(&s, "123"),
            Err(SettingValueError::NoMatch { .. })
        ));
        // A regex our engine cannot compile is not enforced here (package check reports it).
        s.regex = Some("(?<=a)b".into());
        assert!(validate_setting_value(&s, "xyz").is_ok());

        let mut n = setting("port", SettingType::Integer);
        n.min = Some("1".into());
        n.max = Some("65535".into());
        assert!(validate_setting_value(&n, "80").is_ok());
        let e = validate_setting_value(&n, "70000").unwrap_err();
        assert_eq!(
            e.to_string(),
            "setting `port`: value \"70000\" is out of range; expected between 1 and 65535"
        );
    }

    #[test]
    fn password_values_are_never_echoed() {
        let mut p = setting("admin_password", SettingType::Password);
        p.min_length = Some(8);
        p.regex = Some("[0-9]".into());
        let e = validate_setting_value(&p, "hunter")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunter"), "{e}");
        let e = validate_setting_value(&p, "hunterhunter")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("hunterhunter"), "{e}");
        assert!(e.contains("admin_password"), "{e}");
    }
}
