//! The scenario's second half through `run`, on the real database servers as real throwaway
//! accounts: the migration round and the fault round on lifecycle-php (its backup-script
//! stopped while it runs) and on lifecycle-py (none: the controller's own phases stopped),
//! the upgrade round from lifecycle-py 1.0 to 1.1, and upgrade-from packages that are not an
//! older version of the package under test, each failing its install row with why before
//! anything is made.

use std::collections::BTreeMap;
use std::time::Duration;

use camino::{Utf8Path, Utf8PathBuf};

use aps_conformance::report::{Outcome, Report};
use aps_conformance::sandbox::{SANDBOX_PREFIX, SandboxOptions};
use aps_conformance::scenario::Event;
use aps_conformance::scenario::steps::{self, UpgradePhase};
use aps_conformance::{RunOptions, run};
use aps_controller::ControllerConfig;
use aps_controller::database::DbKind;
use aps_controller::lifecycle::GivenSettings;
use aps_controller::registry::StateDir;
use test_support::database::TestServers;

/// A root-owned folder (0755) for the run's sandboxes and the packages' readable copies, and
/// beside it the host's state folder with a controller.toml naming both test servers.
struct Host {
    _dir: tempfile::TempDir,
    base: Utf8PathBuf,
    packages: Utf8PathBuf,
    config: ControllerConfig,
}

