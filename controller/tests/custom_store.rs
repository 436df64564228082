//! A control panel that keeps instances in its own storage plugs it in through
//! `InstanceStore`: the controller then finds, backs up and restores instances from it, and
//! writes no registry of its own.

use std::collections::BTreeMap;
use std::sync::Mutex;

use aps_controller::operation::{BackupRequest, RestoreRequest};
use aps_controller::registry::{self, Instance, InstanceFile, InstanceStore, StateDir, StoreError};
use aps_controller::{Controller, ControllerConfig, ErrorKind};
use camino::Utf8PathBuf;

/// The panel's own storage: here, its in-process table of instances.
#[derive(Default)]
struct PanelTable(Mutex<BTreeMap<String, Instance>>);

impl InstanceStore for PanelTable {
    fn get(&self, name: &str) -> Result<Instance, StoreError> {
        self.0
            .lock()
            .unwrap()
            .get(name)
            .cloned()
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_owned(),
            })
    }
    fn list(&self) -> Result<Vec<Instance>, StoreError> {
        Ok(self.0.lock().unwrap().values().cloned().collect())
    }
    fn put(&self, instance: &Instance, replace: bool) -> Result<(), StoreError> {
        let mut table = self.0.lock().unwrap();
        if !replace && table.contains_key(&instance.name) {
            return Err(StoreError::AlreadyExists {
                name: instance.name.clone(),
            });
        }
        table.insert(instance.name.clone(), instance.clone());
        Ok(())
    }
    fn remove(&self, name: &str) -> Result<Instance, StoreError> {
        self.0
            .lock()
            .unwrap()
            .remove(name)
            .ok_or_else(|| StoreError::NotFound {
                name: name.to_owned(),
            })
    }
}

#[test]
fn controller_works_over_a_panels_own_store() {
    let tmp = tempfile::tempdir().unwrap();
    let root = Utf8PathBuf::from_path_buf(tmp.path().to_owned()).unwrap();
    let repo = Utf8PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let www = root.join("www");
    std::fs::create_dir_all(www.join("uploads")).unwrap();
    std::fs::write(www.join("index.html"), "hello\n").unwrap();

    let state = StateDir::at(root.join("state"));
    // The web folder is made by this test as root: let root-owned instances run.
    let mut config = ControllerConfig::new(state.clone());
    config.allow_root_scripts = true;
    let controller = Controller::with_store(config, Box::<PanelTable>::default()).unwrap();
    let file = InstanceFile::parse(
        &format!(
            "name = \"blog\"\npackage = \"{}\"\nbase-url = \"https://blog.example.test/\"\n\
             [web-dirs]\n\"/\" = \"{www}\"\n[settings]\nadmin_password = \"correct horse\"\n",
            repo.join("examples/demo/package")
        ),
        None,
    )
    .unwrap();
    registry::register_file(controller.store(), &state, &file, false).unwrap();
    assert_eq!(controller.instances().unwrap().len(), 1);
    // Nothing of the file store was written: the panel's table is the registry.
    assert!(!state.instances_dir().exists());

    let dest = root.join("blog.aps.tar.zst");
    let report = controller
        .backup(&BackupRequest::new("blog", &dest))
        .unwrap();
    assert_eq!(report.size, std::fs::metadata(&dest).unwrap().len());

    std::fs::write(www.join("index.html"), "defaced\n").unwrap();
    controller
        .restore(&RestoreRequest::new("blog", &dest))
        .unwrap();
    assert_eq!(
        std::fs::read_to_string(www.join("index.html")).unwrap(),
        "hello\n"
    );
    assert!(www.join("uploads").is_dir(), "empty folder restored");

    let err = controller
        .backup(&BackupRequest::new("shop", root.join("shop.aps")))
        .unwrap_err();
    assert_eq!(err.kind(), ErrorKind::InstanceNotFound);
}
