//! `aps_conformance::run` on the lifecycle fixture packages, whole: real tenant accounts made
//! and removed, the packages' real scripts, the real MariaDB and PostgreSQL servers of a
//! controller.toml written for the test. Each full run costs seconds: few runs, each checked
//! row by row and for what it leaves behind.

use std::time::Duration;

use aps_conformance::report::{Outcome, Report};
use aps_conformance::sandbox::{Ending, SandboxOptions};
use aps_conformance::scenario::{Event, RunOptions, steps};
use aps_controller::config::ControllerConfig;
use aps_controller::database::DbKind;
use aps_controller::lifecycle::GivenSettings;
use aps_controller::registry::StateDir;
use camino::{Utf8Path, Utf8PathBuf};
use test_support::database::TestServers;

/// A root-owned folder (0755) for the test's sandboxes and its host configuration.
struct Host {
    _dir: tempfile::TempDir,
    base: Utf8PathBuf,
    config: ControllerConfig,
}

/// The host: controller.toml with this machine's PHP version and, with `servers`, the test
/// MariaDB and PostgreSQL servers as `[database-servers]`.
fn host(servers: Option<&TestServers>) -> Host {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::Builder::new()
        .prefix("aps-conf-run-")
        .tempdir()
        .unwrap();
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let root = Utf8PathBuf::from_path_buf(dir.path().to_owned()).unwrap();
    let state = root.join("host-state");
    std::fs::create_dir(&state).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o700)).unwrap();
    let php = std::process::Command::new("php")
        .args(["-r", "echo PHP_VERSION;"])
        .output()
        .expect("php, for the lifecycle-php fixture");
    let mut toml = format!(
        "php-version = \"{}\"\n",
        String::from_utf8_lossy(&php.stdout).trim()
    );
    if let Some(servers) = servers {
        toml.push_str(&servers.server_section(DbKind::Mysql, "maria", &state));
        toml.push_str(&servers.server_section(DbKind::Postgresql, "pg", &state));
    }
    std::fs::write(state.join(ControllerConfig::FILE_NAME), toml).unwrap();
    let config = ControllerConfig::load(StateDir::at(state)).unwrap();
    let base = root.join("sandboxes");
    Host {
        _dir: dir,
        base,
        config,
    }
}

fn options(host: &Host, keep: bool) -> RunOptions {
    RunOptions {
        host: host.config.clone(),
        settings: GivenSettings::new(),
        upgrade_from: Vec::new(),
        sandbox: SandboxOptions {
            base: host.base.clone(),
            keep,
        },
        timeout: Some(Duration::from_secs(300)),
    }
}

fn fixture(name: &str) -> Utf8PathBuf {
    test_support::repo().join("fixtures/lifecycle").join(name)
}

/// A copy of the fixture `name` at `HOST/copy`, each `(file, from, to)` edit made once, and
/// without its listing (the package is changed).
fn altered(host: &Host, name: &str, copy: &str, edits: &[(&str, &str, &str)]) -> Utf8PathBuf {
    let package = host.base.parent().unwrap().join(copy);
    let copied = std::process::Command::new("cp")
        .args(["-a", fixture(name).as_str(), package.as_str()])
        .status()
        .unwrap();
    assert!(copied.success());
    std::fs::remove_file(package.join("APP-LIST.xml")).unwrap();
    for (file, from, to) in edits {
        let path = package.join(file);
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(text.contains(from), "{path} holds no {from:?}");
        std::fs::write(&path, text.replacen(from, to, 1)).unwrap();
    }
    package
}

