//! `aps-controller status [--json] [--max-age AGE] [--periodicity P] [--repository]`: the service's
//! [`aps_panel::service::status`] (the last good backup and the last failure of each instance
//! and periodicity), in words; with `--max-age`, exit 27 (`stale`) when an instance has no
//! good backup younger than that.

use std::process::ExitCode;

use aps_controller::error::human_bytes;
use aps_panel::Periodicity;
use aps_panel::service::status::{self, Row, StatusTable};

use crate::common::{Failure, Out, StateArgs, cli_failure, open_controller, open_panel, outln};
use crate::failures::{stale_failure, table_json};
use crate::terminal::escape;

#[derive(clap::Args)]
#[command(after_help = "EXAMPLES:
  aps-controller status
  aps-controller status --max-age 26h --json
  aps-controller status --repository --max-age 26h")]
pub struct StatusArgs {
    /// Exit 27 (`stale`) and list them when an instance has no good backup younger than AGE
    /// (26h, 90m, 7d, 1d12h); without it the exit is 0 whatever the backups' age.
    #[arg(long, value_name = "AGE")]
    max_age: Option<String>,
    /// Only the backups of this periodicity (and staleness judged by them alone).
    #[arg(long)]
    periodicity: Option<Periodicity>,
    /// Every host's instances in the shared repository panel.toml names ([store] kind =
    /// "repository"), read from its snapshots, with a HOST column; stale ones are HOST/NAME.
    #[arg(long)]
    repository: bool,
    /// One JSON object: {"ok":…,"now":…,"rows":[…],"stale":[…]} (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: StatusArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(status(out, args))
}

fn status(out: Out, args: StatusArgs) -> Result<ExitCode, Failure> {
    let max_age = args
        .max_age
        .as_deref()
        .map(status::parse_age)
        .transpose()
        .map_err(|m| Failure::usage(format!("--max-age: {m}")))?;
    let request = status::Request {
        max_age,
        periodicity: args.periodicity,
    };
    let table = if args.repository {
        let panel = open_panel(&args.state)?;
        status::every_host(&panel, &request).map_err(cli_failure)?
    } else {
        let ctl = open_controller(&args.state)?;
        status::status(&ctl, &request).map_err(cli_failure)?
    };
    let stale = stale_failure(&table, args.max_age.as_deref().unwrap_or(""));
    if out.json {
        outln!("{}", table_json(&table, stale.as_ref()));
    } else {
        outln!("{}", table_text(&table));
        if let Some(f) = &stale {
            crate::common::errln!("{}", f.human());
        }
    }
    Ok(stale.map_or(ExitCode::SUCCESS, |f| ExitCode::from(f.exit)))
}

/// One line per instance and periodicity, under a header.
pub fn table_text(table: &StatusTable) -> String {
    if table.rows.is_empty() {
        return "no instance is registered (or, with --repository, no snapshot is there)"
            .to_owned();
    }
    let hosts = table.rows.iter().any(|r| r.host.is_some());
    let mut lines = vec![format!(
        "{}{:<24} {:<11} {:<21} {:>9} {:>10} {:>9}  LAST FAILURE",
        if hosts {
            format!("{:<16} ", "HOST")
        } else {
            String::new()
        },
        "INSTANCE",
        "PERIODICITY",
        "LAST GOOD BACKUP",
        "AGE",
        "SIZE",
        "DURATION"
    )];
    lines.extend(table.rows.iter().map(|r| row_text(r, hosts)));
    lines.join("\n")
}

fn row_text(r: &Row, hosts: bool) -> String {
    let (time, age, size, duration) = match &r.last_success {
        Some(s) => (
            s.time.strftime("%Y-%m-%d %H:%M:%SZ").to_string(),
            human_age(s.age_secs),
            human_bytes(s.size),
            s.duration_ms
                .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
                .unwrap_or_else(|| "-".into()),
        ),
        None => ("never".into(), "-".into(), "-".into(), "-".into()),
    };
    let failure = match &r.last_failure {
        Some(f) => format!(
            "{} {}",
            f.time.strftime("%Y-%m-%d %H:%M:%SZ"),
            escape(&f.kind)
        ),
        None => "-".into(),
    };
    let mut line = format!(
        "{}{:<24} {:<11} {:<21} {:>9} {:>10} {:>9}  {failure}",
        match (&r.host, hosts) {
            (Some(h), _) => format!("{:<16} ", escape(h)),
            (None, true) => format!("{:<16} ", "-"),
            (None, false) => String::new(),
        },
        escape(&r.instance),
        r.periodicity.map_or("-", Periodicity::as_str),
        time,
        age,
        size,
        duration,
    );
    if r.stale {
        line += "  STALE";
    }
    if let Some(role) = r.role {
        line += &format!("  ({role})");
    }
    line
}

/// `3d 4h`, `5h 12m`, `7m 3s`, `40s`: the two largest units.
fn human_age(secs: u64) -> String {
    let (d, h, m, s) = (
        secs / 86_400,
        secs % 86_400 / 3600,
        secs % 3600 / 60,
        secs % 60,
    );
    match (d, h, m) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, _) => format!("{m}m {s}s"),
        (0, _, _) => format!("{h}h {m}m"),
        _ => format!("{d}d {h}h"),
    }
}

#[cfg(test)]
mod tests {
    use super::human_age;

    #[test]
    fn ages_show_their_two_largest_units() {
        assert_eq!(human_age(40), "40s");
        assert_eq!(human_age(7 * 60 + 3), "7m 3s");
        assert_eq!(human_age(5 * 3600 + 12 * 60 + 9), "5h 12m");
        assert_eq!(human_age(3 * 86400 + 4 * 3600 + 5), "3d 4h");
    }
}
