//! The instance registry: instance records, INSTANCE.toml, and their durable storage.

pub mod instance;

pub use instance::{BaseUrl, Instance, SettingValue};
