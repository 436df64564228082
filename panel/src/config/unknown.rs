//! The keys panel.toml does not know, each with its line, a likely meant key and the valid
//! keys there, listed from the serde structs' own fields (no second list to keep in step).

use aps_controller::registry::validate::{keys_of, unknown_key};

use super::{
    InstanceOverrides, KeepConfig, NotifyConfig, PanelConfig, S3Bucket, StoreTable, UploadSizes,
};

/// Every key panel.toml does not know, as `line N: unknown key …; did you mean …? valid keys:
/// …`. Syntax errors are left to the typed parse that follows.
pub(super) fn unknown_keys(text: &str) -> Vec<String> {
    let Ok(table) = text.parse::<toml::Table>() else {
        return Vec::new();
    };
    // Each table's valid keys are its struct's fields (a flattened struct's, part by part).
    let keep_keys = keys_of::<KeepConfig>();
    let s3_bucket_keys = keys_of::<S3Bucket>();
    let mut problems = Vec::new();
    let mut check = |section: &str, table: &toml::Table, valid: &[&str]| {
        for key in table.keys() {
            if !valid.contains(&key.as_str()) {
                problems.push(unknown_key(text, section, key, valid));
            }
        }
    };
    check("", &table, keys_of::<PanelConfig>());
    if let Some(toml::Value::Table(retention)) = table.get("retention") {
        check(
            "retention",
            retention,
            &[keep_keys, keys_of::<InstanceOverrides>()].concat(),
        );
        if let Some(toml::Value::Table(instances)) = retention.get("instances") {
            for (name, over) in instances {
                if let toml::Value::Table(over) = over {
                    check(&format!("retention.instances.{name}"), over, keep_keys);
                }
            }
        }
    }
    if let Some(toml::Value::Table(store)) = table.get("store") {
        check("store", store, keys_of::<StoreTable>());
        if let Some(toml::Value::Table(s3)) = store.get("s3") {
            check("store.s3", s3, s3_bucket_keys);
        }
    }
    if let Some(toml::Value::Table(notify)) = table.get("notify") {
        check("notify", notify, keys_of::<NotifyConfig>());
    }
    if let Some(toml::Value::Table(remote)) = table.get("remote") {
        check(
            "remote",
            remote,
            &[s3_bucket_keys, keys_of::<UploadSizes>()].concat(),
        );
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;
    use crate::config::{RemoteConfig, RetentionConfig};
    use serde::Deserialize;

    #[test]
    fn every_unknown_key_at_once_with_line_and_the_valid_keys() {
        let err = load(
            "compresion = \"gzip\"\n[retention]\ndayly = 3\n[retention.instances.blog]\nkeep = 1\nweeky = 2\n",
        )
        .unwrap_err()
        .to_string();
        for needle in [
            "line 1: unknown key `compresion` at the top level; did you mean `compression`?",
            "line 3: unknown key `dayly` in [retention]; did you mean `daily`?",
            "line 6: unknown key `weeky` in [retention.instances.blog]; did you mean `weekly`?",
            "valid keys there: keep, hourly, daily",
        ] {
            assert!(err.contains(needle), "{needle}\n{err}");
        }
    }

    /// The valid keys a message lists are the struct's own fields, in their order: a field
    /// added to a struct is accepted, and listed, without any other list to update.
    #[test]
    fn valid_keys_are_the_structs_fields() {
        #[derive(Deserialize)]
        #[serde(rename_all = "kebab-case")]
        #[allow(dead_code)]
        struct Grown {
            keep: Option<usize>,
            a_new_field: Option<usize>,
        }
        assert_eq!(keys_of::<Grown>(), ["keep", "a-new-field"]);
        assert_eq!(
            keys_of::<PanelConfig>(),
            [
                "store",
                "compression",
                "age-recipients",
                "identity-file",
                "jobs",
                "retention",
                "remote",
                "notify"
            ]
        );
        assert_eq!(
            keys_of::<NotifyConfig>().join(", "),
            "url, failure-url, command, user, timeout-secs"
        );
        assert_eq!(
            keys_of::<StoreTable>().join(", "),
            "kind, path, key-file, password-file, s3, host, lock-wait"
        );
        for (text, valid) in [
            (
                "[store]
kind = \"archive\"
kid = 1
",
                keys_of::<StoreTable>().to_vec(),
            ),
            (
                "[retention]
keep = 1
kep = 1
",
                [keys_of::<KeepConfig>(), keys_of::<InstanceOverrides>()].concat(),
            ),
            (
                "[remote]
bucket = \"b\"
buckt = 1
",
                [keys_of::<S3Bucket>(), keys_of::<UploadSizes>()].concat(),
            ),
        ] {
            let err = load(text).unwrap_err().to_string();
            let listed = format!("(valid keys there: {})", valid.join(", "));
            assert!(err.ends_with(&listed), "{text}: {err}");
        }
        // A flattened struct is read as a map: its keys are listed part by part instead.
        assert!(keys_of::<RetentionConfig>().is_empty());
        assert!(keys_of::<RemoteConfig>().is_empty());
    }
}
