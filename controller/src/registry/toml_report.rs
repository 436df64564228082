//! TOML problems told to a person: the file's line and key, the valid keys and the one likely
//! meant. Used for INSTANCE.toml, controller.toml and the panel's panel.toml.

/// Every unknown or missing key of an INSTANCE.toml at once, each with its line, the valid
/// keys and the likely one meant (the typed parse stops at the first). Empty when the text is
/// not TOML at all: the parse reports that, with its position.
pub fn shape_problems(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    let top_keys = keys_of::<super::file::RawFile>();
    let database_keys = keys_of::<super::file::RawDatabase>();
    let mut problems = Vec::new();
    for key in table.keys().filter(|k| !top_keys.contains(&k.as_str())) {
        problems.push(unknown_key(text, "", key, top_keys));
    }
    for key in ["name", "package", "base-url"] {
        if !table.contains_key(key) {
            problems.push(format!("missing key `{key}` (required at the top level)"));
        }
    }
    // One role only: anything else is refused here, with its line, not by the parser's words.
    if let Some(role) = table.get("role").filter(|r| r.as_str() != Some("staging")) {
        let line =
            line_of_key(text, "", "role").map_or_else(String::new, |l| format!("line {l}: "));
        problems.push(format!(
            "{line}role = {role}: the only role is \"staging\" (an instance a drill restores \
             into, left out of `run`); leave `role` out for any other instance"
        ));
    }
    if let Some(toml::Value::Table(dbs)) = table.get("databases") {
        for (id, db) in dbs {
            let toml::Value::Table(db) = db else {
                continue;
            };
            let section = format!("databases.{id}");
            for key in db.keys().filter(|k| !database_keys.contains(&k.as_str())) {
                problems.push(unknown_key(text, &section, key, database_keys));
            }
            for key in ["type", "name", "login", "password", "host"] {
                if !db.contains_key(key) {
                    problems.push(format!("missing key `{key}` in [{section}]"));
                }
            }
        }
    }
    problems
}

/// The keys a struct's derived `Deserialize` accepts, in declaration order and as written in
/// the file (renames applied): what serde hands a deserializer in `deserialize_struct`. The
/// valid-key lists of the messages come from here, so that the structs stay the one schema.
/// Empty for a type that is not a plain struct (a map, or a struct with `#[serde(flatten)]`,
/// which serde reads as a map and whose keys it cannot list).
pub fn keys_of<'de, T: serde::Deserialize<'de>>() -> &'static [&'static str] {
    let mut fields = None;
    // The introspector stops every deserialization with an error once it has the fields.
    let _ = T::deserialize(FieldNames(&mut fields));
    fields.unwrap_or_default()
}

/// A deserializer that records the field names of the first struct asked of it, and no value.
struct FieldNames<'a>(&'a mut Option<&'static [&'static str]>);

#[derive(Debug)]
struct Stop;

impl std::fmt::Display for Stop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("field names recorded")
    }
}

impl std::error::Error for Stop {}

impl serde::de::Error for Stop {
    fn custom<T: std::fmt::Display>(_: T) -> Self {
        Stop
    }
}

impl<'de> serde::Deserializer<'de> for FieldNames<'_> {
    type Error = Stop;

    fn deserialize_any<V: serde::de::Visitor<'de>>(self, _: V) -> Result<V::Value, Stop> {
        Err(Stop)
    }

    fn deserialize_struct<V: serde::de::Visitor<'de>>(
        self,
        _name: &'static str,
        fields: &'static [&'static str],
        _: V,
    ) -> Result<V::Value, Stop> {
        *self.0 = Some(fields);
        Err(Stop)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

/// `line N: unknown key `k` in [section]; did you mean `x`? (valid keys there: …)`.
pub fn unknown_key(text: &str, section: &str, key: &str, valid: &[&str]) -> String {
    let place = if section.is_empty() {
        "at the top level".to_owned()
    } else {
        format!("in [{section}]")
    };
    let line = line_of_key(text, section, key)
        .map(|n| format!("line {n}: "))
        .unwrap_or_default();
    let guess = did_you_mean(key, valid)
        .map(|v| format!("; did you mean `{v}`?"))
        .unwrap_or_default();
    format!(
        "{line}unknown key `{key}` {place}{guess} (valid keys there: {})",
        valid.join(", ")
    )
}

/// A typed TOML parse's error as a person reads it: `line N, key `k` in [section]: what is
/// wrong`, never the parser's own multi-line rendering (with its source excerpt and carets).
/// The line and the key come from the error's position in `text`.
pub fn toml_problem(text: &str, e: &toml::de::Error) -> String {
    let message = toml_message(e);
    match e.span() {
        Some(span) => {
            let (line, place) = toml_place(text, span.start);
            format!("line {line}{place}: {message}")
        }
        None => message,
    }
}

/// The error's own words, one line; serde says "field" where the files say "key".
pub fn toml_message(e: &toml::de::Error) -> String {
    e.message()
        .trim()
        .replace("missing field", "missing key")
        .replace("unknown field", "unknown key")
}

/// The 1-based line of byte `offset` of `text`, and `, key `k` in [section]` for the key
/// written on that line (or `, in [section]` for a table header), as far as it can be told.
pub fn toml_place(text: &str, offset: usize) -> (usize, String) {
    let start = offset.min(text.len());
    let line_no = text[..start].matches('\n').count() + 1;
    let mut section = String::new();
    let mut key = None;
    for (i, line) in text.lines().enumerate().take(line_no) {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            section = header.trim_matches('[').trim().to_owned();
            key = None;
        } else if i + 1 == line_no
            && let Some((k, _)) = t.split_once('=')
        {
            key = Some(k.trim().trim_matches('"').to_owned());
        }
    }
    let place = match (key, section.is_empty()) {
        (Some(k), true) => format!(", key `{k}`"),
        (Some(k), false) => format!(", key `{k}` in [{section}]"),
        (None, false) => format!(", in [{section}]"),
        (None, true) => String::new(),
    };
    (line_no, place)
}

/// The valid key closest to `key`, when it is close (at most two edits).
pub fn did_you_mean<'a>(key: &str, valid: &[&'a str]) -> Option<&'a str> {
    valid
        .iter()
        .map(|v| (edit_distance(v, key), *v))
        .filter(|(d, _)| *d <= 2)
        .min_by_key(|(d, _)| *d)
        .map(|(_, v)| v)
}

/// The 1-based line where `key = …` is written under `[section]` (the text as written;
/// dotted and inline forms are not searched).
pub fn line_of_key(text: &str, section: &str, key: &str) -> Option<usize> {
    let mut current = String::new();
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if let Some(header) = t.strip_prefix('[').and_then(|h| h.split(']').next()) {
            current = header.trim().to_owned();
            continue;
        }
        let Some((k, _)) = t.split_once('=') else {
            continue;
        };
        if current == section && k.trim().trim_matches('"') == key {
            return Some(i + 1);
        }
    }
    None
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let cost = usize::from(ca != *cb);
            cur.push((prev[j] + cost).min(prev[j + 1] + 1).min(cur[j] + 1));
        }
        prev = cur;
    }
    prev[b.len()]
}
