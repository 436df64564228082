//! `aps-controller conformance PACKAGE …`: a package's whole life run by the controller in a
//! throwaway sandbox (`aps_conformance::run`), shown as a table, one JSON envelope and JUnit
//! XML; exit 0 only when every step passed (docs/conformance.md).

use std::process::ExitCode;
use std::time::Duration;

use aps_conformance::report::{Outcome, Report};
use aps_conformance::sandbox::{self, DEFAULT_BASE, SandboxOptions};
use aps_conformance::{ConformanceError, RunOptions};
use aps_controller::account::Account;
use aps_controller::config::ControllerConfig;
use aps_controller::error::ErrorKind;
use aps_controller::lifecycle::given::GivenSettings;
use camino::{Utf8Path, Utf8PathBuf};
use serde_json::{Map, Value};

use crate::common::{Failure, Out, StateArgs, envelope, errln, outln, state_dir};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct ConformanceArgs {
    /// The package under test: a folder or a `.app.zip`.
    #[arg(required_unless_present = "remove_sandbox", value_name = "PACKAGE")]
    pub package: Option<Utf8PathBuf>,
    /// An older package of the same application: installed, seeded, upgraded to PACKAGE and
    /// compared. Repeat it for each older version.
    #[arg(long, value_name = "OLD_PACKAGE")]
    pub upgrade_from: Vec<Utf8PathBuf>,
    /// A TOML file of settings for the install (`ID = "value"`, `ID = ["a", "b"]`, as
    /// `instance install --settings-file` reads); the package's defaults and generated values
    /// fill the rest.
    #[arg(long, value_name = "FILE")]
    pub settings_file: Option<Utf8PathBuf>,
    /// Leave the sandbox (account, home, web root, databases) in place at the end and say
    /// where it is; remove it later with --remove-sandbox NAME.
    #[arg(long)]
    pub keep: bool,
    /// The root-owned folder the sandboxes are made in.
    #[arg(long, value_name = "DIR", default_value = DEFAULT_BASE)]
    pub sandbox_base: Utf8PathBuf,
    /// Timeout of each script: seconds, or with a unit (`90s`, `10m`, `1h`); default:
    /// controller.toml's.
    #[arg(long, value_name = "DURATION")]
    pub timeout: Option<String>,
    /// Also write the report as JUnit XML into FILE (replaced whole), for a CI system.
    #[arg(long, value_name = "FILE")]
    pub junit: Option<Utf8PathBuf>,
    /// Remove the sandbox NAME a run with --keep left (or one a killed run left), instead of
    /// running anything.
    #[arg(
        long,
        value_name = "NAME",
        conflicts_with_all = ["package", "upgrade_from", "settings_file", "keep", "timeout", "junit"]
    )]
    pub remove_sandbox: Option<String>,
    /// Print one JSON object, the report as its `result` (docs/json.md); the steps' progress
    /// goes to stderr as JSON lines.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub state: StateArgs,
}

/// The help's closing text.
pub const EXAMPLES: &str = "EXAMPLES:\n  \
    aps-controller conformance blog.app.zip\n  \
    aps-controller conformance blog-2.0.app.zip --upgrade-from blog-1.0.app.zip --upgrade-from blog-1.5.app.zip --settings-file blog-settings.toml\n  \
    aps-controller conformance blog.app.zip --json --junit conformance.xml   # in a package's CI\n  \
    aps-controller conformance blog.app.zip --keep --timeout 10m\n  \
    aps-controller conformance --remove-sandbox aps-conf-0123456789";

pub fn run(args: ConformanceArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(conformance(out, args))
}

fn conformance(out: Out, args: ConformanceArgs) -> Result<ExitCode, Failure> {
    if !Account::current().is_root() {
        return Err(Failure::usage(
            "the conformance run makes and removes a tenant account and databases: run it as root",
        ));
    }
    if let Some(name) = &args.remove_sandbox {
        return remove_sandbox(out, &args, name);
    }
    let typed = args.package.as_deref().expect("clap requires PACKAGE");
    let package = existing_package("PACKAGE", typed)?;
    let options = options(&args)?;
    let mut progress = crate::progress::for_steps(args.json);
    let result = aps_conformance::run(&package, &options, &mut *progress);
    drop(progress);
    let mut report = result.map_err(|e| run_failure(&e))?;
    // The report names the package as the person typed it, not as made absolute for the run.
    report.package = typed.to_string();
    let junit_failure = args.junit.as_deref().and_then(|path| {
        report
            .write_junit(path)
            .err()
            .map(|e| Failure::new(ErrorKind::Internal, e.to_string()).with("file", path.as_str()))
    });
    Ok(show(out, &report, junit_failure))
}

