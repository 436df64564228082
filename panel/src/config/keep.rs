//! panel.toml's `[retention]`: how many backups of each periodicity are kept, for every
//! instance and per instance, resolved into a [`RetentionPolicy`].

use std::collections::BTreeMap;

use jiff::SignedDuration;
use serde::Deserialize;

use super::PanelConfig;
use crate::periodicity::Periodicity;
use crate::retention::{DEFAULT_KEEP, KeepRules, RetentionPolicy};

/// Keep counts; at the top level they apply to every instance, under `instances.<name>` they
/// override them for one instance. Precedence for a periodicity P of instance I:
/// `instances.I.P` > `instances.I.keep` > `P` > `keep` > 7.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct KeepConfig {
    pub keep: Option<usize>,
    pub hourly: Option<usize>,
    pub daily: Option<usize>,
    pub weekly: Option<usize>,
    pub monthly: Option<usize>,
    pub bimonthly: Option<usize>,
    pub shutdown: Option<usize>,
    pub manual: Option<usize>,
    /// Also keep every backup younger than this (`"48h"`, `"90m"`, ISO 8601 `"PT48H"`).
    pub keep_within: Option<String>,
}

impl KeepConfig {
    pub(super) fn get(&self, p: Periodicity) -> Option<usize> {
        match p {
            Periodicity::Hourly => self.hourly,
            Periodicity::Daily => self.daily,
            Periodicity::Weekly => self.weekly,
            Periodicity::Monthly => self.monthly,
            Periodicity::Bimonthly => self.bimonthly,
            Periodicity::Shutdown => self.shutdown,
            Periodicity::Manual => self.manual,
            Periodicity::All | Periodicity::Final => None,
        }
    }
}

/// `[retention]`: the keep counts of every instance, and `instances.<name>` overriding them.
/// Two flattened parts, so that `unknown_keys` (`unknown.rs`) can list the keys of each from its struct.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct RetentionConfig {
    #[serde(flatten)]
    pub all: KeepConfig,
    #[serde(flatten)]
    pub overrides: InstanceOverrides,
}

/// `[retention.instances.<name>]`: one instance's keep counts.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct InstanceOverrides {
    #[serde(default)]
    pub instances: BTreeMap<String, KeepConfig>,
}

impl PanelConfig {
    /// Resolves the keep counts of every configured instance (others use `default`).
    pub fn retention_policy(&self) -> Result<RetentionPolicy, String> {
        let top = &self.retention.all;
        let resolve = |over: Option<&KeepConfig>| -> Result<KeepRules, String> {
            let keep = Periodicity::COUNTED
                .into_iter()
                .map(|p| {
                    let n = over
                        .and_then(|o| o.get(p).or(o.keep))
                        .or(top.get(p))
                        .or(top.keep)
                        .unwrap_or(DEFAULT_KEEP);
                    (p, n)
                })
                .collect();
            let within = over
                .and_then(|o| o.keep_within.as_deref())
                .or(top.keep_within.as_deref());
            let within = within
                .map(|w| {
                    w.parse::<SignedDuration>()
                        .ok()
                        .filter(|d| !d.is_negative())
                        .ok_or_else(|| {
                            format!("keep-within {w:?} is not a duration such as \"48h\"")
                        })
                })
                .transpose()?;
            Ok(KeepRules { keep, within })
        };
        let mut instances = BTreeMap::new();
        for (name, over) in &self.retention.overrides.instances {
            instances.insert(
                name.clone(),
                resolve(Some(over)).map_err(|m| format!("instances.{name}: {m}"))?,
            );
        }
        Ok(RetentionPolicy {
            default: resolve(None)?,
            instances,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::load;

    #[test]
    fn precedence_of_keep_counts() {
        let c = load(
            r#"
            compression = "gzip"
            age-recipients = ["age1qypqxpq9qcrsszg2pvxq6rs0zqg3yyc5z5tpwxqergd3c8g7rusqmwn7f2"]
            [retention]
            keep = 3
            daily = 10
            keep-within = "48h"
            [retention.instances.blog]
            keep = 5
            weekly = 1
            "#,
        )
        .unwrap();
        assert_eq!(c.archive_format().extension(), ".aps.tar.gz.age");
        let p = c.retention_policy().unwrap();
        assert_eq!(p.default.keep_for(Periodicity::Daily), 10);
        assert_eq!(p.default.keep_for(Periodicity::Hourly), 3);
        assert_eq!(p.default.within, Some(SignedDuration::from_hours(48)));
        let blog = p.for_instance("blog");
        assert_eq!(blog.keep_for(Periodicity::Weekly), 1);
        assert_eq!(
            blog.keep_for(Periodicity::Daily),
            5,
            "instance keep beats global daily"
        );
        assert_eq!(blog.within, Some(SignedDuration::from_hours(48)));
        assert_eq!(p.for_instance("shop"), &p.default);
    }
}
