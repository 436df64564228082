//! `aps-controller log [NAME] [--since WHEN] [--json]`: the service's
//! [`aps_panel::service::log`] (the journal's history), in words.

use std::process::ExitCode;

use aps_controller::journal::Outcome;
use aps_panel::service::log::{self, Operation};
use jiff::Timestamp;

use crate::common::{Failure, Out, StateArgs, check_instance_name, cli_failure, open_controller};
use crate::terminal::escape;

#[derive(clap::Args)]
pub struct LogArgs {
    /// Only the operations of this instance (a migration is listed under its source).
    name: Option<String>,
    /// Only operations started at or after WHEN: an RFC 3339 time (2026-12-01T10:00:00Z) or
    /// an age such as 90m, 24h, 7d, 2w.
    #[arg(long, value_name = "WHEN")]
    since: Option<String>,
    /// One JSON object: {"ok":true,"operations":[…],"recovered":[…]} (docs/json.md).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    state: StateArgs,
}

pub fn run(args: LogArgs) -> ExitCode {
    let out = Out::new(args.json);
    out.finish(log(out, args))
}

fn log(out: Out, args: LogArgs) -> Result<ExitCode, Failure> {
    if let Some(name) = &args.name {
        check_instance_name("NAME", name)?;
    }
    let since = args
        .since
        .as_deref()
        .map(parse_since)
        .transpose()
        .map_err(|message| Failure::usage(format!("--since: {message}")))?;
    let ctl = open_controller(&args.state)?;
    let history = log::log(
        &ctl,
        &log::Request {
            instance: args.name,
            since,
        },
    )
    .map_err(cli_failure)?;
    Ok(out.success(&history, || {
        if history.operations.is_empty() {
            "no operations recorded".to_owned()
        } else {
            history
                .operations
                .iter()
                .map(record_line)
                .collect::<Vec<_>>()
                .join("\n")
        }
    }))
}

fn record_line(r: &Operation) -> String {
    let duration = r
        .duration_ms
        .map(|ms| format!("{:.1} s", ms as f64 / 1000.0))
        .unwrap_or_else(|| "-".into());
    let mut line = format!(
        "{}  {:<8} {:<20} {:<11} {:>9}",
        r.started.strftime("%Y-%m-%d %H:%M:%SZ"),
        r.operation.to_string(),
        escape(&r.instance),
        outcome_name(r.outcome),
        duration
    );
    if r.recovered {
        let failed = r.undone.iter().filter(|u| u.error.is_some()).count();
        line += &format!(
            "  recovered: {} undone{}",
            r.undone.len() - failed,
            if failed > 0 {
                format!(", {failed} FAILED")
            } else {
                String::new()
            }
        );
    }
    // One line per operation: a recorded message (a script's stderr may be in it) is escaped
    // whole, its own line breaks included.
    if let Some(m) = &r.message {
        line += &format!("  {}", escape(m));
    }
    line
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Running => "running",
        Outcome::Ok => "ok",
        Outcome::Failed => "failed",
        Outcome::Interrupted => "interrupted",
    }
}

/// An RFC 3339 time, or an age (`90m`, `24h`, `7d`, `2w`, `30s`) before now.
fn parse_since(text: &str) -> Result<Timestamp, String> {
    if let Ok(t) = text.parse::<Timestamp>() {
        return Ok(t);
    }
    let (digits, unit) = text.split_at(
        text.find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len()),
    );
    let n: i64 = digits
        .parse()
        .map_err(|_| format!("{text:?} is neither an RFC 3339 time nor an age like 24h or 7d"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 604_800,
        _ => {
            return Err(format!(
                "{text:?}: unknown unit {unit:?} (use s, m, h, d or w)"
            ));
        }
    };
    Timestamp::now()
        .checked_sub(jiff::SignedDuration::from_secs(n.saturating_mul(seconds)))
        .map_err(|e| format!("{text:?}: {e}"))
}
