//! Retention: which backups of an instance to keep, as a pure function of what the store holds,
//! the policy and the time. Deleting is the caller's job (`prune`).

use std::collections::{BTreeMap, BTreeSet};

use jiff::{SignedDuration, Timestamp};
use serde::Serialize;

use crate::periodicity::Periodicity;
use crate::store::files::StoredFile;

pub const DEFAULT_KEEP: usize = 7;

/// The keep rules for one instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KeepRules {
    /// Newest N per counted periodicity (every one but `all`, which counts for each
    /// time-based one). A periodicity missing here keeps [`DEFAULT_KEEP`].
    pub keep: BTreeMap<Periodicity, usize>,
    /// Also keep every good backup younger than this.
    pub within: Option<SignedDuration>,
}

impl Default for KeepRules {
    fn default() -> Self {
        KeepRules {
            keep: Periodicity::COUNTED
                .into_iter()
                .map(|p| (p, DEFAULT_KEEP))
                .collect(),
            within: None,
        }
    }
}

impl KeepRules {
    pub fn keep_for(&self, p: Periodicity) -> usize {
        self.keep.get(&p).copied().unwrap_or(DEFAULT_KEEP)
    }
}

/// Rules for every instance, with per-instance overrides already resolved.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RetentionPolicy {
    pub default: KeepRules,
    pub instances: BTreeMap<String, KeepRules>,
}

impl RetentionPolicy {
    pub fn for_instance(&self, instance: &str) -> &KeepRules {
        self.instances.get(instance).unwrap_or(&self.default)
    }
}

/// Why a backup is kept.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum KeepReason {
    /// The newest good backup of its instance: never removed, whatever the policy says.
    Newest,
    /// Among the newest N counted for this periodicity (1-based rank).
    Periodicity {
        periodicity: Periodicity,
        rank: usize,
    },
    /// Younger than the `keep-within` duration.
    Within,
    /// The backup `instance remove` took before removing the instance (periodicity `final`):
    /// the last copy of data that no longer exists elsewhere, so retention never removes it;
    /// the operator deletes it by hand when it is no longer wanted.
    Final,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Kept {
    pub file: StoredFile,
    pub reasons: Vec<KeepReason>,
}

/// The outcome: every listed file lands in exactly one of the three lists.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RetentionPlan {
    pub keep: Vec<Kept>,
    pub remove: Vec<StoredFile>,
    /// Partial, empty and unrecognised files: never counted, never removed by retention.
    pub ignored: Vec<StoredFile>,
}