/// Runs the scenario, checking that the progress sink heard each row start and finish.
fn run(package: &Utf8Path, options: &RunOptions) -> Report {
    let (mut started, mut finished) = (Vec::new(), Vec::new());
    let report = aps_conformance::run(package, options, &mut |event| match event {
        Event::Started { step } => started.push(step.to_owned()),
        Event::Finished { row } => finished.push(row.step.clone()),
    })
    .unwrap();
    // Shown with --nocapture, and when a test fails.
    eprintln!("{}", report.table());
    assert_eq!(started, finished, "{}", report.table());
    let rows: Vec<&str> = report.rows.iter().map(|r| r.step.as_str()).collect();
    assert_eq!(finished, rows, "{}", report.table());
    assert!(report.duration_ms > 0, "{}", report.table());
    report
}

fn outcome<'r>(report: &'r Report, step: &str) -> &'r Outcome {
    &report
        .rows
        .iter()
        .find(|r| r.step == step)
        .unwrap_or_else(|| panic!("no row {step}:\n{}", report.table()))
        .outcome
}

fn passed(report: &Report, step: &str) -> bool {
    *outcome(report, step) == Outcome::Pass
}

/// The rows of the main round, in order, with the rounds' places.
const MAIN: &[&str] = &[
    steps::PACKAGE_CHECK,
    steps::INSTALL,
    steps::SEED,
    steps::BACKUP,
    steps::DAMAGE,
    steps::RESTORE,
    steps::COMPARE_RESTORE,
    steps::CONFIGURE,
    steps::DISABLE,
    steps::ENABLE,
];

/// The account, its home and the run folder of the sandbox `name` are gone.
fn assert_gone(base: &Utf8Path, name: &str) {
    assert!(aps_controller::account::Account::lookup(name, None).is_err());
    assert!(!base.join(name).exists());
    assert!(!aps_conformance::sandbox::run_folder(base, name).exists());
}

/// Databases and users of the servers whose name starts with the sandbox's.
fn databases_of(servers: &TestServers, sandbox: &str) -> Vec<String> {
    let prefix = sandbox.replace('-', "_");
    let mut out = Vec::new();
    for (kind, sql) in [
        (
            DbKind::Mysql,
            format!(
                "SELECT schema_name FROM information_schema.schemata WHERE schema_name LIKE \
                 '{prefix}%' UNION ALL SELECT user FROM mysql.user WHERE user LIKE '{prefix}%'"
            ),
        ),
        (
            DbKind::Postgresql,
            format!(
                "SELECT datname FROM pg_database WHERE datname LIKE '{prefix}%' UNION ALL \
                 SELECT rolname FROM pg_roles WHERE rolname LIKE '{prefix}%'"
            ),
        ),
    ] {
        let text = test_support::restore_kit::run_sql(&servers.admin(kind), &sql);
        out.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| l.starts_with(&prefix))
                .map(str::to_owned),
        );
    }
    out
}

#[test]
fn lifecycle_php_passes_every_row_and_leaves_nothing() {
    if !test_support::needs_root("sandbox accounts") {
        return;
    }
    let Some(servers) = TestServers::from_env() else {
        return;
    };
    let host = host(Some(&servers));
    let report = run(&fixture("lifecycle-php"), &options(&host, false));
    let table = report.table();
    let rows: Vec<&str> = report.rows.iter().map(|r| r.step.as_str()).collect();
    assert_eq!(&rows[..MAIN.len()], MAIN, "{table}");
    assert_eq!(rows.last(), Some(&steps::REMOVE), "{table}");
    assert!(report.passed(), "{table}");
    for step in MAIN
        .iter()
        .filter(|s| ![steps::DISABLE, steps::ENABLE].contains(s))
    {
        assert!(passed(&report, step), "{step}:\n{table}");
    }
    assert!(passed(&report, steps::REMOVE), "{table}");
    // No status-control: the two rows say why they did not run.
    assert!(
        matches!(outcome(&report, steps::DISABLE), Outcome::Skipped { why } if why.contains("status-control")),
        "{table}"
    );
    assert!(report.findings.is_empty(), "{table}");
    assert_eq!(report.version.as_deref(), Some("1.0.0-1"));
    let Some(Ending::Removed { name }) = &report.sandbox else {
        panic!("{table}");
    };
    assert_gone(&host.base, name);
    assert_eq!(
        databases_of(&servers, name),
        Vec::<String>::new(),
        "{table}"
    );
}

