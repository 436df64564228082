//! Bounds on everything read from a package, so that hostile input costs little.

use serde::{Deserialize, Serialize};

/// Every bound applied while reading a package. `Limits::default()` suits real packages (the
/// largest real APP-META.xml we hold is 59 KB, the largest packages a few thousand files and a
/// few hundred MB unpacked) with a wide margin.
/// Deserializes from a partial table (`{"max_zip_members": 10}`): missing bounds keep their
/// defaults, unknown names are refused so a typo does not silently leave a bound open.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted `APP-META.xml`, in bytes. Default 4 MiB.
    pub max_meta_bytes: u64,
    /// Largest accepted `APP-LIST.xml`, in bytes. Default 16 MiB.
    pub max_list_bytes: u64,
    /// Most XML nodes in one document (elements, text, attributes count as roxmltree counts
    /// them). Default 2,000,000.
    pub max_xml_nodes: u32,
    /// Deepest element nesting accepted in one document. The model is built by recursion
    /// (nested services, groups, mappings, unknown aspect elements), so an unbounded depth would
    /// overflow the stack on a hostile file; real files nest at most 8 deep. Default 64.
    pub max_xml_depth: u32,
    /// Most members (files and folders) in a `.app.zip`. Default 100,000.
    pub max_zip_members: u64,
    /// Most bytes written while unpacking a `.app.zip`, counted as really decompressed (header
    /// sizes are not trusted). Default 2 GiB.
    pub max_unpacked_bytes: u64,
    /// Most bytes of a single unpacked member. Default 1 GiB.
    pub max_member_bytes: u64,
    /// Most files walked when verifying a listing of a folder. Default 200,000.
    pub max_listed_files: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_meta_bytes: 4 << 20,
            max_list_bytes: 16 << 20,
            max_xml_nodes: 2_000_000,
            max_xml_depth: 64,
            max_zip_members: 100_000,
            max_unpacked_bytes: 2 << 30,
            max_member_bytes: 1 << 30,
            max_listed_files: 200_000,
        }
    }
}
