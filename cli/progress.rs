//! Progress drawn. `backup`, `restore` and `migrate`: a bar per part (bytes, rate, ETA) when
//! stderr is a terminal, JSON lines on stderr with `--json` (stdout keeps exactly one JSON
//! object, the result), nothing otherwise (cron). `run` and `drill` (the panel's events): a
//! bar over the instances on a terminal, JSON lines on stdout with `--json`, nothing in cron
//! (there only the final summary is printed, and errors go to stderr).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aps_controller::progress::{Part, Progress};
use aps_panel::progress::Event;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// JSON byte counts are printed at most this often.
const JSON_INTERVAL: Duration = Duration::from_millis(250);

/// The sink a command plugs into the controller.
pub fn for_command(json: bool) -> Option<Arc<dyn Progress>> {
    if json {
        Some(Arc::new(JsonLines::default()))
    } else if std::io::stderr().is_terminal() {
        Some(Arc::new(Bar::new()))
    } else {
        None
    }
}

#[derive(Default)]
struct JsonLines {
    state: Mutex<JsonState>,
}

#[derive(Default)]
struct JsonState {
    done: u64,
    total: Option<u64>,
    last: Option<Instant>,
}

fn print_line(value: serde_json::Value) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{value}");
}

impl Progress for JsonLines {
    fn part(&self, part: &Part) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        *state = JsonState {
            done: 0,
            total: part.total,
            last: None,
        };
        print_line(serde_json::json!({
            "type": "progress",
            "event": "part",
            "operation": part.operation,
            "instance": part.instance,
            "phase": part.phase,
            "name": part.name,
            "total": part.total,
        }));
    }

    fn advance(&self, bytes: u64) {
        let mut state = self.state.lock().unwrap_or_else(|p| p.into_inner());
        state.done += bytes;
        let now = Instant::now();
        if state.last.is_some_and(|l| now - l < JSON_INTERVAL) {
            return;
        }
        state.last = Some(now);
        print_line(serde_json::json!({
            "type": "progress",
            "event": "bytes",
            "done": state.done,
            "total": state.total,
        }));
    }
}

struct Bar {
    bar: ProgressBar,
}

impl Bar {
    fn new() -> Self {
        let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
        Bar { bar }
    }
}

impl Progress for Bar {
    fn part(&self, part: &Part) {
        let label = if part.name.is_empty() {
            part.phase.to_owned()
        } else {
            format!("{} {}", part.phase, part.name)
        };
        // Part names come from the archive's manifest: escaped like every printed text.
        let label = crate::terminal::escape(&label).into_owned();
        let style = match part.total {
            // A script's own writing is not seen byte by byte: only that it runs, and how long.
            _ if part.phase == "script" => {
                ProgressStyle::with_template("{prefix:.bold} {msg} {spinner} {elapsed}")
            }
            Some(_) => ProgressStyle::with_template(
                "{prefix:.bold} {msg} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
            ),
            None => ProgressStyle::with_template(
                "{prefix:.bold} {msg} {spinner} {bytes} {bytes_per_sec} {elapsed}",
            ),
        }
        .expect("static template")
        .progress_chars("=> ");
        self.bar.set_style(style);
        self.bar.set_length(part.total.unwrap_or(0));
        self.bar.set_position(0);
        self.bar.reset_eta();
        self.bar.set_prefix(
            crate::terminal::escape(&format!("{} {}", part.operation, part.instance)).into_owned(),
        );
        self.bar.set_message(label);
        self.bar.enable_steady_tick(Duration::from_millis(200));
    }

    fn advance(&self, bytes: u64) {
        self.bar.inc(bytes);
    }

    fn finish(&self) {
        self.bar.finish_and_clear();
    }
}

/// The panel's reporter for `run` and `drill`: `--json` → JSON lines on stdout; else a bar
/// when stderr is a terminal; else nothing.
pub fn for_panel(json: bool) -> Arc<dyn aps_panel::progress::Progress> {
    if json {
        Arc::new(EventLines(Mutex::new(std::io::stdout())))
    } else if std::io::stderr().is_terminal() {
        let bar = ProgressBar::new(0);
        bar.set_style(
            ProgressStyle::with_template("{prefix} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}")
                .expect("static template")
                .progress_chars("=> "),
        );
        Arc::new(EventBar(bar))
    } else {
        Arc::new(aps_panel::progress::Quiet)
    }
}

