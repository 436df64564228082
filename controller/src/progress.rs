//! Progress of long work, reported to whoever embeds the controller. The library reports what
//! happens — which part of which operation starts, how many bytes it will move when that is
//! known, bytes as they pass — and never draws anything: the CLI plugs in a terminal bar, a
//! JSON-lines printer, or nothing (cron).

use std::sync::Arc;

/// One part of an operation's work.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Part {
    /// `backup`, `restore`, `migrate`, `verify`.
    pub operation: &'static str,
    pub instance: String,
    /// `database`, `web-folder`, `script`, `safety-snapshot`, `rollback`, `extract`.
    pub phase: &'static str,
    /// The database id, the mapping URL, the script path; empty when there is none.
    pub name: String,
    /// Bytes this part will move, when known beforehand.
    pub total: Option<u64>,
}

/// What the controller calls. Implementations must be cheap: `advance` runs per buffer.
pub trait Progress: Send + Sync {
    /// A part starts (the previous one, if any, is over).
    fn part(&self, part: &Part);
    /// `bytes` more of the current part were read or written.
    fn advance(&self, bytes: u64);
    /// The operation ended (successfully or not).
    fn finish(&self) {}
}

/// The handle streams count bytes into.
#[derive(Clone)]
pub struct Meter {
    sink: Arc<dyn Progress>,
}

impl Meter {
    pub fn new(sink: Arc<dyn Progress>) -> Self {
        Meter { sink }
    }

    pub fn add(&self, bytes: u64) {
        self.sink.advance(bytes);
    }

    pub fn part(&self, part: &Part) {
        self.sink.part(part);
    }

    pub fn finish(&self) {
        self.sink.finish();
    }
}

impl std::fmt::Debug for Meter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Meter")
    }
}
