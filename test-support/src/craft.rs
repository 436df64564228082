//! Crafted backup archives for tests of hostile files: every part of a real backup taken
//! apart, changed, and put together again with a consistent manifest (every size and SHA-256
//! right), tagged with a key of the test's choice — the test state's own key (what the
//! controller made), another controller's, or none.

use std::io::Read;

use aps_controller::archive::{
    ArchiveOptions, ArchiveReader, ArchiveWriter, ExtractPlan, Manifest, ManifestHeader, PartKind,
    TagKey,
};
use camino::{Utf8Path, Utf8PathBuf};

/// The key the controller of the state folder `state` tags its backups with (created if the
/// controller has not made it yet, as the controller would).
pub fn state_key(state: &Utf8Path) -> TagKey {
    aps_controller::backup_key::load_or_create(&state.join("backup-key")).unwrap()
}

/// A key of another controller.
pub fn foreign_key() -> TagKey {
    TagKey::new(b"another controller's backup key!".to_vec()).unwrap()
}

/// One part, as a file or folder on disk.
pub struct Part {
    pub name: String,
    pub kind: PartKind,
    pub path: Utf8PathBuf,
}

/// Takes the (trusted or not) archive `file` apart into `scratch`: its manifest and every part.
pub fn unpack(file: &Utf8Path, scratch: &Utf8Path) -> (Manifest, Vec<Part>) {
    let reader = ArchiveReader::open(file, None).unwrap();
    let manifest = reader.manifest().clone();
    std::fs::create_dir_all(scratch).unwrap();
    let mut plan = ExtractPlan::new();
    let mut parts = Vec::new();
    for (i, part) in manifest.parts.iter().enumerate() {
        let path = scratch.join(i.to_string());
        plan = match &part.kind {
            PartKind::WebDir { mapping_url } => plan.web_dir(mapping_url, path.clone()),
            _ => plan.file(&part.name, path.clone()),
        };
        parts.push(Part {
            name: part.name.clone(),
            kind: part.kind.clone(),
            path,
        });
    }
    reader.extract(&plan).unwrap();
    (manifest, parts)
}

/// Writes an uncompressed archive of `parts` in this order, tagged with `key` if given.
pub fn pack(out: &Utf8Path, header: &ManifestHeader, parts: &[Part], key: Option<&TagKey>) {
    let target = std::fs::File::create(out).unwrap();
    let mut writer =
        ArchiveWriter::create(&target, &ArchiveOptions::plain(), header.clone()).unwrap();
    for part in parts {
        match &part.kind {
            PartKind::WebDir { mapping_url } => {
                writer.add_web_dir(mapping_url, &part.path).unwrap();
            }
            kind => {
                writer
                    .add_file_part(&part.name, kind.clone(), &part.path)
                    .unwrap();
            }
        }
    }
    if let Some(key) = key {
        writer.tag_with(key.clone());
    }
    writer.finish().unwrap();
}

/// The tar entries of an uncompressed archive: (header, data), in order.
pub fn entries(file: &Utf8Path) -> Vec<(tar::Header, Vec<u8>)> {
    let mut archive = tar::Archive::new(std::fs::File::open(file).unwrap());
    let mut out = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let header = entry.header().clone();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).unwrap();
        out.push((header, data));
    }
    out
}

/// Writes `entries` as an uncompressed tar to `out`, headers as given (names included: long
/// names are not supported here), sizes fixed to the data.
pub fn write_entries(out: &Utf8Path, entries: &[(tar::Header, Vec<u8>)]) {
    let mut builder = tar::Builder::new(std::fs::File::create(out).unwrap());
    for (header, data) in entries {
        let mut h = header.clone();
        h.set_size(data.len() as u64);
        h.set_cksum();
        builder.append(&h, data.as_slice()).unwrap();
    }
    builder.into_inner().unwrap().sync_all().unwrap();
}

/// The name of an entry.
pub fn name(header: &tar::Header) -> String {
    String::from_utf8_lossy(&header.path_bytes()).into_owned()
}
