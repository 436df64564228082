//! `aps-meta`: the package side of the Application Packaging Standard (APS 1.0–1.2).
//!
//! It reads `APP-META.xml` into a typed [`model`], verifies `APP-LIST.xml`, and reads packages
//! from folders and `.app.zip` archives, safely (no entity expansion, bounded sizes, no path
//! escapes). It spawns no processes and keeps no state: running scripts and keeping instances is
//! the controller's job.

pub mod model;
pub mod setting_value;
