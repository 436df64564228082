//! The backups watched from one place (`aps-controller status`, `GET /v1/status`,
//! `GET /metrics`): per registered instance and periodicity the last good backup (time, age,
//! size, duration) and the last failure (time, kind), from the status files `run` writes
//! ([`crate::status`]); with a maximum age, the instances without a good backup younger
//! than it.

use std::collections::BTreeMap;

use aps_controller::Controller;
use aps_controller::ErrorKind;
use jiff::Timestamp;
use serde::Serialize;

use super::{ServiceError, words};
use crate::context::Panel;
use crate::periodicity::Periodicity;
use crate::status::{InstanceStatus, read_all};
use crate::store::HostSnapshot;

/// What the caller asks for.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// An instance whose newest good backup is older than this (or who has none) is stale.
    pub max_age: Option<std::time::Duration>,
    /// Only the rows of this periodicity (and staleness judged by its backups alone).
    pub periodicity: Option<Periodicity>,
}

/// The table: one row per instance and periodicity recorded, one row without a periodicity
/// for an instance nothing was recorded of.
#[derive(Debug, Clone, Serialize)]
pub struct StatusTable {
    /// The time ages are counted from.
    pub now: Timestamp,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age_secs: Option<u64>,
    pub rows: Vec<Row>,
    /// The instances without a good backup younger than `max_age_secs` (empty without it).
    pub stale: Vec<String>,
}

/// One instance and periodicity.
#[derive(Debug, Clone, Serialize)]
pub struct Row {
    /// The host a shared repository's snapshot came from (`status --repository` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub host: Option<String>,
    pub instance: String,
    /// `None`: no backup of the instance was ever recorded.
    pub periodicity: Option<Periodicity>,
    /// `staging` for an instance `run` leaves out: never counted stale.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    pub last_success: Option<LastSuccess>,
    pub last_failure: Option<LastFailure>,
    /// Failures by kind, counted since the status file was made.
    pub failures: BTreeMap<String, u64>,
    pub stale: bool,
}

/// The last good backup.
#[derive(Debug, Clone, Serialize)]
pub struct LastSuccess {
    pub time: Timestamp,
    pub age_secs: u64,
    pub size: u64,
    /// `None` when the source does not know it (a snapshot read from a shared repository).
    pub duration_ms: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
}

/// The last failure.
#[derive(Debug, Clone, Serialize)]
pub struct LastFailure {
    pub time: Timestamp,
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub step: Option<String>,
    pub message: String,
}

/// A registered instance as the table needs it.
#[derive(Debug, Clone)]
pub struct Registered {
    pub name: String,
    pub staging: bool,
}

/// The table of this state folder's instances.
pub fn status(ctl: &Controller, request: &Request) -> Result<StatusTable, ServiceError> {
    let registered = registered(ctl)?;
    let recorded = recorded(ctl)?;
    Ok(table(&registered, &recorded, Timestamp::now(), request))
}

/// What `run` recorded of every instance ([`crate::status`]).
pub fn recorded(ctl: &Controller) -> Result<BTreeMap<String, InstanceStatus>, ServiceError> {
    read_all(ctl.config().state.root()).map_err(|e| ServiceError::Refused {
        kind: ErrorKind::Internal,
        step: None,
        message: words![e.to_string()],
        hint: None,
    })
}

/// The registry's instances, by name.
pub fn registered(ctl: &Controller) -> Result<Vec<Registered>, ServiceError> {
    let list = ctl.store().list().map_err(|e| ServiceError::Refused {
        kind: ErrorKind::Internal,
        step: None,
        message: words![e.to_string()],
        hint: None,
    })?;
    Ok(list
        .iter()
        .map(|i| Registered {
            name: i.name.clone(),
            staging: i.is_staging(),
        })
        .collect())
}