/// Each event as a line `{"type": "progress", "event": …}` on stdout.
struct EventLines(Mutex<std::io::Stdout>);

impl aps_panel::progress::Progress for EventLines {
    fn emit(&self, event: Event<'_>) {
        // Every JSON line of a long-running command says what it is: `type`.
        let mut value = serde_json::to_value(&event).expect("events serialise");
        value["type"] = "progress".into();
        let line = value.to_string();
        let mut out = self.0.lock().unwrap_or_else(|p| p.into_inner());
        // A closed stdout must not abort a backup run.
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    }
}

/// One bar over the items (instances, a drill's steps).
struct EventBar(ProgressBar);

impl aps_panel::progress::Progress for EventBar {
    fn emit(&self, event: Event<'_>) {
        let bar = &self.0;
        match event {
            Event::Start { operation, total } => {
                bar.set_prefix(operation.to_owned());
                bar.set_length(total);
            }
            Event::ItemStart { item } => bar.set_message(item.to_owned()),
            Event::Part {
                instance,
                phase,
                name,
                ..
            } => bar.set_message(format!("{instance}: {phase} {name}")),
            Event::Bytes { done } => bar.set_prefix(format!(
                "backup, {} archived",
                aps_controller::error::human_bytes(done)
            )),
            Event::ItemDone { item, ok, error } => {
                if !ok {
                    bar.println(format!("{item}: {}", error.unwrap_or("failed")));
                }
                bar.inc(1);
            }
        }
    }

    fn finish(&self) {
        self.0.finish_and_clear();
    }
}

/// The steps of a conformance run: `--json` → a JSON line per step's start and end on stderr
/// (stdout keeps the one envelope); else on a terminal a spinner on the running step and a
/// line per finished one; else nothing.
pub fn for_steps(json: bool) -> Box<dyn FnMut(aps_conformance::scenario::Event<'_>)> {
    use aps_conformance::report::Outcome;
    use aps_conformance::scenario::Event as Step;
    if json {
        return Box::new(|event| {
            let line = match event {
                Step::Started { step } => serde_json::json!({
                    "type": "progress", "event": "item-start", "item": step,
                }),
                Step::Finished { row } => {
                    let (status, error) = match &row.outcome {
                        Outcome::Pass => ("pass", None),
                        Outcome::Fail { why, .. } => ("fail", Some(why.as_str())),
                        Outcome::Skipped { why } => ("skipped", Some(why.as_str())),
                    };
                    let mut line = serde_json::json!({
                        "type": "progress", "event": "item-done", "item": row.step,
                        "ok": status != "fail", "status": status,
                        "duration_ms": row.duration_ms,
                    });
                    if let Some(why) = error {
                        line["error"] = why.into();
                    }
                    line
                }
            };
            crate::common::errln!("{line}");
        });
    }
    if !std::io::stderr().is_terminal() {
        return Box::new(|_| {});
    }
    let bar = Cleared(ProgressBar::with_draw_target(
        None,
        ProgressDrawTarget::stderr(),
    ));
    bar.0.set_style(
        ProgressStyle::with_template("conformance: {msg} {spinner} {elapsed}")
            .expect("static template"),
    );
    Box::new(move |event| match event {
        Step::Started { step } => {
            bar.0.reset_elapsed();
            bar.0
                .set_message(crate::terminal::escape(step).into_owned());
            bar.0.enable_steady_tick(Duration::from_millis(200));
        }
        Step::Finished { row } => {
            let (word, why) = match &row.outcome {
                Outcome::Pass => ("pass", String::new()),
                Outcome::Fail { why, .. } => ("FAIL", format!(": {why}")),
                Outcome::Skipped { why } => ("skipped", format!(": {why}")),
            };
            let line = format!(
                "{word:<7} {} ({}.{:03}s){why}",
                row.step,
                row.duration_ms / 1000,
                row.duration_ms % 1000
            );
            bar.0.println(crate::terminal::escape(&line));
        }
    })
}

/// A bar cleared from the terminal when its owner (the step sink) is dropped.
struct Cleared(ProgressBar);

impl Drop for Cleared {
    fn drop(&mut self) {
        self.0.finish_and_clear();
    }
}
