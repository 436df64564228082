//! Made-up values for settings a person did not fill in: a valid value of the setting's type
//! and constraints, for a conformance run or a test install, never behind a person's back.
//!
//! Values are drawn from a caller's 32-byte seed (hashed with the setting id), so the same seed
//! gives the same values and a random seed gives fresh passwords. Every value is checked with
//! [`validate_setting_value`] before it is returned: what cannot be made valid is an error that
//! says why, not a value the install would refuse.

use regex_syntax::hir::{Class, Hir, HirKind};
use sha2::{Digest, Sha256};

use crate::model::{Setting, SettingType};
use crate::setting_value::validate_setting_value;

/// Why no value could be made for a setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("setting `{setting}`: no value can be generated: {reason}; give one")]
pub struct GenerateError {
    pub setting: String,
    pub reason: String,
}

/// A valid value for `setting` (for a `list` setting: one element). Deterministic in `seed`.
pub fn generate_setting_value(setting: &Setting, seed: &[u8; 32]) -> Result<String, GenerateError> {
    let fail = |reason: &str| GenerateError {
        setting: setting.id.to_string(),
        reason: reason.to_string(),
    };
    let mut stream = Stream::new(seed, &setting.id);
    let kind = match &setting.kind {
        SettingType::List { element_type } => element_type.as_ref(),
        k => k,
    };
    let tag = stream.hex(6);
    let candidates: Vec<String> = match kind {
        SettingType::StaticText => return Err(fail("a static-text setting carries no value")),
        SettingType::Other(name) => {
            return Err(fail(&format!(
                "its type `{name}` is not one this controller knows"
            )));
        }
        SettingType::Enum => match setting.choices.first() {
            Some(c) => vec![c.id.to_string()],
            None => return Err(fail("the enum declares no choice")),
        },
        SettingType::Boolean => vec!["false".into(), "true".into()],
        SettingType::Integer => integer_candidates(setting),
        SettingType::Float => float_candidates(setting),
        SettingType::Email => vec![format!("aps-{tag}@example.com")],
        SettingType::DomainName | SettingType::HostName => vec![format!("aps-{tag}.example.com")],
        SettingType::Password => vec![password(setting, &mut stream)],
        SettingType::String | SettingType::Hidden => text_candidates(setting, &tag),
        SettingType::List { .. } => return Err(fail("a list of lists is not supported")),
    };
    let mut last = None;
    for candidate in candidates {
        match validate_setting_value(setting, &candidate) {
            Ok(()) => return Ok(candidate),
            Err(e) => last = Some(e),
        }
    }
    Err(fail(&match last {
        Some(e) => format!("the nearest candidate was refused ({e})"),
        None => "its pattern admits no value this generator can make".to_string(),
    }))
}

/// SHA-256 in counter mode over the seed and the setting id.
struct Stream {
    key: Vec<u8>,
    counter: u64,
    buffer: Vec<u8>,
}

impl Stream {
    fn new(seed: &[u8; 32], id: &str) -> Self {
        let mut key = seed.to_vec();
        key.extend_from_slice(id.as_bytes());
        Stream {
            key,
            counter: 0,
            buffer: Vec::new(),
        }
    }

    fn byte(&mut self) -> u8 {
        if self.buffer.is_empty() {
            let mut h = Sha256::new();
            h.update(&self.key);
            h.update(self.counter.to_le_bytes());
            self.counter += 1;
            self.buffer = h.finalize().to_vec();
        }
        self.buffer.pop().unwrap_or(0)
    }

    /// A uniformly drawn element of `set` (rejection sampling, no modulo bias).
    fn pick(&mut self, set: &[u8]) -> u8 {
        let limit = 256 - (256 % set.len());
        loop {
            let b = self.byte() as usize;
            if b < limit {
                return set[b % set.len()];
            }
        }
    }

    fn hex(&mut self, n: usize) -> String {
        (0..n)
            .map(|_| self.pick(b"0123456789abcdef") as char)
            .collect()
    }
}

const LOWER: &[u8] = b"abcdefghijklmnopqrstuvwxyz";
const UPPER: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ";
const DIGIT: &[u8] = b"0123456789";