/// The table from what is registered and what was recorded, ages counted from `now`. An
/// instance recorded but no longer registered is left out (it was removed).
pub fn table(
    registered: &[Registered],
    recorded: &BTreeMap<String, InstanceStatus>,
    now: Timestamp,
    request: &Request,
) -> StatusTable {
    let mut rows = Vec::new();
    let mut stale = Vec::new();
    for instance in registered {
        let role = instance.staging.then_some("staging");
        let periodicities = recorded
            .get(&instance.name)
            .map(|s| &s.periodicities)
            .into_iter()
            .flatten()
            .filter(|(p, _)| request.periodicity.is_none_or(|wanted| **p == wanted));
        let first = rows.len();
        for (periodicity, s) in periodicities {
            rows.push(Row {
                host: None,
                instance: instance.name.clone(),
                periodicity: Some(*periodicity),
                role,
                last_success: s.last_success.as_ref().map(|ok| LastSuccess {
                    time: ok.time,
                    age_secs: age(now, ok.time),
                    size: ok.size,
                    duration_ms: Some(ok.duration_ms),
                    file: ok.file.as_ref().map(|f| f.to_string()),
                    snapshot: ok.snapshot.clone(),
                }),
                last_failure: s.last_failure.as_ref().map(|f| LastFailure {
                    time: f.time,
                    kind: f.kind.clone(),
                    step: f.step.clone(),
                    message: f.message.clone(),
                }),
                failures: s.failures.clone(),
                stale: false,
            });
        }
        if rows.len() == first {
            rows.push(Row {
                host: None,
                instance: instance.name.clone(),
                periodicity: request.periodicity,
                role,
                last_success: None,
                last_failure: None,
                failures: BTreeMap::new(),
                stale: false,
            });
        }
        if mark_stale(&mut rows[first..], request.max_age, instance.staging) {
            stale.push(instance.name.clone());
        }
    }
    StatusTable {
        now,
        max_age_secs: request.max_age.map(|d| d.as_secs()),
        rows,
        stale,
    }
}

/// The table of every host and instance of the shared repository panel.toml names: the
/// newest snapshot of each host, instance and periodicity (`status --repository`). A
/// repository keeps no failures: those columns stay empty. Stale entries are `HOST/INSTANCE`.
pub fn every_host(panel: &Panel, request: &Request) -> Result<StatusTable, ServiceError> {
    let snapshots = panel
        .store
        .every_host(&panel.cx())
        .map_err(ServiceError::from)?;
    Ok(fleet_table(&snapshots, Timestamp::now(), request))
}

/// [`every_host`]'s table from the snapshots, ages counted from `now`.
pub fn fleet_table(snapshots: &[HostSnapshot], now: Timestamp, request: &Request) -> StatusTable {
    // (host, instance) → periodicity → the newest snapshot.
    let mut newest: BTreeMap<(&str, &str), BTreeMap<Option<Periodicity>, &HostSnapshot>> =
        BTreeMap::new();
    for s in snapshots {
        if request
            .periodicity
            .is_some_and(|p| s.snapshot.periodicity != Some(p))
        {
            continue;
        }
        let kept = newest
            .entry((s.host.as_str(), s.snapshot.instance.as_str()))
            .or_default()
            .entry(s.snapshot.periodicity)
            .or_insert(s);
        if s.snapshot.time > kept.snapshot.time {
            *kept = s;
        }
    }
    let mut rows = Vec::new();
    let mut stale = Vec::new();
    for ((host, instance), per) in newest {
        let first = rows.len();
        for (periodicity, s) in per {
            rows.push(Row {
                host: Some(host.to_owned()),
                instance: instance.to_owned(),
                periodicity,
                role: None,
                last_success: Some(LastSuccess {
                    time: s.snapshot.time,
                    age_secs: age(now, s.snapshot.time),
                    size: s.snapshot.bytes_added,
                    duration_ms: s.duration_ms,
                    file: None,
                    snapshot: Some(s.snapshot.id.clone()),
                }),
                last_failure: None,
                failures: BTreeMap::new(),
                stale: false,
            });
        }
        if mark_stale(&mut rows[first..], request.max_age, false) {
            stale.push(format!("{host}/{instance}"));
        }
    }
    StatusTable {
        now,
        max_age_secs: request.max_age.map(|d| d.as_secs()),
        rows,
        stale,
    }
}

/// Marks the rows of one instance stale when none of them has a good backup younger than
/// `max_age`; a staging instance never is (`run` leaves it out on purpose).
pub(crate) fn mark_stale(
    rows: &mut [Row],
    max_age: Option<std::time::Duration>,
    staging: bool,
) -> bool {
    let Some(max_age) = max_age else {
        return false;
    };
    if staging {
        return false;
    }
    let fresh = rows.iter().any(|r| {
        r.last_success
            .as_ref()
            .is_some_and(|s| s.age_secs < max_age.as_secs())
    });
    if !fresh {
        rows.iter_mut().for_each(|r| r.stale = true);
    }
    !fresh
}

