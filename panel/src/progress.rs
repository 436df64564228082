//! Progress of long operations, reported as [`Event`]s through [`Progress`]; the front end
//! draws them (the CLI: cli/progress.rs).

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

/// Where `run` and `drill` report their progress (rustic's `Progress`, by events): the front
/// end draws it — the CLI a bar on a terminal, JSON lines with `--json`, nothing in cron.
pub trait Progress: Send + Sync {
    fn emit(&self, event: Event<'_>);
    /// The operation ended: clear what was drawn before the summary is printed.
    fn finish(&self) {}
    /// Whether nothing is shown (then no one needs the controller's part-by-part events).
    fn is_hidden(&self) -> bool {
        false
    }
}

/// Progress shown nowhere.
#[derive(Debug, Clone, Copy, Default)]
pub struct Quiet;

impl Progress for Quiet {
    fn emit(&self, _event: Event<'_>) {}

    fn is_hidden(&self) -> bool {
        true
    }
}

/// `Progress` as the controller's progress sink: `run` and `drill` show which part of which
/// instance runs and how many bytes went through, not only how many instances are done.
pub struct OperationProgress {
    inner: std::sync::Arc<dyn Progress>,
    done: std::sync::atomic::AtomicU64,
    last: Mutex<Option<std::time::Instant>>,
}

impl OperationProgress {
    pub fn new(inner: std::sync::Arc<dyn Progress>) -> Self {
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
