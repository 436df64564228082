//! A backup must not be written inside the instance's own web folders: where a path would be,
//! and the refusal's words (the CLI, HTTP, `run` and the repository store use them).

use camino::{Utf8Path, Utf8PathBuf};

/// The web folder (url-mapping, folder) a file written at `path` would be inside, if any: a
/// backup there would be served on the web and, written while the folder is archived, hold a
/// partial copy of itself. Symlinks are resolved on both sides (the file's folder, since the
/// file itself does not exist yet).
pub fn web_dir_containing(
    path: &Utf8Path,
    web_dirs: &std::collections::BTreeMap<String, Utf8PathBuf>,
) -> Option<(String, Utf8PathBuf)> {
    let parent = path
        .parent()
        .filter(|d| !d.as_str().is_empty())
        .unwrap_or(Utf8Path::new("."));
    let target = parent
        .canonicalize_utf8()
        .map(|d| d.join(path.file_name().unwrap_or_default()))
        .unwrap_or_else(|_| path.to_owned());
    web_dirs.iter().find_map(|(mapping, dir)| {
        let dir = dir.canonicalize_utf8().unwrap_or_else(|_| dir.clone());
        target.starts_with(&dir).then(|| (mapping.clone(), dir))
    })
}

/// The refusal's words, for the CLI, HTTP and `run`.
pub fn inside_web_dir_message(
    what: &str,
    path: &Utf8Path,
    mapping: &str,
    dir: &Utf8Path,
) -> String {
    format!(
        "{what} {path} is inside the instance's web folder {dir} (mapping {mapping}): the backup \
         would be served on the web and hold a partial copy of itself; choose a folder outside \
         the web folders"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_web_folder_through_symlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let root = Utf8Path::from_path(tmp.path()).unwrap();
        std::fs::create_dir_all(root.join("www/sub")).unwrap();
        std::fs::create_dir_all(root.join("outside")).unwrap();
        std::os::unix::fs::symlink(root.join("www/sub"), root.join("link")).unwrap();
        let dirs = std::collections::BTreeMap::from([("/".to_owned(), root.join("www"))]);
        let hit = web_dir_containing(&root.join("link/b.aps.tar"), &dirs).unwrap();
        assert_eq!(hit.0, "/");
        assert!(web_dir_containing(&root.join("outside/b.aps.tar"), &dirs).is_none());
        // A sibling whose name merely starts the same is not inside.
        std::fs::create_dir_all(root.join("www2")).unwrap();
        assert!(web_dir_containing(&root.join("www2/b.aps.tar"), &dirs).is_none());
    }
}
