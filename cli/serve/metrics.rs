//! `GET /metrics`: the status table ([`aps_panel::service::status`]) in the Prometheus text
//! exposition format (0.0.4), one series per instance and periodicity (docs/monitoring.md).

use std::fmt::Write;

use aps_panel::service::status::{Row, StatusTable};

/// One metric family: name, type, help, and its value for a row (none: no sample).
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    value: fn(&Row) -> Option<f64>,
}

const GAUGES: &[Family] = &[
    Family {
        name: "aps_backup_last_success_timestamp_seconds",
        kind: "gauge",
        help: "Unix time the last good backup of the instance and periodicity was recorded; 0 when it never succeeded (periodicity=\"none\": nothing was ever recorded of the instance).",
        // 0 rather than no sample: `time() - x > age` then catches what never succeeded.
        value: |r| {
            Some(
                r.last_success
                    .as_ref()
                    .map_or(0.0, |s| s.time.as_millisecond() as f64 / 1000.0),
            )
        },
    },
    Family {
        name: "aps_backup_last_duration_seconds",
        kind: "gauge",
        help: "How long the last good backup took.",
        value: |r| {
            r.last_success
                .as_ref()
                .and_then(|s| s.duration_ms)
                .map(|ms| ms as f64 / 1000.0)
        },
    },
    Family {
        name: "aps_backup_last_size_bytes",
        kind: "gauge",
        help: "Bytes of the last good backup (an archive's size, or what a snapshot added to the repository).",
        value: |r| r.last_success.as_ref().map(|s| s.size as f64),
    },
    Family {
        name: "aps_backup_last_failure_timestamp_seconds",
        kind: "gauge",
        help: "Unix time of the last failed backup of the instance and periodicity.",
        value: |r| {
            r.last_failure
                .as_ref()
                .map(|f| f.time.as_millisecond() as f64 / 1000.0)
        },
    },
];

const FAILURES: &str = "aps_backup_failures_total";

/// The whole exposition: HELP and TYPE of each family, then its samples.
pub fn exposition(table: &StatusTable) -> String {
    let mut text = String::new();
    for family in GAUGES {
        let _ = writeln!(text, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(text, "# TYPE {} {}", family.name, family.kind);
        for row in &table.rows {
            if let Some(v) = (family.value)(row) {
                let _ = writeln!(text, "{}{{{}}} {v}", family.name, labels(row));
            }
        }
    }
    let _ = writeln!(
        text,
        "# HELP {FAILURES} Failed backups of the instance and periodicity by error kind, since its status file was made."
    );
    let _ = writeln!(text, "# TYPE {FAILURES} counter");
    for row in &table.rows {
        for (kind, n) in &row.failures {
            let _ = writeln!(
                text,
                "{FAILURES}{{{},kind=\"{}\"}} {n}",
                labels(row),
                escape(kind)
            );
        }
    }
    text
}

fn labels(row: &Row) -> String {
    format!(
        "instance=\"{}\",periodicity=\"{}\"",
        escape(&row.instance),
        row.periodicity.map_or("none", |p| p.as_str())
    )
}

/// A label value: backslash, double quote and line feed escaped, as the format asks.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
