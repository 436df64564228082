//! docs/envelope.schema.json, compiled once per test binary, to check JSON output against.

use std::sync::OnceLock;

use serde_json::Value;

pub struct Envelope {
    schemas: boon::Schemas,
    index: boon::SchemaIndex,
}

impl Envelope {
    pub fn load() -> Self {
        let path = crate::repo().join("docs/envelope.schema.json");
        let text = std::fs::read_to_string(&path).unwrap();
        let value: Value = serde_json::from_str(&text).unwrap();
        let mut schemas = boon::Schemas::new();
        let mut compiler = boon::Compiler::new();
        let url = "file:///docs/envelope.schema.json";
        compiler.add_resource(url, value).unwrap();
        let index = compiler
            .compile(url, &mut schemas)
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        Envelope { schemas, index }
    }

    /// The one compiled copy.
    pub fn get() -> &'static Envelope {
        static ENVELOPE: OnceLock<Envelope> = OnceLock::new();
        ENVELOPE.get_or_init(Envelope::load)
    }

    pub fn check(&self, what: &str, line: &Value) -> Result<(), String> {
        self.schemas
            .validate(line, self.index)
            .map_err(|e| format!("{what}: {line}\n{e:#}"))
    }
}
