//! How an instance is shown to people and scripts: INSTANCE.toml's own shape, passwords
//! (database passwords and password settings) replaced by `***` (they are never printed).

use serde_json::{Value, json};

use super::instance::{Instance, SettingValue};

/// What `--json` prints for one instance: INSTANCE.toml's keys, `password = "***"`.
pub fn masked_json(i: &Instance) -> Value {
    let settings: serde_json::Map<String, Value> = i
        .settings
        .iter()
        .map(|(k, v)| {
            let v = match v {
                _ if i.secret_settings.contains(k) => json!("***"),
                SettingValue::Single(s) => json!(s),
                SettingValue::List(l) => json!(l),
            };
            (k.clone(), v)
        })
        .collect();
    let databases: serde_json::Map<String, Value> = i
        .databases
        .iter()
        .map(|(id, d)| {
            let mut v = json!({
                "type": d.kind.as_str(),
                "name": d.name,
                "login": d.login,
                "password": "***",
                "host": d.host,
                "port": d.port,
            });
            if let Some(ver) = &d.version {
                v["version"] = json!(ver);
            }
            if let Some(p) = &d.prefix {
                v["prefix"] = json!(p);
            }
            (id.clone(), v)
        })
        .collect();
    let mut v = json!({
        "name": i.name,
        "package": i.package,
        "base-url": i.base_url.to_string(),
        "web-dirs": i.web_dirs,
        "settings": settings,
        "databases": databases,
    });
    // The account the instance's work runs as (recorded at registration).
    if let Some(user) = &i.user {
        v["user"] = json!(user);
    }
    if let Some(group) = &i.group {
        v["group"] = json!(group);
    }
    if let Some(role) = i.role {
        v["role"] = json!(role.as_str());
    }
    // Not a key of INSTANCE.toml: the package's `configure disable` sets it, not a file.
    if !i.status.is_enabled() {
        v["status"] = json!(i.status.as_str());
    }
    v
}

/// The human view: the same data as [`masked_json`], as TOML (re-registrable once the
/// passwords are filled in). A disabled instance's status is a comment above it, since
/// INSTANCE.toml has no such key.
pub fn masked_toml(i: &Instance) -> String {
    let mut json = masked_json(i);
    if let Some(table) = json.as_object_mut() {
        table.remove("status");
    }
    let v: toml::Value = serde_json::from_value(json).expect("JSON objects map to TOML");
    let text = toml::to_string(&v).expect("a TOML table serialises");
    match i.status.is_enabled() {
        true => text,
        false => format!(
            "# status: {} (`aps-controller instance enable {}`)\n{text}",
            i.status.as_str(),
            i.name
        ),
    }
}

/// The summary `instance list --json` prints per instance.
pub fn summary_json(i: &Instance) -> Value {
    let mut v = json!({
        "name": i.name,
        "package": i.package,
        "base-url": i.base_url.to_string(),
        "status": i.status.as_str(),
    });
    if let Some(role) = i.role {
        v["role"] = json!(role.as_str());
    }
    v
}