/// An age such as `26h`, `90m`, `7d`, `2w`, `45s` or `1d12h` (whole numbers, each with its
/// unit), for `--max-age` and `?max_age=`.
pub fn parse_age(text: &str) -> Result<std::time::Duration, String> {
    let wrong = || format!("{text:?} is not an age like 26h, 90m, 7d or 1d12h");
    let mut total: u64 = 0;
    let mut rest = text.trim();
    if rest.is_empty() {
        return Err(wrong());
    }
    while !rest.is_empty() {
        let digits = rest.find(|c: char| !c.is_ascii_digit()).ok_or_else(wrong)?;
        let n: u64 = rest[..digits].parse().map_err(|_| wrong())?;
        let unit = rest[digits..].chars().next().ok_or_else(wrong)?;
        let seconds = match unit {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => {
                return Err(format!(
                    "{text:?}: unknown unit {unit:?} (use s, m, h, d or w)"
                ));
            }
        };
        total = n
            .checked_mul(seconds)
            .and_then(|s| total.checked_add(s))
            .ok_or_else(wrong)?;
        rest = &rest[digits + 1..];
    }
    if total == 0 {
        return Err(format!("{text:?}: a maximum age must be more than nothing"));
    }
    Ok(std::time::Duration::from_secs(total))
}