fn host() -> Option<Host> {
    use std::os::unix::fs::PermissionsExt;
    if !test_support::needs_root("a conformance run makes accounts") {
        return None;
    }
    let servers = TestServers::from_env()?;
    let dir = tempfile::Builder::new()
        .prefix("aps-conf-rounds-")
        .tempdir()
        .unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (base, packages, state) = (root.join("base"), root.join("packages"), root.join("host"));
    for folder in [&base, &packages, &state] {
        std::fs::create_dir(folder).unwrap();
        std::fs::set_permissions(folder, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    // The PHP the sites run and the system's python3, which the tenant can reach (one in
    // root's home folder it cannot).
    let toml = [
        "php-version = \"8.2\"\n[interpreters]\npython = \"/usr/bin/python3\"\n".to_owned(),
        servers.server_section(DbKind::Mysql, "maria", &state),
        servers.server_section(DbKind::Postgresql, "pg", &state),
    ]
    .join("\n");
    std::fs::write(state.join(ControllerConfig::FILE_NAME), toml).unwrap();
    let config = ControllerConfig::load(StateDir::at(state)).unwrap();
    Some(Host {
        _dir: dir,
        base,
        packages,
        config,
    })
}

impl Host {
    /// A copy of `fixtures/lifecycle/NAME` every account can read.
    fn package(&self, name: &str) -> Utf8PathBuf {
        let fixture = test_support::repo().join("fixtures/lifecycle").join(name);
        test_support::reachable_tree(&fixture, &self.packages)
    }

    fn options(&self, upgrade_from: Vec<Utf8PathBuf>) -> RunOptions {
        RunOptions {
            host: self.config.clone(),
            settings: GivenSettings::new(),
            upgrade_from,
            sandbox: SandboxOptions {
                base: self.base.clone(),
                keep: false,
            },
            timeout: Some(Duration::from_secs(300)),
        }
    }

    fn run(&self, package: &Utf8Path, upgrade_from: Vec<Utf8PathBuf>) -> Report {
        self.run_with(package, &self.options(upgrade_from))
    }

    /// Runs the scenario, checking that the progress sink heard each row start and end once.
    fn run_with(&self, package: &Utf8Path, options: &RunOptions) -> Report {
        let mut heard = Vec::new();
        let report = run(package, options, &mut |event| match event {
            Event::Started { step } => heard.push(format!("start {step}")),
            Event::Finished { row } => heard.push(format!("end {}", row.step)),
        })
        .unwrap();
        let rows: Vec<String> = report
            .rows
            .iter()
            .flat_map(|r| [format!("start {}", r.step), format!("end {}", r.step)])
            .collect();
        assert_eq!(
            heard, rows,
            "the sink heard each row start and end once, in order"
        );
        report
    }
}

/// The rows of the migration and the fault rounds.
const ROUND_STEPS: [&str; 5] = [
    steps::MIGRATE,
    steps::COMPARE_MIGRATE,
    steps::MIGRATE_REMOVE,
    steps::FAULT_BACKUP,
    steps::FAULT_RESTORE,
];

/// Each row's outcome by step name, and the whole report when a row is missing.
fn outcomes(report: &Report) -> BTreeMap<String, Outcome> {
    report
        .rows
        .iter()
        .map(|r| (r.step.clone(), r.outcome.clone()))
        .collect()
}

fn assert_passed(report: &Report, step: &str) {
    let all = outcomes(report);
    match all.get(step) {
        Some(Outcome::Pass) => {}
        other => panic!(
            "{step}: {other:?}\nthe report: {}",
            serde_json::to_string_pretty(report).unwrap()
        ),
    }
}

/// Nothing of the run is left: no sandbox folder or mark in `base`, no sandbox account.
fn assert_nothing_left(base: &Utf8Path) {
    let left: Vec<String> = base
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_owned())
        .collect();
    assert!(left.is_empty(), "left in the sandbox base: {left:?}");
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap();
    let accounts: Vec<&str> = passwd
        .lines()
        .filter(|l| l.starts_with(SANDBOX_PREFIX) && l.contains(base.as_str()))
        .collect();
    assert!(accounts.is_empty(), "sandbox accounts left: {accounts:?}");
}

#[test]
fn the_migration_and_fault_rounds_pass_for_lifecycle_php_and_leave_nothing() {
    let Some(host) = host() else { return };
    let package = host.package("lifecycle-php");
    let report = host.run(&package, Vec::new());
    for step in ROUND_STEPS {
        assert_passed(&report, step);
    }
    let names: Vec<&str> = report.rows.iter().map(|r| r.step.as_str()).collect();
    let at = |step| names.iter().position(|n| *n == step).unwrap();
    assert!(at(steps::MIGRATE) < at(steps::FAULT_BACKUP));
    assert!(at(steps::FAULT_RESTORE) < at(steps::REMOVE));
    assert_nothing_left(&host.base);
}

#[test]
fn the_upgrade_round_keeps_the_seed_and_refuses_what_is_not_an_older_version() {
    let Some(host) = host() else { return };
    let new = host.package("lifecycle-py-1.1");
    let old = host.package("lifecycle-py-1.0");
    let other = host.package("lifecycle-php");
    let report = host.run(&new, vec![old, other, new.clone()]);
    for phase in UpgradePhase::ALL {
        assert_passed(&report, &steps::upgrade_phase("1.0-1", phase));
    }
    // No backup-script: the migration is the controller's own, and the stops land in its
    // own phases.
    for step in ROUND_STEPS {
        assert_passed(&report, step);
    }
    let all = outcomes(&report);
    // Another application: its install row fails with why, the rest say why they did not run.
    let why_of = |step: &str| match all.get(step) {
        Some(Outcome::Fail { why, .. }) => why.clone(),
        other => panic!("{step}: {other:?}"),
    };
    let why = why_of(&steps::upgrade_phase("1.0.0-1", UpgradePhase::Install));
    assert!(
        why.contains("lifecycle-php") && why.contains("same application"),
        "{why}"
    );
    for phase in [
        UpgradePhase::Upgrade,
        UpgradePhase::Compare,
        UpgradePhase::Remove,
    ] {
        let step = steps::upgrade_phase("1.0.0-1", phase);
        assert!(
            matches!(all.get(&step), Some(Outcome::Skipped { .. })),
            "{step}: {:?}",
            all.get(&step)
        );
    }
    // The package under test itself: not older.
    let why = why_of(&steps::upgrade_phase("1.1-1", UpgradePhase::Install));
    assert!(why.contains("not older"), "{why}");
    assert_nothing_left(&host.base);
}

#[test]
fn kept_the_migrated_copy_stays_and_its_row_says_where() {
    let Some(host) = host() else { return };
    let package = host.package("lifecycle-perl-status");
    let mut options = host.options(Vec::new());
    options.sandbox.keep = true;
    let report = host.run_with(&package, &options);
    assert_passed(&report, steps::MIGRATE);
    assert_passed(&report, steps::COMPARE_MIGRATE);
    let kept: Vec<String> = host
        .base
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_owned())
        .filter(|n| aps_conformance::sandbox::is_sandbox_name(n))
        .collect();
    let main = match &report.sandbox {
        Some(aps_conformance::sandbox::Ending::Kept { name, .. }) => name.clone(),
        other => panic!("{other:?}"),
    };
    let copy: Vec<&String> = kept.iter().filter(|n| **n != main).collect();
    assert_eq!(copy.len(), 1, "the main sandbox and the copy's: {kept:?}");
    let copy = copy[0];
    match outcomes(&report).get(steps::MIGRATE_REMOVE) {
        Some(Outcome::Skipped { why }) => assert!(
            why.contains("kept") && why.contains(copy.as_str()) && why.contains("/www"),
            "{why}"
        ),
        other => panic!("{other:?}"),
    }
    assert!(host.base.join(copy).join("www").is_dir());
    for name in &kept {
        assert!(aps_conformance::sandbox::remove_named(&host.base, name).unwrap());
    }
    assert_nothing_left(&host.base);
}