/// Every argument read and checked before any work starts.
fn options(args: &ConformanceArgs) -> Result<RunOptions, Failure> {
    let timeout = args.timeout.as_deref().map(parse_timeout).transpose()?;
    let settings = match &args.settings_file {
        Some(file) => {
            let refuse =
                |e: &dyn std::fmt::Display| Failure::usage(format!("--settings-file {file}: {e}"));
            let text = std::fs::read_to_string(file).map_err(|e| refuse(&e))?;
            GivenSettings::from_toml(&text).map_err(|e| refuse(&e))?
        }
        None => GivenSettings::new(),
    };
    let upgrade_from = args
        .upgrade_from
        .iter()
        .map(|old| existing_package("--upgrade-from", old))
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(junit) = &args.junit {
        check_junit(junit)?;
    }
    let host = ControllerConfig::load(state_dir(&args.state)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    Ok(RunOptions {
        host,
        settings,
        upgrade_from,
        sandbox: SandboxOptions {
            base: aps_controller::paths::absolute(&args.sandbox_base),
            keep: args.keep,
        },
        timeout,
    })
}

/// The package (or an older one) must be there: a folder or a file; made absolute.
fn existing_package(flag: &str, path: &Utf8Path) -> Result<Utf8PathBuf, Failure> {
    match std::fs::metadata(path) {
        Ok(meta) if meta.is_dir() || meta.is_file() => Ok(aps_controller::paths::absolute(path)),
        Ok(_) => Err(Failure::new(
            ErrorKind::InvalidPackage,
            format!("{flag} {path} is neither a package folder nor a .app.zip file"),
        )),
        Err(e) => Err(Failure::new(
            ErrorKind::InvalidPackage,
            format!("{flag} {path} cannot be read: {e}"),
        )),
    }
}

/// `--junit FILE`: its folder must exist, and FILE must not be a folder.
fn check_junit(path: &Utf8Path) -> Result<(), Failure> {
    let folder = match path.parent() {
        Some(p) if !p.as_str().is_empty() => p,
        _ => Utf8Path::new("."),
    };
    if !folder.is_dir() {
        return Err(Failure::usage(format!(
            "--junit {path}: the folder {folder} does not exist"
        )));
    }
    if path.is_dir() {
        return Err(Failure::usage(format!(
            "--junit {path} is a folder; name the file to write"
        )));
    }
    Ok(())
}

/// `90`, `90s`, `10m`, `1h`: at least one second.
fn parse_timeout(text: &str) -> Result<Duration, Failure> {
    let bad = |why: &str| Failure::usage(format!("--timeout {text:?}: {why}"));
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (digits, unit) = text.split_at(split);
    let n: u64 = digits
        .parse()
        .map_err(|_| bad("expected seconds or a number with s, m or h (90, 90s, 10m, 1h)"))?;
    let seconds = match unit {
        "" | "s" => n,
        "m" => n.saturating_mul(60),
        "h" => n.saturating_mul(3600),
        _ => return Err(bad("unknown unit; use s, m or h")),
    };
    if seconds == 0 {
        return Err(bad("must be at least 1 second"));
    }
    Ok(Duration::from_secs(seconds))
}

/// Why the run could not start at all.
fn run_failure(e: &ConformanceError) -> Failure {
    match e {
        ConformanceError::NotRoot { .. } | ConformanceError::UnsafeBase { .. } => {
            Failure::usage(e.to_string())
        }
        _ => Failure::new(ErrorKind::Internal, e.to_string()),
    }
}

fn remove_sandbox(out: Out, args: &ConformanceArgs, name: &str) -> Result<ExitCode, Failure> {
    let base = &args.sandbox_base;
    if !sandbox::is_sandbox_name(name) {
        return Err(Failure::usage(format!(
            "--remove-sandbox {name}: not a sandbox's name (aps-conf- and hex digits)"
        )));
    }
    let host = ControllerConfig::load(state_dir(&args.state)?)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let removed = aps_conformance::kept::remove_kept(base, name, &host)
        .map_err(|e| Failure::new(ErrorKind::Internal, e.to_string()))?;
    if !removed.left.is_empty() {
        return Err(Failure::new(
            ErrorKind::ResourceFailed,
            format!(
                "the sandbox {name} is removed, but not all of its run's instances: {}",
                removed.left.join("; ")
            ),
        )
        .with("leftovers", removed.left));
    }
    let fields = serde_json::json!({ "sandbox": name, "removed": removed.found });
    Ok(out.success(&fields, || {
        if removed.found {
            format!("removed the sandbox {name}: its run's instances and databases, its account, group and home")
        } else {
            format!("no sandbox {name} in {base}: nothing to remove")
        }
    }))
}

/// Prints the report (the table, or the envelope with it as `result`) and answers the exit
/// code: 0 when every step passed, `conformance-failed` when one failed, 128 + the signal when
/// one stopped the run.
fn show(out: Out, report: &Report, junit_failure: Option<Failure>) -> ExitCode {
    let failure = verdict(report).or(junit_failure);
    if out.json {
        let mut fields = Map::new();
        fields.insert(
            "result".into(),
            serde_json::to_value(report).expect("reports serialize"),
        );
        if let Some(f) = &failure {
            fields.insert("error".into(), f.error_json());
        }
        outln!("{}", envelope(failure.is_none(), fields));
    } else {
        outln!("{}", report.table().trim_end());
        // What the table's one line per step cannot hold: every difference a compare found,
        // and the script's last words.
        for row in &report.rows {
            if !matches!(row.outcome, Outcome::Fail { .. }) {
                continue;
            }
            if row.differences.len() > 1 {
                outln!("\n{}: every difference:", row.step);
                for d in &row.differences {
                    outln!("- {}", escape(&d.to_string()));
                }
            }
            if let Some(stderr) = &row.stderr {
                outln!("\n{}: script stderr (last lines):\n{stderr}", row.step);
            }
        }
        if let Some(f) = &failure {
            errln!("{}", f.human());
        }
    }
    failure.map_or(ExitCode::SUCCESS, |f| ExitCode::from(f.exit))
}

/// The run's failure, if it has one: the first failed step named.
fn verdict(report: &Report) -> Option<Failure> {
    if let Some(code) = crate::signals::interrupted_exit_status(None) {
        let signal = aps_controller::cancel::Cancel::process().signal();
        let mut f = Failure::new(
            ErrorKind::Interrupted,
            "a signal stopped the conformance run; the running operation was rolled back and the sandbox ended",
        )
        .exit_with(code);
        if let Some(signal) = signal {
            f = f.with("signal", aps_controller::cancel::signal_name(signal));
        }
        return Some(f);
    }
    let first = report
        .rows
        .iter()
        .find(|r| matches!(r.outcome, Outcome::Fail { .. }))?;
    let Outcome::Fail { why, .. } = &first.outcome else {
        unreachable!("found as a failure")
    };
    let c = report.counts();
    let message = format!(
        "{} of {} steps failed, the first: {why}",
        c.failed,
        report.rows.len()
    );
    Some(
        Failure::new(ErrorKind::ConformanceFailed, message)
            .at(first.step.clone())
            .with("failed_steps", failed_steps(report)),
    )
}

fn failed_steps(report: &Report) -> Value {
    report
        .rows
        .iter()
        .filter(|r| matches!(r.outcome, Outcome::Fail { .. }))
        .map(|r| Value::from(r.step.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::parse_timeout;
    use std::time::Duration;

    #[test]
    fn timeouts_take_seconds_or_a_unit_and_refuse_zero() {
        for (text, secs) in [("90", 90), ("90s", 90), ("10m", 600), ("1h", 3600)] {
            assert_eq!(
                parse_timeout(text).unwrap(),
                Duration::from_secs(secs),
                "{text}"
            );
        }
        for bad in ["0", "0m", "", "m", "5y", "-1", "1.5h"] {
            let f = parse_timeout(bad).unwrap_err();
            assert!(f.message.starts_with("--timeout"), "{bad}: {}", f.message);
        }
    }
}
