//! Retention in the repository store over a year of simulated backups: every day a daily, every
//! Sunday a weekly and on the 1st a monthly, each a real backup of a changing site whose
//! snapshot is then given its day's time (as if taken then). The policy of panel.toml keeps
//! the newest N per periodicity; everything else is forgotten, pruned, and the repository
//! checks clean — by our check reading every pack, and by the Debian `restic`.

#![cfg(feature = "repository")]

use test_support::repository as common;

use std::collections::{BTreeMap, BTreeSet};

use aps_panel::config::{RepositoryLocation, RepositorySettings};
use aps_panel::store::ReadData;
use aps_panel::store::repository::retention::plan;
use aps_panel::store::repository::{BackupInput, RepositoryStore};
use aps_panel::{KeepReason, KeepRules, Periodicity, RetentionPolicy};
use camino::{Utf8Path, Utf8PathBuf};
use jiff::{Timestamp, ToSpan, civil::Date};
use rustic_backend::BackendOptions;
use rustic_core::repofile::MasterKey;
use rustic_core::{Credentials, Repository, RepositoryOptions};

/// The engine on the same repository, for what the controller never does: moving a
/// snapshot's time into the past.
fn engine(settings: &RepositorySettings) -> Repository<rustic_core::OpenStatus> {
    let RepositoryLocation::Folder(path) = &settings.location else {
        unreachable!()
    };
    let key: MasterKey =
        serde_json::from_slice(&std::fs::read(&settings.key_file).unwrap()).unwrap();
    let backends = BackendOptions::default()
        .repository(path.as_str())
        .to_backends()
        .unwrap();
    Repository::new(&RepositoryOptions::default().no_cache(true), &backends)
        .unwrap()
        .open(&Credentials::Masterkey(key))
        .unwrap()
}

/// Saves snapshot `id` again with the time `at` (a new id) and removes the original.
fn retime(repo: &Repository<rustic_core::OpenStatus>, id: &str, at: Timestamp) {
    let mut snap = repo.get_snapshot_from_str(id, |_| true).unwrap();
    let old = snap.id;
    snap.time = at.to_zoned(jiff::tz::TimeZone::UTC);
    repo.save_snapshots(vec![snap]).unwrap();
    repo.delete_snapshots(&[old]).unwrap();
}

fn at(d: Date, hour: i8) -> Timestamp {
    d.at(hour, 0, 0, 0)
        .to_zoned(jiff::tz::TimeZone::UTC)
        .unwrap()
        .timestamp()
}

fn rules(pairs: &[(Periodicity, usize)]) -> KeepRules {
    let mut r = KeepRules::default();
    r.keep.extend(pairs.iter().copied());
    r
}

