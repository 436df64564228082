//! Progress of long operations: a bar on a terminal, JSON lines with `--json`, nothing in cron
//! (there only the final summary is printed, and errors go to stderr).

use std::io::{IsTerminal, Write};
use std::sync::Mutex;

use serde::Serialize;

/// One progress event; with `--json` each is printed as a line `{"type": "progress",
/// "event": …}` on stdout.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "kebab-case")]
pub enum Event<'a> {
    /// The operation starts, over `total` items (instances, files).
    Start { operation: &'a str, total: u64 },
    /// One item started.
    ItemStart { item: &'a str },
    /// One item done; `ok` false with an `error` when it failed.
    ItemDone {
        item: &'a str,
        ok: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        error: Option<&'a str>,
    },
    /// A part of an instance's operation starts (a database, a web folder, the script).
    Part {
        instance: &'a str,
        operation: &'a str,
        phase: &'a str,
        name: &'a str,
        #[serde(skip_serializing_if = "Option::is_none")]
        total: Option<u64>,
    },
    /// Bytes archived or read so far by all running operations (at most every 250 ms).
    Bytes { done: u64 },
}

pub enum Progress {
    Quiet,
    Json(Mutex<std::io::Stdout>),
    Bar(indicatif::ProgressBar),
}

impl Progress {
    /// `--json` → JSON lines; else a bar when stderr is a terminal; else quiet.
    pub fn detect(json: bool) -> Self {
        if json {
            Progress::Json(Mutex::new(std::io::stdout()))
        } else if std::io::stderr().is_terminal() {
            let bar = indicatif::ProgressBar::new(0);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{prefix} [{bar:30}] {pos}/{len} {elapsed} {wide_msg}",
                )
                .expect("static template")
                .progress_chars("=> "),
            );
            Progress::Bar(bar)
        } else {
            Progress::Quiet
        }
    }

    pub fn emit(&self, event: Event<'_>) {
        match self {
            Progress::Quiet => {}
            Progress::Json(out) => {
                // Every JSON line of a long-running command says what it is: `type`.
                let mut value = serde_json::to_value(&event).expect("events serialise");
                value["type"] = "progress".into();
                let line = value.to_string();
                let mut out = out.lock().unwrap_or_else(|p| p.into_inner());
                // A closed stdout must not abort a backup run.
                let _ = writeln!(out, "{line}");
                let _ = out.flush();
            }
            Progress::Bar(bar) => match event {
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
                Event::Bytes { done } => {
                    bar.set_prefix(format!("backup, {} archived", human_bytes(done)))
                }
                Event::ItemDone { item, ok, error } => {
                    if !ok {
                        bar.println(format!("{item}: {}", error.unwrap_or("failed")));
                    }
                    bar.inc(1);
                }
            },
        }
    }

    /// Clears the bar before the summary is printed.
    pub fn finish(&self) {
        if let Progress::Bar(bar) = self {
            bar.finish_and_clear();
        }
    }
}

/// `Progress` as the controller's progress sink: `run` and `drill` show which part of which
/// instance runs and how many bytes went through, not only how many instances are done.
pub struct OperationProgress {
    inner: std::sync::Arc<Progress>,
    done: std::sync::atomic::AtomicU64,
    last: Mutex<Option<std::time::Instant>>,
}

impl OperationProgress {
    pub fn new(inner: std::sync::Arc<Progress>) -> Self {
        OperationProgress {
            inner,
            done: std::sync::atomic::AtomicU64::new(0),
            last: Mutex::new(None),
        }
    }
}

impl aps_controller::progress::Progress for OperationProgress {
    fn part(&self, part: &aps_controller::progress::Part) {
        self.inner.emit(Event::Part {
            instance: &part.instance,
            operation: part.operation,
            phase: part.phase,
            name: &part.name,
            total: part.total,
        });
    }

    fn advance(&self, bytes: u64) {
        use std::sync::atomic::Ordering;
        let done = self.done.fetch_add(bytes, Ordering::Relaxed) + bytes;
        let now = std::time::Instant::now();
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_some_and(|l| now - l < std::time::Duration::from_millis(250)) {
            return;
        }
        *last = Some(now);
        drop(last);
        self.inner.emit(Event::Bytes { done });
    }
}

fn human_bytes(n: u64) -> String {
    aps_controller::error::human_bytes(n)
}