#[test]
fn lifecycle_perl_status_passes_with_disable_and_enable_and_is_kept_when_asked() {
    if !test_support::needs_root("sandbox accounts") {
        return;
    }
    // No database servers at all: the package needs none.
    let host = host(None);
    let report = run(&fixture("lifecycle-perl-status"), &options(&host, true));
    let table = report.table();
    assert!(report.passed(), "{table}");
    for step in MAIN.iter().chain([&steps::REMOVE]) {
        assert!(passed(&report, step), "{step}:\n{table}");
    }
    assert!(report.findings.is_empty(), "{table}");
    // Kept: named, and there until removed by name.
    let Some(Ending::Kept {
        name,
        home,
        web_root,
    }) = report.sandbox.clone()
    else {
        panic!("{table}");
    };
    assert!(table.contains(home.as_str()), "{table}");
    assert!(web_root.starts_with(&home) && home.is_dir());
    assert!(aps_controller::account::Account::lookup(&name, None).is_ok());
    assert!(
        aps_conformance::sandbox::run_folder(&host.base, &name)
            .join("work/final-backup.aps")
            .is_file()
    );
    assert!(aps_conformance::sandbox::remove_named(&host.base, &name).unwrap());
    assert_gone(&host.base, &name);
    // The migrated copy's sandbox was kept too: removed by its name, as a person would.
    let others: Vec<String> = host
        .base
        .read_dir_utf8()
        .unwrap()
        .map(|e| e.unwrap().file_name().to_owned())
        .filter(|n| aps_conformance::sandbox::is_sandbox_name(n))
        .collect();
    assert!(!others.is_empty(), "the migrated copy's sandbox is kept");
    for other in others {
        assert!(aps_conformance::sandbox::remove_named(&host.base, &other).unwrap());
        assert_gone(&host.base, &other);
    }
}

#[test]
fn a_database_no_server_can_hold_fails_the_install_and_skips_the_rest() {
    if !test_support::needs_root("sandbox accounts") {
        return;
    }
    let host = host(None);
    let report = run(&fixture("lifecycle-php"), &options(&host, false));
    let table = report.table();
    assert!(!report.passed(), "{table}");
    assert!(passed(&report, steps::PACKAGE_CHECK), "{table}");
    let Outcome::Fail { why, section } = outcome(&report, steps::INSTALL) else {
        panic!("{table}");
    };
    assert!(why.contains("main") && why.contains("stats"), "{table}");
    assert_eq!(section.as_deref(), Some("§8.2"));
    for row in &report.rows[2..] {
        assert!(
            matches!(&row.outcome, Outcome::Skipped { why } if why.contains("install")),
            "{}: {table}",
            row.step
        );
    }
    let Some(Ending::Removed { name }) = &report.sandbox else {
        panic!("{table}");
    };
    assert_gone(&host.base, name);
}

