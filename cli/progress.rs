//! Progress of `backup`, `restore` and `migrate`: a bar per part (bytes, rate, ETA) when stderr
//! is a terminal, JSON lines on stderr with `--json` (stdout keeps exactly one JSON object, the
//! result), nothing otherwise (cron).

use std::io::{IsTerminal, Write};
use std::sync::Arc;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use aps_controller::progress::{Part, Progress};
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