/// Letters and digits only: no character a script could mis-quote in shell, SQL or PHP.
/// 20 characters unless the bounds say otherwise; lower, upper and digit each present.
fn password(setting: &Setting, stream: &mut Stream) -> String {
    let min = setting.min_length.unwrap_or(0);
    let max = setting.max_length.unwrap_or(u64::MAX);
    let len = 20u64.max(min).min(max).min(4096) as usize;
    let all: Vec<u8> = [LOWER, UPPER, DIGIT].concat();
    let mut chars: Vec<u8> = (0..len).map(|_| stream.pick(&all)).collect();
    for (i, set) in [LOWER, UPPER, DIGIT].iter().enumerate() {
        if i < chars.len() {
            chars[i] = stream.pick(set);
        }
    }
    String::from_utf8(chars).unwrap_or_default()
}

fn integer_candidates(setting: &Setting) -> Vec<String> {
    let bound = |b: &Option<compact_str::CompactString>| {
        b.as_deref().and_then(|v| v.trim().parse::<f64>().ok())
    };
    let (min, max) = (bound(&setting.min), bound(&setting.max));
    let mut out = Vec::new();
    if let Some(m) = min {
        out.push(format!("{}", m.ceil() as i64));
    }
    if let Some(m) = max {
        out.push(format!("{}", m.floor() as i64));
    }
    out.push("1".into());
    out
}

fn float_candidates(setting: &Setting) -> Vec<String> {
    let mut out: Vec<String> = [&setting.min, &setting.max]
        .into_iter()
        .flatten()
        .map(|b| b.trim().to_string())
        .collect();
    out.push("1.0".into());
    out
}

/// A plain word (`aps` and a tag), padded to `min-length`; with a `regex`, strings built from
/// the pattern first.
fn text_candidates(setting: &Setting, tag: &str) -> Vec<String> {
    let min = setting.min_length.unwrap_or(0) as usize;
    let pad = |s: String| {
        let missing = min.saturating_sub(s.chars().count());
        s + &"x".repeat(missing.min(4096))
    };
    let mut out = Vec::new();
    if let Some(re) = &setting.regex
        && let Ok(hir) = regex_syntax::parse(re)
    {
        for extra in [0u32, 1, 2, 3, 5, 8, 12, 16, 24, 32, 48, 64] {
            let mut core = String::new();
            if from_pattern(&hir, extra, &mut core) {
                out.push(core.clone());
                out.push(pad(core));
            }
        }
    }
    out.push(pad(format!("aps{tag}")));
    out
}