#[test]
fn outside_writes_and_guessed_metadata_are_findings_named_with_their_source() {
    if !test_support::needs_root("sandbox accounts") {
        return;
    }
    let host = host(None);
    // lifecycle-perl-status whose `configure configure` also writes into /tmp and into the
    // account's home beside the web root, and whose installed-size the controller must guess.
    let package = altered(
        &host,
        "lifecycle-perl-status",
        "leaky",
        &[
            (
                "scripts/configure",
                "my $op = $ARGV[0] // '';\n",
                "my $op = $ARGV[0] // '';\n\
                 if ($op eq 'configure') {\n\
                 \x20   open(my $t, '>', \"/tmp/aps-conf-leak-$$\") or die; close $t;\n\
                 \x20   open(my $h, '>', \"$ENV{WEB___DIR}/../leak.txt\") or die; close $h;\n\
                 }\n",
            ),
            (
                "APP-META.xml",
                "<installed-size>16384</installed-size>",
                "<installed-size>about 16 KB</installed-size>",
            ),
        ],
    );

    let report = run(&package, &options(&host, false));
    let table = report.table();
    assert!(report.passed(), "{table}");
    let outside: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == aps_conformance::report::FindingKind::WroteOutside)
        .collect();
    assert_eq!(outside.len(), 2, "{table}");
    let guessed: Vec<_> = report
        .findings
        .iter()
        .filter(|f| f.kind == aps_conformance::report::FindingKind::GuessedMetadata)
        .collect();
    assert_eq!(guessed.len(), 1, "{table}");
    assert_eq!(guessed[0].step, steps::PACKAGE_CHECK);
    assert!(
        guessed[0].message.contains("installed-size-not-numeric")
            && guessed[0]
                .source
                .as_deref()
                .is_some_and(|s| s.contains("installed-size")),
        "{table}"
    );
    for f in &outside {
        assert_eq!(f.step, steps::CONFIGURE, "{table}");
        assert_eq!(f.source.as_deref(), Some("scripts/configure"), "{table}");
    }
    let Some(Ending::Removed { name }) = &report.sandbox else {
        panic!("{table}");
    };
    assert!(
        outside
            .iter()
            .any(|f| f.message.contains(&format!("{name}/leak.txt"))),
        "{table}"
    );
    // The sandbox's removal took the file in /tmp with it.
    let leak = outside
        .iter()
        .find_map(|f| {
            f.message
                .split_whitespace()
                .find(|w| w.starts_with("/tmp/aps-conf-leak-"))
        })
        .unwrap_or_else(|| panic!("{table}"));
    assert!(!Utf8Path::new(leak).exists(), "{leak}");
    assert_gone(&host.base, name);
}

#[test]
fn a_sufficient_backup_script_that_saves_nothing_fails_the_compare_with_findings() {
    if !test_support::needs_root("sandbox accounts") {
        return;
    }
    let host = host(None);
    // lifecycle-perl-status with a `sufficient` backup-script that exits 0 and does nothing:
    // BACKUP_FILE stays empty, the restore brings nothing back.
    let package = altered(
        &host,
        "lifecycle-perl-status",
        "hollow",
        &[
            (
                "APP-META.xml",
                "    </provision>",
                "      <backup-script name=\"backup\">\n        <script-language>sh</script-language>\n\
                 \x20       <sufficient/>\n      </backup-script>\n    </provision>",
            ),
            ("scripts/backup", "", "#!/bin/sh\nexit 0\n"),
        ],
    );

    let report = run(&package, &options(&host, false));
    let table = report.table();
    for step in [steps::INSTALL, steps::BACKUP, steps::RESTORE] {
        assert!(passed(&report, step), "{step}:\n{table}");
    }
    let Outcome::Fail { section, .. } = outcome(&report, steps::COMPARE_RESTORE) else {
        panic!("{table}");
    };
    assert_eq!(section.as_deref(), Some("§8.9"));
    let kinds: Vec<_> = report
        .findings
        .iter()
        .map(|f| (f.kind, f.step.as_str()))
        .collect();
    use aps_conformance::report::FindingKind;
    assert!(
        kinds.contains(&(FindingKind::IgnoresBackupFile, steps::BACKUP)),
        "{table}"
    );
    assert!(
        kinds.contains(&(FindingKind::ExitZeroOnFailure, steps::COMPARE_RESTORE)),
        "{table}"
    );
    // The rows after the failed compare still ran, and the run cleaned up.
    assert!(passed(&report, steps::REMOVE), "{table}");
    let Some(Ending::Removed { name }) = &report.sandbox else {
        panic!("{table}");
    };
    assert_gone(&host.base, name);
}