#[test]
fn a_year_of_backups_is_thinned_to_the_policy_and_checks_clean() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::try_from(tmp.path().to_path_buf()).unwrap();
    let settings = RepositorySettings {
        location: RepositoryLocation::Folder(root.join("repo")),
        key_file: root.join("repository.key"),
        password_file: root.join("repository.password"),
        sharing: Default::default(),
    };
    RepositoryStore::init(&settings).unwrap();
    let store = RepositoryStore::open(&settings).unwrap();
    let repo = engine(&settings);
    let www = root.join("www");
    std::fs::create_dir_all(&www).unwrap();
    std::fs::write(www.join("index.html"), "<h1>blog</h1>\n").unwrap();
    let web_dirs = BTreeMap::from([("/".to_owned(), www.clone())]);
    let databases = BTreeMap::new();

    // The schedule of 2026: (time, periodicity) of every backup, in order.
    let mut schedule = Vec::new();
    let mut day = Date::constant(2026, 1, 1);
    while day.year() == 2026 {
        if day.day() == 1 {
            schedule.push((at(day, 4), Periodicity::Monthly));
        }
        if day.weekday() == jiff::civil::Weekday::Sunday {
            schedule.push((at(day, 3), Periodicity::Weekly));
        }
        schedule.push((at(day, 2), Periodicity::Daily));
        day = day.checked_add(1.day()).unwrap();
    }
    schedule.sort();
    for (i, (time, periodicity)) in schedule.iter().enumerate() {
        // Each backup changes the site: data only that snapshot holds.
        std::fs::write(www.join("today.txt"), format!("{time} {i}\n").repeat(200)).unwrap();
        let snap = store
            .backup(&BackupInput::new(
                "blog",
                *periodicity,
                &web_dirs,
                &databases,
                common::header(),
                &common::key(),
            ))
            .unwrap();
        retime(&repo, &snap.id, *time);
    }
    // Another instance whose policy keeps nothing: its newest snapshot stays all the same.
    for d in 1..=3 {
        let snap = store
            .backup(&BackupInput::new(
                "shop",
                Periodicity::Daily,
                &web_dirs,
                &databases,
                common::header(),
                &common::key(),
            ))
            .unwrap();
        retime(&repo, &snap.id, at(Date::constant(2026, 12, d), 2));
    }
    let all = store.snapshots(None).unwrap();
    assert_eq!(all.len(), schedule.len() + 3);

    let policy = RetentionPolicy {
        default: rules(&[
            (Periodicity::Daily, 7),
            (Periodicity::Weekly, 4),
            (Periodicity::Monthly, 12),
        ]),
        instances: BTreeMap::from([(
            "shop".to_owned(),
            rules(&Periodicity::COUNTED.map(|p| (p, 0))),
        )]),
    };
    let now: Timestamp = "2026-12-31T12:00:00Z".parse().unwrap();

    // What the policy says, worked out here from the schedule alone.
    let newest = |p: Periodicity, n: usize| -> Vec<Timestamp> {
        let mut of: Vec<Timestamp> = schedule
            .iter()
            .filter(|(_, q)| *q == p)
            .map(|(t, _)| *t)
            .collect();
        of.sort();
        of.split_off(of.len() - n)
    };
    let mut expected: BTreeSet<(String, Timestamp)> = BTreeSet::new();
    for (p, n) in [
        (Periodicity::Daily, 7),
        (Periodicity::Weekly, 4),
        (Periodicity::Monthly, 12),
    ] {
        for t in newest(p, n) {
            expected.insert(("blog".to_owned(), t));
        }
    }
    expected.insert(("shop".to_owned(), at(Date::constant(2026, 12, 3), 2)));

    // A dry run decides the same and removes nothing.
    let dry = store.forget_by_policy(None, &policy, now, true).unwrap();
    assert_eq!(store.snapshots(None).unwrap().len(), all.len());
    assert_eq!(dry, plan(&all, &policy, now));

    let done = store.forget_by_policy(None, &policy, now, false).unwrap();
    assert_eq!(
        done.keep.len(),
        23 + 1,
        "7 daily, 4 weekly, 12 monthly; shop's newest"
    );
    assert_eq!(done.forget.len(), all.len() - 24);
    let shop = done
        .keep
        .iter()
        .find(|k| k.snapshot.instance == "shop")
        .unwrap();
    assert_eq!(
        shop.reasons,
        [KeepReason::Newest],
        "kept only as the newest"
    );
    let left: BTreeSet<(String, Timestamp)> = store
        .snapshots(None)
        .unwrap()
        .into_iter()
        .map(|s| (s.instance, s.time))
        .collect();
    assert_eq!(left, expected);

    let pruned = store.prune().unwrap();
    // Each forgotten backup held data of its own: packs no snapshot needs, marked now and
    // deleted by a prune at least 23 h later.
    assert!(pruned.marked_packs > 0, "{pruned:?}");
    let report = store.verify(&ReadData::All).unwrap();
    assert!(report.is_ok(), "{report:?}");
    assert_eq!(report.snapshots, 24);
    restic_check(&settings, &root.join("repo"));
    // Every kept snapshot still restores whole.
    for s in store.snapshots(None).unwrap().iter().step_by(5) {
        let target = root.join(format!("restore-{}", &s.id[..8]));
        let staged = store
            .restore_to_staging(&s.instance, &s.id, &target)
            .unwrap();
        assert!(staged.web_dirs["/"].join("today.txt").is_file());
    }
}

fn restic_check(settings: &RepositorySettings, repo: &Utf8Path) {
    common::restic(
        repo.as_str(),
        &settings.password_file,
        &[],
        &["check", "--read-data"],
    );
}