/// Appends a string `hir` matches to `out`: the first alternative, a preferred character of
/// each class, each repetition `min + extra` times (capped by its max). Anchors add nothing.
fn from_pattern(hir: &Hir, extra: u32, out: &mut String) -> bool {
    if out.len() > 8192 {
        return false;
    }
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => true,
        HirKind::Literal(lit) => match std::str::from_utf8(&lit.0) {
            Ok(s) => {
                out.push_str(s);
                true
            }
            Err(_) => false,
        },
        HirKind::Class(Class::Unicode(class)) => {
            let preferred = LOWER
                .iter()
                .chain(UPPER)
                .chain(DIGIT)
                .map(|b| *b as char)
                .chain("-_.@".chars());
            let chosen = preferred
                .clone()
                .find(|c| {
                    class
                        .ranges()
                        .iter()
                        .any(|r| r.start() <= *c && *c <= r.end())
                })
                .or_else(|| {
                    class
                        .ranges()
                        .iter()
                        .map(|r| r.start())
                        .find(|c| !c.is_control())
                });
            match chosen {
                Some(c) => {
                    out.push(c);
                    true
                }
                None => false,
            }
        }
        HirKind::Class(Class::Bytes(_)) => false,
        HirKind::Repetition(rep) => {
            let count = rep
                .min
                .saturating_add(extra)
                .min(rep.max.unwrap_or(u32::MAX))
                .min(1024);
            (0..count).all(|_| from_pattern(&rep.sub, extra, out))
        }
        HirKind::Capture(cap) => from_pattern(&cap.sub, extra, out),
        HirKind::Concat(parts) => parts.iter().all(|p| from_pattern(p, extra, out)),
        HirKind::Alternation(branches) => branches
            .first()
            .is_some_and(|b| from_pattern(b, extra, out)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Choice;

    const SEED: [u8; 32] = [7; 32];

    fn gen_ok(s: &Setting) -> String {
        let v = generate_setting_value(s, &SEED).unwrap();
        validate_setting_value(s, &v).unwrap();
        v
    }

    #[test]
    fn passwords_have_the_right_length_and_mix() {
        let mut p = Setting::new("admin_password", SettingType::Password);
        let v = gen_ok(&p);
        assert_eq!(v.len(), 20);
        assert!(v.chars().any(|c| c.is_ascii_lowercase()));
        assert!(v.chars().any(|c| c.is_ascii_uppercase()));
        assert!(v.chars().any(|c| c.is_ascii_digit()));
        assert!(v.chars().all(|c| c.is_ascii_alphanumeric()));
        p.min_length = Some(32);
        assert_eq!(gen_ok(&p).len(), 32);
        p.min_length = Some(4);
        p.max_length = Some(8);
        assert_eq!(gen_ok(&p).len(), 8);
        // Another seed, another password; the same seed, the same one.
        let other = generate_setting_value(&p, &[8; 32]).unwrap();
        assert_ne!(other, gen_ok(&p));
        assert_eq!(gen_ok(&p), gen_ok(&p));
    }

    #[test]
    fn typed_values_are_valid() {
        for kind in [
            SettingType::Email,
            SettingType::DomainName,
            SettingType::HostName,
            SettingType::Boolean,
            SettingType::String,
            SettingType::Hidden,
        ] {
            gen_ok(&Setting::new("x", kind));
        }
        let mut n = Setting::new("port", SettingType::Integer);
        n.min = Some("1024".into());
        n.max = Some("2048".into());
        assert_eq!(gen_ok(&n), "1024");
        let mut f = Setting::new("ratio", SettingType::Float);
        f.max = Some("-0.5".into());
        assert_eq!(gen_ok(&f), "-0.5");
        let mut e = Setting::new("locale", SettingType::Enum);
        e.choices = vec![Choice {
            id: "de-DE".into(),
            names: vec![],
        }];
        assert_eq!(gen_ok(&e), "de-DE");
        let l = Setting::new(
            "domains",
            SettingType::List {
                element_type: Box::new(SettingType::DomainName),
            },
        );
        gen_ok(&l);
    }

    #[test]
    fn strings_follow_their_pattern_and_lengths() {
        let mut s = Setting::new("admin_name", SettingType::String);
        s.regex = Some(r"^[a-zA-Z][0-9a-zA-Z_\-]*$".into());
        s.min_length = Some(6);
        s.max_length = Some(10);
        let v = gen_ok(&s);
        assert!((6..=10).contains(&v.len()), "{v}");
        s.regex = Some(r"^http://([a-zA-Z0-9_\-]+)([\.][a-zA-Z0-9_\-]+)+([/][a-zA-Z0-9\~\(\)_\-]*)+([\.][a-zA-Z0-9\(\)_\-]+)*$".into());
        s.min_length = None;
        s.max_length = None;
        assert!(gen_ok(&s).starts_with("http://"));
        s.regex = Some("^(?:red|green)$".into());
        assert_eq!(gen_ok(&s), "red");
    }

    #[test]
    fn impossible_values_are_errors_that_say_why() {
        let mut s = Setting::new("code", SettingType::String);
        s.regex = Some("^[0-9]{3}$".into());
        s.min_length = Some(5);
        let e = generate_setting_value(&s, &SEED).unwrap_err();
        assert_eq!(e.setting, "code");
        assert!(e.to_string().contains("give one"), "{e}");
        let e = generate_setting_value(&Setting::new("e", SettingType::Enum), &SEED).unwrap_err();
        assert!(e.reason.contains("no choice"), "{e}");
        let t = Setting::new("note", SettingType::StaticText);
        assert!(generate_setting_value(&t, &SEED).is_err());
    }
}