/// Plans retention over `backups` (any number of instances). Only good backups are counted or
/// removed; within an instance they are ranked newest first (ties broken by file name).
pub fn plan_retention(
    backups: &[StoredFile],
    policy: &RetentionPolicy,
    now: Timestamp,
) -> RetentionPlan {
    let mut plan = RetentionPlan::default();
    let mut by_instance: BTreeMap<&str, Vec<&StoredFile>> = BTreeMap::new();
    for f in backups {
        match &f.name {
            Some(_) if f.is_good() => by_instance.entry(f.instance.as_str()).or_default().push(f),
            _ => plan.ignored.push(f.clone()),
        }
    }
    for (instance, mut files) in by_instance {
        let rules = policy.for_instance(instance);
        // Newest first.
        files.sort_by(|a, b| b.cmp_age(a));
        let mut reasons: Vec<BTreeSet<KeepReason>> = vec![BTreeSet::new(); files.len()];
        reasons[0].insert(KeepReason::Newest);
        for periodicity in Periodicity::COUNTED {
            let n = rules.keep_for(periodicity);
            let counted = files.iter().enumerate().filter(|(_, f)| {
                f.name
                    .as_ref()
                    .expect("good")
                    .periodicity
                    .counts_for(periodicity)
            });
            for (rank, (i, _)) in counted.take(n).enumerate() {
                reasons[i].insert(KeepReason::Periodicity {
                    periodicity,
                    rank: rank + 1,
                });
            }
        }
        for (i, f) in files.iter().enumerate() {
            if f.name.as_ref().expect("good").periodicity == Periodicity::Final {
                reasons[i].insert(KeepReason::Final);
            }
        }
        if let Some(within) = rules.within {
            let cutoff = now
                .saturating_sub(within)
                .expect("signed duration in range");
            for (i, f) in files.iter().enumerate() {
                if f.name.as_ref().expect("good").time >= cutoff {
                    reasons[i].insert(KeepReason::Within);
                }
            }
        }
        for (f, r) in files.into_iter().zip(reasons) {
            if r.is_empty() {
                plan.remove.push(f.clone());
            } else {
                plan.keep.push(Kept {
                    file: f.clone(),
                    reasons: r.into_iter().collect(),
                });
            }
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::naming::{ArchiveFormat, BackupName};

    const NOW: &str = "2026-06-30T12:00:00Z";

    /// `(instance, periodicity, time, size)`; size 0 makes an empty (failed) file.
    fn file(instance: &str, p: Periodicity, time: &str) -> StoredFile {
        let name = BackupName::new(instance, p, time.parse().unwrap(), ArchiveFormat::default());
        StoredFile::classify(instance, &name.file_name(), 100)
    }

    fn daily_series(instance: &str, days: u32) -> Vec<StoredFile> {
        (1..=days)
            .map(|d| {
                file(
                    instance,
                    Periodicity::Daily,
                    &format!("2026-06-{d:02}T02:00:00Z"),
                )
            })
            .collect()
    }

    fn rules(pairs: &[(Periodicity, usize)]) -> KeepRules {
        let mut r = KeepRules::default();
        r.keep.extend(pairs.iter().copied());
        r
    }

    fn policy(r: KeepRules) -> RetentionPolicy {
        RetentionPolicy {
            default: r,
            instances: BTreeMap::new(),
        }
    }

    /// A compact, reviewable view of a plan: one line per file.
    fn render(plan: &RetentionPlan) -> String {
        let mut out = String::new();
        for k in &plan.keep {
            let why: Vec<String> = k
                .reasons
                .iter()
                .map(|r| match r {
                    KeepReason::Newest => "newest".to_owned(),
                    KeepReason::Periodicity { periodicity, rank } => {
                        format!("{periodicity}#{rank}")
                    }
                    KeepReason::Within => "within".to_owned(),
                    KeepReason::Final => "final".to_owned(),
                })
                .collect();
            out += &format!("keep   {} ({})\n", k.file.file_name, why.join(", "));
        }
        for r in &plan.remove {
            out += &format!("remove {}\n", r.file_name);
        }
        for i in &plan.ignored {
            out += &format!("ignore {} [{:?}]\n", i.file_name, i.status);
        }
        out
    }

    fn check_partition(input: &[StoredFile], plan: &RetentionPlan) {
        let mut all: Vec<&str> = plan
            .keep
            .iter()
            .map(|k| k.file.key.as_str())
            .chain(plan.remove.iter().map(|f| f.key.as_str()))
            .chain(plan.ignored.iter().map(|f| f.key.as_str()))
            .collect();
        all.sort();
        let mut want: Vec<&str> = input.iter().map(|f| f.key.as_str()).collect();
        want.sort();
        assert_eq!(all, want, "every file lands in exactly one list");
    }

    #[test]
    fn retention_table() {
        let now: Timestamp = NOW.parse().unwrap();
        let mut mixed = daily_series("blog", 10);
        mixed.extend([
            file("blog", Periodicity::Weekly, "2026-06-07T03:00:00Z"),
            file("blog", Periodicity::Weekly, "2026-06-14T03:00:00Z"),
            file("blog", Periodicity::Weekly, "2026-06-21T03:00:00Z"),
            file("blog", Periodicity::Monthly, "2026-05-01T04:00:00Z"),
            file("blog", Periodicity::Monthly, "2026-06-01T04:00:00Z"),
            file("blog", Periodicity::Manual, "2026-06-15T10:00:00Z"),
            file("blog", Periodicity::Manual, "2026-06-16T10:00:00Z"),
        ]);
        let mut with_all = daily_series("blog", 5);
        with_all.extend([
            file("blog", Periodicity::All, "2026-06-03T12:00:00Z"),
            file("blog", Periodicity::Weekly, "2026-06-04T03:00:00Z"),
            file("blog", Periodicity::Weekly, "2026-05-28T03:00:00Z"),
            file("blog", Periodicity::Manual, "2026-06-05T10:00:00Z"),
        ]);
        let mut with_junk = daily_series("blog", 5);
        let partial = StoredFile::classify(
            "blog",
            ".blog_daily_2026-06-06-02-00-00.aps.tar.zst.aps-partial-k3Jd",
            4096,
        );
        let empty = StoredFile {
            size: 0,
            ..file("blog", Periodicity::Daily, "2026-06-07T02:00:00Z")
        };
        let empty = StoredFile::classify("blog", &empty.file_name, 0);
        with_junk.extend([
            partial,
            empty,
            StoredFile::classify("blog", "README.txt", 12),
        ]);
        let only_manual_newest = {
            let mut v = daily_series("blog", 4);
            v.push(file("blog", Periodicity::Manual, "2026-06-20T10:00:00Z"));
            v
        };
        let two_instances = {
            let mut v = daily_series("blog", 4);
            v.extend(daily_series("shop", 4));
            v
        };
        let shop_override = RetentionPolicy {
            default: rules(&[(Periodicity::Daily, 1)]),
            instances: BTreeMap::from([("shop".to_owned(), rules(&[(Periodicity::Daily, 3)]))]),
        };

        let table: Vec<(&str, Vec<StoredFile>, RetentionPolicy)> = vec![
            (
                "default-keep7",
                daily_series("blog", 10),
                policy(KeepRules::default()),
            ),
            (
                "keep-daily3",
                daily_series("blog", 10),
                policy(rules(&[(Periodicity::Daily, 3)])),
            ),
            (
                "keep-daily2-weekly2-monthly1-manual1",
                mixed,
                policy(rules(&[
                    (Periodicity::Daily, 2),
                    (Periodicity::Weekly, 2),
                    (Periodicity::Monthly, 1),
                    (Periodicity::Manual, 1),
                ])),
            ),
            (
                "all-counts-for-each-time-based",
                with_all,
                policy(rules(&[
                    (Periodicity::Daily, 2),
                    (Periodicity::Weekly, 1),
                    (Periodicity::Manual, 0),
                ])),
            ),
            (
                "partial-empty-unrecognized-ignored",
                with_junk,
                policy(rules(&[(Periodicity::Daily, 2)])),
            ),
            (
                "keep-daily0-newest-never-removed",
                only_manual_newest.clone(),
                policy(rules(&[(Periodicity::Daily, 0), (Periodicity::Manual, 0)])),
            ),
            (
                "keep-within-100h",
                daily_series("blog", 30),
                policy(KeepRules {
                    within: Some(SignedDuration::from_hours(100)),
                    ..rules(&[(Periodicity::Daily, 1)])
                }),
            ),
            ("per-instance-override", two_instances, shop_override),
        ];

        for (label, input, policy) in table {
            let plan = plan_retention(&input, &policy, now);
            check_partition(&input, &plan);
            insta::assert_snapshot!(label, render(&plan));
        }
    }

    #[test]
    fn newest_good_is_kept_even_when_older_than_a_failed_one() {
        let now: Timestamp = NOW.parse().unwrap();
        let mut files = daily_series("blog", 3);
        let newer_empty = file("blog", Periodicity::Daily, "2026-06-29T02:00:00Z");
        files.push(StoredFile::classify("blog", &newer_empty.file_name, 0));
        let plan = plan_retention(&files, &policy(rules(&[(Periodicity::Daily, 0)])), now);
        assert_eq!(plan.keep.len(), 1);
        assert_eq!(plan.keep[0].file.file_name, files[2].file_name);
        assert_eq!(plan.keep[0].reasons, [KeepReason::Newest]);
        assert_eq!(plan.remove.len(), 2);
        assert_eq!(plan.ignored.len(), 1);
    }

    #[test]
    fn final_backups_are_kept_whatever_the_counts_say() {
        let now: Timestamp = NOW.parse().unwrap();
        // A final backup, then the name reused by a new instance with newer backups: every
        // count at 0 removes all but the newest, never the final one.
        let mut files = vec![file("blog", Periodicity::Final, "2026-06-01T09:00:00Z")];
        files.extend(daily_series("blog", 5).into_iter().skip(2));
        let zero = rules(&Periodicity::COUNTED.map(|p| (p, 0)));
        let plan = plan_retention(&files, &policy(zero), now);
        check_partition(&files, &plan);
        let kept: Vec<(&str, &[KeepReason])> = plan
            .keep
            .iter()
            .map(|k| (k.file.file_name.as_str(), k.reasons.as_slice()))
            .collect();
        assert_eq!(
            kept,
            [
                (
                    "blog_daily_2026-06-05-02-00-00.aps.tar.zst",
                    &[KeepReason::Newest][..]
                ),
                (
                    "blog_final_2026-06-01-09-00-00.aps.tar.zst",
                    &[KeepReason::Final][..]
                ),
            ]
        );
        assert_eq!(plan.remove.len(), 2);
    }

    #[test]
    fn nothing_to_plan_for_an_empty_store() {
        let plan = plan_retention(&[], &RetentionPolicy::default(), NOW.parse().unwrap());
        assert_eq!(plan, RetentionPlan::default());
    }
}