/// Whole seconds from `then` to `now` (0 for a time ahead of the clock).
pub fn age(now: Timestamp, then: Timestamp) -> u64 {
    now.duration_since(then).as_secs().max(0) as u64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::{Failure, PeriodicityStatus, Success};

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    fn registered(names: &[(&str, bool)]) -> Vec<Registered> {
        names
            .iter()
            .map(|(n, staging)| Registered {
                name: (*n).to_owned(),
                staging: *staging,
            })
            .collect()
    }

    fn recorded() -> BTreeMap<String, InstanceStatus> {
        let ok = |t: &str| Success {
            time: at(t),
            size: 1000,
            duration_ms: 2500,
            file: Some("/b/x.tar".into()),
            snapshot: None,
        };
        let mut fresh = InstanceStatus {
            instance: "fresh".into(),
            ..Default::default()
        };
        fresh.periodicities.insert(
            Periodicity::Daily,
            PeriodicityStatus {
                last_success: Some(ok("2026-12-07T01:00:00Z")),
                ..Default::default()
            },
        );
        fresh.periodicities.insert(
            Periodicity::Weekly,
            PeriodicityStatus {
                last_success: Some(ok("2026-11-30T01:00:00Z")),
                ..Default::default()
            },
        );
        let mut old = InstanceStatus {
            instance: "old".into(),
            ..Default::default()
        };
        old.periodicities.insert(
            Periodicity::Daily,
            PeriodicityStatus {
                last_success: Some(ok("2026-12-04T01:00:00Z")),
                last_failure: Some(Failure {
                    time: at("2026-12-07T01:00:00Z"),
                    kind: "script-failed".into(),
                    step: Some("backup".into()),
                    message: "exit 1".into(),
                    duration_ms: 10,
                }),
                failures: [("script-failed".to_owned(), 3)].into(),
            },
        );
        let mut gone = InstanceStatus {
            instance: "gone".into(),
            ..Default::default()
        };
        gone.periodicities
            .insert(Periodicity::Daily, PeriodicityStatus::default());
        [("fresh", fresh), ("old", old), ("gone", gone)]
            .into_iter()
            .map(|(n, s)| (n.to_owned(), s))
            .collect()
    }

    #[test]
    fn stale_instances_are_those_without_a_young_enough_good_backup() {
        let now = at("2026-12-07T12:00:00Z");
        let request = Request {
            max_age: Some(std::time::Duration::from_secs(26 * 3600)),
            periodicity: None,
        };
        let all = registered(&[
            ("fresh", false),
            ("never", false),
            ("old", false),
            ("stage", true),
        ]);
        let t = table(&all, &recorded(), now, &request);
        assert_eq!(t.stale, ["never", "old"]);
        let rows: Vec<(String, Option<Periodicity>, bool)> = t
            .rows
            .iter()
            .map(|r| (r.instance.clone(), r.periodicity, r.stale))
            .collect();
        assert_eq!(
            rows,
            [
                ("fresh".into(), Some(Periodicity::Daily), false),
                // The weekly backup is older than 26 h; the daily one keeps the instance fresh.
                ("fresh".into(), Some(Periodicity::Weekly), false),
                ("never".into(), None, true),
                ("old".into(), Some(Periodicity::Daily), true),
                ("stage".into(), None, false),
            ]
        );
        let old = &t.rows[3];
        assert_eq!(
            old.last_success.as_ref().unwrap().age_secs,
            3 * 86400 + 11 * 3600
        );
        assert_eq!(old.last_failure.as_ref().unwrap().kind, "script-failed");
        assert_eq!(old.failures["script-failed"], 3);
        assert_eq!(t.rows[4].role, Some("staging"));
        // Without a maximum age nothing is stale.
        let t = table(&all, &recorded(), now, &Request::default());
        assert!(t.stale.is_empty() && t.rows.iter().all(|r| !r.stale));
    }

    #[test]
    fn a_shared_repository_answers_per_host_its_newest_snapshot_of_each_periodicity() {
        use crate::store::SnapshotInfo;
        let snap = |host: &str, instance: &str, p: Periodicity, t: &str, id: &str| HostSnapshot {
            host: host.to_owned(),
            duration_ms: Some(1200),
            snapshot: SnapshotInfo {
                id: id.to_owned(),
                instance: instance.to_owned(),
                periodicity: Some(p),
                time: at(t),
                package: None,
                files: 3,
                files_unchanged: 0,
                bytes_read: 100,
                bytes_added: 40,
            },
        };
        let all = [
            snap(
                "web1",
                "blog",
                Periodicity::Daily,
                "2026-12-06T01:00:00Z",
                "a1",
            ),
            snap(
                "web1",
                "blog",
                Periodicity::Daily,
                "2026-12-07T01:00:00Z",
                "a2",
            ),
            // The same instance name on another host is another row, judged by itself.
            snap(
                "web2",
                "blog",
                Periodicity::Daily,
                "2026-12-03T01:00:00Z",
                "b1",
            ),
            snap(
                "web2",
                "shop",
                Periodicity::Weekly,
                "2026-12-07T02:00:00Z",
                "b2",
            ),
        ];
        let now = at("2026-12-07T12:00:00Z");
        let request = Request {
            max_age: Some(std::time::Duration::from_secs(26 * 3600)),
            periodicity: None,
        };
        let t = fleet_table(&all, now, &request);
        let rows: Vec<(Option<&str>, &str, &str)> = t
            .rows
            .iter()
            .map(|r| {
                (
                    r.host.as_deref(),
                    r.instance.as_str(),
                    r.last_success
                        .as_ref()
                        .unwrap()
                        .snapshot
                        .as_deref()
                        .unwrap(),
                )
            })
            .collect();
        assert_eq!(
            rows,
            [
                (Some("web1"), "blog", "a2"),
                (Some("web2"), "blog", "b1"),
                (Some("web2"), "shop", "b2")
            ]
        );
        assert_eq!(t.stale, ["web2/blog"]);
        assert_eq!(
            t.rows[0].last_success.as_ref().unwrap().duration_ms,
            Some(1200)
        );
        let weekly = Request {
            periodicity: Some(Periodicity::Weekly),
            ..request
        };
        assert_eq!(fleet_table(&all, now, &weekly).rows.len(), 1);
    }

    #[test]
    fn ages_are_read_with_their_units() {
        let secs = |t| parse_age(t).map(|d| d.as_secs());
        assert_eq!(secs("26h"), Ok(26 * 3600));
        assert_eq!(secs("1d12h"), Ok(36 * 3600));
        assert_eq!(secs("90m"), Ok(5400));
        assert_eq!(secs("2w"), Ok(14 * 86400));
        for bad in ["", "26", "h", "26x", "0h", "-1h", "99999999999999999999w"] {
            assert!(parse_age(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn one_periodicity_judges_by_its_own_backups() {
        let now = at("2026-12-07T12:00:00Z");
        let request = Request {
            max_age: Some(std::time::Duration::from_secs(8 * 86400)),
            periodicity: Some(Periodicity::Weekly),
        };
        let all = registered(&[("fresh", false), ("old", false)]);
        let t = table(&all, &recorded(), now, &request);
        // `old` has no weekly backup at all: one row without a record, stale.
        assert_eq!(t.stale, ["old"]);
        assert_eq!(t.rows.len(), 2);
        assert_eq!(t.rows[1].periodicity, Some(Periodicity::Weekly));
        assert!(t.rows[1].last_success.is_none());
    }
}
